//! The `roomcast-host` command line.

use crate::url::HttpUrl;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: roomcast-host probe http://HOST:PORT [--seconds N]
       roomcast-host image build --board NAME --out FILE [--binary PATH]
                                 [--cache DIR] [--work DIR] [--mirror URL]
       roomcast-host flash IMAGE DEVICE
       roomcast-host discover [--seconds N] [--json]
       roomcast-host config get HOST [KEY] [--password-file FILE]
       roomcast-host config set HOST KEY=VALUE... [--password-file FILE]
       roomcast-host --help | --version

Host-side tools for roomcast boxes.

commands:
  probe URL      read the box's /api/status and /hls/ts/index.m3u8 (the renditions), then watch the top one for
                 N seconds: check the playlist, download every segment and
                 check it is whole MPEG-TS (188-byte packets, sync bytes, PAT
                 with a valid CRC), and report each segment's duration, size,
                 bitrate and the live-edge latency (local clock minus the
                 newest segment's EXT-X-PROGRAM-DATE-TIME plus its duration;
                 needs the box's clock and this machine's to agree, e.g. NTP)
  image build    build a bootable SD image from Debian packages (as root, on
                 Debian/Ubuntu: mmdebstrap, qemu-user-static, fdisk,
                 dosfstools, mtools, e2fsprogs): boot partition (FAT), read-only
                 root (ext4), data partition for /var/lib/roomcast (ext4,
                 grown to the card's size on first boot); the daemon runs as a
                 systemd service with a watchdog; SSH is not installed; prints
                 the box's one-time setup code (also on the boot partition,
                 roomcast-setup-code.txt), which its web page asks for with
                 the first admin password
  flash          write IMAGE to DEVICE (a whole SD card, e.g. /dev/sdb, or a
                 regular file), then read it back and compare SHA-256; refuses
                 a device with a mounted filesystem, the host's root disk, a
                 partition, or one smaller than the image; then prints the
                 image's setup code (read from its boot partition with mtools)
  discover       list the boxes on the LAN (mDNS, _roomcast._tcp): name,
                 address, version, state
  config get     print the box's configuration (JSON), or the value of KEY
                 (dotted: video.fps, outputs.0.url)
  config set     change settings: KEY=VALUE (VALUE as JSON when it parses,
                 else text), e.g. video.fps=25 hls.low_latency=false

options:
  --seconds N          probe: how long to watch the playlist (default 5);
                       discover: how long to listen (default 3); 1..=3600
  --board NAME         pi4 (rpi4), cm4, pi-zero-2w (see boards/)
  --out FILE           the image file to write
  --binary PATH        the aarch64 roomcast binary (default
                       target/cross/aarch64-unknown-linux-gnu/release/roomcast,
                       built by tests/cross.sh aarch64)
  --cache DIR          keep downloaded .debs here between builds (default
                       /var/cache/roomcast-image)
  --work DIR           scratch space (default: a directory next to --out)
  --mirror URL         Debian mirror (default http://deb.debian.org/debian)
  --json               discover: one JSON object per box and line
  --password-file FILE config: the admin password, first line of FILE
  HOST                 NAME[:PORT] or http://NAME:PORT (port 8080 if none)

environment:
  ROOMCAST_TOKEN     an API token of the box: probe's /api/status, config
  ROOMCAST_PASSWORD  config: the admin password (when no token is given)
  -h, --help     this text
  -V, --version  the version

exit status: 0 all checks passed, 1 a check failed (one line on stderr says
which), 2 bad usage";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArgs {
    /// Board profile name (`pi4`, …), aliases resolved.
    pub board: String,
    pub out: PathBuf,
    pub binary: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub mirror: Option<String>,
}

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Probe {
        url: HttpUrl,
        watch: Duration,
    },
    ImageBuild(ImageArgs),
    Flash {
        image: PathBuf,
        device: PathBuf,
    },
    Discover {
        wait: Duration,
        json: bool,
    },
    ConfigGet {
        host: HttpUrl,
        key: Option<String>,
        password_file: Option<PathBuf>,
    },
    ConfigSet {
        host: HttpUrl,
        assignments: Vec<String>,
        password_file: Option<PathBuf>,
    },
}

