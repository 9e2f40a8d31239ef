//! The daemon's configuration: a TOML file in the data directory, the same
//! shape as JSON on `/api/config`.
//!
//! Parsing is strict (`deny_unknown_fields`, so a typo is an error rather than
//! a silently ignored setting); [`Config::validate`] is the one place values
//! are checked, and it yields a [`ValidConfig`], the only type the pipeline
//! accepts. Saving is atomic (temp file, fsync, rename, fsync of the
//! directory) so a power cut leaves the old file or the new one, never half.

pub mod board;
pub mod cli;
mod defaults;
pub mod srt_url;
pub mod url;

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Camera settings a user can change (applied at open and live).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraControls {
    /// Mains frequency for anti-flicker: 50, 60, or 0 to turn it off.
    pub power_line_hz: u32,
    pub auto_exposure: bool,
    pub auto_white_balance: bool,
    /// `None` leaves the camera's own default.
    pub brightness: Option<i32>,
}

impl Default for CameraControls {
    fn default() -> Self {
        CameraControls {
            power_line_hz: 50,
            auto_exposure: true,
            auto_white_balance: true,
            brightness: None,
        }
    }
}

/// Everything the user can set. See README "Configuration" for each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where pictures come from: `test` (the built-in test pattern) or
    /// `v4l2:/dev/videoN` (a camera; see `/api/devices`).
    pub source: String,
    /// Which encoder: `auto` (the board's hardware encoder if present, else
    /// openh264), `openh264`, `v4l2m2m:/dev/videoN`, or `passthrough` (the
    /// camera's own H.264).
    pub encoder: String,
    pub video: Video,
    /// Camera controls, applied without restarting the stream.
    pub camera: CameraControls,
    pub hls: Hls,
    /// Streams pushed to upstream servers (RTMP/RTMPS) or sent over SRT.
    pub outputs: Vec<Output>,
    /// Board profile name (`boards/*.toml`, or `generic`), overriding the
    /// one recognised from the device tree; absent: recognise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// Announce the box on the LAN by mDNS/DNS-SD (`_roomcast._tcp`,
    /// `_http._tcp`; see mdns.rs). `--no-mdns` turns it off for one run.
    pub mdns: bool,
    /// Recording to files on the box (see record.rs). `--record DIR` turns
    /// it on for one run.
    pub record: Record,
    /// Sound (see audio/): carried by every output as AAC-LC.
    pub audio: Audio,
}

/// Sound settings. Gain and mute change live; the rest restarts the audio
/// stage (and, for `source = "none"` or the channel count, the outputs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audio {
    /// `auto` (the test tone with the test pattern; with a camera the first
    /// ALSA capture device, silence until one is plugged in), `tone`,
    /// `alsa:NAME` (e.g. `alsa:hw:CARD=Device,DEV=0`, see `/api/devices`),
    /// or `none` (no audio track at all).
    pub source: String,
    /// 1 (mono) or 2 (stereo); a mono microphone is copied to both sides.
    pub channels: u8,
    /// AAC bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Gain in dB, -40..=30.
    pub gain_db: i32,
    pub mute: bool,
}

impl Default for Audio {
    fn default() -> Self {
        // 128 kbit/s stereo AAC-LC at 48 kHz: what streaming platforms ask
        // for, and clean speech from a room microphone.
        Audio {
            source: "auto".into(),
            channels: 2,
            bitrate_kbps: 128,
            gain_db: 0,
            mute: false,
        }
    }
}

/// The sample rate of every audio track we make.
pub const AUDIO_RATE: u32 = 48_000;

/// Recording settings: MPEG-TS files in a directory, rotated and pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Record {
    pub enabled: bool,
    /// Absolute path of the directory; empty means `DATA_DIR/recordings`.
    pub dir: String,
    /// A new file starts at the first keyframe after this many minutes.
    pub segment_minutes: u32,
    /// Recordings kept, in MiB; the oldest files are deleted first.
    pub keep_mb: u32,
}

impl Default for Record {
    fn default() -> Self {
        // Ten-minute files lose little to a power cut; 2 GiB is about two
        // hours at 2.5 Mbit/s and fits the smallest SD cards sold today.
        Record {
            enabled: false,
            dir: String::new(),
            segment_minutes: 10,
            keep_mb: 2048,
        }
    }
}

/// One upstream destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// `rtmp://HOST[:PORT]/APP/KEY` or `rtmps://…` (the key is a secret),
    /// or `srt://HOST:PORT?mode=…` (see README "SRT output"; the
    /// passphrase is a secret).
    pub url: String,
    /// A disabled output keeps its settings but does not connect.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// PEM file of the CA that signs an RTMPS server's certificate, for
    /// private servers; public servers are checked against the bundled roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

fn yes() -> bool {
    true
}

