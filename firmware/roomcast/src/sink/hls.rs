//! The HLS sink: packages frames from the bus into MPEG-TS segments cut on
//! keyframes and keeps the live playlist and recent segments in memory for
//! the HTTP server. Muxing and playlist rules live in `roomcast_media`; this
//! module only decides what to keep and hands it out.

use crate::base::bus::SinkQueue;
use crate::base::frame::AudioFormat;
use crate::base::frame::EncodedFrame;
use crate::base::lock;
use crate::sink::keys::KeyRing;
use crate::sink::tsmux::ProgramMuxer;
use roomcast_media::hls::{measured_bandwidth, Cut, MediaPlaylist, Segment, Segmenter};
use roomcast_media::time::Ticks90k;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Packaging settings, taken from the validated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsSettings {
    pub segment_ms: u32,
    pub window: u32,
    /// EXT-X-TARGETDURATION; see `ValidConfig::target_duration_s`.
    pub target_duration_s: u32,
    /// The program's audio track; taken up when the stream (re)starts.
    pub audio: Option<AudioFormat>,
}

/// Playlist and segments, shared between the packager and HTTP workers.
pub struct HlsStore {
    state: Mutex<StoreState>,
    changed: Condvar,
    /// Set when the packager thread ends, so no one waits forever.
    closed: AtomicBool,
    /// With `hls.encryption = "aes-128"`: every segment is encrypted.
    keys: Option<Arc<KeyRing>>,
}

struct StoreState {
    settings: HlsSettings,
    playlist: MediaPlaylist,
    /// The window `playlist` was made with.
    playlist_window: usize,
    /// Segment bytes by sequence number: the window plus a few that just left
    /// it, so a player that read the previous playlist can still fetch them.
    segments: BTreeMap<u64, Arc<[u8]>>,
    rendered: Option<Arc<str>>,
    total_segments: u64,
}

/// Segments kept after they leave the playlist (RFC 8216 §6.2.2 asks for at
/// least one target duration's worth).
const KEEP_AFTER_WINDOW: usize = 3;

impl HlsStore {
    pub fn new(settings: HlsSettings) -> Arc<Self> {
        Self::with_keys(settings, None)
    }

