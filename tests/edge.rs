//! The live edge of an LL-HLS playlist, as a player following it sees it:
//! shared by the LL-HLS tests and the HTTP load bench.

use crate::{http, parse_pdt_ms};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the live edge of an LL-HLS playlist is.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Media sequence number of the segment being filled.
    pub msn: u64,
    /// Parts it has so far.
    pub parts: u32,
    /// URI of its newest part.
    pub last_part: String,
    /// Wall-clock end of that part's media: PROGRAM-DATE-TIME of its segment
    /// plus the durations of its parts, in Unix ms.
    pub last_part_end_ms: f64,
}

/// An attribute of an `#EXT-X-…` tag line, quotes removed.
pub fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    Some(match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split(',').next()?,
    })
}

/// Parses just enough of the playlist to find the live edge.
pub fn edge(playlist: &str) -> Option<Edge> {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .parse()
        .ok()?;
    let skipped: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:"))
        .and_then(|l| attr(l, "SKIPPED-SEGMENTS")?.parse().ok())
        .unwrap_or(0);
    msn += skipped;
    let (mut parts, mut last_part, mut pdt_ms, mut end_ms) = (0, String::new(), 0.0, 0.0);
    for line in playlist.lines() {
        if let Some(t) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt_ms = parse_pdt_ms(t)?;
            end_ms = pdt_ms;
        } else if let Some(p) = line.strip_prefix("#EXT-X-PART:") {
            parts += 1;
            last_part = attr(p, "URI")?.to_string();
            end_ms += attr(p, "DURATION")?.parse::<f64>().ok()? * 1000.0;
        } else if !line.is_empty() && !line.starts_with('#') {
            // A complete segment: the next one is the open one.
            msn += 1;
            parts = 0;
            let _ = pdt_ms;
        }
    }
    (!last_part.is_empty()).then_some(Edge {
        msn,
        parts,
        last_part,
        last_part_end_ms: end_ms,
    })
}

/// Wall-clock time, Unix ms (the playlist's PROGRAM-DATE-TIME clock).
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// One client following the live edge until `stop`, as LL-HLS players do
/// (blocking playlist reload, then the new part): returns the ages of the
/// blocked playlists it got (capture of the part's last frame → received,
/// ms), the parts it fetched and its errors.
pub fn follow(port: u16, stop: &AtomicBool) -> (Vec<f64>, u32, Vec<String>) {
    let (mut ages, mut parts, mut errors) = (Vec::new(), 0, Vec::new());
    let mut e = http(port, "GET", "/hls/r0/index.m3u8", None)
        .ok()
        .and_then(|r| edge(&r.text()));
    while !stop.load(Ordering::Relaxed) {
        let Some(cur) = e.clone() else {
            errors.push("no live edge".to_string());
            std::thread::sleep(Duration::from_millis(200));
            e = http(port, "GET", "/hls/r0/index.m3u8", None)
                .ok()
                .and_then(|r| edge(&r.text()));
            continue;
        };
        let path = format!(
            "/hls/r0/index.m3u8?_HLS_msn={}&_HLS_part={}",
            cur.msn, cur.parts
        );
        match http(port, "GET", &path, None) {
            Ok(r) if r.status == 200 => {
                let got = now_ms();
                e = edge(&r.text());
                if let Some(n) = &e {
                    ages.push(got - (n.last_part_end_ms - 1000.0 / 30.0));
                    match http(port, "GET", &format!("/hls/r0/{}", n.last_part), None) {
                        Ok(p) if p.status == 200 => parts += 1,
                        Ok(p) => errors.push(format!("part: {}", p.status)),
                        Err(err) => errors.push(err.to_string()),
                    }
                }
            }
            Ok(r) => {
                errors.push(format!("playlist: {}", r.status));
                e = None;
            }
            Err(err) => {
                errors.push(err.to_string());
                e = None;
            }
        }
    }
    (ages, parts, errors)
}
