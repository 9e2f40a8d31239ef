//! Wires a source and an encoder to the frame bus, each on its own thread:
//!
//! ```text
//! capture thread ──(bounded, 2 pictures; full = drop + count)──► encoder thread ──► FrameBus
//!       ▲                                                               │
//!       └──────────────── recycled picture buffers ◄────────────────────┘
//! ```
//!
//! Capture never waits for the encoder: when the encoder is behind, the new
//! picture is dropped and counted. Applying new settings opens the new
//! encoder first (so a failure leaves the running stream alone), then stops
//! the old threads and starts new ones under a new epoch.

use crate::audio::{AudioSettings, AudioStage, PcmBackend};
use crate::base::bus::FrameBus;
use crate::base::clock::SharedClock;
use crate::base::frame::{EncodedFrame, I420Frame, RawFrame};
use crate::base::lock;
use crate::base::stats::{Current, Stats};
use crate::config::{ValidConfig, VideoSource};
use crate::encoder::{
    self, EncodeError, EncodedPicture, EncoderChoice, EncoderSettings, VideoEncoder,
};
use crate::source::camera::{CameraSource, CameraStatus, LiveControls};
use crate::source::scale::Scaler;
use crate::source::{Next, PassthroughFrame, Source, TestSource};
use crate::v4l2::mode::Want;
use crate::v4l2::Backend;
use roomcast_media::time::Ticks90k;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Pictures that may wait between capture and encoder.
const RAW_QUEUE: usize = 2;

pub struct Pipeline {
    clock: SharedClock,
    bus: Arc<FrameBus>,
    stats: Arc<Stats>,
    backend: Arc<dyn Backend>,
    epoch: Arc<AtomicU32>,
    /// The camera's state while a V4L2 source runs.
    pub camera: Arc<Mutex<CameraStatus>>,
    controls: Arc<LiveControls>,
    running: Mutex<Option<Running>>,
    /// Sound capture devices (ALSA, or the simulator).
    audio_backend: Arc<dyn PcmBackend>,
    /// The sound stage, while the stream has an audio track.
    audio: Mutex<Option<AudioStage>>,
}

struct Running {
    stop: Arc<AtomicBool>,
    capture: JoinHandle<()>,
    encoder: JoinHandle<()>,
}

/// What travels from capture to the encoder thread.
enum Input {
    Picture(RawFrame),
    Encoded(PassthroughFrame),
}

impl Pipeline {
    pub fn new(
        clock: SharedClock,
        bus: Arc<FrameBus>,
        stats: Arc<Stats>,
        backend: Arc<dyn Backend>,
    ) -> Self {
        Pipeline {
            clock,
            bus,
            stats,
            backend,
            epoch: Arc::new(AtomicU32::new(0)),
            camera: Arc::default(),
            controls: Arc::default(),
            running: Mutex::new(None),
            audio_backend: Arc::new(crate::audio::NoDevices),
            audio: Mutex::new(None),
        }
    }

    /// Where sound comes from (the daemon passes `audio::backend`); without
    /// it only the test tone is available.
    pub fn with_audio_backend(mut self, backend: Arc<dyn PcmBackend>) -> Self {
        self.audio_backend = backend;
        self
    }

    /// Sound capture devices present now, for `/api/devices`.
    pub fn audio_devices(&self) -> Vec<crate::audio::AudioDeviceInfo> {
        crate::audio::devices(self.audio_backend.as_ref())
    }

    /// The sound stage's status; `{"state": "off"}` without an audio track.
    pub fn audio_status_json(&self) -> serde_json::Value {
        match lock(&self.audio).as_ref() {
            Some(a) => a.status_json(),
            None => serde_json::json!({ "state": "off" }),
        }
    }

