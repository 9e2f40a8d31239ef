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
//!
//! With audio on, the init segment has two tracks (H.264 track 1, AAC
//! track 2 on the sample-rate timescale) and every part carries, next to
//! its video, the AAC frames that start before the part's end. Audio waits
//! in `AudioTrack` for the part its time falls in (it reaches the bus up
//! to ~100 ms before or after the video of the same time); audio that comes
//! after its part was published goes into the next one, so no frame is
//! lost or written twice. The audio decode times are a frame counter
//! anchored on the first kept frame, not each frame's rounded PTS.

use crate::base::bus::SinkQueue;
use crate::base::clock::SharedClock;
use crate::base::frame::{AudioFormat, EncodedFrame, SharedFrame};
use crate::base::lock;
use crate::base::stats::quantiles_ms;
use crate::sink::keys::{Encryption, KeyRing};
use roomcast_media::aac::AudioSpecificConfig;
use roomcast_media::dash::TimelineSegment;
use roomcast_media::fmp4::{self, AudioSample, AudioTimeline, Sample};
use roomcast_media::h264::ParameterSets;
use roomcast_media::hls::{measured_bandwidth, Cut, Segmenter};
use roomcast_media::llhls::{Block, LlConfig, LlPart, LlPlaylist, RenditionReport};
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
    /// The AAC track every init segment and part carries, `None` without
    /// audio (`ValidConfig::audio_format`). Taken up when the stream
    /// (re)starts, like the rest: a new epoch can bring it or take it away.
    pub audio: Option<AudioFormat>,
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
/// it with a oneshot channel to the request's task; tests with a channel.
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

/// What a DASH MPD lists of one store: its init segment and the segments
/// that use it, on the 90 kHz clock.
pub struct Timeline {
    pub init: String,
    pub segments: Vec<TimelineSegment>,
    /// Wall-clock time (Unix ms) of the first listed segment's start.
    pub first_wall_ms: Option<u64>,
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
    /// Decode time of each kept segment's first picture, by msn (for a
    /// DASH `SegmentTimeline`).
    starts: BTreeMap<u64, Ticks90k>,
    waiters: Vec<Waiter>,
    /// Publication minus capture time of the part's last frame, newest last.
    part_latency_ns: VecDeque<u64>,
    parts_published: u64,
    /// RFC 6381 codecs of the current init segment.
    codecs: Option<String>,
    /// The ladder's board of live edges and this store's place on it.
    ladder: Option<(Arc<LadderEdges>, usize)>,
    /// With `hls.encryption = "aes-128"`: the keys segments are encrypted with.
    keys: Option<Arc<KeyRing>>,
}

/// Where each rendition's LL-HLS playlist ends (last segment and part),
/// shared by the stores of one ladder so each playlist can carry
/// EXT-X-RENDITION-REPORT tags for the others (rfc8216bis §4.4.5.4): a
/// player switching renditions then asks for the right part at once.
#[derive(Debug, Default)]
pub struct LadderEdges {
    edges: Mutex<Vec<Option<(u64, u32)>>>,
}

impl LadderEdges {
    pub fn new(renditions: usize) -> Arc<Self> {
        Arc::new(LadderEdges {
            edges: Mutex::new(vec![None; renditions]),
        })
    }

    fn set(&self, i: usize, edge: Option<(u64, u32)>) {
        if let Some(e) = lock(&self.edges).get_mut(i) {
            *e = edge;
        }
    }

    /// Reports for every rendition but `me`, as seen from `me`'s playlist
    /// (`../rN/index.m3u8`).
    fn reports(&self, me: usize) -> Vec<RenditionReport> {
        lock(&self.edges)
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .filter_map(|(i, e)| {
                e.map(|(msn, part)| RenditionReport {
                    uri: format!("../r{i}/index.m3u8"),
                    last_msn: msn,
                    last_part: Some(part),
                })
            })
            .collect()
    }
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
        (Self::with_replies(clock, settings, tx), rx)
    }

    /// A store whose ready answers go to `replies`, which several stores
    /// (one per rendition) may share.
    pub fn with_replies(
        clock: SharedClock,
        settings: LlSettings,
        replies: Sender<Ready>,
    ) -> Arc<Self> {
        Arc::new(LlStore {
            clock,
            state: Mutex::new(State {
                settings,
                playlist: None,
                files: HashMap::new(),
                by_segment: BTreeMap::new(),
                inits: VecDeque::new(),
                starts: BTreeMap::new(),
                waiters: Vec::new(),
                part_latency_ns: VecDeque::new(),
                parts_published: 0,
                codecs: None,
                ladder: None,
                keys: None,
            }),
            replies,
            closed: AtomicBool::new(false),
            delivery_ns: Mutex::new(VecDeque::new()),
        })
    }

    pub fn set_settings(&self, settings: LlSettings) {
        lock(&self.state).settings = settings;
    }

    /// Makes this store rendition `index` of a ladder whose live edges are
    /// on `edges`: its playlists report the others'.
    pub fn join_ladder(&self, edges: Arc<LadderEdges>, index: usize) {
        lock(&self.state).ladder = Some((edges, index));
    }

    /// Encrypts every segment and part started from now on with `keys`
    /// (`None`: in the clear).
    pub fn set_keys(&self, keys: Option<Arc<KeyRing>>) {
        lock(&self.state).keys = keys;
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

    /// The RFC 6381 codecs of the stream as its current init segment
    /// describes it, for a multivariant playlist's `CODECS` attribute:
    /// `avc1.PPCCLL`, plus `,mp4a.40.2` with audio. `None` until the first
    /// init segment exists.
    pub fn codecs(&self) -> Option<String> {
        lock(&self.state).codecs.clone()
    }

    /// Peak and average bitrate (bit/s) of the complete segments in the
    /// live window (the fMP4 bytes players fetch, lighter than the same
    /// pictures in MPEG-TS), for a multivariant playlist; `None` before the
    /// first one.
    pub fn bandwidth(&self) -> Option<(u64, u64)> {
        let st = lock(&self.state);
        let pl = st.playlist.as_ref()?;
        measured_bandwidth(pl.segments().filter_map(|seg| {
            let len = st.files.get(&seg.uri)?.len() as u64;
            Some((len, seg.duration))
        }))
    }

    /// A published file (part, segment or init segment), if still kept.
    pub fn file(&self, name: &str) -> Option<Arc<[u8]>> {
        lock(&self.state).files.get(name).cloned()
    }

    /// The complete segments of the current init segment (since the last
    /// encoder restart), oldest first, for a DASH `SegmentTimeline`; `None`
    /// before the first.
    pub fn timeline(&self) -> Option<Timeline> {
        let st = lock(&self.state);
        let pl = st.playlist.as_ref()?;
        let init = pl.segments().last()?.map_uri.clone();
        let listed = || pl.segments().filter(|seg| seg.map_uri == init);
        let first_wall_ms = listed().next().and_then(|seg| seg.program_date_time_ms);
        let mut segments: Vec<TimelineSegment> = listed()
            .filter_map(|seg| {
                Some(TimelineSegment {
                    number: seg.msn,
                    start: st.starts.get(&seg.msn)?.0,
                    duration: seg.duration.0,
                })
            })
            .collect();
        // A segment lasts until the next starts: its frames' durations may
        // fall a few ticks short, and a player must see no gap.
        for i in 1..segments.len() {
            let (prev, next) = (segments[i - 1], segments[i]);
            if next.number == prev.number + 1 && next.start > prev.start {
                segments[i - 1].duration = next.start - prev.start;
            }
        }
        Some(Timeline {
            init,
            segments,
            first_wall_ms,
        })
    }

    /// Applies `change` to the state, then wakes every parked request that
    /// can now be answered.
    fn publish(&self, change: impl FnOnce(&mut State)) {
        let mut st = lock(&self.state);
        change(&mut st);
        if let Some((edges, me)) = &st.ladder {
            edges.set(*me, st.playlist.as_ref().and_then(|p| p.last_part()));
        }
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
                let render = || {
                    let reports = match &self.ladder {
                        Some((edges, me)) => edges.reports(*me),
                        None => Vec::new(),
                    };
                    LlReply::Playlist(pl.render_with_reports(*skip, &reports).into())
                };
                let Some(msn) = msn else {
                    return Some(render());
                };
                match pl.decide(*msn, *part) {
                    Block::Ready => Some(render()),
                    Block::Wait => None,
                    Block::BadRequest => Some(LlReply::BadRequest(format!(
                        "_HLS_msn={msn} is beyond the live edge of this playlist"
                    ))),
                }
            }
        }
    }
}

