//! `srt://` output URLs, in the form libsrt's tools use (see the SRT
//! internet-draft, draft-sharabayko-srt, for what the options mean):
//!
//! ```text
//! srt://HOST:PORT?mode=caller|listener|rendezvous&latency=MS
//!               &passphrase=P&pbkeylen=16|24|32&streamid=S&port=LOCAL
//! ```
//!
//! `port` is the local UDP port, as in libsrt's `srt-live-transmit`:
//! rendezvous uses PORT unless it is given, a caller an ephemeral one.
//!
//! Parsing is strict: an unknown option, a repeated option or a value out of
//! range is an error naming it, so a typo never silently turns encryption
//! off. Values may be %-escaped (`%26` for `&`). The passphrase is a secret:
//! [`SrtUrl::masked`] and the `Debug` form never show it.

use std::fmt;

/// Who opens the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtMode {
    /// Connect to a listener at HOST:PORT and push the stream to it.
    Caller,
    /// Wait on PORT (on HOST if given) for receivers to call in; each one
    /// gets the stream from the next keyframe.
    Listener,
    /// Both ends call each other from a fixed port (for NAT traversal).
    Rendezvous,
}

impl SrtMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SrtMode::Caller => "caller",
            SrtMode::Listener => "listener",
            SrtMode::Rendezvous => "rendezvous",
        }
    }
}

/// What a masked secret begins with (`passphrase=****`, an RTMP key
/// `****wxyz`): `url::mask` writes it, and a secret sent back that begins
/// with it is taken as the mask, never as a secret.
pub const MASK: &str = "****";

/// Latency when the URL gives none: about 4 RTT of a wide-area path with
/// margin, the value SRT tools use on unknown networks.
pub const DEFAULT_LATENCY_MS: u32 = 300;
/// The range the URL may set: libsrt's floor for live mode is 20 ms, and
/// more than 8 s only delays the picture.
pub const LATENCY_RANGE_MS: std::ops::RangeInclusive<u32> = 20..=8000;

/// A checked `srt://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtUrl {
    /// Empty only in listener mode: listen on every address.
    pub host: String,
    pub port: u16,
    pub mode: SrtMode,
    /// SRTO_LATENCY, both directions.
    pub latency_ms: u32,
    /// SRTO_PASSPHRASE, 10..=79 characters: a secret.
    pub passphrase: Option<String>,
    /// SRTO_PBKEYLEN in bytes (16, 24 or 32); only with a passphrase.
    pub pbkeylen: Option<u8>,
    /// SRTO_STREAMID, at most 512 bytes. A caller sends it; a listener with
    /// one set accepts only callers that send the same.
    pub streamid: Option<String>,
    /// The local UDP port (caller, rendezvous); `None`: rendezvous binds
    /// PORT, a caller any free port.
    pub local_port: Option<u16>,
}

/// What is wrong with an `srt://` URL, and what a good one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtUrlError {
    #[error("must start with srt://")]
    Scheme,
    #[error("must not contain spaces or control characters")]
    Characters,
    #[error("has no host; a caller needs srt://HOST:PORT (only mode=listener may leave HOST out)")]
    NoHost,
    #[error("needs a port from 1 to 65535: srt://HOST:PORT")]
    Port,
    #[error("must not have a path; options go after ?, e.g. srt://HOST:PORT?mode=listener")]
    Path,
    #[error(
        "has an unknown option {0:?}; known: mode, latency, passphrase, pbkeylen, streamid, port"
    )]
    UnknownOption(String),
    #[error("gives option {0:?} twice")]
    Duplicate(String),
    #[error("mode must be caller, listener or rendezvous (got {0:?})")]
    Mode(String),
    #[error("latency must be whole milliseconds from 20 to 8000 (got {0:?})")]
    Latency(String),
    #[error("passphrase must be 10 to 79 characters (got {0})")]
    Passphrase(usize),
    #[error("pbkeylen must be 16, 24 or 32 (AES-128, -192, -256; got {0:?})")]
    PbKeyLen(String),
    #[error("pbkeylen needs a passphrase")]
    PbKeyLenWithoutPassphrase,
    #[error("streamid must be at most 512 bytes (got {0})")]
    StreamId(usize),
    #[error("port (the local port) must be from 1 to 65535, and a listener has none: it listens on srt://HOST:PORT")]
    LocalPort,
    #[error("option {0:?} has a bad %-escape or is not UTF-8")]
    Escape(String),
}

impl SrtUrl {
    pub fn parse(url: &str) -> Result<SrtUrl, SrtUrlError> {
        SrtUrl::parse_with(url, false)
    }

