//! Command line: the contract in design.md. Flags override the stored
//! configuration for one run; they are never written back. Outputs given
//! here are run-only (`Config::run_outputs`): changes through the API keep
//! them.

use crate::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: roomcast [--config FILE] [--data-dir DIR] [--http ADDR:PORT] [--https ADDR:PORT|off]
                [--source test|v4l2:/dev/videoN] [--size WxH] [--fps N]
                [--encoder auto|openh264|v4l2m2m:/dev/videoN|passthrough]
                [--bitrate KBPS] [--gop FRAMES]
                [--rtmp URL]... [--srt URL]... [--record DIR]
                [--board NAME] [--no-mdns]

  --config FILE     configuration file (default: DATA_DIR/config.toml)
  --data-dir DIR    where configuration and state live
                    (default: $ROOMCAST_DATA_DIR, else ~/.local/share/roomcast)
  --http ADDR:PORT  web page, API and HLS (default: 0.0.0.0:8080)
  --https ADDR:PORT the same over HTTPS for this run (default: the --http
                    address with config https.port, 8443), or `off`
  --source S        test (the built-in test pattern) or v4l2:/dev/videoN
                    (a camera; `GET /api/devices` lists them and their modes)
  --size WxH        picture size, e.g. 1280x720
  --fps N           frames per second
  --encoder E       auto (hardware encoder if the board has one, else
                    openh264), openh264, v4l2m2m:/dev/videoN, or passthrough
                    (the camera's own H.264)
  --bitrate KBPS    target bitrate in kbit/s
  --gop FRAMES      keyframe interval in frames
  --board NAME      board profile (pi4, pi5, pi-zero-2w, cm4,
                    generic-aarch64-uvc, generic) instead of the one
                    recognised from /proc/device-tree/model
  --no-mdns         do not announce the box on the LAN by mDNS (config: mdns = false)
  --reset-password  forget the web page's admin password and API tokens, print
                    a fresh setup code (the page asks for it with the new
                    password), then exit
  --rtmp URL        also push to rtmp://HOST[:PORT]/APP/KEY or rtmps://…
  --srt URL         also send MPEG-TS over SRT: srt://HOST:PORT?mode=caller|
                    listener|rendezvous&latency=MS&passphrase=P&pbkeylen=16|24|32
                    &streamid=S (listener: srt://:PORT?mode=listener)
                    (--rtmp and --srt outputs run until the daemon stops,
                    whatever the API changes, and are never saved)
  --record DIR      also record the stream into DIR as MPEG-TS files
                    (config: [record]; segment_minutes, keep_mb)";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub http: SocketAddr,
    /// `--https`: where HTTPS listens this run; `Some(None)` is `off`.
    pub https: Option<Option<SocketAddr>>,
    pub overrides: Overrides,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Run,
    /// Forget the admin password and API tokens, then exit.
    ResetPassword,
    Help,
    Version,
}

/// Settings given on the command line, applied over the stored config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub source: Option<String>,
    pub size: Option<(u32, u32)>,
    pub fps: Option<u32>,
    pub encoder: Option<String>,
    pub bitrate_kbps: Option<u32>,
    pub gop: Option<u32>,
    /// `--rtmp URL` and `--srt URL`: outputs for this run only
    /// (`Config::run_outputs`), after the configured ones and kept through
    /// every change made through the API.
    pub outputs: Vec<String>,
    /// `--board NAME`: chooses the board profile (see `board::select`);
    /// not a configuration value, so [`Overrides::apply`] leaves it out.
    pub board: Option<String>,
    /// `--no-mdns`: no mDNS announcement this run.
    pub no_mdns: bool,
    /// `--record DIR` (made absolute): record into DIR this run.
    pub record: Option<String>,
}

