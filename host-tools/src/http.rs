//! A tiny HTTP/1.1 client: one `GET` per connection over
//! `std::net::TcpStream`, with a deadline for the whole exchange. Reads
//! bodies framed by `Content-Length`, `Transfer-Encoding: chunked`, or the
//! end of the connection, and bounds every part of the response.

use crate::url::HttpUrl;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Longest status or header line accepted.
const MAX_LINE: usize = 8 * 1024;
/// Most header fields accepted.
const MAX_HEADERS: usize = 100;
/// Largest body accepted (a segment at 50 Mbit/s for 10 s is ~63 MB).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A response with its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields in order; names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("no answer within {0:.1} s")]
    Timeout(f64),
    #[error("connection failed: {0}")]
    Io(io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
}

fn malformed<T>(reason: impl Into<String>) -> Result<T, HttpError> {
    Err(HttpError::Malformed(reason.into()))
}

/// `GET url`, all of it done within `timeout`.
pub fn get(url: &HttpUrl, timeout: Duration) -> Result<Response, HttpError> {
    get_with_token(url, timeout, None)
}

/// [`get`] with `Authorization: Bearer TOKEN` when a token is given (the
/// box's admin API needs one; the stream does not).
pub fn get_with_token(
    url: &HttpUrl,
    timeout: Duration,
    token: Option<&str>,
) -> Result<Response, HttpError> {
    let auth = token
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
        .map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request("GET", url, &headers, None, timeout)
}

