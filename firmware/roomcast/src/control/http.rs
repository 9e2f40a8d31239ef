//! The HTTP server (tiny_http): the web page, the live HLS stream, the JSON
//! API and Prometheus metrics. A fixed pool of worker threads answers
//! requests; each request is parsed and bounded before anything acts on it.

use crate::base::lock;
use crate::control::app::{App, ApplyError};
use crate::control::auth::{self, Access, AuthError};
use crate::control::web;
use crate::sink::llhls::{LlReply, Ready, Responder, Want};
use serde_json::{json, Value};
use std::io::{Cursor, Read};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::sync::Mutex;
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
                        if let Some(refused) = viewer_gate(&app, &req) {
                            send(&app, req, refused);
                            continue;
                        }
                        if let Some(want) = ll_want(&app, &req) {
                            match want {
                                Ok(want) => app.ll.request(want, Box::new(req)),
                                Err(reply) => send(&app, req, reply),
                            }
                            continue;
                        }
                        let reply = handle(&app, &mut req);
                        send(&app, req, reply);
                    }
                })
                .expect("spawn http worker")
        })
        .collect()
}

/// A request header's value.
fn header_value(req: &Request, name: &'static str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

/// The stream (`/hls/…`, both flavours, every file) while a viewer password
/// is set: 401 unless the request brings the admin (session or token) or a
/// viewer session. `None` lets the request through.
fn viewer_gate(app: &App, req: &Request) -> Option<Reply> {
    if !req.url().starts_with("/hls/") || !app.auth.viewer_password_set() {
        return None;
    }
    let cookie = header_value(req, "Cookie");
    let cookie = cookie.as_deref();
    let viewer = cookie.and_then(|c| auth::cookie_value(c, auth::VIEWER_COOKIE));
    let admin = cookie.and_then(|c| auth::cookie_value(c, auth::COOKIE));
    let bearer = header_value(req, "Authorization");
    let bearer = bearer
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let now = app.clock.monotonic_ns();
    match app.auth.check_viewer(viewer, admin, bearer, now) {
        Ok(()) => None,
        Err(e) => Some(Reply::json(
            401,
            &json!({ "error": e.to_string(), "viewer_login": true }),
        )),
    }
}

/// Sends `reply`, counting it for /metrics.
fn send(app: &App, req: Request, reply: Reply) {
    count(app, reply.status);
    // The client may have gone; nothing to do about it.
    let _ = req.respond(reply.into_response());
}

/// Requests the LL-HLS store answers (possibly later): the low-latency
/// playlist and its files. `None` for everything else; `Err` for a bad
/// blocking-reload query (400).
fn ll_want(app: &App, req: &Request) -> Option<Result<Want, Reply>> {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return None;
    }
    let (path, query) = req.url().split_once('?').unwrap_or((req.url(), ""));
    let name = path.strip_prefix("/hls/")?;
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
    let (mut msn, mut part, mut skip) = (None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |what: &str| {
            v.parse::<u64>().map_err(|_| {
                Reply::error(400, &format!("{what} must be a whole number, got {v:?}"))
            })
        };
        match k {
            "_HLS_msn" => msn = Some(number("_HLS_msn")?),
            "_HLS_part" => {
                let p = number("_HLS_part")?;
                part = Some(
                    u32::try_from(p).map_err(|_| Reply::error(400, "_HLS_part is too large"))?,
                );
            }
            "_HLS_skip" => skip = matches!(v, "YES" | "v2"),
            _ => {} // other parameters (cache busters) are ignored
        }
    }
    if part.is_some() && msn.is_none() {
        return Err(Reply::error(400, "_HLS_part needs _HLS_msn"));
    }
    Ok(Want::Playlist { msn, part, skip })
}