impl Overrides {
    pub fn apply(&self, mut c: Config) -> Config {
        if let Some(s) = &self.source {
            c.source = s.clone();
        }
        if let Some((w, h)) = self.size {
            c.video.width = w;
            c.video.height = h;
        }
        if let Some(f) = self.fps {
            c.video.fps = f;
        }
        if let Some(e) = &self.encoder {
            c.encoder = e.clone();
        }
        if let Some(b) = self.bitrate_kbps {
            c.video.bitrate_kbps = b;
        }
        if let Some(g) = self.gop {
            c.video.gop = g;
        }
        if self.no_mdns {
            c.mdns = false;
        }
        if let Some(dir) = &self.record {
            c.record.enabled = true;
            c.record.dir = dir.clone();
        }
        for url in &self.outputs {
            c.run_outputs.push(crate::config::Output {
                url: url.clone(),
                enabled: true,
                ca_file: None,
                rendition: 0,
            });
        }
        c
    }
}

/// A bad command line: one line saying what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (see roomcast --help)")]
pub struct CliError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

fn number(flag: &str, v: &str) -> Result<u32, CliError> {
    v.parse()
        .or_else(|_| err(format!("{flag} wants a whole number, got {v:?}")))
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, CliError> {
    let mut out = Args {
        config_file: None,
        data_dir: None,
        http: SocketAddr::from(([0, 0, 0, 0], 8080)),
        https: None,
        overrides: Overrides::default(),
        action: Action::Run,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        const VALUE_FLAGS: [&str; 14] = [
            "--board",
            "--config",
            "--data-dir",
            "--http",
            "--https",
            "--source",
            "--size",
            "--fps",
            "--encoder",
            "--bitrate",
            "--gop",
            "--srt",
            "--rtmp",
            "--record",
        ];
        let value = if VALUE_FLAGS.contains(&flag.as_str()) {
            match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => return err(format!("{flag} needs a value")),
            }
        } else {
            String::new()
        };
        let o = &mut out.overrides;
        match flag.as_str() {
            "--help" | "-h" => out.action = Action::Help,
            "--version" | "-V" => out.action = Action::Version,
            "--reset-password" => out.action = Action::ResetPassword,
            "--no-mdns" => o.no_mdns = true,
            "--config" => out.config_file = Some(value.into()),
            "--data-dir" => out.data_dir = Some(value.into()),
            "--http" => {
                out.http = value.parse().or_else(|_| {
                    err(format!(
                        "--http wants ADDR:PORT such as 0.0.0.0:8080, got {value:?}"
                    ))
                })?
            }
            "--https" if value == "off" => out.https = Some(None),
            "--https" => {
                out.https = Some(Some(value.parse().or_else(|_| {
                    err(format!(
                        "--https wants ADDR:PORT such as 0.0.0.0:8443, or off, got {value:?}"
                    ))
                })?))
            }
            "--source" => o.source = Some(value),
            "--size" => {
                let parsed = value
                    .split_once(['x', 'X'])
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
                let Some((w, h)) = parsed else {
                    return err(format!("--size wants WxH such as 1280x720, got {value:?}"));
                };
                o.size = Some((w, h));
            }
            "--fps" => o.fps = Some(number("--fps", &value)?),
            "--encoder" => o.encoder = Some(value),
            "--bitrate" => o.bitrate_kbps = Some(number("--bitrate", &value)?),
            "--gop" => o.gop = Some(number("--gop", &value)?),
            "--board" if crate::config::board::is_known(&value) => o.board = Some(value),
            "--board" => {
                return err(format!(
                    "--board wants one of {}, got {value:?}",
                    crate::config::board::names().join(", ")
                ))
            }
            "--rtmp" => o.outputs.push(value),
            "--srt" if value.starts_with("srt://") => o.outputs.push(value),
            "--srt" => {
                return err(format!(
                    "--srt wants srt://HOST:PORT?mode=caller|listener|rendezvous..., got {:?}",
                    crate::config::url::mask_url(&value)
                ))
            }
            "--record" => {
                // The daemon's working directory is nobody's business; the
                // configuration holds absolute paths only.
                let dir = std::path::absolute(&value)
                    .ok()
                    .filter(|_| !value.is_empty())
                    .and_then(|p| p.to_str().map(str::to_string));
                let Some(dir) = dir else {
                    return err(format!(
                        "--record wants a directory (UTF-8 path), got {value:?}"
                    ));
                };
                o.record = Some(dir);
            }
            other if other.starts_with('-') => return err(format!("unknown flag {other}")),
            other => return err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, CliError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn no_arguments_runs_with_defaults() {
        let a = p(&[]).unwrap();
        assert_eq!(a.action, Action::Run);
        assert_eq!(a.http.port(), 8080);
        assert_eq!(a.overrides, Overrides::default());
    }

    #[test]
    fn overrides_parse_both_spellings() {
        let a = p(&[
            "--size",
            "640x360",
            "--fps=25",
            "--gop",
            "50",
            "--bitrate",
            "800",
        ])
        .unwrap();
        let c = a.overrides.apply(Config::default());
        assert_eq!((c.video.width, c.video.height, c.video.fps), (640, 360, 25));
        assert_eq!((c.video.gop, c.video.bitrate_kbps), (50, 800));
    }

    #[test]
    fn srt_flags_add_outputs() {
        let a = p(&[
            "--srt",
            "srt://:9000?mode=listener",
            "--srt=srt://10.0.0.2:9000?passphrase=0123456789",
        ])
        .unwrap();
        let c = a.overrides.apply(Config::default());
        assert!(c.outputs.is_empty(), "run-only, not configured");
        let urls: Vec<&str> = c.run_outputs.iter().map(|o| o.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "srt://:9000?mode=listener",
                "srt://10.0.0.2:9000?passphrase=0123456789"
            ]
        );
        let v = c.validate().unwrap();
        assert_eq!(v.outputs().count(), 2);
        assert_eq!(v.run_only_outputs().count(), 2);
        // A bad SRT URL is caught by validation, naming the output.
        let a = p(&["--srt", "srt://h:1?mode=pull"]).unwrap();
        let e = a.overrides.apply(Config::default()).validate().unwrap_err();
        assert_eq!(e.field, "outputs[0].url");
        assert!(e.reason.contains("mode must be caller"), "{}", e.reason);
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        for (args, needle) in [
            (&["--size", "big"][..], "--size wants WxH"),
            (&["--fps", "x"][..], "--fps wants a whole number"),
            (&["--http", "8080"][..], "--http wants ADDR:PORT"),
            (&["--srt", "rtmp://h/a/k"][..], "--srt wants srt://"),
            (&["--record", ""][..], "--record wants a directory"),
            (&["--board", "pi3"][..], "--board wants one of pi4, pi5"),
            (&["--frobnicate"][..], "unknown flag"),
            (&["--gop"][..], "needs a value"),
        ] {
            let e = p(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn no_mdns_turns_the_announcement_off() {
        assert!(Config::default().mdns);
        let a = p(&["--no-mdns"]).unwrap();
        assert!(!a.overrides.apply(Config::default()).mdns);
        assert!(p(&[]).unwrap().overrides.apply(Config::default()).mdns);
    }

    #[test]
    fn record_flag_turns_recording_on_with_an_absolute_dir() {
        assert!(!Config::default().record.enabled);
        let a = p(&["--record", "/media/usb/rec"]).unwrap();
        let c = a.overrides.apply(Config::default());
        assert!(c.record.enabled);
        assert_eq!(c.record.dir, "/media/usb/rec");
        let a = p(&["--record=rec"]).unwrap();
        let c = a.overrides.apply(Config::default()).validate().unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(std::path::Path::new(&c.get().record.dir), cwd.join("rec"));
    }

    #[test]
    fn zero_size_parses_but_fails_validation() {
        let a = p(&["--size", "0x0"]).unwrap();
        let e = a.overrides.apply(Config::default()).validate().unwrap_err();
        assert_eq!(e.field, "video.width");
    }
}
