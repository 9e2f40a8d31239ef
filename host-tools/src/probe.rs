//! `roomcast-host probe`: read a box's status, then watch its live HLS
//! playlist for a while, download every segment it lists, check each is
//! whole MPEG-TS, and measure how far behind real time the live edge is.
//!
//! Live-edge latency = local wall clock when the playlist arrived −
//! (`EXT-X-PROGRAM-DATE-TIME` of the newest segment + its `EXTINF`). It is
//! measured on the first playlist load that shows each new newest segment, so
//! it overstates the true figure by at most one poll interval. The box stamps
//! segments with its own clock, so the figure is only meaningful when both
//! clocks agree (the same machine, or both synchronised by NTP).

use crate::http::{self, HttpError, Response};
use crate::playlist::{is_multivariant, parse_multivariant, Playlist, PlaylistError};
use crate::ts_check::{check_segment, TsError};
use crate::url::{HttpUrl, UrlError};
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to probe and for how long.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The box, e.g. `http://192.168.1.20:8080`.
    pub base: HttpUrl,
    /// How long to watch the playlist.
    pub watch: Duration,
    /// Longest one HTTP request may take.
    pub request_timeout: Duration,
    /// API token for the box's /api/status (`ROOMCAST_TOKEN`).
    pub token: Option<String>,
}

impl ProbeOptions {
    pub fn new(base: HttpUrl, watch: Duration) -> Self {
        ProbeOptions {
            base,
            watch,
            // Above the box's 10 s wait for the first segment at start-up.
            request_timeout: Duration::from_secs(12),
            token: None,
        }
    }
}

/// Why the probe failed; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GET {url}: {source}")]
    Http { url: String, source: HttpError },
    #[error("GET {url}: HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: not a status object: {reason}")]
    StatusJson { url: String, reason: String },
    #[error("{url}: bad playlist: {source}")]
    Playlist { url: String, source: PlaylistError },
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("segment {sequence} ({url}) is not whole MPEG-TS: {source}")]
    Ts {
        sequence: u64,
        url: String,
        source: TsError,
    },
    /// The playlist broke a live-update rule, stalled or lacks what the
    /// latency figure needs.
    #[error("{0}")]
    Live(String),
}

/// One checked segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentReport {
    pub sequence: u64,
    pub duration: Duration,
    pub size: usize,
    pub bitrate_kbps: f64,
    /// Live-edge latency of the playlist load that first listed the segment.
    pub live_edge_latency_s: f64,
    pub packets: usize,
}

/// What the probe saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub segments: Vec<SegmentReport>,
    pub playlist_loads: usize,
    /// One live-edge latency per playlist load that showed a new newest segment.
    pub latencies_s: Vec<f64>,
}

/// Local wall clock, Unix milliseconds.
pub fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn fetch_as(url: &HttpUrl, timeout: Duration, token: Option<&str>) -> Result<Response, ProbeError> {
    http::get_with_token(url, timeout, token).map_err(|source| ProbeError::Http {
        url: url.to_string(),
        source,
    })
}

fn fetch(url: &HttpUrl, timeout: Duration) -> Result<Response, ProbeError> {
    http::get(url, timeout).map_err(|source| ProbeError::Http {
        url: url.to_string(),
        source,
    })
}

fn playlist_error(url: &HttpUrl, source: PlaylistError) -> ProbeError {
    ProbeError::Playlist {
        url: url.to_string(),
        source,
    }
}

/// A playlist response's body as text (playlists are UTF-8, §4).
fn playlist_text<'a>(url: &HttpUrl, r: &'a Response) -> Result<&'a str, ProbeError> {
    std::str::from_utf8(&r.body).map_err(|e| {
        playlist_error(
            url,
            PlaylistError {
                line: 0,
                reason: format!("not UTF-8: {e}"),
            },
        )
    })
}

