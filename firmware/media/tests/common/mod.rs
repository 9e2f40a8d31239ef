//! Helpers shared by the media crate's FFmpeg-checked tests (FFmpeg is a
//! test instrument only).

use std::path::PathBuf;
use std::process::Command;

/// Fails with the way to get `tool` when it is missing.
pub fn need(tool: &str) {
    let found = Command::new(tool).arg("-version").output().is_ok();
    assert!(
        found,
        "{tool} is missing: run tests/run.sh, which installs ffmpeg"
    );
}

/// A fresh directory for this test run, `roomcast-NAME-PID`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roomcast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Splits an Annex B stream into access units at each access unit
/// delimiter (NAL type 9), start code included.
pub fn access_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<usize> = stream
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w[..3] == [0, 0, 1] && w[3] & 0x1f == 9)
        .map(|(i, _)| {
            if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            }
        })
        .collect();
    starts.push(stream.len());
    starts.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}
