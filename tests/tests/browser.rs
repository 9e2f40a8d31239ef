//! The web page in a real browser: Debian's Chromium, driven headless by
//! `tests/browser/play.mjs` (playwright-core, pinned in its package-lock.json),
//! plays the daemon's HLS with hls.js, reads the status panel and clicks
//! through the settings form (a refused value, then an applied one).

use roomcast_e2e::{browser_dir, run_with_timeout, Daemon};
use std::process::Command;
use std::time::Duration;

#[test]
fn web_page_plays_the_stream_and_applies_settings() {
    let dir = browser_dir();
    let daemon = Daemon::start(
        "browser",
        &["--size", "640x360", "--fps", "25", "--gop", "25"],
    );
    let (status, stdout, stderr) = run_with_timeout(
        Command::new("node")
            .arg("play.mjs")
            .arg(daemon.base_url())
            .env("ROOMCAST_TOKEN", &daemon.token)
            // Screens of the run, to look at: target/screenshots/*.png.
            .env("SCREENSHOTS", screenshots_dir())
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

fn screenshots_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}
