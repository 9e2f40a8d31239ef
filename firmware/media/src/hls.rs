//! HLS live media playlist and keyframe segmenter (RFC 8216).
//!
//! * [`MediaPlaylist`]: a sliding-window live Media Playlist (§4.3, with the
//!   tags of §4.3.2 and §4.3.3 and the live-update rules of §6.2.2),
//!   optionally with `EXT-X-KEY` (§4.3.2.4, see [`crate::aes128`]).
//! * [`format_program_date_time`]: the `EXT-X-PROGRAM-DATE-TIME` value
//!   (§4.3.2.6), an RFC 3339 / ISO 8601 UTC time.
//! * [`render_multivariant`]: the Multivariant Playlist listing every
//!   rendition of a ladder (§4.4.6).
//! * [`Segmenter`]: where to cut segments so each starts with a keyframe
//!   (§3: segments of a live stream should be independently decodable).
//!
//! Rendering never fails or panics; values are written as given.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use crate::aes128::{write_key_change, SegmentKey};
use crate::time::Ticks90k;

/// `EXT-X-VERSION` of [`MediaPlaylist`]: 3 for decimal `EXTINF` durations
/// (§4.3.2.1, §7); it also covers `EXT-X-KEY`'s `IV` (2).
pub const VERSION: u32 = 3;

/// One media segment as listed in the playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Segment {
    /// Media Sequence Number (§3). Consecutive within a playlist: see
    /// [`MediaPlaylist::push`].
    pub sequence: u64,
    /// Exact duration; shown as `EXTINF` seconds to the millisecond.
    pub duration: Ticks90k,
    /// URI as written, relative to the playlist.
    pub uri: String,
    /// Wall-clock time of the segment's first frame, Unix milliseconds;
    /// lets players show and seek by real time.
    pub program_date_time_ms: Option<u64>,
    /// Timestamps or encoding parameters change before this segment (e.g.
    /// the encoder restarted), so players must reset their decoder.
    pub discontinuity: bool,
    /// The AES-128 key the segment is encrypted with; `None` = in the clear.
    pub key: Option<SegmentKey>,
}

/// A live Media Playlist holding the last `window` segments.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    target_duration_s: u32,
    window: usize,
    segments: VecDeque<Segment>,
    /// `EXT-X-MEDIA-SEQUENCE` when the window is empty: the number the next
    /// segment would get once the first has been seen.
    next_sequence: Option<u64>,
    discontinuity_sequence: u64,
}

impl MediaPlaylist {
    /// `target_duration_s` is fixed for the playlist's life (RFC: must not change); `window` segments are kept (sliding).
    ///
    /// A `window` of 0 is treated as 1. RFC 8216 §6.2.2 asks that the
    /// playlist keep at least three target durations of media; choosing a
    /// window that does is the caller's job. Each segment's rounded duration
    /// must not exceed the target duration (§4.3.3.1); the playlist shows
    /// durations as given rather than hiding a segmenter bug.
    pub fn new(target_duration_s: u32, window: usize) -> Self {
        MediaPlaylist {
            target_duration_s,
            window: window.max(1),
            segments: VecDeque::new(),
            next_sequence: None,
            discontinuity_sequence: 0,
        }
    }

    /// Appends a segment; returns the evicted segment when the window slides
    /// (so the caller can delete its bytes).
    ///
    /// The first segment ever pushed sets the numbering. Later segments must
    /// be numbered one higher than the previous; a segment that is not has
    /// its `sequence` rewritten, because §6.2.1 derives every segment's
    /// number from its position and a gap or repeat would make clients
    /// reload the wrong media.
    pub fn push(&mut self, mut seg: Segment) -> Option<Segment> {
        if let Some(next) = self.next_sequence {
            seg.sequence = next;
        }
        self.next_sequence = Some(seg.sequence.saturating_add(1));
        self.segments.push_back(seg);
        if self.segments.len() <= self.window {
            return None;
        }
        let evicted = self.segments.pop_front()?;
        if evicted.discontinuity {
            // §6.2.2: removing a segment that carries EXT-X-DISCONTINUITY
            // increments EXT-X-DISCONTINUITY-SEQUENCE.
            self.discontinuity_sequence = self.discontinuity_sequence.saturating_add(1);
        }
        Some(evicted)
    }

