//! Board profiles through the real binary: the board shown in `/api/status`,
//! its default video profile, and a daemon that runs on without the board's
//! GPIO chip (this machine has none).

use roomcast_e2e::{roomcast_bin, run_with_timeout, temp_dir, Daemon};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn json(d: &Daemon, path: &str) -> Value {
    let r = d.get(path).expect(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

#[test]
fn without_a_device_tree_the_board_is_generic_and_defaults_stay() {
    if Path::new("/proc/device-tree/model").exists() {
        eprintln!("skipped: this machine has a device tree");
        return;
    }
    let d = Daemon::start("board-generic", &[]);
    let s = json(&d, "/api/status");
    assert_eq!(s["board"]["name"], "generic", "{s}");
    assert_eq!(s["board"]["model"], Value::Null, "{s}");
    let c = json(&d, "/api/config");
    assert_eq!(
        (c["video"]["width"].as_u64(), c["video"]["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(c["encoder"], "auto");
    assert!(c.get("board").is_none(), "{c}");
}

#[test]
fn a_board_override_brings_its_video_profile_and_runs_without_its_gpio_chip() {
    // The Zero 2 W profile names pinctrl-bcm2835 lines, which this machine
    // lacks: the daemon must log that and stream anyway.
    let d = Daemon::start("board-zero", &["--board", "pi-zero-2w"]);
    let s = json(&d, "/api/status");
    assert_eq!(s["board"]["name"], "pi-zero-2w", "{s}");
    assert_eq!(s["board"]["selected_by"], "override", "{s}");
    let c = json(&d, "/api/config");
    let v = &c["video"];
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64(), v["fps"].as_u64()),
        (Some(640), Some(360), Some(25)),
        "{c}"
    );
    assert_eq!(v["bitrate_kbps"], 800);
    // The profile's camera and hardware encoder; neither exists here, so
    // the box streams the "no signal" slate with openh264 instead of
    // failing to start.
    assert_eq!(c["encoder"], "v4l2m2m:/dev/video11");
    assert_eq!(c["source"], "v4l2:/dev/video0");
    d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(20), |r| {
        r.text().contains("#EXTINF:")
    });
    let s = json(&d, "/api/status");
    assert_eq!(s["encoder"]["kind"], "openh264", "{s}");
    assert_eq!(s["source"]["camera"]["state"], "no signal", "{s}");
}

#[test]
fn a_stored_video_table_wins_over_the_board_profile() {
    let dir = temp_dir("board-cfg");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        "board = \"pi-zero-2w\"\n[video]\nwidth = 320\nheight = 240\n",
    )
    .unwrap();
    let d = Daemon::start("board-stored", &["--config", cfg.to_str().unwrap()]);
    let s = json(&d, "/api/status");
    assert_eq!(s["board"]["name"], "pi-zero-2w", "{s}");
    assert_eq!(s["board"]["selected_by"], "override", "{s}");
    let c = json(&d, "/api/config");
    assert_eq!(
        (c["video"]["width"].as_u64(), c["video"]["fps"].as_u64()),
        (Some(320), Some(30)),
        "{c}"
    );
    assert_eq!(c["board"], "pi-zero-2w");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_board_is_one_clear_line_and_exit_2() {
    let dir = temp_dir("board-bad");
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, "board = \"pi3\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    for args in [["--board", "pi3"], ["--config", cfg]] {
        let (code, _, err) = run_with_timeout(
            Command::new(roomcast_bin())
                .args(["--http", "127.0.0.1:0", "--data-dir"])
                .arg(dir.join("data"))
                .args(args),
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("pi3") && err.contains("pi-zero-2w"), "{err}");
    }
    // The stored file is left as it was.
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).unwrap(),
        "board = \"pi3\"\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
