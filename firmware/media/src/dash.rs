//! A dynamic (live) MPEG-DASH MPD over CMAF segments (ISO/IEC 23009-1,
//! DASH-IF IOP v5 live and low-latency profiles).
//!
//! * One `Period` (a new one after an encoder restart, whose timeline
//!   starts afresh: `presentationTimeOffset` maps its decode times onto the
//!   period's start); one video
//!   `AdaptationSet` with a `Representation` per rendition and, when the
//!   stream has sound, one audio `AdaptationSet`. Every set addresses its
//!   segments with a `SegmentTemplate` using `$RepresentationID$` and
//!   `$Number$` over a `SegmentTimeline` (segments are cut on keyframes, so
//!   their durations are listed, not assumed).
//! * Low latency (DASH-IF IOP part 9): `availabilityTimeOffset` lets the
//!   client ask for the segment being produced as soon as its first chunk
//!   exists (`availabilityTimeComplete="false"`: it arrives chunk by chunk),
//!   and a `ServiceDescription` gives the latency target.
//! * `UTCTiming` (`urn:mpeg:dash:utc:http-iso:2014`) points the client at
//!   the server's clock, so a client with a wrong clock still finds the
//!   live edge.
//!
//! Everything written is escaped for XML attributes; nothing here reads a
//! clock: times come in as Unix milliseconds and media ticks.

use crate::hls::format_program_date_time;
use alloc::string::String;
use core::fmt::Write;

/// One segment on the timeline: its `$Number$`, its start (in `timescale`
/// ticks since `availabilityStartTime`) and duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSegment {
    pub number: u64,
    pub start: u64,
    pub duration: u64,
}

/// A video rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRepresentation {
    /// `$RepresentationID$`: an XML NCName-like id (letters, digits, `-`, `_`).
    pub id: String,
    /// Peak bit rate, bit/s.
    pub bandwidth: u64,
    /// RFC 6381 codecs, e.g. `avc1.64001f`.
    pub codecs: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: u32,
}

/// The sound, when the stream has it.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRepresentation {
    pub id: String,
    pub bandwidth: u64,
    /// e.g. `mp4a.40.2`.
    pub codecs: String,
    pub sample_rate: u32,
    pub channels: u32,
}

/// Everything one MPD says.
#[derive(Debug, Clone, PartialEq)]
pub struct Mpd<'a> {
    /// `availabilityStartTime`: when media time 0 was (Unix ms).
    pub availability_start_ms: u64,
    /// `publishTime`: when this MPD was made (Unix ms).
    pub publish_ms: u64,
    /// `minimumUpdatePeriod`: how often clients reload the MPD.
    pub minimum_update_period_ms: u32,
    pub min_buffer_time_ms: u32,
    /// `timeShiftBufferDepth`: how far back the listed segments reach.
    pub time_shift_buffer_depth_ms: u32,
    /// `maxSegmentDuration`.
    pub max_segment_duration_ms: u32,
    /// `ServiceDescription/Latency@target`, ms.
    pub target_latency_ms: u32,
    /// With low latency: `availabilityTimeOffset` in ms (a segment's
    /// duration minus its first chunk's), else `None`.
    pub availability_time_offset_ms: Option<u32>,
    /// `Period@id`: changes when the init segments do.
    pub period_id: &'a str,
    /// `Period@start`, ms after `availabilityStartTime`.
    pub period_start_ms: u64,
    /// `presentationTimeOffset` (in `timescale` ticks): the media time at
    /// the period's start.
    pub presentation_time_offset: u64,
    /// The `UTCTiming` URL (`http-iso`: the server answers an ISO 8601 time).
    pub utc_timing_url: &'a str,
    /// Ticks per second of `segments`' times.
    pub timescale: u32,
    /// Segment templates, relative to the MPD; `$RepresentationID$` and
    /// `$Number$` are filled in by the client.
    pub initialization: &'a str,
    pub media: &'a str,
    pub video: &'a [VideoRepresentation],
    pub audio: Option<&'a AudioRepresentation>,
    /// The segments in the window, oldest first, numbers consecutive.
    pub segments: &'a [TimelineSegment],
}

