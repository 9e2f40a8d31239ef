//! A fake sound card that follows the rules a real ALSA capture stream
//! does, on the injected clock: periods are paced by the card's own sample
//! clock (which may run `ppm` fast or slow against the monotonic clock, like
//! a real crystal), `read` blocks until the next period is captured, a reader
//! more than a buffer late gets [`PcmError::Xrun`] (the stream restarts, as
//! after `snd_pcm_prepare`), and after an unplug every read is
//! [`PcmError::Gone`]. Timestamps are true monotonic times, as ALSA's
//! `htstamp` would be.
//!
//! [`SimBackend`] (`ROOMCAST_ALSA_SIM=DIR`) makes every file `DIR/NAME` a
//! capture device `sim:NAME` for the daemon's end-to-end tests.

use super::pcm::{AudioDeviceInfo, Pcm, PcmBackend, PcmError, PeriodStamp};
use crate::base::clock::SharedClock;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The sample rate of every fake card.
pub const FAKE_RATE: u32 = 48_000;
/// Frames per period (10 ms).
pub const FAKE_PERIOD: usize = 480;
/// Periods in the capture buffer (250 ms, as the ALSA backend asks for).
pub const FAKE_PERIODS: usize = 25;

/// What the fake card hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The test tone: a 1 kHz sine, 100 ms, starting at every whole second
    /// of the true (monotonic) time; silence otherwise.
    Tone,
    Silence,
}

/// Peak of the test tone (-6 dBFS).
pub const TONE_AMPLITUDE: f64 = 0.5;

/// The test tone's value at true monotonic time `t_ns` (in -1..=1).
pub fn tone_at(t_ns: f64) -> f64 {
    let in_second = t_ns.rem_euclid(1e9);
    if in_second < 100e6 {
        TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * 1000.0 * in_second / 1e9).sin()
    } else {
        0.0
    }
}

/// A card's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeParams {
    /// Sample-clock error: the card takes `48000 * (1 + ppm / 1e6)` samples
    /// per monotonic second.
    pub ppm: f64,
    pub channels: u32,
    pub content: Content,
}

impl Default for FakeParams {
    fn default() -> Self {
        FakeParams {
            ppm: 0.0,
            channels: 2,
            content: Content::Tone,
        }
    }
}

/// Whether the card is plugged in; shared by the test and the open stream.
#[derive(Debug, Clone)]
pub struct Plug(Arc<AtomicBool>);

