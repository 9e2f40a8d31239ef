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
pub mod ladder;
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
    /// Lower renditions next to `[video]`, largest first (see
    /// `ladder.rs`); left out = automatic (a 360-line rung above 480
    /// lines), `[]` = the top rendition alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Vec<ladder::Rung>>,
    /// Camera controls, applied without restarting the stream.
    pub camera: CameraControls,
    pub hls: Hls,
    /// Streams pushed to upstream servers (RTMP/RTMPS) or sent over SRT.
    pub outputs: Vec<Output>,
    /// Outputs given on the command line (`--rtmp`, `--srt`): they run
    /// after `outputs` for this run only. Never read from or written to the
    /// file, never shown in `outputs` by the API (see `run_outputs` in
    /// README "Configuration"), kept by every change the API makes. One
    /// equal to an entry of `outputs` runs once.
    #[serde(skip)]
    pub run_outputs: Vec<Output>,
    /// Board profile name (`boards/*.toml`, or `generic`), overriding the
    /// one recognised from the device tree; absent: recognise it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// Announce the box on the LAN by mDNS/DNS-SD (`_roomcast._tcp`,
    /// `_http._tcp`; see mdns.rs). `--no-mdns` turns it off for one run.
    pub mdns: bool,
    /// HTTPS beside HTTP (see control/tls.rs).
    pub https: Https,
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
    /// Which rendition is recorded (0: the top one).
    #[serde(skip_serializing_if = "is_zero")]
    pub rendition: u8,
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
            rendition: 0,
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
    /// Which rendition of the ladder it sends: 0 (the default) is the top
    /// one, `[video]`; 1 the first `ladder` rung, and so on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rendition: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

fn yes() -> bool {
    true
}

/// HTTPS: the same page, API and stream with the box's certificate (a
/// self-signed one made on first start, or one the admin uploads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Https {
    /// Port on the HTTP server's address; 0 turns HTTPS off. Read at start.
    pub port: u16,
    /// Answer plain HTTP with a redirect to HTTPS (applied at once).
    pub only: bool,
}

impl Default for Https {
    fn default() -> Self {
        Https {
            port: 8443,
            only: false,
        }
    }
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

/// The values of `hls.encryption`.
pub const ENCRYPTIONS: [&str; 2] = ["none", "aes-128"];

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
    /// `"none"` or `"aes-128"`: every segment and part encrypted with
    /// AES-128-CBC (RFC 8216 §4.3.2.4), keys served at `/hls/keys/` under
    /// the stream's access rules.
    pub encryption: String,
    /// A fresh key every this many segments (with `aes-128`).
    pub key_rotation_segments: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: "test".into(),
            encoder: "auto".into(),
            camera: Default::default(),
            video: Video::default(),
            ladder: None,
            hls: Hls::default(),
            outputs: Vec::new(),
            run_outputs: Vec::new(),
            board: None,
            mdns: true,
            https: Https::default(),
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
            encryption: "none".into(),
            // One key a minute with 1 s segments: a leaked key opens little.
            key_rotation_segments: 60,
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

fn no_such_rendition(r: u8, count: usize) -> String {
    format!(
        "must name a rendition of the ladder: 0 (the top one) to {} (got {r})",
        count - 1
    )
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
    /// The entries of `config.run_outputs` that are not also in
    /// `config.outputs`, with their URLs parsed.
    run: Vec<(Output, url::OutputUrl)>,
    /// Every rendition, the top one (`[video]`) first.
    renditions: Vec<Rendition>,
}

/// One rendition of the ladder as it is encoded and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
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

    /// Every rendition, the top one first: `[video]` and the ladder
    /// (automatic or explicit; none with pass-through, which has no
    /// pictures to scale).
    pub fn renditions(&self) -> &[Rendition] {
        &self.renditions
    }

