//! CPU benchmark for the design's "Budgets": pipeline overhead over the bare
//! encoder (≤ 5 %), mux+HLS cost at 4 Mbit/s (< 1 % of one core), and our
//! openh264 against GStreamer's openh264enc (and x264 for scale) on the same
//! raw frames. `cargo bench -p roomcast --bench pipeline [-- --frames N
//! --sizes 1280x720,1920x1080 --quick]`; see benches/README.md.
//!
//! Everything is CPU time, not wall time, so a busy shared machine slows the
//! run without skewing it much; each figure is the median of several runs,
//! ours alternating bare/pipeline so drift hits both alike.

// getrusage is the only way to read the CPU time of this process, of one
// thread, and of the children it waited for; std has no safe wrapper.
#![allow(unsafe_code)]

mod common;
use common::{cpu, median, spread};

use roomcast::base::bus::FrameBus;
use roomcast::base::clock::{RealClock, SharedClock};
use roomcast::base::frame::{I420Frame, RawFrame};
use roomcast::base::stats::Stats;
use roomcast::config::ladder::Rung;
use roomcast::config::Config;
use roomcast::control::app::App;
use roomcast::encoder::openh264::OpenH264;
use roomcast::encoder::{EncoderChoice, EncoderSettings, VideoEncoder};
use roomcast::pipeline::{encode_pictures, Pipeline, Rung as PipelineRung};
use roomcast::sink::hls::HlsStore;
use roomcast::sink::served::Renditions;
use roomcast::source::pattern::Pattern;
use serde_json::json;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const FPS: u64 = 30;
const BITRATE_KBPS: u32 = 4000;
const GOP: u32 = 30;
const FRAME_NS: u64 = 1_000_000_000 / FPS;
/// The ladder's second rendition, as the budget names it.
const RUNG: Rung = Rung {
    width: 640,
    height: 360,
    bitrate_kbps: 800,
};
/// The daemon's `RAW_QUEUE`, so the queue behaves alike.
const RAW_QUEUE: usize = 2;

fn settings(width: u32, height: u32) -> EncoderSettings {
    let (fps, bitrate_kbps, gop) = (FPS as u32, BITRATE_KBPS, GOP);
    EncoderSettings {
        width,
        height,
        fps,
        bitrate_kbps,
        gop,
        threads: 1,
    }
}

/// CPU seconds of the encoder alone, encoding `frames` in a plain loop.
fn bare(frames: &[I420Frame], w: u32, h: u32) -> f64 {
    let mut enc = OpenH264::open(settings(w, h)).expect("open openh264");
    let start = cpu(libc::RUSAGE_SELF);
    let out = frames
        .iter()
        .filter(|f| enc.encode(f).expect("encode").is_some())
        .count();
    let spent = cpu(libc::RUSAGE_SELF) - start;
    assert_eq!(
        out,
        frames.len(),
        "frame skipping is off: every picture gives a frame"
    );
    spent
}

/// One pipeline run: CPU seconds of the whole process, of the encoder thread
/// alone, and the HLS segments published.
struct Run {
    total: f64,
    encoder_thread: f64,
    segments: u64,
    /// Bitrate the encoder actually produced.
    kbps: f64,
}