impl Plug {
    pub fn new() -> Self {
        Plug(Arc::new(AtomicBool::new(true)))
    }
    pub fn unplug(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    pub fn plug(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_plugged(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Default for Plug {
    fn default() -> Self {
        Self::new()
    }
}

/// An open capture stream on a fake card.
pub struct FakePcm {
    clock: SharedClock,
    params: FakeParams,
    /// Samples per monotonic nanosecond.
    rate_per_ns: f64,
    /// Monotonic time of frame 0 of the current run (after open or an xrun).
    t0_ns: u64,
    /// Index of the next frame to hand out.
    next: u64,
    present: Box<dyn Fn() -> bool + Send>,
    gone: bool,
}

impl FakePcm {
    /// Opens (and starts) a card whose presence `present` reports.
    pub fn open(
        clock: SharedClock,
        params: FakeParams,
        present: Box<dyn Fn() -> bool + Send>,
    ) -> Self {
        let t0_ns = clock.monotonic_ns();
        FakePcm {
            rate_per_ns: f64::from(FAKE_RATE) * (1.0 + params.ppm / 1e6) / 1e9,
            clock,
            params,
            t0_ns,
            next: 0,
            present,
            gone: false,
        }
    }

    /// A card that stays plugged while `plug` says so.
    pub fn with_plug(clock: SharedClock, params: FakeParams, plug: &Plug) -> Self {
        let plug = plug.clone();
        Self::open(clock, params, Box::new(move || plug.is_plugged()))
    }

    /// True monotonic time (ns, fractional) at which frame `i` of this run
    /// was captured.
    pub fn frame_time_ns(&self, i: u64) -> f64 {
        self.t0_ns as f64 + i as f64 / self.rate_per_ns
    }

    /// The ADC's position (frame being captured) at `now_ns`.
    fn position(&self, now_ns: u64) -> u64 {
        (now_ns.saturating_sub(self.t0_ns) as f64 * self.rate_per_ns) as u64
    }
}

impl Pcm for FakePcm {
    fn channels(&self) -> u32 {
        self.params.channels
    }
    fn rate(&self) -> u32 {
        FAKE_RATE
    }
    fn period_frames(&self) -> usize {
        FAKE_PERIOD
    }

    fn read(&mut self, buf: &mut Vec<i16>) -> Result<PeriodStamp, PcmError> {
        if self.gone || !(self.present)() {
            self.gone = true;
            return Err(PcmError::Gone);
        }
        let end = self.next + FAKE_PERIOD as u64;
        let now = self.clock.monotonic_ns();
        if self.position(now) > self.next + (FAKE_PERIOD * FAKE_PERIODS) as u64 {
            // Overrun: the buffer filled and the stream stopped; like
            // snd_pcm_recover, restart from now.
            self.t0_ns = now;
            self.next = 0;
            return Err(PcmError::Xrun);
        }
        let due = self.frame_time_ns(end).ceil() as u64;
        self.clock.sleep_until(due);
        if !(self.present)() {
            self.gone = true;
            return Err(PcmError::Gone);
        }
        let now = self.clock.monotonic_ns().max(due);
        let ch = self.params.channels as usize;
        buf.clear();
        buf.reserve(FAKE_PERIOD * ch);
        for i in self.next..end {
            let v = match self.params.content {
                Content::Tone => tone_at(self.frame_time_ns(i)),
                Content::Silence => 0.0,
            };
            let s = (v * 32767.0).round() as i16;
            buf.extend(std::iter::repeat_n(s, ch));
        }
        self.next = end;
        Ok(PeriodStamp {
            frames: FAKE_PERIOD,
            tstamp_ns: now,
            delay: self.position(now).saturating_sub(end),
        })
    }
}

/// The simulator backend: every file in `dir` is a card `sim:NAME`; its
/// content is `key=value` lines (`ppm=100`, `channels=1`,
/// `content=tone|silence`). Deleting the file unplugs the card (open fails
/// with [`PcmError::NotFound`], an open stream goes [`PcmError::Gone`]);
/// re-creating it plugs it back.
pub struct SimBackend {
    dir: PathBuf,
    clock: SharedClock,
}

impl SimBackend {
    pub fn new(dir: PathBuf, clock: SharedClock) -> Self {
        SimBackend { dir, clock }
    }

    fn params(&self, name: &str) -> Option<FakeParams> {
        let text = std::fs::read_to_string(self.dir.join(name)).ok()?;
        Some(parse_params(&text))
    }
}

/// Parses a simulated card's `key=value` lines; unknown keys are ignored.
pub fn parse_params(text: &str) -> FakeParams {
    let mut p = FakeParams::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "ppm" => p.ppm = v.parse().unwrap_or(0.0),
            "channels" => p.channels = v.parse().unwrap_or(2).clamp(1, 2),
            "content" => {
                p.content = if v == "silence" {
                    Content::Silence
                } else {
                    Content::Tone
                }
            }
            _ => {}
        }
    }
    p
}

impl PcmBackend for SimBackend {
    fn list(&self) -> Vec<AudioDeviceInfo> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| {
                let p = self.params(&n)?;
                Some(AudioDeviceInfo {
                    name: format!("sim:{n}"),
                    description: format!("simulated sound card {n}"),
                    rates: vec![FAKE_RATE],
                    channels: vec![p.channels],
                })
            })
            .collect()
    }