/// Which tracks a packager writes. LL-HLS muxes both (one request per
/// part); DASH players (dash.js) want each track in its own adaptation set,
/// so its packagers write one each, cut at the same pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracks {
    Both,
    /// The pictures alone.
    Video,
    /// The sound alone; pictures still decide where segments and parts end.
    Audio,
}

/// Turns frames into parts and segments.
pub struct LlPackager {
    store: Arc<LlStore>,
    tracks: Tracks,
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
    /// The AAC track, when the stream has audio.
    audio: Option<AudioTrack>,
    /// The open segment's key, when encrypting; its parts in the clear,
    /// to encrypt the whole segment as one resource when it closes.
    encryption: Option<(Encryption, Vec<u8>)>,
}

/// Audio frames waiting for their part, and the audio track's timeline.
struct AudioTrack {
    format: AudioFormat,
    config: AudioSpecificConfig,
    /// Frames not yet in a part, in arrival (= capture) order.
    pending: VecDeque<SharedFrame>,
    /// The time kept audio starts at: the epoch's first keyframe. `None`
    /// while no video has started; frames wait (the newest few seconds) and
    /// are trimmed to the keyframe's time when it comes.
    start: Option<Ticks90k>,
    /// Decode times, anchored on the first frame kept.
    timeline: AudioTimeline,
}

/// Audio held while waiting for video, in seconds: far more than the
/// ~100 ms audio may lead video by, and a bound if video stalls.
const AUDIO_HOLD_S: u32 = 4;

impl AudioTrack {
    fn new(format: AudioFormat) -> Option<Self> {
        let config = AudioSpecificConfig::parse(&format.asc()).ok()?;
        Some(AudioTrack {
            format,
            config,
            pending: VecDeque::new(),
            start: None,
            timeline: AudioTimeline::new(config.sample_rate()),
        })
    }

    fn push(&mut self, f: SharedFrame) {
        if self.start.is_some_and(|start| f.pts < start) {
            return; // before the video it would go with
        }
        self.pending.push_back(f);
        let hold = (AUDIO_HOLD_S * self.config.sample_rate() / AudioFormat::FRAME_SAMPLES).max(16);
        while self.pending.len() > hold as usize {
            self.pending.pop_front();
        }
    }

    /// Video starts (again) at `at`: audio from then on is kept, on a new
    /// timeline.
    fn start_at(&mut self, at: Ticks90k) {
        self.start = Some(at);
        self.timeline.reset();
        self.pending.retain(|f| f.pts >= at);
    }

    /// The video stream restarted (new epoch): wait for its first keyframe.
    fn reset(&mut self) {
        self.start = None;
        self.timeline.reset();
    }

    /// Takes the waiting frames that start before `end`, with their decode
    /// times in samples.
    fn take_until(&mut self, end: Ticks90k) -> Vec<(u64, SharedFrame)> {
        let mut out = Vec::new();
        while self.pending.front().is_some_and(|f| f.pts < end) {
            let Some(f) = self.pending.pop_front() else {
                break;
            };
            if let Some(dts) = self.timeline.place(f.pts) {
                out.push((dts, f));
            }
        }
        out
    }
}

impl LlPackager {
    /// `first_sequence` numbers the first segment (and, times eight, the
    /// first part) so names never repeat across daemon restarts.
    pub fn new(store: Arc<LlStore>, first_sequence: u64) -> Self {
        Self::with_tracks(store, first_sequence, Tracks::Both)
    }

