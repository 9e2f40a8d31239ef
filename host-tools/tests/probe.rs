//! `roomcast-host probe` against the real daemon on loopback.
//!
//! The daemon binary is `$ROOMCAST_BIN`, else `target/release/roomcast` of
//! this workspace (`$CARGO_TARGET_DIR` is honoured); build it first with
//! `cargo build --release -p roomcast`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn daemon_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ROOMCAST_BIN") {
        return p.into();
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-tools sits inside the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                workspace.join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    target.join("release").join("roomcast")
}

/// Kills and reaps the daemon however the test ends, and removes its data.
struct Daemon {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

#[test]
fn probe_reports_segments_and_latency_from_the_real_daemon() {
    let bin = daemon_path();
    assert!(
        bin.is_file(),
        "daemon binary {} not found: run `cargo build --release -p roomcast` or set ROOMCAST_BIN",
        bin.display()
    );
    let port = free_port();
    let data_dir =
        std::env::temp_dir().join(format!("roomcast-host-probe-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&data_dir).unwrap();
    // The status API needs the admin: provision an API token, as an
    // installer would.
    let token = "probe-test-token-0123456789abcdef";
    std::fs::write(data_dir.join("api-tokens"), format!("{token}\n")).unwrap();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(&bin)
        .args(["--http", &addr, "--data-dir"])
        .arg(&data_dir)
        .args(["--size", "320x240", "--fps", "30", "--gop", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let mut daemon = Daemon { child, data_dir };

    // Wait for the HTTP server to listen.
    let started = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!("the daemon exited early with {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the daemon did not listen on {addr} within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = Command::new(env!("CARGO_BIN_EXE_roomcast-host"))
        .args(["probe", &format!("http://{addr}"), "--seconds", "3"])
        .env("ROOMCAST_TOKEN", token)
        .output()
        .expect("run roomcast-host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "probe failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(daemon.child.try_wait().unwrap().is_none(), "daemon died");
    drop(daemon);

    // The multivariant playlist's one rendition, as the box measured it.
    let rendition = stdout
        .lines()
        .find(|l| l.starts_with("rendition r0/index.m3u8: 320x240, peak "))
        .unwrap_or_else(|| panic!("no rendition line:\n{stdout}"));
    assert!(rendition.contains("codecs avc1."), "{rendition}");
    let segments: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("segment "))
        .collect();
    assert!(segments.len() >= 2, "fewer than 2 segments:\n{stdout}");
    for line in &segments {
        assert!(line.contains("TS ok"), "{line}");
        let latency: f64 = line
            .split("live edge ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no latency in {line:?}"));
        assert!(
            latency < 5.0 && latency > -1.0,
            "latency {latency} s out of range: {line}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("ok: ")),
        "no summary:\n{stdout}"
    );
}
