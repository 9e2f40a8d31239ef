//! `roomcast`: the daemon. Parses the command line and the stored
//! configuration, then runs until killed. Exit code 2 means bad input (flags
//! or configuration), with one line on stderr saying what and how to fix it.

use anyhow::Context;
use roomcast::base::clock::{Clock, RealClock};
use roomcast::config::board;
use roomcast::config::cli::{self, Action};
use roomcast::config::{self, CONFIG_FILE};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => return bad_input(&e.to_string()),
    };
    match args.action {
        Action::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Action::Version => {
            println!("roomcast {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Action::Run | Action::ResetPassword => {}
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    if args.action == Action::ResetPassword {
        return match roomcast::control::auth::reset(&data_dir) {
            Ok(code) => {
                eprintln!(
                    "roomcast: admin password and API tokens removed from {}; the web page asks for a new password",
                    data_dir.display()
                );
                roomcast::control::auth::print_setup_code(&code);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "roomcast: cannot reset the password in {}: {e}",
                    data_dir.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    let config_path = args
        .config_file
        .clone()
        .unwrap_or_else(|| data_dir.join(CONFIG_FILE));
    let stored = match config::load(&config_path) {
        Ok(c) => c,
        Err(e) => return bad_input(&e.to_string()),
    };
    // The board: --board, else `board` in the file, else the device tree
    // (none on a PC: "generic", which changes nothing). Its video profile
    // fills in what the stored file leaves out.
    let (model, compatible) = board::read_device_tree();
    let chosen = args.overrides.board.as_deref();
    let chosen = chosen.or(stored.get().board.as_deref());
    let board = match board::select(chosen, model.as_deref(), &compatible) {
        Ok(b) => b,
        Err(e) => return bad_input(&e.to_string()),
    };
    let (with_board, notes) =
        board.apply_defaults(stored.get().clone(), &board::file_keys(&config_path));
    if board.profile.is_some() {
        let model = board.model.as_deref().unwrap_or("no device-tree model");
        let by = board.selected_by.as_str();
        eprintln!("roomcast: board {} ({model}; chosen by {by})", board.name());
    }
    for n in notes {
        eprintln!("roomcast: {n}");
    }
    board::set_current(board);
    let cfg = match args.overrides.apply(with_board).validate() {
        Ok(c) => c,
        Err(e) => return bad_input(&format!("bad setting {e}")),
    };
    match run(args.http, args.https, data_dir, config_path, cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// HTTPS beside HTTP: `--https ADDR:PORT`, else the HTTP address with
/// `https.port` (0 or `--https off`: none). A port in use or a certificate
/// that cannot be made leaves the box on plain HTTP, with a line saying so.
fn https_listener(
    http: std::net::SocketAddr,
    flag: Option<Option<std::net::SocketAddr>>,
    cfg: &config::ValidConfig,
    data_dir: &std::path::Path,
) -> Option<(
    std::net::TcpListener,
    Arc<roomcast::control::tls::CertStore>,
)> {
    let port = cfg.get().https.port;
    let addr = match flag {
        Some(at) => at?,
        None if port == 0 => return None,
        None => std::net::SocketAddr::new(http.ip(), port),
    };
    let names = roomcast::control::tls::default_names();
    let store = match roomcast::control::tls::CertStore::open(data_dir, &names) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("roomcast: no HTTPS: {e}");
            return None;
        }
    };
    let listener = match roomcast::control::http::server::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("roomcast: no HTTPS: cannot listen on {addr}: {e}");
            return None;
        }
    };
    let info = store.info();
    let shown = listener.local_addr().map_or(addr, |a| a);
    eprintln!(
        "roomcast: HTTPS on {shown}, {} certificate SHA-256 {}",
        if info.self_signed {
            "self-signed"
        } else {
            "uploaded"
        },
        info.fingerprint
    );
    Some((listener, store))
}

fn bad_input(msg: &str) -> ExitCode {
    eprintln!("roomcast: {msg}");
    ExitCode::from(2)
}

/// `$ROOMCAST_DATA_DIR`, else `~/.local/share/roomcast` (the box's systemd
/// unit passes `--data-dir /var/lib/roomcast`).
fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ROOMCAST_DATA_DIR") {
        return d.into();
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/roomcast"),
        None => PathBuf::from("roomcast-data"),
    }
}

fn run(
    http: std::net::SocketAddr,
    https: Option<Option<std::net::SocketAddr>>,
    data_dir: PathBuf,
    config_path: PathBuf,
    cfg: config::ValidConfig,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // Until the admin password is set: the one-time setup code, on the console.
    roomcast::control::auth::announce_setup_code(&data_dir);
    let listener = roomcast::control::http::server::bind(http)
        .with_context(|| format!("cannot listen on {http}"))?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock::new());
    let c = cfg.get();
    let (w, h, fps) = (c.video.width, c.video.height, c.video.fps);
    let source = match cfg.source() {
        config::VideoSource::TestPattern => "the test pattern".to_string(),
        config::VideoSource::Camera(path) => format!("the camera at {path}"),
    };
    let https = https_listener(http, https, &cfg, &data_dir);
    let daemon = roomcast::start(clock, cfg, &data_dir, config_path, listener, https)?;
    // Status LED and reset button, when the board has them (not on a PC).
    let _gpio = roomcast::control::gpio::start(board::current(), daemon.app.clone());
    let shown = if http.ip().is_unspecified() {
        format!("localhost:{}", http.port())
    } else {
        http.to_string()
    };
    eprintln!("roomcast: streaming {w}x{h}@{fps} from {source}; web page http://{shown}/, HLS http://{shown}/hls/index.m3u8");
    // systemd stops the box's service with SIGTERM: finish the recording and
    // close the outputs rather than leave a `.part` file behind.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot catch SIGTERM")?;
    let app = daemon.app.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("roomcast: signal {sig}: stopping");
                app.shutdown();
                std::process::exit(0);
            }
        })
        .context("cannot start the signal thread")?;
    for t in daemon.threads {
        let _ = t.join();
    }
    Ok(())
}
