//! The frame bus: fans encoded frames out to every sink, each through its own
//! bounded queue, so a slow or dead sink never makes the encoder (or capture)
//! wait and never changes what the other sinks get.
//!
//! When a sink's queue is full, the new frame is dropped and so is every
//! frame after it up to the next keyframe (a P-frame without its reference is
//! useless); when that keyframe arrives the stale backlog is discarded too,
//! so the sink resumes with the freshest decodable picture. Every dropped
//! frame is counted.

use super::lock;
use crate::base::frame::SharedFrame;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Publishes frames to all subscribed sinks.
#[derive(Default)]
pub struct FrameBus {
    sinks: Mutex<Vec<Arc<SinkQueue>>>,
    /// A sink wants a keyframe soon (a receiver joined); the encoder
    /// stage takes it.
    keyframe_wanted: Arc<AtomicBool>,
}

impl FrameBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink of the top rendition with room for `capacity` frames.
    pub fn subscribe(&self, name: &str, capacity: usize) -> Arc<SinkQueue> {
        self.subscribe_rendition(name, capacity, 0)
    }

    /// Adds a sink that takes the video of one rendition of the ladder
    /// (0 = the top one) and all the audio.
    pub fn subscribe_rendition(
        &self,
        name: &str,
        capacity: usize,
        rendition: u8,
    ) -> Arc<SinkQueue> {
        let q = Arc::new(SinkQueue {
            name: name.to_string(),
            capacity: capacity.max(1),
            rendition,
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            keyframe_wanted: self.keyframe_wanted.clone(),
        });
        lock(&self.sinks).push(q.clone());
        q
    }

    /// Removes a sink; its queue is closed so its thread can finish.
    pub fn unsubscribe(&self, q: &Arc<SinkQueue>) {
        lock(&self.sinks).retain(|s| !Arc::ptr_eq(s, q));
        q.close();
    }

    /// Hands `frame` to every sink without ever blocking on one.
    pub fn publish(&self, frame: SharedFrame) {
        for s in lock(&self.sinks).iter() {
            s.push(frame.clone());
        }
    }

    pub fn sinks(&self) -> Vec<Arc<SinkQueue>> {
        lock(&self.sinks).clone()
    }

    /// Asks the encoder (or a pass-through camera) for an IDR, so a new
    /// receiver does not wait a whole GOP for its first picture.
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// Whether a keyframe was asked for since the last call.
    pub fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }
}

/// One sink's bounded queue.
pub struct SinkQueue {
    name: String,
    capacity: usize,
    /// The ladder rendition whose video this sink takes.
    rendition: u8,
    state: Mutex<QueueState>,
    ready: Condvar,
    /// The bus's flag (see [`FrameBus::request_keyframe`]).
    keyframe_wanted: Arc<AtomicBool>,
}

#[derive(Default)]
struct QueueState {
    frames: VecDeque<SharedFrame>,
    /// How many of `frames` are video: the capacity counts video frames
    /// (audio rides along, bounded by [`AUDIO_PER_VIDEO`] times as many).
    video: usize,
    /// Set after an overflow: drop until a keyframe.
    awaiting_keyframe: bool,
    dropped: u64,
    delivered: u64,
    closed: bool,
}

/// Audio frames a queue may hold per video frame of capacity: 48 kHz AAC
/// is 47 frames a second, against video down to 15 fps.
const AUDIO_PER_VIDEO: usize = 4;

/// A snapshot for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub queued: usize,
    pub dropped: u64,
    pub delivered: u64,
}

impl SinkQueue {
    /// This sink needs a keyframe soon (a receiver joined or reconnected).
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ladder rendition whose video this sink takes (0 = top).
    pub fn rendition(&self) -> u8 {
        self.rendition
    }

    fn push(&self, frame: SharedFrame) {
        if frame.is_video() && frame.rendition != self.rendition {
            return;
        }
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        if st.awaiting_keyframe && !frame.keyframe {
            st.dropped += 1;
            return;
        }
        let full = if frame.is_video() {
            st.video >= self.capacity
        } else {
            st.frames.len() - st.video >= self.capacity * AUDIO_PER_VIDEO
        };
        if full {
            if frame.keyframe {
                // Resume from this keyframe; the backlog is stale.
                st.dropped += st.frames.len() as u64;
                st.frames.clear();
                st.video = 0;
            } else {
                st.dropped += 1;
                st.awaiting_keyframe = true;
                return;
            }
        }
        // Frames still queued from before an overflow are decodable; the gap
        // after them ends here, at a keyframe (or there was no gap).
        st.awaiting_keyframe = false;
        st.video += usize::from(frame.is_video());
        st.frames.push_back(frame);
        drop(st);
        self.ready.notify_one();
    }

    /// Waits up to `timeout` for the next frame; `None` on timeout or when
    /// the queue is closed and empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<SharedFrame> {
        let st = lock(&self.state);
        let (mut st, _) = self
            .ready
            .wait_timeout_while(st, timeout, |s| s.frames.is_empty() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        let f = st.frames.pop_front();
        if f.as_ref().is_some_and(|f| f.is_video()) {
            st.video -= 1;
        }
        if f.is_some() {
            st.delivered += 1;
        }
        f
    }