    /// Every output that runs, with its parsed URL and its position: the
    /// configured ones, then the command line's.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, &Output, &url::OutputUrl)> {
        self.config
            .outputs
            .iter()
            .zip(&self.urls)
            .chain(self.run.iter().map(|(o, u)| (o, u)))
            .enumerate()
            .map(|(i, (o, u))| (i, o, u))
    }

    /// The outputs that run for this run only (from the command line, and
    /// not also configured), in the order they run after the configured ones.
    pub fn run_only_outputs(&self) -> impl Iterator<Item = &Output> {
        self.run.iter().map(|(o, _)| o)
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
        if !ENCRYPTIONS.contains(&h.encryption.as_str()) {
            return Err(field(
                "hls.encryption",
                format!(
                    "must be one of {} (got {:?})",
                    ENCRYPTIONS.join(", "),
                    h.encryption
                ),
            ));
        }
        in_range(
            "hls.key_rotation_segments",
            h.key_rotation_segments,
            1..=10_000,
            " segments",
        )?;
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
        // The command line's outputs run after the configured ones and are
        // named by their place in that sequence, like the ones before them.
        let run: Vec<&Output> = self
            .run_outputs
            .iter()
            .filter(|o| !self.outputs.contains(o))
            .collect();
        let all = self.outputs.len() + run.len();
        if all > 8 {
            let cli = match run.len() {
                0 => String::new(),
                n => format!(", {n} of them from the command line"),
            };
            return Err(field(
                "outputs",
                format!("at most 8 outputs (got {all}{cli})"),
            ));
        }
        let mut urls = Vec::with_capacity(all);
        for (i, o) in self.outputs.iter().chain(run.iter().copied()).enumerate() {
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
        let renditions = self.check_ladder(&encoder)?;
        for (i, o) in self.outputs.iter().chain(run.iter().copied()).enumerate() {
            if usize::from(o.rendition) >= renditions.len() {
                return Err(field(
                    format!("outputs[{i}].rendition"),
                    no_such_rendition(o.rendition, renditions.len()),
                ));
            }
        }
        if usize::from(self.record.rendition) >= renditions.len() {
            return Err(field(
                "record.rendition",
                no_such_rendition(self.record.rendition, renditions.len()),
            ));
        }
        let run_urls = urls.split_off(self.outputs.len());
        let run = run.into_iter().cloned().zip(run_urls).collect();
        Ok(ValidConfig {
            config: self,
            source,
            encoder,
            urls,
            run,
            renditions,
        })
    }

    /// The renditions `[video]` and `ladder` make, checked.
    fn check_ladder(&self, encoder: &EncoderSetting) -> Result<Vec<Rendition>, FieldError> {
        let v = &self.video;
        let rungs = match (&self.ladder, encoder) {
            (Some(r), EncoderSetting::Passthrough) if !r.is_empty() => {
                return Err(field(
                    "ladder",
                    "must be empty with encoder \"passthrough\": the camera's own H.264 gives no pictures to scale",
                ))
            }
            (_, EncoderSetting::Passthrough) => Vec::new(),
            (Some(r), _) => r.clone(),
            (None, _) => ladder::automatic(v.width, v.height, v.bitrate_kbps),
        };
        ladder::check(&rungs, v.width, v.height, v.bitrate_kbps)
            .map_err(|e| field(e.field, e.reason))?;
        let top = Rendition {
            width: v.width,
            height: v.height,
            bitrate_kbps: v.bitrate_kbps,
        };
        Ok(std::iter::once(top)
            .chain(rungs.iter().map(|r| Rendition {
                width: r.width,
                height: r.height,
                bitrate_kbps: r.bitrate_kbps,
            }))
            .collect())
    }
}

