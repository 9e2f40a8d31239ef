//! The stored configuration cannot be lost or leaked through the API (issue
//! 15, item 4), against the release binary on 127.0.0.1: bodies of the
//! wrong shape are refused with config.toml byte-identical, command-line
//! outputs survive every PUT and stay out of the file, a masked stream key
//! is never sent to another host, and config.toml is 0600.

use roomcast_e2e::Daemon;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SMALL: [&str; 6] = ["--size", "320x240", "--fps", "15", "--gop", "15"];
/// A command-line output: nothing listens on port 9, so it stays in backoff.
const CLI: &str = "rtmp://127.0.0.1:9/live/keykeykeykey1234";
const CLI_SHOWN: &str = "rtmp://127.0.0.1:9/live/****1234";
/// A stored one, disabled so it never connects.
const STORED: &str = "rtmp://127.0.0.1:9/live/storedkey0000abcd";
const STORED_TOML: &str = "[video]\nbitrate_kbps = 900\n\n[audio]\nbitrate_kbps = 96\n\n\
    [record]\nkeep_mb = 4096\n\n[[outputs]]\nurl = \"rtmp://127.0.0.1:9/live/storedkey0000abcd\"\nenabled = false\n";

fn start(tag: &str, extra: &[&str], stored: Option<&str>) -> Daemon {
    let args: Vec<&str> = SMALL.iter().chain(extra).copied().collect();
    Daemon::start_with_config(tag, &args, &[], stored)
}

fn config_file(d: &Daemon) -> std::path::PathBuf {
    d.data_dir.join("config.toml")
}

