//! CPU benchmark for the design's "Budgets": pipeline overhead over the bare
//! encoder (≤ 5 %), mux+HLS cost at 4 Mbit/s (< 1 % of one core), and our
//! openh264 against GStreamer's openh264enc (and x264 for scale) on the same
//! raw frames. Run with `cargo bench -p roomcast --bench pipeline [-- --frames
//! N --sizes 1280x720,1920x1080 --quick]`; see benches/README.md.
//!
//! Everything is measured as CPU time, not wall time, so a busy shared machine
//! slows the run down without skewing the figures much; each measurement is
//! the median of several runs, ours alternating bare/pipeline so drift hits
//! both alike.

// getrusage is the only way to read the CPU time of this process and of the
// children it waited for; std has no safe wrapper. Two small calls, no pointers
// kept.
#![allow(unsafe_code)]

use roomcast::app::{self, App};
use roomcast::bus::FrameBus;
use roomcast::clock::{RealClock, SharedClock};
use roomcast::config::Config;
use roomcast::encoder::openh264::OpenH264;
use roomcast::encoder::{EncoderSettings, VideoEncoder};
use roomcast::frame::{I420Frame, RawFrame};
use roomcast::hls::{self, HlsStore};
use roomcast::pipeline::{encode_loop, Pipeline};
use roomcast::source::pattern::Pattern;
use roomcast::stats::Stats;
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
/// Same as the daemon's `HLS_QUEUE` and `RAW_QUEUE`, so queues behave alike.
const HLS_QUEUE: usize = 120;
const RAW_QUEUE: usize = 2;

/// Process CPU time (user + system) so far, of this process or of the
/// children it has waited for.
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct we pass; all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    assert_eq!(unsafe { libc::getrusage(who, &mut ru) }, 0, "getrusage");
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn settings(w: u32, h: u32) -> EncoderSettings {
    EncoderSettings {
        width: w,
        height: h,
        fps: FPS as u32,
        bitrate_kbps: BITRATE_KBPS,
        gop: GOP,
        threads: 1,
    }
}

/// CPU seconds of the encoder alone, encoding `frames` in a plain loop.
fn bare(frames: &[I420Frame], w: u32, h: u32) -> f64 {
    let mut enc = OpenH264::open(settings(w, h)).expect("open openh264");
    let start = cpu(libc::RUSAGE_SELF);
    let mut out = 0;
    for f in frames {
        out += usize::from(enc.encode(f).expect("encode").is_some());
    }
    let spent = cpu(libc::RUSAGE_SELF) - start;
    assert_eq!(
        out,
        frames.len(),
        "frame skipping is off: every picture gives a frame"
    );
    spent.as_secs_f64()
}

/// CPU seconds of the whole process while the daemon's pieces (encoder
/// thread, frame bus, HLS packager thread, idle HTTP workers) turn `frames`
/// into HLS segments, and the number of segments published.
///
/// Pictures are moved into the pipeline, not cloned, and come back through
/// its recycling channel (as in the daemon, whose capture reuses buffers), so
/// the difference to [`bare`] is the pipeline's own cost, not 3 MB of page
/// faults per 1080p clone.
fn pipeline(frames: &mut Vec<I420Frame>, w: u32, h: u32, dir: &Path) -> (f64, u64) {
    let mut cfg = Config::default();
    (cfg.video.width, cfg.video.height, cfg.video.bitrate_kbps) = (w, h, BITRATE_KBPS);
    (cfg.video.fps, cfg.video.gop, cfg.video.threads) = (FPS as u32, GOP, 1);
    let cfg = cfg.validate().expect("bench config is valid");
    // What `roomcast::start` builds, minus `Pipeline::apply` (its paced test
    // source would set the rate; here the bench is the source).
    let clock: SharedClock = Arc::new(RealClock::new());
    let bus = Arc::new(FrameBus::new());
    let stats = Arc::new(Stats::default());
    let store = HlsStore::new(app::hls_settings(&cfg));
    let queue = bus.subscribe("hls", HLS_QUEUE);
    let sink = std::thread::spawn({
        let (queue, store) = (queue.clone(), store.clone());
        move || hls::run_sink(queue, store, 0)
    });
    let app = Arc::new(App {
        started_ns: clock.monotonic_ns(),
        pipeline: Pipeline::new(clock.clone(), bus.clone(), stats.clone()),
        clock,
        stats: stats.clone(),
        bus: bus.clone(),
        hls: store.clone(),
        config: Mutex::new(cfg),
        config_path: dir.join("config.toml"),
        http_responses: Default::default(),
    });
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind HTTP"));
    let workers = roomcast::http::serve(server.clone(), app.clone());
    let enc: Box<dyn VideoEncoder> =
        Box::new(OpenH264::open(settings(w, h)).expect("open openh264"));
    let (tx, rx) = mpsc::sync_channel(RAW_QUEUE);
    let (free_tx, free_rx) = mpsc::channel();
    let n = frames.len() as u64;

    let start = cpu(libc::RUSAGE_SELF);
    let encoder = std::thread::spawn({
        let (bus, stats) = (bus.clone(), stats.clone());
        move || encode_loop(enc, rx, free_tx, &bus, &stats, 0)
    });
    for (i, picture) in (0..).zip(frames.drain(..)) {
        let raw = RawFrame {
            picture,
            capture_ns: i * FRAME_NS,
            wall_ms: i * 1000 / FPS,
            duration_ns: FRAME_NS,
        };
        tx.send(raw).expect("encoder thread alive"); // blocking: no drops
    }
    drop(tx);
    encoder.join().expect("encoder thread");
    // The packager pops the last frames just after the encoder ends.
    while queue.stats().delivered < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    bus.unsubscribe(&queue);
    sink.join().expect("HLS thread");
    let spent = cpu(libc::RUSAGE_SELF) - start;

    frames.extend(free_rx.try_iter()); // FIFO, so the order is kept
    assert_eq!(frames.len() as u64, n, "every picture came back");
    assert_eq!(stats.encoded.load(Relaxed), n, "every picture was encoded");
    assert_eq!(queue.stats().dropped, 0, "the HLS sink kept up");
    check_served(&server, store.total_segments());
    for _ in &workers {
        server.unblock();
    }
    workers
        .into_iter()
        .for_each(|t| t.join().expect("HTTP worker"));
    (spent.as_secs_f64(), store.total_segments())
}