    /// Starts, restarts or stops the sound stage to match `cfg`; gain and
    /// mute alone change the running one. Video is not touched.
    pub fn apply_audio(&self, cfg: &ValidConfig) {
        let c = cfg.get();
        let want = AudioSettings::resolve(&c.audio, cfg.source());
        let mut audio = lock(&self.audio);
        let same = |a: &AudioSettings, b: &AudioSettings| {
            (&a.input, a.channels, a.bitrate_kbps) == (&b.input, b.channels, b.bitrate_kbps)
        };
        match (audio.as_ref(), &want) {
            (Some(run), Some(w)) if same(run.settings(), w) => {
                run.set_levels(w.gain_db, w.mute);
                return;
            }
            (None, None) => return,
            _ => {}
        }
        if let Some(old) = audio.take() {
            old.stop();
        }
        if let Some(w) = want {
            let started = AudioStage::start(
                self.clock.clone(),
                self.audio_backend.clone(),
                w,
                self.bus.clone(),
            );
            match started {
                Ok(stage) => *audio = Some(stage),
                // Only thread creation fails here; the stream goes on
                // without sound and status says "off".
                Err(e) => eprintln!("roomcast: cannot start the audio thread: {e}"),
            }
        }
    }

    /// Cameras and hardware encoders present now, with their modes.
    pub fn devices(&self) -> Vec<crate::v4l2::DeviceInfo> {
        crate::v4l2::describe(self.backend.as_ref())
    }

    /// Camera controls changed: applied by the running capture, no restart.
    pub fn set_controls(&self, cfg: &ValidConfig) {
        self.controls.set(cfg.get().camera.clone());
        self.apply_audio(cfg);
    }

    /// Starts (or restarts with) `cfg`. On error the old stream keeps going.
    pub fn apply(&self, cfg: &ValidConfig) -> Result<(), EncodeError> {
        let c = cfg.get();
        let settings = EncoderSettings {
            width: c.video.width,
            height: c.video.height,
            fps: c.video.fps,
            bitrate_kbps: c.video.bitrate_kbps,
            gop: c.video.gop,
            threads: c.video.threads,
        };
        let choice = encoder::resolve(cfg.encoder(), self.backend.as_ref());
        // Open the encoder before touching the running stream, so a bad
        // choice fails here and changes nothing.
        let enc = choice.open(settings, self.backend.as_ref())?;
        let mut rungs = Vec::new();
        for r in &cfg.renditions()[1..] {
            let rung = EncoderSettings {
                width: r.width,
                height: r.height,
                bitrate_kbps: r.bitrate_kbps,
                ..settings
            };
            rungs.push(Rung::open(&choice, rung, self.backend.as_ref())?);
        }
        self.controls.set(c.camera.clone());
        let keyframe = Arc::new(AtomicBool::new(false));
        let source: Box<dyn Source> = match cfg.source() {
            VideoSource::Camera(path) => Box::new(CameraSource::new(
                self.backend.clone(),
                path,
                Want {
                    width: settings.width,
                    height: settings.height,
                    fps: settings.fps,
                    passthrough: choice == EncoderChoice::Passthrough,
                },
                self.controls.clone(),
                self.clock.clone(),
                self.camera.clone(),
                keyframe.clone(),
            )),
            VideoSource::TestPattern => Box::new(TestSource::new(
                self.clock.clone(),
                settings.width,
                settings.height,
                settings.fps,
            )),
        };
        let mut running = lock(&self.running);
        if let Some(old) = running.take() {
            old.stop.store(true, Relaxed);
            let _ = old.capture.join();
            let _ = old.encoder.join();
            self.stats.encoder_restarts.fetch_add(1, Relaxed);
        }
        if *cfg.source() == VideoSource::TestPattern {
            *lock(&self.camera) = CameraStatus::default();
        }
        let source_kind = source.kind();
        let stop = Arc::new(AtomicBool::new(false));
        let (raw_tx, raw_rx) = mpsc::sync_channel(RAW_QUEUE);
        let (free_tx, free_rx) = mpsc::channel();
        let capture = {
            let (stop, stats) = (stop.clone(), self.stats.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || capture_loop(source, raw_tx, free_rx, &stats, &stop))
                .expect("spawn capture thread")
        };
        let encoder = {
            let mut stage = EncoderStage {
                choice,
                settings,
                backend: self.backend.clone(),
                current: Some((enc, settings.width, settings.height)),
                producer: None,
                epochs: self.epoch.clone(),
                epoch: 0,
                camera_keyframe: keyframe,
                waiting_for_key: false,
                source: source_kind,
                rungs,
            };
            let (bus, stats) = (self.bus.clone(), self.stats.clone());
            std::thread::Builder::new()
                .name("encoder".into())
                .spawn(move || stage.run(raw_rx, free_tx, &bus, &stats))
                .expect("spawn encoder thread")
        };
        *running = Some(Running {
            stop,
            capture,
            encoder,
        });
        drop(running);
        self.apply_audio(cfg);
        Ok(())
    }