/// Checks that a change (the JSON of a PUT on `/api/config`, an imported
/// file) has the configuration's shape where parsing would take something
/// else: the whole is an object, each table (`video`, `camera`, `hls`,
/// `record`, `audio`, …) is an object, `outputs` is a list of objects.
/// serde builds a struct from an array as well, so without this
/// `{"video":[640,360]}` would set the width and height and reset the rest
/// of `[video]`, and `[]` would reset everything. The values inside are
/// left to parsing and [`Config::validate`].
pub fn check_shape(change: &serde_json::Value) -> Result<(), FieldError> {
    if !change.is_object() {
        return Err(field(
            "body",
            format!(
                "must be a JSON object with the settings to change, e.g. {{\"video\": {{\"fps\": 25}}}} (got {})",
                kind(change)
            ),
        ));
    }
    let mut template = serde_json::to_value(Config::default()).unwrap_or_default();
    // `ladder` is left out of the default (automatic); it is a list.
    template["ladder"] = serde_json::json!([]);
    if change.get("ladder").is_some_and(|l| l.is_null()) {
        // null: back to the automatic ladder.
        let mut c = change.clone();
        if let Some(o) = c.as_object_mut() {
            o.remove("ladder");
        }
        return check_tables(&template, &c, "");
    }
    check_tables(&template, change, "")
}

