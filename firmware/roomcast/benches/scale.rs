//! CPU cost of the ladder's I420 downscale (src/source/scale.rs) against
//! ffmpeg's swscale doing the same work (`scale=W:H:flags=area`,
//! single-threaded) on the same frames, for the ratios a ladder uses:
//! 1080p → 720p (3:2), 1080p → 360p (3:1), 720p → 360p (2:1) and
//! 720p → 480p (the general path). Also how far our pictures are from
//! swscale's (mean and largest absolute difference per sample).
//! `cargo bench -p roomcast --bench scale [-- --quick]`.
//!
//! As in the other benches everything is CPU time (getrusage), medians of
//! several runs; ffmpeg's figures are net of a run that only reads the same
//! file (no scaling), which also removes its start-up.

// getrusage is the only way to read the CPU time of this process and of the
// children it waited for; std has no safe wrapper.
#![allow(unsafe_code)]

mod common;
use common::{child_cpu, ffmpeg, ours};

use roomcast::base::frame::I420Frame;
use roomcast::source::pattern::Pattern;
use roomcast::source::scale::Scaler;
use serde_json::json;
use std::io::{BufWriter, Write};
use std::path::Path;

const FPS: u64 = 30;

/// Distinct test-pattern pictures with the sensor-like grain of
/// benches/pipeline.rs on the luma (a flat picture would flatter both).
fn frames(w: usize, h: usize, n: usize) -> Vec<I420Frame> {
    let pattern = Pattern::new(w, h);
    let mut seed: u32 = 0x9E37_79B9;
    (0..n as u64)
        .map(|i| {
            let mut f = I420Frame::new(w, h);
            pattern.draw(i, FPS as u32, i * 1000 / FPS, &mut f);
            for px in f.planes_mut().0.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let d = (seed % 13) as i16 - 6;
                *px = (i16::from(*px) + d).clamp(16, 235) as u8;
            }
            f
        })
        .collect()
}

fn write_file(path: &Path, frames: &[I420Frame]) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create temp file"));
    for f in frames {
        out.write_all(&f.data).expect("write temp file");
    }
    out.flush().expect("write temp file");
}

/// Mean and largest |ours - swscale| over the first frame, or `None`
/// without ffmpeg.
fn difference(
    input: &str,
    first: &I420Frame,
    dw: usize,
    dh: usize,
    dir: &Path,
) -> Option<(f64, u8)> {
    let out = dir.join("sws.i420");
    let cmd = format!(
        "{input} -frames:v 1 -vf scale={dw}:{dh}:flags=area -pix_fmt yuv420p -f rawvideo -y {}",
        out.to_str()?
    );
    child_cpu(&cmd)?;
    let theirs = std::fs::read(&out).ok()?;
    let mut mine = I420Frame::new(dw, dh);
    Scaler::new(first.width, first.height, dw, dh).run(first, &mut mine);
    assert_eq!(theirs.len(), mine.data.len(), "ffmpeg wrote one I420 frame");
    let diffs = theirs.iter().zip(&mine.data).map(|(a, b)| a.abs_diff(*b));
    let (sum, max) = diffs.fold((0u64, 0u8), |(s, m), d| (s + u64::from(d), m.max(d)));
    Some((sum as f64 / theirs.len() as f64, max))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, passes, runs) = if quick { (10, 3, 1) } else { (30, 10, 3) };
    let dir = std::env::temp_dir().join(format!("roomcast-scale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let have_ffmpeg = child_cpu("ffmpeg -hide_banner -version").is_some();
    let ms = |s: f64, frames: usize| s * 1000.0 / frames as f64;
    println!("roomcast scale bench: CPU ms per frame, median of {runs} runs, swscale flags=area single-threaded, net of reading its input");
    println!("from       to          ours   swscale  ours/sws  mean|d|  max|d|  noise");
    let cases = [
        ((1920, 1080), (1280, 720)),
        ((1920, 1080), (640, 360)),
        ((1280, 720), (640, 360)),
        ((1280, 720), (854, 480)),
    ];
    let mut results = Vec::new();
    let mut cached: Option<((usize, usize), Vec<I420Frame>)> = None;
    for ((sw, sh), (dw, dh)) in cases {
        if cached.as_ref().map(|c| c.0) != Some((sw, sh)) {
            cached = Some(((sw, sh), frames(sw, sh, n)));
        }
        let src = &cached.as_ref().expect("frames made above").1;
        let file = dir.join(format!("{sw}x{sh}.yuv"));
        write_file(&file, src);
        let total = n * passes;
        let mut scaler = Scaler::new(sw, sh, dw, dh);
        let mut out = I420Frame::new(dw, dh);
        let (s, noise) = ours(runs, || {
            for f in src.iter().cycle().take(total) {
                scaler.run(f, &mut out);
            }
        });
        let ours_ms = ms(s, total);
        let input = format!(
            "ffmpeg -hide_banner -loglevel error -threads 1 -filter_threads 1 -f rawvideo -pix_fmt yuv420p -s {sw}x{sh} -r {FPS} -i {}",
            file.to_str().expect("UTF-8 temp path")
        );
        let looped = input.replace(" -i ", &format!(" -stream_loop {} -i ", passes - 1));
        let theirs = have_ffmpeg
            .then(|| {
                ffmpeg(
                    &format!("{looped} -vf scale={dw}:{dh}:flags=area -pix_fmt yuv420p -f null -"),
                    &format!("{looped} -f null -"),
                    runs,
                )
            })
            .flatten();
        let sws_ms = theirs.map(|(net, _)| ms(net, total));
        let diff = have_ffmpeg
            .then(|| difference(&input, &src[0], dw, dh, &dir))
            .flatten();
        std::fs::remove_file(&file).ok();
        let ratio = sws_ms.map(|t| ours_ms / t);
        let cell = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        println!(
            "{:<10} {:<10} {ours_ms:>6.3} {:>9} {:>9} {:>8} {:>7} {:>5.1}%",
            format!("{sw}x{sh}"),
            format!("{dw}x{dh}"),
            cell(sws_ms, 3),
            cell(ratio, 2),
            cell(diff.map(|d| d.0), 2),
            diff.map_or("-".into(), |d| d.1.to_string()),
            noise * 100.0
        );
        results.push(json!({
            "from": format!("{sw}x{sh}"), "to": format!("{dw}x{dh}"), "ours_ms": ours_ms,
            "swscale_ms": sws_ms, "ours_over_swscale": ratio,
            "mean_abs_diff": diff.map(|d| d.0), "max_abs_diff": diff.map(|d| d.1),
            "ok": ratio.map(|r| r <= 1.0),
        }));
    }
    std::fs::remove_dir_all(&dir).ok();
    println!("goal: ours/sws <= 1.00");
    println!(
        "{}",
        json!({"bench": "scale", "frames": n, "passes": passes, "runs": runs, "results": results})
    );
}