    /// [`LlPackager::new`] writing only `tracks`.
    pub fn with_tracks(store: Arc<LlStore>, first_sequence: u64, tracks: Tracks) -> Self {
        let settings = store.settings();
        LlPackager {
            tracks,
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
            audio: Self::audio_track(tracks, settings),
            encryption: None,
        }
    }

    fn audio_track(tracks: Tracks, settings: LlSettings) -> Option<AudioTrack> {
        settings
            .audio
            .filter(|_| tracks != Tracks::Video)
            .and_then(AudioTrack::new)
    }

    pub fn push(&mut self, f: SharedFrame) {
        if f.is_audio() {
            // Audio frames carry no epoch; they wait for their part.
            if let Some(a) = &mut self.audio {
                a.push(f);
            }
            return;
        }
        if self.epoch != Some(f.epoch) {
            if self.epoch.is_some() {
                self.flush_part();
                self.finish_segment();
                self.discontinuity = true;
            }
            self.epoch = Some(f.epoch);
            self.settings = self.store.settings();
            match &mut self.audio {
                // Keep what waits: it may be this epoch's first audio.
                Some(a) if Some(a.format) == self.settings.audio => a.reset(),
                _ => self.audio = Self::audio_track(self.tracks, self.settings),
            }
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
            let mut codecs = ps.info.codecs_string();
            let init: Arc<[u8]> = match &mut self.audio {
                Some(a) if self.tracks == Tracks::Audio => {
                    a.start_at(f.pts);
                    codecs = format!("mp4a.40.{}", a.config.object_type());
                    let bitrate = a.format.bitrate_kbps.saturating_mul(1000);
                    fmp4::init_segment_audio(&a.config, bitrate).into()
                }
                // Sound alone, and the stream has none: nothing to write.
                None if self.tracks == Tracks::Audio => return,
                Some(a) => {
                    // Audio from this keyframe's time on goes with it.
                    a.start_at(f.pts);
                    codecs.push_str(&format!(",mp4a.40.{}", a.config.object_type()));
                    let bitrate = a.format.bitrate_kbps.saturating_mul(1000);
                    fmp4::init_segment_with_audio(&ps, &a.config, bitrate).into()
                }
                None => fmp4::init_segment(&ps).into(),
            };
            let settings = self.settings;
            let name = uri.clone();
            self.store.publish(move |st| {
                st.ensure_playlist(settings);
                st.codecs = Some(codecs);
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
        let next = f.duration.0;
        self.pending.push(f);
        // Publish as soon as the part's last frame is here, not when the
        // next frame arrives: that frame time is latency. "Last" is by
        // duration, not count: one more frame (as long as this one) would
        // pass PART-TARGET. At the configured rate that is `part_frames`;
        // a camera slower than configured gets shorter parts, never longer.
        let filled: u64 = self.pending.iter().map(|p| p.duration.0).sum();
        if filled + next > self.settings.part_target().0 {
            self.flush_part();
        }
    }

    fn start_segment(&mut self, f: &EncodedFrame) {
        let msn = self.next_msn;
        self.next_msn += 1;
        self.open_msn = Some(msn);
        // Encrypted, each part and the whole segment are AES-128-CBC
        // resources of the segment's key; keys sit in /hls/keys/, one level
        // above /hls/rN/index.m3u8.
        self.encryption = None;
        if let Some(ring) = lock(&self.store.state).keys.clone() {
            let Some(e) = ring.for_segment(msn) else {
                self.open_msn = None; // no key, so nothing may be served
                return;
            };
            self.encryption = Some((e, Vec::new()));
        }
        let key = self
            .encryption
            .as_ref()
            .map(|(e, _)| e.segment_key("../keys/"));
        let (wall_ms, disc) = (f.wall_ms, std::mem::take(&mut self.discontinuity));
        let start = f.dts;
        self.store.publish(move |st| {
            if let Some(pl) = &mut st.playlist {
                pl.set_key(key);
                pl.start_segment(msn, Some(wall_ms), disc);
            }
            st.by_segment.insert(msn, Vec::new());
            st.starts.insert(msn, start);
        });
    }

    fn flush_part(&mut self) {
        if self.pending.is_empty() || self.open_msn.is_none() {
            self.pending.clear();
            return;
        }
        let frames = std::mem::take(&mut self.pending);
        // Audio that starts before the part's end (the next frame's decode
        // time; the encoders make no B-frames, so also its presentation).
        let end = frames
            .last()
            .map_or(Ticks90k(0), |f| f.dts.saturating_add(f.duration));
        let audio = match &mut self.audio {
            Some(a) => a.take_until(end),
            None => Vec::new(),
        };
        let audio_samples: Vec<AudioSample<'_>> = audio
            .iter()
            .enumerate()
            .map(|(i, (dts, f))| AudioSample {
                dts: *dts,
                // A frame before a gap lasts until the next one.
                duration: audio
                    .get(i + 1)
                    .and_then(|(next, _)| u32::try_from(next.saturating_sub(*dts)).ok())
                    .filter(|&d| d > 0)
                    .unwrap_or(AudioFormat::FRAME_SAMPLES),
                data: &f.data,
            })
            .collect();
        let samples: Vec<Sample<'_>> = frames
            .iter()
            .filter(|_| self.tracks != Tracks::Audio)
            .map(|f| Sample {
                dts: f.dts,
                pts: f.pts,
                duration: u32::try_from(f.duration.0).unwrap_or(u32::MAX),
                keyframe: f.keyframe,
                annexb: &f.data,
            })
            .collect();
        let mut bytes = Vec::new();
        fmp4::write_av_fragment(self.fragment_sequence, &samples, &audio_samples, &mut bytes);
        if let Some((e, plain)) = &mut self.encryption {
            plain.extend_from_slice(&bytes);
            bytes = e.encrypt(&bytes);
        }
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
        let encrypted = self.encryption.take().map(|(e, plain)| e.encrypt(&plain));
        self.store.publish(move |st| {
            let bytes = encrypted.unwrap_or_else(|| {
                let parts = st.by_segment.get(&msn).cloned().unwrap_or_default();
                let mut bytes = Vec::new();
                for p in &parts {
                    if let Some(b) = st.files.get(p) {
                        bytes.extend_from_slice(b);
                    }
                }
                bytes
            });
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
        self.starts = self.starts.split_off(&msn);
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
pub fn run_sink(queue: Arc<SinkQueue>, store: Arc<LlStore>, first_sequence: u64, tracks: Tracks) {
    let mut packager = LlPackager::with_tracks(store.clone(), first_sequence, tracks);
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
    use crate::base::clock::SimClock;
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
            audio: None,
        }
    }

    /// [`settings`] with 48 kHz stereo AAC.
    fn av_settings() -> LlSettings {
        LlSettings {
            audio: Some(audio_format()),
            ..settings()
        }
    }

    /// A packager and its store.
    fn packager(settings: LlSettings) -> (LlPackager, Arc<LlStore>) {
        let (store, _rx) = LlStore::new(Arc::new(SimClock::new(0)), settings);
        (LlPackager::new(store.clone(), 100), store)
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
        let pic = crate::base::frame::I420Frame::new(64, 64);
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
                    rendition: 0,
                    track: crate::base::frame::Track::Video,
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

    /// A camera slower than configured (10 fps against 25): parts are cut
    /// by duration, so none is longer than PART-TARGET.
    #[test]
    fn a_slower_camera_gets_shorter_parts_never_longer() {
        let (store, rx) = LlStore::new(Arc::new(SimClock::new(0)), settings());
        let mut p = LlPackager::new(store.clone(), 100);
        for (i, f) in frames(30).iter().enumerate() {
            let mut slow = EncodedFrame {
                data: f.data.clone(),
                ..**f
            };
            let t = Ticks90k(i as u64 * 9000);
            (slow.pts, slow.dts, slow.duration) = (t, t, Ticks90k(9000));
            slow.keyframe = i % 10 == 0 && f.keyframe || i == 0;
            p.push(Arc::new(slow));
        }
        let (tx, answers) = mpsc::channel();
        store.request(
            Want::Playlist {
                msn: None,
                part: None,
                skip: false,
            },
            Box::new(Probe(1, tx)),
        );
        replies(&rx);
        let (_, LlReply::Playlist(text)) = answers.try_recv().expect("a playlist") else {
            panic!("not a playlist")
        };
        let target = settings().part_target().0 as f64 / 90_000.0;
        let parts: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:DURATION="))
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(parts.len() >= 8, "{text}");
        for d in &parts {
            assert!(
                *d <= target + 1e-6,
                "part of {d} s > PART-TARGET {target} s:\n{text}"
            );
        }
        assert!(parts.iter().all(|d| (d - 0.2).abs() < 1e-3), "{parts:?}");
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

    // ---- audio ----

    use crate::base::frame::Track;

    /// AAC-LC, 48 kHz stereo: AudioSpecificConfig 11 90.
    const ASC: [u8; 2] = [0x11, 0x90];

    fn audio_format() -> AudioFormat {
        AudioFormat {
            sample_rate: 48_000,
            channels: 2,
            bitrate_kbps: 128,
        }
    }

    /// `fs` captured `offset_ns` later, from encoder instance `epoch`.
    fn shifted(fs: &[SharedFrame], offset_ns: u64, epoch: u32) -> Vec<SharedFrame> {
        fs.iter()
            .map(|f| {
                let capture_ns = f.capture_ns + offset_ns;
                let t = Ticks90k::from_nanos(capture_ns);
                Arc::new(EncodedFrame {
                    capture_ns,
                    wall_ms: f.wall_ms + offset_ns / 1_000_000,
                    pts: t,
                    dts: t,
                    duration: f.duration,
                    keyframe: f.keyframe,
                    data: f.data.clone(),
                    epoch,
                    width: f.width,
                    height: f.height,
                    rendition: 0,
                    track: Track::Video,
                })
            })
            .collect()
    }

    /// Capture time of AAC frame `i` of a stream that starts at `t0_ns`.
    fn aac_ns(i: u64, t0_ns: u64) -> u64 {
        t0_ns + i * 1024 * 1_000_000_000 / 48_000
    }

    /// AAC frame `i` as the bus carries it.
    fn aac(i: u64, t0_ns: u64, data: Vec<u8>) -> SharedFrame {
        let capture_ns = aac_ns(i, t0_ns);
        let t = Ticks90k::from_nanos(capture_ns);
        Arc::new(EncodedFrame {
            capture_ns,
            wall_ms: 1_764_064_800_000 + capture_ns / 1_000_000,
            pts: t,
            dts: t,
            duration: Ticks90k(1920),
            keyframe: false,
            data,
            epoch: 0,
            width: 0,
            height: 0,
            rendition: 0,
            track: Track::Audio,
        })
    }

    /// Synthetic AAC frames whose bytes say which frame they are.
    fn tagged_aac(ids: impl Iterator<Item = u64>, t0_ns: u64) -> Vec<SharedFrame> {
        ids.map(|i| {
            let mut data = vec![0x21];
            data.extend_from_slice(&(i as u32).to_be_bytes());
            aac(i, t0_ns, data)
        })
        .collect()
    }

    fn tag_of(data: &[u8]) -> u64 {
        assert_eq!(data.len(), 5, "{data:?}");
        u64::from(u32::from_be_bytes(data[1..5].try_into().unwrap()))
    }

    /// The bus order: frames by capture time, audio frame `i` arriving
    /// `skew(i)` ns after its capture time (negative: before).
    fn interleave(
        video: &[SharedFrame],
        audio: &[SharedFrame],
        skew: impl Fn(usize) -> i64,
    ) -> Vec<SharedFrame> {
        let mut all: Vec<(i128, SharedFrame)> = video
            .iter()
            .map(|f| (i128::from(f.capture_ns), f.clone()))
            .collect();
        all.extend(
            audio
                .iter()
                .enumerate()
                .map(|(i, f)| (i128::from(f.capture_ns) + i128::from(skew(i)), f.clone())),
        );
        all.sort_by_key(|(t, _)| *t);
        let out: Vec<SharedFrame> = all.into_iter().map(|(_, f)| f).collect();
        let audio_order: Vec<u64> = out
            .iter()
            .filter(|f| f.is_audio())
            .map(|f| f.capture_ns)
            .collect();
        assert!(audio_order.windows(2).all(|w| w[0] < w[1]));
        out
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// The boxes `b` is made of, as (type, payload); they must tile it.
    fn boxes(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let size = be32(b, at) as usize;
            assert!(size >= 8 && at + size <= b.len(), "box at {at}: {size}");
            out.push((b[at + 4..at + 8].try_into().unwrap(), &b[at + 8..at + size]));
            at += size;
        }
        out
    }

    fn children<'a>(b: &'a [u8], kind: &[u8; 4]) -> Vec<&'a [u8]> {
        boxes(b)
            .into_iter()
            .filter(|(t, _)| t == kind)
            .map(|(_, p)| p)
            .collect()
    }

    fn child<'a>(b: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
        let found = children(b, kind);
        assert_eq!(found.len(), 1, "{}", String::from_utf8_lossy(kind));
        found[0]
    }

    /// One track's run in a part.
    #[derive(Debug)]
    struct Run {
        track: u32,
        tfdt: u64,
        durations: Vec<u32>,
        samples: Vec<Vec<u8>>,
    }

    /// The `traf`s of a part (one `moof` + one `mdat`), with their samples.
    fn runs(part: &[u8]) -> Vec<Run> {
        let top = boxes(part);
        assert_eq!(top.len(), 2);
        assert_eq!((&top[0].0, &top[1].0), (b"moof", b"mdat"));
        let moof = top[0].1;
        children(moof, b"traf")
            .into_iter()
            .map(|traf| {
                let tfhd = child(traf, b"tfhd");
                let tfdt = child(traf, b"tfdt");
                assert_eq!(tfdt[0], 1, "tfdt version 1");
                let trun = child(traf, b"trun");
                let flags = be32(trun, 0) & 0xff_ffff;
                let count = be32(trun, 4) as usize;
                let mut at = be32(trun, 8) as usize;
                let entry = 4 * (flags & 0xf00).count_ones() as usize;
                let mut durations = Vec::new();
                let mut samples = Vec::new();
                for k in 0..count {
                    let e = 12 + k * entry;
                    durations.push(be32(trun, e));
                    let size = be32(trun, e + 4) as usize;
                    samples.push(part[at..at + size].to_vec());
                    at += size;
                }
                Run {
                    track: be32(tfhd, 4),
                    tfdt: u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
                    durations,
                    samples,
                }
            })
            .collect()
    }

    /// The published parts in order (by segment, then within it), as
    /// (segment msn, bytes).
    fn parts(store: &LlStore) -> Vec<(u64, Arc<[u8]>)> {
        let st = lock(&store.state);
        st.by_segment
            .iter()
            .flat_map(|(msn, files)| {
                files
                    .iter()
                    .filter(|f| f.starts_with("part"))
                    .map(|f| (*msn, st.files[f].clone()))
            })
            .collect()
    }

    fn file(store: &LlStore, name: &str) -> Arc<[u8]> {
        lock(&store.state).files[name].clone()
    }

    /// 90 kHz ticks to 48 kHz samples, to nearest.
    fn samples_at(t: Ticks90k) -> u64 {
        (t.0 * 48_000 + 45_000) / 90_000
    }

    #[test]
    fn encrypted_parts_and_segments_decrypt_to_the_clear_ones() {
        use roomcast_media::aes128;
        let (mut plain, clear) = packager(settings());
        let (mut enc, store) = packager(settings());
        let ring = Arc::new(KeyRing::new(2, 4));
        store.set_keys(Some(ring.clone()));
        for f in frames(80) {
            plain.push(f.clone());
            enc.push(f);
        }
        let (a, b) = (parts(&clear), parts(&store));
        assert_eq!(a.len(), b.len());
        assert!(a.len() >= 12, "{} parts", a.len());
        for ((msn, clear_part), (msn_b, secret)) in a.iter().zip(&b) {
            assert_eq!(msn, msn_b);
            // Segments 100 and 101 share key 100; 102 has key 102.
            let key = ring.get(msn - msn % 2).expect("its key is kept");
            assert_ne!(&secret[..], &clear_part[..]);
            assert_eq!(secret.len() % 16, 0);
            let iv = aes128::sequence_iv(*msn);
            assert_eq!(aes128::decrypt(&key, &iv, secret).unwrap(), &clear_part[..]);
        }
        for msn in 100..=102u64 {
            let name = format!("seg{msn}.m4s");
            let key = ring.get(msn - msn % 2).unwrap();
            let whole = aes128::decrypt(&key, &aes128::sequence_iv(msn), &file(&store, &name));
            assert_eq!(whole.unwrap(), &file(&clear, &name)[..], "{name}");
        }
        let text = lock(&store.state).playlist.as_ref().unwrap().render(false);
        for tag in [
            "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/100.key\",IV=0x00000000000000000000000000000064",
            "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/100.key\",IV=0x00000000000000000000000000000065",
            "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/102.key\",IV=0x00000000000000000000000000000066",
        ] {
            assert!(text.contains(tag), "{tag} missing from\n{text}");
        }
        // The init segment is in the clear, and a key never precedes the map.
        let map = text.find("#EXT-X-MAP").unwrap();
        assert!(!text[..map].contains("METHOD=AES-128"), "{text}");
    }

    #[test]
    fn init_segment_has_an_aac_track_and_codecs_name_it() {
        let (mut p, store) = packager(av_settings());
        assert_eq!(store.codecs(), None);
        for f in frames(1) {
            p.push(f);
        }
        let init = file(&store, "init-100-0.mp4");
        let moov = child(&init, b"moov");
        let traks = children(moov, b"trak");
        assert_eq!(traks.len(), 2);
        let handler = |trak: &[u8]| {
            let hdlr = child(child(trak, b"mdia"), b"hdlr");
            hdlr[8..12].to_vec()
        };
        assert_eq!(handler(traks[0]), b"vide");
        assert_eq!(handler(traks[1]), b"soun");
        assert_eq!(be32(child(traks[1], b"tkhd"), 12), 2, "audio is track 2");
        let mdia = child(traks[1], b"mdia");
        assert_eq!(be32(child(mdia, b"mdhd"), 12), 48_000, "timescale");
        let stsd = child(child(child(mdia, b"minf"), b"stbl"), b"stsd");
        let mp4a = child(&stsd[8..], b"mp4a");
        assert_eq!(&mp4a[16..18], &[0, 2], "channels");
        let esds = child(&mp4a[28..], b"esds");
        let dsi = [0x05, 0x02, ASC[0], ASC[1]];
        assert!(esds.windows(4).any(|w| w == dsi), "{esds:02x?}");
        let codecs = store.codecs().unwrap();
        assert!(codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"));
        assert_eq!(codecs.len(), "avc1.42c01e,mp4a.40.2".len(), "{codecs}");
        assert_eq!(AudioFormat::asc(&audio_format()), ASC);

        // Without audio: the video-only init segment and codecs.
        let (mut p, store) = packager(settings());
        for f in frames(1) {
            p.push(f);
        }
        let ps = ParameterSets::from_annexb(&frames(1)[0].data).unwrap();
        assert_eq!(
            &file(&store, "init-100-0.mp4")[..],
            &fmp4::init_segment(&ps)[..]
        );
        assert_eq!(store.codecs(), Some(ps.info.codecs_string()));

        // Audio switched on with new settings: the next epoch has it.
        store.set_settings(av_settings());
        let later = shifted(&frames(1), 1_000_000_000, 1);
        p.push(tagged_aac(0..1, 1_000_000_000).remove(0));
        p.push(later[0].clone());
        let init = file(&store, "init-100-1.mp4");
        assert_eq!(children(child(&init, b"moov"), b"trak").len(), 2);
        assert!(store.codecs().unwrap().ends_with(",mp4a.40.2"));
    }

    #[test]
    fn every_part_carries_the_audio_of_its_time_on_a_continuous_timeline() {
        let (mut p, store) = packager(av_settings());
        // Video from 1 s to 5 s; audio from 0.5 s, arriving 50 ms early.
        let video = shifted(&frames(100), 1_000_000_000, 0);
        let audio = tagged_aac(0..220, 500_000_000);
        for f in interleave(&video, &audio, |_| -50_000_000) {
            p.push(f);
        }
        let parts = parts(&store);
        // Segments of 25 frames in parts of 6, 6, 6, 6, 1; the last frame waits.
        assert_eq!(parts.len(), 5 * 3 + 4);
        let first_kept = (0..)
            .find(|&i| aac_ns(i, 500_000_000) >= 1_000_000_000)
            .unwrap();
        let anchor = samples_at(Ticks90k::from_nanos(aac_ns(first_kept, 500_000_000)));
        let mut next_id = first_kept;
        let mut next_dts = anchor;
        let mut per_segment: BTreeMap<u64, usize> = BTreeMap::new();
        let mut video_end = Ticks90k(0);
        for (msn, part) in &parts {
            let runs = runs(part);
            assert_eq!(runs.len(), 2, "a video and an audio traf in every part");
            assert_eq!((runs[0].track, runs[1].track), (1, 2));
            let (v, a) = (&runs[0], &runs[1]);
            let start = Ticks90k(v.tfdt);
            video_end = Ticks90k(v.tfdt + v.durations.iter().map(|&d| u64::from(d)).sum::<u64>());
            // tfdt is the sum of all the audio before: no gap, no overlap.
            assert_eq!(a.tfdt, next_dts, "part of segment {msn}");
            assert!(a.durations.iter().all(|&d| d == 1024));
            for s in &a.samples {
                let id = tag_of(s);
                assert_eq!(id, next_id, "every frame once, in order");
                // The frame's time is within the part.
                let t = Ticks90k::from_nanos(aac_ns(id, 500_000_000));
                assert!(
                    t >= start && t < video_end,
                    "{t:?} in {start:?}..{video_end:?}"
                );
                next_id += 1;
            }
            next_dts += 1024 * a.samples.len() as u64;
            *per_segment.entry(*msn).or_default() += a.samples.len();
        }
        // Nothing lost: every frame before the last part's end is in a part.
        let last = (0..).find(|&i| Ticks90k::from_nanos(aac_ns(i, 500_000_000)) >= video_end);
        assert_eq!(Some(next_id), last);
        // A second of media holds 48000 / 1024 = 46.875 AAC frames.
        let full: Vec<usize> = per_segment.values().copied().take(3).collect();
        assert_eq!(full.len(), 3);
        assert!(full.iter().all(|n| (46..=47).contains(n)), "{full:?}");
        // A segment is still its parts back to back.
        let seg = file(&store, "seg100.m4s");
        let joined: Vec<u8> = parts
            .iter()
            .filter(|(m, _)| *m == 100)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        assert_eq!(&seg[..], &joined[..]);
    }

    #[test]
    fn dash_packagers_split_the_tracks_at_the_same_cuts() {
        let video = shifted(&frames(100), 1_000_000_000, 0);
        let audio = tagged_aac(0..220, 500_000_000);
        let stores: Vec<Arc<LlStore>> = [Tracks::Both, Tracks::Video, Tracks::Audio]
            .into_iter()
            .map(|tracks| {
                let (store, _rx) = LlStore::new(Arc::new(SimClock::new(0)), av_settings());
                let mut p = LlPackager::with_tracks(store.clone(), 100, tracks);
                for f in interleave(&video, &audio, |_| -50_000_000) {
                    p.push(f);
                }
                store
            })
            .collect();
        let [both, pictures, sound] = &stores[..] else {
            unreachable!()
        };
        let (b, v, a) = (parts(both), parts(pictures), parts(sound));
        assert_eq!(b.len(), v.len());
        assert_eq!(b.len(), a.len());
        for ((b, v), a) in b.iter().zip(&v).zip(&a) {
            assert_eq!((b.0, v.0), (a.0, a.0), "the same segment numbers");
            let (rb, rv, ra) = (runs(&b.1), runs(&v.1), runs(&a.1));
            assert_eq!(rv.len(), 1);
            assert_eq!(ra.len(), 1);
            // The muxed part's two tracks, each alone.
            assert_eq!((rv[0].track, rv[0].tfdt), (1, rb[0].tfdt));
            assert_eq!((ra[0].track, ra[0].tfdt), (2, rb[1].tfdt));
            assert_eq!(ra[0].samples, rb[1].samples);
        }
        // Codecs and init segments say one track each.
        assert_eq!(sound.codecs().as_deref(), Some("mp4a.40.2"));
        assert!(pictures.codecs().unwrap().starts_with("avc1."));
        assert!(!pictures.codecs().unwrap().contains("mp4a"));
        let init = file(sound, "init-100-0.mp4");
        assert_eq!(init.windows(4).filter(|w| *w == b"trak").count(), 1);
        assert!(init.windows(4).any(|w| w == b"mp4a"));
        // The timeline: consecutive numbers, each segment lasting until the
        // next starts, the same for both tracks.
        let (tv, ta) = (pictures.timeline().unwrap(), sound.timeline().unwrap());
        assert_eq!(tv.init, "init-100-0.mp4");
        assert_eq!(tv.segments, ta.segments);
        assert_eq!(tv.segments.len(), 3);
        for w in tv.segments.windows(2) {
            assert_eq!(w[1].number, w[0].number + 1);
            assert_eq!(w[0].start + w[0].duration, w[1].start);
        }
        assert_eq!(tv.segments[0].start, Ticks90k::from_nanos(1_000_000_000).0);
        assert!(tv.first_wall_ms.is_some());
    }

    #[test]
    fn late_and_early_audio_epoch_change_and_dropped_frames() {
        let (mut p, store) = packager(av_settings());
        let fs = frames(50);
        // Epoch 0 from 1 s to 3 s, then epoch 1 (new settings) from 3.5 s.
        let mut video = shifted(&fs, 1_000_000_000, 0);
        video.extend(shifted(&fs, 3_500_000_000, 1));
        // Audio from 0.5 s to 5.8 s, without frames 190..194 (a queue
        // overflow), arriving up to 100 ms before or after its video.
        let t0 = 500_000_000;
        let audio = tagged_aac((0..248).filter(|i| !(190..194).contains(i)), t0);
        let skew = |i: usize| (100_000_000.0 * (i as f64 / 25.0).sin()) as i64;
        for f in interleave(&video, &audio, skew) {
            p.push(f);
        }
        let time = |id: u64| Ticks90k::from_nanos(aac_ns(id, t0));
        let parts = parts(&store);
        let mut seen: Vec<(u64, u64, bool)> = Vec::new(); // (id, dts, epoch 1)
        let mut part_audio = Vec::new();
        for (msn, part) in &parts {
            let runs = runs(part);
            assert_eq!(runs[0].track, 1, "every part starts with video");
            let epoch1 = Ticks90k(runs[0].tfdt) >= Ticks90k(3 * 90_000);
            let Some(a) = runs.iter().find(|r| r.track == 2) else {
                part_audio.push(0);
                continue;
            };
            part_audio.push(a.samples.len());
            let mut dts = a.tfdt;
            for (s, d) in a.samples.iter().zip(&a.durations) {
                seen.push((tag_of(s), dts, epoch1));
                dts += u64::from(*d);
            }
            assert!(*msn >= 100);
        }
        assert!(part_audio.iter().filter(|&&n| n > 0).count() > parts.len() / 2);
        // Each epoch: the frames from its first keyframe's time, each once,
        // in order (but for the four dropped), each at its slot of the
        // timeline anchored on the epoch's first kept frame.
        let video_end = |e1: bool| {
            parts
                .iter()
                .map(|(_, b)| runs(b).remove(0))
                .filter(|v| (Ticks90k(v.tfdt) >= Ticks90k(3 * 90_000)) == e1)
                .map(|v| v.tfdt + v.durations.iter().map(|&d| u64::from(d)).sum::<u64>())
                .max()
                .unwrap()
        };
        // Audio that came after the last video frame waits for the next part.
        let waiting: Vec<u64> = p
            .audio
            .as_ref()
            .unwrap()
            .pending
            .iter()
            .map(|f| tag_of(&f.data))
            .collect();
        assert!(!waiting.is_empty());
        for (e1, start) in [(false, Ticks90k(90_000)), (true, Ticks90k(315_000))] {
            let got: Vec<(u64, u64)> = seen
                .iter()
                .filter(|s| s.2 == e1)
                .map(|s| (s.0, s.1))
                .collect();
            let end = if e1 {
                Ticks90k(u64::MAX)
            } else {
                Ticks90k(video_end(e1))
            };
            let want: Vec<u64> = (0..248)
                .filter(|i| !(190..194).contains(i))
                .filter(|&i| time(i) >= start && time(i) < end)
                .collect();
            let mut ids: Vec<u64> = got.iter().map(|g| g.0).collect();
            if e1 {
                assert!(Ticks90k(video_end(e1)) > time(*ids.last().unwrap()));
                ids.extend(&waiting);
            }
            assert_eq!(ids, want, "epoch {}", u8::from(e1));
            let anchor = samples_at(time(want[0]));
            for (id, dts) in got {
                assert_eq!(dts, anchor + (id - want[0]) * 1024, "frame {id}");
            }
        }
    }

    /// Every file the store holds and its playlist, rendered.
    fn snapshot(store: &LlStore) -> (BTreeMap<String, Vec<u8>>, String) {
        let st = lock(&store.state);
        let files = st
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect();
        (files, st.playlist.as_ref().unwrap().render(false))
    }

    #[test]
    fn with_audio_off_the_output_is_unchanged() {
        // Reference: what the packager wrote before it knew audio, the
        // video-only init segment and one write_fragment per part.
        let fs = frames(80);
        let ps = ParameterSets::from_annexb(&fs[0].data).unwrap();
        let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        want.insert("init-100-0.mp4".into(), fmp4::init_segment(&ps));
        let mut part = 800;
        for (seg, chunk) in fs.chunks(25).enumerate() {
            let mut seg_bytes = Vec::new();
            for group in chunk.chunks(6) {
                let last_in_stream = seg == 3;
                if last_in_stream {
                    break; // the open segment's five frames wait for a sixth
                }
                let samples: Vec<Sample<'_>> = group
                    .iter()
                    .map(|f| Sample {
                        dts: f.dts,
                        pts: f.pts,
                        duration: 3600,
                        keyframe: f.keyframe,
                        annexb: &f.data,
                    })
                    .collect();
                let mut bytes = Vec::new();
                fmp4::write_fragment(part - 799, &samples, &mut bytes);
                seg_bytes.extend_from_slice(&bytes);
                want.insert(format!("part{part}.m4s"), bytes);
                part += 1;
            }
            if seg < 3 {
                want.insert(format!("seg{}.m4s", 100 + seg), seg_bytes);
            }
        }
        let run = |audio: Option<AudioFormat>, with_aac: bool| {
            let (mut p, store) = packager(LlSettings {
                audio,
                ..settings()
            });
            let aac = if with_aac {
                tagged_aac(0..160, 0)
            } else {
                Vec::new()
            };
            for f in interleave(&fs, &aac, |_| 30_000_000) {
                p.push(f);
            }
            snapshot(&store)
        };
        let (plain, plain_playlist) = {
            let (mut p, store) = packager(settings());
            for f in &fs {
                p.push(f.clone());
            }
            snapshot(&store)
        };
        assert_eq!(
            plain.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        assert!(plain == want, "LlPackager::new writes what it always did");
        for with_aac in [false, true] {
            let (files, playlist) = run(None, with_aac);
            assert!(files == want, "audio off, AAC on the bus: {with_aac}");
            assert_eq!(playlist, plain_playlist);
        }
        assert!(!plain_playlist.contains("mp4a"));
    }

    /// Real H.264 (openh264) and real AAC-LC (FFmpeg's encoder, the test
    /// instrument) through the packager; FFmpeg must read init + parts as
    /// H.264 and 48 kHz AAC of the same duration and decode them cleanly.
    #[test]
    fn ffprobe_reads_h264_and_aac_of_equal_duration() {
        use std::process::Command;
        let have = |tool: &str| Command::new(tool).arg("-version").output().is_ok();
        if !have("ffprobe") || !have("ffmpeg") {
            eprintln!("ffmpeg/ffprobe not installed: skipping");
            return;
        }
        let dir = std::env::temp_dir().join(format!("roomcast-llhls-av-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let adts_path = dir.join("tone.aac");
        let run = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("sine=frequency=440:sample_rate=48000:duration=2.5")
            .args(["-ac", "2", "-c:a", "aac", "-b:a", "128k", "-f", "adts"])
            .arg(&adts_path)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let adts = std::fs::read(&adts_path).unwrap();
        let raw: Vec<Vec<u8>> = roomcast_media::aac::adts_frames(&adts)
            .map(|f| {
                let f = f.unwrap();
                assert_eq!(f.header.config.to_bytes(), ASC);
                f.payload.to_vec()
            })
            .collect();
        assert!(raw.len() > 110, "{}", raw.len());

        let (mut p, store) = packager(av_settings());
        // Two seconds of video from 1 s, audio from 0.9 s: the first 100 ms dropped.
        let video = shifted(&frames(51), 1_000_000_000, 0);
        let audio: Vec<SharedFrame> = raw
            .into_iter()
            .enumerate()
            .map(|(i, d)| aac(i as u64, 900_000_000, d))
            .collect();
        let skew = |i: usize| (80_000_000.0 * (i as f64 / 10.0).cos()) as i64;
        for f in interleave(&video, &audio, skew) {
            p.push(f);
        }
        let mut mp4 = file(&store, "init-100-0.mp4").to_vec();
        for (_, part) in parts(&store) {
            mp4.extend_from_slice(&part);
        }
        let path = dir.join("av.mp4");
        std::fs::write(&path, &mp4).unwrap();

        // ffprobe's `entries` of the file, one CSV line each.
        let ffprobe = |entries: &str| {
            Command::new("ffprobe")
                .args(["-v", "error", "-show_entries", entries])
                .args(["-of", "csv=p=0"])
                .arg(&path)
                .output()
                .unwrap()
        };
        let probe = ffprobe("stream=index,codec_name,sample_rate,channels");
        let errors = String::from_utf8_lossy(&probe.stderr);
        assert!(probe.status.success() && errors.is_empty(), "{errors}");
        let streams = String::from_utf8_lossy(&probe.stdout).to_string();
        let lines: Vec<&str> = streams.lines().collect();
        assert_eq!(lines, ["0,h264", "1,aac,48000,2"], "{streams}");

        // Each stream's span: first packet's start to last packet's end.
        let packets = ffprobe("packet=stream_index,pts_time,duration_time");
        assert!(packets.status.success());
        // (first start, last end, packets); ffprobe gives no duration for
        // these video packets, so the frame durations are added here.
        let mut span = [(f64::MAX, 0f64, 0usize); 2];
        let frame = [0.04, 1024.0 / 48_000.0];
        for line in String::from_utf8_lossy(&packets.stdout).lines() {
            let v: Vec<&str> = line.split(',').collect();
            let (i, pts): (usize, f64) = (v[0].parse().unwrap(), v[1].parse().unwrap());
            span[i].0 = span[i].0.min(pts);
            span[i].1 = span[i].1.max(pts + frame[i]);
            span[i].2 += 1;
        }
        let [(v0, v1, vn), (a0, a1, an)] = span;
        // Frame 50 is a keyframe: it closed the second segment.
        assert_eq!(vn, 50, "video frames in published parts");
        assert!(
            (v0 - 1.0).abs() < 0.001 && (a0 - 1.0).abs() < 0.022,
            "{v0} {a0}"
        );
        assert!((v1 - v0 - 2.0).abs() < 0.001, "{v0}..{v1}");
        assert!(
            ((a1 - a0) - (v1 - v0)).abs() < 0.03,
            "audio {a0}..{a1} ({an}), video {v0}..{v1}"
        );

        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&decode.stderr);
        assert!(decode.status.success() && errors.is_empty(), "{errors}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
