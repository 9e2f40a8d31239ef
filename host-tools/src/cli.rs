//! The `roomcast-host` command line.

use crate::url::HttpUrl;
use std::time::Duration;

pub const USAGE: &str = "\
usage: roomcast-host probe http://HOST:PORT [--seconds N]
       roomcast-host --help | --version

Host-side tools for roomcast boxes.

commands:
  probe URL      read the box's /api/status, then watch /hls/ts/index.m3u8 (the MPEG-TS playlist) for
                 N seconds: check the playlist, download every segment and
                 check it is whole MPEG-TS (188-byte packets, sync bytes, PAT
                 with a valid CRC), and report each segment's duration, size,
                 bitrate and the live-edge latency (local clock minus the
                 newest segment's EXT-X-PROGRAM-DATE-TIME plus its duration;
                 needs the box's clock and this machine's to agree, e.g. NTP)

options:
  --seconds N    how long probe watches the playlist (default 5, 1..=3600)

environment:
  ROOMCAST_TOKEN an API token of the box, for its /api/status
  -h, --help     this text
  -V, --version  the version

exit status: 0 all checks passed, 1 a check failed (one line on stderr says
which), 2 bad usage";

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Probe { url: HttpUrl, watch: Duration },
}

/// A bad command line: one line saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (see roomcast-host --help)")]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return usage("missing command; try: roomcast-host probe http://HOST:PORT");
    };
    match first.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        "probe" => {}
        other if other.starts_with('-') => return usage(format!("unknown flag {other}")),
        other => return usage(format!("unknown command {other:?}; the command is probe")),
    }
    let mut url: Option<HttpUrl> = None;
    let mut seconds: u64 = 5;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--seconds" => {
                let Some(v) = inline.or_else(|| args.next()) else {
                    return usage("--seconds needs a value, e.g. --seconds 5");
                };
                seconds = match v.parse::<u64>() {
                    Ok(n @ 1..=3600) if v.bytes().all(|b| b.is_ascii_digit()) => n,
                    _ => {
                        return usage(format!(
                            "--seconds wants a whole number from 1 to 3600, got {v:?}"
                        ))
                    }
                };
            }
            f if f.starts_with('-') => return usage(format!("unknown flag {f}")),
            _ if url.is_some() => return usage(format!("unexpected argument {arg:?}")),
            _ => url = Some(HttpUrl::parse(&arg).or_else(|e| usage(e.to_string()))?),
        }
    }
    let Some(url) = url else {
        return usage("probe needs the box's address, e.g. http://192.168.1.20:8080");
    };
    Ok(Command::Probe {
        url,
        watch: Duration::from_secs(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn probe_with_and_without_seconds() {
        let Command::Probe { url, watch } = p(&["probe", "http://127.0.0.1:8080"]).unwrap() else {
            panic!()
        };
        assert_eq!((url.port, watch), (8080, Duration::from_secs(5)));
        for args in [
            &["probe", "--seconds", "3", "http://h:1"][..],
            &["probe", "http://h:1", "--seconds=3"][..],
        ] {
            let Command::Probe { watch, .. } = p(args).unwrap() else {
                panic!()
            };
            assert_eq!(watch, Duration::from_secs(3));
        }
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
        assert_eq!(p(&["probe", "-h"]).unwrap(), Command::Help);
        assert_eq!(p(&["-V"]).unwrap(), Command::Version);
    }

    #[test]
    fn bad_usage_is_one_line() {
        for (args, needle) in [
            (&[][..], "missing command"),
            (&["flash"][..], "unknown command"),
            (&["--frob"][..], "unknown flag"),
            (&["probe"][..], "needs the box's address"),
            (&["probe", "box:8080"][..], "bad URL"),
            (
                &["probe", "http://h:1", "http://h:2"][..],
                "unexpected argument",
            ),
            (&["probe", "http://h:1", "--seconds"][..], "needs a value"),
            (&["probe", "http://h:1", "--seconds", "0"][..], "1 to 3600"),
            (&["probe", "http://h:1", "--seconds", "+3"][..], "1 to 3600"),
            (&["probe", "http://h:1", "--seconds=2.5"][..], "1 to 3600"),
            (&["probe", "http://h:1", "--verbose"][..], "unknown flag"),
        ] {
            let e = p(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
            assert!(e.ends_with("(see roomcast-host --help)") && !e.contains('\n'));
        }
    }
}
