//! The low-latency HLS sink: packages frames into CMAF parts (fMP4 movie
//! fragments of a few frames), groups them into segments cut on keyframes,
//! and answers blocking playlist reloads and requests for the hinted part as
//! soon as the part they wait for is published.
//!
//! Held requests do not hold a thread: a request that must wait is parked in
//! the store with what it waits for and a deadline, and the packager wakes it
//! when it publishes; a timer answers 503 to the ones whose wait ran out
//! (three target durations, rfc8216bis §6.2.5.2). Playlist rules, the
//! blocking decision and the fMP4 boxes are `roomcast_media::{llhls, fmp4}`.

use crate::bus::{lock, SinkQueue};
use crate::clock::SharedClock;
use crate::frame::{EncodedFrame, SharedFrame};
use crate::stats::quantiles_ms;
use roomcast_media::fmp4::{self, Sample};
use roomcast_media::h264::ParameterSets;
use roomcast_media::hls::{Cut, Segmenter};
use roomcast_media::llhls::{Block, LlConfig, LlPart, LlPlaylist};
use roomcast_media::time::Ticks90k;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the packager needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlSettings {
    pub segment_ms: u32,
    pub part_ms: u32,
    pub fps: u32,
    pub window: u32,
    pub target_duration_s: u32,
}

impl LlSettings {
    /// Frames per part: the part target rounded to whole frames (at least
    /// one), so every part but a segment's last has the same duration and
    /// PART-TARGET can be stated exactly.
    pub fn part_frames(&self) -> u32 {
        ((u64::from(self.part_ms) * u64::from(self.fps) + 500) / 1000).max(1) as u32
    }

    /// PART-TARGET: the duration of a full part.
    pub fn part_target(&self) -> Ticks90k {
        Ticks90k(u64::from(self.part_frames()) * Ticks90k::HZ / u64::from(self.fps.max(1)))
    }
}

/// A parked request's way back to its client. The HTTP server implements
/// it for tiny_http requests; tests implement it with a channel.
pub trait Responder: Send {
    fn respond(self: Box<Self>, reply: LlReply);
}

/// A reply from the LL-HLS store, turned into HTTP by the server.
#[derive(Debug, Clone, PartialEq)]
pub enum LlReply {
    Playlist(Arc<str>),
    File {
        content_type: &'static str,
        bytes: Arc<[u8]>,
    },
    /// 400: the request can never be satisfied (e.g. far beyond the live edge).
    BadRequest(String),
    NotFound,
    /// 503: the wait ran out, or the stream has not started.
    Unavailable,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The playlist, once it holds segment `msn` (and part `part` of it).
    /// `msn: None` = any playlist at all (waits only until the stream starts).
    Playlist {
        msn: Option<u64>,
        part: Option<u32>,
        skip: bool,
    },
    /// A file by name: the hinted part blocks until it is complete.
    File(String),
}

/// A parked request whose answer is ready, on its way to a reply thread.
pub struct Ready {
    pub to: Box<dyn Responder>,
    pub reply: LlReply,
    /// When the store decided the answer (monotonic ns), to measure delivery.
    pub at_ns: u64,
}

struct Waiter {
    want: Want,
    deadline_ns: u64,
    to: Box<dyn Responder>,
}

/// Playlist, files and parked requests, shared by the packager, the HTTP
/// workers and the timer.
pub struct LlStore {
    clock: SharedClock,
    state: Mutex<State>,
    replies: Sender<Ready>,
    closed: AtomicBool,
    /// Decision-to-sent time of parked requests, newest last.
    delivery_ns: Mutex<VecDeque<u64>>,
}

struct State {
    settings: LlSettings,
    playlist: Option<LlPlaylist>,
    files: HashMap<String, Arc<[u8]>>,
    /// Files of each segment (its parts and itself), for eviction, by msn.
    by_segment: BTreeMap<u64, Vec<String>>,
    /// Init segments by epoch URI, kept while a listed segment uses them.
    inits: VecDeque<String>,
    waiters: Vec<Waiter>,
    /// Publication minus capture time of the part's last frame, newest last.
    part_latency_ns: VecDeque<u64>,
    parts_published: u64,
}

/// Segments whose files stay fetchable after leaving the playlist.
const KEEP_AFTER_WINDOW: u64 = 3;
/// Part latencies kept for the status quantiles.
const LATENCY_SAMPLES: usize = 1024;