    /// Parses a URL as a client sends it back: `passphrase=****` (the mask
    /// [`SrtUrl::masked`] shows, or anything else beginning with `****`) is
    /// taken as it is, not checked as a passphrase. Such a URL is only for
    /// finding the output it names (`url::OutputUrl::is_shown_as`), never
    /// for connecting.
    pub fn parse_sent(url: &str) -> Result<SrtUrl, SrtUrlError> {
        SrtUrl::parse_with(url, true)
    }

    fn parse_with(url: &str, masked_ok: bool) -> Result<SrtUrl, SrtUrlError> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SrtUrlError::Characters);
        }
        let rest = url.strip_prefix("srt://").ok_or(SrtUrlError::Scheme)?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        // libsrt's tools accept (and ignore) a trailing slash.
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(SrtUrlError::Path);
        }
        let (host, port) = authority.rsplit_once(':').ok_or(SrtUrlError::Port)?;
        if port.contains(']') {
            return Err(SrtUrlError::Port); // [::1] with no port
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(SrtUrlError::Port)?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']').ok_or(SrtUrlError::NoHost)?,
            None => host,
        };

        let mut url = SrtUrl {
            host: host.to_string(),
            port,
            mode: SrtMode::Caller,
            latency_ms: DEFAULT_LATENCY_MS,
            passphrase: None,
            pbkeylen: None,
            streamid: None,
            local_port: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&key) {
                return Err(SrtUrlError::Duplicate(key.to_string()));
            }
            seen.push(key);
            let value = percent_decode(raw).ok_or_else(|| SrtUrlError::Escape(key.to_string()))?;
            match key {
                "mode" => {
                    url.mode = match value.as_str() {
                        "caller" => SrtMode::Caller,
                        "listener" => SrtMode::Listener,
                        "rendezvous" => SrtMode::Rendezvous,
                        _ => return Err(SrtUrlError::Mode(value)),
                    }
                }
                "latency" => {
                    url.latency_ms = value
                        .parse()
                        .ok()
                        .filter(|l| LATENCY_RANGE_MS.contains(l))
                        .ok_or(SrtUrlError::Latency(value))?
                }
                "passphrase" if masked_ok && value.starts_with(MASK) => {
                    url.passphrase = Some(value);
                }
                "passphrase" => {
                    let n = value.chars().count();
                    // libsrt counts bytes; so does srt-tokio.
                    if !(10..=79).contains(&value.len()) {
                        return Err(SrtUrlError::Passphrase(n));
                    }
                    url.passphrase = Some(value);
                }
                "pbkeylen" => {
                    url.pbkeylen = Some(match value.as_str() {
                        "16" => 16,
                        "24" => 24,
                        "32" => 32,
                        _ => return Err(SrtUrlError::PbKeyLen(value)),
                    })
                }
                "streamid" => {
                    if value.len() > 512 {
                        return Err(SrtUrlError::StreamId(value.len()));
                    }
                    url.streamid = Some(value);
                }
                "port" => {
                    url.local_port = Some(
                        value
                            .parse::<u16>()
                            .ok()
                            .filter(|&p| p != 0)
                            .ok_or(SrtUrlError::LocalPort)?,
                    )
                }
                other => return Err(SrtUrlError::UnknownOption(other.to_string())),
            }
        }
        if url.local_port.is_some() && url.mode == SrtMode::Listener {
            return Err(SrtUrlError::LocalPort);
        }
        if url.pbkeylen.is_some() && url.passphrase.is_none() {
            return Err(SrtUrlError::PbKeyLenWithoutPassphrase);
        }
        if url.host.is_empty() && url.mode != SrtMode::Listener {
            return Err(SrtUrlError::NoHost);
        }
        Ok(url)
    }

    /// The key length to use: the URL's, else AES-128 (libsrt's default).
    pub fn key_len(&self) -> u8 {
        self.pbkeylen.unwrap_or(16)
    }

    /// `HOST:PORT` as a socket address string (IPv6 hosts in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL in canonical form with the passphrase masked completely (a
    /// passphrase is short enough that even its last characters help a
    /// guesser). Parsing this back gives the same URL but the passphrase.
    pub fn masked(&self) -> String {
        let mut s = format!(
            "srt://{}?mode={}&latency={}",
            self.host_port(),
            self.mode.as_str(),
            self.latency_ms
        );
        if self.passphrase.is_some() {
            s.push_str("&passphrase=****");
        }
        if let Some(k) = self.pbkeylen {
            s.push_str(&format!("&pbkeylen={k}"));
        }
        if let Some(id) = &self.streamid {
            s.push_str("&streamid=");
            s.push_str(&percent_encode(id));
        }
        if let Some(p) = self.local_port {
            s.push_str(&format!("&port={p}"));
        }
        s
    }
}

