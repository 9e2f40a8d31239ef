//! Upstream output URLs: parsing, and masking of the secrets in them (stream
//! keys, SRT passphrases) so status, logs and the API never show a secret in
//! full.

use std::fmt;

/// A parsed output destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputUrl {
    Rtmp(RtmpUrl),
    Srt(SrtUrl),
}

/// `rtmp://HOST[:PORT]/APP/KEY` or `rtmps://…`.
#[derive(Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The application, e.g. `live`; sent as `app` in `connect`.
    pub app: String,
    /// The stream key (everything after APP/, query included): a secret.
    pub key: String,
}

/// Why a URL was refused; the text tells the user what a good one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with rtmp://, rtmps:// or srt://")]
    Scheme,
    #[error("has no host; expected rtmp://HOST[:PORT]/APP/KEY")]
    NoHost,
    #[error("has a bad port; expected a number from 1 to 65535")]
    Port,
    #[error("needs an application and a stream key: rtmp://HOST[:PORT]/APP/KEY")]
    Path,
    #[error("must not contain spaces or control characters")]
    Characters,
    /// An SRT URL that does not parse; the text says which part and why.
    #[error("{0}")]
    Srt(#[from] SrtUrlError),
}

impl OutputUrl {
    pub fn parse(url: &str) -> Result<OutputUrl, UrlError> {
        Self::parse_with(url, SrtUrl::parse)
    }

    /// `srt://` URLs go to `srt`, everything else is RTMP.
    fn parse_with(
        url: &str,
        srt: fn(&str) -> Result<SrtUrl, SrtUrlError>,
    ) -> Result<OutputUrl, UrlError> {
        if url.starts_with("srt://") {
            return Ok(OutputUrl::Srt(srt(url)?));
        }
        RtmpUrl::parse(url).map(OutputUrl::Rtmp)
    }

    /// The URL with its secret masked, for display.
    pub fn masked(&self) -> String {
        match self {
            OutputUrl::Rtmp(r) => r.masked(),
            OutputUrl::Srt(s) => s.masked(),
        }
    }

    /// Parses a URL as a client sends it back, whose secret may still be
    /// the mask status and the API show (`****wxyz`, `passphrase=****`).
    /// Only for finding the output it names ([`OutputUrl::is_shown_as`]).
    pub fn parse_sent(url: &str) -> Result<OutputUrl, UrlError> {
        Self::parse_with(url, SrtUrl::parse_sent)
    }

    /// Whether the secret is a mask: a stream key or passphrase that begins
    /// with `****` is what the box shows, never taken as a secret.
    pub fn has_masked_secret(&self) -> bool {
        match self {
            OutputUrl::Rtmp(r) => r.key.starts_with(MASK),
            OutputUrl::Srt(s) => s.passphrase.as_deref().is_some_and(|p| p.starts_with(MASK)),
        }
    }

    /// Whether `sent` (a URL with a masked secret) is this output as
    /// [`OutputUrl::masked`] shows it: the same destination (RTMP: scheme,
    /// host, port and application; SRT: host, port, mode and every other
    /// option) and the mask of this URL's secret. Only then may the secret
    /// be put back: a masked key sent with another host must not reach it.
    pub fn is_shown_as(&self, sent: &OutputUrl) -> bool {
        match (self, sent) {
            (OutputUrl::Rtmp(a), OutputUrl::Rtmp(b)) => {
                a.tc_url() == b.tc_url() && mask(&a.key) == b.key
            }
            // Both have a passphrase, so both canonical forms end the same
            // way unless another option differs.
            (OutputUrl::Srt(a), OutputUrl::Srt(b)) => {
                a.passphrase.is_some()
                    && b.passphrase.as_deref() == Some(MASK)
                    && a.masked() == b.masked()
            }
            _ => false,
        }
    }

    /// Why a masked secret in this (sent) URL cannot be put back, for the
    /// reply: which secret to type again, and the rule.
    pub fn retype_reason(&self) -> String {
        match self {
            OutputUrl::Rtmp(r) => format!(
                "the stream key must be typed again: {} is kept only for an output to the same server and application ({}) whose key it shows",
                r.key,
                r.tc_url()
            ),
            OutputUrl::Srt(_) => "the passphrase must be typed again: passphrase=**** is kept only for an output with the same host, port, mode and options".to_string(),
        }
    }
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Characters);
        }
        let (tls, rest) = if let Some(r) = url.strip_prefix("rtmp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rtmps://") {
            (true, r)
        } else {
            return Err(UrlError::Scheme);
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: [::1]
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or(UrlError::Port)?,
            ),
            _ => (authority, if tls { 443 } else { 1935 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let (app, key) = path.split_once('/').ok_or(UrlError::Path)?;
        if app.is_empty() || key.is_empty() {
            return Err(UrlError::Path);
        }
        Ok(RtmpUrl {
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            key: key.to_string(),
        })
    }

    /// `rtmp://host:port/app/` plus the key masked.
    pub fn masked(&self) -> String {
        format!(
            "{}://{}:{}/{}/{}",
            if self.tls { "rtmps" } else { "rtmp" },
            self.host,
            self.port,
            self.app,
            mask(&self.key)
        )
    }

    /// The URL a server sees in `connect` as `tcUrl` (without the key).
    pub fn tc_url(&self) -> String {
        format!(
            "{}://{}:{}/{}",
            if self.tls { "rtmps" } else { "rtmp" },
            self.host,
            self.port,
            self.app
        )
    }
}