    fn open(&self, name: &str, _rate: u32, _channels: u32) -> Result<Box<dyn Pcm>, PcmError> {
        let file = name.strip_prefix("sim:").ok_or(PcmError::NotFound)?;
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return Err(PcmError::NotFound);
        }
        let params = self.params(file).ok_or(PcmError::NotFound)?;
        let path = self.dir.join(file);
        Ok(Box::new(FakePcm::open(
            self.clock.clone(),
            params,
            Box::new(move || path.is_file()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::{Clock, SimClock};
    use std::time::Duration;

    fn sim() -> (Arc<SimClock>, SharedClock) {
        let c = Arc::new(SimClock::new(1_700_000_000_000));
        c.advance(Duration::from_secs(5));
        (c.clone(), c)
    }

    #[test]
    fn periods_are_paced_by_the_card_clock() {
        let (c, clock) = sim();
        let plug = Plug::new();
        let params = FakeParams {
            ppm: 1000.0,
            channels: 1,
            content: Content::Tone,
        };
        let mut pcm = FakePcm::with_plug(clock, params, &plug);
        let mut buf = Vec::new();
        let start = c.monotonic_ns();
        for _ in 0..1000 {
            let st = pcm.read(&mut buf).unwrap();
            assert_eq!((st.frames, buf.len()), (FAKE_PERIOD, FAKE_PERIOD));
            assert_eq!(st.delay, 0, "read as soon as due");
        }
        // 480000 frames at 48048 Hz take 9.99 s, not 10.
        let took = c.monotonic_ns() - start;
        assert!((took as f64 - 1e10 / 1.001).abs() < 1e3, "{took}");
    }

    #[test]
    fn tone_starts_at_whole_seconds() {
        let (c, clock) = sim();
        let mut pcm = FakePcm::with_plug(clock, FakeParams::default(), &Plug::new());
        let mut buf = Vec::new();
        let mut first_loud = Vec::new();
        let mut idx = 0u64;
        while c.monotonic_ns() < 8_000_000_000 {
            let st = pcm.read(&mut buf).unwrap();
            assert_eq!(buf.len(), st.frames * 2);
            for f in buf.chunks(2) {
                assert_eq!(f[0], f[1]);
                if f[0].abs() > 3000 && first_loud.last().is_none_or(|&t| idx - t > 24_000) {
                    first_loud.push(idx);
                }
                idx += 1;
            }
        }
        // Opened at exactly 5 s: beeps at 5, 6 and 7 s, 48000 frames apart
        // (the sine crosses the threshold 2 samples in).
        assert_eq!(first_loud, vec![2, 48_002, 96_002]);
    }

    #[test]
    fn late_reader_gets_xrun_then_goes_on() {
        let (c, clock) = sim();
        let mut pcm = FakePcm::with_plug(clock, FakeParams::default(), &Plug::new());
        let mut buf = Vec::new();
        pcm.read(&mut buf).unwrap();
        // 230 ms late: still within the 250 ms buffer.
        c.advance(Duration::from_millis(230));
        let st = pcm.read(&mut buf).unwrap();
        assert_eq!((st.tstamp_ns, st.delay), (5_240_000_000, 10_560));
        // 300 ms late: overrun.
        c.advance(Duration::from_millis(300));
        assert_eq!(pcm.read(&mut buf), Err(PcmError::Xrun));
        let st = pcm.read(&mut buf).unwrap();
        assert_eq!(st.delay, 0);
    }

    #[test]
    fn unplug_is_gone_forever() {
        let (_c, clock) = sim();
        let plug = Plug::new();
        let mut pcm = FakePcm::with_plug(clock, FakeParams::default(), &plug);
        let mut buf = Vec::new();
        pcm.read(&mut buf).unwrap();
        plug.unplug();
        assert_eq!(pcm.read(&mut buf), Err(PcmError::Gone));
        plug.plug();
        assert_eq!(pcm.read(&mut buf), Err(PcmError::Gone));
    }

    #[test]
    fn sim_backend_follows_files() {
        let dir = std::env::temp_dir().join(format!("roomcast-alsa-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (_c, clock) = sim();
        let b = SimBackend::new(dir.clone(), clock);
        assert!(b.list().is_empty());
        assert_eq!(b.open("sim:mic", 48_000, 2).err(), Some(PcmError::NotFound));
        std::fs::write(dir.join("mic"), "ppm=100\nchannels=1\n").unwrap();
        let l = b.list();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].name.as_str(), l[0].channels.clone()),
            ("sim:mic", vec![1])
        );
        let mut pcm = b.open("sim:mic", 48_000, 2).unwrap();
        assert_eq!(pcm.channels(), 1);
        let mut buf = Vec::new();
        pcm.read(&mut buf).unwrap();
        std::fs::remove_file(dir.join("mic")).unwrap();
        assert_eq!(pcm.read(&mut buf), Err(PcmError::Gone));
        assert_eq!(b.open("sim:mic", 48_000, 2).err(), Some(PcmError::NotFound));
        std::fs::remove_dir_all(&dir).ok();
    }
}
