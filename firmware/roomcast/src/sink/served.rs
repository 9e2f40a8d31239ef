//! The packagers the box serves itself, one set per rendition of the
//! ladder: the MPEG-TS HLS store ([`hls`]) and the LL-HLS store
//! ([`llhls`]), each fed by its own bus queue that takes that rendition's
//! video and the shared audio. The multivariant playlists that list them
//! are made here too, from what the stores measured (peak and average
//! bitrate over the live window, codecs from the real SPS).
//!
//! The set is rebuilt when the ladder changes shape (the pipeline restarts
//! then anyway); all renditions then start from one sequence number, so
//! with keyframes on the same pictures their segments and parts carry the
//! same numbers and times.

use crate::base::bus::{FrameBus, SinkQueue};
use crate::base::clock::SharedClock;
use crate::base::lock;
use crate::config::{Rendition, ValidConfig};
use crate::sink::hls::{self, HlsSettings, HlsStore};
use crate::sink::keys::KeyRing;
use crate::sink::llhls::{self, LadderEdges, LlSettings, LlStore, Ready, Timeline, Tracks};
use roomcast_media::aes128::Key;
use roomcast_media::dash::{
    init_run, AudioRepresentation, DashPath, Mpd, TimelineSegment, Track as DashTrack,
    VideoRepresentation,
};
use roomcast_media::hls::{render_multivariant, Variant};
use roomcast_media::time::Ticks90k;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Frames a served packager may fall behind before it drops to the next keyframe.
const QUEUE_FRAMES: usize = 120;

/// Which media playlists a multivariant playlist lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// MPEG-TS segments (`/hls/ts/rN/index.m3u8`).
    Ts,
    /// LL-HLS: CMAF parts and segments with blocking reload.
    LowLatency,
}

/// One rendition's stores and what it is.
pub struct Served {
    pub spec: Rendition,
    pub fps: u32,
    pub hls: Arc<HlsStore>,
    /// Low-latency HLS (CMAF parts, blocking reloads).
    pub ll: Arc<LlStore>,
    /// MPEG-DASH: the pictures alone (`/dash/rN/…`); `None` while HLS is
    /// encrypted (DASH would serve the same pictures in the clear).
    pub dash: Option<Arc<LlStore>>,
}

/// Every rendition's packagers.
pub struct Renditions {
    bus: Arc<FrameBus>,
    clock: SharedClock,
    replies: Sender<Ready>,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    served: Vec<Arc<Served>>,
    /// With AES-128 on: the keys every rendition's segments use.
    keys: Option<Arc<KeyRing>>,
    /// `hls.encryption` and `hls.key_rotation_segments` the set runs with.
    encryption: (String, u32),
    /// MPEG-DASH's audio (`/dash/a/…`), cut where the top rendition is.
    dash_audio: Option<Arc<LlStore>>,
    /// Where the MPD's clock and current period are, once it has segments.
    dash_periods: Option<DashPeriod>,
    queues: Vec<Arc<SinkQueue>>,
    threads: Vec<JoinHandle<()>>,
}

impl Renditions {
    /// The packagers for `cfg`'s ladder, started, and the queue of answers
    /// to parked LL-HLS requests (every rendition's), which the caller
    /// drains on its own threads.
    pub fn start(
        bus: Arc<FrameBus>,
        clock: SharedClock,
        cfg: &ValidConfig,
    ) -> (Renditions, Receiver<Ready>) {
        let (replies, rx) = mpsc::channel();
        let r = Renditions {
            bus,
            clock,
            replies,
            running: Mutex::default(),
        };
        r.rebuild(cfg);
        (r, rx)
    }

