//! `roomcast-host config get|set HOST`: reads and changes a box's settings
//! through its HTTP API (`/api/config`, the same JSON the web page uses).
//!
//! Authentication, in this order: `ROOMCAST_TOKEN` (an API token, sent as
//! `Authorization: Bearer`), else the admin password (from
//! `--password-file FILE` or `ROOMCAST_PASSWORD`): `POST /api/login` gives a
//! session cookie and a CSRF token, which a change sends back as
//! `X-CSRF-Token`; the session is ended with `POST /api/logout` afterwards.

use crate::http::{self, HttpError, Response};
use crate::url::HttpUrl;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Per request.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The session cookie's name (the daemon's `auth::COOKIE`).
const COOKIE: &str = "roomcast_session";

/// How to prove we are the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Token(String),
    Password(String),
}

/// Why a config command failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{url}: {source}")]
    Http { url: String, source: HttpError },
    #[error("{0}")]
    Refused(String),
    #[error("the box's answer is not what was expected: {0}")]
    BadAnswer(String),
    #[error("bad setting {0:?}: expected KEY=VALUE, e.g. video.fps=25")]
    BadAssignment(String),
    #[error("no key {0:?} in the box's configuration")]
    NoSuchKey(String),
}

/// `HOST`, `HOST:PORT` or `http://HOST:PORT[/]` → the box's base URL (port
/// 8080 when none is given).
pub fn box_url(host: &str) -> Result<HttpUrl, String> {
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        let has_port = match host.rsplit_once(':') {
            // An IPv6 address without brackets has several colons.
            Some((h, p)) => !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()),
            None => false,
        } || host.starts_with('[') && host.contains("]:");
        if has_port {
            format!("http://{host}")
        } else if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:8080")
        } else {
            format!("http://{host}:8080")
        }
    };
    HttpUrl::parse(&with_scheme).map_err(|e| e.to_string())
}