fn expect_ok(url: &HttpUrl, r: &Response) -> Result<(), ProbeError> {
    if r.status == 200 {
        return Ok(());
    }
    // The box explains errors as {"error": "..."}; show that if present.
    let detail = serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    Err(ProbeError::Status {
        url: url.to_string(),
        status: r.status,
        detail,
    })
}

/// Reads `/hls/ts/index.m3u8`, reports its renditions and returns the
/// first (top) one's media playlist URL; a box that serves a media playlist
/// there directly (before the ladder) is watched as it is.
fn top_rendition(opts: &ProbeOptions, say: &mut dyn FnMut(String)) -> Result<HttpUrl, ProbeError> {
    let url = opts.base.with_api_path("/hls/ts/index.m3u8");
    let deadline = Instant::now() + opts.watch;
    let r = loop {
        let r = fetch(&url, opts.request_timeout)?;
        if r.status != 503 || Instant::now() >= deadline {
            break r;
        }
        // The stream has not produced its first segment yet.
        std::thread::sleep(Duration::from_millis(500));
    };
    expect_ok(&url, &r)?;
    let bad = |source| playlist_error(&url, source);
    let text = playlist_text(&url, &r)?;
    if !is_multivariant(text) {
        return Ok(url);
    }
    let variants = parse_multivariant(text).map_err(bad)?;
    for v in &variants {
        let size = v.resolution.map_or("?".into(), |(w, h)| format!("{w}x{h}"));
        let avg = v
            .average_bandwidth
            .map_or(String::new(), |a| format!(", average {} kbit/s", a / 1000));
        say(format!(
            "rendition {}: {size}, peak {} kbit/s{avg}, codecs {}",
            v.uri,
            v.bandwidth / 1000,
            v.codecs.as_deref().unwrap_or("?")
        ));
    }
    url.join(&variants[0].uri).map_err(|e| {
        bad(PlaylistError {
            line: 0,
            reason: format!("variant URI {:?}: {e}", variants[0].uri),
        })
    })
}