impl LlStore {
    /// The store and the receiving end of its reply queue, which the caller
    /// drains on its own threads (so a slow client never slows the packager).
    pub fn new(clock: SharedClock, settings: LlSettings) -> (Arc<Self>, Receiver<Ready>) {
        let (tx, rx) = mpsc::channel();
        let store = Arc::new(LlStore {
            clock,
            state: Mutex::new(State {
                settings,
                playlist: None,
                files: HashMap::new(),
                by_segment: BTreeMap::new(),
                inits: VecDeque::new(),
                waiters: Vec::new(),
                part_latency_ns: VecDeque::new(),
                parts_published: 0,
            }),
            replies: tx,
            closed: AtomicBool::new(false),
            delivery_ns: Mutex::new(VecDeque::new()),
        });
        (store, rx)
    }

    pub fn set_settings(&self, settings: LlSettings) {
        lock(&self.state).settings = settings;
    }

    pub fn settings(&self) -> LlSettings {
        lock(&self.state).settings
    }

    /// Answers `want` now, or parks it until it can be answered.
    pub fn request(&self, want: Want, to: Box<dyn Responder>) {
        let mut st = lock(&self.state);
        match st.answer(&want) {
            Some(reply) => {
                drop(st);
                to.respond(reply);
            }
            None => {
                let wait_ns = u64::from(st.settings.target_duration_s.max(1)) * 3_000_000_000;
                let deadline_ns = self.clock.monotonic_ns() + wait_ns;
                st.waiters.push(Waiter {
                    want,
                    deadline_ns,
                    to,
                });
            }
        }
    }

    /// Answers 503 to parked requests whose wait has run out.
    pub fn expire(&self) {
        let now = self.clock.monotonic_ns();
        let mut st = lock(&self.state);
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.waiters)
            .into_iter()
            .partition(|w| w.deadline_ns <= now || self.closed.load(Ordering::Relaxed));
        st.waiters = kept;
        drop(st);
        for w in expired {
            let _ = self.replies.send(Ready {
                to: w.to,
                reply: LlReply::Unavailable,
                at_ns: now,
            });
        }
    }

    /// Parked requests right now.
    pub fn waiting(&self) -> usize {
        lock(&self.state).waiters.len()
    }

    /// Median and 99th percentile of capture-to-publication latency of the
    /// recent parts' last frames, in milliseconds.
    pub fn part_latency_ms(&self) -> Option<(f64, f64)> {
        quantiles_ms(lock(&self.state).part_latency_ns.iter().copied())
    }

    /// Median and 99th percentile of the time from a parked request's answer
    /// being decided (the part it waited for was published) to the reply
    /// having been written, in milliseconds.
    pub fn delivery_ms(&self) -> Option<(f64, f64)> {
        quantiles_ms(lock(&self.delivery_ns).iter().copied())
    }

    /// Records that a parked reply decided at `at_ns` has been sent.
    pub fn delivered(&self, at_ns: u64) {
        let took = self.clock.monotonic_ns().saturating_sub(at_ns);
        let mut d = lock(&self.delivery_ns);
        d.push_back(took);
        if d.len() > LATENCY_SAMPLES * 16 {
            d.pop_front();
        }
    }

    pub fn parts_published(&self) -> u64 {
        lock(&self.state).parts_published
    }

    /// Applies `change` to the state, then wakes every parked request that
    /// can now be answered.
    fn publish(&self, change: impl FnOnce(&mut State)) {
        let mut st = lock(&self.state);
        change(&mut st);
        let now = self.clock.monotonic_ns();
        let mut ready = Vec::new();
        let mut i = 0;
        while i < st.waiters.len() {
            match st.answer(&st.waiters[i].want) {
                Some(reply) => ready.push(Ready {
                    to: st.waiters.swap_remove(i).to,
                    reply,
                    at_ns: now,
                }),
                None => i += 1,
            }
        }
        drop(st);
        for r in ready {
            let _ = self.replies.send(r);
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.expire();
    }
}

impl State {
    /// The reply to `want` if it can be given now.
    fn answer(&self, want: &Want) -> Option<LlReply> {
        match want {
            Want::File(name) => match self.files.get(name) {
                Some(bytes) => Some(LlReply::File {
                    content_type: if name.ends_with(".mp4") {
                        "video/mp4"
                    } else {
                        "video/iso.segment"
                    },
                    bytes: bytes.clone(),
                }),
                // Only the part being produced is worth waiting for.
                None => {
                    let hinted = self
                        .playlist
                        .as_ref()
                        .and_then(|p| p.preload_hint())
                        .is_some_and(|h| h == name);
                    (!hinted).then_some(LlReply::NotFound)
                }
            },
            Want::Playlist { msn, part, skip } => {
                let pl = self.playlist.as_ref().filter(|p| p.last_part().is_some())?;
                let Some(msn) = msn else {
                    return Some(LlReply::Playlist(pl.render(*skip).into()));
                };
                match pl.decide(*msn, *part) {
                    Block::Ready => Some(LlReply::Playlist(pl.render(*skip).into())),
                    Block::Wait => None,
                    Block::BadRequest => Some(LlReply::BadRequest(format!(
                        "_HLS_msn={msn} is beyond the live edge of this playlist"
                    ))),
                }
            }
        }
    }
}

