//! Media time.
//!
//! MPEG-TS (ISO/IEC 13818-1 §2.4.3.7, PTS/DTS) and H.264-over-TS count time
//! in ticks of a 90 kHz clock, written as 33-bit values that wrap roughly
//! every 26.5 hours. In memory roomcast keeps the count unwrapped in a `u64`
//! (which lasts millions of years) and wraps only when writing a header, so
//! durations and comparisons never have to reason about the wrap.

/// A point or span on the 90 kHz media clock, unwrapped.
///
/// Arithmetic is offered only in saturating/checked forms so a bad timestamp
/// from a device can never cause an overflow panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticks90k(pub u64);

impl Ticks90k {
    /// Ticks per second.
    pub const HZ: u64 = 90_000;

    /// Converts nanoseconds (e.g. a monotonic capture timestamp), rounding down.
    pub fn from_nanos(ns: u64) -> Self {
        // ns * 90_000 overflows u64 after ~2.4 days of uptime, so go via u128;
        // the quotient is always smaller than `ns` and fits back in a u64.
        let t = u128::from(ns) * u128::from(Self::HZ) / 1_000_000_000;
        Ticks90k(u64::try_from(t).unwrap_or(u64::MAX))
    }

    /// Converts to nanoseconds, rounding down and saturating at `u64::MAX`.
    pub fn as_nanos(self) -> u64 {
        let ns = u128::from(self.0) * 1_000_000_000 / u128::from(Self::HZ);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Converts whole milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Ticks90k(ms.saturating_mul(90))
    }

    /// Milliseconds, rounded to nearest (what a playlist shows).
    pub fn as_millis_rounded(self) -> u64 {
        // +45 ticks = half a millisecond; u128 so the addition cannot overflow.
        let ms = (u128::from(self.0) + 45) / 90;
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// The value modulo 2^33, as written in PES PTS/DTS and the PCR base.
    pub fn wrapped33(self) -> u64 {
        self.0 & ((1 << 33) - 1)
    }

    /// `self + rhs`, clamped at the maximum.
    pub fn saturating_add(self, rhs: Ticks90k) -> Ticks90k {
        Ticks90k(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, clamped at zero (a timestamp going backwards gives a zero span).
    pub fn saturating_sub(self, rhs: Ticks90k) -> Ticks90k {
        Ticks90k(self.0.saturating_sub(rhs.0))
    }

    /// `self - rhs`, or `None` if `rhs` is later.
    pub fn checked_sub(self, rhs: Ticks90k) -> Option<Ticks90k> {
        self.0.checked_sub(rhs.0).map(Ticks90k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip() {
        assert_eq!(Ticks90k::from_nanos(1_000_000_000), Ticks90k(90_000));
        assert_eq!(Ticks90k::from_nanos(33_333_333), Ticks90k(2_999));
        assert_eq!(Ticks90k(90_000).as_nanos(), 1_000_000_000);
        assert_eq!(Ticks90k(3_000).as_nanos(), 33_333_333);
        // No overflow at the extremes.
        assert_eq!(
            Ticks90k::from_nanos(u64::MAX),
            Ticks90k(1_660_206_966_633_859)
        );
        assert_eq!(Ticks90k(u64::MAX).as_nanos(), u64::MAX);
    }

    #[test]
    fn wrap33() {
        assert_eq!(Ticks90k(0x1_2345_6789).wrapped33(), 0x1_2345_6789);
        assert_eq!(Ticks90k(0x2_0000_0005).wrapped33(), 5);
        assert_eq!(Ticks90k(u64::MAX).wrapped33(), 0x1_FFFF_FFFF);
    }

    #[test]
    fn millis() {
        assert_eq!(Ticks90k(90_000).as_millis_rounded(), 1_000);
        assert_eq!(Ticks90k(44).as_millis_rounded(), 0);
        assert_eq!(Ticks90k(45).as_millis_rounded(), 1);
        assert_eq!(Ticks90k(u64::MAX).as_millis_rounded(), u64::MAX / 90);
        assert_eq!(Ticks90k::from_millis(2), Ticks90k(180));
    }

    #[test]
    fn saturating() {
        assert_eq!(Ticks90k(5).saturating_sub(Ticks90k(9)), Ticks90k(0));
        assert_eq!(
            Ticks90k(u64::MAX).saturating_add(Ticks90k(1)),
            Ticks90k(u64::MAX)
        );
        assert_eq!(Ticks90k(5).checked_sub(Ticks90k(9)), None);
    }
}
