//! Retry delays for every output: one policy, written once.
//!
//! After a failed attempt the next one starts [`Backoff::delay`] after the
//! *start* of the failed attempt (so a slow failure, such as a 3 s handshake
//! timeout, does not add its own length to the wait), doubling from
//! [`MIN_MS`] to [`MAX_MS`]; an attempt that worked (a connection that
//! reached publishing or sending) resets it. With these constants a server
//! that comes back is found within about 2 s even at the cap of a long
//! outage, because an attempt costs little when the server refuses at once.

/// First retry delay.
pub const MIN_MS: u64 = 250;
/// Longest retry delay.
pub const MAX_MS: u64 = 2_000;

/// Capped exponential backoff; time is passed in (monotonic ns).
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next_ms: MIN_MS }
    }
}

impl Backoff {
    /// The delay the next failure will wait.
    pub fn delay_ms(&self) -> u64 {
        self.next_ms
    }

    /// A failed attempt that started at `started_ns`: when (monotonic ns)
    /// the next attempt may start. Doubles the following delay.
    pub fn failed(&mut self, started_ns: u64) -> u64 {
        let at = started_ns.saturating_add(self.next_ms * 1_000_000);
        self.next_ms = (self.next_ms * 2).min(MAX_MS);
        at
    }

    /// An attempt that worked: the next failure waits [`MIN_MS`] again.
    pub fn succeeded(&mut self) {
        self.next_ms = MIN_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_attempt_start_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let ms = 1_000_000;
        assert_eq!(b.failed(0), 250 * ms);
        assert_eq!(b.failed(1_000 * ms), 1_500 * ms);
        assert_eq!(b.failed(0), 1_000 * ms);
        assert_eq!(b.failed(0), 2_000 * ms);
        assert_eq!(b.failed(0), 2_000 * ms, "capped");
        b.succeeded();
        assert_eq!(b.delay_ms(), MIN_MS);
        assert_eq!(b.failed(10 * ms), 260 * ms);
    }
}
