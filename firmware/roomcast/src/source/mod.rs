//! Picture sources. Each runs on its own capture thread (see
//! [`crate::pipeline`]) and stamps frames with the monotonic clock.

pub mod camera;
pub mod capture;
pub mod convert;
pub mod pattern;
pub mod scale;
pub mod slate;

use crate::base::clock::SharedClock;
use crate::base::frame::{I420Frame, RawFrame};
use pattern::Pattern;

/// H.264 straight from a camera (pass-through), already stamped.
#[derive(Debug)]
pub struct PassthroughFrame {
    /// Annex-B access unit as the camera sent it.
    pub data: Vec<u8>,
    pub keyframe: bool,
    pub capture_ns: u64,
    pub wall_ms: u64,
    pub duration_ns: u64,
    pub width: u32,
    pub height: u32,
}

/// What a source produced.
#[derive(Debug)]
pub enum Next {
    /// A picture to encode (in the recycled buffer).
    Picture(RawFrame),
    /// Compressed by the camera; the recycled buffer comes back unused.
    Encoded {
        frame: PassthroughFrame,
        picture: I420Frame,
    },
    /// Nothing yet: call again. Lets the capture loop notice a stop.
    Idle(I420Frame),
}

impl Next {
    /// The picture, for callers that only expect pictures (tests).
    pub fn picture(self) -> Option<RawFrame> {
        match self {
            Next::Picture(p) => Some(p),
            _ => None,
        }
    }
}

/// A picture source. `next` blocks until the next picture is due (or a
/// short poll interval passes) and fills `picture`, a recycled buffer
/// possibly of another size.
pub trait Source: Send {
    fn kind(&self) -> &'static str;
    fn next(&mut self, picture: I420Frame) -> Next;
}

/// The built-in test pattern, paced by the clock at exactly `fps`: frame
/// `n` is stamped `start + n / fps`, the moment it is due, so timestamps are
/// monotonic and evenly spaced as a real camera's would be.
pub struct TestSource {
    clock: SharedClock,
    pattern: Pattern,
    width: usize,
    height: usize,
    fps: u32,
    start_ns: u64,
    n: u64,
}

impl TestSource {
    pub fn new(clock: SharedClock, width: u32, height: u32, fps: u32) -> Self {
        // Frame numbers count from a whole second of the monotonic clock, so
        // the flash (frame n % fps == 0) falls on whole seconds, where the
        // test tone beeps (audio::tone): A/V sync is then measurable from
        // any output. The first frame is the next one due, not a second away.
        let now = clock.monotonic_ns();
        let start_ns = now - now % 1_000_000_000;
        let fps = u64::from(fps.max(1));
        let n = ((now - start_ns) * fps).div_ceil(1_000_000_000);
        TestSource {
            clock,
            pattern: Pattern::new(width as usize, height as usize),
            width: width as usize,
            height: height as usize,
            fps: fps as u32,
            start_ns,
            n,
        }
    }

    fn due_ns(&self, n: u64) -> u64 {
        // Rounded up, so whole-tick frame times (90 kHz / fps) convert to
        // exactly that many ticks from the whole-second start: PTS steps
        // stay 3000, 3000, … at 30 fps rather than 2999, 3000, 3001.
        let offset = (u128::from(n) * 1_000_000_000).div_ceil(u128::from(self.fps));
        self.start_ns
            .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
    }
}

impl Source for TestSource {
    fn kind(&self) -> &'static str {
        "test"
    }

    fn next(&mut self, mut picture: I420Frame) -> Next {
        let mut due = self.due_ns(self.n);
        let now = self.clock.monotonic_ns();
        // Far behind (machine suspended, debugger): skip the missed frames
        // instead of bursting them out, as a camera would.
        if now > due + 1_000_000_000 {
            let behind = u128::from(now - self.start_ns) * u128::from(self.fps) / 1_000_000_000;
            self.n = u64::try_from(behind).unwrap_or(u64::MAX);
            due = self.due_ns(self.n);
        }
        self.clock.sleep_until(due);
        if picture.width != self.width || picture.height != self.height {
            picture = I420Frame::new(self.width, self.height);
        }
        let wall_ms = self.clock.wall_unix_ms();
        self.pattern.draw(self.n, self.fps, wall_ms, &mut picture);
        self.n += 1;
        Next::Picture(RawFrame {
            picture,
            capture_ns: due,
            wall_ms,
            duration_ns: 1_000_000_000 / u64::from(self.fps),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::{Clock, SimClock};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn frames_are_paced_and_stamped_at_exact_intervals() {
        let clock = Arc::new(SimClock::new(1_700_000_000_000));
        clock.advance(Duration::from_secs(5));
        let mut src = TestSource::new(clock.clone(), 64, 48, 25);
        let mut stamps = Vec::new();
        let mut pic = I420Frame::new(2, 2);
        for _ in 0..4 {
            let f = src.next(pic).picture().unwrap();
            stamps.push(f.capture_ns);
            assert_eq!((f.picture.width, f.picture.height), (64, 48));
            assert_eq!(f.duration_ns, 40_000_000);
            pic = f.picture;
        }
        let base = 5_000_000_000;
        assert_eq!(
            stamps,
            [
                base,
                base + 40_000_000,
                base + 80_000_000,
                base + 120_000_000
            ]
        );
        // The source slept until each frame was due.
        assert_eq!(clock.monotonic_ns(), base + 120_000_000);
    }

    #[test]
    fn a_long_stall_skips_frames_instead_of_bursting() {
        let clock = Arc::new(SimClock::new(0));
        let mut src = TestSource::new(clock.clone(), 16, 16, 10);
        let f = src.next(I420Frame::new(16, 16)).picture().unwrap();
        assert_eq!(f.capture_ns, 0);
        clock.advance(Duration::from_secs(3));
        let f = src.next(f.picture).picture().unwrap();
        assert_eq!(f.capture_ns, 3_000_000_000);
        let f = src.next(f.picture).picture().unwrap();
        assert_eq!(f.capture_ns, 3_100_000_000);
    }
}
