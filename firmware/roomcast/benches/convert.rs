//! CPU cost of the capture path's pixel conversions (src/convert.rs) at
//! 1080p, against ffmpeg doing the same work on the same frames:
//! (a) YUYV → I420 alone, ours vs swscale; (b) YUYV → I420 → H.264 at
//! 4 Mbit/s, ours (openh264) vs ffmpeg (libopenh264 if it has it, else
//! libx264 ultrafast); (c) MJPEG 1080p 4:2:2 decode to I420, ours (zune-jpeg)
//! vs ffmpeg's mjpeg decoder. `cargo bench -p roomcast --bench convert
//! [-- --quick]`.
//!
//! As in benches/pipeline.rs everything is CPU time (getrusage), medians of
//! several runs. ffmpeg runs single-threaded and its figures are net: minus a
//! run of the same command line that only reads the file (same frames, no
//! conversion/decode), which also removes its start-up.

// getrusage is the only way to read the CPU time of this process and of the
// children it waited for; std has no safe wrapper.
#![allow(unsafe_code)]

mod common;
use common::{child_cpu, ffmpeg, ours};

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use roomcast::base::frame::I420Frame;
use roomcast::encoder::openh264::OpenH264;
use roomcast::encoder::{EncoderSettings, VideoEncoder};
use roomcast::source::convert::{yuyv_to_i420, MjpegDecoder};
use roomcast::source::pattern::Pattern;
use serde_json::json;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const W: usize = 1920;
const H: usize = 1080;
const FPS: u64 = 30;
const BITRATE_KBPS: u32 = 4000;
const GOP: u32 = 30;
/// Typical of UVC cameras' MJPEG.
const JPEG_QUALITY: u8 = 85;

/// Whether a probe command line succeeds and prints `needle`.
fn available(cmd: &str, needle: &str) -> bool {
    let mut words = cmd.split(' ');
    let out = Command::new(words.next().unwrap_or_default())
        .args(words)
        .stderr(Stdio::null())
        .output();
    out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
}

/// Distinct YUYV frames as a camera gives them (packed, stride 2 * W): the
/// test pattern with the fixed sensor-like grain of benches/pipeline.rs on
/// the luma, so the encoder really spends its 4 Mbit/s.
fn yuyv_frames(n: usize) -> Vec<Vec<u8>> {
    let pattern = Pattern::new(W, H);
    let mut seed: u32 = 0x9E37_79B9;
    let mut picture = I420Frame::new(W, H);
    (0..n as u64)
        .map(|i| {
            pattern.draw(i, FPS as u32, i * 1000 / FPS, &mut picture);
            let (y, u, v) = picture.planes();
            let mut out = Vec::with_capacity(W * H * 2);
            for row in 0..H {
                let c = row / 2 * (W / 2);
                let pairs = y[row * W..(row + 1) * W].chunks_exact(2);
                for (x, p) in pairs.enumerate() {
                    // ±6 on luma (visible grain, as in benches/pipeline.rs)
                    // and ±2 on chroma, so the two rows' chroma differ.
                    let mut grain = |px: u8, amp: u32| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        let d = (seed % (2 * amp + 1)) as i16 - amp as i16;
                        (i16::from(px) + d).clamp(16, 235) as u8
                    };
                    let (y0, y1) = (grain(p[0], 6), grain(p[1], 6));
                    let (u, v) = (grain(u[c + x], 2), grain(v[c + x], 2));
                    out.extend_from_slice(&[y0, u, y1, v]);
                }
            }
            out
        })
        .collect()
}

fn write_file(path: &Path, frames: &[Vec<u8>]) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create temp file"));
    for f in frames {
        out.write_all(f).expect("write temp file");
    }
    out.flush().expect("write temp file");
}

fn settings() -> EncoderSettings {
    EncoderSettings {
        width: W as u32,
        height: H as u32,
        fps: FPS as u32,
        bitrate_kbps: BITRATE_KBPS,
        gop: GOP,
        threads: 1,
    }
}

/// The first frame converted by ffmpeg and by us: luma must be identical;
/// returns the largest chroma difference (0: swscale rounds the two rows'
/// average as we do).
fn agrees_with_ffmpeg(file: &str, first: &[u8], dir: &Path) -> Option<u8> {
    let out = dir.join("ffmpeg.i420");
    let cmd = format!(
        "ffmpeg -hide_banner -loglevel error -y -f rawvideo -pix_fmt yuyv422 -s {W}x{H} -i {file} \
         -frames:v 1 -pix_fmt yuv420p -f rawvideo {}",
        out.to_str()?
    );
    child_cpu(&cmd)?;
    let theirs = std::fs::read(&out).ok()?;
    let mut mine = I420Frame::new(0, 0);
    yuyv_to_i420(first, 2 * W, W, H, &mut mine).expect("convert");
    assert_eq!(theirs.len(), mine.data.len(), "ffmpeg wrote one I420 frame");
    assert!(
        theirs[..W * H] == mine.data[..W * H],
        "luma differs from ffmpeg"
    );
    let chroma = theirs[W * H..].iter().zip(&mine.data[W * H..]);
    Some(chroma.map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0))
}