    /// Like [`Self::pop_timeout`], for a sink that cannot use the frame
    /// (waiting to reconnect, or skipping what queued during a handshake):
    /// it counts as dropped, not delivered, so every output's `dropped`
    /// means the same.
    pub fn discard_timeout(&self, timeout: Duration) -> Option<SharedFrame> {
        let f = self.pop_timeout(timeout)?;
        let mut st = lock(&self.state);
        st.delivered -= 1;
        st.dropped += 1;
        Some(f)
    }

    /// Hands every frame to `f` until the queue is closed: a sink thread's
    /// whole loop.
    pub fn run_until_closed(&self, mut f: impl FnMut(SharedFrame)) {
        while !self.is_closed() {
            if let Some(frame) = self.pop_timeout(Duration::from_millis(500)) {
                f(frame);
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }

    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.state);
        QueueStats {
            queued: st.frames.len(),
            dropped: st.dropped,
            delivered: st.delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::frame::EncodedFrame;
    use roomcast_media::time::Ticks90k;

    fn frame(n: u64, keyframe: bool) -> SharedFrame {
        Arc::new(EncodedFrame {
            capture_ns: n,
            wall_ms: 0,
            pts: Ticks90k(n),
            dts: Ticks90k(n),
            duration: Ticks90k(3000),
            keyframe,
            data: vec![],
            epoch: 0,
            width: 16,
            height: 16,
            rendition: 0,
            track: crate::base::frame::Track::Video,
        })
    }

    fn drain(q: &SinkQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.pop_timeout(Duration::ZERO))
            .map(|f| f.capture_ns)
            .collect()
    }

    /// A queue of capacity 8 after frames `0..n` (keyframe first).
    fn fed(n: u64) -> Arc<SinkQueue> {
        let bus = FrameBus::new();
        let q = bus.subscribe("a", 8);
        for i in 0..n {
            bus.publish(frame(i, i == 0));
        }
        q
    }

    #[test]
    fn fast_sink_gets_everything_in_order() {
        let q = fed(5);
        assert_eq!(drain(&q), vec![0, 1, 2, 3, 4]);
        assert_eq!(q.stats().dropped, 0);
    }

    #[test]
    fn discarded_frames_count_as_dropped_not_delivered() {
        let q = fed(3);
        assert_eq!(q.discard_timeout(Duration::ZERO).map(|f| f.pts.0), Some(0));
        assert!(q.pop_timeout(Duration::ZERO).is_some());
        let st = q.stats();
        assert_eq!((st.dropped, st.delivered, st.queued), (1, 1, 1));
        assert!(q.discard_timeout(Duration::ZERO).is_some());
        assert!(q.discard_timeout(Duration::ZERO).is_none(), "empty");
        assert_eq!(q.stats().dropped, 2);
    }

    #[test]
    fn overflow_drops_to_next_keyframe_and_counts() {
        let bus = FrameBus::new();
        let slow = bus.subscribe("slow", 3);
        let fast = bus.subscribe("fast", 100);
        // GOP of 4: keyframes at 0, 4, 8.
        for n in 0..10 {
            bus.publish(frame(n, n % 4 == 0));
        }
        // slow holds 0,1,2 and drops 3 (overflow); at keyframe 4 the queue
        // is still full, so the stale 0..2 go and 4 is kept; the same again
        // with 7 and keyframe 8.
        assert_eq!(drain(&slow), vec![8, 9]);
        assert_eq!(slow.stats().dropped, 8);
        // The fast sink is untouched by the slow one.
        assert_eq!(drain(&fast), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn after_overflow_frames_wait_for_keyframe_even_when_room_frees() {
        let bus = FrameBus::new();
        let q = bus.subscribe("q", 2);
        bus.publish(frame(0, true));
        bus.publish(frame(1, false));
        bus.publish(frame(2, false)); // overflow
        assert_eq!(drain(&q), vec![0, 1]);
        bus.publish(frame(3, false)); // room now, but no reference
        bus.publish(frame(4, true));
        assert_eq!(drain(&q), vec![4]);
        assert_eq!(q.stats().dropped, 2);
    }

    fn audio(n: u64) -> SharedFrame {
        let mut f = Arc::try_unwrap(frame(n, false)).unwrap();
        f.track = crate::base::frame::Track::Audio;
        Arc::new(f)
    }

    #[test]
    fn capacity_counts_video_and_audio_rides_along_bounded() {
        let bus = FrameBus::new();
        let q = bus.subscribe("a", 3);
        // Three video frames and plenty of audio between them fit.
        for n in 0..3 {
            bus.publish(frame(10 * n, n == 0));
            for k in 1..=4 {
                bus.publish(audio(10 * n + k));
            }
        }
        assert_eq!(q.stats().dropped, 0);
        assert_eq!(q.stats().queued, 15);
        // A fourth video frame overflows: dropped up to the next keyframe,
        // and audio meanwhile with it.
        bus.publish(frame(30, false));
        bus.publish(audio(31));
        assert_eq!(q.stats().dropped, 2);
        // Audio alone is bounded too (4 per video frame of capacity).
        let q2 = bus.subscribe("b", 2);
        bus.publish(frame(40, true));
        for k in 0..20 {
            bus.publish(audio(41 + k));
        }
        assert_eq!(q2.stats().queued, 1 + 8);
        assert_eq!(drain(&q2)[..2], [40, 41]);
    }

    #[test]
    fn closed_queue_wakes_waiter() {
        let bus = Arc::new(FrameBus::new());
        let q = bus.subscribe("q", 2);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_timeout(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        bus.unsubscribe(&q);
        assert!(t.join().unwrap().is_none());
        assert!(bus.sinks().is_empty());
    }
}