/// The idle HTTP server really serves what was packaged (checked outside the
/// measurement): the playlist lists the last published segment.
fn check_served(server: &tiny_http::Server, segments: u64) {
    let addr = server.server_addr().to_ip().expect("TCP listener");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /hls/index.m3u8 HTTP/1.0\r\n\r\n")
        .expect("send request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read reply");
    let last = format!("seg{}.ts", segments.saturating_sub(1));
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains(&last),
        "{reply}"
    );
}

/// Median child CPU seconds of `runs` runs of `cmd`; `None` if it fails.
fn child_cpu(cmd: &[&str], runs: usize) -> Option<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = cpu(libc::RUSAGE_CHILDREN);
        let ok = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            eprintln!("failed: {}", cmd.join(" "));
            return None;
        }
        times.push((cpu(libc::RUSAGE_CHILDREN) - start).as_secs_f64());
    }
    Some(median(times))
}

/// Whether a probe command runs and prints `needle`.
fn available(cmd: &[&str], needle: &str) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
}

/// An external encoder as (raw, net) CPU seconds: its whole run, and that
/// minus a run of the same tool that only reads and parses the file, so the
/// comparison is encoder against encoder.
type External = Option<(f64, f64)>;

fn external(encode: &[&str], parse: &[&str], runs: usize) -> External {
    let raw = child_cpu(encode, runs)?;
    Some((raw, raw - child_cpu(parse, runs)?))
}

/// GStreamer's openh264enc with our encoder's settings: bitrate rate control,
/// GOP, one thread, one slice, medium complexity, no scene-cut IDRs, no skips.
fn gst(file: &str, w: u32, h: u32, runs: usize) -> External {
    let src = format!("filesrc location={file} ! rawvideoparse width={w} height={h} format=i420 framerate={FPS}/1");
    let enc = format!(
        "openh264enc bitrate={} gop-size={GOP} multi-thread=1 rate-control=bitrate complexity=medium \
         scene-change-detection=false enable-frame-skip=false usage-type=camera",
        BITRATE_KBPS * 1000
    );
    let launch = |mid: &str| format!("gst-launch-1.0 -q {src} ! {mid}fakesink");
    let (e, p) = (launch(&format!("{enc} ! ")), launch(""));
    external(
        &e.split(' ').collect::<Vec<_>>(),
        &p.split(' ').collect::<Vec<_>>(),
        runs,
    )
}

/// ffmpeg's libx264 at its fastest, the usual "cheap software H.264" yardstick.
fn x264(file: &str, w: u32, h: u32, runs: usize) -> External {
    let input = format!("ffmpeg -hide_banner -loglevel error -f rawvideo -pix_fmt yuv420p -s {w}x{h} -r {FPS} -i {file}");
    let enc = format!(
        "{input} -c:v libx264 -preset ultrafast -tune zerolatency -b:v {BITRATE_KBPS}k -g {GOP} -threads 1 -f null -"
    );
    // Without -c:v the null muxer gets the decoded frames wrapped, unencoded.
    let parse = format!("{input} -f null -");
    external(
        &enc.split(' ').collect::<Vec<_>>(),
        &parse.split(' ').collect::<Vec<_>>(),
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
                a.sizes = v
                    .split(',')
                    .map(|s| {
                        s.split_once('x')
                            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    })
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| panic!("--sizes wants WxH[,WxH...], got {v:?}"));
            }
            "--quick" => (a.frames, a.runs) = (60, 1),
            _ => {} // cargo passes --bench
        }
    }
    a.frames = frames.unwrap_or(a.frames);
    a
}

fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("roomcast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let have_gst = available(&["gst-inspect-1.0", "openh264enc"], "openh264enc")
        && available(&["gst-inspect-1.0", "rawvideoparse"], "rawvideoparse");
    let have_x264 = available(&["ffmpeg", "-hide_banner", "-encoders"], "libx264");
    let debian = Command::new("dpkg-query")
        .args(["-W", "libopenh264-7"])
        .output()
        .ok();
    let debian = debian.map(|o| String::from_utf8_lossy(&o.stdout).trim().replace('\t', " "));
    let (n, media_s) = (a.frames, a.frames as f64 / FPS as f64);
    let per_frame = |s: f64| s * 1000.0 / n as f64;
    let fmt_ext = |e: External, tool: &str| match e {
        Some((raw, net)) => format!("{:6.2} ({:5.2})", per_frame(net), per_frame(raw)),
        None => format!("skipped (install {tool})"),
    };

    println!("roomcast pipeline bench: {n} frames ({media_s:.1} s of media), {BITRATE_KBPS} kbit/s, GOP {GOP}, 1 thread");
    println!(
        "CPU ms per frame, median of {} runs; external tools: net (raw)",
        a.runs
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>8} {:>15} {:>15} {:>8}",
        "size",
        "bare",
        "pipeline",
        "pipe/bare",
        "mux+HLS",
        "gst openh264",
        "x264 ultrafast",
        "ours/gst"
    );
    let mut results = Vec::new();
    for &(w, h) in &a.sizes {
        let pattern = Pattern::new(w as usize, h as usize);
        let mut frames: Vec<I420Frame> = (0..n as u64)
            .map(|i| {
                let mut f = I420Frame::new(0, 0);
                pattern.draw(i, FPS as u32, i * 1000 / FPS, &mut f);
                f
            })
            .collect();
        let yuv = dir.join(format!("{w}x{h}.yuv"));
        let mut out = BufWriter::new(std::fs::File::create(&yuv).expect("create .yuv"));
        frames
            .iter()
            .for_each(|f| out.write_all(&f.data).expect("write .yuv"));
        out.into_inner()
            .expect("flush .yuv")
            .sync_all()
            .expect("sync .yuv");

        let (mut bares, mut pipes, mut segments) = (Vec::new(), Vec::new(), 0);
        for _ in 0..a.runs {
            bares.push(bare(&frames, w, h));
            let (spent, segs) = pipeline(&mut frames, w, h, &dir);
            pipes.push(spent);
            segments = segs;
        }
        assert_eq!(
            segments,
            (n as u64).div_ceil(GOP.into()) - 1,
            "one segment per GOP but the open one"
        );
        let (b, p) = (median(bares), median(pipes));
        let file = yuv.to_str().expect("UTF-8 temp path");
        let g = if have_gst {
            gst(file, w, h, a.runs)
        } else {
            None
        };
        let x = if have_x264 {
            x264(file, w, h, a.runs)
        } else {
            None
        };
        std::fs::remove_file(&yuv).ok();
        let mux_pct = (p - b) / media_s * 100.0;
        let ours_gst = g.map(|(_, net)| b / net);
        println!(
            "{:<10} {:>9.2} {:>9.2} {:>9.3} {:>7.2}% {:>15} {:>15} {:>8}",
            format!("{w}x{h}"),
            per_frame(b),
            per_frame(p),
            p / b,
            mux_pct,
            fmt_ext(g, "gstreamer1.0-plugins-bad"),
            fmt_ext(x, "ffmpeg"),
            ours_gst.map_or("-".into(), |r| format!("{r:.2}")),
        );
        let ms =
            |e: External| e.map(|(raw, net)| json!({"raw": per_frame(raw), "net": per_frame(net)}));
        results.push(json!({
            "size": format!("{w}x{h}"), "bare_ms": per_frame(b), "pipeline_ms": per_frame(p),
            "ratio": p / b, "mux_hls_pct_core": mux_pct, "segments": segments,
            "gst_openh264_ms": ms(g), "x264_ultrafast_ms": ms(x), "ours_over_gst": ours_gst,
            "ok_ratio": p / b <= 1.05, "ok_mux": mux_pct < 1.0, "ok_vs_gst": ours_gst.map(|r| r <= 1.0),
        }));
    }
    std::fs::remove_dir_all(&dir).ok();
    println!("budgets: pipe/bare <= 1.05, mux+HLS < 1% of a core, ours/gst <= 1.00 (bare encoder vs gst net)");
    println!(
        "libopenh264: ours bundled by the openh264 crate; gst uses Debian {}",
        debian.as_deref().unwrap_or("(unknown)")
    );
    let all = |k: &str| results.iter().all(|r| r[k].as_bool() != Some(false));
    println!(
        "{}",
        json!({"bench": "pipeline", "frames": n, "runs": a.runs, "bitrate_kbps": BITRATE_KBPS, "gop": GOP,
               "results": results, "budgets_ok": all("ok_ratio") && all("ok_mux") && all("ok_vs_gst")})
    );
}