/// `a.b=V` → `{"a":{"b":V}}` merged into `patch`. `V` is JSON when it
/// parses as JSON (numbers, true/false, arrays, quoted strings), else the
/// text itself.
pub fn add_assignment(patch: &mut Value, assignment: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::BadAssignment(assignment.to_string());
    let (key, raw) = assignment.split_once('=').ok_or_else(bad)?;
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let mut node = patch;
    for p in &parts[..parts.len() - 1] {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node
            .as_object_mut()
            .ok_or_else(bad)?
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    node.as_object_mut()
        .ok_or_else(bad)?
        .insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// The value at dotted `key` (`video.fps`, `outputs.0.url`).
pub fn lookup<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(config, |v, k| match v {
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => v.get(k),
    })
}

/// An authenticated conversation with one box.
pub struct Session {
    base: HttpUrl,
    headers: Vec<(String, String)>,
    logged_in: bool,
}

fn error_text(r: &Response) -> String {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    match (body["error"].as_str(), body["field"].as_str()) {
        (Some(e), Some(f)) if !e.contains(f) => format!("{f}: {e}"),
        (Some(e), _) => e.to_string(),
        _ => format!("HTTP {}", r.status),
    }
}

impl Session {
    /// Logs in (password) or just remembers the token.
    pub fn open(base: HttpUrl, creds: &Credentials) -> Result<Session, ConfigError> {
        let mut s = Session {
            base,
            headers: Vec::new(),
            logged_in: false,
        };
        match creds {
            Credentials::Token(t) => s
                .headers
                .push(("Authorization".into(), format!("Bearer {}", t.trim()))),
            Credentials::Password(p) => {
                let body = json!({ "password": p }).to_string();
                let r = s.call("POST", "/api/login", Some(body.as_bytes()))?;
                match r.status {
                    200 => {}
                    401 | 429 => {
                        return Err(ConfigError::Refused(format!(
                            "login refused: {}",
                            error_text(&r)
                        )))
                    }
                    _ => {
                        return Err(ConfigError::BadAnswer(format!(
                            "/api/login: {}",
                            error_text(&r)
                        )))
                    }
                }
                let cookie = r
                    .headers
                    .iter()
                    .filter(|(k, _)| k == "set-cookie")
                    .find_map(|(_, v)| {
                        let first = v.split(';').next()?.trim();
                        let (name, value) = first.split_once('=')?;
                        (name == COOKIE && !value.is_empty()).then(|| first.to_string())
                    })
                    .ok_or_else(|| {
                        ConfigError::BadAnswer("/api/login set no session cookie".into())
                    })?;
                let v: Value = serde_json::from_slice(&r.body)
                    .map_err(|e| ConfigError::BadAnswer(format!("/api/login: {e}")))?;
                let csrf = v["csrf"].as_str().ok_or_else(|| {
                    ConfigError::BadAnswer("/api/login gave no CSRF token".into())
                })?;
                s.headers.push(("Cookie".into(), cookie));
                s.headers.push(("X-CSRF-Token".into(), csrf.to_string()));
                s.logged_in = true;
            }
        }
        Ok(s)
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response, ConfigError> {
        let url = self.base.with_api_path(path);
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http::request(method, &url, &headers, body, TIMEOUT).map_err(|source| ConfigError::Http {
            url: format!("http://{}{}", url.host_header(), url.path),
            source,
        })
    }

    fn check(r: Response, what: &str) -> Result<Value, ConfigError> {
        match r.status {
            200 => serde_json::from_slice(&r.body)
                .map_err(|e| ConfigError::BadAnswer(format!("{what}: {e}"))),
            401 => Err(ConfigError::Refused(format!(
                "{what}: {} (give the admin password in ROOMCAST_PASSWORD or --password-file, or an API token in ROOMCAST_TOKEN)",
                error_text(&r)
            ))),
            _ => Err(ConfigError::Refused(format!("{what}: {}", error_text(&r)))),
        }
    }

    /// `GET /api/config`.
    pub fn get(&self) -> Result<Value, ConfigError> {
        Self::check(self.call("GET", "/api/config", None)?, "GET /api/config")
    }

    /// `PUT /api/config` with `patch` (only the keys to change).
    pub fn put(&self, patch: &Value) -> Result<(), ConfigError> {
        let body = patch.to_string();
        Self::check(
            self.call("PUT", "/api/config", Some(body.as_bytes()))?,
            "PUT /api/config",
        )
        .map(|_| ())
    }

    /// Ends a password session (tokens need nothing).
    pub fn close(self) {
        if self.logged_in {
            let _ = self.call("POST", "/api/logout", Some(b"{}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_urls() {
        let u = box_url("roomcast-1a2b.local").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("roomcast-1a2b.local", 8080));
        assert_eq!(box_url("10.0.0.2:18080").unwrap().port, 18080);
        assert_eq!(box_url("http://10.0.0.2:9000/").unwrap().port, 9000);
        assert_eq!(box_url("fe80::1").unwrap().port, 8080);
        assert!(box_url("http://bad host").is_err());
    }

    #[test]
    fn assignments_build_a_patch() {
        let mut p = json!({});
        add_assignment(&mut p, "video.fps=25").unwrap();
        add_assignment(&mut p, "video.width=640").unwrap();
        add_assignment(&mut p, "hls.low_latency=false").unwrap();
        add_assignment(&mut p, "source=test").unwrap();
        add_assignment(&mut p, "mdns=true").unwrap();
        assert_eq!(
            p,
            json!({"video": {"fps": 25, "width": 640}, "hls": {"low_latency": false},
                   "source": "test", "mdns": true})
        );
        for bad in ["video.fps", "=3", "a..b=1", ".a=1"] {
            assert!(add_assignment(&mut p, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookup_follows_dots_and_indexes() {
        let c = json!({"video": {"fps": 30}, "outputs": [{"url": "rtmp://h/a/****"}]});
        assert_eq!(lookup(&c, "video.fps"), Some(&json!(30)));
        assert_eq!(lookup(&c, "outputs.0.url"), Some(&json!("rtmp://h/a/****")));
        assert_eq!(lookup(&c, "video.nope"), None);
        assert_eq!(lookup(&c, "outputs.x"), None);
    }
}
