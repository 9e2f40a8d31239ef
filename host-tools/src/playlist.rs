//! A small, strict parser for the live HLS media playlists a roomcast box
//! serves (RFC 8216).
//!
//! Known tags: `EXTM3U`, `EXT-X-VERSION`, `EXT-X-TARGETDURATION`,
//! `EXT-X-MEDIA-SEQUENCE`, `EXT-X-DISCONTINUITY-SEQUENCE`,
//! `EXT-X-DISCONTINUITY`, `EXT-X-PROGRAM-DATE-TIME`, `EXTINF`,
//! `EXT-X-ENDLIST`, and URI lines. Their syntax and placement are checked
//! strictly: a malformed value, a repeated header tag, a header tag after the
//! first segment, an `EXTINF` without a URI (or a URI without an `EXTINF`),
//! a segment longer than the target duration, or decimal durations with a
//! version below 3 is an error naming the line.
//!
//! Other `#EXT` tags (for instance the LL-HLS tags a box emits with low
//! latency on) are not errors — RFC 8216 §6.3.1 says clients ignore tags
//! they do not know — but they are listed in [`Playlist::unknown_tags`] so a
//! caller can say it skipped them. Lines starting with `#` but not `#EXT`
//! are comments.

use std::time::Duration;

/// A parsed media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    /// `EXT-X-VERSION`; 1 when absent (§4.3.1.2).
    pub version: u32,
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration_s: u64,
    /// `EXT-X-MEDIA-SEQUENCE`; 0 when absent.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`; 0 when absent.
    pub discontinuity_sequence: u64,
    /// `EXT-X-ENDLIST` was present: no more segments will be added.
    pub end_list: bool,
    /// The segments, oldest first.
    pub segments: Vec<Segment>,
    /// Names of `#EXT` tags this parser does not know, once each, in order of
    /// first appearance.
    pub unknown_tags: Vec<String>,
}

/// One media segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number: `EXT-X-MEDIA-SEQUENCE` + position (§6.2.1).
    pub sequence: u64,
    /// `EXTINF` duration.
    pub duration: Duration,
    /// `EXTINF` title (after the comma); usually empty.
    pub title: String,
    /// The URI line, as written.
    pub uri: String,
    /// `EXT-X-PROGRAM-DATE-TIME` given for this segment, Unix milliseconds.
    pub program_date_time_ms: Option<i64>,
    /// `EXT-X-DISCONTINUITY` precedes this segment.
    pub discontinuity: bool,
}

/// One `EXT-X-STREAM-INF` entry of a multivariant playlist (§4.4.6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The media playlist, as written (relative to the multivariant one).
    pub uri: String,
    /// `BANDWIDTH`: peak bit rate, bit/s (required).
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// `RESOLUTION` as (width, height).
    pub resolution: Option<(u32, u32)>,
    pub codecs: Option<String>,
}

/// Whether `text` is a multivariant playlist (it lists variants, not
/// segments): such a playlist has `EXT-X-STREAM-INF` (§4.4.6.2), which a
/// media playlist must not.
pub fn is_multivariant(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("#EXT-X-STREAM-INF:"))
}

/// The variants of a multivariant playlist, in order; strict about what it
/// reads (`BANDWIDTH` present and numeric, a URI after every
/// `EXT-X-STREAM-INF`, a well-formed attribute list), an error naming the
/// line otherwise. Other tags are ignored.
pub fn parse_multivariant(text: &str) -> Result<Vec<Variant>, PlaylistError> {
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    if lines.next().map(|(_, l)| l) != Some("#EXTM3U") {
        return fail(1, "first line must be #EXTM3U");
    }
    let mut variants = Vec::new();
    let mut pending: Option<(usize, Variant)> = None;
    for (n, line) in lines {
        if line.is_empty() || (line.starts_with('#') && !line.starts_with("#EXT")) {
            continue;
        }
        if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            if pending.is_some() {
                return fail(n, "EXT-X-STREAM-INF without a URI after the previous one");
            }
            pending = Some((n, stream_inf(n, list)?));
        } else if !line.starts_with('#') {
            let Some((_, mut v)) = pending.take() else {
                return fail(
                    n,
                    format!("URI {line:?} without a preceding EXT-X-STREAM-INF"),
                );
            };
            if line.chars().any(char::is_whitespace) {
                return fail(n, format!("URI {line:?} contains whitespace"));
            }
            v.uri = line.to_string();
            variants.push(v);
        }
    }
    if let Some((n, _)) = pending {
        return fail(n, "EXT-X-STREAM-INF without a URI");
    }
    if variants.is_empty() {
        return fail(0, "no EXT-X-STREAM-INF: not a multivariant playlist");
    }
    Ok(variants)
}