    /// Stops capture and encoding (sinks keep their queues).
    pub fn stop(&self) {
        if let Some(a) = lock(&self.audio).take() {
            a.stop();
        }
        if let Some(old) = lock(&self.running).take() {
            old.stop.store(true, Relaxed);
            let _ = old.capture.join();
            let _ = old.encoder.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Produces pictures until `stop`; never blocks on the encoder.
fn capture_loop(
    mut source: Box<dyn Source>,
    tx: SyncSender<Input>,
    free: Receiver<I420Frame>,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let mut spare: Option<I420Frame> = None;
    while !stop.load(Relaxed) {
        let buffer = match free.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                spare.take().unwrap_or_else(|| I420Frame::new(0, 0))
            }
        };
        let input = match source.next(buffer) {
            Next::Idle(picture) => {
                spare = Some(picture);
                continue;
            }
            Next::Picture(raw) => Input::Picture(raw),
            Next::Encoded { frame, picture } => {
                spare = Some(picture);
                Input::Encoded(frame)
            }
        };
        stats.captured.fetch_add(1, Relaxed);
        match tx.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(input)) => {
                stats.capture_dropped.fetch_add(1, Relaxed);
                if let Input::Picture(raw) = input {
                    spare = Some(raw.picture);
                }
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}

/// The encoder stage alone, fed pictures by the caller instead of a capture
/// thread (benchmarks measure the pipeline's cost this way): encodes and
/// publishes until `rx` hangs up, returning each picture on `free`.
pub fn encode_pictures(
    enc: Box<dyn VideoEncoder>,
    rungs: Vec<Rung>,
    settings: EncoderSettings,
    rx: Receiver<RawFrame>,
    free: Sender<I420Frame>,
    bus: &FrameBus,
    stats: &Stats,
) {
    let mut stage = EncoderStage {
        choice: EncoderChoice::OpenH264,
        settings,
        backend: crate::v4l2::no_devices(),
        current: Some((enc, settings.width, settings.height)),
        producer: None,
        epochs: Arc::default(),
        epoch: 0,
        camera_keyframe: Arc::default(),
        waiting_for_key: false,
        source: "test",
        rungs,
    };
    while let Ok(raw) = rx.recv() {
        let wants_key = bus.take_keyframe_request();
        stage.picture(&raw, wants_key, bus, stats);
        let _ = free.send(raw.picture);
    }
}

/// Who makes the frames now; a change starts a new epoch (discontinuity).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Producer {
    Encoder { width: u32, height: u32 },
    Camera { width: u32, height: u32 },
}

/// The encoder thread's state: the encoder (reopened when the picture size
/// changes, e.g. a camera that came back in another mode) and the epoch.
struct EncoderStage {
    choice: EncoderChoice,
    settings: EncoderSettings,
    backend: Arc<dyn Backend>,
    current: Option<(Box<dyn VideoEncoder>, u32, u32)>,
    producer: Option<Producer>,
    epochs: Arc<AtomicU32>,
    epoch: u32,
    /// Set to ask a pass-through camera for an IDR.
    camera_keyframe: Arc<AtomicBool>,
    /// Pass-through frames are dropped until the camera's next IDR.
    waiting_for_key: bool,
    source: &'static str,
    /// The ladder's lower renditions, encoded from the same pictures.
    rungs: Vec<Rung>,
}

/// One lower rendition: its scaler, picture buffer and encoder. It makes
/// an IDR exactly when the top rendition does (asked for before each
/// picture the top one made an IDR of, and its own GOP counts the same
/// pictures), so segments and parts of every rendition start on the same
/// capture time and a player switches without a gap.
pub struct Rung {
    settings: EncoderSettings,
    encoder: Box<dyn VideoEncoder>,
    /// The scaler for the top picture's size (a camera may come back in
    /// another mode), with that size.
    scaler: Option<(Scaler, usize, usize)>,
    picture: I420Frame,
}

impl Rung {
    /// Opens the rung's encoder: a second openh264 instance, or a second
    /// context of the same M2M device (each open of a V4L2 M2M node is its
    /// own context).
    pub fn open(
        choice: &EncoderChoice,
        settings: EncoderSettings,
        backend: &dyn Backend,
    ) -> Result<Rung, EncodeError> {
        Ok(Rung {
            encoder: choice.open(settings, backend)?,
            picture: I420Frame::new(settings.width as usize, settings.height as usize),
            scaler: None,
            settings,
        })
    }

