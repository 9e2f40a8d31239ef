//! Sound: capture, sync to the monotonic clock, AAC-LC, onto the frame bus.
//!
//! ```text
//!  PcmBackend ──open──► Pcm (ALSA card, fake card, simulator)
//!     periods + htstamp/delay │
//!                             ▼
//!  sync::Aligner: anchor on the monotonic clock, measure the card's drift,
//!  resample so the output sample counter is true time; silence while there
//!  is no device (same timeline, no PTS jump)
//!                             │ 1024 samples
//!                             ▼
//!  gain/mute (live) ─► aac::AacEncoder ─► EncodedFrame { track: Audio } ─► FrameBus
//! ```
//!
//! One thread (`audio`), [`AudioStage`]. Its frames are raw AAC-LC access
//! units of 1024 samples at 48 kHz; `capture_ns` is the monotonic time of
//! the first sample (the clock video frames are stamped with) and
//! consecutive frames are exactly 1920 ticks of 90 kHz apart.

pub mod aac;
#[cfg(target_os = "linux")]
pub mod alsa;
pub mod fake;
pub mod pcm;
pub mod sync;

pub use pcm::{AudioDeviceInfo, NoDevices, Pcm, PcmBackend, PcmError, PeriodStamp};

use crate::base::bus::FrameBus;
use crate::base::clock::SharedClock;
use crate::base::frame::{EncodedFrame, Track};
use crate::base::lock;
use roomcast_media::time::Ticks90k;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use sync::{Aligner, OUT_RATE};

/// Environment variable naming a directory of simulated sound cards (see
/// [`fake::SimBackend`]).
pub const SIM_ENV: &str = "ROOMCAST_ALSA_SIM";

/// The capture backend the daemon uses: ALSA, or the simulator when
/// `ROOMCAST_ALSA_SIM` names a directory.
pub fn backend(clock: SharedClock) -> Arc<dyn PcmBackend> {
    match std::env::var_os(SIM_ENV) {
        Some(dir) if !dir.is_empty() => Arc::new(fake::SimBackend::new(dir.into(), clock)),
        _ => real_backend(clock),
    }
}

#[cfg(target_os = "linux")]
fn real_backend(clock: SharedClock) -> Arc<dyn PcmBackend> {
    Arc::new(alsa::AlsaBackend::new(clock))
}

#[cfg(not(target_os = "linux"))]
fn real_backend(_clock: SharedClock) -> Arc<dyn PcmBackend> {
    Arc::new(NoDevices)
}

/// Capture devices for `/api/devices`.
pub fn devices(backend: &dyn PcmBackend) -> Vec<AudioDeviceInfo> {
    backend.list()
}

/// Where the sound comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioInput {
    /// The built-in test tone (a fake card on the daemon's clock, 0 ppm):
    /// a 1 kHz beep at every whole second, matching the pattern's flash.
    Tone,
    /// A named device (`alsa:NAME` without the prefix).
    Device(String),
    /// The first capture device the backend lists, silence until one exists.
    FirstDevice,
}

/// What the audio stage runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSettings {
    pub input: AudioInput,
    pub channels: u8,
    pub bitrate_kbps: u32,
    pub gain_db: i32,
    pub mute: bool,
}

impl AudioSettings {
    /// Resolves `[audio]` against the video source (`test` or
    /// `v4l2:/dev/videoN`): `tone` → the tone, `alsa:NAME` → that device,
    /// `auto` → the tone with the test pattern, else the first capture
    /// device. `None` for `source = "none"` (no audio track).
    pub fn resolve(
        audio: &crate::config::Audio,
        video: &crate::config::VideoSource,
    ) -> Option<Self> {
        let input = match audio.source.as_str() {
            "none" => return None,
            "tone" => AudioInput::Tone,
            "auto" if *video == crate::config::VideoSource::TestPattern => AudioInput::Tone,
            "auto" => AudioInput::FirstDevice,
            s => AudioInput::Device(s.strip_prefix("alsa:").unwrap_or(s).to_string()),
        };
        Some(AudioSettings {
            input,
            channels: audio.channels.clamp(1, 2),
            bitrate_kbps: audio.bitrate_kbps,
            gain_db: audio.gain_db,
            mute: audio.mute,
        })
    }
}

/// State shared with the thread.
struct Shared {
    stop: AtomicBool,
    gain_db: AtomicI32,
    mute: AtomicBool,
    status: Mutex<Status>,
}

#[derive(Debug, Clone, Default)]
struct Status {
    state: &'static str,
    device: String,
    reason: String,
    frames: u64,
    xruns: u64,
    opens: u64,
    drift_ppm: f64,
    ratio: f64,
    error_ms: f64,
}

/// The running audio stage: one thread from capture to the bus.
pub struct AudioStage {
    shared: Arc<Shared>,
    settings: AudioSettings,
    thread: Option<JoinHandle<()>>,
}