    /// The segments in the window, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The configured target duration, seconds.
    pub fn target_duration_s(&self) -> u32 {
        self.target_duration_s
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the sequence number of the first segment in the window.
    pub fn media_sequence(&self) -> u64 {
        match (self.segments.front(), self.next_sequence) {
            (Some(first), _) => first.sequence,
            (None, Some(next)) => next,
            (None, None) => 0,
        }
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`: how many discontinuities slid out of the window.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// The playlist text, [`VERSION`] 3 because `EXTINF` durations are decimal (§4.3.2.1, §7).
    ///
    /// `EXT-X-KEY` comes right before a segment's `EXTINF` wherever its key
    /// (URI or IV) differs from the previous listed segment's, including
    /// before the first listed segment when that one has a key;
    /// `EXT-X-KEY:METHOD=NONE` where a segment without a key follows one
    /// with (a key tag applies until the next one, §4.3.2.4).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(128 + 96 * self.segments.len());
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = write!(
            s,
            "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            self.target_duration_s,
            self.media_sequence()
        );
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        let mut key = None;
        for seg in &self.segments {
            if seg.discontinuity {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(ms) = seg.program_date_time_ms {
                let _ = writeln!(
                    s,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    format_program_date_time(ms)
                );
            }
            write_key_change(&mut s, &mut key, seg.key.as_ref());
            let ms = seg.duration.as_millis_rounded();
            let _ = writeln!(s, "#EXTINF:{}.{:03},", ms / 1000, ms % 1000);
            s.push_str(&seg.uri);
            s.push('\n');
        }
        s
    }
}

/// One rendition as a Multivariant Playlist lists it (§4.4.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Its media playlist, relative to the multivariant one.
    pub uri: String,
    /// Peak bit rate, bit/s: the largest segment bitrate.
    pub bandwidth: u64,
    /// Average bit rate, bit/s.
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codecs of every stream in it, e.g. `avc1.42c01f,mp4a.40.2`.
    pub codecs: String,
    pub width: u32,
    pub height: u32,
    /// Whole frames per second (written with three decimals).
    pub frame_rate: u32,
}

/// BANDWIDTH and AVERAGE-BANDWIDTH (bit/s) of a media playlist from its
/// segments' sizes and durations: the peak segment bitrate and the mean
/// (§4.4.6.2 asks for the peak over any segment). `None` with no duration.
pub fn measured_bandwidth(
    segments: impl IntoIterator<Item = (u64, Ticks90k)>,
) -> Option<(u64, u64)> {
    let (mut peak, mut bytes, mut ticks) = (0u64, 0u64, 0u64);
    for (len, d) in segments {
        if let Some(bps) = (len * 8 * Ticks90k::HZ).checked_div(d.0) {
            peak = peak.max(bps);
        }
        bytes += len;
        ticks += d.0;
    }
    (ticks > 0).then(|| (peak, bytes * 8 * Ticks90k::HZ / ticks))
}

/// A Multivariant Playlist of `variants`, in the order given (players take
/// the first as the one to start with, so the caller puts the top first).
///
/// `version` should be that of the media playlists it lists ([`VERSION`]
/// for MPEG-TS ones, [`crate::llhls::VERSION`] for LL-HLS): nothing here
/// needs more than 1, but validators flag a multivariant playlist that
/// declares less than its media playlists. Segments start with keyframes
/// in every rendition, hence `EXT-X-INDEPENDENT-SEGMENTS` (§4.4.2.1).
pub fn render_multivariant(version: u32, variants: &[Variant]) -> String {
    let mut s = String::with_capacity(64 + 160 * variants.len());
    let _ = write!(
        s,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    for v in variants {
        let _ = write!(s, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
        if let Some(avg) = v.average_bandwidth {
            let _ = write!(s, ",AVERAGE-BANDWIDTH={avg}");
        }
        let _ = writeln!(
            s,
            ",CODECS=\"{}\",RESOLUTION={}x{},FRAME-RATE={}.000\n{}",
            v.codecs, v.width, v.height, v.frame_rate, v.uri
        );
    }
    s
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC).
pub fn format_program_date_time(unix_ms: u64) -> String {
    const MS_PER_DAY: u64 = 86_400_000;
    let days = unix_ms / MS_PER_DAY;
    let ms_of_day = unix_ms % MS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        year,
        month,
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
///
/// Counts from 0000-03-01 so the leap day is the last day of the shifted
/// year, then splits into 400-year eras (146 097 days), years within the era
/// and March-based months (153 days per 5 months).
fn civil_from_days(days_since_epoch: u64) -> (u64, u32, u32) {
    // 1970-01-01 is day 719 468 counted from 0000-03-01.
    let z = days_since_epoch + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146_096
                           // Year of era: subtract the leap days before `doe` (one per 4 years, less
                           // one per 100, plus the one at the end of the era).
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // month, 0 = March
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// What [`Segmenter::push`] decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Before the first keyframe: the frame cannot start a decodable segment; drop it.
    Skip,
    /// The frame belongs to the current segment.
    Continue,
    /// The frame starts a new segment; `finished` is the duration of the one it ends, if any.
    Start {
        /// Duration of the segment that just ended.
        finished: Option<Ticks90k>,
    },
}

/// Decides where segments end: a new segment starts at a keyframe once the current one has lasted at least `target` (minus half a frame of tolerance, so 30 frames at 30 fps make a 1 s segment).
///
/// The tolerance absorbs timestamp jitter from capture: with 29.97 fps or a
/// camera whose timestamps wobble, "exactly one second" might otherwise
/// land a frame late and double the segment length at every GOP.
#[derive(Debug, Clone)]
pub struct Segmenter {
    target: Ticks90k,
    /// DTS of the current segment's first frame.
    start: Option<Ticks90k>,
    /// DTS + duration of the last frame seen.
    last_end: Option<Ticks90k>,
}

impl Segmenter {
    /// A segmenter aiming for segments of `target` each.
    pub fn new(target: Ticks90k) -> Self {
        Segmenter {
            target,
            start: None,
            last_end: None,
        }
    }

    /// Called for every frame in decode order. Returns Some(duration of the segment that just ended) when this frame starts a new segment (the finished segment's duration = this frame's dts - first dts of that segment). First frame: starts a segment only if keyframe; frames before the first keyframe return Cut::Skip.
    ///
    /// A DTS that goes backwards counts as no time elapsed (no cut); call
    /// [`Segmenter::reset`] when the timeline really restarts.
    pub fn push(&mut self, dts: Ticks90k, keyframe: bool, frame_duration: Ticks90k) -> Cut {
        let Some(start) = self.start else {
            if !keyframe {
                return Cut::Skip;
            }
            self.start = Some(dts);
            self.last_end = Some(dts.saturating_add(frame_duration));
            return Cut::Start { finished: None };
        };
        self.last_end = Some(dts.saturating_add(frame_duration));
        let elapsed = dts.saturating_sub(start);
        let tolerance = Ticks90k(frame_duration.0 / 2);
        if keyframe && elapsed >= self.target.saturating_sub(tolerance) {
            self.start = Some(dts);
            Cut::Start {
                finished: Some(elapsed),
            }
        } else {
            Cut::Continue
        }
    }

    /// Forget the current segment (encoder restarted): next keyframe starts a fresh one and the ended one's duration uses the last frame's dts+frame_duration.
    ///
    /// Returns that duration, or `None` if no segment was open.
    pub fn reset(&mut self) -> Option<Ticks90k> {
        let start = self.start.take()?;
        let end = self.last_end.take()?;
        Some(end.saturating_sub(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aes128::sequence_iv;
    use alloc::vec::Vec;

    #[test]
    fn measured_bandwidth_is_the_peak_segment_and_the_mean() {
        // 125 000 bytes in 1 s = 1 Mbit/s; 50 000 bytes in 0.5 s = 800 kbit/s.
        let segs = [(125_000, Ticks90k(90_000)), (50_000, Ticks90k(45_000))];
        assert_eq!(measured_bandwidth(segs), Some((1_000_000, 933_333)));
        // A zero-length segment adds nothing and divides nothing.
        assert_eq!(measured_bandwidth([(10, Ticks90k(0))]), None);
        assert_eq!(measured_bandwidth([]), None);
    }

    #[test]
    fn multivariant_lists_each_rendition_top_first() {
        let v = |uri: &str, bw, w, h| Variant {
            uri: uri.into(),
            bandwidth: bw,
            average_bandwidth: Some(bw * 4 / 5),
            codecs: "avc1.42c01f,mp4a.40.2".into(),
            width: w,
            height: h,
            frame_rate: 30,
        };
        let mut low = v("r1/index.m3u8", 1_000_000, 640, 360);
        low.average_bandwidth = None;
        assert_eq!(
            render_multivariant(crate::llhls::VERSION, &[v("r0/index.m3u8", 3_000_000, 1280, 720), low.clone()]),
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2400000,CODECS=\"avc1.42c01f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\n\
             r0/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.42c01f,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000\n\
             r1/index.m3u8\n"
        );
        // MPEG-TS renditions: the TS media playlists' version.
        assert_eq!(
            render_multivariant(VERSION, &[low]),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.42c01f,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000\n\
             r1/index.m3u8\n"
        );
        assert_eq!(
            render_multivariant(crate::llhls::VERSION, &[]),
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
    }

    fn seg(sequence: u64, ms: u64, discontinuity: bool, pdt: Option<u64>) -> Segment {
        Segment {
            sequence,
            duration: Ticks90k::from_millis(ms),
            uri: format!("seg{sequence}.ts"),
            program_date_time_ms: pdt,
            discontinuity,
            key: None,
        }
    }

    #[test]
    fn keys_rotating_every_two_segments() {
        let mut pl = MediaPlaylist::new(2, 5);
        for n in 0..7u64 {
            let mut s = seg(n, 2000, false, None);
            // Key n/2 from segment n - n%2 on, its IV that segment's number;
            // the last segment is in the clear.
            s.key = (n < 6).then(|| SegmentKey {
                uri: format!("keys/{}.key", n / 2),
                iv: sequence_iv(n - n % 2),
            });
            pl.push(s);
        }
        assert_eq!(
            pl.render(),
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-TARGETDURATION:2\n\
             #EXT-X-MEDIA-SEQUENCE:2\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"keys/1.key\",IV=0x00000000000000000000000000000002\n\
             #EXTINF:2.000,\n\
             seg2.ts\n\
             #EXTINF:2.000,\n\
             seg3.ts\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"keys/2.key\",IV=0x00000000000000000000000000000004\n\
             #EXTINF:2.000,\n\
             seg4.ts\n\
             #EXTINF:2.000,\n\
             seg5.ts\n\
             #EXT-X-KEY:METHOD=NONE\n\
             #EXTINF:2.000,\n\
             seg6.ts\n"
        );
        // Once the window starts mid-pair, the first listed segment still
        // states its key; after the keyed ones leave, no key tag is left.
        pl.push(seg(7, 2000, true, Some(0)));
        assert!(pl.render().contains(
            "#EXT-X-MEDIA-SEQUENCE:3\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"keys/1.key\",IV=0x00000000000000000000000000000002\n\
             #EXTINF:2.000,\n\
             seg3.ts\n"
        ));
        assert!(pl.render().ends_with(
            "seg6.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z\n\
             #EXTINF:2.000,\n\
             seg7.ts\n"
        ));
        for n in 8..11 {
            pl.push(seg(n, 2000, false, None));
        }
        assert!(!pl.render().contains("EXT-X-KEY"));
    }

    #[test]
    fn pdt_format() {
        assert_eq!(format_program_date_time(0), "1970-01-01T00:00:00.000Z");
        // 1764064800 s = 20417 days + 36000 s; day 20417 is 2025-11-25.
        assert_eq!(
            format_program_date_time(1_764_064_800_123),
            "2025-11-25T10:00:00.123Z"
        );
        assert_eq!(
            format_program_date_time(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(951_868_799_999),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_program_date_time(4_107_542_400_000),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(1_798_761_599_000),
            "2026-12-31T23:59:59.000Z"
        );
        // No panic at the extreme.
        assert!(format_program_date_time(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn civil_dates_are_consecutive() {
        // Walk 1970..2400 day by day and check each date follows the previous.
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for d in 1..157_000u64 {
            let cur = civil_from_days(d);
            let (y, m, day) = prev;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let want = if day < len {
                (y, m, day + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(cur, want, "day {d}");
            prev = cur;
        }
    }

    #[test]
    fn playlist_sliding_window_with_discontinuity() {
        let mut pl = MediaPlaylist::new(2, 3);
        assert_eq!(pl.media_sequence(), 0);
        let t0 = 1_764_064_800_000;
        assert_eq!(pl.push(seg(0, 2000, false, Some(t0))), None);
        assert_eq!(pl.push(seg(1, 1500, true, Some(t0 + 2000))), None);
        assert_eq!(pl.push(seg(2, 2000, false, None)), None);
        let evicted = pl.push(seg(3, 1967, true, Some(t0 + 9000))).unwrap();
        assert_eq!(evicted.sequence, 0);
        assert_eq!(pl.discontinuity_sequence(), 0);
        assert_eq!(pl.push(seg(4, 2002, false, None)).unwrap().sequence, 1);
        assert_eq!(pl.media_sequence(), 2);
        assert_eq!(pl.discontinuity_sequence(), 1);
        assert_eq!(pl.segments().count(), 3);
        assert_eq!(
            pl.render(),
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-TARGETDURATION:2\n\
             #EXT-X-MEDIA-SEQUENCE:2\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n\
             #EXTINF:2.000,\n\
             seg2.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2025-11-25T10:00:09.000Z\n\
             #EXTINF:1.967,\n\
             seg3.ts\n\
             #EXTINF:2.002,\n\
             seg4.ts\n"
        );
    }

    #[test]
    fn playlist_first_render_and_renumbering() {
        let mut pl = MediaPlaylist::new(4, 0);
        assert_eq!(
            pl.render(),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
        pl.push(seg(41, 1000, false, None));
        assert_eq!(pl.media_sequence(), 41);
        // Window 0 acts as 1; a gap in numbering is closed up.
        let old = pl.push(seg(99, 1000, false, None)).unwrap();
        assert_eq!(old.sequence, 41);
        assert_eq!(pl.segments().next().unwrap().sequence, 42);
        assert_eq!(pl.media_sequence(), 42);
        assert!(pl
            .render()
            .contains("#EXT-X-MEDIA-SEQUENCE:42\n#EXTINF:1.000,\nseg99.ts\n"));
        assert_eq!(pl.target_duration_s(), 4);
    }

    #[test]
    fn segmenter_cuts_at_keyframes_after_target() {
        let frame = Ticks90k(3000); // 30 fps
        let mut s = Segmenter::new(Ticks90k(90_000));
        let base = 1_000_000u64;
        let mut cuts = Vec::new();
        // Two leading P frames, then a GOP of 30 frames (keyframe every 15).
        for i in 0..100u64 {
            let dts = Ticks90k(base + i * 3000);
            let key = i >= 2 && (i - 2) % 15 == 0;
            let c = s.push(dts, key, frame);
            if i < 2 {
                assert_eq!(c, Cut::Skip);
            }
            if let Cut::Start { finished } = c {
                cuts.push((i, finished));
            }
        }
        // Keyframes at 2, 17, 32, 47, ...; cuts every 30 frames.
        assert_eq!(
            cuts,
            [
                (2, None),
                (32, Some(Ticks90k(90_000))),
                (62, Some(Ticks90k(90_000))),
                (92, Some(Ticks90k(90_000)))
            ]
        );
    }

    #[test]
    fn segmenter_tolerates_jitter() {
        // A keyframe 1000 ticks early (within half a frame of 3003) still cuts.
        let frame = Ticks90k(3003);
        let mut s = Segmenter::new(Ticks90k(90_000));
        assert_eq!(
            s.push(Ticks90k(0), true, frame),
            Cut::Start { finished: None }
        );
        assert_eq!(s.push(Ticks90k(3003), false, frame), Cut::Continue);
        assert_eq!(
            s.push(Ticks90k(89_000), true, frame),
            Cut::Start {
                finished: Some(Ticks90k(89_000))
            }
        );
        // Too early (more than half a frame short): no cut.
        assert_eq!(
            s.push(Ticks90k(89_000 + 88_000), true, frame),
            Cut::Continue
        );
        // DTS going backwards never cuts and never panics.
        assert_eq!(s.push(Ticks90k(5), true, frame), Cut::Continue);
    }

    #[test]
    fn segmenter_reset() {
        let frame = Ticks90k(3000);
        let mut s = Segmenter::new(Ticks90k(180_000));
        assert_eq!(s.reset(), None);
        s.push(Ticks90k(0), true, frame);
        s.push(Ticks90k(3000), false, frame);
        s.push(Ticks90k(6000), false, frame);
        assert_eq!(s.reset(), Some(Ticks90k(9000)));
        assert_eq!(s.reset(), None);
        // After a reset, non-keyframes are skipped until the next keyframe.
        assert_eq!(s.push(Ticks90k(50), false, frame), Cut::Skip);
        assert_eq!(
            s.push(Ticks90k(3050), true, frame),
            Cut::Start { finished: None }
        );
    }
}
