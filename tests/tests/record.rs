//! Recording: the release binary started with `--record DIR` writes MPEG-TS
//! files that ffprobe and ffmpeg decode; turning recording off and on
//! through `PUT /api/config` finishes and starts files without restarting
//! the encoder, and the command line's directory never reaches the stored
//! configuration.

use roomcast_e2e::{ffprobe_json, have, temp_dir, Daemon};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `/api/status` until `pred` holds for its `recording` object.
fn wait_recording(d: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = d.status()["recording"].clone();
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: recording is {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn restarts(d: &Daemon) -> u64 {
    d.status()["encoder"]["restarts"].as_u64().unwrap()
}

/// `roomcast-20261125T041500Z.ts`
fn is_recording_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("roomcast-")
        .and_then(|s| s.strip_suffix("Z.ts"))
    else {
        return false;
    };
    let (date, time) = stamp.split_once('T').unwrap_or(("", ""));
    date.len() == 8
        && time.len() == 6
        && date.bytes().chain(time.bytes()).all(|b| b.is_ascii_digit())
}

#[test]
fn records_decodable_files_and_follows_the_api_without_restarting_the_encoder() {
    assert!(
        have("ffmpeg"),
        "ffmpeg is missing: run tests/run.sh, which installs it"
    );
    let cli_dir = temp_dir("record-cli").join("rec");
    let d = Daemon::start(
        "record",
        &[
            "--record",
            cli_dir.to_str().unwrap(),
            "--size",
            "320x240",
            "--fps",
            "25",
            "--gop",
            "25",
        ],
    );
    let r = wait_recording(&d, "--record did not start", |r| {
        r["state"] == "recording" && r["file_bytes"].as_u64() > Some(0)
    });
    let name = r["file"].as_str().unwrap().to_string();
    assert!(is_recording_name(&name), "{name}");
    // Being written: only the .part exists.
    assert_eq!(files(&cli_dir), [format!("{name}.part")]);
    assert!(d.status()["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "record"));
    std::thread::sleep(Duration::from_secs(4));

    // Off through the API: the file is finished (fsynced, renamed).
    let resp = d
        .put_json("/api/config", r#"{"record":{"enabled":false}}"#)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = wait_recording(&d, "recording did not stop", |r| {
        r["state"] == "idle" && r["enabled"] == false
    });
    assert_eq!(r["files_written"], 1, "{r}");
    assert_eq!(r["last_error"], Value::Null, "{r}");
    assert_eq!(files(&cli_dir), std::slice::from_ref(&name));
    assert_eq!(
        restarts(&d),
        0,
        "turning recording off restarted the encoder"
    );

    let file = cli_dir.join(&name);
    let streams = ffprobe_json(&["-select_streams", "v:0", "-show_streams"], &file);
    let v = &streams["streams"][0];
    assert_eq!(
        (
            v["codec_name"].as_str(),
            v["width"].as_u64(),
            v["height"].as_u64()
        ),
        (Some("h264"), Some(320), Some(240)),
        "{streams}"
    );
    // The sound is recorded beside the picture (issue 10).
    roomcast_e2e::assert_aac(&file, 2, &name);
    // Continuous timestamps: one frame (3600 ticks at 25 fps) apart, from
    // the first frame, a keyframe, to the last.
    let packets = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,flags",
        ],
        &file,
    );
    let packets = packets["packets"].as_array().unwrap();
    assert!(packets.len() >= 75, "only {} frames", packets.len());
    assert!(packets[0]["flags"].as_str().unwrap().starts_with('K'));
    let pts: Vec<i64> = packets.iter().map(|p| p["pts"].as_i64().unwrap()).collect();
    let gaps: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g == 3600),
        "PTS not continuous: {gaps:?}"
    );
    // ffmpeg decodes every frame without a complaint.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "");

    // The command line's directory stayed out of the stored file.
    let stored = std::fs::read_to_string(d.data_dir.join("config.toml")).unwrap();
    assert!(!stored.contains(cli_dir.to_str().unwrap()), "{stored}");

    // On through the API, into another directory: recording starts, the
    // encoder is not restarted, and the setting is stored.
    let api_dir = temp_dir("record-api");
    let body = serde_json::json!({ "record": { "enabled": true, "dir": api_dir } });
    let resp = d.put_json("/api/config", &body.to_string()).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = wait_recording(&d, "PUT did not start recording", |r| {
        r["state"] == "recording" && r["file_bytes"].as_u64() > Some(0)
    });
    assert_eq!(r["dir"].as_str(), api_dir.to_str());
    let part = format!("{}.part", r["file"].as_str().unwrap());
    assert_eq!(files(&api_dir), [part]);
    assert_eq!(
        restarts(&d),
        0,
        "turning recording on restarted the encoder"
    );
    let stored = std::fs::read_to_string(d.data_dir.join("config.toml")).unwrap();
    assert!(stored.contains(api_dir.to_str().unwrap()), "{stored}");
    let metrics = d.get("/metrics").unwrap().text();
    assert!(metrics.contains("roomcast_record_recording 1"), "{metrics}");
    assert!(metrics.contains("roomcast_record_files_written_total 1"));

    // A bad value is refused with its field, and nothing changes.
    let resp = d
        .put_json("/api/config", r#"{"record":{"segment_minutes":0}}"#)
        .unwrap();
    assert_eq!(resp.status, 400);
    let err: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(err["field"], "record.segment_minutes", "{err}");
    assert_eq!(d.status()["recording"]["state"], "recording");

    drop(d);
    let _ = std::fs::remove_dir_all(cli_dir.parent().unwrap());
    let _ = std::fs::remove_dir_all(&api_dir);
}

/// SIGTERM (how systemd stops the box's service) finishes the file being
/// written: the daemon exits 0 within a few seconds and leaves a decodable
/// `.ts`, no `.part`.
#[test]
fn sigterm_finishes_the_recording() {
    let rec = temp_dir("record-sigterm");
    let rec_arg = rec.to_string_lossy().into_owned();
    let mut d = Daemon::start(
        "record-sigterm",
        &["--size", "320x240", "--fps", "30", "--record", &rec_arg],
    );
    wait_recording(&d, "recording with data", |r| {
        r["state"] == "recording" && r["file_bytes"].as_u64() > Some(50_000)
    });
    // Five seconds of it, so lip sync can be measured in the file too.
    std::thread::sleep(Duration::from_secs(5));
    let pid = d.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("exited {status} {:?} after SIGTERM", t.elapsed());
    assert!(status.success(), "{status}");
    let names = files(&rec);
    assert!(
        names.len() == 1 && is_recording_name(&names[0]),
        "after SIGTERM: {names:?}"
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(rec.join(&names[0]))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    roomcast_e2e::lipsync::assert_in_sync(&rec.join(&names[0]), "recording");
    let _ = std::fs::remove_dir_all(rec);
}