/// Reopen delays after a device is missing or lost.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl AudioStage {
    /// Starts the `audio` thread.
    pub fn start(
        clock: SharedClock,
        backend: Arc<dyn PcmBackend>,
        settings: AudioSettings,
        bus: Arc<FrameBus>,
    ) -> std::io::Result<AudioStage> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            gain_db: AtomicI32::new(settings.gain_db),
            mute: AtomicBool::new(settings.mute),
            status: Mutex::new(Status {
                state: "silence",
                ratio: 1.0,
                ..Status::default()
            }),
        });
        let thread = std::thread::Builder::new().name("audio".into()).spawn({
            let shared = shared.clone();
            let settings = settings.clone();
            move || run(clock, backend, settings, bus, shared)
        })?;
        Ok(AudioStage {
            shared,
            settings,
            thread: Some(thread),
        })
    }

    pub fn settings(&self) -> &AudioSettings {
        &self.settings
    }

    /// Changes gain and mute on the running stage (ramped over one frame).
    pub fn set_levels(&self, gain_db: i32, mute: bool) {
        self.shared
            .gain_db
            .store(gain_db.clamp(-40, 30), Ordering::Relaxed);
        self.shared.mute.store(mute, Ordering::Relaxed);
    }

    /// For `/api/status`: state (`live`, `silence`, `tone`), device, reason,
    /// counters, measured drift and resampling ratio.
    pub fn status_json(&self) -> serde_json::Value {
        let st = lock(&self.shared.status).clone();
        serde_json::json!({
            "state": st.state,
            "device": st.device,
            "reason": st.reason,
            "frames": st.frames,
            "xruns": st.xruns,
            "opens": st.opens,
            "drift_ppm": (st.drift_ppm * 10.0).round() / 10.0,
            "resample_ratio": st.ratio,
            "timeline_error_ms": (st.error_ms * 1000.0).round() / 1000.0,
            "channels": self.settings.channels,
            "bitrate_kbps": self.settings.bitrate_kbps,
            "gain_db": self.shared.gain_db.load(Ordering::Relaxed),
            "mute": self.shared.mute.load(Ordering::Relaxed),
        })
    }

    /// Stops the thread and waits for it (at most about one period).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AudioStage {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Linear gain for `gain_db`, 0 when muted.
fn gain_of(gain_db: i32, mute: bool) -> f32 {
    if mute {
        0.0
    } else {
        10f32.powf(gain_db as f32 / 20.0)
    }
}

/// Monotonic ns of output sample `idx` (may be negative: the encoder's
/// priming frame), rounded up so `Ticks90k::from_nanos` of it is exact when
/// `anchor_ns` is a whole millisecond and `idx` a multiple of 1024.
fn sample_time_ns(anchor_ns: u64, idx: i64) -> Option<u64> {
    let num = i128::from(idx) * 1_000_000_000;
    let rate = i128::from(OUT_RATE);
    let ceil = num.div_euclid(rate) + i128::from(num.rem_euclid(rate) != 0);
    u64::try_from(i128::from(anchor_ns) + ceil).ok()
}