    /// Follows a new configuration: new packaging settings for each
    /// rendition, or a fresh set when the ladder changed.
    pub fn apply(&self, cfg: &ValidConfig) {
        let same_ladder = {
            let running = lock(&self.running);
            running.encryption == encryption(cfg)
                && running.served.len() == cfg.renditions().len()
                && running
                    .served
                    .iter()
                    .zip(cfg.renditions())
                    .all(|(s, r)| s.spec == *r)
                && running.dash_audio.is_some()
                    == (running.keys.is_none() && cfg.audio_format().is_some())
        };
        if !same_ladder {
            self.rebuild(cfg);
            return;
        }
        let running = lock(&self.running);
        for s in &running.served {
            s.hls.set_settings(hls_settings(cfg));
            s.ll.set_settings(ll_settings(cfg));
            if let Some(d) = &s.dash {
                d.set_settings(ll_settings(cfg));
            }
        }
        if let Some(a) = &running.dash_audio {
            a.set_settings(ll_settings(cfg));
        }
    }

    /// A fresh set for `cfg`, swapped in whole before the old one stops, so
    /// a reader always finds a top rendition.
    fn rebuild(&self, cfg: &ValidConfig) {
        // Sequence numbers start from the wall clock so they never repeat
        // across restarts and a cached segment can never be the wrong one.
        let first_sequence = self.clock.wall_unix_ms() / 500;
        let mut running = Running {
            encryption: encryption(cfg),
            ..Running::default()
        };
        let h = &cfg.get().hls;
        // One key per rotation period for every rendition: they number
        // their segments alike, so they share keys.
        running.keys = (h.encryption == "aes-128")
            .then(|| Arc::new(KeyRing::new(h.key_rotation_segments, h.window)));
        let edges = LadderEdges::new(cfg.renditions().len());
        let dash = running.keys.is_none();
        let dash_queue = |name: String, r: u8, tracks: Tracks, running: &mut Running| {
            let store =
                LlStore::with_replies(self.clock.clone(), ll_settings(cfg), self.replies.clone());
            let q = self.bus.subscribe_rendition(&name, QUEUE_FRAMES, r);
            let thread = spawn(name, {
                let (q, store) = (q.clone(), store.clone());
                move || llhls::run_sink(q, store, first_sequence, tracks)
            });
            running.threads.extend(thread);
            running.queues.push(q);
            store
        };
        for (i, spec) in cfg.renditions().iter().enumerate() {
            let r = i as u8;
            let hls = HlsStore::with_keys(hls_settings(cfg), running.keys.clone());
            let ll =
                LlStore::with_replies(self.clock.clone(), ll_settings(cfg), self.replies.clone());
            ll.join_ladder(edges.clone(), i);
            ll.set_keys(running.keys.clone());
            // The top rendition's queues keep the names they had before
            // the ladder ("hls", "llhls"); rung i's are "hls{i}", "llhls{i}".
            let n = if i == 0 { String::new() } else { i.to_string() };
            let hq = self
                .bus
                .subscribe_rendition(&format!("hls{n}"), QUEUE_FRAMES, r);
            let lq = self
                .bus
                .subscribe_rendition(&format!("llhls{n}"), QUEUE_FRAMES, r);
            let threads = [
                spawn(format!("hls{i}"), {
                    let (q, hls) = (hq.clone(), hls.clone());
                    move || hls::run_sink(q, hls, first_sequence)
                }),
                spawn(format!("llhls{i}"), {
                    let (q, ll) = (lq.clone(), ll.clone());
                    move || llhls::run_sink(q, ll, first_sequence, Tracks::Both)
                }),
                spawn(format!("llhls-timer{i}"), {
                    let ll = ll.clone();
                    move || llhls::run_timer(ll)
                }),
            ];
            running.threads.extend(threads.into_iter().flatten());
            running.queues.extend([hq, lq]);
            let dash = dash.then(|| dash_queue(format!("dash{i}"), r, Tracks::Video, &mut running));
            running.served.push(Arc::new(Served {
                spec: *spec,
                fps: cfg.get().video.fps,
                hls,
                ll,
                dash,
            }));
        }
        // After the renditions' queues, so status lists "hls" first.
        if dash && cfg.audio_format().is_some() {
            running.dash_audio = Some(dash_queue(
                "dash-audio".into(),
                0,
                Tracks::Audio,
                &mut running,
            ));
        }
        let old = std::mem::replace(&mut *lock(&self.running), running);
        self.retire(old);
    }