/// Runs the probe, writing a human-readable report to `out` as it goes.
pub fn probe(opts: &ProbeOptions, out: &mut dyn Write) -> Result<Report, ProbeError> {
    let mut say = |line: String| {
        // The report is best effort; a closed stdout must not hide the verdict.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let timeout = opts.request_timeout;

    // 1. Status.
    let status_url = opts.base.with_api_path("/api/status");
    let r = fetch_as(&status_url, timeout, opts.token.as_deref())?;
    expect_ok(&status_url, &r)?;
    let status: Value = serde_json::from_slice(&r.body).map_err(|e| ProbeError::StatusJson {
        url: status_url.to_string(),
        reason: e.to_string(),
    })?;
    if !status.is_object() {
        return Err(ProbeError::StatusJson {
            url: status_url.to_string(),
            reason: "the body is JSON but not an object".into(),
        });
    }
    for line in describe_status(&status) {
        say(line);
    }

    // 2. The MPEG-TS multivariant playlist: the renditions, then the top
    //    one's media playlist is the one watched.
    let playlist_url = top_rendition(opts, &mut say)?;
    say(format!(
        "watching {playlist_url} for {} s",
        opts.watch.as_secs_f64()
    ));
    let started = Instant::now();
    let deadline = started + opts.watch;
    let mut report = Report::default();
    let mut previous: Option<Playlist> = None;
    let mut newest_seen: Option<u64> = None;
    let mut advanced = false;
    let mut noted_tags: Vec<String> = Vec::new();
    let mut poll = Duration::from_millis(250);
    loop {
        let r = fetch(&playlist_url, timeout)?;
        let now_ms = now_unix_ms();
        report.playlist_loads += 1;
        if r.status == 503 && previous.is_none() && Instant::now() < deadline {
            // The stream has not produced its first segment yet.
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        expect_ok(&playlist_url, &r)?;
        let bad = |source| playlist_error(&playlist_url, source);
        let text = playlist_text(&playlist_url, &r)?;
        let pl = Playlist::parse(text).map_err(bad)?;
        if previous.is_none() {
            say(format!(
                "playlist: version {}, target duration {} s, media sequence {}, {} segments",
                pl.version,
                pl.target_duration_s,
                pl.media_sequence,
                pl.segments.len()
            ));
            // Poll often enough to see each new segment soon after it appears.
            poll = (Duration::from_secs(pl.target_duration_s) / 4)
                .clamp(Duration::from_millis(100), Duration::from_millis(500));
        }
        let fresh: Vec<String> = pl
            .unknown_tags
            .iter()
            .filter(|t| !noted_tags.contains(t))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            say(format!("note: ignoring tags {}", fresh.join(", ")));
            noted_tags.extend(fresh);
        }
        if let Some(prev) = &previous {
            check_live_update(prev, &pl)?;
        }

        if let Some(newest) = pl.segments.last() {
            let index = pl.segments.len() - 1;
            let Some(start_ms) = pl.date_time_ms(index) else {
                return Err(ProbeError::Live(format!(
                    "segment {} has no EXT-X-PROGRAM-DATE-TIME, so latency cannot be measured",
                    newest.sequence
                )));
            };
            let edge_ms = start_ms
                .saturating_add(i64::try_from(newest.duration.as_millis()).unwrap_or(i64::MAX));
            let latency_s = now_ms.saturating_sub(edge_ms) as f64 / 1000.0;
            if let Some(seen) = newest_seen {
                if newest.sequence < seen {
                    return Err(ProbeError::Live(format!(
                        "the newest segment went back from {seen} to {}",
                        newest.sequence
                    )));
                }
                if pl.media_sequence > seen + 1 {
                    return Err(ProbeError::Live(format!(
                        "segments {}..{} left the playlist before they could be fetched",
                        seen + 1,
                        pl.media_sequence - 1
                    )));
                }
            }
            let is_new = |seq: u64| newest_seen.is_none_or(|seen| seq > seen);
            if is_new(newest.sequence) {
                if newest_seen.is_some() {
                    advanced = true;
                }
                report.latencies_s.push(latency_s);
                for seg in pl.segments.iter().filter(|s| is_new(s.sequence)) {
                    let seg_url = playlist_url.join(&seg.uri)?;
                    let r = fetch(&seg_url, timeout)?;
                    expect_ok(&seg_url, &r)?;
                    let ts = check_segment(&r.body).map_err(|source| ProbeError::Ts {
                        sequence: seg.sequence,
                        url: seg_url.to_string(),
                        source,
                    })?;
                    let secs = seg.duration.as_secs_f64();
                    let bitrate_kbps = if secs > 0.0 {
                        r.body.len() as f64 * 8.0 / secs / 1000.0
                    } else {
                        0.0
                    };
                    let rep = SegmentReport {
                        sequence: seg.sequence,
                        duration: seg.duration,
                        size: r.body.len(),
                        bitrate_kbps,
                        live_edge_latency_s: latency_s,
                        packets: ts.packets,
                    };
                    say(format!(
                        "segment {}: {:.3} s, {} bytes, {:.1} kbit/s, live edge {:.3} s behind, TS ok ({} packets, {} PAT)",
                        rep.sequence,
                        secs,
                        rep.size,
                        rep.bitrate_kbps,
                        rep.live_edge_latency_s,
                        ts.packets,
                        ts.pats
                    ));
                    report.segments.push(rep);
                }
                newest_seen = Some(newest.sequence);
            }
        }
        let ended = pl.end_list;
        let target_s = pl.target_duration_s;
        previous = Some(pl);
        if ended {
            say("playlist ended (EXT-X-ENDLIST)".into());
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            if report.segments.is_empty() {
                return Err(ProbeError::Live(format!(
                    "the playlist listed no segments in {} s",
                    opts.watch.as_secs_f64()
                )));
            }
            // A live stream must grow; allow two target durations for it.
            if !advanced && opts.watch >= Duration::from_secs(2 * target_s.max(1)) {
                return Err(ProbeError::Live(format!(
                    "no new segment appeared in {:.1} s (target duration {target_s} s): the stream is stalled",
                    now.duration_since(started).as_secs_f64()
                )));
            }
            break;
        }
        std::thread::sleep(poll.min(deadline - now));
    }

    let l = &report.latencies_s;
    let min = l.iter().copied().fold(f64::INFINITY, f64::min);
    let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = l.iter().sum::<f64>() / l.len().max(1) as f64;
    say(format!(
        "ok: {} segments checked, {} playlist loads in {:.1} s; live-edge latency min {min:.3} s, mean {mean:.3} s, max {max:.3} s",
        report.segments.len(),
        report.playlist_loads,
        started.elapsed().as_secs_f64()
    ));
    Ok(report)
}

/// RFC 8216 §6.2.1/§6.2.2 rules between two loads of a live playlist.
fn check_live_update(prev: &Playlist, cur: &Playlist) -> Result<(), ProbeError> {
    let live = |m: String| Err(ProbeError::Live(m));
    if cur.media_sequence < prev.media_sequence {
        return live(format!(
            "EXT-X-MEDIA-SEQUENCE went back from {} to {}",
            prev.media_sequence, cur.media_sequence
        ));
    }
    if cur.discontinuity_sequence < prev.discontinuity_sequence {
        return live(format!(
            "EXT-X-DISCONTINUITY-SEQUENCE went back from {} to {}",
            prev.discontinuity_sequence, cur.discontinuity_sequence
        ));
    }
    if cur.target_duration_s != prev.target_duration_s && cur.media_sequence <= prev_last(prev) {
        return live(format!(
            "EXT-X-TARGETDURATION changed from {} to {} within one playlist",
            prev.target_duration_s, cur.target_duration_s
        ));
    }
    for p in &prev.segments {
        if let Some(c) = cur.segments.iter().find(|c| c.sequence == p.sequence) {
            if c.uri != p.uri || c.duration != p.duration {
                return live(format!(
                    "segment {} changed between playlist loads ({} {:?} -> {} {:?})",
                    p.sequence, p.uri, p.duration, c.uri, c.duration
                ));
            }
        }
    }
    Ok(())
}

/// Sequence number of `p`'s last segment (or the media sequence if empty).
fn prev_last(p: &Playlist) -> u64 {
    p.segments.last().map_or(p.media_sequence, |s| s.sequence)
}

/// Human-readable lines for `/api/status`. Unknown or missing fields show
/// as `?`: the status is reported, not trusted.
pub fn describe_status(v: &Value) -> Vec<String> {
    let f = |path: &[&str]| -> String {
        let mut cur = v;
        for p in path {
            match cur.get(p) {
                Some(next) => cur = next,
                None => return "?".into(),
            }
        }
        match cur {
            Value::String(s) => s.clone(),
            Value::Null => "?".into(),
            other => other.to_string(),
        }
    };
    let fps = v
        .pointer("/measured/fps")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    // The box has no single state field yet; "streaming" means frames are
    // being encoded right now.
    let state = match v.get("state").and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None if fps > 0.0 => "streaming".into(),
        None => "idle (no frames encoded in the last 2 s)".into(),
    };
    let mut lines = vec![
        format!(
            "status: state {state}, {} fps, {} kbit/s, {} frames dropped ({} at capture); source {} {}x{}@{}, encoder {} ({} restarts), version {}, up {} s",
            f(&["measured", "fps"]),
            f(&["measured", "bitrate_kbps"]),
            f(&["frames", "dropped"]),
            f(&["frames", "dropped_at_capture"]),
            f(&["source", "kind"]),
            f(&["source", "width"]),
            f(&["source", "height"]),
            f(&["source", "fps"]),
            f(&["encoder", "kind"]),
            f(&["encoder", "restarts"]),
            f(&["version"]),
            f(&["uptime_s"]),
        ),
    ];
    match v.get("sinks").and_then(Value::as_array) {
        Some(sinks) if !sinks.is_empty() => {
            for s in sinks {
                let g = |k: &str| match s.get(k) {
                    Some(Value::String(x)) => x.clone(),
                    Some(Value::Null) | None => "?".into(),
                    Some(x) => x.to_string(),
                };
                let mut line = format!(
                    "  sink {}: {}, {} delivered, {} dropped, {} queued",
                    g("name"),
                    g("state"),
                    g("delivered"),
                    g("dropped"),
                    g("queued")
                );
                if s.get("segments").is_some() {
                    line.push_str(&format!(", {} segments", g("segments")));
                }
                lines.push(line);
            }
        }
        _ => lines.push("  sinks: none".into()),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_lines_from_the_box_and_from_junk() {
        let v: Value = serde_json::from_str(
            r#"{"encoder":{"errors":0,"kind":"openh264","restarts":0},"frames":{"captured":91,"dropped":0,"dropped_at_capture":0,"encoded":91},"measured":{"bitrate_kbps":170.6,"fps":30.0},"sinks":[{"delivered":91,"dropped":0,"name":"hls","queued":0,"segments":3,"state":"running"}],"source":{"fps":30,"height":240,"kind":"test","width":320},"uptime_s":3.0,"version":"0.1.0"}"#,
        )
        .unwrap();
        let l = describe_status(&v);
        assert_eq!(
            l[0],
            "status: state streaming, 30.0 fps, 170.6 kbit/s, 0 frames dropped (0 at capture); source test 320x240@30, encoder openh264 (0 restarts), version 0.1.0, up 3.0 s"
        );
        assert_eq!(
            l[1],
            "  sink hls: running, 91 delivered, 0 dropped, 0 queued, 3 segments"
        );
        let junk = describe_status(&serde_json::json!({"measured": {"fps": "x"}, "sinks": 3}));
        assert!(junk[0].starts_with("status: state idle"), "{}", junk[0]);
        assert!(junk[0].contains("? kbit/s"));
        assert_eq!(junk[1], "  sinks: none");
    }

    fn pl(text: &str) -> Playlist {
        Playlist::parse(text).unwrap()
    }

    #[test]
    fn live_update_rules() {
        let a = pl("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:1.000,\nseg5.ts\n#EXTINF:1.000,\nseg6.ts\n");
        let b = pl("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:6\n#EXTINF:1.000,\nseg6.ts\n#EXTINF:1.000,\nseg7.ts\n");
        assert!(check_live_update(&a, &b).is_ok());
        let e = check_live_update(&b, &a).unwrap_err().to_string();
        assert!(e.contains("went back from 6 to 5"), "{e}");
        let c = pl("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:6\n#EXTINF:0.900,\nseg6.ts\n");
        let e = check_live_update(&a, &c).unwrap_err().to_string();
        assert!(e.contains("segment 6 changed"), "{e}");
        let d = pl("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:6\n#EXTINF:1.000,\nseg6.ts\n");
        let e = check_live_update(&a, &d).unwrap_err().to_string();
        assert!(e.contains("TARGETDURATION changed"), "{e}");
        // A fresh playlist after the old one's segments (settings changed) may
        // have a new target duration.
        let f = pl("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.000,\nseg7.ts\n");
        assert!(check_live_update(&a, &f).is_ok());
    }

    #[test]
    fn unreachable_box_is_one_line_error() {
        // Bind then drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mut opts = ProbeOptions::new(base, Duration::from_secs(1));
        opts.request_timeout = Duration::from_secs(2);
        let mut out = Vec::new();
        let e = probe(&opts, &mut out).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "GET http://127.0.0.1:{port}/api/status: cannot connect"
            )),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(now_unix_ms() > 1_577_836_800_000);
    }
}