/// JPEGs of `frames` as a UVC camera sends them: 4:2:2, full-range YCbCr,
/// no DHT segment (the standard Huffman tables are implied).
fn mjpeg_frames(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|yuyv| {
            // YUYV is limited range; the camera's JPEG holds full range.
            let full =
                |y: u8, lo: f32, span: f32| ((f32::from(y) - lo) * 255.0 / span).round() as u8;
            let mut px = Vec::with_capacity(W * H * 3);
            for q in yuyv.chunks_exact(4) {
                let (cb, cr) = (full(q[1], 16.0, 224.0), full(q[3], 16.0, 224.0));
                px.extend_from_slice(&[full(q[0], 16.0, 219.0), cb, cr]);
                px.extend_from_slice(&[full(q[2], 16.0, 219.0), cb, cr]);
            }
            let mut jpeg = Vec::new();
            let mut enc = Encoder::new(&mut jpeg, JPEG_QUALITY);
            enc.set_sampling_factor(SamplingFactor::R_4_2_2);
            enc.encode(&px, W as u16, H as u16, ColorType::Ycbcr)
                .expect("encode JPEG");
            strip_dht(&jpeg)
        })
        .collect()
}

/// Drops the DHT segments before the scan.
fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while jpeg[i + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Frames for the encoder (distinct, so it works as on a live camera),
    // passes over them for the conversion alone, JPEGs, runs per figure.
    let (n, passes, jpegs, runs) = if quick { (30, 3, 5, 1) } else { (90, 4, 10, 3) };
    let dir = std::env::temp_dir().join(format!("roomcast-convert-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let have_ffmpeg = available("ffmpeg -hide_banner -version", "ffmpeg");
    let h264 = if available("ffmpeg -hide_banner -encoders", "libopenh264") {
        "libopenh264"
    } else {
        "libx264"
    };
    let ms = |s: f64, frames: usize| s * 1000.0 / frames as f64;
    println!("roomcast convert bench: {W}x{H}, CPU ms per frame, median of {runs} runs, ffmpeg single-threaded, net of reading its input");

    let frames = yuyv_frames(n);
    let yuyv = dir.join("frames.yuyv");
    write_file(&yuyv, &frames);
    let file = yuyv.to_str().expect("UTF-8 temp path");
    let input = format!(
        "ffmpeg -hide_banner -loglevel error -threads 1 -f rawvideo -pix_fmt yuyv422 -s {W}x{H} -r {FPS}"
    );

    // (a) YUYV → I420.
    // Warm: one frame over and over, in cache like ffmpeg's just-read buffer
    // (the like-for-like figure). Cold: cycling through all frames, hundreds
    // of MB, like a camera's freshly DMA-written buffers.
    let mut picture = I420Frame::new(W, H);
    let total = n * passes;
    let (ours_s, ours_spread) = ours(runs, || {
        for _ in 0..total {
            yuyv_to_i420(&frames[0], 2 * W, W, H, &mut picture).expect("convert");
        }
    });
    let ours_ms = ms(ours_s, total);
    let (cold_s, _) = ours(runs, || {
        for f in frames.iter().cycle().take(total) {
            yuyv_to_i420(f, 2 * W, W, H, &mut picture).expect("convert");
        }
    });
    let cold_ms = ms(cold_s, total);
    let looped = format!(
        "{input} -stream_loop {} -i {file} -filter_threads 1",
        passes - 1
    );
    let theirs = have_ffmpeg
        .then(|| {
            ffmpeg(
                &format!("{looped} -pix_fmt yuv420p -f null -"),
                &format!("{looped} -f null -"),
                runs,
            )
        })
        .flatten();
    let agree = have_ffmpeg
        .then(|| agrees_with_ffmpeg(file, &frames[0], &dir))
        .flatten();
    let sws_ms = theirs.map(|(net, _)| ms(net, total));
    let cell = |v: Option<f64>| v.map_or("skipped (install ffmpeg)".into(), |v| format!("{v:.3}"));
    let ratio = |a: Option<f64>, b: f64| a.map_or("-".into(), |a| format!("{:.2}", a / b));
    println!(
        "(a) YUYV -> I420, {total} conversions: ours {ours_ms:.3} ms (spread {:.0} %; cold {cold_ms:.3}), ffmpeg swscale {}; ours {} x as fast; fps ours {:.0}, ffmpeg {}; chroma max diff to ffmpeg {}",
        ours_spread * 100.0,
        cell(sws_ms),
        ratio(sws_ms, ours_ms),
        1000.0 / ours_ms,
        sws_ms.map_or("-".into(), |m| format!("{:.0}", 1000.0 / m)),
        agree.map_or("-".into(), |d| d.to_string()),
    );

    // (b) YUYV → I420 → H.264 at 4 Mbit/s.
    let mut bytes = 0;
    let (enc_s, enc_spread) = ours(runs, || {
        let mut enc = OpenH264::open(settings()).expect("open openh264");
        bytes = 0;
        for f in &frames {
            yuyv_to_i420(f, 2 * W, W, H, &mut picture).expect("convert");
            let out = enc
                .encode(&picture)
                .expect("encode")
                .expect("no skipped frames");
            bytes += out.data.len();
        }
    });
    let enc_ms = ms(enc_s, n);
    let kbps = bytes as f64 * 8.0 / (n as f64 / FPS as f64) / 1000.0;
    let once = format!("{input} -i {file} -filter_threads 1");
    let x = have_ffmpeg
        .then(|| {
            let codec = match h264 {
                "libx264" => "-preset ultrafast -tune zerolatency",
                _ => "-rc_mode bitrate",
            };
            ffmpeg(
                &format!(
                    "{once} -pix_fmt yuv420p -c:v {h264} {codec} -b:v {BITRATE_KBPS}k -g {GOP} -threads 1 -f null -"
                ),
                &format!("{once} -f null -"),
                runs,
            )
        })
        .flatten();
    let x_ms = x.map(|(net, _)| ms(net, n));
    println!(
        "(b) YUYV -> I420 -> H.264 {BITRATE_KBPS} kbit/s, {n} frames: ours (openh264) {enc_ms:.2} ms (spread {:.0} %, {kbps:.0} kbit/s, cold conversion {:.1} % of it), ffmpeg {h264} {}; ours / ffmpeg {}",
        enc_spread * 100.0,
        cold_ms / enc_ms * 100.0,
        cell(x_ms),
        x_ms.map_or("-".into(), |x| format!("{:.2}", enc_ms / x)),
    );

    // (c) MJPEG decode to I420.
    let jpeg_frames = mjpeg_frames(&frames[..jpegs]);
    let avg_kb = jpeg_frames.iter().map(Vec::len).sum::<usize>() as f64 / jpegs as f64 / 1000.0;
    let mut dec = MjpegDecoder::new();
    let decodes = jpegs * passes;
    let (dec_s, dec_spread) = ours(runs, || {
        for j in jpeg_frames.iter().cycle().take(decodes) {
            dec.decode(j, &mut picture).expect("decode");
        }
    });
    let dec_ms = ms(dec_s, decodes);
    let mjpeg = dir.join("frames.mjpeg");
    write_file(&mjpeg, &jpeg_frames);
    let mjpeg_in = format!(
        "ffmpeg -hide_banner -loglevel error -threads 1 -f mjpeg -stream_loop {} -i {} -filter_threads 1",
        passes - 1,
        mjpeg.to_str().expect("UTF-8 temp path")
    );
    let m = have_ffmpeg
        .then(|| {
            ffmpeg(
                &format!("{mjpeg_in} -pix_fmt yuv420p -f null -"),
                &format!("{mjpeg_in} -c:v copy -f null -"),
                runs,
            )
        })
        .flatten();
    let m_ms = m.map(|(net, _)| ms(net, decodes));
    println!(
        "(c) MJPEG {W}x{H} 4:2:2 q{JPEG_QUALITY} (~{avg_kb:.0} kB, no DHT) -> I420, {decodes} decodes: ours (zune-jpeg) {dec_ms:.2} ms (spread {:.0} %), ffmpeg mjpeg + swscale {}; ours / ffmpeg {}",
        dec_spread * 100.0,
        cell(m_ms),
        m_ms.map_or("-".into(), |m| format!("{:.2}", dec_ms / m)),
    );
    std::fs::remove_dir_all(&dir).ok();

    let report = json!({
        "bench": "convert", "width": W, "height": H, "runs": runs,
        "yuyv_to_i420": {"ours_ms": ours_ms, "ours_cold_ms": cold_ms, "ffmpeg_ms": sws_ms, "ours_fps": 1000.0 / ours_ms,
                          "ffmpeg_fps": sws_ms.map(|m| 1000.0 / m), "chroma_max_diff_to_ffmpeg": agree},
        "yuyv_to_h264": {"ours_ms": enc_ms, "kbps": kbps, "ffmpeg_encoder": h264, "ffmpeg_ms": x_ms,
                         "ours_over_ffmpeg": x_ms.map(|x| enc_ms / x)},
        "mjpeg_to_i420": {"ours_ms": dec_ms, "jpeg_kb": avg_kb, "ffmpeg_ms": m_ms,
                          "ours_over_ffmpeg": m_ms.map(|m| dec_ms / m)},
    });
    println!("{report}");
}