    /// Stops every packager (their stores answer what they hold, then 404);
    /// for the end of a benchmark: the daemon's set runs for its life.
    pub fn stop(&self) {
        let old = std::mem::take(&mut *lock(&self.running));
        self.retire(old);
    }

    fn retire(&self, old: Running) {
        for q in &old.queues {
            self.bus.unsubscribe(q);
        }
        for t in old.threads {
            let _ = t.join();
        }
    }

    /// Rendition `i` (0 = top), while the ladder has it.
    pub fn get(&self, i: usize) -> Option<Arc<Served>> {
        lock(&self.running).served.get(i).cloned()
    }

    /// AES-128 key `id` (`/hls/keys/{id}.key`), while encryption is on and
    /// a listed segment needs it.
    pub fn key(&self, id: u64) -> Option<Key> {
        lock(&self.running).keys.as_ref()?.get(id)
    }

    /// The top rendition (`[video]`): a running daemon always has one (a
    /// ladder change swaps the whole set at once).
    pub fn top(&self) -> Arc<Served> {
        self.get(0).expect("the top rendition always runs")
    }

    pub fn all(&self) -> Vec<Arc<Served>> {
        lock(&self.running).served.clone()
    }

    /// A multivariant playlist listing every rendition's `flavour` media
    /// playlist at `uri(i)`, once every rendition has a segment (so `CODECS`
    /// is known); `None` before.
    pub fn multivariant(&self, flavour: Flavour, uri: impl Fn(usize) -> String) -> Option<String> {
        let all = self.all();
        let variants: Option<Vec<Variant>> = all
            .iter()
            .enumerate()
            .map(|(i, s)| s.variant(flavour, uri(i)))
            .collect();
        // The version is the highest its media playlists need (§4.4.1.2).
        let version = match flavour {
            Flavour::Ts => roomcast_media::hls::VERSION,
            Flavour::LowLatency => roomcast_media::llhls::VERSION,
        };
        Some(render_multivariant(version, &variants?))
    }
}

/// The MPD's clock: `availabilityStartTime`, and the period the segments
/// listed now belong to (a new one whenever the init segments change, after
/// an encoder restart). Both stay fixed while they last: players anchor on
/// them.
#[derive(Debug, Clone)]
struct DashPeriod {
    availability_start_ms: u64,
    /// The init segment's name, which is also the period's id.
    init: String,
    start_ms: u64,
    /// Decode time (90 kHz) at the period's start.
    presentation_time_offset: u64,
}