    /// Scales `top` down and encodes it; an IDR when `keyframe`.
    fn encode(
        &mut self,
        top: &I420Frame,
        keyframe: bool,
    ) -> Result<Option<EncodedPicture>, EncodeError> {
        let (w, h) = (self.settings.width as usize, self.settings.height as usize);
        let scaler = match &mut self.scaler {
            Some((s, sw, sh)) if (*sw, *sh) == (top.width, top.height) => s,
            slot => {
                &mut slot
                    .insert((
                        Scaler::new(top.width, top.height, w, h),
                        top.width,
                        top.height,
                    ))
                    .0
            }
        };
        scaler.run(top, &mut self.picture);
        if keyframe {
            self.encoder.request_keyframe();
        }
        self.encoder.encode(&self.picture)
    }
}

impl EncoderStage {
    /// Encodes or forwards inputs until the capture side hangs up.
    /// Timestamps are the capture's, unchanged.
    fn run(&mut self, rx: Receiver<Input>, free: Sender<I420Frame>, bus: &FrameBus, stats: &Stats) {
        while let Ok(input) = rx.recv() {
            let wants_key = bus.take_keyframe_request();
            match input {
                Input::Picture(raw) => {
                    self.picture(&raw, wants_key, bus, stats);
                    let _ = free.send(raw.picture);
                }
                Input::Encoded(frame) => self.passthrough(frame, wants_key, bus, stats),
            }
        }
    }

    /// Marks a producer change: a new epoch, and status says what runs.
    fn switch_to(&mut self, p: Producer, encoder: String, stats: &Stats) {
        if self.producer == Some(p) {
            return;
        }
        if self.producer.is_some() {
            self.epoch = self.epochs.fetch_add(1, Relaxed) + 1;
        } else {
            self.epoch = self.epochs.fetch_add(1, Relaxed);
        }
        self.producer = Some(p);
        let (width, height) = match p {
            Producer::Encoder { width, height } | Producer::Camera { width, height } => {
                (width, height)
            }
        };
        *lock(&stats.current) = Current {
            source: self.source,
            encoder,
            width,
            height,
            fps: self.settings.fps,
        };
    }