/// Turns frames into parts and segments.
pub struct LlPackager {
    store: Arc<LlStore>,
    settings: LlSettings,
    segmenter: Segmenter,
    epoch: Option<u32>,
    /// Set after an encoder restart until the next segment starts.
    discontinuity: bool,
    /// URI of the init segment for the current epoch, once made.
    init_uri: Option<String>,
    /// Open segment: msn, and whether a segment is open at all.
    open_msn: Option<u64>,
    next_msn: u64,
    /// Global part counter: part file names never depend on which segment a
    /// part ends up in, so the preload hint is always the right name.
    next_part: u64,
    fragment_sequence: u32,
    pending: Vec<SharedFrame>,
    boot: u64,
}

impl LlPackager {
    /// `first_sequence` numbers the first segment (and, times eight, the
    /// first part) so names never repeat across daemon restarts.
    pub fn new(store: Arc<LlStore>, first_sequence: u64) -> Self {
        let settings = store.settings();
        LlPackager {
            segmenter: Segmenter::new(segment_target(settings)),
            settings,
            store,
            epoch: None,
            discontinuity: false,
            init_uri: None,
            open_msn: None,
            next_msn: first_sequence,
            next_part: first_sequence.saturating_mul(8),
            fragment_sequence: 1,
            pending: Vec::new(),
            boot: first_sequence,
        }
    }

    pub fn push(&mut self, f: SharedFrame) {
        if self.epoch != Some(f.epoch) {
            if self.epoch.is_some() {
                self.flush_part();
                self.finish_segment();
                self.discontinuity = true;
            }
            self.epoch = Some(f.epoch);
            self.settings = self.store.settings();
            self.segmenter = Segmenter::new(segment_target(self.settings));
            self.init_uri = None;
        }
        if self.init_uri.is_none() {
            if !f.keyframe {
                return;
            }
            let Ok(ps) = ParameterSets::from_annexb(&f.data) else {
                return; // a keyframe without usable SPS/PPS: wait for the next
            };
            let uri = format!("init-{}-{}.mp4", self.boot, f.epoch);
            let init: Arc<[u8]> = fmp4::init_segment(&ps).into();
            let settings = self.settings;
            let name = uri.clone();
            self.store.publish(move |st| {
                st.ensure_playlist(settings);
                st.files.insert(name.clone(), init);
                st.inits.push_back(name.clone());
                if let Some(pl) = &mut st.playlist {
                    pl.set_init_uri(name);
                }
            });
            self.init_uri = Some(uri);
        }
        match self.segmenter.push(f.dts, f.keyframe, f.duration) {
            Cut::Skip => return,
            Cut::Continue => {}
            Cut::Start { .. } => {
                self.flush_part();
                self.finish_segment();
                self.start_segment(&f);
            }
        }
        self.pending.push(f);
        if self.pending.len() as u32 >= self.settings.part_frames() {
            // Publish as soon as the part's last frame is here, not when the
            // next frame arrives: that frame time is latency.
            self.flush_part();
        }
    }

    fn start_segment(&mut self, f: &EncodedFrame) {
        let msn = self.next_msn;
        self.next_msn += 1;
        self.open_msn = Some(msn);
        let (wall_ms, disc) = (f.wall_ms, std::mem::take(&mut self.discontinuity));
        self.store.publish(move |st| {
            if let Some(pl) = &mut st.playlist {
                pl.start_segment(msn, Some(wall_ms), disc);
            }
            st.by_segment.insert(msn, Vec::new());
        });
    }