impl Renditions {
    /// The live MPD (`/dash/index.mpd`) over the renditions' DASH stores,
    /// listing the segments every representation already has; `None` while
    /// DASH is off (HLS encrypted) or before the first segment.
    pub fn mpd(&self, cfg: &ValidConfig) -> Option<String> {
        let mut running = lock(&self.running);
        let video: Vec<(Arc<Served>, Arc<LlStore>)> = running
            .served
            .iter()
            .map(|s| Some((s.clone(), s.dash.clone()?)))
            .collect::<Option<_>>()?;
        let audio = running.dash_audio.clone();
        // Only what every representation has: the stores publish one
        // after the other.
        let timelines: Vec<Timeline> = video
            .iter()
            .map(|(_, d)| d)
            .chain(audio.as_ref())
            .map(|store| store.timeline())
            .collect::<Option<_>>()?;
        let top = timelines.first()?;
        let first = top.segments.first()?;
        let mut newest = u64::MAX;
        for t in &timelines {
            if t.init != top.init {
                return None; // one store is mid-restart: wait for it
            }
            newest = newest.min(t.segments.last()?.number);
        }
        // `$Number$` counts from the run's first segment, under a folder
        // named after the run: players read it as a 32-bit integer (ffmpeg
        // does), too small for the wall-clock-based msn, yet no URL may
        // ever name two different segments.
        let boot = init_run(&top.init)?;
        let segments: Vec<_> = top
            .segments
            .iter()
            .filter(|s| s.number <= newest)
            .map(|s| TimelineSegment {
                number: s.number.saturating_sub(boot),
                ..*s
            })
            .collect();
        let wall = top.first_wall_ms?;
        let start_ms = |t: u64| t / (Ticks90k::HZ / 1000);
        let period = match &running.dash_periods {
            Some(p) if p.init == top.init => p.clone(),
            // A new period starts at the wall time of its first segment.
            Some(p) => DashPeriod {
                availability_start_ms: p.availability_start_ms,
                init: top.init.clone(),
                start_ms: wall.saturating_sub(p.availability_start_ms),
                presentation_time_offset: first.start,
            },
            // The first: the clock starts at the first listed segment.
            None => DashPeriod {
                availability_start_ms: wall,
                init: top.init.clone(),
                start_ms: 0,
                presentation_time_offset: first.start,
            },
        };
        running.dash_periods = Some(period.clone());
        drop(running);

        let h = &cfg.get().hls;
        let reps: Vec<VideoRepresentation> = video
            .iter()
            .enumerate()
            .map(|(i, (s, d))| {
                Some(VideoRepresentation {
                    id: format!("r{i}"),
                    bandwidth: d
                        .bandwidth()
                        .map_or(u64::from(s.spec.bitrate_kbps) * 1000, |b| b.0),
                    codecs: d.codecs()?,
                    width: s.spec.width,
                    height: s.spec.height,
                    frame_rate: s.fps,
                })
            })
            .collect::<Option<_>>()?;
        let format = cfg.audio_format();
        let sound = match (&audio, format) {
            (Some(a), Some(f)) => Some(AudioRepresentation {
                id: "a".into(),
                bandwidth: a
                    .bandwidth()
                    .map_or(u64::from(f.bitrate_kbps) * 1000, |b| b.0),
                codecs: a.codecs()?,
                sample_rate: f.sample_rate,
                channels: f.channels.into(),
            }),
            _ => None,
        };
        let longest = segments.iter().map(|s| s.duration).max().unwrap_or(0);
        let init = format!("$RepresentationID$/{}", top.init);
        let media = format!("$RepresentationID$/{boot}/seg$Number$.m4s");
        let mpd = Mpd {
            availability_start_ms: period.availability_start_ms,
            publish_ms: self.clock.wall_unix_ms(),
            // New segments appear only in a new MPD (SegmentTimeline):
            // reloaded twice a segment, a segment is listed at most half a
            // segment after it is complete.
            minimum_update_period_ms: h.segment_ms / 2,
            min_buffer_time_ms: h.segment_ms,
            time_shift_buffer_depth_ms: h.segment_ms.saturating_mul(h.window),
            max_segment_duration_ms: u32::try_from(start_ms(longest)).unwrap_or(u32::MAX),
            // A whole segment must exist and be listed before it is
            // fetched: a segment and a half behind the camera, plus half
            // a second to fetch it.
            target_latency_ms: h.segment_ms.saturating_mul(3) / 2 + 500,
            availability_time_offset_ms: None,
            period_id: period_id(&period.init),
            period_start_ms: period.start_ms,
            presentation_time_offset: period.presentation_time_offset,
            utc_timing_url: "time",
            timescale: Ticks90k::HZ as u32,
            initialization: &init,
            media: &media,
            video: &reps,
            audio: sound.as_ref(),
            segments: &segments,
        };
        Some(mpd.render())
    }