/// `PT…S` with millisecond precision (xs:duration).
fn duration(ms: u64) -> String {
    let mut s = String::new();
    let _ = write!(s, "PT{}.{:03}S", ms / 1000, ms % 1000);
    s
}

/// A period start: `PT0S`, or [`duration`].
fn period_start(ms: u64) -> String {
    if ms == 0 {
        String::from("PT0S")
    } else {
        duration(ms)
    }
}

/// `s` escaped for a double-quoted XML attribute value.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

impl Mpd<'_> {
    /// The MPD as XML.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048 + 64 * self.segments.len());
        let _ = write!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
             profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\" \
             type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" \
             minimumUpdatePeriod=\"{}\" minBufferTime=\"{}\" timeShiftBufferDepth=\"{}\" \
             maxSegmentDuration=\"{}\">\n",
            format_program_date_time(self.availability_start_ms),
            format_program_date_time(self.publish_ms),
            duration(self.minimum_update_period_ms.into()),
            duration(self.min_buffer_time_ms.into()),
            duration(self.time_shift_buffer_depth_ms.into()),
            duration(self.max_segment_duration_ms.into()),
        );
        let target = self.target_latency_ms;
        let _ = write!(
            s,
            "  <ServiceDescription id=\"0\">\n    \
             <Latency referenceId=\"0\" target=\"{target}\" min=\"{}\" max=\"{}\"/>\n    \
             <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n  </ServiceDescription>\n  \
             <Period id=\"{}\" start=\"{}\">\n",
            target / 2,
            target * 2,
            attr(self.period_id),
            period_start(self.period_start_ms),
        );
        if !self.video.is_empty() {
            s.push_str(
                "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" \
                 segmentAlignment=\"true\" startWithSAP=\"1\">\n",
            );
            self.template(&mut s);
            for v in self.video {
                let _ = writeln!(
                    s,
                    "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{}\" \
                     height=\"{}\" frameRate=\"{}\" sar=\"1:1\"/>",
                    attr(&v.id),
                    v.bandwidth,
                    attr(&v.codecs),
                    v.width,
                    v.height,
                    v.frame_rate
                );
            }
            s.push_str("    </AdaptationSet>\n");
        }
        if let Some(a) = self.audio {
            let _ = write!(
                s,
                "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" \
                 lang=\"und\" segmentAlignment=\"true\" startWithSAP=\"1\">\n      \
                 <AudioChannelConfiguration \
                 schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>\n",
                a.channels
            );
            self.template(&mut s);
            let _ = write!(
                s,
                "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" \
                 audioSamplingRate=\"{}\"/>\n    </AdaptationSet>\n",
                attr(&a.id),
                a.bandwidth,
                attr(&a.codecs),
                a.sample_rate
            );
        }
        let _ = write!(
            s,
            "  </Period>\n  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"{}\"/>\n</MPD>\n",
            attr(self.utc_timing_url)
        );
        s
    }

    /// The `SegmentTemplate` with its timeline (runs of equal durations
    /// folded into `r`).
    fn template(&self, s: &mut String) {
        let start_number = self.segments.first().map_or(1, |g| g.number);
        let _ = write!(
            s,
            "      <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{}\" initialization=\"{}\" media=\"{}\" startNumber=\"{start_number}\"",
            self.timescale,
            self.presentation_time_offset,
            attr(self.initialization),
            attr(self.media)
        );
        if let Some(offset) = self.availability_time_offset_ms {
            let _ = write!(
                s,
                " availabilityTimeOffset=\"{}.{:03}\" availabilityTimeComplete=\"false\"",
                offset / 1000,
                offset % 1000
            );
        }
        s.push_str(">\n        <SegmentTimeline>\n");
        let mut i = 0;
        while i < self.segments.len() {
            let first = self.segments[i];
            let mut repeat = 0;
            while let Some(next) = self.segments.get(i + repeat + 1) {
                let prev = self.segments[i + repeat];
                if next.duration != first.duration || next.start != prev.start + prev.duration {
                    break;
                }
                repeat += 1;
            }
            let _ = write!(
                s,
                "          <S t=\"{}\" d=\"{}\"",
                first.start, first.duration
            );
            if repeat > 0 {
                let _ = write!(s, " r=\"{repeat}\"");
            }
            s.push_str("/>\n");
            i += repeat + 1;
        }
        s.push_str("        </SegmentTimeline>\n      </SegmentTemplate>\n");
    }
}