/// An `EXT-X-STREAM-INF` attribute list (§4.2): `NAME=value` pairs split
/// on commas outside quoted strings.
fn stream_inf(n: usize, list: &str) -> Result<Variant, PlaylistError> {
    let mut v = Variant {
        uri: String::new(),
        bandwidth: 0,
        average_bandwidth: None,
        resolution: None,
        codecs: None,
    };
    let mut bandwidth = None;
    let mut rest = list;
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            return fail(n, format!("attribute without a value in {list:?}"));
        };
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let Some(end) = q.find('"') else {
                return fail(n, format!("unterminated quoted string in {list:?}"));
            };
            (&q[..end], &q[end + 1..])
        } else {
            after.split_at(after.find(',').unwrap_or(after.len()))
        };
        rest = match next.strip_prefix(',') {
            Some(r) => r,
            None if next.is_empty() => next,
            None => return fail(n, format!("junk after {name}'s value in {list:?}")),
        };
        let int = |value: &str| {
            value.parse::<u64>().map_err(|_| PlaylistError {
                line: n,
                reason: format!("{name}={value:?} is not a decimal integer"),
            })
        };
        match name {
            "BANDWIDTH" => bandwidth = Some(int(value)?),
            "AVERAGE-BANDWIDTH" => v.average_bandwidth = Some(int(value)?),
            "CODECS" => v.codecs = Some(value.to_string()),
            "RESOLUTION" => {
                let size = value
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
                let Some(size) = size else {
                    return fail(n, format!("RESOLUTION={value:?} is not WIDTHxHEIGHT"));
                };
                v.resolution = Some(size);
            }
            _ => {}
        }
    }
    let Some(b) = bandwidth else {
        return fail(n, "EXT-X-STREAM-INF without BANDWIDTH");
    };
    v.bandwidth = b;
    Ok(v)
}

/// Why a playlist was rejected: the 1-based line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PlaylistError {
    /// 1-based line number (0 when the problem is the playlist as a whole).
    pub line: usize,
    pub reason: String,
}

fn fail<T>(line: usize, reason: impl Into<String>) -> Result<T, PlaylistError> {
    Err(PlaylistError {
        line,
        reason: reason.into(),
    })
}

/// Media-segment tags seen since the last URI.
#[derive(Default)]
struct Pending {
    extinf: Option<(Duration, String, bool)>,
    pdt: Option<i64>,
    discontinuity: bool,
    /// Line of the first pending tag, for "dangling tag" errors.
    first_line: Option<usize>,
}

impl Playlist {
    /// Parses `text`; see the module documentation for what is checked.
    pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
        let mut lines = text.split('\n').enumerate().map(|(i, l)| {
            // CRLF line ends are allowed (§4.1).
            (i + 1, l.strip_suffix('\r').unwrap_or(l))
        });
        match lines.next() {
            Some((_, "#EXTM3U")) => {}
            Some((n, l)) if l.starts_with('\u{feff}') => {
                return fail(n, "starts with a byte order mark, which §4 forbids")
            }
            _ => return fail(1, "first line must be #EXTM3U"),
        }

        let mut version: Option<u32> = None;
        let mut target: Option<u64> = None;
        let mut media_sequence: Option<u64> = None;
        let mut disc_sequence: Option<u64> = None;
        let mut end_list = false;
        let mut segments: Vec<Segment> = Vec::new();
        let mut unknown_tags: Vec<String> = Vec::new();
        let mut pending = Pending::default();
        let mut decimal_duration_line: Option<usize> = None;