/// [`check_shape`] for the keys of `change` below `path`, by the shape of
/// the same keys in `template` (the default configuration as JSON).
fn check_tables(
    template: &serde_json::Value,
    change: &serde_json::Value,
    path: &str,
) -> Result<(), FieldError> {
    use serde_json::Value;
    let (Some(template), Some(change)) = (template.as_object(), change.as_object()) else {
        return Ok(());
    };
    for (key, value) in change {
        let name = match path {
            "" => key.clone(),
            _ => format!("{path}.{key}"),
        };
        match template.get(key) {
            Some(table @ Value::Object(fields)) => {
                if !value.is_object() {
                    let example = fields
                        .iter()
                        .next()
                        .map_or(String::new(), |(k, v)| format!("\"{k}\": {v}"));
                    return Err(field(
                        name,
                        format!(
                            "must be an object of settings, e.g. {{{example}}} (got {})",
                            kind(value)
                        ),
                    ));
                }
                check_tables(table, value, &name)?;
            }
            Some(Value::Array(_)) => {
                let example = match key.as_str() {
                    "ladder" => "{\"width\": 640, \"height\": 360, \"bitrate_kbps\": 800}",
                    _ => "{\"url\": \"rtmp://HOST/APP/KEY\"}",
                };
                let Some(items) = value.as_array() else {
                    return Err(field(
                        name,
                        format!(
                            "must be a list of objects, e.g. [{example}] (got {})",
                            kind(value)
                        ),
                    ));
                };
                if let Some((i, item)) = items.iter().enumerate().find(|(_, v)| !v.is_object()) {
                    return Err(field(
                        format!("{name}[{i}]"),
                        format!("must be an object, e.g. {example} (got {})", kind(item)),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a JSON value is, for error messages.
fn kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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

/// Reads and validates `path`; a missing file gives the defaults. A file
/// others may read (left by an older version, or written by hand) is made
/// the owner's only, as [`save`] writes it: it holds stream keys and
/// passphrases.
pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
    make_private(path);
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

/// Mode of the configuration file and its temp file: owner only.
const PRIVATE: u32 = 0o600;

/// Writes `cfg` to `path` atomically: the old file stays until the new one is
/// complete on disk. Only the owner may read it (mode 0600, whatever was on
/// disk before): it holds stream keys and passphrases. Command-line outputs
/// (`run_outputs`) are not written.
pub fn save(path: &Path, cfg: &ValidConfig) -> Result<(), ConfigError> {
    save_keeping(path, cfg, None)
}

/// Saves `cfg` writing only the keys the file already sets and those
/// `named` (a PUT's patch): what neither mentions stays a default, built-in
/// or the board's, rather than being frozen into the file.
pub fn save_named(
    path: &Path,
    cfg: &ValidConfig,
    named: &serde_json::Value,
) -> Result<(), ConfigError> {
    let on_disk = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .unwrap_or_default();
    let on_disk = serde_json::to_value(on_disk).unwrap_or_default();
    save_keeping(path, cfg, Some((&on_disk, named)))
}

/// Keeps in `full` the keys present in `a` or `b` (tables recursively;
/// any other value, lists included, whole).
fn keep_named(full: &mut toml::Table, a: &serde_json::Value, b: &serde_json::Value) {
    full.retain(|k, v| {
        let (ka, kb) = (&a[k], &b[k]);
        if ka.is_null() && kb.is_null() {
            return false;
        }
        if let toml::Value::Table(t) = v {
            if ka.is_object() || kb.is_object() {
                keep_named(t, ka, kb);
            }
        }
        true
    });
}

fn save_keeping(
    path: &Path,
    cfg: &ValidConfig,
    keep: Option<(&serde_json::Value, &serde_json::Value)>,
) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.into(),
        source,
    };
    let to_io = |e: toml::ser::Error| err(std::io::Error::other(e.to_string()));
    let mut table = toml::Table::try_from(cfg.get()).map_err(to_io)?;
    if let Some((a, b)) = keep {
        keep_named(&mut table, a, b);
    }
    let text = toml::to_string_pretty(&table).map_err(to_io)?;
    let text = format!("# roomcast configuration; see README \"Configuration\".\n{text}");
    write_atomic(path, text.as_bytes())
}

/// Puts back a configuration file's earlier bytes (a change that could not
/// be applied), atomically and privately like a save.
pub fn restore(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    write_atomic(path, bytes)
}

/// Temp file (0600), fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.into(),
        source,
    };
    // Until the new file replaces it, the old one holds the same secrets.
    make_private(path);
    let tmp = path.with_extension("toml.tmp");
    let mut f = create_private(&tmp).map_err(err)?;
    f.write_all(bytes)
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

/// A new, empty file at `path` that only the owner may read or write. A
/// file left there (a save cut short) is removed first, so neither its
/// mode nor its owner carries over; the mode is set on the open file as
/// well, as `mode` at creation is narrowed by the umask and applies only
/// to a file it creates.
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(PRIVATE))?;
    Ok(f)
}

/// Takes the group's and others' permissions off the file at `path`, if
/// there is one and they have any. Best effort: a file that is not ours
/// stays as it is (reading it is what tells the user).
fn make_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if meta.is_file() && mode & 0o077 != 0 {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700));
    }
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
        let cases: [(Breaker, &str); 17] = [
            (|c| c.video.width = 0, "video.width"),
            (|c| c.video.width = 641, "video.width"),
            (|c| c.video.height = 4000, "video.height"),
            (|c| c.video.fps = 0, "video.fps"),
            (|c| c.video.bitrate_kbps = 1, "video.bitrate_kbps"),
            (|c| c.video.gop = 0, "video.gop"),
            (|c| c.hls.segment_ms = 50, "hls.segment_ms"),
            (|c| c.hls.encryption = "AES-256".into(), "hls.encryption"),
            (
                |c| c.hls.key_rotation_segments = 0,
                "hls.key_rotation_segments",
            ),
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
    fn shapes_other_than_the_configurations_are_named() {
        use serde_json::json;
        for (change, name) in [
            (json!([]), "body"),
            (json!("x"), "body"),
            (json!({"video": [640, 360]}), "video"),
            (json!({"camera": "off"}), "camera"),
            (json!({"audio": []}), "audio"),
            (json!({"record": null}), "record"),
            (json!({"hls": true}), "hls"),
            (json!({"outputs": {}}), "outputs"),
            (
                json!({"outputs": [{"url": "rtmp://h/a/k"}, "rtmp://h/a/k"]}),
                "outputs[1]",
            ),
        ] {
            let e = check_shape(&change).unwrap_err();
            assert_eq!(e.field, name, "{change}");
            assert!(e.reason.starts_with("must be"), "{e}");
        }
        let e = check_shape(&json!({"video": [640, 360]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "video: must be an object of settings, e.g. {\"bitrate_kbps\": 2500} (got an array)"
        );
        // Values inside are parsing's business; unknown keys too.
        for fine in [
            json!({}),
            json!({"video": {"fps": "x"}, "camera": {"brightness": null}}),
            json!({"outputs": [], "board": null, "mdns": false, "nope": [1]}),
        ] {
            assert!(check_shape(&fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn command_line_outputs_run_after_the_configured_ones_once() {
        let o = |url: &str| Output {
            url: url.into(),
            enabled: true,
            ca_file: None,
            rendition: 0,
        };
        let mut c = Config {
            outputs: vec![o("rtmp://a/live/k1"), o("rtmp://b/live/k2")],
            run_outputs: vec![o("rtmp://b/live/k2"), o("rtmp://c/live/k3")],
            ..Default::default()
        };
        let v = c.clone().validate().unwrap();
        let urls: Vec<(usize, &str)> = v.outputs().map(|(i, o, _)| (i, o.url.as_str())).collect();
        assert_eq!(
            urls,
            [
                (0, "rtmp://a/live/k1"),
                (1, "rtmp://b/live/k2"),
                (2, "rtmp://c/live/k3")
            ]
        );
        let run: Vec<&str> = v.run_only_outputs().map(|o| o.url.as_str()).collect();
        assert_eq!(run, ["rtmp://c/live/k3"]);
        // Named by their place among all outputs; never in the file's form.
        c.run_outputs.push(o("rtmp://d/live"));
        assert_eq!(c.clone().validate().unwrap_err().field, "outputs[3].url");
        let text = toml::to_string(&c).unwrap();
        assert!(
            !text.contains("k3") && !text.contains("run_outputs"),
            "{text}"
        );
        assert!(toml::from_str::<Config>("run_outputs = []\n").is_err());
        c.run_outputs = (0..7).map(|i| o(&format!("rtmp://h/live/{i}"))).collect();
        let e = c.validate().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            (
                "outputs",
                "at most 8 outputs (got 9, 7 of them from the command line)"
            )
        );
    }

    /// A fresh directory and the path of config.toml in it.
    fn config_in(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("roomcast-cfg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CONFIG_FILE);
        (dir, path)
    }

    #[test]
    fn a_change_saves_only_what_it_names_and_what_the_file_had() {
        let (dir, path) = config_in("named");
        // The file sets only the source and the HLS window.
        std::fs::write(&path, "source = \"test\"\n[hls]\nwindow = 8\n").unwrap();
        let mut c = load(&path).unwrap().get().clone();
        c.video.bitrate_kbps = 1500;
        let patch = serde_json::json!({ "video": { "bitrate_kbps": 1500 } });
        save_named(&path, &c.validate().unwrap(), &patch).unwrap();
        let written: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let keys = |t: &toml::Table| t.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&written), ["hls", "source", "video"]);
        assert_eq!(keys(written["video"].as_table().unwrap()), ["bitrate_kbps"]);
        assert_eq!(keys(written["hls"].as_table().unwrap()), ["window"]);
        // A failed change puts the old bytes back.
        restore(&path, b"source = \"test\"\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"source = \"test\"\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_and_its_temp_file_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path) = config_in("mode");
        let tmp = dir.join("config.toml.tmp");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        // What an older version or a cut save left: both world-readable.
        std::fs::write(&path, "[video]\nfps = 25\ngop = 25\n").unwrap();
        std::fs::write(&tmp, "half a file").unwrap();
        set(&path, 0o644);
        set(&tmp, 0o644);
        let mut c = Config::default();
        c.outputs.push(Output {
            url: "rtmp://h/live/secretkey0000".into(),
            enabled: true,
            ca_file: None,
            rendition: 0,
        });
        save(&path, &c.clone().validate().unwrap()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(!tmp.exists());
        assert_eq!(load(&path).unwrap().get(), &c);
        // A temp file that cannot be replaced in place stops the save and
        // leaves the file as it was.
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("x"), "").unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            save(&path, &Config::default().validate().unwrap()),
            Err(ConfigError::Write { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::remove_dir_all(&tmp).unwrap();
        // Loading a file others may read makes it the owner's.
        set(&path, 0o644);
        load(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
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
