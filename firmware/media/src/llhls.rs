//! Low-Latency HLS live media playlist (HTTP Live Streaming 2nd Edition,
//! draft-pantos-hls-rfc8216bis, "rfc8216bis" below).
//!
//! [`LlPlaylist`] keeps a sliding window of complete segments plus the
//! segment being produced, each made of Partial Segments ("parts", §3.2),
//! and renders the Media Playlist with:
//!
//! * `EXT-X-SERVER-CONTROL` (§4.4.3.8): `CAN-BLOCK-RELOAD=YES` (blocking
//!   reload, §6.2.5.2, decided by [`LlPlaylist::decide`]), `PART-HOLD-BACK`
//!   of three Part Target Durations (MUST be ≥ 2×, SHOULD be ≥ 3×) and
//!   `CAN-SKIP-UNTIL` of six Target Durations (the minimum allowed, so delta
//!   updates are as small as they may be).
//! * `EXT-X-PART-INF` (§4.4.3.7), `EXT-X-PART` (§4.4.4.9) and
//!   `EXT-X-PRELOAD-HINT:TYPE=PART` (§4.4.5.3, §6.2.6).
//! * Playlist Delta Updates with `EXT-X-SKIP` (§4.4.5.2, §6.2.5.1) for
//!   `_HLS_skip=YES`; `_HLS_skip=v2` (skipping `EXT-X-DATERANGE`) is not
//!   offered because the playlist has no date ranges (no
//!   `CAN-SKIP-DATERANGES`).
//!
//! * `EXT-X-RENDITION-REPORT` (§4.4.5.4) for the other renditions of a
//!   ladder: [`LlPlaylist::render_with_reports`].
//! * `EXT-X-KEY` (§4.4.4.4) for AES-128 segments and parts: see
//!   [`LlPlaylist::set_key`] and [`crate::aes128`].
//!
//! Media Sequence Numbers follow from position (§6.2.1), so the playlist
//! keeps them consecutive: see [`LlPlaylist::start_segment`].
//!
//! [`BlockingQuery::parse`] reads the delivery directives a client puts in
//! the playlist URL's query (`_HLS_msn`, `_HLS_part`, `_HLS_skip`,
//! §6.2.5), the untrusted input in front of [`LlPlaylist::decide`] and
//! [`LlPlaylist::render`]: bounded in length and count, never panicking.
//!
//! Values are written as given: URIs must not contain `"`, CR or LF (the
//! daemon makes them), and part and segment durations must respect the Part
//! Target and Target Durations (§4.4.3.1, §4.4.4.9); the playlist shows what
//! it was told rather than hiding a packager bug. Nothing here panics on any
//! input or call order.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use crate::aes128::{write_key_change, SegmentKey, NO_KEY_LINE};
use crate::hls::format_program_date_time;
use crate::time::Ticks90k;

/// `EXT-X-VERSION` of every LL-HLS playlist: `EXT-X-SKIP` needs 9 and
/// `EXT-X-MAP` (without `EXT-X-I-FRAMES-ONLY`) needs 6 (§8); full and delta
/// responses declare the same version.
pub const VERSION: u32 = 9;

/// Fixed parameters of a low-latency playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct LlConfig {
    /// `EXT-X-TARGETDURATION`, seconds; fixed for the playlist's life (§4.4.3.1).
    pub target_duration_s: u32,
    /// `EXT-X-PART-INF:PART-TARGET`: every part lasts at most this (§4.4.4.9).
    pub part_target: Ticks90k,
    /// Complete segments kept; 0 is treated as 1.
    pub window: usize,
    /// `EXT-X-MAP:URI` of the first segments (see [`LlPlaylist::set_init_uri`]).
    pub init_uri: String,
}

/// One Partial Segment (§3.2, `EXT-X-PART` §4.4.4.9).
#[derive(Debug, Clone, PartialEq)]
pub struct LlPart {
    /// Exact duration; written as seconds to the millisecond.
    pub duration: Ticks90k,
    /// URI as written, relative to the playlist.
    pub uri: String,
    /// The part starts with a keyframe: written as `INDEPENDENT=YES`.
    pub independent: bool,
}

/// A segment (complete, or the open one) with its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct LlSegment {
    /// Media Sequence Number (§3); its parts share it (§3.2).
    pub msn: u64,
    /// Segment URI; empty while the segment is open.
    pub uri: String,
    /// Sum of the parts' durations (`EXTINF`).
    pub duration: Ticks90k,
    /// Wall-clock time of the first frame, Unix milliseconds (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time_ms: Option<u64>,
    /// `EXT-X-DISCONTINUITY` before this segment (§4.4.4.3).
    pub discontinuity: bool,
    /// The parts, in order; part index = position.
    pub parts: Vec<LlPart>,
    /// `EXT-X-MAP:URI` of this segment (§4.4.4.5).
    pub map_uri: String,
    /// The AES-128 key of this segment and each of its parts; `None` = in
    /// the clear.
    pub key: Option<SegmentKey>,
}

/// What to do with a blocking playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// The playlist already has what was asked for: respond now.
    Ready,
    /// Hold the request and ask again when the playlist changes (the caller
    /// answers 503 after three Target Durations, §6.2.5.2).
    Wait,
    /// Asked too far ahead: answer 400 Bad Request (§6.2.5.2).
    BadRequest,
}

/// A live Low-Latency HLS Media Playlist.
#[derive(Debug, Clone)]
pub struct LlPlaylist {
    cfg: LlConfig,
    /// `EXT-X-MAP` URI for segments started from now on.
    init_uri: String,
    /// Key of segments started from now on.
    key: Option<SegmentKey>,
    /// Complete segments in the window, oldest first; each has at least one part.
    segments: VecDeque<LlSegment>,
    /// The segment being produced.
    open: Option<LlSegment>,
    /// The number the next started segment gets; `None` before the first.
    next_msn: Option<u64>,
    /// The greatest `msn` ever passed to `start_segment`.
    last_started: Option<u64>,
    /// A dropped segment started a discontinuity: the next segment inherits it.
    carry_discontinuity: bool,
    discontinuity_sequence: u64,
    preload_hint: Option<String>,
}

impl LlPlaylist {
    /// An empty playlist.
    pub fn new(mut cfg: LlConfig) -> Self {
        cfg.window = cfg.window.max(1);
        LlPlaylist {
            init_uri: cfg.init_uri.clone(),
            key: None,
            cfg,
            segments: VecDeque::new(),
            open: None,
            next_msn: None,
            last_started: None,
            carry_discontinuity: false,
            discontinuity_sequence: 0,
            preload_hint: None,
        }
    }

