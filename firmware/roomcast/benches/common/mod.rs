//! Measuring helpers shared by the bench binaries (not every binary uses
//! every helper).
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// CPU time (user + system) used so far by `who`: RUSAGE_SELF (all threads),
/// RUSAGE_THREAD (the caller) or RUSAGE_CHILDREN (children waited for).
pub fn cpu(who: libc::c_int) -> f64 {
    // SAFETY: all-zero is a valid rusage, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    assert_eq!(unsafe { libc::getrusage(who, &mut ru) }, 0, "getrusage");
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How far apart repeated runs were: max / min - 1.
pub fn spread(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max) / v.iter().copied().fold(f64::MAX, f64::min) - 1.0
}

/// Median over `runs` of our CPU seconds for `f`, and the runs' spread.
pub fn ours(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let v: Vec<f64> = (0..runs)
        .map(|_| {
            let start = cpu(libc::RUSAGE_SELF);
            f();
            cpu(libc::RUSAGE_SELF) - start
        })
        .collect();
    (median(v.clone()), spread(&v))
}

/// Runs a command line (split on spaces) and returns its child CPU seconds;
/// `None` if it cannot start or fails.
pub fn child_cpu(cmd: &str) -> Option<f64> {
    let mut words = cmd.split(' ');
    let start = cpu(libc::RUSAGE_CHILDREN);
    let mut c = Command::new(words.next()?);
    let status = c
        .args(words)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| cpu(libc::RUSAGE_CHILDREN) - start)
}

/// ffmpeg's CPU seconds: the median `work` run minus the median `base` run
/// (same input, no work), and the median `base` run itself.
pub fn ffmpeg(work: &str, base: &str, runs: usize) -> Option<(f64, f64)> {
    let median_of = |cmd| {
        (0..runs)
            .map(|_| child_cpu(cmd))
            .collect::<Option<_>>()
            .map(median)
    };
    let (work, base) = (median_of(work)?, median_of(base)?);
    Some((work - base, base))
}