    fn flush_part(&mut self) {
        if self.pending.is_empty() || self.open_msn.is_none() {
            self.pending.clear();
            return;
        }
        let frames = std::mem::take(&mut self.pending);
        let samples: Vec<Sample<'_>> = frames
            .iter()
            .map(|f| Sample {
                dts: f.dts,
                pts: f.pts,
                duration: u32::try_from(f.duration.0).unwrap_or(u32::MAX),
                keyframe: f.keyframe,
                annexb: &f.data,
            })
            .collect();
        let mut bytes = Vec::new();
        fmp4::write_fragment(self.fragment_sequence, &samples, &mut bytes);
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        let duration = Ticks90k(frames.iter().map(|f| f.duration.0).sum());
        let independent = frames.first().is_some_and(|f| f.keyframe);
        let last_capture_ns = frames.last().map_or(0, |f| f.capture_ns);
        let uri = format!("part{}.m4s", self.next_part);
        self.next_part += 1;
        let hint = format!("part{}.m4s", self.next_part);
        let msn = self.open_msn.unwrap_or_default();
        let now = self.store.clock.monotonic_ns();
        let bytes: Arc<[u8]> = bytes.into();
        self.store.publish(move |st| {
            st.files.insert(uri.clone(), bytes);
            if let Some(files) = st.by_segment.get_mut(&msn) {
                files.push(uri.clone());
            }
            if let Some(pl) = &mut st.playlist {
                pl.push_part(LlPart {
                    duration,
                    uri,
                    independent,
                });
                pl.set_preload_hint(Some(hint));
            }
            st.parts_published += 1;
            st.part_latency_ns
                .push_back(now.saturating_sub(last_capture_ns));
            if st.part_latency_ns.len() > LATENCY_SAMPLES {
                st.part_latency_ns.pop_front();
            }
        });
    }

    /// Closes the open segment: its file is its parts back to back.
    fn finish_segment(&mut self) {
        let Some(msn) = self.open_msn.take() else {
            return;
        };
        let uri = format!("seg{msn}.m4s");
        self.store.publish(move |st| {
            let parts = st.by_segment.get(&msn).cloned().unwrap_or_default();
            let mut bytes = Vec::new();
            for p in &parts {
                if let Some(b) = st.files.get(p) {
                    bytes.extend_from_slice(b);
                }
            }
            st.files.insert(uri.clone(), bytes.into());
            if let Some(files) = st.by_segment.get_mut(&msn) {
                files.push(uri.clone());
            }
            let evicted = st.playlist.as_mut().and_then(|pl| pl.finish_segment(uri));
            if let Some(old) = evicted {
                st.evict_before(old.msn.saturating_sub(KEEP_AFTER_WINDOW));
            }
        });
    }
}

impl State {
    fn ensure_playlist(&mut self, s: LlSettings) {
        if self.playlist.is_none() {
            self.playlist = Some(LlPlaylist::new(LlConfig {
                target_duration_s: s.target_duration_s,
                part_target: s.part_target(),
                window: s.window as usize,
                init_uri: String::new(),
            }));
        }
    }

    /// Drops the files of segments before `msn`, and init segments no kept
    /// segment needs (all but the newest two).
    fn evict_before(&mut self, msn: u64) {
        let kept = self.by_segment.split_off(&msn);
        for files in std::mem::replace(&mut self.by_segment, kept).into_values() {
            for f in files {
                self.files.remove(&f);
            }
        }
        while self.inits.len() > 2 {
            if let Some(old) = self.inits.pop_front() {
                self.files.remove(&old);
            }
        }
    }
}

fn segment_target(s: LlSettings) -> Ticks90k {
    Ticks90k(u64::from(s.segment_ms) * Ticks90k::HZ / 1000)
}

/// The LL-HLS sink thread: runs until its queue is closed.
pub fn run_sink(queue: Arc<SinkQueue>, store: Arc<LlStore>, first_sequence: u64) {
    let mut packager = LlPackager::new(store.clone(), first_sequence);
    queue.run_until_closed(|f| packager.push(f));
    store.close();
}