/// The Debug form must not leak the passphrase either.
impl fmt::Debug for SrtUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes what would end or confuse a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*+,;=:@/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_caller_at_300_ms_without_encryption() {
        let u = SrtUrl::parse("srt://media.example:9000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("media.example", 9000));
        assert_eq!((u.mode, u.latency_ms), (SrtMode::Caller, 300));
        assert_eq!((u.passphrase, u.pbkeylen, u.streamid), (None, None, None));
    }

    #[test]
    fn every_option_parses() {
        let u = SrtUrl::parse(
            "srt://[::1]:7001/?mode=rendezvous&latency=120&passphrase=0123456789ab%26cd&pbkeylen=32&streamid=%23!::r=live/cam,m=publish",
        )
        .unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.mode),
            ("::1", 7001, SrtMode::Rendezvous)
        );
        assert_eq!(u.latency_ms, 120);
        assert_eq!(u.passphrase.as_deref(), Some("0123456789ab&cd"));
        assert_eq!((u.pbkeylen, u.key_len()), (Some(32), 32));
        assert_eq!(u.streamid.as_deref(), Some("#!::r=live/cam,m=publish"));
        assert_eq!(u.host_port(), "[::1]:7001");
        assert_eq!(u.local_port, None);
        let r = SrtUrl::parse("srt://h:1?mode=rendezvous&port=2").unwrap();
        assert_eq!(r.local_port, Some(2));
        assert_eq!(SrtUrl::parse(&r.masked()).unwrap(), r);
        let l = SrtUrl::parse("srt://:9000?mode=listener").unwrap();
        assert_eq!((l.host.as_str(), l.mode), ("", SrtMode::Listener));
        assert_eq!(
            SrtUrl::parse("srt://h:1?passphrase=abcdefghij")
                .unwrap()
                .key_len(),
            16
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        use SrtUrlError as E;
        for (url, e) in [
            ("rtmp://h:1", E::Scheme),
            ("srt://h:1?mode=pull", E::Mode("pull".into())),
            ("srt://:9000", E::NoHost),
            ("srt://:9000?mode=rendezvous", E::NoHost),
            ("srt://h", E::Port),
            ("srt://h:0", E::Port),
            ("srt://h:70000", E::Port),
            ("srt://[::1]", E::Port),
            ("srt://h:1/live", E::Path),
            ("srt://h:1?latency=5", E::Latency("5".into())),
            ("srt://h:1?latency=abc", E::Latency("abc".into())),
            ("srt://h:1?passphrase=short", E::Passphrase(5)),
            (
                "srt://h:1?passphrase=abcdefghij&pbkeylen=20",
                E::PbKeyLen("20".into()),
            ),
            ("srt://h:1?pbkeylen=16", E::PbKeyLenWithoutPassphrase),
            ("srt://h:1?latnecy=200", E::UnknownOption("latnecy".into())),
            (
                "srt://h:1?mode=caller&mode=listener",
                E::Duplicate("mode".into()),
            ),
            ("srt://h:1?streamid=%zz", E::Escape("streamid".into())),
            ("srt://h:1?streamid=a b", E::Characters),
            ("srt://:1?mode=listener&port=2", E::LocalPort),
            ("srt://h:1?mode=rendezvous&port=0", E::LocalPort),
        ] {
            assert_eq!(SrtUrl::parse(url).unwrap_err(), e, "{url}");
        }
        let long = format!("srt://h:1?streamid={}", "x".repeat(513));
        assert_eq!(SrtUrl::parse(&long).unwrap_err(), E::StreamId(513));
        // Every message is one line that names the option.
        assert!(E::UnknownOption("x".into())
            .to_string()
            .contains("known: mode"));
    }

    #[test]
    fn the_passphrase_never_shows_and_masked_form_parses_back() {
        let u = SrtUrl::parse(
            "srt://10.0.0.5:9000?passphrase=correct-horse-battery&pbkeylen=24&streamid=a%26b",
        )
        .unwrap();
        let m = u.masked();
        assert_eq!(
            m,
            "srt://10.0.0.5:9000?mode=caller&latency=300&passphrase=****&pbkeylen=24&streamid=a%26b"
        );
        assert!(!format!("{u:?}").contains("horse"));
        assert!(!m.contains("horse") && !m.contains("tery"));
        // The masked form is a valid URL except for the placeholder, which
        // is too short to be a passphrase: it cannot be saved by mistake.
        assert_eq!(SrtUrl::parse(&m).unwrap_err(), SrtUrlError::Passphrase(4));
        let plain = SrtUrl::parse("srt://h:1?streamid=a%26b").unwrap();
        assert_eq!(SrtUrl::parse(&plain.masked()).unwrap(), plain);
    }
}
