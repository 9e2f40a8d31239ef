//! `http://` URLs: just enough to reach a box and resolve the segment URIs
//! of its playlist (RFC 3986 §5.2, without fragments or userinfo).

use std::fmt;

/// An absolute `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP address; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

/// A URL that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URL {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl HttpUrl {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]`.
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        let err = |reason: &str| UrlError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains spaces or control characters"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(err("expected http://HOST:PORT"));
        };
        if scheme.eq_ignore_ascii_case("https") {
            return Err(err(
                "https is not supported; the box serves plain http on the LAN",
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(err("only http:// URLs are supported"));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains('#') {
            return Err(err("fragments (#...) are not supported"));
        }
        if authority.contains('@') {
            return Err(err("user names and passwords in URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(err("unclosed '[' in the host"));
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err("the address in [...] is not IPv6"));
            }
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(err("expected ':' after ']'")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err("missing host"));
        }
        if !host.contains(':')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(err("the host has characters a host name cannot have"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(err("the port must be a number from 1 to 65535")),
            },
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Ok(HttpUrl {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The `Host` header value (port left out when it is 80).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// This URL with its path replaced by `path` appended to this URL's
    /// path (without its query), e.g. a base of `http://h/box` and
    /// `/api/status` give `http://h/box/api/status`.
    pub fn with_api_path(&self, path: &str) -> HttpUrl {
        let base = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        HttpUrl {
            path: format!("{base}{path}"),
            ..self.clone()
        }
    }

    /// Resolves a reference found in a document served at this URL (a
    /// playlist's segment URI).
    pub fn join(&self, reference: &str) -> Result<HttpUrl, UrlError> {
        let err = |reason: &str| UrlError {
            url: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.is_empty() {
            return Err(err("empty reference"));
        }
        if reference.contains("://") {
            return HttpUrl::parse(reference);
        }
        if reference.starts_with("//") {
            return HttpUrl::parse(&format!("http:{reference}"));
        }
        if reference.contains('#') {
            return Err(err("fragments (#...) are not supported"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err("contains spaces or control characters"));
        }
        let (ref_path, query) = match reference.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (reference, None),
        };
        let merged = if ref_path.starts_with('/') {
            ref_path.to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{ref_path}")
        };
        let mut path = remove_dot_segments(&merged);
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        Ok(HttpUrl {
            path,
            ..self.clone()
        })
    }
}

/// RFC 3986 §5.2.4, for paths that start with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap()
    }

    #[test]
    fn parses_box_addresses() {
        let a = u("http://127.0.0.1:8080");
        assert_eq!(
            (a.host.as_str(), a.port, a.path.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        let b = u("HTTP://Roomcast-1.local/hls/index.m3u8?x=1");
        assert_eq!((b.host.as_str(), b.port), ("roomcast-1.local", 80));
        assert_eq!(b.path, "/hls/index.m3u8?x=1");
        assert_eq!(b.to_string(), "http://roomcast-1.local/hls/index.m3u8?x=1");
        let c = u("http://[::1]:9000/");
        assert_eq!((c.host.as_str(), c.port), ("::1", 9000));
        assert_eq!(c.host_header(), "[::1]:9000");
        assert_eq!(u("http://h?q").path, "/?q");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for (bad, needle) in [
            ("127.0.0.1:8080", "expected http://"),
            ("https://box", "https is not supported"),
            ("ftp://box", "only http://"),
            ("http://", "missing host"),
            ("http://:80", "missing host"),
            ("http://box:0", "port"),
            ("http://box:65536", "port"),
            ("http://box:+80", "port"),
            ("http://box:", "port"),
            ("http://u:p@box", "passwords"),
            ("http://box/#x", "fragments"),
            ("http://bo x", "spaces"),
            ("http://[::1", "unclosed"),
            ("http://[box]:1", "IPv6"),
            ("http://[::1]x", "after ']'"),
            ("http://b%x/", "characters"),
        ] {
            let e = HttpUrl::parse(bad).unwrap_err();
            assert!(e.reason.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn joins_references() {
        let base = u("http://box:8080/hls/index.m3u8?_HLS_msn=3");
        assert_eq!(
            base.join("seg7.ts").unwrap().to_string(),
            "http://box:8080/hls/seg7.ts"
        );
        assert_eq!(base.join("/x/seg.ts?a=1").unwrap().path, "/x/seg.ts?a=1");
        assert_eq!(base.join("../seg.ts").unwrap().path, "/seg.ts");
        assert_eq!(base.join("./a/./b/../c.ts").unwrap().path, "/hls/a/c.ts");
        assert_eq!(base.join("../../../seg.ts").unwrap().path, "/seg.ts");
        let other = base.join("http://cdn:81/s.ts").unwrap();
        assert_eq!((other.host.as_str(), other.port), ("cdn", 81));
        assert_eq!(base.join("//cdn/s.ts").unwrap().host, "cdn");
        assert!(base.join("").is_err());
        assert!(base.join("https://cdn/s.ts").is_err());
        assert!(base.join("a b.ts").is_err());
        let root = u("http://box:8080");
        assert_eq!(root.with_api_path("/api/status").path, "/api/status");
        let prefixed = u("http://box/roomcast/?x");
        assert_eq!(
            prefixed.with_api_path("/hls/index.m3u8").path,
            "/roomcast/hls/index.m3u8"
        );
    }
}