/// The timer thread: expires parked requests every 20 ms.
pub fn run_timer(store: Arc<LlStore>) {
    while !store.closed.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        store.expire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use std::sync::mpsc::TryRecvError;

    /// A responder that reports to a channel, tagged.
    struct Probe(u32, Sender<(u32, LlReply)>);
    impl Responder for Probe {
        fn respond(self: Box<Self>, reply: LlReply) {
            let _ = self.1.send((self.0, reply));
        }
    }

    fn settings() -> LlSettings {
        LlSettings {
            segment_ms: 1000,
            part_ms: 250,
            fps: 25,
            window: 4,
            target_duration_s: 1,
        }
    }

    /// A real keyframe/P-frame pair from openh264 at 64x64.
    fn frames(n: u64) -> Vec<SharedFrame> {
        use crate::encoder::{openh264::OpenH264, EncoderSettings, VideoEncoder};
        let mut enc = OpenH264::open(EncoderSettings {
            width: 64,
            height: 64,
            fps: 25,
            bitrate_kbps: 100,
            gop: 25,
            threads: 1,
        })
        .unwrap();
        let pic = crate::frame::I420Frame::new(64, 64);
        (0..n)
            .map(|i| {
                let out = enc.encode(&pic).unwrap().unwrap();
                Arc::new(EncodedFrame {
                    capture_ns: i * 40_000_000,
                    wall_ms: 1_764_064_800_000 + i * 40,
                    pts: Ticks90k(i * 3600),
                    dts: Ticks90k(i * 3600),
                    duration: Ticks90k(3600),
                    keyframe: out.keyframe,
                    data: out.data,
                    epoch: 0,
                    width: 64,
                    height: 64,
                    track: crate::frame::Track::Video,
                })
            })
            .collect()
    }

    /// Drains what the store has sent to the reply queue.
    fn replies(rx: &Receiver<Ready>) -> Vec<LlReply> {
        let mut out = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(r) => {
                    out.push(r.reply.clone());
                    r.to.respond(r.reply);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }

    #[test]
    fn parts_segments_and_blocking_reload_with_a_simulated_clock() {
        let clock = Arc::new(SimClock::new(0));
        let (store, rx) = LlStore::new(clock.clone(), settings());
        let (tx, answers) = mpsc::channel();
        let mut p = LlPackager::new(store.clone(), 100);
        assert_eq!(settings().part_frames(), 6); // 250 ms at 25 fps, rounded

        // Before anything exists a plain playlist request waits.
        store.request(
            Want::Playlist {
                msn: None,
                part: None,
                skip: false,
            },
            Box::new(Probe(1, tx.clone())),
        );
        assert_eq!(store.waiting(), 1);
        let fs = frames(40);
        for f in &fs[..6] {
            p.push(f.clone());
        }
        // The first part is out: the waiting request was answered.
        let got = replies(&rx);
        let [LlReply::Playlist(text)] = &got[..] else {
            panic!("{got:?}")
        };
        assert!(text.contains("part800.m4s"), "{text}");
        assert!(
            text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part801.m4s\""),
            "{text}"
        );
        assert_eq!(answers.try_recv().unwrap().0, 1);

        // Block on the next part (msn 100, part 1) and on the hinted file.
        store.request(
            Want::Playlist {
                msn: Some(100),
                part: Some(1),
                skip: false,
            },
            Box::new(Probe(2, tx.clone())),
        );
        store.request(
            Want::File("part801.m4s".into()),
            Box::new(Probe(3, tx.clone())),
        );
        // A file that is neither there nor hinted is a 404 at once.
        store.request(
            Want::File("part999.m4s".into()),
            Box::new(Probe(4, tx.clone())),
        );
        // Far beyond the edge: 400 at once.
        store.request(
            Want::Playlist {
                msn: Some(200),
                part: None,
                skip: false,
            },
            Box::new(Probe(5, tx.clone())),
        );
        let got = replies(&rx);
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(answers.try_recv().unwrap(), (4, LlReply::NotFound));
        assert!(matches!(
            answers.try_recv().unwrap(),
            (5, LlReply::BadRequest(_))
        ));
        assert_eq!(store.waiting(), 2);
        for f in &fs[6..11] {
            p.push(f.clone());
        }
        assert!(replies(&rx).is_empty(), "part 1 is not complete yet");
        p.push(fs[11].clone());
        let got = replies(&rx);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().any(|r| matches!(
            r,
            LlReply::File {
                content_type: "video/iso.segment",
                ..
            }
        )));

        // A wait that runs out gets 503 after three target durations.
        store.request(
            Want::Playlist {
                msn: Some(101),
                part: None,
                skip: false,
            },
            Box::new(Probe(6, tx.clone())),
        );
        clock.advance(Duration::from_millis(2999));
        store.expire();
        assert!(replies(&rx).is_empty());
        clock.advance(Duration::from_millis(1));
        store.expire();
        assert_eq!(replies(&rx), vec![LlReply::Unavailable]);

        // The rest of the first second: the keyframe at frame 25 closes
        // segment 100 (parts of 6+6+6+6+1 frames) and starts 101.
        for f in &fs[12..26] {
            p.push(f.clone());
        }
        let st = lock(&store.state);
        let seg = st.files.get("seg100.m4s").unwrap();
        let parts: usize = st.by_segment[&100]
            .iter()
            .filter(|u| u.starts_with("part"))
            .map(|u| st.files[u].len())
            .sum();
        assert_eq!(seg.len(), parts, "a segment is its parts back to back");
        assert_eq!(st.by_segment[&100].len(), 6); // five parts and the segment
        assert!(st.files.contains_key("init-100-0.mp4"));
        assert_eq!(st.parts_published, 5);
    }
}