/// Picture and encoder settings (also what an encoder is opened with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Video {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Keyframe interval in frames; segments are cut on keyframes.
    pub gop: u32,
    /// Encoder threads; 0 lets the encoder choose.
    pub threads: u32,
}

/// HLS packaging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hls {
    /// Target segment length in milliseconds (cut at the first keyframe after it).
    pub segment_ms: u32,
    /// Segments kept in the live playlist.
    pub window: u32,
    /// Serve low-latency HLS (CMAF parts, blocking reloads) at
    /// `/hls/index.m3u8`; the classic MPEG-TS playlist is always at
    /// `/hls/ts/index.m3u8`.
    pub low_latency: bool,
    /// LL-HLS part target in milliseconds.
    pub part_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: "test".into(),
            encoder: "auto".into(),
            camera: Default::default(),
            video: Video::default(),
            hls: Hls::default(),
            outputs: Vec::new(),
            board: None,
            mdns: true,
            record: Record::default(),
            audio: Audio::default(),
        }
    }
}

impl Default for Video {
    fn default() -> Self {
        // 720p30 at 2.5 Mbit/s: a talk with slides stays sharp and a Pi 4
        // encodes it in software with headroom.
        Video {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_kbps: 2500,
            gop: 30,
            threads: 0,
        }
    }
}

impl Default for Hls {
    fn default() -> Self {
        // Short segments keep plain-HLS latency low for a LAN audience.
        // Parts of 250 ms: under 200 ms hls.js has been seen to stall, and
        // four parts per 1 s segment keep latency near one second.
        Hls {
            segment_ms: 1000,
            window: 6,
            low_latency: true,
            part_ms: 250,
        }
    }
}

/// A value that failed validation: which field, and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Dotted path of the field, e.g. `video.width` or `outputs[1].url`.
    pub field: String,
    pub reason: String,
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A configuration whose every value has been checked. Only
/// [`Config::validate`] makes one, so the pipeline never sees a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    config: Config,
    source: VideoSource,
    encoder: EncoderSetting,
    /// `config.outputs[i].url`, parsed.
    urls: Vec<url::OutputUrl>,
}

/// Where pictures come from (`source`), parsed once by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// The built-in test pattern.
    TestPattern,
    /// A V4L2 camera at this device node.
    Camera(String),
}

/// The encoder as configured (`encoder`), parsed once by validation;
/// `encoder::resolve` turns `Auto` into a real one at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderSetting {
    Auto,
    OpenH264,
    /// A V4L2 stateful encoder at this device node.
    M2m(String),
    /// The camera's own H.264.
    Passthrough,
}

impl ValidConfig {
    pub fn get(&self) -> &Config {
        &self.config
    }

    pub fn source(&self) -> &VideoSource {
        &self.source
    }

    pub fn encoder(&self) -> &EncoderSetting {
        &self.encoder
    }

    /// Every configured output with its parsed URL and its position.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, &Output, &url::OutputUrl)> {
        self.config
            .outputs
            .iter()
            .zip(&self.urls)
            .enumerate()
            .map(|(i, (o, u))| (i, o, u))
    }

    /// The playlist's EXT-X-TARGETDURATION in whole seconds: the longest a
    /// segment can be, i.e. the segment target or one GOP, whichever is longer.
    /// The audio track every output carries, `None` when audio is off.
    pub fn audio_format(&self) -> Option<crate::base::frame::AudioFormat> {
        let a = &self.config.audio;
        (a.source != "none").then_some(crate::base::frame::AudioFormat {
            sample_rate: AUDIO_RATE,
            channels: a.channels,
            bitrate_kbps: a.bitrate_kbps,
        })
    }

    pub fn target_duration_s(&self) -> u32 {
        let v = &self.config.video;
        let gop_ms = u64::from(v.gop) * 1000 / u64::from(v.fps);
        let longest = u64::from(self.config.hls.segment_ms).max(gop_ms);
        // Validation bounds both terms well inside u32.
        u32::try_from(longest.div_ceil(1000)).unwrap_or(u32::MAX)
    }
}

/// `Err` naming `name` unless `value` is in `range` ("must be between 1
/// and 60 ms (got 0)": `unit` is what follows the bounds, with its space).
fn in_range<T>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), FieldError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    Err(field(
        name,
        format!(
            "must be between {} and {}{unit} (got {value})",
            range.start(),
            range.end()
        ),
    ))
}

