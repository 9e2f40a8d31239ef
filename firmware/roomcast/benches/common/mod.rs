//! Measuring helpers shared by the bench binaries.

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