/// One request: `method url` with extra `headers` (values must be printable
/// ASCII; others are left out) and an optional JSON `body`, all of it done
/// within `timeout`.
pub fn request(
    method: &str,
    url: &HttpUrl,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let timed_out = || HttpError::Timeout(timeout.as_secs_f64());
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| HttpError::Resolve {
            host: url.host.clone(),
            source,
        })?
        .collect();
    let mut last_err = None;
    let mut stream = None;
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some((addr.to_string(), e)),
        }
    }
    let Some(stream) = stream else {
        let (addr, source) = last_err.unwrap_or_else(|| {
            (
                url.host_header(),
                io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            )
        });
        return Err(HttpError::Connect { addr, source });
    };
    let _ = stream.set_nodelay(true);
    let map_io = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out(),
        _ => HttpError::Io(e),
    };
    let mut writer = DeadlineStream {
        stream: &stream,
        deadline,
    };
    let extra: String = headers
        .iter()
        .filter(|(k, v)| {
            k.bytes().all(|b| b.is_ascii_graphic()) && v.bytes().all(|b| (b' '..=b'~').contains(&b))
        })
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let body_headers = match body {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
        None => String::new(),
    };
    let head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: roomcast-host/{}\r\nAccept: */*\r\n{extra}{body_headers}Connection: close\r\n\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    writer.write_all(head.as_bytes()).map_err(map_io)?;
    if let Some(b) = body {
        writer.write_all(b).map_err(map_io)?;
    }
    let mut reader = BufReader::new(DeadlineStream {
        stream: &stream,
        deadline,
    });
    read_response(&mut reader).map_err(|e| match e {
        HttpError::Io(e) => map_io(e),
        e => e,
    })
}

/// A socket whose every read and write must finish before `deadline`.
struct DeadlineStream<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl DeadlineStream<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left)
    }
}

impl Read for DeadlineStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Reads one line ending in LF (CR before it dropped), at most `MAX_LINE`.
fn read_line(r: &mut impl BufRead) -> Result<String, HttpError> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(HttpError::Io)?;
    if n == 0 {
        return malformed("connection closed before the response was complete");
    }
    if line.last() != Some(&b'\n') {
        if line.len() > MAX_LINE {
            return malformed(format!("a line is longer than {MAX_LINE} bytes"));
        }
        return malformed("connection closed in the middle of a line");
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).or_else(|_| malformed("a header line is not UTF-8"))
}

/// Parses a response (status line, headers, body) from `r`.
pub fn read_response(r: &mut impl BufRead) -> Result<Response, HttpError> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return malformed(format!("status line {status_line:?} is not HTTP/1.x"));
    }
    let status: u16 = match code.parse() {
        Ok(s) if (100..=599).contains(&s) && code.len() == 3 => s,
        _ => return malformed(format!("bad status code in {status_line:?}")),
    };
    if status < 200 {
        return malformed(format!("unexpected interim response {status}"));
    }
    let headers = read_headers(r)?;
    let resp = |body| Response {
        status,
        headers: headers.clone(),
        body,
    };
    if status == 204 || status == 304 {
        return Ok(resp(Vec::new()));
    }
    let find = |name: &'static str| headers.iter().filter(move |(k, _)| k == name);
    if let Some((_, te)) = find("transfer-encoding").next() {
        // Only plain `chunked` is accepted: no compression was asked for, and
        // a single field keeps the framing unambiguous (RFC 9112 §6.3).
        if find("transfer-encoding").count() > 1 || !te.eq_ignore_ascii_case("chunked") {
            return malformed(format!("unsupported Transfer-Encoding {te:?}"));
        }
        return Ok(resp(read_chunked(r)?));
    }
    let mut length: Option<usize> = None;
    for (_, v) in find("content-length") {
        let n = v
            .parse::<usize>()
            .ok()
            .filter(|_| v.bytes().all(|b| b.is_ascii_digit()));
        match (n, length) {
            (None, _) => return malformed(format!("bad Content-Length {v:?}")),
            (Some(a), Some(b)) if a != b => return malformed("conflicting Content-Length headers"),
            (Some(a), _) => length = Some(a),
        }
    }
    let body = match length {
        Some(n) if n > MAX_BODY => return malformed(format!("body of {n} bytes is too large")),
        Some(n) => {
            let mut body = vec![0; n];
            r.read_exact(&mut body).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => HttpError::Malformed(format!(
                    "connection closed before the {n}-byte body was complete"
                )),
                _ => HttpError::Io(e),
            })?;
            body
        }
        None => {
            let mut body = Vec::new();
            r.take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .map_err(HttpError::Io)?;
            if body.len() > MAX_BODY {
                return malformed("body is too large");
            }
            body
        }
    };
    Ok(resp(body))
}

fn read_headers(r: &mut impl BufRead) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADERS {
            return malformed(format!("more than {MAX_HEADERS} header fields"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return malformed(format!("header line {line:?} has no ':'"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return malformed(format!("bad header name {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// A `chunked` body (RFC 9112 §7.1); extensions and trailers are skipped.
fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return malformed(format!("bad chunk size line {line:?}"));
        }
        let size = usize::from_str_radix(size_text, 16)
            .or_else(|_| malformed(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailer fields, then the empty line.
            read_headers(r)?;
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return malformed("chunked body is too large");
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    HttpError::Malformed("connection closed inside a chunk".into())
                }
                _ => HttpError::Io(e),
            })?;
        if !read_line(r)?.is_empty() {
            return malformed("chunk data not followed by CRLF");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;

    fn parse(raw: &[u8]) -> Result<Response, HttpError> {
        read_response(&mut Cursor::new(raw))
    }

    #[test]
    fn content_length_body() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-TYPE"), Some("text/plain"));
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              4;name=v\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn body_to_end_of_connection_and_bare_lf() {
        let r =
            parse(b"HTTP/1.0 503 Service Unavailable\nRetry-After: 1\n\n{\"error\":1}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"{\"error\":1}"[..]));
        assert_eq!(r.header("retry-after"), Some("1"));
    }

    #[test]
    fn malformed_responses_are_errors() {
        for (raw, needle) in [
            (&b""[..], "closed before"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "status code"),
            (b"HTTP/1.1 100 Continue\r\n\r\n", "interim"),
            (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "no ':'"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "before the 10-byte body",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n",
                "too large",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "unsupported",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "inside a chunk",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                "CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
                "closed before",
            ),
        ] {
            let e = parse(raw).unwrap_err().to_string();
            assert!(
                e.contains(needle),
                "{:?}: {e}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_LINE + 10)
        );
        assert!(parse(long.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }

    #[test]
    fn get_over_a_socket_and_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            // First connection: answer chunked. Second: never answer.
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            )
            .unwrap();
            let (_silent, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            String::from_utf8(req).unwrap()
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/hls/index.m3u8")).unwrap();
        let r = get(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(r.body, b"abc");
        let started = Instant::now();
        let e = get(&url, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, HttpError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_millis(500));
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /hls/index.m3u8 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
    }
}