fn json(r: &roomcast_e2e::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

/// The `url` of every output in `/api/status`.
fn status_urls(d: &Daemon) -> Vec<String> {
    d.status()["outputs"]
        .as_array()
        .expect("outputs in /api/status")
        .iter()
        .map(|o| o["url"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The permission bits of `path`, as `stat` shows them.
fn stat_mode(path: &Path) -> String {
    let out = Command::new("stat")
        .args(["-c", "%a"])
        .arg(path)
        .output()
        .expect("run stat");
    assert!(out.status.success(), "stat {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// PUT `body`, expect 400 naming `field`, and the stored file unchanged.
fn refused(d: &Daemon, path: &str, body: &str, field: &str, before: &[u8]) -> Value {
    let r = d.put_json(path, body).unwrap();
    assert_eq!(r.status, 400, "{body}: {}", r.text());
    let v = json(&r);
    assert_eq!(v["field"], field, "{body}: {v}");
    assert!(
        v["reason"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}: {v}"
    );
    assert!(
        v["error"].as_str().is_some_and(|e| e.starts_with(field)),
        "{body}: {v}"
    );
    assert_eq!(
        std::fs::read(config_file(d)).unwrap(),
        before,
        "{body} changed config.toml"
    );
    v
}

#[test]
fn array_and_non_object_bodies_are_400_and_config_toml_is_byte_identical() {
    let d = start("cfgsafe-shape", &[], Some(STORED_TOML));
    let before = std::fs::read(config_file(&d)).unwrap();
    assert_eq!(before, STORED_TOML.as_bytes());
    let shown = d.get("/api/config").unwrap().text();
    for (body, field) in [
        ("[]", "body"),
        (r#"{"video":[640,360]}"#, "video"),
        (r#"{"audio":[]}"#, "audio"),
        (r#"{"record":[]}"#, "record"),
        (r#""x""#, "body"),
        (r#"{"outputs":{}}"#, "outputs"),
        ("null", "body"),
        (r#"{"camera":null}"#, "camera"),
        (r#"{"outputs":[["rtmp://h/a/k"]]}"#, "outputs[0]"),
    ] {
        refused(&d, "/api/config", body, field, &before);
        assert_eq!(
            d.get("/api/config").unwrap().text(),
            shown,
            "{body} changed the running configuration"
        );
    }
    // A PUT changes only what it names.
    let r = d
        .put_json("/api/config", r#"{"video":{"fps":20,"gop":20}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = std::fs::read_to_string(config_file(&d)).unwrap();
    for kept in [
        "bitrate_kbps = 900",
        "bitrate_kbps = 96",
        "keep_mb = 4096",
        STORED,
    ] {
        assert!(stored.contains(kept), "{kept} lost: {stored}");
    }
    let running = json(&d.get("/api/config").unwrap());
    assert_eq!(running["video"]["fps"], 20);
    assert_eq!(running["video"]["bitrate_kbps"], 900);
    assert_eq!(running["video"]["width"], 320, "the --size override");
}

#[test]
fn command_line_outputs_survive_puts_and_stay_out_of_the_file() {
    let d = start("cfgsafe-cli", &["--rtmp", CLI], None);
    assert_eq!(status_urls(&d), [CLI_SHOWN]);
    let r = d
        .put_json("/api/config", r#"{"video":{"bitrate_kbps":1500}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status_urls(&d), [CLI_SHOWN], "after a video change");
    let r = d.put_json("/api/config", r#"{"outputs":[]}"#).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status_urls(&d), [CLI_SHOWN], "after outputs: []");
    // Added next to it: both run, only the new one is stored.
    let added =
        r#"{"outputs":[{"url":"rtmp://127.0.0.1:9/live/added0000key5678","enabled":false}]}"#;
    let r = d.put_json("/api/config", added).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        status_urls(&d),
        ["rtmp://127.0.0.1:9/live/****5678", CLI_SHOWN]
    );
    let cfg = json(&d.get("/api/config").unwrap());
    assert_eq!(cfg["run_outputs"][0]["url"], CLI_SHOWN, "{cfg}");
    assert_eq!(cfg["outputs"].as_array().map(Vec::len), Some(1), "{cfg}");
    let stored = std::fs::read_to_string(config_file(&d)).unwrap();
    assert!(stored.contains("bitrate_kbps = 1500"), "{stored}");
    assert!(stored.contains("added0000key5678"), "{stored}");
    assert!(
        !stored.contains("keykeykeykey1234") && !stored.contains("run_outputs"),
        "the command line's output was saved: {stored}"
    );
    // They cannot be changed through the API.
    let before = std::fs::read(config_file(&d)).unwrap();
    refused(
        &d,
        "/api/config",
        r#"{"run_outputs":[]}"#,
        "run_outputs",
        &before,
    );
    assert_eq!(status_urls(&d).len(), 2);
}

#[test]
fn a_masked_key_sent_with_another_host_is_400() {
    let d = start("cfgsafe-mask", &["--rtmp", CLI], Some(STORED_TOML));
    let before = std::fs::read(config_file(&d)).unwrap();
    for (url, field) in [
        ("rtmp://10.66.66.66/live/****abcd", "outputs[0].url"),
        ("rtmp://127.0.0.1:1935/live/****abcd", "outputs[0].url"),
        ("rtmp://10.66.66.66:9/live/****1234", "outputs[0].url"),
        ("rtmp://127.0.0.1:9/live/****zzzz", "outputs[0].url"),
    ] {
        let body = serde_json::json!({ "outputs": [{ "url": url }] }).to_string();
        let v = refused(&d, "/api/config", &body, field, &before);
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.contains("stream key must be typed again"), "{v}");
        assert!(!v.to_string().contains("storedkey"), "{v}");
    }
    // Reordered, or moved behind a new output: each keeps its own key.
    let body = serde_json::json!({ "outputs": [
        { "url": "rtmp://127.0.0.1:9/live/new00000key00new", "enabled": false },
        { "url": "rtmp://127.0.0.1:9/live/****abcd", "enabled": false },
    ]});
    let r = d.put_json("/api/config", &body.to_string()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = std::fs::read_to_string(config_file(&d)).unwrap();
    assert!(stored.contains(STORED), "{stored}");
    assert!(!stored.contains("****"), "a mask was stored: {stored}");
    // An imported file whose mask names no output here: refused the same way.
    let before = std::fs::read(config_file(&d)).unwrap();
    let file = "[[outputs]]\nurl = \"rtmp://127.0.0.1:9/live/****zzzz\"\n";
    refused(&d, "/api/config/import", file, "outputs[0].url", &before);
}

#[test]
fn config_toml_is_0600_whatever_was_left_on_disk() {
    let d = start("cfgsafe-mode", &[], Some(STORED_TOML));
    let file = config_file(&d);
    // Reading it at start already took the others' permissions off.
    assert_eq!(stat_mode(&file), "600");
    // An older version's 0644 file and a leftover 0644 temp file.
    let tmp = d.data_dir.join("config.toml.tmp");
    std::fs::write(&tmp, "half a file").unwrap();
    for p in [&file, &tmp] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let r = d
        .put_json("/api/config", r#"{"video":{"bitrate_kbps":1000}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stat_mode(&file), "600");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!tmp.exists(), "the temp file was left behind");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("storedkey0000abcd"));
}
