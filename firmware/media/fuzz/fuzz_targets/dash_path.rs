//! `dash::DashPath::parse` on any string: never panics, accepts nothing
//! longer than the limit or with `..`, and what it accepts reads back the
//! same when written out as a path again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::dash::{DashPath, Track, MAX_PATH_LEN};

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let Some(parsed) = DashPath::parse(&path) else {
        return;
    };
    assert!(path.len() <= MAX_PATH_LEN, "{path:?}");
    assert!(!path.contains(".."), "{path:?}");
    let track = |t: Track| match t {
        Track::Video(n) => format!("r{n}"),
        Track::Audio => "a".to_string(),
    };
    let again = match &parsed {
        DashPath::Mpd => "index.mpd".to_string(),
        DashPath::Time => "time".to_string(),
        DashPath::Init { track: t, name } => format!("{}/{name}", track(*t)),
        DashPath::Segment { track: t, run, number } => {
            format!("{}/{run}/seg{number}.m4s", track(*t))
        }
    };
    // Leading zeros read back as the same numbers, so compare parses.
    assert_eq!(DashPath::parse(&again), Some(parsed), "{path:?} -> {again:?}");
});
