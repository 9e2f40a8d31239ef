//! The web page in a real browser: Debian's Chromium, driven headless by
//! `tests/browser/play.mjs` (playwright-core, pinned in its package-lock.json),
//! plays the daemon's HLS with hls.js, reads the status panel and clicks
//! through the settings form (a refused value, then an applied one). The
//! first password is set with the daemon's setup code (a wrong one first).

use roomcast_e2e::{browser_dir, run_with_timeout, Daemon};
use std::process::Command;
use std::time::Duration;

#[test]
fn web_page_plays_the_stream_and_applies_settings() {
    let dir = browser_dir();
    // A real SRT receiver (libsrt) for the page to add as an output.
    let srt_port = roomcast_e2e::free_port();
    let srt_out = roomcast_e2e::temp_dir("browser-srt").join("in.ts");
    let mut receiver = Command::new("srt-live-transmit")
        .args([
            "-q",
            "-a:no",
            &format!("srt://:{srt_port}?mode=listener"),
            "file://con",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&srt_out).expect("receiver output"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("srt-live-transmit (tests/run.sh installs srt-tools)");
    // A simulated UVC camera for the source picker (see tests/camera.rs).
    let sim = roomcast_e2e::temp_dir("browser-sim");
    std::fs::write(sim.join("video0"), "uvc").expect("simulated camera");
    // And a simulated USB microphone for the sound picker (tests/audio.rs).
    let sound = roomcast_e2e::temp_dir("browser-sound");
    std::fs::write(sound.join("usbmic"), "channels=1\n").expect("simulated sound card");
    let daemon = Daemon::start_with_env(
        "browser",
        &["--size", "640x360", "--fps", "25", "--gop", "25"],
        &[("ROOMCAST_V4L2_SIM", &sim), ("ROOMCAST_ALSA_SIM", &sound)],
    );
    // The first password needs the setup code the daemon keeps in its data
    // directory; the page is given it as an installer would type it.
    let setup_code = std::fs::read_to_string(daemon.data_dir.join("setup-code"))
        .expect("the daemon's setup code");
    let (status, stdout, stderr) = run_with_timeout(
        Command::new("node")
            .arg("play.mjs")
            .arg(daemon.base_url())
            .env("ROOMCAST_TOKEN", &daemon.token)
            .env("SETUP_CODE", setup_code.trim())
            .env("EXPECT_CAMERA", "1")
            .env("EXPECT_SOUND_CARD", "sim:usbmic")
            .env(
                "SRT_OUTPUT",
                format!("srt://127.0.0.1:{srt_port}?mode=caller"),
            )
            // Screens of the run, to look at: target/screenshots/*.png.
            .env("SCREENSHOTS", screenshots_dir())
            .current_dir(&dir),
        Duration::from_secs(120),
    );
    let received = std::fs::metadata(&srt_out).map_or(0, |m| m.len());
    let _ = receiver.kill();
    let _ = receiver.wait();
    print!("{stdout}");
    eprint!("{stderr}");
    assert_eq!(
        status,
        Some(0),
        "tests/browser/play.mjs failed (its output is above)"
    );
    assert!(
        received >= 188 * 100,
        "the SRT receiver got only {received} bytes"
    );
}

fn screenshots_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}
