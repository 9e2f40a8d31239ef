//! Board profiles: which hardware the daemon runs on, and what follows from
//! it (default video profile, status LED and button lines).
//!
//! The profiles are the reviewed files in `boards/*.toml` (format in
//! `boards/README.md`), built into the binary. [`select`] picks one from an
//! explicit name (`--board NAME` or `board` in the configuration), else from
//! the device tree (`/proc/device-tree/model` prefixes, then
//! `/proc/device-tree/compatible` strings), else the profile marked
//! `fallback` when there is a device tree but no profile fits. Without a
//! device tree (an x86 development machine) the board is [`GENERIC`], which
//! has no profile: defaults stay as they are and there is no GPIO.
//!
//! Everything here is pure except [`read_device_tree`] and [`file_keys`];
//! the device-tree strings are passed in so tests can play any board.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

/// Name of the board without a profile (no device tree, e.g. x86).
pub const GENERIC: &str = "generic";

/// The format version of `boards/*.toml` this code reads.
const SCHEMA: u32 = 1;

/// The profiles built into the binary: (name, TOML text).
const EMBEDDED: [(&str, &str); 5] = [
    ("pi4", include_str!("../../../../boards/pi4.toml")),
    ("pi5", include_str!("../../../../boards/pi5.toml")),
    (
        "pi-zero-2w",
        include_str!("../../../../boards/pi-zero-2w.toml"),
    ),
    ("cm4", include_str!("../../../../boards/cm4.toml")),
    (
        "generic-aarch64-uvc",
        include_str!("../../../../boards/generic-aarch64-uvc.toml"),
    ),
];

/// One `boards/*.toml` file. Field meanings: `boards/README.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub schema: u32,
    pub name: String,
    pub description: String,
    #[serde(rename = "match")]
    pub matching: Match,
    pub build: Build,
    pub encoder: EncoderDefaults,
    pub video: VideoDefaults,
    #[serde(default)]
    pub gpio: Gpio,
    pub image: Image,
}

/// How a running board is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Prefixes of `/proc/device-tree/model` (exact, case-sensitive).
    pub device_tree_model: Vec<String>,
    /// Strings of `/proc/device-tree/compatible`; any one in common matches.
    pub device_tree_compatible: Vec<String>,
    /// The profile used when a device tree exists but nothing else matches.
    #[serde(default)]
    pub fallback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Rust target triple of the image's binary.
    pub rust_target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderDefaults {
    /// V4L2 M2M encoder node, when the board has one.
    pub device: Option<String>,
    /// Kernel driver expected behind `device`.
    pub driver: Option<String>,
    /// `--encoder` value to use.
    pub default: String,
    /// `--encoder` value when `default` cannot be used.
    pub fallback: Option<String>,
}

/// Initial values of `source` and `[video]` on this board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoDefaults {
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub gop: u32,
    /// The rendition ladder below `[video]` (`ladder` in the
    /// configuration); left out = automatic, `[]` = one rendition.
    #[serde(default)]
    pub ladder: Option<Vec<super::ladder::Rung>>,
}

/// Status LED and button; a board may have neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpio {
    pub status_led: Option<GpioLine>,
    pub button: Option<GpioLine>,
}

/// One GPIO line, by chip label (not `/dev/gpiochipN`, whose number is not
/// stable) and line offset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioLine {
    /// Chip label as `gpiodetect` prints it, e.g. `pinctrl-bcm2711`.
    pub chip: String,
    /// Line offset on that chip (BCM GPIO number on a Raspberry Pi).
    pub line: u32,
    /// The line reads or drives 0 for "pressed" / "on".
    pub active_low: bool,
    /// Input bias; absent for outputs.
    #[serde(default)]
    pub bias: Option<Bias>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bias {
    PullUp,
    PullDown,
    Disabled,
}

/// What the SD image needs for this board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub packages: Vec<String>,
    pub config_txt: Vec<String>,
}

/// Why no board could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("unknown board {name:?}; known boards: {known}")]
    Unknown { name: String, known: String },
    /// A built-in profile does not parse: a bug caught by the tests.
    #[error("built-in board profile {name} is broken: {message}")]
    BadProfile { name: String, message: String },
}

/// Why the board was chosen; shown in `/api/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBy {
    /// `--board` or `board` in the configuration.
    Override,
    /// A `device_tree_model` prefix.
    Model,
    /// A `device_tree_compatible` string.
    Compatible,
    /// A device tree that no profile matched: the fallback profile.
    Fallback,
    /// No device tree at all: [`GENERIC`].
    NoDeviceTree,
}

impl SelectedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectedBy::Override => "override",
            SelectedBy::Model => "device-tree model",
            SelectedBy::Compatible => "device-tree compatible",
            SelectedBy::Fallback => "fallback",
            SelectedBy::NoDeviceTree => "no device tree",
        }
    }
}