    /// Opens segment `msn` (must be greater than every earlier msn; else ignored and returns false). The open segment is listed with its parts so far.
    ///
    /// The segment is numbered one after the previous one even when `msn`
    /// skips ahead, because clients number segments by position (§6.2.1); a
    /// gap would make them fetch the wrong media. The number actually used
    /// is what [`LlPlaylist::push_part`] returns. Only the very first
    /// segment takes `msn` as is.
    ///
    /// Call [`LlPlaylist::finish_segment`] first: a segment still open is
    /// abandoned (its parts leave the playlist, its number is reused, and the
    /// new segment gets `EXT-X-DISCONTINUITY` because its media does not
    /// follow on from the last listed part).
    pub fn start_segment(
        &mut self,
        msn: u64,
        program_date_time_ms: Option<u64>,
        discontinuity: bool,
    ) -> bool {
        if self.last_started.is_some_and(|last| msn <= last) {
            return false;
        }
        self.last_started = Some(msn);
        if let Some(abandoned) = self.open.take() {
            self.next_msn = Some(abandoned.msn);
            self.carry_discontinuity |= abandoned.discontinuity || !abandoned.parts.is_empty();
        }
        let number = self.next_msn.unwrap_or(msn);
        self.next_msn = Some(number.saturating_add(1));
        self.open = Some(LlSegment {
            msn: number,
            uri: String::new(),
            duration: Ticks90k(0),
            program_date_time_ms,
            discontinuity: discontinuity || core::mem::take(&mut self.carry_discontinuity),
            parts: Vec::new(),
            map_uri: self.init_uri.clone(),
            key: self.key.clone(),
        });
        true
    }

    /// Adds a finished part to the open segment; returns its (msn, part index), or None if no segment is open.
    ///
    /// Also `None` (part refused) if the segment already holds `u32::MAX`
    /// parts, which no real stream reaches.
    pub fn push_part(&mut self, part: LlPart) -> Option<(u64, u32)> {
        let seg = self.open.as_mut()?;
        let index = u32::try_from(seg.parts.len())
            .ok()
            .filter(|&i| i < u32::MAX)?;
        seg.duration = seg.duration.saturating_add(part.duration);
        seg.parts.push(part);
        Some((seg.msn, index))
    }

    /// Closes the open segment under `uri` (its duration = sum of its parts); returns a segment evicted from the window.
    ///
    /// Evicting a segment that carries `EXT-X-DISCONTINUITY` increments
    /// `EXT-X-DISCONTINUITY-SEQUENCE` (§6.2.2). A segment without parts has no
    /// media to list: it is dropped, returned (so the caller can delete its
    /// file) and its number reused. `None` if no segment was open.
    pub fn finish_segment(&mut self, uri: String) -> Option<LlSegment> {
        let mut seg = self.open.take()?;
        seg.uri = uri;
        if seg.parts.is_empty() {
            self.next_msn = Some(seg.msn);
            self.carry_discontinuity |= seg.discontinuity;
            return Some(seg);
        }
        self.segments.push_back(seg);
        if self.segments.len() <= self.cfg.window {
            return None;
        }
        let evicted = self.segments.pop_front()?;
        if evicted.discontinuity {
            self.discontinuity_sequence = self.discontinuity_sequence.saturating_add(1);
        }
        Some(evicted)
    }

    /// EXT-X-MAP URI for segments started from now on (the init segment changes when the encoder restarts; EXT-X-MAP is written before the first segment and again wherever the map changes).
    pub fn set_init_uri(&mut self, uri: String) {
        self.init_uri = uri;
    }

    /// The AES-128 key of segments started from now on (`None`: in the
    /// clear), like [`Self::set_init_uri`]: keys change at segment
    /// boundaries only. The caller encrypts each part, and the whole
    /// segment, on its own with this key and IV (each is a resource of its
    /// own, [`crate::aes128::encrypt`]); the init segment stays in the clear.
    pub fn set_key(&mut self, key: Option<SegmentKey>) {
        self.key = key;
    }

    /// URI of the part being produced now (EXT-X-PRELOAD-HINT:TYPE=PART).
    ///
    /// It may become the first part of the next segment (§4.4.5.3 allows the
    /// hinted part to end up after an `EXTINF`, `EXT-X-DISCONTINUITY` or
    /// `EXT-X-MAP`).
    pub fn set_preload_hint(&mut self, uri: Option<String>) {
        self.preload_hint = uri;
    }

