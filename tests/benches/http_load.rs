//! LL-HLS under load, two builds of the daemon compared in one run: 200
//! clients follow the live edge with blocking playlist reloads and part
//! downloads (as LL-HLS players do) for `SECONDS`, against build A, then B,
//! then A and B again. For each run: the daemon's CPU (utime + stime from
//! /proc over the loaded period, % of one core), its threads and RSS idle
//! and at the end of the load, and how late the blocked playlists arrive
//! (capture of a part's last frame → reply received, client clock).
//!
//! ```sh
//! cargo build --release -p roomcast
//! BENCH_A=/path/to/other/roomcast cargo bench -p roomcast-e2e --bench http_load
//! ```
//! `BENCH_A` defaults to `target/release/roomcast` too (a self-comparison
//! shows the noise); `BENCH_B` is `target/release/roomcast`;
//! `BENCH_CLIENTS` (200) and `BENCH_SECONDS` (20) change the load.

use roomcast_e2e::edge::{edge, follow};
use roomcast_e2e::{roomcast_bin, Daemon};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one run measured.
struct Run {
    cpu_percent: f64,
    threads_idle: u64,
    threads_loaded: u64,
    rss_idle_mb: f64,
    rss_loaded_mb: f64,
    p50_ms: f64,
    p99_ms: f64,
    parts: u64,
    errors: usize,
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of the process, in clock ticks (100 per second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split(' ').collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn run(bin: &Path, clients: usize, seconds: u64) -> Run {
    let d = Daemon::start_bin(
        bin,
        "bench-http",
        &[
            "--size",
            "640x360",
            "--fps",
            "30",
            "--gop",
            "30",
            "--no-mdns",
        ],
        &[],
        None,
    );
    let pid = d.child.id();
    d.wait_for("/hls/r0/index.m3u8", Duration::from_secs(20), |r| {
        edge(&r.text()).is_some_and(|e| e.parts >= 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    let threads_idle = proc_field(pid, "status", "Threads:");
    let rss_idle_mb = proc_field(pid, "status", "VmRSS:") as f64 / 1024.0;
    let stop = Arc::new(AtomicBool::new(false));
    let port = d.port;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let (ages, parts, errors) = follow(port, &stop);
                    (ages, u64::from(parts), errors)
                })
                .expect("spawn a client")
        })
        .collect();
    // Measure once every client is following.
    std::thread::sleep(Duration::from_secs(3));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let ticks = cpu_ticks(pid) - t0;
    let threads_loaded = proc_field(pid, "status", "Threads:");
    let rss_loaded_mb = proc_field(pid, "status", "VmRSS:") as f64 / 1024.0;
    stop.store(true, Ordering::Relaxed);
    let (mut ages, mut parts, mut errors) = (Vec::new(), 0, 0);
    for w in workers {
        let (a, p, e) = w.join().expect("client thread");
        ages.extend(a);
        parts += p;
        errors += e.len();
    }
    ages.sort_by(f64::total_cmp);
    let q = |f: f64| {
        ages.get(((ages.len().max(1) - 1) as f64 * f) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Run {
        cpu_percent: ticks as f64 / seconds as f64,
        threads_idle,
        threads_loaded,
        rss_idle_mb,
        rss_loaded_mb,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        parts,
        errors,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let b = env("BENCH_B").unwrap_or_else(roomcast_bin);
    let a = env("BENCH_A").unwrap_or_else(|| b.clone());
    let num = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (clients, seconds) = (num("BENCH_CLIENTS", 200) as usize, num("BENCH_SECONDS", 20));
    println!("LL-HLS, {clients} clients following the edge, {seconds} s per run");
    println!("A = {}\nB = {}", a.display(), b.display());
    println!(
        "| run | CPU % of a core | threads idle → loaded | RSS idle → loaded (MB) | capture → blocked playlist received p50 / p99 (ms) | parts served | client errors |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, bin) in [("A", &a), ("B", &b), ("A", &a), ("B", &b)] {
        let r = run(bin, clients, seconds);
        println!(
            "| {name} | {:.1} | {} → {} | {:.1} → {:.1} | {:.0} / {:.0} | {} | {} |",
            r.cpu_percent,
            r.threads_idle,
            r.threads_loaded,
            r.rss_idle_mb,
            r.rss_loaded_mb,
            r.p50_ms,
            r.p99_ms,
            r.parts,
            r.errors
        );
    }
}
