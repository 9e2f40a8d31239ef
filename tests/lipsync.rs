//! Lip sync measured from outside, with ffmpeg as the instrument (used by
//! the sound tests and by every output's test). The test pattern flashes a
//! white band across the top eighth of the picture on the first frame of
//! every second and the test tone beeps 1 kHz for 100 ms from the same
//! instant; the offset is the beep's onset minus the flash on the stream's
//! own PTS timeline (`-copyts`: ffmpeg shifts nothing). tests/audio.rs
//! checks the instrument on files with a known offset.

use crate::have;
use std::path::Path;
use std::process::Command;

/// The sync budget: a viewer notices sound leading or lagging the picture
/// by more than about 40 ms.
pub const MAX_OFFSET_S: f64 = 0.040;

/// `ffmpeg -copyts -i FILE -map MAP -FILTER_FLAG FILTER -f null -`, whose
/// filter prints per-frame metadata to stdout; returns (pts_time, value) for
/// `key`.
pub fn per_frame(
    file: &Path,
    map: &str,
    filter_flag: &str,
    filter: &str,
    key: &str,
) -> Vec<(f64, f64)> {
    assert!(
        have("ffmpeg"),
        "ffmpeg is missing: run tests/run.sh, which installs it"
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-copyts", "-i"])
        .arg(file)
        .args(["-map", map, filter_flag, filter, "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg on {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut values = Vec::new();
    let mut t = None;
    for line in text.lines() {
        if let Some(pt) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("pts_time:"))
        {
            t = pt.parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix(&format!("{key}=")) {
            if let (Some(t), Ok(v)) = (t.take(), v.trim().parse::<f64>()) {
                values.push((t, v));
            }
        }
    }
    values
}

/// Times of the flash frames: the top eighth's mean luma jumps up from the
/// frame before.
pub fn flash_times(file: &Path) -> Vec<f64> {
    let y = per_frame(
        file,
        "0:v:0",
        "-vf",
        "crop=iw:ih/8:0:0,signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-",
        "lavfi.signalstats.YAVG",
    );
    let (lo, hi) = y.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
        (lo.min(*v), hi.max(*v))
    });
    if y.len() < 2 || hi - lo < 50.0 {
        return Vec::new();
    }
    let threshold = (lo + hi) / 2.0;
    y.windows(2)
        .filter(|w| w[0].1 <= threshold && w[1].1 > threshold)
        .map(|w| w[1].0)
        .collect()
}

/// Audio loudness in 2 ms steps (96 samples at 48 kHz): (pts_time, RMS dB).
pub fn loudness(file: &Path) -> Vec<(f64, f64)> {
    per_frame(
        file,
        "0:a:0",
        "-af",
        "asetnsamples=n=96:p=0,astats=metadata=1:reset=1,\
         ametadata=print:key=lavfi.astats.Overall.RMS_level:file=-",
        "lavfi.astats.Overall.RMS_level",
    )
}

/// Onsets of the beeps: the first 2 ms step within 10 dB of the loudest
/// after at least 40 ms below that.
pub fn beep_onsets(levels: &[(f64, f64)]) -> Vec<f64> {
    let peak = levels.iter().map(|l| l.1).fold(f64::NEG_INFINITY, f64::max);
    if peak < -40.0 {
        return Vec::new();
    }
    let threshold = peak - 10.0;
    const QUIET_STEPS: usize = 20;
    (QUIET_STEPS..levels.len())
        .filter(|&i| {
            levels[i].1 > threshold && levels[i - QUIET_STEPS..i].iter().all(|l| l.1 <= threshold)
        })
        .map(|i| levels[i].0)
        .collect()
}

/// What the instrument saw in one file.
#[derive(Debug)]
pub struct Sync {
    pub flashes: Vec<f64>,
    pub beeps: Vec<f64>,
    /// (flash time, beep onset - flash) for every flash whose whole second
    /// around it has audio; positive = the sound comes late.
    pub pairs: Vec<(f64, f64)>,
    /// The loudest 2 ms of audio, dB.
    pub peak_db: f64,
}

impl Sync {
    pub fn offsets_ms(&self) -> Vec<f64> {
        self.pairs
            .iter()
            .map(|p| (p.1 * 10_000.0).round() / 10.0)
            .collect()
    }
}

pub fn measure(file: &Path) -> Sync {
    let flashes = flash_times(file);
    let levels = loudness(file);
    let beeps = beep_onsets(&levels);
    let peak_db = levels.iter().map(|l| l.1).fold(f64::NEG_INFINITY, f64::max);
    let (a0, a1) = match (levels.first(), levels.last()) {
        (Some(a), Some(b)) => (a.0, b.0),
        _ => (0.0, 0.0),
    };
    let pairs = flashes
        .iter()
        .filter(|&&f| f - 0.5 >= a0 && f + 0.5 <= a1)
        .filter_map(|&f| {
            beeps
                .iter()
                .map(|&b| b - f)
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
                .map(|off| (f, off))
        })
        .collect();
    Sync {
        flashes,
        beeps,
        pairs,
        peak_db,
    }
}

/// Asserts lip sync on `file`: at least three flash/beep pairs, each within
/// the budget. Returns the offsets in ms.
pub fn assert_in_sync(file: &Path, what: &str) -> Vec<f64> {
    let s = measure(file);
    let offsets = s.offsets_ms();
    eprintln!("{what}: flash→beep offsets (ms, + = sound late): {offsets:?}");
    assert!(
        s.pairs.len() >= 3,
        "{what}: only {} flash/beep pairs: {s:?}",
        s.pairs.len()
    );
    for (f, off) in &s.pairs {
        assert!(
            off.abs() < MAX_OFFSET_S,
            "{what}: the beep at the flash of {f:.3} s is {:.1} ms off: {offsets:?} ({s:?})",
            off * 1000.0
        );
    }
    offsets
}
