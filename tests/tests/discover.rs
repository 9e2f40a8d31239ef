//! `roomcast-host discover` finds a daemon started on 127.0.0.1 by its mDNS
//! announcement (the daemon announces on loopback when it listens there),
//! and `roomcast-host config get|set HOST` changes its settings through the
//! API with the admin password or an API token.

use roomcast_e2e::{host_bin, http, Daemon, TEST_TOKEN};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn host(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(host_bin());
    cmd.args(args)
        .env_remove("ROOMCAST_TOKEN")
        .env_remove("ROOMCAST_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run roomcast-host")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `discover --json` lines for the box on `port`, trying for up to 20 s.
fn find(port: u16) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let o = host(&["discover", "--seconds", "3", "--json"], &[]);
        assert!(o.status.success(), "{}", text(&o));
        let hit = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["port"] == port);
        if hit.is_some() {
            return hit;
        }
    }
    None
}

#[test]
fn discover_finds_a_daemon_on_loopback() {
    let d = Daemon::start("discover", &["--size", "320x240", "--fps", "10"]);
    let t = Instant::now();
    let found = find(d.port).unwrap_or_else(|| {
        panic!(
            "discover did not find the daemon on 127.0.0.1:{} within 20 s",
            d.port
        )
    });
    eprintln!("found in {:.1} s: {found}", t.elapsed().as_secs_f64());
    let status = d.status();
    assert_eq!(found["version"], status["version"], "{found}");
    assert!(
        ["idle", "live", "error"].contains(&found["state"].as_str().unwrap_or("")),
        "{found}"
    );
    assert!(!found["name"].as_str().unwrap_or("").is_empty(), "{found}");
    assert_eq!(
        found["url"],
        format!("http://127.0.0.1:{}/", d.port),
        "{found}"
    );
    assert!(
        found["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "127.0.0.1")),
        "{found}"
    );

    // The table shows the same box.
    let o = host(&["discover", "--seconds", "3"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("NAME"), "{}", text(&o));
    assert!(
        out.contains(&format!("http://127.0.0.1:{}/", d.port)),
        "{}",
        text(&o)
    );
}

#[test]
fn no_mdns_is_not_announced() {
    let d = Daemon::start("nomdns", &["--size", "320x240", "--fps", "10", "--no-mdns"]);
    let o = host(&["discover", "--seconds", "4", "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let port = d.port.to_string();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&format!("\"port\":{port}")),
        "a --no-mdns daemon was announced: {}",
        text(&o)
    );
    assert_eq!(d.get("/api/config").unwrap().status, 200);
    let cfg: serde_json::Value =
        serde_json::from_slice(&d.get("/api/config").unwrap().body).unwrap();
    assert_eq!(cfg["mdns"], false, "{cfg}");
}

#[test]
fn config_get_and_set_with_password_and_token() {
    let d = Daemon::start("hostcfg", &["--size", "320x240", "--fps", "10"]);
    let password = "correct-horse-battery";
    // The first password takes the setup code the daemon keeps in its data
    // directory (and printed on its console).
    let code = std::fs::read_to_string(d.data_dir.join("setup-code")).expect("setup code");
    let r = http(
        d.port,
        "POST",
        "/api/setup",
        Some(&format!(
            "{{\"password\":\"{password}\",\"setup_code\":\"{}\"}}",
            code.trim()
        )),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let box_ = format!("127.0.0.1:{}", d.port);
    let pw = [("ROOMCAST_PASSWORD", password)];

    let o = host(&["config", "get", &box_, "video.fps"], &pw);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "10");

    let o = host(
        &[
            "config",
            "set",
            &box_,
            "video.bitrate_kbps=900",
            "hls.window=5",
        ],
        &pw,
    );
    assert!(o.status.success(), "{}", text(&o));
    let cfg: serde_json::Value =
        serde_json::from_slice(&d.get("/api/config").unwrap().body).unwrap();
    assert_eq!(cfg["video"]["bitrate_kbps"], 900, "{cfg}");
    assert_eq!(cfg["hls"]["window"], 5, "{cfg}");
    // Saved, not just applied.
    let saved = std::fs::read_to_string(d.data_dir.join("config.toml")).unwrap();
    assert!(saved.contains("bitrate_kbps = 900"), "{saved}");

    // A password file works like the variable; the whole config is JSON.
    let pwfile = d.data_dir.join("pw.txt");
    std::fs::write(&pwfile, format!("{password}\n")).unwrap();
    let o = host(
        &[
            "config",
            "get",
            &format!("http://{box_}"),
            "--password-file",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = host(
        &[
            "config",
            "get",
            &format!("http://{box_}"),
            "--password-file",
            pwfile.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).expect("config JSON");
    assert_eq!(all["hls"]["window"], 5);

    // An API token instead of the password.
    let o = host(
        &["config", "set", &box_, "video.gop=20"],
        &[("ROOMCAST_TOKEN", TEST_TOKEN)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = host(
        &["config", "get", &box_, "video.gop"],
        &[("ROOMCAST_TOKEN", TEST_TOKEN)],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "20",
        "{}",
        text(&o)
    );

    // Refusals are one line and exit 1; nothing changes.
    let o = host(&["config", "set", &box_, "video.fps=0"], &pw);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("video.fps") && err.trim().lines().count() == 1,
        "{err}"
    );
    let o = host(
        &["config", "get", &box_],
        &[("ROOMCAST_PASSWORD", "wrong-password-1")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("login refused"),
        "{}",
        text(&o)
    );
    let o = host(&["config", "get", &box_], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ROOMCAST_PASSWORD"),
        "{}",
        text(&o)
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&d.get("/api/config").unwrap().body).unwrap();
    assert_eq!(cfg["video"]["fps"], 10, "{cfg}");
}