/// The longest path under `/dash/` [`DashPath::parse`] looks at.
pub const MAX_PATH_LEN: usize = 96;

/// Whose segments a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// `rN` (N < 100): rendition N's pictures.
    Video(usize),
    /// `a`: the sound.
    Audio,
}

/// A request path under `/dash/`, parsed strictly: what the box serves and
/// nothing else (no `..`, signs, spaces or numbers past `u64`).
///
/// ```text
/// index.mpd                 the MPD
/// time                      the UTCTiming clock
/// TRACK/init-RUN-EPOCH.mp4  an init segment
/// TRACK/RUN/segN.m4s        segment N (counted from the run's first)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashPath<'a> {
    Mpd,
    Time,
    Init { track: Track, name: &'a str },
    Segment { track: Track, run: u64, number: u64 },
}

impl<'a> DashPath<'a> {
    /// `path` without the `/dash/` prefix; `None` for anything else.
    pub fn parse(path: &'a str) -> Option<Self> {
        if path.len() > MAX_PATH_LEN {
            return None;
        }
        match path {
            "index.mpd" => return Some(DashPath::Mpd),
            "time" => return Some(DashPath::Time),
            _ => {}
        }
        let (track, rest) = path.split_once('/')?;
        let track = match track {
            "a" => Track::Audio,
            _ => {
                let n = track.strip_prefix('r')?;
                if n.len() > 2 {
                    return None;
                }
                Track::Video(usize::try_from(decimal(n)?).ok()?)
            }
        };
        if let Some((run, seg)) = rest.split_once('/') {
            let number = seg.strip_prefix("seg")?.strip_suffix(".m4s")?;
            return Some(DashPath::Segment {
                track,
                run: decimal(run)?,
                number: decimal(number)?,
            });
        }
        init_run(rest)?;
        Some(DashPath::Init { track, name: rest })
    }
}

/// The run of an init segment's name, `init-RUN-EPOCH.mp4` → RUN.
pub fn init_run(name: &str) -> Option<u64> {
    let (run, epoch) = name
        .strip_prefix("init-")?
        .strip_suffix(".mp4")?
        .split_once('-')?;
    decimal(epoch)?;
    decimal(run)
}