        for (n, line) in lines {
            if line.is_empty() {
                continue; // blank lines are ignored (§4.1)
            }
            if line.trim() != line {
                return fail(n, "leading or trailing whitespace");
            }
            if end_list {
                return fail(n, "nothing may follow #EXT-X-ENDLIST");
            }
            if !line.starts_with('#') {
                // A URI line ends the segment.
                let Some((duration, title, _)) = pending.extinf.take() else {
                    return fail(n, format!("URI {line:?} without a preceding #EXTINF"));
                };
                if line.chars().any(char::is_whitespace) {
                    return fail(n, format!("URI {line:?} contains whitespace"));
                }
                let sequence = media_sequence
                    .unwrap_or(0)
                    .checked_add(segments.len() as u64)
                    .ok_or_else(|| PlaylistError {
                        line: n,
                        reason: "media sequence number overflows".into(),
                    })?;
                segments.push(Segment {
                    sequence,
                    duration,
                    title,
                    uri: line.to_string(),
                    program_date_time_ms: pending.pdt.take(),
                    discontinuity: pending.discontinuity,
                });
                pending = Pending::default();
                continue;
            }
            if !line.starts_with("#EXT") {
                continue; // comment
            }
            let (name, value) = match line.split_once(':') {
                Some((name, value)) => (name, Some(value)),
                None => (line, None),
            };
            let header_once = |seen: bool, n: usize| -> Result<(), PlaylistError> {
                if seen {
                    return fail(n, format!("{name} appears more than once"));
                }
                if !segments.is_empty() || pending.first_line.is_some() {
                    return fail(n, format!("{name} must come before the first segment"));
                }
                Ok(())
            };
            match name {
                "#EXTM3U" => return fail(n, "#EXTM3U may only be the first line"),
                "#EXT-X-VERSION" => {
                    header_once(version.is_some(), n)?;
                    let v = decimal_integer(n, name, value)?;
                    let v =
                        u32::try_from(v)
                            .ok()
                            .filter(|v| *v >= 1)
                            .ok_or_else(|| PlaylistError {
                                line: n,
                                reason: format!("{name} must be between 1 and {}", u32::MAX),
                            })?;
                    version = Some(v);
                }
                "#EXT-X-TARGETDURATION" => {
                    header_once(target.is_some(), n)?;
                    target = Some(decimal_integer(n, name, value)?);
                }
                "#EXT-X-MEDIA-SEQUENCE" => {
                    header_once(media_sequence.is_some(), n)?;
                    media_sequence = Some(decimal_integer(n, name, value)?);
                }
                "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                    header_once(disc_sequence.is_some(), n)?;
                    disc_sequence = Some(decimal_integer(n, name, value)?);
                }
                "#EXT-X-ENDLIST" => {
                    no_value(n, name, value)?;
                    if pending.first_line.is_some() {
                        return fail(n, "#EXT-X-ENDLIST inside a segment (before its URI)");
                    }
                    end_list = true;
                }
                "#EXT-X-DISCONTINUITY" => {
                    no_value(n, name, value)?;
                    if pending.discontinuity {
                        return fail(n, "#EXT-X-DISCONTINUITY twice for one segment");
                    }
                    pending.discontinuity = true;
                    pending.first_line.get_or_insert(n);
                }
                "#EXT-X-PROGRAM-DATE-TIME" => {
                    let Some(v) = value else {
                        return fail(n, "#EXT-X-PROGRAM-DATE-TIME needs a date-time value");
                    };
                    if pending.pdt.is_some() {
                        return fail(n, "#EXT-X-PROGRAM-DATE-TIME twice for one segment");
                    }
                    let ms = parse_date_time(v).map_err(|reason| PlaylistError {
                        line: n,
                        reason: format!("#EXT-X-PROGRAM-DATE-TIME {v:?}: {reason}"),
                    })?;
                    pending.pdt = Some(ms);
                    pending.first_line.get_or_insert(n);
                }
                "#EXTINF" => {
                    let Some(v) = value else {
                        return fail(n, "#EXTINF needs a duration, e.g. #EXTINF:1.000,");
                    };
                    if pending.extinf.is_some() {
                        return fail(n, "#EXTINF twice for one segment (missing URI?)");
                    }
                    let Some((dur, title)) = v.split_once(',') else {
                        return fail(
                            n,
                            format!("#EXTINF {v:?} lacks the comma after the duration"),
                        );
                    };
                    let (duration, decimal) = parse_duration(dur).ok_or_else(|| PlaylistError {
                        line: n,
                        reason: format!("#EXTINF duration {dur:?} is not a decimal number"),
                    })?;
                    if decimal {
                        decimal_duration_line.get_or_insert(n);
                    }
                    pending.extinf = Some((duration, title.to_string(), decimal));
                    pending.first_line.get_or_insert(n);
                }
                other => {
                    if !unknown_tags.iter().any(|t| t == other) {
                        unknown_tags.push(other.to_string());
                    }
                }
            }
        }
        if let Some(n) = pending.first_line {
            return fail(
                n,
                "segment tags without a URI line at the end of the playlist",
            );
        }
        let Some(target_duration_s) = target else {
            return fail(0, "#EXT-X-TARGETDURATION is missing");
        };
        let version = version.unwrap_or(1);
        if let Some(n) = decimal_duration_line {
            if version < 3 {
                return fail(
                    n,
                    format!(
                        "decimal #EXTINF durations need #EXT-X-VERSION 3 or later (have {version})"
                    ),
                );
            }
        }
        for s in &segments {
            // §4.3.3.1: each EXTINF rounded to the nearest integer must not
            // exceed the target duration.
            let rounded = (s.duration + Duration::from_millis(500)).as_secs();
            if rounded > target_duration_s {
                return fail(
                    0,
                    format!(
                        "segment {} lasts {:.3} s, longer than #EXT-X-TARGETDURATION {}",
                        s.sequence,
                        s.duration.as_secs_f64(),
                        target_duration_s
                    ),
                );
            }
        }
        Ok(Playlist {
            version,
            target_duration_s,
            media_sequence: media_sequence.unwrap_or(0),
            discontinuity_sequence: disc_sequence.unwrap_or(0),
            end_list,
            segments,
            unknown_tags,
        })
    }

    /// Wall-clock time of segment `index`'s first frame, Unix milliseconds:
    /// its own `EXT-X-PROGRAM-DATE-TIME`, or else the nearest earlier one
    /// plus the durations in between (§4.3.2.6), unless a discontinuity lies
    /// in between (then the time is unknown).
    pub fn date_time_ms(&self, index: usize) -> Option<i64> {
        let mut offset = Duration::ZERO;
        self.segments.get(index)?;
        for i in (0..=index).rev() {
            let s = self.segments.get(i)?;
            if i != index {
                offset += s.duration;
            }
            if let Some(t) = s.program_date_time_ms {
                return t.checked_add(i64::try_from(offset.as_millis()).ok()?);
            }
            if s.discontinuity {
                return None;
            }
        }
        None
    }
}