/// A bad command line: one line saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (see roomcast-host --help)")]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Board names the image builder accepts, with the issue's `rpi4` spelling.
pub fn board_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "pi4" | "rpi4" => "pi4",
        "cm4" | "rpi-cm4" => "cm4",
        "pi-zero-2w" | "rpi-zero-2w" | "zero2w" => "pi-zero-2w",
        "pi5" | "rpi5" => "pi5",
        "generic-aarch64-uvc" => "generic-aarch64-uvc",
        _ => return None,
    })
}

fn seconds(v: &str) -> Result<Duration, UsageError> {
    match v.parse::<u64>() {
        Ok(n @ 1..=3600) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(Duration::from_secs(n)),
        _ => usage(format!(
            "--seconds wants a whole number from 1 to 3600, got {v:?}"
        )),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return usage("missing command; try: roomcast-host discover");
    };
    let mut sub = None;
    match first.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        "probe" | "flash" | "discover" => {}
        "image" => match args.next().as_deref() {
            Some("build") => {}
            Some("-h" | "--help") => return Ok(Command::Help),
            Some(other) => return usage(format!("unknown image command {other:?}; the command is image build")),
            None => return usage("image needs a command: image build --board pi4 --out FILE"),
        },
        "config" => match args.next().as_deref() {
            Some(s @ ("get" | "set")) => sub = Some(s.to_string()),
            Some("-h" | "--help") => return Ok(Command::Help),
            Some(other) => return usage(format!("unknown config command {other:?}; use config get or config set")),
            None => return usage("config needs get or set, e.g. config get roomcast-1a2b.local"),
        },
        other if other.starts_with('-') => return usage(format!("unknown flag {other}")),
        other => {
            return usage(format!(
                "unknown command {other:?}; the commands are probe, image build, flash, discover, config"
            ))
        }
    }
    let mut positional: Vec<String> = Vec::new();
    let mut secs: Option<Duration> = None;
    let mut json = false;
    let (mut board, mut out, mut binary, mut cache, mut work, mut mirror, mut password_file) =
        (None, None, None, None, None, None, None);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value = matches!(
            flag.as_str(),
            "--seconds"
                | "--board"
                | "--out"
                | "--binary"
                | "--cache"
                | "--work"
                | "--mirror"
                | "--password-file"
        );
        let value = if takes_value {
            match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return usage(format!("{flag} needs a value")),
            }
        } else {
            String::new()
        };
        let allowed: &[&str] = match (first.as_str(), sub.as_deref()) {
            ("probe", _) => &["--seconds"],
            ("discover", _) => &["--seconds", "--json"],
            ("image", _) => &[
                "--board", "--out", "--binary", "--cache", "--work", "--mirror",
            ],
            ("config", _) => &["--password-file"],
            _ => &[],
        };
        if flag.starts_with('-')
            && !matches!(flag.as_str(), "-h" | "--help")
            && !allowed.contains(&flag.as_str())
        {
            return usage(format!("unknown flag {flag}"));
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--seconds" => secs = Some(seconds(&value)?),
            "--json" => json = true,
            "--board" => {
                board = Some(
                    board_name(&value)
                        .ok_or_else(|| {
                            UsageError(format!(
                                "--board wants pi4 (or rpi4), cm4, pi-zero-2w, got {value:?}"
                            ))
                        })?
                        .to_string(),
                )
            }
            "--out" => out = Some(PathBuf::from(value)),
            "--binary" => binary = Some(PathBuf::from(value)),
            "--cache" => cache = Some(PathBuf::from(value)),
            "--work" => work = Some(PathBuf::from(value)),
            "--mirror" => mirror = Some(value),
            "--password-file" => password_file = Some(PathBuf::from(value)),
            _ => positional.push(arg),
        }
    }
    let host = |p: Option<&String>| -> Result<HttpUrl, UsageError> {
        let Some(h) = p else {
            return usage("config needs the box: HOST, HOST:PORT or http://HOST:PORT");
        };
        crate::boxconfig::box_url(h).map_err(UsageError)
    };
    match (first.as_str(), sub.as_deref()) {
        ("probe", _) => {
            let mut url = None;
            for p in positional {
                if url.is_some() {
                    return usage(format!("unexpected argument {p:?}"));
                }
                url = Some(HttpUrl::parse(&p).or_else(|e| usage(e.to_string()))?);
            }
            let Some(url) = url else {
                return usage("probe needs the box's address, e.g. http://192.168.1.20:8080");
            };
            Ok(Command::Probe {
                url,
                watch: secs.unwrap_or(Duration::from_secs(5)),
            })
        }
        ("discover", _) => {
            if let Some(p) = positional.first() {
                return usage(format!("unexpected argument {p:?}"));
            }
            Ok(Command::Discover {
                wait: secs.unwrap_or(Duration::from_secs(3)),
                json,
            })
        }
        ("flash", _) => match &positional[..] {
            [image, device] => Ok(Command::Flash {
                image: image.into(),
                device: device.into(),
            }),
            [_, _, extra, ..] => usage(format!("unexpected argument {extra:?}")),
            _ => usage("flash needs IMAGE and DEVICE, e.g. flash roomcast-pi4.img /dev/sdb"),
        },
        ("image", _) => {
            if let Some(p) = positional.first() {
                return usage(format!("unexpected argument {p:?}"));
            }
            let Some(board) = board else {
                return usage("image build needs --board, e.g. --board pi4");
            };
            let Some(out) = out else {
                return usage("image build needs --out FILE, e.g. --out roomcast-pi4.img");
            };
            Ok(Command::ImageBuild(ImageArgs {
                board,
                out,
                binary,
                cache,
                work,
                mirror,
            }))
        }
        (_, Some("get")) => {
            if positional.len() > 2 {
                return usage(format!("unexpected argument {:?}", positional[2]));
            }
            Ok(Command::ConfigGet {
                host: host(positional.first())?,
                key: positional.get(1).cloned(),
                password_file,
            })
        }
        _ => {
            let host = host(positional.first())?;
            let assignments: Vec<String> = positional.into_iter().skip(1).collect();
            if assignments.is_empty() {
                return usage("config set needs KEY=VALUE, e.g. video.fps=25");
            }
            if let Some(a) = assignments.iter().find(|a| !a.contains('=')) {
                return usage(format!(
                    "bad setting {a:?}: expected KEY=VALUE, e.g. video.fps=25"
                ));
            }
            Ok(Command::ConfigSet {
                host,
                assignments,
                password_file,
            })
        }
    }
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
    fn image_flash_discover_config() {
        let Command::ImageBuild(a) =
            p(&["image", "build", "--board", "rpi4", "--out", "x.img"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((a.board.as_str(), a.out.to_str()), ("pi4", Some("x.img")));
        assert_eq!(
            p(&["flash", "a.img", "/dev/sdz"]).unwrap(),
            Command::Flash {
                image: "a.img".into(),
                device: "/dev/sdz".into()
            }
        );
        assert_eq!(
            p(&["discover", "--seconds=2", "--json"]).unwrap(),
            Command::Discover {
                wait: Duration::from_secs(2),
                json: true
            }
        );
        let Command::ConfigGet { host, key, .. } =
            p(&["config", "get", "box.local", "video.fps"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (host.host.as_str(), host.port, key.as_deref()),
            ("box.local", 8080, Some("video.fps"))
        );
        let Command::ConfigSet {
            assignments,
            password_file,
            ..
        } = p(&[
            "config",
            "set",
            "10.0.0.2:9000",
            "video.fps=25",
            "--password-file",
            "pw",
        ])
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(assignments, ["video.fps=25"]);
        assert_eq!(password_file, Some(PathBuf::from("pw")));
    }

    #[test]
    fn bad_usage_is_one_line() {
        for (args, needle) in [
            (&[][..], "missing command"),
            (&["frob"][..], "unknown command"),
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
            (&["probe", "http://h:1", "--json"][..], "unknown flag"),
            (&["flash", "a.img"][..], "needs IMAGE and DEVICE"),
            (&["image"][..], "image needs a command"),
            (&["image", "build", "--out", "x"][..], "needs --board"),
            (
                &["image", "build", "--board", "pi3", "--out", "x"][..],
                "--board wants",
            ),
            (&["image", "build", "--board", "pi4"][..], "needs --out"),
            (&["config"][..], "config needs get or set"),
            (&["config", "get"][..], "config needs the box"),
            (&["config", "set", "h"][..], "needs KEY=VALUE"),
            (&["config", "set", "h", "video.fps"][..], "bad setting"),
            (&["discover", "x"][..], "unexpected argument"),
        ] {
            let e = p(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
            assert!(e.ends_with("(see roomcast-host --help)") && !e.contains('\n'));
        }
    }
}
