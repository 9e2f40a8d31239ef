//! Time for the daemon, passed in rather than read ad hoc, so pacing and
//! rates can be tested with a simulated clock and no sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock for media timestamps plus the wall clock for
/// EXT-X-PROGRAM-DATE-TIME and the picture's time display.
pub trait Clock: Send + Sync {
    /// Monotonic nanoseconds since an arbitrary fixed origin; never goes back.
    fn monotonic_ns(&self) -> u64;
    /// Milliseconds since the Unix epoch (may jump when NTP corrects it).
    fn wall_unix_ms(&self) -> u64;
    /// Blocks until `monotonic_ns() >= ns`.
    fn sleep_until(&self, ns: u64);
}

pub type SharedClock = Arc<dyn Clock>;

/// The real clock: `Instant` (CLOCK_MONOTONIC on Linux, the same clock V4L2
/// stamps buffers with) and `SystemTime`.
pub struct RealClock {
    origin: Instant,
}

impl RealClock {
    pub fn new() -> Self {
        RealClock {
            origin: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn monotonic_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn wall_unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
    fn sleep_until(&self, ns: u64) {
        let now = self.monotonic_ns();
        if ns > now {
            std::thread::sleep(Duration::from_nanos(ns - now));
        }
    }
}

/// A clock that only moves when told to (or when someone sleeps on it, which
/// jumps straight to the wake-up time). For tests.
#[derive(Default)]
pub struct SimClock {
    now_ns: AtomicU64,
    wall_origin_ms: u64,
}

impl SimClock {
    pub fn new(wall_origin_ms: u64) -> Self {
        SimClock {
            now_ns: AtomicU64::new(0),
            wall_origin_ms,
        }
    }
    pub fn advance(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.now_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn monotonic_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
    fn wall_unix_ms(&self) -> u64 {
        self.wall_origin_ms + self.monotonic_ns() / 1_000_000
    }
    fn sleep_until(&self, ns: u64) {
        self.now_ns.fetch_max(ns, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_clock_is_monotonic() {
        let c = RealClock::new();
        let a = c.monotonic_ns();
        c.sleep_until(a + 1_000_000);
        assert!(c.monotonic_ns() >= a + 1_000_000);
        assert!(c.wall_unix_ms() > 1_700_000_000_000);
    }

    #[test]
    fn sim_clock_moves_only_when_told() {
        let c = SimClock::new(1_000);
        assert_eq!(c.monotonic_ns(), 0);
        c.advance(Duration::from_millis(5));
        c.sleep_until(2_000_000); // in the past: no change
        assert_eq!(c.monotonic_ns(), 5_000_000);
        c.sleep_until(9_000_000);
        assert_eq!((c.monotonic_ns(), c.wall_unix_ms()), (9_000_000, 1_009));
    }
}
