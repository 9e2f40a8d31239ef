//! The HTTP server: the web page, the live HLS stream, the JSON API and
//! Prometheus metrics.
//!
//! Requests are read by the server ([`server`]: hyper on tokio, with the
//! limits and timeouts a LAN appliance needs) into a [`Req`] with a bounded
//! body, then answered by [`handle`], which needs no sockets and is
//! unit-tested through `Req` (`tests.rs`). The routes are split by area:
//!
//! * [`stream`]: `/hls/…`, both HLS flavours, and the viewer password gate;
//!   LL-HLS requests that must wait are [`Routed::Parked`] in the store.
//! * [`session`]: first-start setup, login, logout, the viewer login, and
//!   the admin gate (session or token, CSRF on changes).
//! * [`api`]: `/api/…` behind the admin gate, and `/metrics`.
//! * [`page`]: the web page's files.

mod api;
mod dash;
mod page;
pub mod server;
mod session;
mod stream;
#[cfg(test)]
mod tests;

use crate::base::lock;
use crate::control::app::{App, ApplyError};
use crate::control::auth::AuthError;
use crate::sink::llhls::{Ready, Want};
use serde_json::{json, Value};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::sync::Mutex;

/// Largest request body accepted (a configuration is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The request methods the box answers; anything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other(String),
}

impl Method {
    /// GET or HEAD: reads nothing on the box.
    pub fn is_read(&self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(m) => m,
        })
    }
}

/// Why a request body is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than [`MAX_BODY`] (only that much was read).
    TooLarge,
    /// The client went away or sent something unreadable.
    Unreadable(String),
}

/// A request as the routes see it, read and bounded by the server adapter.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// Path and query, as sent.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub remote: IpAddr,
    /// It came over HTTPS.
    pub secure: bool,
    /// At most [`MAX_BODY`] bytes.
    pub body: Result<Vec<u8>, BodyError>,
}

impl Req {
    /// A request without headers or body, from 127.0.0.1 (tests, tools).
    pub fn new(method: Method, url: &str) -> Req {
        Req {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            remote: IpAddr::from([127, 0, 0, 1]),
            secure: false,
            body: Ok(Vec::new()),
        }
    }

    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, q)| q)
    }

    /// A header's value (names compare without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A cookie's value from the `Cookie` header.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header("Cookie")
            .and_then(|c| crate::control::auth::cookie_value(c, name))
    }

    /// The token of an `Authorization: Bearer` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
    }

    /// The body, or the reply that says why there is none.
    pub fn body_bytes(&self) -> Result<&[u8], Reply> {
        match &self.body {
            Ok(b) => Ok(b),
            Err(BodyError::TooLarge) => Err(Reply::error(
                413,
                &format!("request body too large ({} KiB at most)", MAX_BODY / 1024),
            )),
            Err(BodyError::Unreadable(e)) => Err(Reply::error(
                400,
                &format!("could not read the request body: {e}"),
            )),
        }
    }

    /// The body as JSON.
    pub fn body_json(&self) -> Result<Value, Reply> {
        serde_json::from_slice(self.body_bytes()?)
            .map_err(|e| Reply::error(400, &format!("body is not valid JSON: {e}")))
    }

    /// The body as UTF-8 text.
    pub fn body_text(&self) -> Result<&str, Reply> {
        std::str::from_utf8(self.body_bytes()?)
            .map_err(|_| Reply::error(400, "the body is not UTF-8 text"))
    }
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
        Reply::new(status, "application/json", v.to_string().into_bytes())
            .header("Cache-Control", "no-store")
    }

    /// 405 for a method a path does not take.
    fn not_allowed(m: &Method, path: &str) -> Self {
        Reply::error(405, &format!("{m} is not allowed on {path}"))
    }

    fn ok() -> Self {
        Reply::json(200, &json!({ "ok": true }))
    }

    fn error(status: u16, message: &str) -> Self {
        Reply::json(status, &json!({ "error": message }))
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A header's value, for tests.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Access errors as replies: what the client did wrong, or 500.
impl From<AuthError> for Reply {
    fn from(e: AuthError) -> Reply {
        let status = match e {
            AuthError::SlowDown(secs) => {
                return Reply::error(429, &e.to_string()).header("Retry-After", secs.to_string())
            }
            AuthError::WrongPassword | AuthError::SetupNeeded => 401,
            AuthError::TooShort | AuthError::AlreadySet | AuthError::NoViewerPassword => 400,
            AuthError::Csrf => 403,
            _ => 500,
        };
        Reply::error(status, &e.to_string())
    }
}

/// Configuration errors as replies: a refused field names itself.
impl From<ApplyError> for Reply {
    fn from(e: ApplyError) -> Reply {
        match e {
            ApplyError::Field(f) => Reply::json(
                400,
                &json!({ "error": f.to_string(), "field": f.field, "reason": f.reason }),
            ),
            e @ ApplyError::Shape(_) => Reply::error(400, &e.to_string()),
            e => Reply::error(500, &e.to_string()),
        }
    }
}

/// What becomes of a request.
pub enum Routed {
    Reply(Reply),
    /// An LL-HLS request the store answers, possibly later.
    Parked(usize, Want),
}

impl From<Reply> for Routed {
    fn from(r: Reply) -> Routed {
        Routed::Reply(r)
    }
}

/// Answers one request: the stream (with its gate), the session routes,
/// the API behind the admin gate, the page.
pub fn handle(app: &App, req: &Req) -> Routed {
    // An oversized body is refused whatever the route would have done.
    if let Err(BodyError::TooLarge) = req.body {
        return req
            .body_bytes()
            .err()
            .unwrap_or_else(|| Reply::error(413, ""))
            .into();
    }
    if let Some(redirect) = to_https(app, req) {
        return redirect.into();
    }
    if let Some(refused) = stream::viewer_gate(app, req) {
        return refused.into();
    }
    if let Some(routed) = stream::route(app, req) {
        return routed;
    }
    if let Some(reply) = dash::route(app, req) {
        return reply.into();
    }
    let path = req.path();
    if path.starts_with("/api/") || path == "/metrics" {
        return api::route(app, req).into();
    }
    page::route(req).into()
}

/// With `https.only`, plain HTTP gets a permanent redirect to the same URL
/// over HTTPS (same host, the HTTPS port).
fn to_https(app: &App, req: &Req) -> Option<Reply> {
    let port = app.https_port.load(Relaxed);
    if req.secure || port == 0 || !lock(&app.config).get().https.only {
        return None;
    }
    let host = req.header("Host").unwrap_or("localhost");
    // Strip a port: `[v6]:p`, `name:p`.
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let location = format!("https://{name}:{port}{}", req.url);
    Some(Reply::error(308, "this box answers over HTTPS only").header("Location", location))
}

/// Hands the LL-HLS store's answers to the parked requests' tasks (a
/// channel send each), off the packager's thread.
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
                    // The server counts the reply when it sends it.
                    to.respond(reply);
                    if let Some(top) = app.renditions.get(0) {
                        top.ll.delivered(at_ns);
                    }
                })
                .expect("spawn LL-HLS reply thread")
        })
        .collect()
}

/// Counts requests answered, for metrics (by status class).
pub fn count(app: &App, status: u16) {
    let i = usize::from(status / 100).min(5);
    app.http_responses[i].fetch_add(1, Relaxed);
}
