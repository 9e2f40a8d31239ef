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

use crate::bus::{lock, FrameBus};
use crate::clock::SharedClock;
use crate::config::ValidConfig;
use crate::encoder::{self, EncodeError, EncoderSettings, VideoEncoder};
use crate::frame::{EncodedFrame, I420Frame, RawFrame};
use crate::source::{Source, TestSource};
use crate::stats::{Current, Stats};
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
    epoch: AtomicU32,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: Arc<AtomicBool>,
    capture: JoinHandle<()>,
    encoder: JoinHandle<()>,
}

impl Pipeline {
    pub fn new(clock: SharedClock, bus: Arc<FrameBus>, stats: Arc<Stats>) -> Self {
        Pipeline {
            clock,
            bus,
            stats,
            epoch: AtomicU32::new(0),
            running: Mutex::new(None),
        }
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
        let enc = encoder::open(&c.encoder, settings)?;
        let source = TestSource::new(
            self.clock.clone(),
            settings.width,
            settings.height,
            settings.fps,
        );
        let mut running = lock(&self.running);
        if let Some(old) = running.take() {
            old.stop.store(true, Relaxed);
            let _ = old.capture.join();
            let _ = old.encoder.join();
            self.stats.encoder_restarts.fetch_add(1, Relaxed);
        }
        *lock(&self.stats.current) = Current {
            source: source.kind(),
            encoder: enc.kind(),
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
        };
        let epoch = self.epoch.fetch_add(1, Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let (raw_tx, raw_rx) = mpsc::sync_channel(RAW_QUEUE);
        let (free_tx, free_rx) = mpsc::channel();
        let capture = {
            let (stop, stats) = (stop.clone(), self.stats.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || capture_loop(Box::new(source), raw_tx, free_rx, &stats, &stop))
                .expect("spawn capture thread")
        };
        let encoder = {
            let (bus, stats) = (self.bus.clone(), self.stats.clone());
            std::thread::Builder::new()
                .name("encoder".into())
                .spawn(move || encode_loop(enc, raw_rx, free_tx, &bus, &stats, epoch))
                .expect("spawn encoder thread")
        };
        *running = Some(Running {
            stop,
            capture,
            encoder,
        });
        Ok(())
    }

    /// Stops capture and encoding (sinks keep their queues).
    pub fn stop(&self) {
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
pub fn capture_loop(
    mut source: Box<dyn Source>,
    tx: SyncSender<RawFrame>,
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
        let raw = source.next(buffer);
        stats.captured.fetch_add(1, Relaxed);
        match tx.try_send(raw) {
            Ok(()) => {}
            Err(TrySendError::Full(raw)) => {
                stats.capture_dropped.fetch_add(1, Relaxed);
                spare = Some(raw.picture);
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}

/// Encodes pictures as they come and publishes them on the bus; returns when
/// the capture side hangs up. Timestamps are the capture's, unchanged.
pub fn encode_loop(
    mut enc: Box<dyn VideoEncoder>,
    rx: Receiver<RawFrame>,
    free: Sender<I420Frame>,
    bus: &FrameBus,
    stats: &Stats,
    epoch: u32,
) {
    while let Ok(raw) = rx.recv() {
        match enc.encode(&raw.picture) {
            Ok(Some(pic)) => {
                let ts = Ticks90k::from_nanos(raw.capture_ns);
                stats.on_encoded(raw.capture_ns, pic.data.len());
                bus.publish(Arc::new(EncodedFrame {
                    capture_ns: raw.capture_ns,
                    wall_ms: raw.wall_ms,
                    // Constrained baseline has no B-frames: decode order is
                    // display order.
                    pts: ts,
                    dts: ts,
                    duration: Ticks90k::from_nanos(raw.duration_ns),
                    keyframe: pic.keyframe,
                    data: pic.data,
                    epoch,
                    width: raw.picture.width as u32,
                    height: raw.picture.height as u32,
                }));
            }
            Ok(None) => {}
            Err(e) => {
                // One bad picture is not a reason to stop the stream.
                if stats.encode_errors.fetch_add(1, Relaxed) == 0 {
                    eprintln!("roomcast: {e}");
                }
            }
        }
        let _ = free.send(raw.picture);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RealClock;
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn apply_streams_and_restart_bumps_epoch() {
        let bus = Arc::new(FrameBus::new());
        let q = bus.subscribe("t", 100);
        let stats = Arc::new(Stats::default());
        let p = Pipeline::new(Arc::new(RealClock::new()), bus.clone(), stats.clone());
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
