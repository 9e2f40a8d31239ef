//! `/hls/…`: the classic MPEG-TS playlist and segments, LL-HLS (parked in
//! the store until what the client waits for exists), and the viewer
//! password gate in front of all of it.

use super::{Reply, Req, Routed};
use crate::base::lock;
use crate::control::app::App;
use crate::sink::llhls::{LlReply, Want};
use roomcast_media::llhls::BlockingQuery;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long a playlist request waits for the first segment at start-up.
const PLAYLIST_WAIT: Duration = Duration::from_secs(10);

/// The stream (`/hls/…`, both flavours, every file) while a viewer password
/// is set: 401 unless the request brings the admin (session or token) or a
/// viewer session. `None` lets the request through.
pub(super) fn viewer_gate(app: &App, req: &Req) -> Option<Reply> {
    if !req.url.starts_with("/hls/") || !app.auth.viewer_password_set() {
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
pub(super) fn route(app: &App, req: &Req) -> Option<Routed> {
    if !req.method.is_read() {
        return None;
    }
    let path = req.path();
    let name = path.strip_prefix("/hls/")?;
    if let Some(want) = ll_want(app, name, req.query()) {
        return Some(match want {
            Ok(want) => Routed::Parked(want),
            Err(reply) => reply.into(),
        });
    }
    // The classic MPEG-TS playlist, for players without LL-HLS or fMP4;
    // also at /hls/index.m3u8 when low latency is off.
    let reply = match name {
        "ts/index.m3u8" | "index.m3u8" => playlist(app),
        n if n.starts_with("ts/") => segment(app, &n[3..]),
        n if n.starts_with("seg") && n.ends_with(".ts") => segment(app, n),
        _ => return None,
    };
    Some(reply.into())
}

/// Requests the LL-HLS store answers (possibly later): the low-latency
/// playlist and its files. `None` for everything else; `Err` for a bad
/// blocking-reload query (400).
fn ll_want(app: &App, name: &str, query: &str) -> Option<Result<Want, Reply>> {
    if name == "index.m3u8" {
        if !lock(&app.config).get().hls.low_latency {
            return None;
        }
        return Some(blocking_query(query));
    }
    let is_ll_file = (name.starts_with("part") || name.starts_with("seg"))
        && name.ends_with(".m4s")
        || name.starts_with("init-") && name.ends_with(".mp4");
    (is_ll_file && !name.contains('/')).then(|| Ok(Want::File(name.to_string())))
}

/// Parses `_HLS_msn`, `_HLS_part` and `_HLS_skip` (rfc8216bis §6.2.5).
fn blocking_query(query: &str) -> Result<Want, Reply> {
    let BlockingQuery { msn, part, skip } =
        BlockingQuery::parse(query).map_err(|e| Reply::error(400, &e.to_string()))?;
    Ok(Want::Playlist { msn, part, skip })
}

/// An answer of the LL-HLS store as HTTP.
pub(super) fn ll_reply(reply: LlReply) -> Reply {
    match reply {
        LlReply::Playlist(text) => Reply::new(
            200,
            "application/vnd.apple.mpegurl",
            Arc::<[u8]>::from(text.as_bytes()),
        )
        .header("Cache-Control", "no-cache"),
        // Names never repeat (counters start from the wall clock), so a
        // part, segment or init segment never changes once published.
        LlReply::File {
            content_type,
            bytes,
        } => Reply::new(200, content_type, bytes)
            .header("Cache-Control", "public, max-age=31536000, immutable"),
        LlReply::BadRequest(why) => Reply::error(400, &why),
        LlReply::NotFound => Reply::error(
            404,
            "no such part or segment (it may have left the live window)",
        ),
        LlReply::Unavailable => {
            Reply::error(503, "not available yet; retry").header("Retry-After", "1")
        }
    }
    .header("Access-Control-Allow-Origin", "*")
}

fn playlist(app: &App) -> Reply {
    match app.hls.playlist(PLAYLIST_WAIT) {
        Some(text) => Reply::new(
            200,
            "application/vnd.apple.mpegurl",
            Arc::<[u8]>::from(text.as_bytes()),
        )
        .header("Cache-Control", "no-cache")
        .header("Access-Control-Allow-Origin", "*"),
        None => Reply::error(503, "the stream has not started yet; retry in a second")
            .header("Retry-After", "1"),
    }
}

fn segment(app: &App, name: &str) -> Reply {
    let seq = name
        .strip_prefix("seg")
        .and_then(|s| s.strip_suffix(".ts"))
        .and_then(|s| s.parse::<u64>().ok());
    match seq.and_then(|s| app.hls.segment(s)) {
        Some(bytes) => Reply::new(200, "video/mp2t", bytes)
            // Sequence numbers never repeat (they start from the wall clock),
            // so a segment's bytes never change once published.
            .header("Cache-Control", "public, max-age=60")
            .header("Access-Control-Allow-Origin", "*"),
        None => Reply::error(
            404,
            &format!("no such segment: {name} (it may have left the live window)"),
        ),
    }
}
