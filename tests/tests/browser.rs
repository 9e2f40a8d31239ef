//! The web page in a real browser: Debian's Chromium, driven headless by
//! `tests/browser/play.mjs` (playwright-core, pinned in its package-lock.json),
//! plays the daemon's HLS with hls.js, reads the status panel and clicks
//! through the settings form (a refused value, then an applied one).

use roomcast_e2e::{have, Daemon};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn web_page_plays_the_stream_and_applies_settings() {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} is missing: run tests/run.sh (it installs Debian's chromium), or set CHROMIUM=/path/to/chromium",
        chromium.display()
    );
    assert!(
        have("node"),
        "node is missing: run tests/run.sh (it installs Node.js and npm)"
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`npm ci` in {} failed: is npm installed (tests/run.sh installs it)?",
            dir.display()
        );
    }

    let daemon = Daemon::start(
        "browser",
        &["--size", "640x360", "--fps", "25", "--gop", "25"],
    );
    let (status, stdout, stderr) = run_with_timeout(
        Command::new("node")
            .arg("play.mjs")
            .arg(daemon.base_url())
            .current_dir(&dir),
        Duration::from_secs(120),
    );
    print!("{stdout}");
    eprint!("{stderr}");
    assert_eq!(
        status,
        Some(0),
        "tests/browser/play.mjs failed (its output is above)"
    );
}

/// Runs `cmd` to its end or until `timeout` (then kills it: exit code None),
/// returning its exit code, stdout and stderr.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (is Node.js installed? tests/run.sh installs it)");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = err.join().unwrap_or_default();
    if code.is_none() {
        stderr.push_str(&format!(
            "\nnode play.mjs was killed after {} s\n",
            timeout.as_secs()
        ));
    }
    (code, out.join().unwrap_or_default(), stderr)
}