fn no_value(n: usize, name: &str, value: Option<&str>) -> Result<(), PlaylistError> {
    match value {
        None => Ok(()),
        Some(v) => fail(n, format!("{name} takes no value (got {v:?})")),
    }
}

/// `decimal-integer` (§4.2): 1 to 20 digits, no sign, fits in u64.
fn decimal_integer(n: usize, name: &str, value: Option<&str>) -> Result<u64, PlaylistError> {
    let v = value.unwrap_or("");
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return fail(n, format!("{name} wants a whole number (got {v:?})"));
    }
    v.parse()
        .or_else(|_| fail(n, format!("{name} value {v} is too large")))
}

/// `decimal-floating-point` without sign; returns the duration and whether
/// it had a fraction. Digits after the ninth decimal are truncated.
fn parse_duration(s: &str) -> Option<(Duration, bool)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || int.len() > 12 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut nanos = 0u32;
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        for (i, b) in f.bytes().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
    }
    Some((Duration::new(secs, nanos), frac.is_some()))
}

/// Parses an RFC 3339 date-time (`2025-11-25T10:00:09.000Z`, or with a
/// `+HH:MM` / `-HH:MM` offset) into Unix milliseconds. Fractions beyond
/// milliseconds are truncated.
pub fn parse_date_time(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(range.clone()).ok_or("too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("expected digits at position {}", range.start + 1));
        }
        Ok(part.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, want: &[u8]| -> Result<(), String> {
        match b.get(i) {
            Some(c) if want.contains(c) => Ok(()),
            _ => Err(format!(
                "expected {:?} at position {}",
                String::from_utf8_lossy(&want[..1]),
                i + 1
            )),
        }
    };
    let year = num(0..4)?;
    sep(4, b"-")?;
    let month = num(5..7)?;
    sep(7, b"-")?;
    let day = num(8..10)?;
    sep(10, b"Tt")?;
    let hour = num(11..13)?;
    sep(13, b":")?;
    let minute = num(14..16)?;
    sep(16, b":")?;
    let second = num(17..19)?;
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("a '.' must be followed by digits".into());
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&c @ (b'+' | b'-')) => {
            let h = num(i + 1..i + 3)?;
            sep(i + 3, b":")?;
            let m = num(i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return Err("time zone offset out of range".into());
            }
            i += 6;
            let o = h * 60 + m;
            if c == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err("missing time zone (Z or +HH:MM)".into()),
    };
    if i != b.len() {
        return Err("unexpected characters after the time zone".into());
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_len = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > month_len {
        return Err(format!("day {day} out of range for month {month}"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range".into());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm: March-based years split into 400-year eras).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_media::hls::{format_program_date_time, MediaPlaylist, Segment as MSeg};
    use roomcast_media::time::Ticks90k;

    /// Byte for byte what a roomcast box served (320x240@30, GOP 30).
    const BOX: &str = "#EXTM3U\n\
#EXT-X-VERSION:3\n\
#EXT-X-TARGETDURATION:1\n\
#EXT-X-MEDIA-SEQUENCE:3591133021\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T00:28:30.679Z\n\
#EXTINF:1.000,\n\
seg3591133021.ts\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T00:28:31.679Z\n\
#EXTINF:1.000,\n\
seg3591133022.ts\n\
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T00:28:32.679Z\n\
#EXTINF:1.000,\n\
seg3591133023.ts\n";

    #[test]
    fn parses_what_the_box_serves() {
        let p = Playlist::parse(BOX).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.target_duration_s, 1);
        assert_eq!(p.media_sequence, 3_591_133_021);
        assert_eq!(p.discontinuity_sequence, 0);
        assert!(!p.end_list && p.unknown_tags.is_empty());
        assert_eq!(p.segments.len(), 3);
        let last = &p.segments[2];
        assert_eq!(last.sequence, 3_591_133_023);
        assert_eq!(last.uri, "seg3591133023.ts");
        assert_eq!(last.duration, Duration::from_secs(1));
        // 2026-11-25T00:28:32.679Z
        assert_eq!(last.program_date_time_ms, Some(1_795_566_512_679));
        assert_eq!(
            format_program_date_time(1_795_566_512_679),
            "2026-11-25T00:28:32.679Z"
        );
        assert_eq!(p.date_time_ms(2), Some(1_795_566_512_679));
    }

    #[test]
    fn parses_discontinuities_and_derives_times() {
        let text = "#EXTM3U\r\n\
#EXT-X-VERSION:3\r\n\
#EXT-X-TARGETDURATION:2\r\n\
#EXT-X-MEDIA-SEQUENCE:2\r\n\
#EXT-X-DISCONTINUITY-SEQUENCE:1\r\n\
#EXTINF:2.000,\r\n\
seg2.ts\r\n\
#EXT-X-DISCONTINUITY\r\n\
#EXT-X-PROGRAM-DATE-TIME:2025-11-25T10:00:09.000Z\r\n\
#EXTINF:1.967,\r\n\
seg3.ts\r\n\
# a comment\r\n\
#EXTINF:2.002,title here\r\n\
seg4.ts\r\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.discontinuity_sequence, 1);
        let s: Vec<_> = p
            .segments
            .iter()
            .map(|s| (s.sequence, s.duration.as_millis(), s.discontinuity))
            .collect();
        assert_eq!(s, [(2, 2000, false), (3, 1967, true), (4, 2002, false)]);
        assert_eq!(p.segments[2].title, "title here");
        assert_eq!(p.date_time_ms(0), None);
        assert_eq!(p.date_time_ms(1), Some(1_764_064_809_000));
        assert_eq!(p.date_time_ms(2), Some(1_764_064_809_000 + 1967));
        assert_eq!(p.date_time_ms(3), None);
    }

    #[test]
    fn round_trips_the_media_core_renderer() {
        let mut pl = MediaPlaylist::new(2, 4);
        for i in 0..7u64 {
            pl.push(MSeg {
                sequence: 100 + i,
                duration: Ticks90k::from_millis(1500 + i),
                uri: format!("seg{}.ts", 100 + i),
                program_date_time_ms: Some(1_764_064_800_000 + 1500 * i),
                discontinuity: i == 4,
                key: None,
            });
        }
        let p = Playlist::parse(&pl.render()).unwrap();
        assert_eq!(p.media_sequence, pl.media_sequence());
        assert_eq!(p.discontinuity_sequence, pl.discontinuity_sequence());
        for (a, b) in p.segments.iter().zip(pl.segments()) {
            assert_eq!(a.sequence, b.sequence);
            assert_eq!(a.uri, b.uri);
            assert_eq!(a.discontinuity, b.discontinuity);
            assert_eq!(
                a.duration.as_millis() as u64,
                b.duration.as_millis_rounded()
            );
            assert_eq!(
                a.program_date_time_ms,
                b.program_date_time_ms.map(|t| t as i64)
            );
        }
    }

    #[test]
    fn reads_the_multivariant_playlist_the_box_serves() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-STREAM-INF:BANDWIDTH=2200000,AVERAGE-BANDWIDTH=1900000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\n\
r0/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.64001e\",RESOLUTION=640x360\n\
r1/index.m3u8\n";
        assert!(is_multivariant(text));
        let v = parse_multivariant(text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uri, "r0/index.m3u8");
        assert_eq!(v[0].bandwidth, 2_200_000);
        assert_eq!(v[0].average_bandwidth, Some(1_900_000));
        assert_eq!(v[0].codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        assert_eq!(v[0].resolution, Some((1280, 720)));
        assert_eq!(v[1].resolution, Some((640, 360)));
        assert_eq!(v[1].average_bandwidth, None);
        assert!(!is_multivariant("#EXTM3U\n#EXTINF:2,\nseg1.ts\n"));
    }

    #[test]
    fn rejects_malformed_multivariant_playlists_naming_the_line() {
        for (text, line) in [
            ("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\na.m3u8\n", 2),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\na.m3u8\n", 2),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"a\n", 2),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", 2),
            ("#EXTM3U\na.m3u8\n", 2),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=big\na.m3u8\n",
                2,
            ),
            ("#EXTM3U\n", 0),
            ("EXTM3U\n", 1),
        ] {
            assert_eq!(parse_multivariant(text).unwrap_err().line, line, "{text:?}");
        }
    }

    #[test]
    fn unknown_tags_are_listed_not_fatal() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
#EXT-X-PART:DURATION=0.2,URI=\"p0.ts\"\n#EXTINF:1.0,\nseg0.ts\n\
#EXT-X-PART:DURATION=0.2,URI=\"p1.ts\"\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(
            p.unknown_tags,
            ["#EXT-X-SERVER-CONTROL", "#EXT-X-PART-INF", "#EXT-X-PART"]
        );
        assert_eq!(p.segments.len(), 1);
    }

    #[test]
    fn rejects_malformed_playlists_naming_the_line() {
        let head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n";
        let cases: &[(String, usize, &str)] = &[
            ("".into(), 1, "#EXTM3U"),
            ("#EXTM3U \n".into(), 1, "#EXTM3U"),
            ("\u{feff}#EXTM3U\n".into(), 1, "byte order mark"),
            (
                "#EXTM3U\n#EXTINF:1.0,\nseg.ts\n".into(),
                0,
                "TARGETDURATION is missing",
            ),
            (
                format!("{head}#EXT-X-TARGETDURATION:2\n"),
                4,
                "more than once",
            ),
            (
                format!("{head}#EXT-X-MEDIA-SEQUENCE:-1\n"),
                4,
                "whole number",
            ),
            (
                format!("{head}#EXT-X-MEDIA-SEQUENCE:99999999999999999999\n"),
                4,
                "too large",
            ),
            (
                format!("{head}#EXTINF:1.0,\na.ts\n#EXT-X-MEDIA-SEQUENCE:3\n"),
                6,
                "before the first segment",
            ),
            (format!("{head}a.ts\n"), 4, "without a preceding #EXTINF"),
            (format!("{head}#EXTINF:1.0\na.ts\n"), 4, "comma"),
            (format!("{head}#EXTINF:abc,\na.ts\n"), 4, "not a decimal"),
            (format!("{head}#EXTINF:1.,\na.ts\n"), 4, "not a decimal"),
            (
                format!("{head}#EXTINF:1.0,\n#EXTINF:1.0,\na.ts\n"),
                5,
                "twice",
            ),
            (format!("{head}#EXTINF:1.0,\n"), 4, "without a URI"),
            (format!("{head}#EXTINF:1.0,\n a.ts\n"), 5, "whitespace"),
            (format!("{head}#EXTINF:1.0,\na b.ts\n"), 5, "whitespace"),
            (format!("{head}#EXTINF:1.6,\na.ts\n"), 0, "longer than"),
            (
                format!("{head}#EXT-X-DISCONTINUITY:1\n#EXTINF:1,\na.ts\n"),
                4,
                "no value",
            ),
            (
                format!("{head}#EXT-X-PROGRAM-DATE-TIME:2025-13-01T00:00:00Z\n#EXTINF:1,\na.ts\n"),
                4,
                "month 13",
            ),
            (
                format!("{head}#EXT-X-PROGRAM-DATE-TIME:2025-02-29T00:00:00Z\n#EXTINF:1,\na.ts\n"),
                4,
                "day 29",
            ),
            (
                format!("{head}#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00\n#EXTINF:1,\na.ts\n"),
                4,
                "time zone",
            ),
            (
                format!("{head}#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n#EXTINF:1,\nb.ts\n"),
                7,
                "ENDLIST",
            ),
            (
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.000,\na.ts\n".into(),
                3,
                "VERSION 3",
            ),
            (format!("{head}#EXTM3U\n"), 4, "first line"),
        ];
        for (text, line, needle) in cases {
            let e = Playlist::parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
        // Integer durations are fine at version 1; rounding to the target is allowed.
        let p =
            Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n")
                .unwrap();
        assert!(p.end_list);
        assert!(Playlist::parse(&format!("{head}#EXTINF:1.499,\na.ts\n")).is_ok());
    }

    #[test]
    fn date_times() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_date_time("1970-01-01T00:00:00.5Z"), Ok(500));
        assert_eq!(parse_date_time("1970-01-01T00:00:00.123456Z"), Ok(123));
        assert_eq!(parse_date_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_date_time("1969-12-31T23:00:00-01:00"), Ok(0));
        assert_eq!(
            parse_date_time("2000-02-29T23:59:59.999Z"),
            Ok(951_868_799_999)
        );
        assert_eq!(
            parse_date_time("2100-03-01T00:00:00.000Z"),
            Ok(4_107_542_400_000)
        );
        for bad in [
            "",
            "2025-01-01",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00Zjunk",
            "2025-01-01T00:00:00+0100",
            "2025/01/01T00:00:00Z",
            "+025-01-01T00:00:00Z",
        ] {
            assert!(parse_date_time(bad).is_err(), "{bad}");
        }
        // Agrees with the box's formatter over a range of dates.
        for ms in (0..4_000_000_000_000u64).step_by(86_399_999_937) {
            let s = format_program_date_time(ms);
            assert_eq!(parse_date_time(&s), Ok(ms as i64), "{s}");
        }
    }
}