/// The board the daemon runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// `None` for [`GENERIC`].
    pub profile: Option<Profile>,
    /// `/proc/device-tree/model` without its NUL, when there is one.
    pub model: Option<String>,
    pub selected_by: SelectedBy,
}

impl Board {
    /// The board without a profile: no GPIO, no changed defaults.
    pub fn generic(model: Option<String>) -> Board {
        Board {
            profile: None,
            model,
            selected_by: SelectedBy::NoDeviceTree,
        }
    }

    pub fn name(&self) -> &str {
        self.profile.as_ref().map_or(GENERIC, |p| p.name.as_str())
    }

    /// The `"board"` object of `/api/status`.
    pub fn status_json(&self) -> Value {
        json!({
            "name": self.name(),
            "model": self.model,
            "selected_by": self.selected_by.as_str(),
        })
    }
}

/// Every built-in profile, parsed and checked.
pub fn profiles() -> Result<Vec<Profile>, BoardError> {
    EMBEDDED
        .iter()
        .map(|(name, text)| {
            let bad = |message: String| BoardError::BadProfile {
                name: name.to_string(),
                message,
            };
            let p: Profile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
            if p.schema != SCHEMA {
                return Err(bad(format!(
                    "schema {} (this build reads {SCHEMA})",
                    p.schema
                )));
            }
            if p.name != *name {
                return Err(bad(format!("name {:?} differs from its file", p.name)));
            }
            Ok(p)
        })
        .collect()
}

/// Names `--board` accepts.
pub fn names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|(n, _)| *n).chain([GENERIC]).collect()
}

pub fn is_known(name: &str) -> bool {
    names().contains(&name)
}

/// Chooses the board: `name` (from `--board` or the configuration) wins;
/// else the device tree's `model` and `compatible` strings; else the
/// fallback profile when there is a device tree, [`GENERIC`] when not.
pub fn select(
    name: Option<&str>,
    model: Option<&str>,
    compatible: &[String],
) -> Result<Board, BoardError> {
    let model_owned = model.map(str::to_string);
    if name == Some(GENERIC) {
        return Ok(Board {
            selected_by: SelectedBy::Override,
            ..Board::generic(model_owned)
        });
    }
    let all = profiles()?;
    let found = |p: Profile, selected_by| Board {
        profile: Some(p),
        model: model_owned.clone(),
        selected_by,
    };
    if let Some(name) = name {
        return match all.into_iter().find(|p| p.name == name) {
            Some(p) => Ok(found(p, SelectedBy::Override)),
            None => Err(BoardError::Unknown {
                name: name.to_string(),
                known: names().join(", "),
            }),
        };
    }
    let Some(model) = model else {
        return Ok(Board::generic(None));
    };
    if let Some(p) = all.iter().find(|p| {
        p.matching
            .device_tree_model
            .iter()
            .any(|m| model.starts_with(m.as_str()))
    }) {
        return Ok(found(p.clone(), SelectedBy::Model));
    }
    if let Some(p) = all.iter().find(|p| {
        p.matching
            .device_tree_compatible
            .iter()
            .any(|c| compatible.contains(c))
    }) {
        return Ok(found(p.clone(), SelectedBy::Compatible));
    }
    match all.into_iter().find(|p| p.matching.fallback) {
        Some(p) => Ok(found(p, SelectedBy::Fallback)),
        None => Ok(Board::generic(model_owned)),
    }
}

