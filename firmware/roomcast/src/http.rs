//! The HTTP server (tiny_http): the web page, the live HLS stream, the JSON
//! API and Prometheus metrics. A fixed pool of worker threads answers
//! requests; each request is parsed and bounded before anything acts on it.

use crate::app::{App, ApplyError};
use crate::web;
use serde_json::{json, Value};
use std::io::{Cursor, Read};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// Largest request body accepted (a configuration is a few hundred bytes).
const MAX_BODY: u64 = 64 * 1024;
/// Worker threads; a playlist request may wait for the first segment.
const WORKERS: usize = 8;
/// How long a playlist request waits for the first segment at start-up.
const PLAYLIST_WAIT: Duration = Duration::from_secs(10);

/// Serves until the server is dropped; returns the worker handles.
pub fn serve(server: Arc<Server>, app: Arc<App>) -> Vec<std::thread::JoinHandle<()>> {
    (0..WORKERS)
        .map(|i| {
            let (server, app) = (server.clone(), app.clone());
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while let Ok(mut req) = server.recv() {
                        let reply = handle(&app, &mut req);
                        count(&app, reply.status);
                        // The client may have gone; nothing to do about it.
                        let _ = req.respond(reply.into_response());
                    }
                })
                .expect("spawn http worker")
        })
        .collect()
}

/// What a handler needs from a request, so routing is testable without sockets.
pub struct Req<'a> {
    pub method: Method,
    pub url: String,
    pub body: Box<dyn Read + 'a>,
}

/// A response before it is turned into bytes.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Arc<[u8]>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Arc<[u8]>>) -> Self {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn json(status: u16, v: &Value) -> Self {
        let mut r = Reply::new(status, "application/json", v.to_string().into_bytes());
        r.headers.push(("Cache-Control", "no-store".into()));
        r
    }

    fn error(status: u16, message: &str) -> Self {
        Reply::json(status, &json!({ "error": message }))
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<Cursor<Arc<[u8]>>> {
        let len = self.body.len();
        let mut resp = Response::new(
            self.status.into(),
            Vec::new(),
            Cursor::new(self.body),
            Some(len),
            None,
        );
        if let Ok(h) = Header::from_bytes("Content-Type", self.content_type) {
            resp.add_header(h);
        }
        for (k, v) in self.headers {
            if let Ok(h) = Header::from_bytes(k, v.as_bytes()) {
                resp.add_header(h);
            }
        }
        resp
    }
}

/// Answers one request.
pub fn route(app: &App, req: &mut Req<'_>) -> Reply {
    let path = req.url.split('?').next().unwrap_or("").to_string();
    match (&req.method, path.as_str()) {
        (Method::Get | Method::Head, "/hls/index.m3u8") => playlist(app),
        (Method::Get | Method::Head, p) if p.starts_with("/hls/") => segment(app, &p[5..]),
        (Method::Get, "/api/status") => Reply::json(200, &app.status_json()),
        (Method::Get, "/api/config") => Reply::json(200, &app.config_json()),
        (Method::Put, "/api/config") => put_config(app, req),
        (Method::Get, "/metrics") => Reply::new(
            200,
            "text/plain; version=0.0.4",
            app.metrics_text().into_bytes(),
        ),
        (Method::Get | Method::Head, p) => match web::asset(p) {
            Some(a) => Reply::new(200, a.content_type, a.body).header("Cache-Control", "no-cache"),
            None => Reply::error(404, &format!("no such page: {p}")),
        },
        (_, "/api/config") => {
            Reply::error(405, "use GET or PUT on /api/config").header("Allow", "GET, PUT")
        }
        (m, p) => Reply::error(405, &format!("{m} is not allowed on {p}")),
    }
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

fn put_config(app: &App, req: &mut Req<'_>) -> Reply {
    let mut body = Vec::new();
    if let Err(e) = req.body.as_mut().take(MAX_BODY + 1).read_to_end(&mut body) {
        return Reply::error(400, &format!("could not read the request body: {e}"));
    }
    if body.len() as u64 > MAX_BODY {
        return Reply::error(413, "configuration too large (64 KiB at most)");
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Reply::error(400, &format!("body is not valid JSON: {e}")),
    };
    match app.put_config(patch) {
        Ok(()) => Reply::json(200, &json!({ "ok": true })),
        Err(ApplyError::Field(f)) => Reply::json(
            400,
            &json!({ "error": f.to_string(), "field": f.field, "reason": f.reason }),
        ),
        Err(e @ ApplyError::Shape(_)) => Reply::error(400, &e.to_string()),
        Err(e) => Reply::error(500, &e.to_string()),
    }
}

/// Reads the body with a limit, then routes.
pub fn handle(app: &App, req: &mut Request) -> Reply {
    let method = req.method().clone();
    let url = req.url().to_string();
    let body: Box<dyn Read + '_> = Box::new(req.as_reader().take(MAX_BODY + 1));
    route(app, &mut Req { method, url, body })
}

/// Counts requests answered, for metrics (by status class).
pub fn count(app: &App, status: u16) {
    let i = usize::from(status / 100).min(5);
    app.http_responses[i].fetch_add(1, Relaxed);
}
