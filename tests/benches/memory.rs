//! The daemon's memory with the default rendition ladder (1280x720 and the
//! automatic 640x360 below it), LL-HLS, MPEG-TS and MPEG-DASH packagers for
//! both (and DASH's audio), and 20 LL-HLS clients following the live edge for `BENCH_SECONDS` (60):
//! resident set at the end (VmRSS) and its peak (VmHWM), from /proc.
//!
//! ```sh
//! cargo build --release -p roomcast
//! cargo bench -p roomcast-e2e --bench memory
//! ```

use roomcast_e2e::edge::{edge, follow};
use roomcast_e2e::Daemon;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn proc_kb(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // The defaults: 1280x720@30, 2500 kbit/s, the automatic ladder.
    let d = Daemon::start("bench-memory", &["--no-mdns"]);
    let pid = d.child.id();
    d.wait_for("/hls/r1/index.m3u8", Duration::from_secs(30), |r| {
        edge(&r.text()).is_some_and(|e| e.parts >= 1)
    });
    let renditions = d.status()["renditions"].as_array().map_or(0, Vec::len);
    let stop = Arc::new(AtomicBool::new(false));
    let port = d.port;
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || follow(port, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let parts: u32 = clients.into_iter().map(|c| c.join().unwrap().1).sum();
    let (rss, peak) = (proc_kb(pid, "VmRSS:"), proc_kb(pid, "VmHWM:"));
    println!(
        "roomcast memory: {renditions} renditions (LL-HLS + TS + DASH each), 20 LL-HLS clients ({parts} parts) for {seconds} s: RSS {:.1} MB, peak {:.1} MB (goal < 50 MB)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "{}",
        serde_json::json!({"bench": "memory", "renditions": renditions, "seconds": seconds,
            "rss_mb": rss as f64 / 1024.0, "peak_mb": peak as f64 / 1024.0, "ok": peak < 50 * 1024})
    );
}
