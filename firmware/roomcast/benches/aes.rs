//! CPU cost of HLS AES-128 (`hls.encryption = "aes-128"`,
//! roomcast_media::aes128: RustCrypto `aes` + `cbc`) at 4 Mbit/s, as the
//! packagers run it: every 1 s TS segment, and every 267 ms LL-HLS part
//! plus its whole segment again, each encrypted on its own. Against
//! `openssl enc -aes-128-cbc` (OpenSSL's assembly, AES-NI where the CPU
//! has it) on the same bytes. `cargo bench -p roomcast --bench aes
//! [-- --quick]`.
//!
//! CPU time (getrusage), medians of several runs; openssl's figure is net
//! of a run that decrypts nothing (`-in /dev/null`), which removes its
//! start-up.

// getrusage is the only way to read the CPU time of this process and of the
// children it waited for; std has no safe wrapper.
#![allow(unsafe_code)]

mod common;
use common::{ffmpeg as external, ours};

use roomcast_media::aes128;
use serde_json::json;

/// 4 Mbit/s of video.
const BYTES_PER_S: usize = 4_000_000 / 8;
/// LL-HLS parts per 1 s segment (8 frames of 30 fps).
const PARTS: usize = 4;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (seconds, runs) = if quick { (30, 1) } else { (300, 3) };
    // Media-like bytes (xorshift): AES does not care, but no shortcuts.
    let mut seed: u32 = 0x9E37_79B9;
    let segment: Vec<u8> = (0..BYTES_PER_S)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect();
    let key = [7u8; 16];
    let mut sink = 0usize;
    // TS: one resource per segment.
    let (ts, ts_noise) = ours(runs, || {
        for s in 0..seconds {
            sink ^= aes128::encrypt(&key, &aes128::sequence_iv(s as u64), &segment).len();
        }
    });
    // LL-HLS: each part, then the whole segment.
    let part = BYTES_PER_S / PARTS;
    let (ll, _) = ours(runs, || {
        for s in 0..seconds {
            let iv = aes128::sequence_iv(s as u64);
            for p in segment.chunks(part) {
                sink ^= aes128::encrypt(&key, &iv, p).len();
            }
            sink ^= aes128::encrypt(&key, &iv, &segment).len();
        }
    });
    assert!(sink < usize::MAX);
    let pct = |cpu_s: f64| cpu_s / seconds as f64 * 100.0;
    // OpenSSL on the same bytes, as many times.
    let dir = std::env::temp_dir().join(format!("roomcast-aes-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("media.bin");
    let all: Vec<u8> = segment
        .iter()
        .copied()
        .cycle()
        .take(BYTES_PER_S * seconds)
        .collect();
    std::fs::write(&file, &all).expect("write temp file");
    let enc = "openssl enc -aes-128-cbc -K 07070707070707070707070707070707 -iv 00000000000000000000000000000000 -out /dev/null -in";
    let theirs = external(
        &format!("{enc} {}", file.display()),
        &format!("{enc} /dev/null"),
        runs,
    );
    std::fs::remove_dir_all(&dir).ok();
    let openssl = theirs.map(|(net, _)| pct(net));
    println!("roomcast AES-128 bench: {seconds} s of 4 Mbit/s media, % of one core, median of {runs} runs");
    println!("TS segments: {:.3} %   LL-HLS parts + segments: {:.3} %   openssl enc (TS-like, one stream): {}   noise {:.1}%",
        pct(ts), pct(ll), openssl.map_or("skipped (install openssl)".into(), |p| format!("{p:.3} %")), ts_noise * 100.0);
    println!("goal: < 1 % of a core");
    println!(
        "{}",
        json!({"bench": "aes", "seconds": seconds, "runs": runs,
        "ts_pct_core": pct(ts), "llhls_pct_core": pct(ll), "openssl_pct_core": openssl,
        "ok": pct(ts) + pct(ll) < 1.0})
    );
}