impl Responder for Request {
    fn respond(self: Box<Self>, reply: LlReply) {
        let reply = match reply {
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
        .header("Access-Control-Allow-Origin", "*");
        let _ = (*self).respond(reply.into_response());
    }
}

/// Sends the LL-HLS store's replies; a slow client holds up only one of
/// these threads, never the packager.
pub fn serve_ll_replies(
    app: Arc<App>,
    replies: Receiver<Ready>,
    threads: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    let replies = Arc::new(Mutex::new(replies));
    (0..threads)
        .map(|i| {
            let (app, replies) = (app.clone(), replies.clone());
            std::thread::Builder::new()
                .name(format!("ll-reply-{i}"))
                .spawn(move || loop {
                    let next = lock(&replies).recv();
                    let Ok(Ready { to, reply, at_ns }) = next else {
                        return;
                    };
                    let status = match &reply {
                        LlReply::Playlist(_) | LlReply::File { .. } => 200,
                        LlReply::BadRequest(_) => 400,
                        LlReply::NotFound => 404,
                        LlReply::Unavailable => 503,
                    };
                    count(&app, status);
                    to.respond(reply);
                    app.ll.delivered(at_ns);
                })
                .expect("spawn LL-HLS reply thread")
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
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Arc<[u8]>>) -> Self {
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
        // The classic MPEG-TS playlist, for players without LL-HLS or fMP4;
        // also at /hls/index.m3u8 when low latency is off.
        (Method::Get | Method::Head, "/hls/ts/index.m3u8" | "/hls/index.m3u8") => playlist(app),
        (Method::Get | Method::Head, p) if p.starts_with("/hls/ts/") => segment(app, &p[8..]),
        (Method::Get | Method::Head, p) if p.starts_with("/hls/seg") && p.ends_with(".ts") => {
            segment(app, &p[5..])
        }
        (Method::Get, "/api/status") => Reply::json(200, &app.status_json()),
        (Method::Get, "/api/config") => Reply::json(200, &app.config_json()),
        (Method::Get, "/api/devices") => Reply::json(
            200,
            &serde_json::json!({
                "devices": app.pipeline.devices(),
                "audio": app.pipeline.audio_devices(),
            }),
        ),
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

/// Checks who is asking, reads the body with a limit, then routes. The
/// page's files are open to viewers, and so is the stream unless a viewer
/// password is set (see [`viewer_gate`]); the API needs the admin.
pub fn handle(app: &App, req: &mut Request) -> Reply {
    let method = req.method().clone();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let header = |name: &'static str| {
        req.headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    let cookie = header("Cookie");
    let session = cookie
        .as_deref()
        .and_then(|c| auth::cookie_value(c, auth::COOKIE))
        .map(str::to_string);
    let bearer = header("Authorization")
        .and_then(|h| h.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
    let csrf = header("X-CSRF-Token");
    let from = req
        .remote_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let now = app.clock.monotonic_ns();
    let mut body: Box<dyn Read + '_> = Box::new(req.as_reader().take(MAX_BODY + 1));

    if !(path.starts_with("/api/") || path == "/metrics") {
        return route(app, &mut Req { method, url, body });
    }
    match (&method, path.as_str()) {
        (Method::Get, "/api/session") => {
            let access = app.auth.check(session.as_deref(), bearer.as_deref(), now);
            return Reply::json(
                200,
                &json!({
                    "setup_needed": app.auth.setup_needed(),
                    "logged_in": access.is_ok(),
                    "viewer_password": app.auth.viewer_password_set(),
                    "csrf": match access { Ok(Access::Session { csrf }) => Some(csrf), _ => None },
                }),
            );
        }
        (Method::Post, "/api/viewer-login") => {
            let password = match read_json(&mut body) {
                Ok(v) => v["password"].as_str().unwrap_or("").to_string(),
                Err(r) => return r,
            };
            return match app.auth.viewer_login(from, &password, now) {
                Ok(id) => Reply::json(200, &json!({ "ok": true })).header(
                    "Set-Cookie",
                    format!(
                        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200",
                        auth::VIEWER_COOKIE
                    ),
                ),
                Err(e @ AuthError::SlowDown(secs)) => {
                    Reply::error(429, &e.to_string()).header("Retry-After", secs.to_string())
                }
                Err(e @ AuthError::WrongPassword) => Reply::error(401, &e.to_string()),
                Err(e @ AuthError::NoViewerPassword) => Reply::error(400, &e.to_string()),
                Err(e) => Reply::error(500, &e.to_string()),
            };
        }
        (Method::Post, "/api/setup" | "/api/login") => {
            let password = match read_json(&mut body) {
                Ok(v) => v["password"].as_str().unwrap_or("").to_string(),
                Err(r) => return r,
            };
            let result = if path == "/api/setup" {
                app.auth.setup(&password, now)
            } else {
                app.auth.login(from, &password, now)
            };
            return match result {
                Ok((sid, csrf)) => Reply::json(200, &json!({ "ok": true, "csrf": csrf })).header(
                    "Set-Cookie",
                    format!(
                        "{}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200",
                        auth::COOKIE
                    ),
                ),
                Err(e @ AuthError::SlowDown(secs)) => {
                    Reply::error(429, &e.to_string()).header("Retry-After", secs.to_string())
                }
                Err(e @ (AuthError::WrongPassword | AuthError::SetupNeeded)) => {
                    Reply::error(401, &e.to_string())
                }
                Err(e @ (AuthError::TooShort | AuthError::AlreadySet)) => {
                    Reply::error(400, &e.to_string())
                }
                Err(e) => Reply::error(500, &e.to_string()),
            };
        }
        _ => {}
    }
    let access = match app.auth.check(session.as_deref(), bearer.as_deref(), now) {
        Ok(a) => a,
        Err(e) => {
            return Reply::json(
                401,
                &json!({ "error": e.to_string(), "setup_needed": e == AuthError::SetupNeeded }),
            )
        }
    };
    if !matches!(method, Method::Get | Method::Head) {
        if let Access::Session { csrf: want } = &access {
            if csrf.as_deref() != Some(want.as_str()) {
                return Reply::error(403, &AuthError::Csrf.to_string());
            }
        }
    }
    match (&method, path.as_str()) {
        (Method::Post, "/api/logout") => {
            if let Some(sid) = &session {
                app.auth.logout(sid);
            }
            Reply::json(200, &json!({ "ok": true })).header(
                "Set-Cookie",
                format!(
                    "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                    auth::COOKIE
                ),
            )
        }
        (Method::Get, "/api/config/export") => {
            let secrets = url.contains("secrets=1");
            match app.export_config(secrets) {
                Ok(text) => Reply::new(200, "application/toml", text.into_bytes())
                    .header(
                        "Content-Disposition",
                        "attachment; filename=\"roomcast-config.toml\"",
                    )
                    .header("Cache-Control", "no-store"),
                Err(e) => Reply::error(500, &e.to_string()),
            }
        }
        (Method::Put, "/api/config/import") => {
            let mut text = String::new();
            if body
                .as_mut()
                .take(MAX_BODY + 1)
                .read_to_string(&mut text)
                .is_err()
                || text.len() as u64 > MAX_BODY
            {
                return Reply::error(400, "the file is not UTF-8 text or is larger than 64 KiB");
            }
            match app.import_config(&text) {
                Ok(()) => Reply::json(200, &json!({ "ok": true })),
                Err(ApplyError::Field(f)) => Reply::json(
                    400,
                    &json!({ "error": f.to_string(), "field": f.field, "reason": f.reason }),
                ),
                Err(e @ ApplyError::Shape(_)) => {
                    Reply::error(400, &format!("not a roomcast configuration: {e}"))
                }
                Err(e) => Reply::error(500, &e.to_string()),
            }
        }
        (Method::Put, "/api/viewer-password") => {
            let v = match read_json(&mut body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let password = match v.get("password") {
                Some(Value::String(p)) => Some(p.as_str()),
                Some(Value::Null) => None,
                _ => {
                    return Reply::error(
                        400,
                        "send {\"password\": \"...\"} to set the viewer password or {\"password\": null} to open the stream",
                    )
                }
            };
            match app.auth.set_viewer_password(password) {
                Ok(()) => Reply::json(
                    200,
                    &json!({ "ok": true, "viewer_password": password.is_some() }),
                ),
                Err(e @ AuthError::TooShort) => Reply::error(400, &e.to_string()),
                Err(e) => Reply::error(500, &e.to_string()),
            }
        }
        (Method::Post, "/api/token") => match app.auth.new_api_token() {
            Ok(token) => Reply::json(200, &json!({ "token": token })),
            Err(e) => Reply::error(500, &e.to_string()),
        },
        _ => route(app, &mut Req { method, url, body }),
    }
}

/// Reads a small JSON body.
fn read_json(body: &mut Box<dyn Read + '_>) -> Result<Value, Reply> {
    let mut buf = Vec::new();
    if body
        .as_mut()
        .take(MAX_BODY + 1)
        .read_to_end(&mut buf)
        .is_err()
        || buf.len() as u64 > MAX_BODY
    {
        return Err(Reply::error(400, "could not read the request body"));
    }
    serde_json::from_slice(&buf)
        .map_err(|e| Reply::error(400, &format!("body is not valid JSON: {e}")))
}

/// Counts requests answered, for metrics (by status class).
pub fn count(app: &App, status: u16) {
    let i = usize::from(status / 100).min(5);
    app.http_responses[i].fetch_add(1, Relaxed);
}