/// `/proc/device-tree/model` (NUL stripped; `None` when absent or empty)
/// and the strings of `/proc/device-tree/compatible`.
pub fn read_device_tree() -> (Option<String>, Vec<String>) {
    let dt = Path::new("/proc/device-tree");
    let strings = |file: &str| -> Vec<String> {
        std::fs::read(dt.join(file))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let model = strings("model")
        .into_iter()
        .next()
        .filter(|m| !m.is_empty());
    (model, strings("compatible"))
}

/// Top-level keys the configuration file at `path` sets (empty when it is
/// missing or unreadable; `config::load` reports those problems).
pub fn file_keys(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

static CURRENT: OnceLock<Board> = OnceLock::new();

/// Records the board chosen at start-up (once; later calls are ignored).
pub fn set_current(board: Board) {
    let _ = CURRENT.set(board);
}

/// The board chosen at start-up; [`GENERIC`] if none was recorded (tests
/// and benches that start the daemon in-process).
pub fn current() -> &'static Board {
    CURRENT.get_or_init(|| Board::generic(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn keys(k: &[&str]) -> BTreeSet<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_builtin_profile_parses_and_its_video_profile_is_valid() {
        let all = profiles().unwrap();
        assert_eq!(all.len(), EMBEDDED.len());
        for p in &all {
            let mut c = Config::default();
            c.video.width = p.video.width;
            c.video.height = p.video.height;
            c.video.fps = p.video.fps;
            c.video.bitrate_kbps = p.video.bitrate_kbps;
            c.video.gop = p.video.gop;
            c.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            if let Some(b) = &p.gpio.button {
                assert!(b.bias.is_some(), "{}: a button needs a bias", p.name);
            }
        }
        assert_eq!(all.iter().filter(|p| p.matching.fallback).count(), 1);
    }

    #[test]
    fn no_device_tree_is_generic_and_changes_nothing() {
        let b = select(None, None, &[]).unwrap();
        assert_eq!(b.name(), GENERIC);
        assert_eq!(b.selected_by, SelectedBy::NoDeviceTree);
        let (c, notes) = b.apply_defaults(Config::default(), &keys(&[]));
        assert_eq!(c, Config::default());
        assert!(notes.is_empty());
        assert_eq!(b.default_config(), Config::default());
        assert_eq!(b.status_json()["model"], Value::Null);
    }

    #[test]
    fn model_prefixes_pick_the_profile() {
        for (model, name) in [
            ("Raspberry Pi 4 Model B Rev 1.4", "pi4"),
            ("Raspberry Pi 400 Rev 1.0", "pi4"),
            ("Raspberry Pi 5 Model B Rev 1.0", "pi5"),
            ("Raspberry Pi Compute Module 4 Rev 1.1", "cm4"),
            ("Raspberry Pi Zero 2 W Rev 1.0", "pi-zero-2w"),
            ("Pine64 RockPro64 v2.1", "generic-aarch64-uvc"),
        ] {
            let b = select(None, Some(model), &[]).unwrap();
            assert_eq!(b.name(), name, "{model}");
            assert_eq!(b.status_json()["model"], model);
        }
        // Prefixes are case-sensitive.
        let b = select(None, Some("raspberry pi 4 model b"), &[]).unwrap();
        assert_eq!(b.selected_by, SelectedBy::Fallback);
    }

    #[test]
    fn compatible_strings_match_when_the_model_does_not() {
        let compat = vec!["raspberrypi,5-model-b".to_string(), "brcm,bcm2712".into()];
        let b = select(None, Some("Some vendor kernel"), &compat).unwrap();
        assert_eq!((b.name(), b.selected_by), ("pi5", SelectedBy::Compatible));
    }

    #[test]
    fn a_name_overrides_the_device_tree_and_unknown_names_are_refused() {
        let b = select(Some("pi-zero-2w"), Some("Raspberry Pi 4 Model B"), &[]).unwrap();
        assert_eq!(
            (b.name(), b.selected_by),
            ("pi-zero-2w", SelectedBy::Override)
        );
        let g = select(Some("generic"), Some("Raspberry Pi 4 Model B"), &[]).unwrap();
        assert_eq!(g.name(), GENERIC);
        let e = select(Some("pi3"), None, &[]).unwrap_err().to_string();
        assert!(e.contains("\"pi3\"") && e.contains("pi-zero-2w"), "{e}");
        assert!(is_known("cm4") && is_known(GENERIC) && !is_known("pi3"));
    }

    #[test]
    fn defaults_fill_only_what_the_file_leaves_out() {
        let b = select(Some("pi-zero-2w"), None, &[]).unwrap();
        let mut stored = Config::default();
        stored.video.threads = 2;
        let (c, notes) = b.apply_defaults(stored.clone(), &keys(&["hls"]));
        assert_eq!((c.video.width, c.video.height, c.video.fps), (640, 360, 25));
        assert_eq!(
            (c.video.bitrate_kbps, c.video.gop, c.video.threads),
            (800, 25, 2)
        );
        // The profile's camera and hardware encoder.
        assert_eq!(
            (c.source.as_str(), c.encoder.as_str()),
            ("v4l2:/dev/video0", "v4l2m2m:/dev/video11")
        );
        assert!(notes.is_empty(), "{notes:?}");
        c.clone().validate().unwrap();

        let (kept, _) = b.apply_defaults(stored.clone(), &keys(&["video", "encoder"]));
        assert_eq!(kept.video, stored.video);
        assert_eq!(kept.encoder, "auto");

        let d = b.default_config();
        assert_eq!((d.video.width, d.video.threads), (640, 0));
    }

    #[test]
    fn file_keys_reads_top_level_tables_and_tolerates_missing_files() {
        let dir = std::env::temp_dir().join(format!("roomcast-board-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        assert!(file_keys(&path).is_empty());
        std::fs::write(&path, "source = \"test\"\n[video]\nfps = 25\n").unwrap();
        assert_eq!(file_keys(&path), keys(&["source", "video"]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