/// The daemon's pieces (encoder thread with the ladder's rungs, frame bus,
/// the TS and LL-HLS packagers of every rendition, the idle HTTP server)
/// turning `frames` into HLS segments, as `roomcast::start` builds them
/// minus `Pipeline::apply`: its paced test source would set the rate, and
/// here the bench is the source. `ladder` is the lower renditions (`[]`:
/// the top one alone).
///
/// Pictures are moved in, not cloned, and come back through the pipeline's
/// recycling channel (the daemon's capture reuses buffers too), so the
/// difference to [`bare`] is the pipeline's own cost, not 3 MB of fresh
/// pages per 1080p clone.
fn pipeline(frames: &mut Vec<I420Frame>, w: u32, h: u32, ladder: &[Rung], dir: &Path) -> Run {
    let mut cfg = Config::default();
    (cfg.video.width, cfg.video.height, cfg.video.bitrate_kbps) = (w, h, BITRATE_KBPS);
    (cfg.video.fps, cfg.video.gop, cfg.video.threads) = (FPS as u32, GOP, 1);
    cfg.ladder = Some(ladder.to_vec());
    let cfg = cfg.validate().expect("bench config is valid");
    let clock: SharedClock = Arc::new(RealClock::new());
    let (bus, stats) = (Arc::new(FrameBus::new()), Arc::new(Stats::default()));
    // Every rendition's TS and LL-HLS packagers, as in the daemon.
    let (renditions, ll_replies) = Renditions::start(bus.clone(), clock.clone(), &cfg);
    let queues = bus.sinks();
    let rungs = cfg.renditions()[1..]
        .iter()
        .map(|r| {
            let s = EncoderSettings {
                width: r.width,
                height: r.height,
                bitrate_kbps: r.bitrate_kbps,
                ..settings(w, h)
            };
            PipelineRung::open(&EncoderChoice::OpenH264, s, &*roomcast::v4l2::no_devices())
                .expect("open the rung's encoder")
        })
        .collect();
    let app = Arc::new(App {
        started_ns: clock.monotonic_ns(),
        pipeline: Pipeline::new(
            clock.clone(),
            bus.clone(),
            stats.clone(),
            roomcast::v4l2::no_devices(),
        ),
        outputs: roomcast::sink::outputs(&bus, &clock, dir),
        clock,
        stats: stats.clone(),
        bus: bus.clone(),
        renditions,
        config: Mutex::new(cfg),
        config_path: dir.join("config.toml"),
        auth: roomcast::control::auth::Auth::new(dir),
        http_responses: Default::default(),
        tls: None,
        https_port: Default::default(),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind HTTP");
    let server =
        roomcast::control::http::server::start(listener, None, app.clone()).expect("start HTTP");
    let enc: Box<dyn VideoEncoder> = Box::new(OpenH264::open(settings(w, h)).expect("open"));
    let (tx, rx) = mpsc::sync_channel(RAW_QUEUE);
    let (free_tx, free_rx) = mpsc::channel();
    let n = frames.len() as u64;

    let start = cpu(libc::RUSAGE_SELF);
    let encoder = std::thread::spawn({
        let (bus, stats) = (bus.clone(), stats.clone());
        move || {
            encode_pictures(enc, rungs, settings(w, h), rx, free_tx, &bus, &stats);
            cpu(libc::RUSAGE_THREAD)
        }
    });
    for (i, picture) in (0..).zip(frames.drain(..)) {
        let (capture_ns, wall_ms) = (i * FRAME_NS, i * 1000 / FPS);
        let raw = RawFrame {
            picture,
            capture_ns,
            wall_ms,
            duration_ns: FRAME_NS,
        };
        tx.send(raw).expect("encoder thread alive"); // blocks when full: no drops
    }
    drop(tx);
    let encoder_thread = encoder.join().expect("encoder thread");
    // The packagers pop the last frames just after the encoder ends;
    // stopping them earlier would lose them. Each queue takes its
    // rendition's n pictures.
    while queues.iter().any(|q| q.stats().delivered < n) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let served = app.renditions.all();
    // The HTTP server serves them while they run (one GET, a few µs).
    check_served(server.local_addr(), &served[0].hls);
    app.renditions.stop();
    drop(ll_replies);
    let total = cpu(libc::RUSAGE_SELF) - start;

    frames.extend(free_rx.try_iter()); // FIFO: the order is kept
    assert_eq!(frames.len() as u64, n, "every picture came back");
    assert_eq!(stats.encoded.load(Relaxed), n, "every picture was encoded");
    assert_eq!(
        served.len(),
        ladder.len() + 1,
        "one served set per rendition"
    );
    for q in &queues {
        assert_eq!(q.stats().dropped, 0, "the {} packager kept up", q.name());
    }
    let segments = served[0].hls.total_segments();
    for s in &served {
        assert!(s.ll.parts_published() >= n / 8, "LL-HLS parts were made");
        assert_eq!(
            s.hls.total_segments(),
            segments,
            "segments line up across renditions"
        );
    }
    drop(server);
    let media_s = n as f64 / FPS as f64;
    Run {
        total,
        encoder_thread,
        segments,
        kbps: stats.encoded_bytes.load(Relaxed) as f64 * 8.0 / media_s / 1000.0,
    }
}

/// The idle HTTP server really serves what was packaged (checked outside the
/// encoder thread): the top rendition's TS playlist, whose last segment the
/// store holds.
fn check_served(addr: std::net::SocketAddr, store: &HlsStore) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /hls/ts/r0/index.m3u8 HTTP/1.0\r\n\r\n")
        .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read reply");
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 OK"),
        "{reply}"
    );
    let last = reply
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .expect("a segment");
    let seq: u64 = last
        .trim_start_matches("seg")
        .trim_end_matches(".ts")
        .parse()
        .expect("segN.ts");
    assert!(store.segment(seq).is_some(), "{last} is not in the store");
}

/// Runs a command line (split on spaces) and returns its child CPU seconds;
/// `None` if it cannot start or fails.
fn child_cpu(cmd: &str) -> Option<f64> {
    let mut words = cmd.split(' ');
    let start = cpu(libc::RUSAGE_CHILDREN);
    let mut c = Command::new(words.next()?);
    let status = c.args(words).stdout(Stdio::null()).status().ok()?;
    status.success().then(|| cpu(libc::RUSAGE_CHILDREN) - start)
}