    /// The bytes of a DASH init segment or segment (see [`Self::mpd`] for
    /// the names); `None` for the MPD and the clock, which are not files.
    pub fn dash_file(&self, path: &DashPath<'_>) -> Option<Arc<[u8]>> {
        let (track, name) = match *path {
            DashPath::Init { track, name } => (track, name.to_string()),
            DashPath::Segment { track, run, number } => {
                (track, format!("seg{}.m4s", run.checked_add(number)?))
            }
            DashPath::Mpd | DashPath::Time => return None,
        };
        let store = match track {
            DashTrack::Audio => lock(&self.running).dash_audio.clone()?,
            DashTrack::Video(i) => self.get(i)?.dash.clone()?,
        };
        store.file(&name)
    }

    /// Whether DASH is served (it is unless HLS is encrypted).
    pub fn dash_on(&self) -> bool {
        lock(&self.running).keys.is_none()
    }
}

/// A period's id: its init segment's name without `init-` and `.mp4`.
fn period_id(init: &str) -> &str {
    init.strip_prefix("init-")
        .and_then(|s| s.strip_suffix(".mp4"))
        .unwrap_or(init)
}

impl Served {
    /// This rendition as a multivariant playlist entry: BANDWIDTH is the
    /// peak segment bitrate over the live window of the `flavour`'s own
    /// segments (MPEG-TS weighs up to twice the fMP4 of a small rendition,
    /// and players compare it with what they download), AVERAGE-BANDWIDTH
    /// the mean; before a segment exists, the configured bitrate with the
    /// audio's and 10 % for the container. `None` until the codecs are
    /// known (the first init segment).
    fn variant(&self, flavour: Flavour, uri: String) -> Option<Variant> {
        let codecs = self.ll.codecs()?;
        let audio_bps = self
            .hls
            .settings()
            .audio
            .map_or(0, |a| u64::from(a.bitrate_kbps) * 1000);
        let nominal = (u64::from(self.spec.bitrate_kbps) * 1000 + audio_bps) * 11 / 10;
        let measured = match flavour {
            Flavour::Ts => self.hls.bandwidth(),
            Flavour::LowLatency => self.ll.bandwidth(),
        };
        let (peak, average) = measured.unwrap_or((nominal, nominal));
        Some(Variant {
            uri,
            bandwidth: peak,
            average_bandwidth: Some(average),
            codecs,
            width: self.spec.width,
            height: self.spec.height,
            frame_rate: self.fps,
        })
    }
}

/// What decides the keys: a change rebuilds the packagers, so no segment
/// is ever half in one scheme and half in another.
fn encryption(cfg: &ValidConfig) -> (String, u32) {
    let h = &cfg.get().hls;
    (h.encryption.clone(), h.key_rotation_segments)
}

pub fn ll_settings(cfg: &ValidConfig) -> LlSettings {
    let c = cfg.get();
    LlSettings {
        segment_ms: c.hls.segment_ms,
        part_ms: c.hls.part_ms,
        fps: c.video.fps,
        window: c.hls.window,
        target_duration_s: cfg.target_duration_s(),
        audio: cfg.audio_format(),
    }
}

pub fn hls_settings(cfg: &ValidConfig) -> HlsSettings {
    HlsSettings {
        segment_ms: cfg.get().hls.segment_ms,
        window: cfg.get().hls.window,
        target_duration_s: cfg.target_duration_s(),
        audio: cfg.audio_format(),
    }
}

/// Starts a packager thread; `None` (logged) if the system has no thread
/// left, which leaves that rendition without files rather than the box down.
fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| eprintln!("roomcast: cannot start the {name} thread: {e}"))
        .ok()
}

#[cfg(test)]
mod dash_names {
    use super::*;

    #[test]
    fn a_period_is_named_after_its_init_segment() {
        assert_eq!(period_id("init-3593360472-0.mp4"), "3593360472-0");
        assert_eq!(period_id("other"), "other");
    }
}