fn run(
    clock: SharedClock,
    backend: Arc<dyn PcmBackend>,
    settings: AudioSettings,
    bus: Arc<FrameBus>,
    shared: Arc<Shared>,
) {
    let ch = usize::from(settings.channels.clamp(1, 2));
    // AAC-LC carries at most 6144 bits per channel per frame.
    let max_kbps = 288 * ch as u32;
    let mut encoder = match aac::AacEncoder::new(ch, settings.bitrate_kbps.min(max_kbps)) {
        Ok(e) => e,
        Err(e) => {
            let mut st = lock(&shared.status);
            st.reason = e.to_string();
            return;
        }
    };
    let set_status = |f: &mut dyn FnMut(&mut Status)| f(&mut lock(&shared.status));
    let mut aligner = Aligner::new(ch);
    let mut device: Option<(Box<dyn Pcm>, String)> = None;
    let mut next_open = clock.monotonic_ns();
    let mut backoff = BACKOFF_MIN;
    let mut buf: Vec<i16> = Vec::new();
    let mut planes = vec![Vec::new(); ch];
    let mut gain_now = gain_of(settings.gain_db, settings.mute);
    let is_tone = settings.input == AudioInput::Tone;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = clock.monotonic_ns();
        if device.is_none() && now >= next_open {
            let opened = match &settings.input {
                AudioInput::Tone => {
                    let params = fake::FakeParams {
                        ppm: 0.0,
                        channels: ch as u32,
                        content: fake::Content::Tone,
                    };
                    let pcm: Box<dyn Pcm> = Box::new(fake::FakePcm::open(
                        clock.clone(),
                        params,
                        Box::new(|| true),
                    ));
                    Ok((pcm, "tone".to_string()))
                }
                AudioInput::Device(name) => backend
                    .open(name, OUT_RATE, ch as u32)
                    .map(|p| (p, name.clone())),
                AudioInput::FirstDevice => match backend.list().into_iter().next() {
                    Some(d) => backend
                        .open(&d.name, OUT_RATE, ch as u32)
                        .map(|p| (p, d.name)),
                    None => Err(PcmError::NotFound),
                },
            };
            match opened {
                Ok((pcm, name)) => {
                    backoff = BACKOFF_MIN;
                    set_status(&mut |st| {
                        st.opens += 1;
                        st.state = if is_tone { "tone" } else { "live" };
                        st.device = name.clone();
                        st.reason.clear();
                    });
                    device = Some((pcm, name));
                }
                Err(e) => {
                    next_open = now + backoff.as_nanos() as u64;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    let reason = match (&settings.input, &e) {
                        (AudioInput::FirstDevice, PcmError::NotFound) => {
                            "no capture device".to_string()
                        }
                        _ => e.to_string(),
                    };
                    set_status(&mut |st| {
                        st.state = "silence";
                        st.reason = reason.clone();
                    });
                }
            }
        }
        match device.as_mut() {
            Some((pcm, _)) => match pcm.read(&mut buf) {
                Ok(stamp) => aligner.push(
                    &buf,
                    pcm.channels() as usize,
                    pcm.rate(),
                    stamp.tstamp_ns,
                    stamp.delay,
                ),
                Err(PcmError::Xrun) => {
                    aligner.input_lost();
                    set_status(&mut |st| st.xruns += 1);
                }
                Err(e) => {
                    aligner.input_lost();
                    device = None;
                    let now = clock.monotonic_ns();
                    next_open = now + backoff.as_nanos() as u64;
                    set_status(&mut |st| {
                        st.state = "silence";
                        st.reason = e.to_string();
                    });
                }
            },
            None => {
                let wake = next_open.min(now + 10_000_000).max(now + 1_000_000);
                clock.sleep_until(wake);
                aligner.fill_silence_until(clock.monotonic_ns());
            }
        }
        // Encode and publish whatever is ready.
        while let Some(first) = aligner.pop(aac::FRAME, &mut planes) {
            let target = gain_of(
                shared.gain_db.load(Ordering::Relaxed),
                shared.mute.load(Ordering::Relaxed),
            );
            for p in &mut planes {
                for (i, x) in p.iter_mut().enumerate() {
                    let g = gain_now + (target - gain_now) * (i + 1) as f32 / aac::FRAME as f32;
                    *x *= g;
                }
            }
            gain_now = target;
            let au = match encoder.encode(&planes) {
                Ok(au) => au,
                Err(e) => {
                    set_status(&mut |st| st.reason = e.to_string());
                    continue;
                }
            };
            // The access unit decodes to the previous frame (priming delay).
            let anchor = aligner.anchor_ns().unwrap_or(0);
            let Some(capture_ns) = sample_time_ns(anchor, first as i64 - aac::FRAME as i64) else {
                continue;
            };
            let now = clock.monotonic_ns();
            let wall_ms = clock
                .wall_unix_ms()
                .saturating_sub(now.saturating_sub(capture_ns) / 1_000_000);
            let pts = Ticks90k::from_nanos(capture_ns);
            bus.publish(Arc::new(EncodedFrame {
                capture_ns,
                wall_ms,
                pts,
                dts: pts,
                duration: Ticks90k(1920),
                keyframe: false,
                data: au,
                epoch: 0,
                width: 0,
                height: 0,
                rendition: 0,
                track: Track::Audio,
            }));
            set_status(&mut |st| st.frames += 1);
        }
        let s = aligner.stats();
        set_status(&mut |st| {
            st.drift_ppm = s.drift_ppm;
            st.ratio = s.ratio;
            st.error_ms = s.error_ns / 1e6;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::RealClock;
    use crate::config::Audio;

    #[test]
    fn resolve_follows_the_source_rules() {
        let mut a = Audio::default();
        let r = |a: &Audio, v: &str| {
            let video = match v.strip_prefix("v4l2:") {
                Some(p) => crate::config::VideoSource::Camera(p.into()),
                None => crate::config::VideoSource::TestPattern,
            };
            AudioSettings::resolve(a, &video).map(|s| s.input)
        };
        assert_eq!(r(&a, "test"), Some(AudioInput::Tone));
        assert_eq!(r(&a, "v4l2:/dev/video0"), Some(AudioInput::FirstDevice));
        a.source = "tone".into();
        assert_eq!(r(&a, "v4l2:/dev/video0"), Some(AudioInput::Tone));
        a.source = "alsa:hw:CARD=Device,DEV=0".into();
        assert_eq!(
            r(&a, "test"),
            Some(AudioInput::Device("hw:CARD=Device,DEV=0".into()))
        );
        a.source = "none".into();
        assert_eq!(r(&a, "test"), None);
    }

    #[test]
    fn sample_times_give_exact_ticks() {
        let anchor = 7_013_000_000;
        let t0 = Ticks90k::from_nanos(anchor).0;
        for n in [-1i64, 0, 1, 2, 3, 1000, 1_000_001] {
            let ns = sample_time_ns(anchor, n * 1024).unwrap();
            assert_eq!(
                Ticks90k::from_nanos(ns).0 as i64,
                t0 as i64 + n * 1920,
                "{n}"
            );
        }
        assert_eq!(sample_time_ns(10_000_000, -1024), None);
    }

    fn settings(input: AudioInput) -> AudioSettings {
        AudioSettings {
            input,
            channels: 2,
            bitrate_kbps: 128,
            gain_db: 0,
            mute: false,
        }
    }

    /// Pops every audio frame queued, checking pts continuity.
    fn drain_checked(
        q: &crate::base::bus::SinkQueue,
        last_pts: &mut Option<u64>,
    ) -> Vec<crate::base::frame::SharedFrame> {
        let mut got = Vec::new();
        while let Some(f) = q.pop_timeout(Duration::ZERO) {
            assert!(f.is_audio());
            assert_eq!(f.duration, Ticks90k(1920));
            assert_eq!(f.pts, Ticks90k::from_nanos(f.capture_ns));
            assert_eq!(f.dts, f.pts);
            if let Some(p) = *last_pts {
                assert_eq!(f.pts.0, p + 1920, "pts continuous");
            }
            *last_pts = Some(f.pts.0);
            got.push(f);
        }
        got
    }

    #[test]
    fn stage_publishes_continuous_frames_from_a_fake_card() {
        let clock: SharedClock = Arc::new(RealClock::new());
        clock.sleep_until(30_000_000);
        let bus = Arc::new(FrameBus::new());
        let q = bus.subscribe("t", 200);
        let stage = AudioStage::start(
            clock.clone(),
            Arc::new(NoDevices),
            settings(AudioInput::Tone),
            bus,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(2_100));
        let status = stage.status_json();
        stage.stop();
        let mut last = None;
        let frames = drain_checked(&q, &mut last);
        eprintln!("{} frames in 2.1 s, status {status}", frames.len());
        // 46.875 frames a second, minus capture and encoder latency.
        assert!((90..=100).contains(&frames.len()), "{}", frames.len());
        assert_eq!(status["state"], "tone");
        assert_eq!(status["opens"], 1);
        let wall = clock.wall_unix_ms();
        assert!(frames
            .iter()
            .all(|f| f.wall_ms <= wall && f.wall_ms + 3_000 > wall));
        assert!(frames.iter().all(|f| !f.data.is_empty() && !f.keyframe));
    }

    #[test]
    fn unplug_gives_silence_with_continuous_pts_and_replug_is_live_again() {
        let dir = std::env::temp_dir().join(format!("roomcast-audio-stage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mic"), "ppm=200\nchannels=1\n").unwrap();
        let clock: SharedClock = Arc::new(RealClock::new());
        clock.sleep_until(30_000_000);
        let backend: Arc<dyn PcmBackend> =
            Arc::new(fake::SimBackend::new(dir.clone(), clock.clone()));
        assert_eq!(devices(backend.as_ref()).len(), 1);
        let bus = Arc::new(FrameBus::new());
        let q = bus.subscribe("t", 200);
        let stage = AudioStage::start(
            clock.clone(),
            backend,
            settings(AudioInput::FirstDevice),
            bus,
        )
        .unwrap();
        let mut last = None;
        let mut total = 0;
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(stage.status_json()["state"], "live");
        assert_eq!(stage.status_json()["device"], "sim:mic");
        total += drain_checked(&q, &mut last).len();
        std::fs::remove_file(dir.join("mic")).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let st = stage.status_json();
        assert_eq!(st["state"], "silence", "{st}");
        total += drain_checked(&q, &mut last).len();
        std::fs::write(dir.join("mic"), "ppm=-200\nchannels=2\n").unwrap();
        std::thread::sleep(Duration::from_millis(2_700));
        let st = stage.status_json();
        assert_eq!(st["state"], "live", "{st}");
        assert_eq!(st["opens"], 2, "{st}");
        // Levels change live.
        stage.set_levels(-6, true);
        assert_eq!(stage.status_json()["mute"], true);
        total += drain_checked(&q, &mut last).len();
        stage.stop();
        total += drain_checked(&q, &mut last).len();
        eprintln!("{total} frames over ~4.1 s with an unplug");
        // Continuous: about 4.1 s worth of frames, none missing in between.
        assert!(total >= 180, "{total}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
