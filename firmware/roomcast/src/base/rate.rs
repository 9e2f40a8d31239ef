//! Send rate over windows of about a second, for every output's status.

/// Window over which a rate is measured.
pub const WINDOW_NS: u64 = 1_000_000_000;

/// Turns a growing byte counter into bits per second, updated once a window
/// has passed; time is passed in (monotonic ns).
#[derive(Debug, Clone)]
pub struct RateMeter {
    since_ns: u64,
    bytes_then: u64,
    bps: f64,
}

impl RateMeter {
    pub fn new(now_ns: u64, bytes: u64) -> Self {
        RateMeter {
            since_ns: now_ns,
            bytes_then: bytes,
            bps: 0.0,
        }
    }

    /// Takes the counter's value at `now_ns`; returns the current rate.
    pub fn update(&mut self, now_ns: u64, bytes: u64) -> f64 {
        let dt = now_ns.saturating_sub(self.since_ns);
        if dt >= WINDOW_NS {
            self.bps = bytes.saturating_sub(self.bytes_then) as f64 * 8e9 / dt as f64;
            self.since_ns = now_ns;
            self.bytes_then = bytes;
        }
        self.bps
    }

    /// Starts again from `bytes` (a connection ended: the rate is 0).
    pub fn reset(&mut self, now_ns: u64, bytes: u64) {
        *self = RateMeter::new(now_ns, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_bits_per_second_over_whole_windows() {
        let mut r = RateMeter::new(0, 0);
        assert_eq!(r.update(500_000_000, 1_000), 0.0, "no full window yet");
        assert_eq!(r.update(1_000_000_000, 125_000), 1_000_000.0);
        assert_eq!(
            r.update(1_500_000_000, 500_000),
            1_000_000.0,
            "kept until the next window"
        );
        assert_eq!(r.update(3_000_000_000, 375_000), 1_000_000.0);
        r.reset(3_000_000_000, 375_000);
        assert_eq!(r.update(3_100_000_000, 400_000), 0.0);
    }
}