/// Whether a probe command line succeeds and prints `needle`.
fn available(cmd: &str, needle: &str) -> bool {
    let mut words = cmd.split(' ');
    let out = Command::new(words.next().unwrap_or_default())
        .args(words)
        .stderr(Stdio::null())
        .output();
    out.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
}

/// An external encoder's (raw, net) CPU seconds: the median whole run, and
/// that minus the median run of the same tool that only reads and parses the
/// file, so the comparison is encoder against encoder.
type External = Option<(f64, f64)>;

fn external(encode: &str, parse: &str, runs: usize) -> External {
    let median_of = |cmd| {
        (0..runs)
            .map(|_| child_cpu(cmd))
            .collect::<Option<_>>()
            .map(median)
    };
    let raw = median_of(encode)?;
    Some((raw, raw - median_of(parse)?))
}

/// GStreamer's openh264enc set like ours: bitrate rate control, GOP, one
/// thread, one slice, medium complexity, no scene-cut IDRs, no frame skips.
fn gst(file: &str, w: u32, h: u32, runs: usize) -> External {
    let src = format!("gst-launch-1.0 -q filesrc location={file} ! rawvideoparse width={w} height={h} format=i420 framerate={FPS}/1");
    let enc = format!(
        "openh264enc bitrate={} gop-size={GOP} multi-thread=1 rate-control=bitrate complexity=medium \
         scene-change-detection=false enable-frame-skip=false usage-type=camera",
        BITRATE_KBPS * 1000
    );
    external(
        &format!("{src} ! {enc} ! fakesink"),
        &format!("{src} ! fakesink"),
        runs,
    )
}

/// ffmpeg's libx264 at its fastest, the usual "cheap software H.264" yardstick.
fn x264(file: &str, w: u32, h: u32, runs: usize) -> External {
    let input = format!("ffmpeg -hide_banner -loglevel error -f rawvideo -pix_fmt yuv420p -s {w}x{h} -r {FPS} -i {file}");
    let x264 = format!(
        "-c:v libx264 -preset ultrafast -tune zerolatency -b:v {BITRATE_KBPS}k -g {GOP} -threads 1"
    );
    // Without -c:v the null muxer gets the decoded frames, unencoded.
    external(
        &format!("{input} {x264} -f null -"),
        &format!("{input} -f null -"),
        runs,
    )
}

struct Args {
    frames: usize,
    runs: usize,
    sizes: Vec<(u32, u32)>,
}

fn args() -> Args {
    let mut a = Args {
        frames: 150,
        runs: 3,
        sizes: vec![(1280, 720), (1920, 1080)],
    };
    let mut frames = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--frames" => frames = it.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0),
            "--sizes" => {
                let v = it.next().unwrap_or_default();
                let size = |s: &str| {
                    s.split_once('x')
                        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                };
                a.sizes = v
                    .split(',')
                    .map(size)
                    .collect::<Option<_>>()
                    .expect("--sizes WxH[,WxH...]");
            }
            "--quick" => (a.frames, a.runs) = (60, 1),
            _ => {} // cargo passes --bench
        }
    }
    a.frames = frames.unwrap_or(a.frames);
    a
}

/// Test-pattern pictures 0..n, each different (moving box, counter, flash),
/// with sensor-like noise on the luma: the bare pattern is so flat that the
/// encoder reaches only ~5 % of the target bitrate, and a real camera's
/// picture is never that easy. The noise is a fixed xorshift sequence, so
/// every tool gets the same bytes.
fn pattern_frames(w: u32, h: u32, n: usize) -> Vec<I420Frame> {
    let pattern = Pattern::new(w as usize, h as usize);
    let mut seed: u32 = 0x9E37_79B9;
    let mut draw = |i| {
        let mut f = I420Frame::new(0, 0);
        pattern.draw(i, FPS as u32, i * 1000 / FPS, &mut f);
        let (y, _, _) = f.planes_mut();
        for px in y.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            // ±6 levels: visible grain, like a small sensor in a dim room.
            let d = (seed % 13) as i16 - 6;
            *px = (i16::from(*px) + d).clamp(16, 235) as u8;
        }
        f
    };
    (0..n as u64).map(&mut draw).collect()
}

fn write_yuv(path: &Path, frames: &[I420Frame]) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create .yuv"));
    for f in frames {
        out.write_all(&f.data).expect("write .yuv");
    }
    out.flush().expect("write .yuv");
}

fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("roomcast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let have_gst = available("gst-inspect-1.0 openh264enc", "openh264enc")
        && available("gst-inspect-1.0 rawvideoparse", "rawvideoparse");
    let have_x264 = available("ffmpeg -hide_banner -encoders", "libx264");
    let (n, runs, media_s) = (a.frames, a.runs, a.frames as f64 / FPS as f64);
    let ms = |s: f64| s * 1000.0 / n as f64;
    let cell = |e: External, pkg: &str| match e {
        Some((raw, net)) => format!("{:.2} ({:.2})", ms(net), ms(raw)),
        None => format!("skipped (install {pkg})"),
    };

    println!("roomcast pipeline bench: {n} frames ({media_s:.1} s of media) per size, {BITRATE_KBPS} kbit/s, GOP {GOP}, 1 thread");
    println!("CPU ms per frame, median of {runs} runs; gst and x264: net (raw); noise: spread of the bare runs");
    let head = "size       kbit/s  bare  pipeline pipe/bare  mux+HLS  (direct)  ladder lad/pipe   gst openh264  x264 ultrafast ours/gst  noise";
    println!("{head}");
    let mut results = Vec::new();
    for &(w, h) in &a.sizes {
        let mut frames = pattern_frames(w, h, n);
        let yuv = dir.join(format!("{w}x{h}.yuv"));
        write_yuv(&yuv, &frames);
        let (mut bares, mut pipes, mut ladders) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            bares.push(bare(&frames, w, h));
            pipes.push(pipeline(&mut frames, w, h, &[], &dir));
            ladders.push(pipeline(&mut frames, w, h, &[RUNG], &dir));
        }
        let segments = (n as u64).div_ceil(GOP.into()) - 1; // the last one is still open
        assert!(
            pipes.iter().all(|r| r.segments == segments),
            "one segment per GOP"
        );
        let noise = spread(&bares) * 100.0;
        let (b, p) = (
            median(bares),
            median(pipes.iter().map(|r| r.total).collect()),
        );
        let ratio = p / b;
        // The second rendition's cost: the whole pipeline with it over the
        // whole pipeline without.
        let l = median(ladders.iter().map(|r| r.total).collect());
        let ladder = l / p;
        let mux = (p - b) / media_s * 100.0;
        // Everything outside the encoder thread, measured within each run, so
        // the encoder's run-to-run noise does not drown it.
        let direct =
            median(pipes.iter().map(|r| r.total - r.encoder_thread).collect()) / media_s * 100.0;
        let file = yuv.to_str().expect("UTF-8 temp path");
        let g = have_gst.then(|| gst(file, w, h, runs)).flatten();
        let x = have_x264.then(|| x264(file, w, h, runs)).flatten();
        std::fs::remove_file(&yuv).ok();
        let vs_gst = g.map(|(_, net)| b / net);
        let (size, bare_ms, pipe_ms) = (format!("{w}x{h}"), ms(b), ms(p));
        let (gc, xc) = (cell(g, "gstreamer1.0-plugins-bad"), cell(x, "ffmpeg"));
        let vs = vs_gst.map_or("-".into(), |r| format!("{r:.2}"));
        let kbps = median(pipes.iter().map(|r| r.kbps).collect());
        let ladder_ms = ms(l);
        println!("{size:<10}{kbps:>6.0}  {bare_ms:>5.2}{pipe_ms:>10.2}{ratio:>10.3}{mux:>8.2}%{direct:>9.2}% {ladder_ms:>7.2}{ladder:>8.3} {gc:>14} {xc:>15}{vs:>9}{noise:>6.1}%");
        let ext = |e: External| e.map(|(raw, net)| json!({"raw": ms(raw), "net": ms(net)}));
        results.push(json!({
            "size": size, "kbps": kbps, "bare_ms": bare_ms, "pipeline_ms": pipe_ms, "ratio": ratio,
            "mux_hls_pct_core": mux, "outside_encoder_pct_core": direct, "bare_spread_pct": noise,
            "ladder_ms": ladder_ms, "ladder_over_pipeline": ladder,
            "segments": segments, "gst_openh264_ms": ext(g), "x264_ultrafast_ms": ext(x), "ours_over_gst": vs_gst,
            "ok": {"ratio": ratio <= 1.05, "mux_hls": direct < 1.0, "ladder": ladder <= 1.35, "vs_gst": vs_gst.map(|r| r <= 1.0)},
        }));
    }
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "budgets: pipe/bare <= 1.05; mux+HLS < 1% of a core; lad/pipe <= 1.35 (+ a {}x{} rendition); ours/gst <= 1.00 (bare vs gst net)",
        RUNG.width, RUNG.height
    );
    let debian = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "libopenh264-7"])
        .output();
    let debian = debian
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let deb = debian.as_deref().unwrap_or("(not installed)");
    println!("libopenh264: ours is the openh264 crate's bundled source; gst uses Debian libopenh264-7 {deb}");
    let report = json!({"bench": "pipeline", "frames": n, "runs": runs, "bitrate_kbps": BITRATE_KBPS,
                        "gop": GOP, "debian_libopenh264": debian, "results": results});
    println!("{report}");
}
