//! roomcast daemon library: everything `main.rs` wires together, exposed as
//! a library so benchmarks and tests can build the same pipeline.
//!
//! The folders follow the frames (see ARCHITECTURE.md): [`source`] (test
//! pattern, cameras) → [`encoder`] (openh264, V4L2 M2M, pass-through) and
//! [`audio`] → [`pipeline`] (the capture, encoder and sound threads) →
//! [`base::bus`] (one bounded queue per sink) → [`sink`] (HLS, LL-HLS, RTMP,
//! SRT, recorder) → [`control`] (HTTP, API, page, mDNS, systemd, GPIO).
//! Below them: [`base`] (clock, frames, bus, counters), [`config`] (settings,
//! board profiles, command line, URLs), [`v4l2`] (the kernel's video
//! devices) and [`sim`] (fake video devices for tests and the simulator).

pub mod audio;
pub mod base;
pub mod config;
pub mod control;
pub mod encoder;
pub mod pipeline;
pub mod sim;
pub mod sink;
pub mod source;
pub mod v4l2;

use anyhow::Context;
use base::bus::FrameBus;
use base::clock::SharedClock;
use control::{app::App, auth, http, mdns, sdnotify};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Threads handing answers to parked LL-HLS requests to the server (a
/// channel send each).
const LL_REPLY_THREADS: usize = 1;

/// A started daemon: pipeline running, HLS sink packaging, HTTP serving.
pub struct Daemon {
    pub app: Arc<App>,
    pub http: Arc<http::server::HttpServer>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts everything with `cfg`, serving HTTP on `listener` and HTTPS on
/// `https` with its certificate (both bound by the caller, so a port in use
/// is reported before anything starts).
pub fn start(
    clock: SharedClock,
    cfg: config::ValidConfig,
    data_dir: &std::path::Path,
    config_path: PathBuf,
    listener: std::net::TcpListener,
    https: Option<(std::net::TcpListener, Arc<control::tls::CertStore>)>,
) -> anyhow::Result<Daemon> {
    let bus = Arc::new(FrameBus::new());
    let stats = Arc::new(base::stats::Stats::default());
    // HLS and LL-HLS packagers, one set per rendition of the ladder.
    let (renditions, ll_replies) =
        sink::served::Renditions::start(bus.clone(), clock.clone(), &cfg);
    let mut threads = Vec::new();
    let pipeline = pipeline::Pipeline::new(
        clock.clone(),
        bus.clone(),
        stats.clone(),
        sim::backend(clock.clone()),
    )
    .with_audio_backend(audio::backend(clock.clone()));
    if let Err(e) = pipeline.apply(&cfg) {
        // A board's hardware encoder that is missing (driver not loaded)
        // must not leave the box without a stream: fall back to software
        // for this run, and say so.
        if !matches!(cfg.encoder(), config::EncoderSetting::M2m(_)) {
            return Err(e).context("start the encoder");
        }
        eprintln!("roomcast: {e}; using openh264 instead");
        let mut soft = cfg.get().clone();
        soft.encoder = "openh264".into();
        let soft = soft.validate().context("fallback configuration")?;
        pipeline.apply(&soft).context("start the encoder")?;
    }
    // RTMP, SRT and the recorder: one thread and bus queue per output
    // (sink/output.rs).
    let outputs = sink::outputs(&bus, &clock, data_dir);
    outputs.apply(&cfg);
    let app = Arc::new(App {
        started_ns: clock.monotonic_ns(),
        clock,
        stats,
        bus,
        pipeline,
        outputs,
        renditions,
        config: Mutex::new(cfg),
        config_path,
        auth: auth::Auth::new(data_dir),
        http_responses: Default::default(),
        tls: https.as_ref().map(|(_, store)| store.clone()),
        https_port: Default::default(),
    });
    let server =
        http::server::start(listener, https, app.clone()).context("start the HTTP server")?;
    let server = Arc::new(server);
    threads.extend(http::serve_ll_replies(
        app.clone(),
        ll_replies,
        LL_REPLY_THREADS,
    ));
    // mDNS announcement (while `mdns` is on) and, under systemd, READY=1 and
    // the watchdog pings.
    threads.extend(mdns::start(app.clone(), server.local_addr()));
    threads.extend(sdnotify::start(app.clone(), server.clone()));
    Ok(Daemon {
        app,
        http: server,
        threads,
    })
}