    /// The complete segments in the window, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &LlSegment> {
        self.segments.iter()
    }

    /// The current preload hint.
    pub fn preload_hint(&self) -> Option<&str> {
        self.preload_hint.as_deref()
    }

    /// The newest part: (msn, part index).
    pub fn last_part(&self) -> Option<(u64, u32)> {
        self.open
            .iter()
            .chain(self.segments.iter().rev())
            .find_map(|seg| {
                let last = seg.parts.len().checked_sub(1)?;
                Some((seg.msn, u32::try_from(last).unwrap_or(u32::MAX)))
            })
    }

    /// This playlist's `EXT-X-RENDITION-REPORT` as the other renditions
    /// list it, under `uri` (relative to theirs): its newest part
    /// ([`Self::last_part`]); `None` while it has none.
    pub fn rendition_report(&self, uri: String) -> Option<RenditionReport> {
        let (last_msn, part) = self.last_part()?;
        Some(RenditionReport {
            uri,
            last_msn,
            last_part: Some(part),
        })
    }

    /// Look up a part's (msn, index) by URI, and whether it exists yet (for serving part files).
    ///
    /// Parts of every segment still in the window are found, including those
    /// whose `EXT-X-PART` lines have already left the playlist (clients may
    /// fetch them for a while after, §6.2.2). The preload-hinted URI gives
    /// `exists == false` and the position it will most likely take (the
    /// next part of the open segment, else part 0 of the next segment): the
    /// caller holds such a request until the part exists (§6.2.6). Any other
    /// URI gives `None` (404).
    pub fn find_part(&self, uri: &str) -> Option<(u64, u32, bool)> {
        for seg in self.segments.iter().chain(self.open.iter()) {
            if let Some(i) = seg.parts.iter().position(|p| p.uri == uri) {
                return Some((seg.msn, u32::try_from(i).unwrap_or(u32::MAX), true));
            }
        }
        if self.preload_hint.as_deref() != Some(uri) {
            return None;
        }
        Some(match &self.open {
            Some(seg) => (
                seg.msn,
                u32::try_from(seg.parts.len()).unwrap_or(u32::MAX),
                false,
            ),
            None => (self.next_msn.unwrap_or(0), 0, false),
        })
    }

    /// `EXT-X-MEDIA-SEQUENCE` (§4.4.3.2): the number of the first segment
    /// listed (or of the open segment, or of the next one); never decreases.
    pub fn media_sequence(&self) -> u64 {
        if let Some(first) = self.segments.front().or(self.open.as_ref()) {
            return first.msn;
        }
        self.next_msn.unwrap_or(0)
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE` (§4.4.3.3): discontinuities evicted so far.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// Decide a blocking reload for `_HLS_msn=msn` and optional `_HLS_part=part`, per rfc8216bis §6.2.5.2: Ready if the playlist already contains that segment (or that part of it; a part index beyond the last part of a *completed* segment means part 0 of the next segment), Wait if it will appear soon, BadRequest if msn is more than two segments beyond the last one in the playlist (the spec's "400"), or `part` given without msn is handled by the caller.
    ///
    /// Details:
    /// * Without `part`, only a complete segment (with `EXTINF`) numbered
    ///   `msn` or later makes the playlist ready; with `part`, any part at or
    ///   after (`msn`, `part`).
    /// * A request older than the window is `Ready`: the whole current
    ///   playlist is the answer (§6.2.5.2).
    /// * "The last one in the playlist" is the last complete segment; while
    ///   none is complete yet, the one before the open segment stands in.
    ///   Before any segment was ever started nothing is too far: `Wait`.
    /// * Also `BadRequest` (§6.2.5.2, SHOULD): a part of the newest part's
    ///   segment more than the Advance Part Limit past the newest part (3
    ///   parts, or 3 s worth of parts when the Part Target is under 1 s).
    pub fn decide(&self, msn: u64, part: Option<u32>) -> Block {
        let pending = self.open.as_ref().map(|s| s.msn).or(self.next_msn);
        // `pending` is the last complete segment + 1, so this is "> last + 2".
        if pending.is_some_and(|p| msn > p.saturating_add(1)) {
            return Block::BadRequest;
        }
        let Some(part) = part else {
            return match self.segments.back() {
                Some(last) if last.msn >= msn => Block::Ready,
                _ => Block::Wait,
            };
        };
        let want = self.normalize(msn, part);
        match self.last_part() {
            Some(last) if last >= want => Block::Ready,
            Some((last_msn, last_part))
                if last_msn == want.0 && self.beyond_advance_limit(want.1 - last_part) =>
            {
                Block::BadRequest
            }
            _ => Block::Wait,
        }
    }

    /// §6.2.5.2: a part index past the final part of a complete segment is
    /// part 0 of the following segment.
    fn normalize(&self, msn: u64, part: u32) -> (u64, u32) {
        match self.segments.iter().find(|s| s.msn == msn) {
            Some(seg) if usize::try_from(part).map_or(true, |p| p >= seg.parts.len()) => {
                (msn.saturating_add(1), 0)
            }
            _ => (msn, part),
        }
    }

    /// Whether `ahead` parts past the newest part exceed the Advance Part Limit (§6.2.5.2).
    fn beyond_advance_limit(&self, ahead: u32) -> bool {
        let target = self.cfg.part_target.0;
        if target == 0 {
            return false;
        }
        if target < Ticks90k::HZ {
            // ahead > 3 s / target  <=>  ahead × target > 3 s
            u128::from(ahead) * u128::from(target) > u128::from(3 * Ticks90k::HZ)
        } else {
            ahead > 3
        }
    }

    /// Renders the playlist. `skip` = the client asked `_HLS_skip=YES` (delta update): replace the oldest segments older than CAN-SKIP-UNTIL from the end with EXT-X-SKIP:SKIPPED-SEGMENTS=n (only when at least one is skipped).
    ///
    /// Choices, each per rfc8216bis:
    /// * [`VERSION`] 9 on every response.
    /// * "From the end" is measured from the end of the last listed part.
    ///   A segment is skipped (§6.2.5.1) when all of it lies more than the
    ///   Skip Boundary from the end, and keeps its `EXT-X-PART` lines while
    ///   any of it lies within three Target Durations of the end (§6.2.2:
    ///   parts SHOULD go once more than that from the end). Both keep a bit
    ///   more than the minimum, never less.
    /// * `EXT-X-MAP` comes right before the first listed segment, i.e. after
    ///   `EXT-X-SKIP` in a delta update, so it applies to exactly the listed
    ///   segments; then again wherever the map changes. `EXT-X-DISCONTINUITY`,
    ///   `EXT-X-MAP` and `EXT-X-PROGRAM-DATE-TIME` precede a segment's first
    ///   `EXT-X-PART` (§4.4.4.9).
    /// * `EXT-X-SKIP` leaves `EXT-X-MEDIA-SEQUENCE` and
    ///   `EXT-X-DISCONTINUITY-SEQUENCE` as in the full playlist (§4.4.5.2),
    ///   and comes after them (hls.js rejects the sequence tags after it).
    /// * The open segment is its parts only (no `EXTINF` until complete);
    ///   while it has none, nothing of it is written.
    /// * `EXT-X-KEY` comes after a segment's other tags, right before its
    ///   first `EXT-X-PART` (or its `EXTINF` once its parts are gone),
    ///   wherever the key differs from the previous segment's;
    ///   `METHOD=NONE` after a keyed segment. A key tag applies to every
    ///   `EXT-X-MAP` after it too (§4.4.4.4), so the init segment would have
    ///   to be encrypted: where the map is written while a key is in force,
    ///   `METHOD=NONE` comes first and the key is stated again after it.
    /// * A delta update starts from the key in force after the skipped
    ///   segments (their tags are replaced by `EXT-X-SKIP`, §4.4.5.2, so a
    ///   client that merges it keeps that key): the map written before the
    ///   first listed segment ends it with `METHOD=NONE` and that segment's
    ///   own key follows, so the key of the first segment after the skip is
    ///   always stated.
    pub fn render(&self, skip: bool) -> String {
        self.render_with_reports(skip, &[])
    }

    /// [`Self::render`] followed by an `EXT-X-RENDITION-REPORT` per other
    /// rendition of the ladder (rfc8216bis §4.4.5.4), so a player that
    /// switches knows at once which part to ask the new rendition for.
    pub fn render_with_reports(&self, skip: bool, reports: &[RenditionReport]) -> String {
        let target = Ticks90k(u64::from(self.cfg.target_duration_s).saturating_mul(Ticks90k::HZ));
        let part_window = Ticks90k(target.0.saturating_mul(3));
        let skip_boundary = Ticks90k(target.0.saturating_mul(6));

        // Time after the end of each complete segment up to the playlist end.
        let open_parts = self.open.as_ref().map_or(Ticks90k(0), |s| s.duration);
        let mut after = Vec::with_capacity(self.segments.len());
        let mut acc = open_parts;
        for seg in self.segments.iter().rev() {
            after.push(acc);
            acc = acc.saturating_add(seg.duration);
        }
        after.reverse();
        let skipped = if skip {
            after.iter().take_while(|&&a| a > skip_boundary).count()
        } else {
            0
        };

        let mut s = String::with_capacity(320 + 96 * self.segments.len() * 5);
        // Writing to a String cannot fail; results are ignored for that reason.
        let _ = write!(
            s,
            "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}\n\
             #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.cfg.target_duration_s,
            Secs(Ticks90k(self.cfg.part_target.0.saturating_mul(3))),
            Secs(skip_boundary),
            Secs(self.cfg.part_target),
            self.media_sequence(),
        );
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if skipped > 0 {
            let _ = writeln!(s, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let mut state = InForce {
            map: None,
            key: skipped
                .checked_sub(1)
                .and_then(|last| self.segments.get(last))
                .and_then(|seg| seg.key.as_ref()),
        };
        for (seg, after) in self.segments.iter().zip(&after).skip(skipped) {
            let with_parts = *after <= part_window;
            write_segment(&mut s, seg, with_parts, &mut state);
            let _ = writeln!(s, "#EXTINF:{},\n{}", Secs(seg.duration), seg.uri);
        }
        if let Some(open) = self.open.as_ref().filter(|o| !o.parts.is_empty()) {
            write_segment(&mut s, open, true, &mut state);
        }
        if let Some(hint) = &self.preload_hint {
            let _ = writeln!(s, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
        for r in reports {
            let _ = write!(
                s,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                r.uri, r.last_msn
            );
            if let Some(p) = r.last_part {
                let _ = write!(s, ",LAST-PART={p}");
            }
            s.push('\n');
        }
        s
    }
}

/// Where another rendition's playlist ends, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// The other rendition's media playlist, relative to this one.
    pub uri: String,
    /// Its last segment with a part (the open one while it has parts).
    pub last_msn: u64,
    /// That segment's last part index.
    pub last_part: Option<u32>,
}

/// The map and key in force at a point of the playlist being written.
struct InForce<'a> {
    map: Option<&'a str>,
    key: Option<&'a SegmentKey>,
}

/// Writes a segment's tags and (if `with_parts`) its `EXT-X-PART` lines; not its `EXTINF`.
fn write_segment<'a>(
    s: &mut String,
    seg: &'a LlSegment,
    with_parts: bool,
    state: &mut InForce<'a>,
) {
    if seg.discontinuity {
        s.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if state.map != Some(seg.map_uri.as_str()) {
        // A key in force would apply to the map: the init segment is clear.
        if state.key.take().is_some() {
            s.push_str(NO_KEY_LINE);
        }
        let _ = writeln!(s, "#EXT-X-MAP:URI=\"{}\"", seg.map_uri);
        state.map = Some(&seg.map_uri);
    }
    if let Some(ms) = seg.program_date_time_ms {
        let _ = writeln!(
            s,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_program_date_time(ms)
        );
    }
    write_key_change(s, &mut state.key, seg.key.as_ref());
    if !with_parts {
        return;
    }
    for part in &seg.parts {
        let _ = write!(
            s,
            "#EXT-X-PART:DURATION={},URI=\"{}\"",
            Secs(part.duration),
            part.uri
        );
        s.push_str(if part.independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
    }
}

/// Seconds with three decimals, rounded to the millisecond. Rounding is
/// monotonic, so a part no longer than the Part Target is never written longer.
struct Secs(Ticks90k);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis_rounded();
        write!(f, "{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// Longest query [`BlockingQuery::parse`] reads, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most `&`-separated parameters [`BlockingQuery::parse`] reads (empty
/// ones not counted).
pub const MAX_QUERY_PARAMS: usize = 32;

/// The delivery directives of a playlist request (§6.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockingQuery {
    /// `_HLS_msn`: block until segment `msn` is in the playlist.
    pub msn: Option<u64>,
    /// `_HLS_part`: and until part `part` of it.
    pub part: Option<u32>,
    /// `_HLS_skip=YES` or `v2`: a delta update (§6.2.5.1).
    pub skip: bool,
}

/// Why a playlist request's query is refused (the server answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{key} must be a whole number, got {value:?}")]
    NotANumber { key: &'static str, value: String },
    #[error("_HLS_part is too large")]
    PartTooLarge,
    /// §6.2.5.2: "_HLS_part without _HLS_msn" is a Bad Request.
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    #[error("query of {0} bytes is over the {MAX_QUERY_LEN}-byte limit")]
    TooLong(usize),
    #[error("query has more than {MAX_QUERY_PARAMS} parameters")]
    TooManyParams,
}

impl BlockingQuery {
    /// Parses a URL query (after the `?`, not percent-decoded): `&`-separated
    /// `key=value` pairs, a pair without `=` having an empty value. Numbers
    /// are decimal (an optional leading `+`, as Rust's `u64` parsing
    /// takes); `_HLS_msn` fits a `u64`, `_HLS_part` a `u32`. `_HLS_skip` is
    /// on for `YES` or `v2` only. A repeated key takes its last value;
    /// other keys (cache busters) are ignored. Fails on the first bad
    /// value, and before reading anything when over [`MAX_QUERY_LEN`].
    pub fn parse(query: &str) -> Result<BlockingQuery, QueryError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong(query.len()));
        }
        let mut q = BlockingQuery::default();
        for (i, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            if i >= MAX_QUERY_PARAMS {
                return Err(QueryError::TooManyParams);
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |key: &'static str| {
                v.parse::<u64>().map_err(|_| QueryError::NotANumber {
                    key,
                    value: v.into(),
                })
            };
            match k {
                "_HLS_msn" => q.msn = Some(number("_HLS_msn")?),
                "_HLS_part" => {
                    let p = number("_HLS_part")?;
                    q.part = Some(u32::try_from(p).map_err(|_| QueryError::PartTooLarge)?);
                }
                "_HLS_skip" => q.skip = matches!(v, "YES" | "v2"),
                _ => {}
            }
        }
        if q.part.is_some() && q.msn.is_none() {
            return Err(QueryError::PartWithoutMsn);
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aes128::sequence_iv;
    use alloc::format;

    const HALF_S: Ticks90k = Ticks90k(45_000);

    fn cfg(window: usize) -> LlConfig {
        LlConfig {
            target_duration_s: 2,
            part_target: HALF_S,
            window,
            init_uri: "init0.mp4".into(),
        }
    }

    fn part(msn: u64, i: u32) -> LlPart {
        LlPart {
            duration: HALF_S,
            uri: format!("s{msn}.{i}.m4s"),
            independent: i == 0,
        }
    }

    /// Starts `msn`, pushes `parts` half-second parts and, if `finish`, closes it.
    fn segment(pl: &mut LlPlaylist, msn: u64, parts: u32, finish: bool) -> Option<LlSegment> {
        assert!(pl.start_segment(msn, None, false));
        for i in 0..parts {
            assert_eq!(pl.push_part(part(msn, i)), Some((msn, i)));
        }
        if finish {
            pl.finish_segment(format!("s{msn}.m4s"))
        } else {
            None
        }
    }

    const HEADER: &str = "#EXTM3U\n\
        #EXT-X-VERSION:9\n\
        #EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
        #EXT-X-PART-INF:PART-TARGET=0.500\n";

    #[test]
    fn rendition_reports_follow_the_playlist() {
        let mut pl = LlPlaylist::new(cfg(5));
        segment(&mut pl, 7, 2, false);
        let reports = [
            RenditionReport {
                uri: "../r0/index.m3u8".into(),
                last_msn: 7,
                last_part: Some(1),
            },
            RenditionReport {
                uri: "../r2/index.m3u8".into(),
                last_msn: 6,
                last_part: None,
            },
        ];
        assert_eq!(
            pl.render_with_reports(false, &reports),
            format!(
                "{HEADER}#EXT-X-MEDIA-SEQUENCE:7\n\
                 #EXT-X-MAP:URI=\"init0.mp4\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s7.0.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s7.1.m4s\"\n\
                 #EXT-X-RENDITION-REPORT:URI=\"../r0/index.m3u8\",LAST-MSN=7,LAST-PART=1\n\
                 #EXT-X-RENDITION-REPORT:URI=\"../r2/index.m3u8\",LAST-MSN=6\n"
            )
        );
        assert_eq!(pl.render_with_reports(true, &[]), pl.render(true));
        assert_eq!(
            pl.rendition_report("../r1/index.m3u8".into()),
            Some(RenditionReport {
                uri: "../r1/index.m3u8".into(),
                last_msn: 7,
                last_part: Some(1),
            })
        );
        assert_eq!(LlPlaylist::new(cfg(5)).rendition_report("x".into()), None);
    }

    #[test]
    fn keys_with_parts_a_map_change_and_a_skip() {
        let key = |n: u64| {
            Some(SegmentKey {
                uri: format!("k{n}.key"),
                iv: sequence_iv(n),
            })
        };
        let mut pl = LlPlaylist::new(cfg(9));
        // s20..s24 under k20, s25..s27 under k25 (s27 with a new init
        // segment), s28 and s29 in the clear, open s30 under k30.
        for msn in 20..30 {
            match msn {
                20 | 25 => pl.set_key(key(msn)),
                27 => pl.set_init_uri("init1.mp4".into()),
                28 => pl.set_key(None),
                _ => {}
            }
            segment(&mut pl, msn, 4, true);
        }
        pl.set_key(key(30));
        segment(&mut pl, 30, 1, false);
        assert_eq!(pl.media_sequence(), 21);
        let k20 =
            "#EXT-X-KEY:METHOD=AES-128,URI=\"k20.key\",IV=0x00000000000000000000000000000014\n";
        let k25 =
            "#EXT-X-KEY:METHOD=AES-128,URI=\"k25.key\",IV=0x00000000000000000000000000000019\n";
        let tail = format!(
            "#EXTINF:2.000,\ns24.m4s\n\
             {k25}\
             #EXTINF:2.000,\ns25.m4s\n\
             #EXTINF:2.000,\ns26.m4s\n\
             #EXT-X-KEY:METHOD=NONE\n\
             #EXT-X-MAP:URI=\"init1.mp4\"\n\
             {k25}\
             #EXT-X-PART:DURATION=0.500,URI=\"s27.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s27.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s27.2.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s27.3.m4s\"\n\
             #EXTINF:2.000,\ns27.m4s\n\
             #EXT-X-KEY:METHOD=NONE\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s28.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s28.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s28.2.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s28.3.m4s\"\n\
             #EXTINF:2.000,\ns28.m4s\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s29.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s29.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s29.2.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s29.3.m4s\"\n\
             #EXTINF:2.000,\ns29.m4s\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"k30.key\",IV=0x0000000000000000000000000000001E\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s30.0.m4s\",INDEPENDENT=YES\n"
        );
        // Full: the key follows the first map and holds through s24.
        assert_eq!(
            pl.render(false),
            format!(
                "{HEADER}#EXT-X-MEDIA-SEQUENCE:21\n\
                 #EXT-X-MAP:URI=\"init0.mp4\"\n\
                 {k20}\
                 #EXTINF:2.000,\ns21.m4s\n\
                 #EXTINF:2.000,\ns22.m4s\n\
                 #EXTINF:2.000,\ns23.m4s\n\
                 {tail}"
            )
        );
        // Delta: s21..s23 (and their key tag) are skipped; k20, in force
        // after them, is ended before the map and stated again for s24.
        assert_eq!(
            pl.render(true),
            format!(
                "{HEADER}#EXT-X-MEDIA-SEQUENCE:21\n\
                 #EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
                 #EXT-X-KEY:METHOD=NONE\n\
                 #EXT-X-MAP:URI=\"init0.mp4\"\n\
                 {k20}\
                 {tail}"
            )
        );
        // Segments keep their key, for the caller.
        let old = pl.finish_segment("s30.m4s".into()).unwrap();
        assert_eq!((old.msn, old.key), (21, key(20)));
    }

    #[test]
    fn delta_from_a_clear_segment_after_keyed_ones_says_none() {
        let mut pl = LlPlaylist::new(cfg(9));
        pl.set_key(Some(SegmentKey {
            uri: "k.key".into(),
            iv: sequence_iv(0),
        }));
        for msn in 0..5 {
            segment(&mut pl, msn, 4, true);
        }
        pl.set_key(None);
        for msn in 5..12 {
            segment(&mut pl, msn, 4, true);
        }
        // The window is s3..s11; s3 and s4 are skipped. Without METHOD=NONE a
        // client merging the delta would keep their key for s5.
        let delta = pl.render(true);
        assert!(delta.contains(
            "#EXT-X-MEDIA-SEQUENCE:3\n\
             #EXT-X-SKIP:SKIPPED-SEGMENTS=2\n\
             #EXT-X-KEY:METHOD=NONE\n\
             #EXT-X-MAP:URI=\"init0.mp4\"\n\
             #EXTINF:2.000,\ns5.m4s\n"
        ));
        assert_eq!(delta.matches("EXT-X-KEY").count(), 1);
        // The full playlist states the key once and ends it once.
        let full = pl.render(false);
        assert_eq!(full.matches("#EXT-X-KEY:METHOD=AES-128,").count(), 1);
        assert!(full.contains("s4.m4s\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:2.000,\ns5.m4s\n"));
    }

    #[test]
    fn renders_parts_open_segment_and_hint() {
        let mut pl = LlPlaylist::new(cfg(5));
        assert_eq!(
            pl.render(false),
            format!("{HEADER}#EXT-X-MEDIA-SEQUENCE:0\n")
        );
        assert!(pl.start_segment(10, Some(1_764_064_800_000), false));
        for i in 0..4 {
            pl.push_part(part(10, i));
        }
        assert_eq!(pl.finish_segment("s10.m4s".into()), None);
        segment(&mut pl, 11, 4, true);
        segment(&mut pl, 12, 2, false);
        pl.set_preload_hint(Some("s12.2.m4s".into()));
        assert_eq!(pl.preload_hint(), Some("s12.2.m4s"));
        let want = format!(
            "{HEADER}\
             #EXT-X-MEDIA-SEQUENCE:10\n\
             #EXT-X-MAP:URI=\"init0.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-11-25T10:00:00.000Z\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s10.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s10.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s10.2.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s10.3.m4s\"\n\
             #EXTINF:2.000,\n\
             s10.m4s\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s11.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s11.1.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s11.2.m4s\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s11.3.m4s\"\n\
             #EXTINF:2.000,\n\
             s11.m4s\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s12.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s12.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s12.2.m4s\"\n"
        );
        assert_eq!(pl.render(false), want);
        // Nothing is old enough to skip: a delta request gets the full playlist.
        assert_eq!(pl.render(true), want);
        assert_eq!(pl.last_part(), Some((12, 1)));
        assert_eq!(pl.find_part("s11.3.m4s"), Some((11, 3, true)));
        assert_eq!(pl.find_part("s12.2.m4s"), Some((12, 2, false)));
        assert_eq!(pl.find_part("nope.m4s"), None);
    }

    #[test]
    fn parts_drop_off_after_three_target_durations() {
        let mut pl = LlPlaylist::new(cfg(10));
        for msn in 0..4 {
            segment(&mut pl, msn, 4, true);
        }
        // Segment ends are 6, 4, 2 and 0 s from the end: all within 3 × 2 s.
        assert_eq!(pl.render(false).matches("#EXT-X-PART:").count(), 16);
        // One part more: segment 0 now ends 6.5 s from the end.
        segment(&mut pl, 4, 1, false);
        let text = pl.render(false);
        assert_eq!(text.matches("#EXT-X-PART:").count(), 13);
        assert!(!text.contains("s0.3.m4s"));
        assert!(text.contains(
            "#EXT-X-MAP:URI=\"init0.mp4\"\n#EXTINF:2.000,\ns0.m4s\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s1.0.m4s\",INDEPENDENT=YES\n"
        ));
        // The dropped parts can still be served.
        assert_eq!(pl.find_part("s0.3.m4s"), Some((0, 3, true)));
    }

    #[test]
    fn delta_update_skips_old_segments() {
        let mut pl = LlPlaylist::new(cfg(9));
        for msn in 20..30 {
            segment(&mut pl, msn, 4, true);
        }
        segment(&mut pl, 30, 1, false);
        assert_eq!(pl.media_sequence(), 21);
        // Segment ends from the playlist end: s21 16.5 s, s22 14.5 s, s23 12.5 s
        // (> 12 s: skipped), s24 10.5 s, ..., s26 6.5 s, s27 4.5 s (<= 6 s: parts).
        let delta = pl.render(true);
        assert_eq!(
            delta,
            format!(
                "{HEADER}\
                 #EXT-X-MEDIA-SEQUENCE:21\n\
                 #EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
                 #EXT-X-MAP:URI=\"init0.mp4\"\n\
                 #EXTINF:2.000,\ns24.m4s\n\
                 #EXTINF:2.000,\ns25.m4s\n\
                 #EXTINF:2.000,\ns26.m4s\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s27.0.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s27.1.m4s\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s27.2.m4s\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s27.3.m4s\"\n\
                 #EXTINF:2.000,\ns27.m4s\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s28.0.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s28.1.m4s\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s28.2.m4s\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s28.3.m4s\"\n\
                 #EXTINF:2.000,\ns28.m4s\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s29.0.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s29.1.m4s\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s29.2.m4s\"\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s29.3.m4s\"\n\
                 #EXTINF:2.000,\ns29.m4s\n\
                 #EXT-X-PART:DURATION=0.500,URI=\"s30.0.m4s\",INDEPENDENT=YES\n"
            )
        );
        let full = pl.render(false);
        assert!(!full.contains("EXT-X-SKIP"));
        assert!(full.contains(
            "#EXT-X-MEDIA-SEQUENCE:21\n#EXT-X-MAP:URI=\"init0.mp4\"\n#EXTINF:2.000,\ns21.m4s\n"
        ));
        // The delta is the full playlist with the first three segments replaced.
        assert_eq!(
            full.replace(
                "#EXTINF:2.000,\ns21.m4s\n#EXTINF:2.000,\ns22.m4s\n#EXTINF:2.000,\ns23.m4s\n",
                ""
            )
            .replace(
                "#EXT-X-MEDIA-SEQUENCE:21\n",
                "#EXT-X-MEDIA-SEQUENCE:21\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n"
            ),
            delta
        );
    }

    #[test]
    fn discontinuity_and_map_change() {
        let mut pl = LlPlaylist::new(cfg(2));
        segment(&mut pl, 0, 4, true);
        pl.set_init_uri("init1.mp4".into());
        assert!(pl.start_segment(1, Some(1_764_064_809_000), true));
        pl.push_part(part(1, 0));
        pl.push_part(part(1, 1));
        // The open segment's tags precede its first part.
        assert!(pl.render(false).ends_with(
            "s0.m4s\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-MAP:URI=\"init1.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-11-25T10:00:09.000Z\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s1.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s1.1.m4s\"\n"
        ));
        assert_eq!(pl.finish_segment("s1.m4s".into()), None);
        assert_eq!(pl.discontinuity_sequence(), 0);
        segment(&mut pl, 2, 4, true);
        // Evicting s0 (no discontinuity) leaves the sequence at 0 ...
        assert_eq!(pl.media_sequence(), 1);
        assert_eq!(pl.discontinuity_sequence(), 0);
        // ... evicting s1 (discontinuity) makes it 1.
        let evicted = segment(&mut pl, 3, 4, true).unwrap();
        assert_eq!((evicted.msn, evicted.discontinuity), (1, true));
        assert_eq!(evicted.duration, Ticks90k(90_000));
        assert_eq!(evicted.map_uri, "init1.mp4");
        assert_eq!(pl.discontinuity_sequence(), 1);
        let text = pl.render(false);
        assert!(text.contains(
            "#EXT-X-MEDIA-SEQUENCE:2\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n\
             #EXT-X-MAP:URI=\"init1.mp4\"\n\
             #EXT-X-PART:DURATION=0.500,URI=\"s2.0.m4s\",INDEPENDENT=YES\n"
        ));
        assert_eq!(text.matches("EXT-X-MAP").count(), 1);
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    }

    #[test]
    fn window_eviction_returns_segment() {
        let mut pl = LlPlaylist::new(cfg(2));
        assert_eq!(segment(&mut pl, 5, 2, true), None);
        assert_eq!(segment(&mut pl, 6, 2, true), None);
        let old = segment(&mut pl, 7, 2, true).unwrap();
        assert_eq!(old.msn, 5);
        assert_eq!(old.uri, "s5.m4s");
        assert_eq!(old.parts.len(), 2);
        assert_eq!(pl.media_sequence(), 6);
        assert_eq!(pl.find_part("s5.0.m4s"), None);
        // Window 0 acts as 1.
        let mut pl = LlPlaylist::new(cfg(0));
        segment(&mut pl, 0, 1, true);
        assert_eq!(segment(&mut pl, 1, 1, true).map(|s| s.msn), Some(0));
    }

    #[test]
    fn start_segment_refuses_non_increasing_msn() {
        let mut pl = LlPlaylist::new(cfg(3));
        assert_eq!(pl.push_part(part(0, 0)), None);
        assert_eq!(pl.finish_segment("x".into()), None);
        segment(&mut pl, 5, 2, true);
        assert!(!pl.start_segment(5, None, false));
        assert!(!pl.start_segment(4, None, false));
        assert_eq!(pl.push_part(part(5, 2)), None);
        assert!(pl.start_segment(6, None, false));
        assert!(!pl.start_segment(6, None, false));
        assert_eq!(pl.push_part(part(6, 0)), Some((6, 0)));
    }

    #[test]
    fn numbering_stays_consecutive() {
        let mut pl = LlPlaylist::new(cfg(3));
        segment(&mut pl, 5, 2, true);
        // A jump ahead is numbered after the last segment.
        assert!(pl.start_segment(9, None, false));
        assert_eq!(pl.push_part(part(9, 0)), Some((6, 0)));
        // Starting again abandons the open segment; its number is reused and
        // the new segment is marked discontinuous.
        assert!(pl.start_segment(10, None, false));
        assert_eq!(pl.push_part(part(10, 0)), Some((6, 0)));
        assert_eq!(pl.finish_segment("s10.m4s".into()), None);
        assert!(!pl.render(false).contains("s9.0.m4s"));
        assert!(pl
            .render(false)
            .contains("#EXT-X-DISCONTINUITY\n#EXT-X-PART:DURATION=0.500,URI=\"s10.0.m4s\""));
        // A segment without parts is dropped and handed back.
        assert!(pl.start_segment(11, None, false));
        let empty = pl.finish_segment("s11.m4s".into()).unwrap();
        assert_eq!((empty.msn, empty.uri.as_str()), (7, "s11.m4s"));
        assert_eq!(pl.media_sequence(), 5);
        assert!(pl.start_segment(12, None, false));
        assert_eq!(pl.push_part(part(12, 0)), Some((7, 0)));
    }

    #[test]
    fn blocking_reload_decisions() {
        let mut pl = LlPlaylist::new(cfg(3));
        // Nothing started yet: nothing is too far ahead.
        assert_eq!(pl.decide(100, Some(0)), Block::Wait);
        segment(&mut pl, 10, 4, true);
        segment(&mut pl, 11, 4, true);
        segment(&mut pl, 12, 2, false);
        pl.set_preload_hint(Some("s12.2.m4s".into()));
        // Existing parts and segments, and anything older than the window.
        assert_eq!(pl.decide(12, Some(1)), Block::Ready);
        assert_eq!(pl.decide(11, Some(3)), Block::Ready);
        assert_eq!(pl.decide(11, None), Block::Ready);
        assert_eq!(pl.decide(3, None), Block::Ready);
        assert_eq!(pl.decide(3, Some(9)), Block::Ready);
        // The next (hinted) part, the open segment, the next segment.
        assert_eq!(pl.decide(12, Some(2)), Block::Wait);
        assert_eq!(pl.decide(12, None), Block::Wait);
        assert_eq!(pl.decide(13, None), Block::Wait);
        assert_eq!(pl.decide(13, Some(0)), Block::Wait);
        // Beyond the last part of complete s11 = s12 part 0, which exists.
        assert_eq!(pl.decide(11, Some(4)), Block::Ready);
        assert_eq!(pl.decide(11, Some(u32::MAX)), Block::Ready);
        // More than two segments past the last complete one (11).
        assert_eq!(pl.decide(13, Some(3)), Block::Wait);
        assert_eq!(pl.decide(14, None), Block::BadRequest);
        assert_eq!(pl.decide(14, Some(0)), Block::BadRequest);
        assert_eq!(pl.decide(u64::MAX, None), Block::BadRequest);
        // Advance Part Limit: 3 s / 0.5 s = 6 parts past the newest (s12.1).
        assert_eq!(pl.decide(12, Some(7)), Block::Wait);
        assert_eq!(pl.decide(12, Some(8)), Block::BadRequest);

        // Beyond the last part of complete s12 while s13 has no part yet: Wait.
        for i in 2..4 {
            pl.push_part(part(12, i));
        }
        pl.finish_segment("s12.m4s".into());
        assert_eq!(pl.decide(12, Some(4)), Block::Wait);
        assert_eq!(pl.decide(12, None), Block::Ready);
        assert_eq!(pl.decide(14, None), Block::Wait);
        assert_eq!(pl.decide(15, None), Block::BadRequest);
        assert!(pl.start_segment(13, None, false));
        assert_eq!(pl.decide(12, Some(4)), Block::Wait);
        assert_eq!(pl.decide(15, Some(0)), Block::BadRequest);
        pl.push_part(part(13, 0));
        assert_eq!(pl.decide(12, Some(4)), Block::Ready);
        assert_eq!(pl.decide(13, Some(0)), Block::Ready);
        assert_eq!(pl.decide(13, Some(1)), Block::Wait);
    }

    #[test]
    fn msn_limit_before_first_complete_segment() {
        let mut pl = LlPlaylist::new(cfg(3));
        pl.start_segment(0, None, false);
        // "Last segment" = the one before the open segment 0.
        assert_eq!(pl.decide(1, None), Block::Wait);
        assert_eq!(pl.decide(2, None), Block::BadRequest);
        assert_eq!(pl.decide(0, Some(0)), Block::Wait);
    }

    #[test]
    fn advance_part_limit_for_long_parts() {
        let mut pl = LlPlaylist::new(LlConfig {
            part_target: Ticks90k(2 * Ticks90k::HZ),
            ..cfg(3)
        });
        segment(&mut pl, 0, 1, false);
        assert_eq!(pl.decide(0, Some(3)), Block::Wait);
        assert_eq!(pl.decide(0, Some(4)), Block::BadRequest);
        assert!(pl.render(false).contains("PART-HOLD-BACK=6.000,"));
    }

    /// `parse`'s result, errors as the text a 400 reply carries.
    fn query(q: &str) -> Result<(Option<u64>, Option<u32>, bool), String> {
        BlockingQuery::parse(q)
            .map(|b| (b.msn, b.part, b.skip))
            .map_err(|e| format!("{e}"))
    }

    #[test]
    fn blocking_query_reads_the_directives() {
        assert_eq!(query(""), Ok((None, None, false)));
        assert_eq!(query("_HLS_msn=12"), Ok((Some(12), None, false)));
        assert_eq!(
            query("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"),
            Ok((Some(12), Some(3), true))
        );
        assert_eq!(
            query("_HLS_skip=v2&_HLS_part=0&_HLS_msn=0"),
            Ok((Some(0), Some(0), true))
        );
        // Other values of _HLS_skip, and a bare key, are "no".
        for skip in ["_HLS_skip=NO", "_HLS_skip=yes", "_HLS_skip", "_HLS_skip="] {
            assert_eq!(query(skip), Ok((None, None, false)), "{skip}");
        }
        // Cache busters, empty pairs and unknown keys are ignored; keys are
        // case-sensitive and not percent-decoded.
        assert_eq!(
            query("&&t=17&_hls_msn=x&_HLS%5Fmsn=y&_HLS_msn=5&"),
            Ok((Some(5), None, false))
        );
        // A repeated key: the last value counts.
        assert_eq!(
            query("_HLS_msn=1&_HLS_msn=2&_HLS_skip=YES&_HLS_skip=NO"),
            Ok((Some(2), None, false))
        );
        // Rust's u64 syntax: a leading '+', leading zeros.
        assert_eq!(query("_HLS_msn=+007"), Ok((Some(7), None, false)));
        assert_eq!(
            query("_HLS_msn=18446744073709551615&_HLS_part=4294967295"),
            Ok((Some(u64::MAX), Some(u32::MAX), false))
        );
    }

    #[test]
    fn blocking_query_refuses_garbage() {
        let err = |q: &str| query(q).unwrap_err();
        assert_eq!(
            err("_HLS_msn=x"),
            "_HLS_msn must be a whole number, got \"x\""
        );
        assert_eq!(err("_HLS_msn"), "_HLS_msn must be a whole number, got \"\"");
        assert_eq!(
            err("_HLS_msn=-1"),
            "_HLS_msn must be a whole number, got \"-1\""
        );
        assert_eq!(
            err("_HLS_msn= 1"),
            "_HLS_msn must be a whole number, got \" 1\""
        );
        assert_eq!(
            err("_HLS_msn=1=2"),
            "_HLS_msn must be a whole number, got \"1=2\""
        );
        assert_eq!(
            err("_HLS_msn=1&_HLS_part=\u{e9}\""),
            "_HLS_part must be a whole number, got \"\u{e9}\\\"\""
        );
        // One past u64::MAX is not a number; past u32::MAX is too large a part.
        assert_eq!(
            err("_HLS_msn=18446744073709551616"),
            "_HLS_msn must be a whole number, got \"18446744073709551616\""
        );
        assert_eq!(
            err("_HLS_msn=1&_HLS_part=4294967296"),
            "_HLS_part is too large"
        );
        assert_eq!(err("_HLS_part=1"), "_HLS_part needs _HLS_msn");
        // The first bad value is the error, even if a later one is fine.
        assert_eq!(
            BlockingQuery::parse("_HLS_msn=a&_HLS_msn=1"),
            Err(QueryError::NotANumber {
                key: "_HLS_msn",
                value: "a".into()
            })
        );
    }

    #[test]
    fn blocking_query_limits() {
        let long = format!("_HLS_msn=1&t={}", "a".repeat(MAX_QUERY_LEN - 13));
        assert_eq!(long.len(), MAX_QUERY_LEN);
        assert_eq!(query(&long), Ok((Some(1), None, false)));
        let longer = format!("{long}a");
        assert_eq!(
            BlockingQuery::parse(&longer),
            Err(QueryError::TooLong(MAX_QUERY_LEN + 1))
        );
        assert_eq!(
            query(&longer).unwrap_err(),
            "query of 4097 bytes is over the 4096-byte limit"
        );
        let many = |n: usize| ["_HLS_msn=1"].repeat(n).join("&");
        assert_eq!(query(&many(MAX_QUERY_PARAMS)), Ok((Some(1), None, false)));
        // Empty pairs do not count.
        assert_eq!(
            query(&format!("{}&&&", many(MAX_QUERY_PARAMS))),
            Ok((Some(1), None, false))
        );
        assert_eq!(
            BlockingQuery::parse(&many(MAX_QUERY_PARAMS + 1)),
            Err(QueryError::TooManyParams)
        );
        assert_eq!(
            query(&many(MAX_QUERY_PARAMS + 1)).unwrap_err(),
            "query has more than 32 parameters"
        );
    }
}
