//! CPU cost of the sound path (src/audio), against ffmpeg on the same
//! samples: (a) AAC-LC encoding of 60 s of 48 kHz stereo at 128 kbit/s,
//! ours (syom) vs ffmpeg's native `aac` encoder; (b) our drift-correcting
//! resampler (`sync::Aligner`, a card 100 ppm fast) vs ffmpeg's `aresample`
//! (swr) doing the same 100 ppm rate change. `cargo bench -p roomcast
//! --bench audio [-- --quick]`.
//!
//! CPU time (getrusage), medians of several runs; ffmpeg single-threaded
//! and net of a run that only reads the same file (see benches/convert.rs).

// getrusage is the only way to read the CPU time of this process and of the
// children it waited for; std has no safe wrapper.
#![allow(unsafe_code)]

mod common;
use common::{ffmpeg, ours};

use roomcast::audio::aac::{AacEncoder, FRAME};
use roomcast::audio::sync::Aligner;
use std::io::Write;

const RATE: usize = 48_000;
const CHANNELS: usize = 2;
const BITRATE_KBPS: u32 = 128;

/// Speech-like test signal: a few harmonics with a slow envelope plus a
/// little noise, so the encoder has something to spend its bits on.
fn signal(seconds: usize) -> Vec<i16> {
    let mut seed: u32 = 0x2545_F491;
    let mut out = Vec::with_capacity(seconds * RATE * CHANNELS);
    for i in 0..seconds * RATE {
        let t = i as f64 / RATE as f64;
        let env = 0.5 + 0.5 * (t * 3.0 * std::f64::consts::TAU).sin();
        let tone: f64 = [180.0, 360.0, 720.0, 1440.0]
            .iter()
            .enumerate()
            .map(|(k, f)| (t * f * std::f64::consts::TAU).sin() / (k + 1) as f64)
            .sum();
        for _ in 0..CHANNELS {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f64 / u32::MAX as f64 - 0.5) * 0.05;
            out.push(((tone * env * 0.3 + noise) * 32767.0) as i16);
        }
    }
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 10 } else { 60 };
    let runs = if quick { 3 } else { 5 };
    let pcm = signal(seconds);
    let dir = std::env::temp_dir().join(format!("roomcast-audio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let raw = dir.join("in.s16");
    let mut f = std::fs::File::create(&raw).expect("write pcm");
    for s in &pcm {
        f.write_all(&s.to_le_bytes()).expect("write pcm");
    }
    drop(f);
    println!("roomcast audio bench: {seconds} s of 48 kHz stereo, CPU ms per second of audio, median of {runs} runs, ffmpeg single-threaded, net of reading its input");

    // (a) AAC-LC.
    let planes: Vec<[Vec<f32>; 2]> = pcm
        .chunks_exact(FRAME * CHANNELS)
        .map(|c| {
            let ch = |k: usize| {
                c.iter()
                    .skip(k)
                    .step_by(CHANNELS)
                    .map(|&s| f32::from(s) / 32768.0)
                    .collect()
            };
            [ch(0), ch(1)]
        })
        .collect();
    let mut bytes = 0usize;
    let (enc_s, enc_spread) = ours(runs, || {
        let mut enc = AacEncoder::new(CHANNELS, BITRATE_KBPS).expect("encoder");
        bytes = planes
            .iter()
            .map(|p| enc.encode(&p[..]).expect("encode").len())
            .sum();
    });
    let input = format!(
        "ffmpeg -nostdin -v error -threads 1 -f s16le -ar 48000 -ac 2 -i {}",
        raw.display()
    );
    let theirs = ffmpeg(
        &format!("{input} -c:a aac -b:a {BITRATE_KBPS}k -f null -"),
        &format!("{input} -f null -"),
        runs,
    );
    let per_s = |cpu: f64| cpu * 1e3 / seconds as f64;
    let kbps = bytes as f64 * 8.0 / seconds as f64 / 1e3;
    println!(
        "(a) AAC-LC {BITRATE_KBPS} kbit/s: ours (syom) {:.2} ms (spread {:.0} %, {kbps:.0} kbit/s made, {:.0}x real time), ffmpeg aac {}; ours / ffmpeg {}",
        per_s(enc_s),
        enc_spread * 100.0,
        1.0 / (enc_s / seconds as f64),
        theirs.map_or("n/a".into(), |(t, _)| format!("{:.2} ms", per_s(t))),
        theirs.map_or("n/a".into(), |(t, _)| format!("{:.2}", enc_s / t)),
    );

    // (b) Resampling a card 100 ppm fast back onto the clock.
    let period = RATE / 100;
    let (res_s, res_spread) = ours(runs, || {
        let mut a = Aligner::new(CHANNELS);
        let mut out = vec![vec![0f32; FRAME]; CHANNELS];
        let card_hz = RATE as f64 * (1.0 + 100e-6);
        for (k, p) in pcm.chunks_exact(period * CHANNELS).enumerate() {
            let end_ns = ((k + 1) * period) as f64 / card_hz * 1e9;
            a.push(p, CHANNELS, RATE as u32, end_ns as u64 + 1_000_000_000, 0);
            while a.available() >= FRAME {
                a.pop(FRAME, &mut out);
            }
        }
    });
    let swr = ffmpeg(
        &format!("{input} -af asetrate=48004.8,aresample=48000 -f null -"),
        &format!("{input} -af asetrate=48004.8 -f null -"),
        runs,
    );
    println!(
        "(b) drift resampling (100 ppm): ours {:.2} ms (spread {:.0} %), ffmpeg swr {}; ours / ffmpeg {}",
        per_s(res_s),
        res_spread * 100.0,
        swr.map_or("n/a".into(), |(t, _)| format!("{:.2} ms", per_s(t))),
        swr.map_or("n/a".into(), |(t, _)| format!("{:.2}", res_s / t)),
    );
    let _ = std::fs::remove_dir_all(dir);
}
