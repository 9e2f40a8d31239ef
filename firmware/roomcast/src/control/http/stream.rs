//! `/hls/…`: the classic MPEG-TS playlist and segments, LL-HLS (parked in
//! the store until what the client waits for exists), and the viewer
//! password gate in front of all of it.

use super::{Reply, Req, Routed};
use crate::base::lock;
use crate::control::app::App;
use crate::sink::llhls::{LlReply, Want};
use crate::sink::served::Flavour;
use roomcast_media::llhls::BlockingQuery;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a playlist request waits for the first segment at start-up.
const PLAYLIST_WAIT: Duration = Duration::from_secs(10);

/// The stream (`/hls/…`, both flavours, every file, and `/dash/…`) while a
/// viewer password is set: 401 unless the request brings the admin (session or token) or a
/// viewer session. `None` lets the request through.
pub(super) fn viewer_gate(app: &App, req: &Req) -> Option<Reply> {
    let stream = req.url.starts_with("/hls/") || req.url.starts_with("/dash/");
    if !stream || !app.auth.viewer_password_set() {
        return None;
    }
    let viewer = req.cookie(crate::control::auth::VIEWER_COOKIE);
    let admin = req.cookie(crate::control::auth::COOKIE);
    let now = app.clock.monotonic_ns();
    match app.auth.check_viewer(viewer, admin, req.bearer(), now) {
        Ok(()) => None,
        Err(e) => Some(Reply::json(
            401,
            &json!({ "error": e.to_string(), "viewer_login": true }),
        )),
    }
}

/// Every `/hls/` request; `None` for other paths and methods.
///
/// ```text
/// /hls/index.m3u8             multivariant: LL-HLS renditions (TS ones with low latency off)
/// /hls/rN/index.m3u8, files   rendition N's LL-HLS playlist (blocking reload), parts, segments, init
/// /hls/ts/index.m3u8          multivariant: MPEG-TS renditions
/// /hls/ts/rN/index.m3u8, segN.ts   rendition N's TS playlist and segments
/// /hls/keys/ID.key            an AES-128 key (`hls.encryption = "aes-128"`)
/// ```
pub(super) fn route(app: &App, req: &Req) -> Option<Routed> {
    if !req.method.is_read() {
        return None;
    }
    let path = req.path();
    let name = path.strip_prefix("/hls/")?;
    let low_latency = lock(&app.config).get().hls.low_latency;
    let reply = match name {
        "index.m3u8" if low_latency => multivariant(app, "", Flavour::LowLatency),
        "index.m3u8" => multivariant(app, "ts/", Flavour::Ts),
        "ts/index.m3u8" => multivariant(app, "", Flavour::Ts),
        _ if name.starts_with("keys/") => key(app, &name["keys/".len()..]),
        _ => {
            if let Some((r, file)) = name.strip_prefix("ts/").and_then(rendition) {
                match file {
                    "index.m3u8" => playlist(app, r),
                    f => segment(app, r, f),
                }
            } else {
                let (r, file) = rendition(name)?;
                return Some(match ll_want(low_latency, file, req.query())? {
                    Ok(want) => Routed::Parked(r, want),
                    Err(reply) => reply.into(),
                });
            }
        }
    };
    Some(reply.into())
}

/// `rN/FILE` → (N, FILE).
fn rendition(name: &str) -> Option<(usize, &str)> {
    let (dir, file) = name.strip_prefix('r')?.split_once('/')?;
    if dir.is_empty() || dir.len() > 2 || !dir.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((dir.parse().ok()?, file))
}

/// Requests the LL-HLS store answers (possibly later): the low-latency
/// playlist and its files. `None` for everything else; `Err` for a bad
/// blocking-reload query (400).
fn ll_want(low_latency: bool, name: &str, query: &str) -> Option<Result<Want, Reply>> {
    if name == "index.m3u8" {
        return low_latency.then(|| blocking_query(query));
    }
    let is_ll_file = (name.starts_with("part") || name.starts_with("seg"))
        && name.ends_with(".m4s")
        || name.starts_with("init-") && name.ends_with(".mp4");
    (is_ll_file && !name.contains('/')).then(|| Ok(Want::File(name.to_string())))
}