/// A decimal `u64`: digits only, no sign, no spaces.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn video(id: &str, bw: u64, w: u32, h: u32) -> VideoRepresentation {
        VideoRepresentation {
            id: id.to_string(),
            bandwidth: bw,
            codecs: "avc1.64001f".to_string(),
            width: w,
            height: h,
            frame_rate: 30,
        }
    }

    #[test]
    fn renders_a_low_latency_mpd_byte_for_byte() {
        let v = [
            video("v0", 2_700_000, 1280, 720),
            video("v1", 900_000, 640, 360),
        ];
        let a = AudioRepresentation {
            id: "a".to_string(),
            bandwidth: 128_000,
            codecs: "mp4a.40.2".to_string(),
            sample_rate: 48_000,
            channels: 2,
        };
        // Three 1 s segments, a 1.033 s one (a late keyframe), then 1 s.
        let segs: Vec<TimelineSegment> = [90_000, 90_000, 90_000, 93_000, 90_000]
            .iter()
            .scan((100u64, 180_000u64), |(n, t), &d| {
                let seg = TimelineSegment {
                    number: *n,
                    start: *t,
                    duration: d,
                };
                *n += 1;
                *t += d;
                Some(seg)
            })
            .collect();
        let mpd = Mpd {
            availability_start_ms: 1_764_064_800_000,
            publish_ms: 1_764_064_807_250,
            minimum_update_period_ms: 1000,
            min_buffer_time_ms: 500,
            time_shift_buffer_depth_ms: 6000,
            max_segment_duration_ms: 1034,
            target_latency_ms: 1500,
            availability_time_offset_ms: Some(733),
            period_id: "0",
            period_start_ms: 0,
            presentation_time_offset: 0,
            utc_timing_url: "/dash/time",
            timescale: 90_000,
            initialization: "$RepresentationID$/init.mp4",
            media: "$RepresentationID$/seg$Number$.m4s",
            video: &v,
            audio: Some(&a),
            segments: &segs,
        };
        let timeline = "      <SegmentTemplate timescale=\"90000\" presentationTimeOffset=\"0\" initialization=\"$RepresentationID$/init.mp4\" \
media=\"$RepresentationID$/seg$Number$.m4s\" startNumber=\"100\" availabilityTimeOffset=\"0.733\" availabilityTimeComplete=\"false\">
        <SegmentTimeline>
          <S t=\"180000\" d=\"90000\" r=\"2\"/>
          <S t=\"450000\" d=\"93000\"/>
          <S t=\"543000\" d=\"90000\"/>
        </SegmentTimeline>
      </SegmentTemplate>
";
        let want = [
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\" \
type=\"dynamic\" availabilityStartTime=\"2025-11-25T10:00:00.000Z\" publishTime=\"2025-11-25T10:00:07.250Z\" minimumUpdatePeriod=\"PT1.000S\" \
minBufferTime=\"PT0.500S\" timeShiftBufferDepth=\"PT6.000S\" maxSegmentDuration=\"PT1.034S\">\n",
            "  <ServiceDescription id=\"0\">\n",
            "    <Latency referenceId=\"0\" target=\"1500\" min=\"750\" max=\"3000\"/>\n",
            "    <PlaybackRate min=\"0.96\" max=\"1.04\"/>\n",
            "  </ServiceDescription>\n",
            "  <Period id=\"0\" start=\"PT0S\">\n",
            "    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n",
            timeline,
            "      <Representation id=\"v0\" bandwidth=\"2700000\" codecs=\"avc1.64001f\" width=\"1280\" height=\"720\" frameRate=\"30\" sar=\"1:1\"/>\n",
            "      <Representation id=\"v1\" bandwidth=\"900000\" codecs=\"avc1.64001f\" width=\"640\" height=\"360\" frameRate=\"30\" sar=\"1:1\"/>\n",
            "    </AdaptationSet>\n",
            "    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"und\" segmentAlignment=\"true\" startWithSAP=\"1\">\n",
            "      <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"2\"/>\n",
            timeline,
            "      <Representation id=\"a\" bandwidth=\"128000\" codecs=\"mp4a.40.2\" audioSamplingRate=\"48000\"/>\n",
            "    </AdaptationSet>\n",
            "  </Period>\n",
            "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"/dash/time\"/>\n",
            "</MPD>\n",
        ]
        .concat();
        assert_eq!(mpd.render(), want);
    }

    #[test]
    fn without_low_latency_or_audio_and_with_a_gap() {
        let v = [video("v0", 1_000_000, 640, 360)];
        let segs = [
            TimelineSegment {
                number: 7,
                start: 0,
                duration: 90_000,
            },
            // A restart: the timeline jumps, so the next S states its t.
            TimelineSegment {
                number: 8,
                start: 270_000,
                duration: 90_000,
            },
        ];
        let mpd = Mpd {
            availability_start_ms: 0,
            publish_ms: 0,
            minimum_update_period_ms: 2000,
            min_buffer_time_ms: 1000,
            time_shift_buffer_depth_ms: 6000,
            max_segment_duration_ms: 1000,
            target_latency_ms: 3000,
            availability_time_offset_ms: None,
            period_id: "p&1",
            period_start_ms: 2500,
            presentation_time_offset: 270_000,
            utc_timing_url: "t?a=1&b=\"2\"",
            timescale: 90_000,
            initialization: "i",
            media: "m",
            video: &v,
            audio: None,
            segments: &segs,
        };
        let text = mpd.render();
        assert!(!text.contains("availabilityTimeOffset"), "{text}");
        assert!(
            text.contains(" presentationTimeOffset=\"270000\" "),
            "{text}"
        );
        assert!(!text.contains("contentType=\"audio\""), "{text}");
        assert!(
            text.contains("<S t=\"0\" d=\"90000\"/>\n          <S t=\"270000\" d=\"90000\"/>"),
            "{text}"
        );
        assert!(
            text.contains("value=\"t?a=1&amp;b=&quot;2&quot;\""),
            "{text}"
        );
        assert_eq!(text.matches("<AdaptationSet").count(), 1);
        let empty = Mpd {
            segments: &[],
            video: &[],
            ..mpd
        };
        let text = empty.render();
        assert!(
            text.contains("<Period id=\"p&amp;1\" start=\"PT2.500S\">\n  </Period>"),
            "{text}"
        );
    }

    #[test]
    fn paths_parse_strictly() {
        use DashPath::*;
        assert_eq!(DashPath::parse("index.mpd"), Some(Mpd));
        assert_eq!(DashPath::parse("time"), Some(Time));
        assert_eq!(
            DashPath::parse("r1/init-3593360472-0.mp4"),
            Some(Init {
                track: Track::Video(1),
                name: "init-3593360472-0.mp4"
            })
        );
        assert_eq!(
            DashPath::parse("a/3593360472/seg17.m4s"),
            Some(Segment {
                track: Track::Audio,
                run: 3_593_360_472,
                number: 17
            })
        );
        assert_eq!(
            DashPath::parse("r99/0/seg18446744073709551615.m4s"),
            Some(Segment {
                track: Track::Video(99),
                run: 0,
                number: u64::MAX
            })
        );
        for bad in [
            "",
            "/",
            "index.mpd/",
            "time/x",
            "r0",
            "r0/",
            "r/init-1-0.mp4",
            "r100/init-1-0.mp4",
            "r-1/init-1-0.mp4",
            "x/init-1-0.mp4",
            "r0/../../etc/passwd",
            "r0/init-1-0.mp4/x",
            "r0/init--0.mp4",
            "r0/init-1-.mp4",
            "r0/init-+1-0.mp4",
            "r0/seg1.m4s",
            "r0/1/seg18446744073709551616.m4s",
            "r0/-1/seg1.m4s",
            "r0/1/seg+1.m4s",
            "r0/1/seg 1.m4s",
            "r0/1/seg1.m4s/",
            "r0/1/2/seg1.m4s",
            "r0/1/seg\u{661}.m4s",
        ] {
            assert_eq!(DashPath::parse(bad), None, "{bad:?}");
        }
        let long = alloc::format!("r0/1/seg{}.m4s", "1".repeat(MAX_PATH_LEN));
        assert_eq!(DashPath::parse(&long), None);
        assert_eq!(init_run("init-7-0.mp4"), Some(7));
        assert_eq!(init_run("seg1.m4s"), None);
    }

    #[test]
    fn durations_and_escapes() {
        assert_eq!(duration(0), "PT0.000S");
        assert_eq!(duration(1500), "PT1.500S");
        assert_eq!(duration(61_005), "PT61.005S");
        assert_eq!(attr("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;&#1;");
    }
}
