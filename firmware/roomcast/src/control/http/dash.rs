//! `/dash/…`: MPEG-DASH over the same pictures and sound as HLS, behind
//! the same viewer gate ([`super::stream::viewer_gate`]).
//!
//! ```text
//! /dash/index.mpd          the live MPD (SegmentTimeline, $Number$)
//! /dash/time               the box's clock, ISO 8601 (the MPD's UTCTiming)
//! /dash/rN/init-….mp4      rendition N's init segment; rN/RUN/segM.m4s its segments
//! /dash/a/init-….mp4       the sound's init segment;   a/RUN/segM.m4s its segments
//! ```
//!
//! While HLS is encrypted DASH answers 404: it would hand out the same
//! pictures in the clear.

use super::{Reply, Req};
use crate::base::lock;
use crate::control::app::App;
use roomcast_media::dash::{DashPath, Track};
use roomcast_media::hls::format_program_date_time;
use std::sync::Arc;

/// Every `/dash/` request; `None` for other paths and methods.
pub(super) fn route(app: &App, req: &Req) -> Option<Reply> {
    if !req.method.is_read() {
        return None;
    }
    let name = req.path().strip_prefix("/dash/")?;
    if !app.renditions.dash_on() {
        return Some(
            Reply::error(
                404,
                "DASH is off while HLS is encrypted (hls.encryption): it would serve the stream in the clear",
            )
            .header("Cache-Control", "no-store"),
        );
    }
    let reply = match DashPath::parse(name) {
        Some(DashPath::Mpd) => mpd(app),
        // Clients sync to this clock; never from a cache.
        Some(DashPath::Time) => Reply::new(
            200,
            "text/plain; charset=utf-8",
            Arc::<[u8]>::from(format_program_date_time(app.clock.wall_unix_ms()).as_bytes()),
        )
        .header("Cache-Control", "no-store"),
        Some(file) => match app.renditions.dash_file(&file) {
            // Names never repeat (counters start from the wall clock).
            Some(bytes) => Reply::new(200, content_type(&file), bytes)
                .header("Cache-Control", "public, max-age=31536000, immutable"),
            None => not_found(),
        },
        None => not_found(),
    };
    Some(reply.header("Access-Control-Allow-Origin", "*"))
}

fn mpd(app: &App) -> Reply {
    let cfg = lock(&app.config).clone();
    match app.renditions.mpd(&cfg) {
        Some(text) => Reply::new(
            200,
            "application/dash+xml",
            Arc::<[u8]>::from(text.as_bytes()),
        )
        // A new one every segment: a cache may share it for a second.
        .header("Cache-Control", "public, max-age=1"),
        None => Reply::error(503, "the stream has not started yet; retry in a second")
            .header("Retry-After", "1")
            .header("Cache-Control", "no-store"),
    }
}

fn content_type(file: &DashPath<'_>) -> &'static str {
    match file {
        DashPath::Segment { .. } => "video/iso.segment",
        DashPath::Init {
            track: Track::Audio,
            ..
        } => "audio/mp4",
        _ => "video/mp4",
    }
}

fn not_found() -> Reply {
    Reply::error(404, "no such DASH file (it may have left the live window)")
        .header("Cache-Control", "no-store")
}