    /// A store whose segments are encrypted with `keys` (`None`: in the clear).
    pub fn with_keys(settings: HlsSettings, keys: Option<Arc<KeyRing>>) -> Arc<Self> {
        Arc::new(HlsStore {
            keys,
            state: Mutex::new(StoreState {
                settings,
                playlist: MediaPlaylist::new(settings.target_duration_s, settings.window as usize),
                playlist_window: settings.window as usize,
                segments: BTreeMap::new(),
                rendered: None,
                total_segments: 0,
            }),
            changed: Condvar::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// New settings take effect at the next encoder restart (the packager
    /// reads them when it sees the new epoch).
    pub fn set_settings(&self, settings: HlsSettings) {
        lock(&self.state).settings = settings;
    }

    pub fn settings(&self) -> HlsSettings {
        lock(&self.state).settings
    }

    /// The playlist text, waiting up to `timeout` for the first segment (a
    /// player that asks right at start-up gets a playable answer, not a 404).
    pub fn playlist(&self, timeout: Duration) -> Option<Arc<str>> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.state);
        loop {
            if let Some(r) = &st.rendered {
                return Some(r.clone());
            }
            let now = Instant::now();
            if now >= deadline || self.closed.load(Ordering::Relaxed) {
                return None;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub fn segment(&self, sequence: u64) -> Option<Arc<[u8]>> {
        lock(&self.state).segments.get(&sequence).cloned()
    }

    /// Peak and average bitrate (bit/s) of the segments in the live
    /// window, for a multivariant playlist; `None` before the first one.
    pub fn bandwidth(&self) -> Option<(u64, u64)> {
        let st = lock(&self.state);
        measured_bandwidth(st.playlist.segments().filter_map(|seg| {
            let len = st.segments.get(&seg.sequence)?.len() as u64;
            Some((len, seg.duration))
        }))
    }

    /// Segments published since start.
    pub fn total_segments(&self) -> u64 {
        lock(&self.state).total_segments
    }

    fn publish(&self, seg: Segment, bytes: Vec<u8>) {
        let mut st = lock(&self.state);
        let target = st.settings.target_duration_s;
        let window = st.settings.window as usize;
        // EXT-X-TARGETDURATION must not change during a playlist's life;
        // settings that need a longer one start a fresh playlist (sequence
        // numbers keep counting, so players see it as a jump, not a rewind).
        let duration_s = seg.duration.0.div_ceil(Ticks90k::HZ);
        if u64::from(target) < duration_s {
            // A segment overran the target (should not happen with validated
            // settings); keep serving it rather than lie about its length.
            st.settings.target_duration_s = u32::try_from(duration_s).unwrap_or(u32::MAX);
        }
        if st.playlist.target_duration_s() != st.settings.target_duration_s
            || st.playlist_window != window
        {
            st.playlist = MediaPlaylist::new(st.settings.target_duration_s, window);
            st.playlist_window = window;
        }
        let sequence = seg.sequence;
        st.playlist.push(seg);
        st.segments.insert(sequence, bytes.into());
        let oldest_kept = st
            .playlist
            .media_sequence()
            .saturating_sub(KEEP_AFTER_WINDOW as u64);
        st.segments = st.segments.split_off(&oldest_kept);
        st.rendered = Some(st.playlist.render().into());
        st.total_segments += 1;
        drop(st);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }
}

/// Turns frames into segments. Pure apart from publishing into the store.
pub struct Packager {
    store: Arc<HlsStore>,
    segmenter: Segmenter,
    muxer: ProgramMuxer,
    epoch: Option<u32>,
    building: Option<Building>,
    next_sequence: u64,
    /// The next segment starts after a restart of the stream.
    discontinuity: bool,
}

struct Building {
    sequence: u64,
    bytes: Vec<u8>,
    wall_ms: u64,
    discontinuity: bool,
    first_dts: Ticks90k,
    /// DTS + duration of the last frame, for a segment closed by a restart.
    end: Ticks90k,
}

impl Packager {
    /// `first_sequence` numbers the first segment.
    pub fn new(store: Arc<HlsStore>, first_sequence: u64) -> Self {
        let target = segment_target(store.settings());
        let audio = store.settings().audio;
        Packager {
            store,
            segmenter: Segmenter::new(target),
            muxer: ProgramMuxer::new(audio),
            epoch: None,
            building: None,
            next_sequence: first_sequence,
            discontinuity: false,
        }
    }

    pub fn push(&mut self, f: &EncodedFrame) {
        if f.is_audio() {
            // Audio goes into the segment being built: segments are cut at
            // video keyframes, and players place audio by its PTS.
            if let Some(b) = &mut self.building {
                self.muxer.write(f, &mut b.bytes);
            }
            return;
        }
        if self.epoch != Some(f.epoch) {
            if self.epoch.is_some() {
                // The encoder restarted: close what we have and mark the
                // break so players reset their decoders.
                self.segmenter.reset();
                self.finish();
                self.discontinuity = true;
            }
            self.epoch = Some(f.epoch);
            self.segmenter = Segmenter::new(segment_target(self.store.settings()));
            // A restart may bring another audio setting.
            self.muxer = ProgramMuxer::new(self.store.settings().audio);
        }
        match self.segmenter.push(f.dts, f.keyframe, f.duration) {
            Cut::Skip => return,
            Cut::Continue => {}
            Cut::Start { .. } => {
                self.finish();
                self.building = Some(Building {
                    sequence: self.next_sequence,
                    bytes: Vec::with_capacity(512 * 1024),
                    wall_ms: f.wall_ms,
                    discontinuity: std::mem::take(&mut self.discontinuity),
                    first_dts: f.dts,
                    end: f.dts,
                });
                self.next_sequence += 1;
            }
        }
        if let Some(b) = &mut self.building {
            self.muxer.write(f, &mut b.bytes);
            b.end = Ticks90k(f.dts.0 + f.duration.0);
        }
    }

    /// Publishes the segment being built, if any. Its duration is measured
    /// from its first frame to the end of its last one, which equals the
    /// distance to the next segment's first DTS for an unbroken stream.
    fn finish(&mut self) {
        if let Some(b) = self.building.take() {
            // Encrypted, the segment is one AES-128-CBC resource; its key
            // sits in /hls/keys/, two levels above /hls/ts/rN/index.m3u8.
            let (key, bytes) = match &self.store.keys {
                None => (None, b.bytes),
                Some(ring) => {
                    let Some(e) = ring.for_segment(b.sequence) else {
                        return; // no key, so nothing may be served
                    };
                    (Some(e.segment_key("../../keys/")), e.encrypt(&b.bytes))
                }
            };
            let seg = Segment {
                sequence: b.sequence,
                duration: Ticks90k(b.end.0.saturating_sub(b.first_dts.0)),
                uri: format!("seg{}.ts", b.sequence),
                program_date_time_ms: Some(b.wall_ms),
                discontinuity: b.discontinuity,
                key,
            };
            self.store.publish(seg, bytes);
        }
    }
}

fn segment_target(s: HlsSettings) -> Ticks90k {
    Ticks90k(u64::from(s.segment_ms) * Ticks90k::HZ / 1000)
}

/// The HLS sink thread: runs until its queue is closed.
pub fn run_sink(queue: Arc<SinkQueue>, store: Arc<HlsStore>, first_sequence: u64) {
    let mut packager = Packager::new(store.clone(), first_sequence);
    queue.run_until_closed(|f| packager.push(&f));
    store.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HlsSettings {
        HlsSettings {
            segment_ms: 1000,
            window: 3,
            target_duration_s: 1,
            audio: None,
        }
    }

    fn frame(n: u64, epoch: u32, gop: u64) -> EncodedFrame {
        EncodedFrame {
            capture_ns: n * 40_000_000,
            wall_ms: 1_764_064_800_000 + n * 40,
            pts: Ticks90k(n * 3600),
            dts: Ticks90k(n * 3600),
            duration: Ticks90k(3600),
            keyframe: n.is_multiple_of(gop),
            data: vec![
                0,
                0,
                0,
                1,
                if n.is_multiple_of(gop) { 0x65 } else { 0x41 },
                0x88,
                0x80,
            ],
            epoch,
            width: 16,
            height: 16,
            rendition: 0,
            track: crate::base::frame::Track::Video,
        }
    }

    /// A store and its packager after frames `0..n` (25 fps, GOP 25).
    fn fed(n: u64) -> (Arc<HlsStore>, Packager) {
        let store = HlsStore::new(settings());
        let mut p = Packager::new(store.clone(), 0);
        for i in 0..n {
            p.push(&frame(i, 0, 25));
        }
        (store, p)
    }

    #[test]
    fn segments_cut_on_keyframes_and_window_slides() {
        // 25 fps, GOP 25: five whole seconds, and the start of a sixth.
        let (store, _p) = fed(126);
        assert_eq!(store.total_segments(), 5);
        let pl = store.playlist(Duration::ZERO).unwrap();
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{pl}");
        assert!(pl.contains("#EXTINF:1.000,\nseg4.ts\n"), "{pl}");
        assert!(!pl.contains("seg1.ts"));
        // Left the playlist but still fetchable for a while.
        assert!(store.segment(1).is_some());
        let seg = store.segment(4).unwrap();
        assert_eq!(seg.len() % 188, 0);
        assert_eq!(seg[0], 0x47);
    }

    #[test]
    fn encoder_restart_marks_a_discontinuity() {
        let (store, mut p) = fed(40);
        // Restart mid-GOP: the half segment is published as it is.
        for n in 1000..1051 {
            p.push(&frame(n, 1, 25));
        }
        let pl = store.playlist(Duration::ZERO).unwrap();
        assert!(
            pl.contains("#EXTINF:0.600,\nseg1.ts\n#EXT-X-DISCONTINUITY\n"),
            "{pl}"
        );
    }

    #[test]
    fn playlist_waits_for_first_segment_then_gives_up() {
        let store = HlsStore::new(settings());
        let t = Instant::now();
        assert!(store.playlist(Duration::from_millis(50)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(50));
    }
}