/// `srt://` URLs are parsed in `srt::url`, beside the sink that uses them.
pub use crate::config::srt_url::{SrtMode, SrtUrl, SrtUrlError, MASK};

/// The Debug form must not leak the key either.
impl fmt::Debug for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Shows only the last four characters of a long secret, none of a short one.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n >= 12 {
        let tail: String = secret.chars().skip(n - 4).collect();
        format!("{MASK}{tail}")
    } else {
        MASK.to_string()
    }
}

/// Masks the secret in `url` if it parses; otherwise masks everything after
/// the scheme so a typo'd URL with a key in it is not shown either.
pub fn mask_url(url: &str) -> String {
    match OutputUrl::parse(url) {
        Ok(u) => u.masked(),
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://****"),
            None => "****".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_urls_parse_with_default_ports() {
        let u = RtmpUrl::parse("rtmp://a.example/live/abc").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "a.example", 1935));
        assert_eq!((u.app.as_str(), u.key.as_str()), ("live", "abc"));
        let u = RtmpUrl::parse("rtmps://[::1]:8443/app/k/with/slashes?x=1").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 8443));
        assert_eq!(u.key, "k/with/slashes?x=1");
        assert_eq!(RtmpUrl::parse("rtmps://h/a/k").unwrap().port, 443);
        assert_eq!(u.tc_url(), "rtmps://::1:8443/app");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, e) in [
            ("http://h/a/k", UrlError::Scheme),
            ("rtmp:///a/k", UrlError::NoHost),
            ("rtmp://h:0/a/k", UrlError::Port),
            ("rtmp://h:99999/a/k", UrlError::Port),
            ("rtmp://h/a", UrlError::Path),
            ("rtmp://h/a/", UrlError::Path),
            ("rtmp://h/a/k ey", UrlError::Characters),
            ("srt://h", UrlError::Srt(SrtUrlError::Port)),
        ] {
            assert_eq!(OutputUrl::parse(url).unwrap_err(), e, "{url}");
        }
    }

    #[test]
    fn a_masked_url_names_only_the_output_with_the_same_destination() {
        let real = OutputUrl::parse("rtmp://h/live/sk_live_1234567890abcd").unwrap();
        let sent = |u: &str| OutputUrl::parse_sent(u).unwrap();
        // As shown, or with the default port left out: the same output.
        for same in ["rtmp://h:1935/live/****abcd", "rtmp://h/live/****abcd"] {
            assert!(sent(same).has_masked_secret());
            assert!(real.is_shown_as(&sent(same)), "{same}");
        }
        // Another host, port, application or scheme, or another key's mask.
        for other in [
            "rtmp://10.66.66.66/live/****abcd",
            "rtmp://h:1936/live/****abcd",
            "rtmp://h/live2/****abcd",
            "rtmps://h:1935/live/****abcd",
            "rtmp://h/live/****zzzz",
            "rtmp://h/live/****",
        ] {
            assert!(!real.is_shown_as(&sent(other)), "{other}");
        }
        assert!(!sent("rtmp://h/live/sk_live_1234567890abcd").has_masked_secret());
        assert!(sent("rtmp://h/live/****abcd")
            .retype_reason()
            .starts_with("the stream key must be typed again"));

        let srt = OutputUrl::parse("srt://h:9000?passphrase=se%26cret-pass&latency=200").unwrap();
        let shown = srt.masked();
        assert_eq!(
            shown,
            "srt://h:9000?mode=caller&latency=200&passphrase=****"
        );
        assert!(
            OutputUrl::parse(&shown).is_err(),
            "the mask is no passphrase"
        );
        assert!(sent(&shown).has_masked_secret());
        assert!(srt.is_shown_as(&sent(&shown)));
        assert!(srt.is_shown_as(&sent(
            "srt://h:9000?passphrase=****&latency=200&mode=caller"
        )));
        for other in [
            "srt://h2:9000?latency=200&passphrase=****",
            "srt://h:9001?latency=200&passphrase=****",
            "srt://h:9000?latency=500&passphrase=****",
            "srt://h:9000?mode=rendezvous&latency=200&passphrase=****",
            "srt://h:9000?latency=200&passphrase=****&streamid=x",
            "srt://h:9000?latency=200&passphrase=****xy",
        ] {
            assert!(!srt.is_shown_as(&sent(other)), "{other}");
        }
        // Without a passphrase there is nothing to put back.
        let open = OutputUrl::parse("srt://h:9000?latency=200").unwrap();
        assert!(!open.is_shown_as(&sent(&shown)));
        assert!(!sent(&open.masked()).has_masked_secret());
    }

    #[test]
    fn secrets_never_show_in_full() {
        let u = RtmpUrl::parse("rtmp://h/live/sk_live_1234567890abcd").unwrap();
        assert_eq!(u.masked(), "rtmp://h:1935/live/****abcd");
        assert!(!format!("{u:?}").contains("1234567890"));
        assert_eq!(mask("short"), "****");
        assert_eq!(mask_url("rtmp://h/live"), "rtmp://****");
    }
}