/// [`in_range`] for a picture dimension, which must also be even ("must be
/// an even number between 16 and 3840 (got 0)").
fn even_in_range(
    name: &str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<(), FieldError> {
    if range.contains(&value) && value.is_multiple_of(2) {
        return Ok(());
    }
    Err(field(
        name,
        format!(
            "must be an even number between {} and {} (got {value})",
            range.start(),
            range.end()
        ),
    ))
}

/// `/dev/videoN`-like: an absolute path without `..`, so a config cannot
/// point the daemon at arbitrary files.
fn is_device_path(p: &str) -> bool {
    p.starts_with("/dev/") && !p.contains("..") && p.len() > 5
}

impl Config {
    /// Checks every value; the first bad one is reported.
    pub fn validate(self) -> Result<ValidConfig, FieldError> {
        let source = match self.source.as_str() {
            "test" => VideoSource::TestPattern,
            s => match s.strip_prefix("v4l2:").filter(|p| is_device_path(p)) {
                Some(path) => VideoSource::Camera(path.to_string()),
                None => {
                    return Err(field(
                        "source",
                        format!("must be \"test\" or \"v4l2:/dev/videoN\" (got {s:?})"),
                    ))
                }
            },
        };
        let encoder = match self.encoder.as_str() {
            "auto" => EncoderSetting::Auto,
            "openh264" => EncoderSetting::OpenH264,
            "passthrough" if matches!(source, VideoSource::Camera(_)) => EncoderSetting::Passthrough,
            "passthrough" => {
                return Err(field(
                    "encoder",
                    "passthrough needs a camera source (the test pattern has no H.264 of its own)",
                ))
            }
            e => match e.strip_prefix("v4l2m2m:").filter(|p| is_device_path(p)) {
                Some(path) => EncoderSetting::M2m(path.to_string()),
                None => {
                    return Err(field(
                        "encoder",
                        format!(
                            "must be \"auto\", \"openh264\", \"passthrough\" or \"v4l2m2m:/dev/videoN\" (got {e:?})"
                        ),
                    ))
                }
            },
        };
        let cam = &self.camera;
        if ![0, 50, 60].contains(&cam.power_line_hz) {
            return Err(field(
                "camera.power_line_hz",
                format!("must be 50, 60 or 0 (off) (got {})", cam.power_line_hz),
            ));
        }
        if let Some(b) = cam.brightness.filter(|b| !(-10_000..=10_000).contains(b)) {
            return Err(field(
                "camera.brightness",
                format!("must be between -10000 and 10000, or left out (got {b})"),
            ));
        }
        let v = &self.video;
        // openh264 refuses pictures larger than 3840x2160.
        even_in_range("video.width", v.width, 16..=3840)?;
        even_in_range("video.height", v.height, 16..=2160)?;
        in_range("video.fps", v.fps, 1..=60, "")?;
        in_range("video.bitrate_kbps", v.bitrate_kbps, 64..=50_000, " kbit/s")?;
        if v.gop < 1 || v.gop > v.fps * 10 {
            return Err(field(
                "video.gop",
                format!(
                    "must be between 1 and 10 seconds of frames (1..={} at {} fps; got {})",
                    v.fps * 10,
                    v.fps,
                    v.gop
                ),
            ));
        }
        if v.threads > 16 {
            return Err(field(
                "video.threads",
                format!("must be between 0 (automatic) and 16 (got {})", v.threads),
            ));
        }
        let h = &self.hls;
        in_range("hls.segment_ms", h.segment_ms, 500..=10_000, " ms")?;
        in_range("hls.window", h.window, 3..=60, " segments")?;
        if !(100..=2000).contains(&h.part_ms) || h.part_ms * 2 > h.segment_ms {
            return Err(field(
                "hls.part_ms",
                format!(
                    "must be between 100 and 2000 ms and at most half of hls.segment_ms (got {})",
                    h.part_ms
                ),
            ));
        }
        if let Some(b) = self
            .board
            .as_deref()
            .filter(|b| !crate::config::board::is_known(b))
        {
            return Err(field(
                "board",
                format!(
                    "unknown board {b:?}; use one of {} or leave it out",
                    crate::config::board::names().join(", ")
                ),
            ));
        }
        let r = &self.record;
        if !r.dir.is_empty()
            && (!Path::new(&r.dir).is_absolute() || r.dir.contains('\0') || r.dir.len() > 1024)
        {
            return Err(field(
                "record.dir",
                format!(
                    "must be an absolute directory path, or empty for DATA_DIR/recordings (got {:?})",
                    r.dir
                ),
            ));
        }
        in_range(
            "record.segment_minutes",
            r.segment_minutes,
            1..=120,
            " minutes",
        )?;
        in_range("record.keep_mb", r.keep_mb, 64..=1_000_000, " MB")?;
        let a = &self.audio;
        let alsa_name = a.source.strip_prefix("alsa:");
        if !matches!(a.source.as_str(), "auto" | "tone" | "none")
            && !alsa_name.is_some_and(|n| {
                !n.is_empty() && n.len() <= 128 && n.chars().all(|c| c.is_ascii_graphic())
            })
        {
            return Err(field(
                "audio.source",
                format!(
                    "must be \"auto\", \"tone\", \"none\" or \"alsa:NAME\" (got {:?})",
                    a.source
                ),
            ));
        }
        if !(1..=2).contains(&a.channels) {
            return Err(field(
                "audio.channels",
                format!("must be 1 or 2 (got {})", a.channels),
            ));
        }
        in_range("audio.bitrate_kbps", a.bitrate_kbps, 32..=320, " kbit/s")?;
        in_range("audio.gain_db", a.gain_db, -40..=30, " dB")?;
        if self.outputs.len() > 8 {
            return Err(field("outputs", "at most 8 outputs"));
        }
        let mut urls = Vec::with_capacity(self.outputs.len());
        for (i, o) in self.outputs.iter().enumerate() {
            match url::OutputUrl::parse(&o.url) {
                Ok(u) => urls.push(u),
                Err(reason) => return Err(field(format!("outputs[{i}].url"), reason.to_string())),
            }
            if o.ca_file.as_ref().is_some_and(|f| f.is_empty()) {
                return Err(field(
                    format!("outputs[{i}].ca_file"),
                    "must be a file path or left out",
                ));
            }
        }
        Ok(ValidConfig {
            config: self,
            source,
            encoder,
            urls,
        })
    }
}

/// Why the stored configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration: {message} (fix or delete the file; see README \"Configuration\")")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {source} (see README \"Configuration\")")]
    Invalid { path: PathBuf, source: FieldError },
    #[error("cannot save {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads and validates `path`; a missing file gives the defaults.
pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Config::default()
                .validate()
                .expect("the default configuration is valid"))
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        // toml's message spans several lines with a caret; one line is enough.
        message: e.message().to_string(),
    })?;
    cfg.validate().map_err(|source| ConfigError::Invalid {
        path: path.into(),
        source,
    })
}