/// A multivariant playlist listing every rendition at `{prefix}rN/index.m3u8`,
/// waiting at start-up until the renditions' codecs are known.
fn multivariant(app: &App, prefix: &str, flavour: Flavour) -> Reply {
    let deadline = Instant::now() + PLAYLIST_WAIT;
    loop {
        if let Some(text) = app
            .renditions
            .multivariant(flavour, |i| format!("{prefix}r{i}/index.m3u8"))
        {
            return Reply::new(
                200,
                "application/vnd.apple.mpegurl",
                Arc::<[u8]>::from(text.as_bytes()),
            )
            // Changes only with the ladder and the measured bitrates.
            .header("Cache-Control", "public, max-age=2")
            .header("Access-Control-Allow-Origin", "*");
        }
        if Instant::now() >= deadline {
            return not_started();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn not_started() -> Reply {
    Reply::error(503, "the stream has not started yet; retry in a second")
        .header("Retry-After", "1")
        .header("Cache-Control", "no-store")
}

/// Parses `_HLS_msn`, `_HLS_part` and `_HLS_skip` (rfc8216bis §6.2.5).
fn blocking_query(query: &str) -> Result<Want, Reply> {
    let BlockingQuery { msn, part, skip } =
        BlockingQuery::parse(query).map_err(|e| Reply::error(400, &e.to_string()))?;
    Ok(Want::Playlist { msn, part, skip })
}

/// An answer of the LL-HLS store as HTTP.
///
/// Caching, for a proxy or CDN in front (README "A large audience"): parts,
/// segments and init segments are immutable; a blocking playlist reload is
/// keyed by its query and always holds what it waited for, so a cache may
/// keep it for a few seconds and collapse the many identical requests of a
/// part into one; a plain playlist request lives one second; errors are
/// never stored.
pub(super) fn ll_reply(reply: LlReply, blocking: bool) -> Reply {
    match reply {
        LlReply::Playlist(text) => Reply::new(
            200,
            "application/vnd.apple.mpegurl",
            Arc::<[u8]>::from(text.as_bytes()),
        )
        .header(
            "Cache-Control",
            if blocking {
                "public, max-age=6"
            } else {
                "public, max-age=1"
            },
        ),
        // Names never repeat (counters start from the wall clock), so a
        // part, segment or init segment never changes once published.
        LlReply::File {
            content_type,
            bytes,
        } => Reply::new(200, content_type, bytes)
            .header("Cache-Control", "public, max-age=31536000, immutable"),
        LlReply::BadRequest(why) => Reply::error(400, &why).header("Cache-Control", "no-store"),
        LlReply::NotFound => Reply::error(
            404,
            "no such part or segment (it may have left the live window)",
        )
        .header("Cache-Control", "no-store"),
        LlReply::Unavailable => Reply::error(503, "not available yet; retry")
            .header("Retry-After", "1")
            .header("Cache-Control", "no-store"),
    }
    .header("Access-Control-Allow-Origin", "*")
}

fn playlist(app: &App, rendition: usize) -> Reply {
    let Some(r) = app.renditions.get(rendition) else {
        return no_rendition(rendition);
    };
    match r.hls.playlist(PLAYLIST_WAIT) {
        Some(text) => Reply::new(
            200,
            "application/vnd.apple.mpegurl",
            Arc::<[u8]>::from(text.as_bytes()),
        )
        // A cache may hold it for a second: a segment lasts longer.
        .header("Cache-Control", "public, max-age=1")
        .header("Access-Control-Allow-Origin", "*"),
        None => not_started(),
    }
}

/// An AES-128 key, behind the same viewer gate as the stream. Never stored
/// by a shared cache: a CDN in front must send key requests to the box,
/// which checks each viewer.
fn key(app: &App, file: &str) -> Reply {
    let id = file
        .strip_suffix(".key")
        .filter(|id| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse::<u64>().ok());
    match id.and_then(|id| app.renditions.key(id)) {
        Some(key) => Reply::new(200, "application/octet-stream", Arc::<[u8]>::from(&key[..]))
            .header("Cache-Control", "private, no-store"),
        None => Reply::error(404, "no such key (it may have left the live window)")
            .header("Cache-Control", "no-store"),
    }
}

fn no_rendition(rendition: usize) -> Reply {
    Reply::error(404, &format!("no rendition {rendition} in the ladder"))
        .header("Cache-Control", "no-store")
}

fn segment(app: &App, rendition: usize, name: &str) -> Reply {
    let Some(r) = app.renditions.get(rendition) else {
        return no_rendition(rendition);
    };
    let seq = name
        .strip_prefix("seg")
        .and_then(|s| s.strip_suffix(".ts"))
        .and_then(|s| s.parse::<u64>().ok());
    match seq.and_then(|s| r.hls.segment(s)) {
        Some(bytes) => Reply::new(200, "video/mp2t", bytes)
            // Sequence numbers never repeat (they start from the wall clock),
            // so a segment's bytes never change once published.
            .header("Cache-Control", "public, max-age=31536000, immutable")
            .header("Access-Control-Allow-Origin", "*"),
        None => Reply::error(
            404,
            &format!("no such segment: {name} (it may have left the live window)"),
        )
        .header("Cache-Control", "no-store"),
    }
}