    fn picture(&mut self, raw: &RawFrame, wants_key: bool, bus: &FrameBus, stats: &Stats) {
        let (w, h) = (raw.picture.width as u32, raw.picture.height as u32);
        if !matches!(&self.current, Some((_, cw, ch)) if (*cw, *ch) == (w, h)) {
            self.current = None;
            let settings = EncoderSettings {
                width: w,
                height: h,
                ..self.settings
            };
            // Pass-through only encodes slates: openh264 does that.
            let choice = match &self.choice {
                EncoderChoice::Passthrough => EncoderChoice::OpenH264,
                other => other.clone(),
            };
            match choice.open(settings, self.backend.as_ref()) {
                Ok(enc) => self.current = Some((enc, w, h)),
                Err(e) => {
                    if stats.encode_errors.fetch_add(1, Relaxed) == 0 {
                        eprintln!("roomcast: {e}");
                    }
                    return;
                }
            }
        }
        let Some((enc, _, _)) = self.current.as_mut() else {
            return;
        };
        let producer = Producer::Encoder {
            width: w,
            height: h,
        };
        if self.producer != Some(producer) {
            // A new stream starts on an IDR.
            enc.request_keyframe();
            let name = enc.name();
            self.switch_to(producer, name, stats);
        } else if wants_key {
            if let Some((enc, _, _)) = self.current.as_mut() {
                enc.request_keyframe();
            }
        }
        let Some((enc, _, _)) = self.current.as_mut() else {
            return;
        };
        let stamp = |width, height| Stamped {
            capture_ns: raw.capture_ns,
            wall_ms: raw.wall_ms,
            duration_ns: raw.duration_ns,
            width,
            height,
        };
        match enc.encode(&raw.picture) {
            Ok(Some(pic)) => {
                let keyframe = pic.keyframe;
                publish(bus, stats, self.epoch, 0, stamp(w, h), keyframe, pic.data);
                for (i, rung) in self.rungs.iter_mut().enumerate() {
                    let (rw, rh) = (rung.settings.width, rung.settings.height);
                    match rung.encode(&raw.picture, keyframe) {
                        Ok(Some(p)) => {
                            let r = i as u8 + 1;
                            publish(bus, stats, self.epoch, r, stamp(rw, rh), p.keyframe, p.data)
                        }
                        Ok(None) => {}
                        Err(e) => {
                            if stats.encode_errors.fetch_add(1, Relaxed) == 0 {
                                eprintln!("roomcast: rendition {}: {e}", i + 1);
                            }
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                // One bad picture is not a reason to stop the stream.
                if stats.encode_errors.fetch_add(1, Relaxed) == 0 {
                    eprintln!("roomcast: {e}");
                }
            }
        }
    }

    fn passthrough(&mut self, f: PassthroughFrame, wants_key: bool, bus: &FrameBus, stats: &Stats) {
        let producer = Producer::Camera {
            width: f.width,
            height: f.height,
        };
        if self.producer != Some(producer) {
            self.switch_to(producer, "passthrough".into(), stats);
            self.waiting_for_key = true;
        }
        if wants_key || (self.waiting_for_key && !f.keyframe) {
            self.camera_keyframe.store(true, Relaxed);
        }
        if self.waiting_for_key && !f.keyframe {
            return;
        }
        self.waiting_for_key = false;
        publish(
            bus,
            stats,
            self.epoch,
            0,
            Stamped {
                capture_ns: f.capture_ns,
                wall_ms: f.wall_ms,
                duration_ns: f.duration_ns,
                width: f.width,
                height: f.height,
            },
            f.keyframe,
            f.data,
        );
    }
}

/// Timing and size of one frame, whoever encoded it.
struct Stamped {
    capture_ns: u64,
    wall_ms: u64,
    duration_ns: u64,
    width: u32,
    height: u32,
}

/// Puts one encoded picture of rendition `rendition` on the bus; the
/// encoder statistics count the top rendition's.
fn publish(
    bus: &FrameBus,
    stats: &Stats,
    epoch: u32,
    rendition: u8,
    s: Stamped,
    keyframe: bool,
    data: Vec<u8>,
) {
    let ts = Ticks90k::from_nanos(s.capture_ns);
    if rendition == 0 {
        stats.on_encoded(s.capture_ns, data.len());
    }
    bus.publish(Arc::new(EncodedFrame {
        capture_ns: s.capture_ns,
        wall_ms: s.wall_ms,
        // Constrained baseline has no B-frames: decode order is display
        // order (pass-through cameras are assumed to send none either).
        pts: ts,
        dts: ts,
        duration: Ticks90k::from_nanos(s.duration_ns),
        keyframe,
        data,
        epoch,
        width: s.width,
        height: s.height,
        rendition,
        track: crate::base::frame::Track::Video,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::RealClock;
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn apply_streams_and_restart_bumps_epoch() {
        let bus = Arc::new(FrameBus::new());
        let q = bus.subscribe("t", 100);
        let stats = Arc::new(Stats::default());
        let p = Pipeline::new(
            Arc::new(RealClock::new()),
            bus.clone(),
            stats.clone(),
            crate::v4l2::no_devices(),
        );
        let mut c = Config::default();
        (c.video.width, c.video.height, c.video.fps, c.video.gop) = (64, 64, 50, 5);
        p.apply(&c.clone().validate().unwrap()).unwrap();
        let first = q.pop_timeout(Duration::from_secs(5)).unwrap();
        assert!(first.keyframe && first.epoch == 0);
        let second = q.pop_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(second.pts.0 - first.pts.0, 1800); // 1/50 s at 90 kHz
        c.video.bitrate_kbps = 300;
        p.apply(&c.validate().unwrap()).unwrap();
        let restarted = std::iter::from_fn(|| q.pop_timeout(Duration::from_secs(5)))
            .find(|f| f.epoch == 1)
            .unwrap();
        assert!(restarted.keyframe);
        assert!(restarted.capture_ns > second.capture_ns);
        assert_eq!(stats.encoder_restarts.load(Relaxed), 1);
        p.stop();
        assert!(stats.encoded.load(Relaxed) >= 3);
    }
}