/// Writes `cfg` to `path` atomically: the old file stays until the new one is
/// complete on disk.
pub fn save(path: &Path, cfg: &ValidConfig) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.into(),
        source,
    };
    let text =
        toml::to_string_pretty(cfg.get()).map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let tmp = path.with_extension("toml.tmp");
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(b"# roomcast configuration; see README \"Configuration\".\n")
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is on disk.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let v = Config::default().validate().unwrap();
        assert_eq!(v.target_duration_s(), 1);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Breaker = fn(&mut Config);
        let cases: [(Breaker, &str); 15] = [
            (|c| c.video.width = 0, "video.width"),
            (|c| c.video.width = 641, "video.width"),
            (|c| c.video.height = 4000, "video.height"),
            (|c| c.video.fps = 0, "video.fps"),
            (|c| c.video.bitrate_kbps = 1, "video.bitrate_kbps"),
            (|c| c.video.gop = 0, "video.gop"),
            (|c| c.hls.segment_ms = 50, "hls.segment_ms"),
            (|c| c.source = "v4l2:/etc/passwd".into(), "source"),
            (|c| c.encoder = "passthrough".into(), "encoder"),
            (|c| c.camera.power_line_hz = 55, "camera.power_line_hz"),
            (|c| c.encoder = "x264".into(), "encoder"),
            (|c| c.record.dir = "recordings".into(), "record.dir"),
            (|c| c.record.segment_minutes = 0, "record.segment_minutes"),
            (|c| c.record.segment_minutes = 121, "record.segment_minutes"),
            (|c| c.record.keep_mb = 63, "record.keep_mb"),
        ];
        for (break_it, name) in cases {
            let mut c = Config::default();
            break_it(&mut c);
            assert_eq!(c.validate().unwrap_err().field, name);
        }
    }

    #[test]
    fn target_duration_covers_long_gops() {
        let mut c = Config::default();
        c.video.gop = 75; // 2.5 s at 30 fps
        assert_eq!(c.validate().unwrap().target_duration_s(), 3);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<Config>("[video]\nwidht = 640\n").unwrap_err();
        assert!(e.message().contains("widht"), "{}", e.message());
    }

    #[test]
    fn save_then_load_round_trips_and_partial_files_use_defaults() {
        let dir = std::env::temp_dir().join(format!("roomcast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CONFIG_FILE);
        let mut c = Config::default();
        c.video.bitrate_kbps = 900;
        let v = c.validate().unwrap();
        save(&path, &v).unwrap();
        assert_eq!(load(&path).unwrap(), v);
        std::fs::write(&path, "[video]\nfps = 25\ngop = 25\n").unwrap();
        let l = load(&path).unwrap();
        assert_eq!((l.get().video.fps, l.get().video.width), (25, 1280));
        std::fs::write(&path, "[video]\nfps = 0\n").unwrap();
        assert!(matches!(load(&path), Err(ConfigError::Invalid { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
