//! The real `roomcast` binary, checked with ffprobe (FFmpeg) and plain HTTP.

use roomcast_e2e::{
    assert_aac, ffprobe_json, pmt_streams, roomcast_bin, segment_uris, temp_dir, Daemon,
};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn live_segments_decode_with_configured_size_frame_count_and_continuous_pts() {
    let d = Daemon::start(
        "segments",
        &["--size", "320x240", "--fps", "30", "--gop", "30"],
    );
    let pl = d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(20), |r| {
        segment_uris(&r.text()).len() >= 3
    });
    let text = pl.text();
    assert_eq!(
        pl.header("Content-Type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:1\n"), "{text}");
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:"), "{text}");
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:20"), "{text}");
    assert!(text.contains("#EXTINF:1.000,"), "{text}");

    let uris = segment_uris(&text);
    let dir = temp_dir("segments-out");
    let mut joined = Vec::new();
    for uri in &uris[uris.len() - 3..] {
        let r = d.get(&format!("/hls/ts/r0/{uri}")).unwrap();
        assert_eq!(r.status, 200, "{uri}");
        assert_eq!(r.header("Content-Type"), Some("video/mp2t"));
        assert_eq!(r.body.len() % 188, 0);
        let file = dir.join(uri);
        std::fs::write(&file, &r.body).unwrap();
        let v = ffprobe_json(
            &[
                "-select_streams",
                "v:0",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,profile,width,height,nb_read_frames",
            ],
            &file,
        );
        let s = &v["streams"][0];
        assert_eq!(s["codec_name"], "h264", "{uri}: {v}");
        assert_eq!(s["profile"], "Constrained Baseline", "{uri}: {v}");
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(320), Some(240)),
            "{v}"
        );
        assert_eq!(
            s["nb_read_frames"], "30",
            "{uri}: one second at 30 fps: {v}"
        );
        // Sound beside the picture (issue 10): the PMT lists H.264 on PID
        // 0x100 and AAC in ADTS (stream type 0x0F) on PID 0x101, and ffprobe
        // decodes it as 48 kHz stereo AAC.
        assert_eq!(
            pmt_streams(&r.body),
            [(0x1b, 0x100), (0x0f, 0x101)],
            "{uri}: PMT streams (type, PID)"
        );
        assert_aac(&file, 2, uri);
        joined.extend_from_slice(&r.body);
    }
    // The three segments back to back: PTS advance by exactly one frame
    // (3000 ticks of 90 kHz at 30 fps) everywhere, including the cuts.
    let file = dir.join("joined.ts");
    std::fs::write(&file, &joined).unwrap();
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,flags",
        ],
        &file,
    );
    let packets = v["packets"].as_array().unwrap();
    assert_eq!(packets.len(), 90);
    let pts: Vec<i64> = packets.iter().map(|p| p["pts"].as_i64().unwrap()).collect();
    for w in pts.windows(2) {
        assert_eq!(w[1] - w[0], 3000, "PTS jump in {pts:?}");
    }
    let keys: Vec<usize> = packets
        .iter()
        .enumerate()
        .filter(|(_, p)| p["flags"].as_str().unwrap_or("").starts_with('K'))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        keys,
        vec![0, 30, 60],
        "every segment starts with a keyframe"
    );
    // The sound runs on across the cuts too: one AAC frame (1024 samples
    // at 48 kHz = 1920 ticks) after the other.
    let v = ffprobe_json(
        &["-select_streams", "a:0", "-show_entries", "packet=pts"],
        &file,
    );
    let apts: Vec<i64> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pts"].as_i64())
        .collect();
    assert!(apts.len() >= 130, "{} AAC frames in 3 s", apts.len());
    for w in apts.windows(2) {
        assert!(
            (w[1] - w[0] - 1920).abs() <= 1,
            "audio PTS jump {} -> {} in {apts:?}",
            w[0],
            w[1]
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_config_put_is_rejected_and_the_stored_file_is_unchanged() {
    let d = Daemon::start(
        "badput",
        &["--size", "320x240", "--fps", "15", "--gop", "15"],
    );
    let good = d
        .put_json("/api/config", r#"{"video":{"bitrate_kbps":800}}"#)
        .unwrap();
    assert_eq!(good.status, 200, "{}", good.text());
    let file = d.data_dir.join("config.toml");
    let saved = std::fs::read(&file).expect("config saved after a good PUT");
    assert!(String::from_utf8_lossy(&saved).contains("bitrate_kbps = 800"));
    let before = d.get("/api/config").unwrap().text();

    for (body, field) in [
        (r#"{"video":{"width":0}}"#, Some("video.width")),
        (r#"{"video":{"fps":1000}}"#, Some("video.fps")),
        (r#"{"hls":{"segment_ms":1}}"#, Some("hls.segment_ms")),
        (r#"{"video":{"widht":640}}"#, None),
        (r#"{"video":{"width":"wide"}}"#, None),
        ("{not json", None),
    ] {
        let r = d.put_json("/api/config", body).unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{v}");
            assert!(v["error"].as_str().unwrap().starts_with(f), "{v}");
        }
        assert_eq!(
            std::fs::read(&file).unwrap(),
            saved,
            "{body} changed the stored file"
        );
        assert_eq!(
            d.get("/api/config").unwrap().text(),
            before,
            "{body} changed the running config"
        );
    }
}

#[test]
fn settings_change_restarts_the_stream_with_a_discontinuity() {
    let d = Daemon::start(
        "restart",
        &["--size", "320x240", "--fps", "30", "--gop", "30"],
    );
    d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(20), |r| {
        !segment_uris(&r.text()).is_empty()
    });
    let r = d
        .put_json("/api/config", r#"{"video":{"width":256,"height":144}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let pl = d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(20), |r| {
        let t = r.text();
        t.contains("#EXT-X-DISCONTINUITY\n")
            && t.rsplit("#EXT-X-DISCONTINUITY\n")
                .next()
                .is_some_and(|after| segment_uris(after).len() >= 2)
    });
    let text = pl.text();
    let after = text.rsplit("#EXT-X-DISCONTINUITY\n").next().unwrap();
    let uri = &segment_uris(after)[0];
    let dir = temp_dir("restart-out");
    let file = dir.join("seg.ts");
    std::fs::write(&file, d.get(&format!("/hls/ts/r0/{uri}")).unwrap().body).unwrap();
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
        ],
        &file,
    );
    assert_eq!(
        (
            v["streams"][0]["width"].as_u64(),
            v["streams"][0]["height"].as_u64()
        ),
        (Some(256), Some(144))
    );
    let status: Value = serde_json::from_slice(&d.get("/api/status").unwrap().body).unwrap();
    assert_eq!(status["encoder"]["restarts"], 1);
    assert_eq!(status["source"]["width"], 256);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn status_and_metrics_report_the_pipeline() {
    let d = Daemon::start(
        "status",
        &["--size", "160x120", "--fps", "20", "--gop", "20"],
    );
    let r = d.wait_for("/api/status", Duration::from_secs(20), |r| {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        v["frames"]["encoded"].as_u64().unwrap_or(0) >= 45
    });
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["source"]["kind"], "test");
    assert_eq!(v["encoder"]["kind"], "openh264");
    let fps = v["measured"]["fps"].as_f64().unwrap();
    assert!((fps - 20.0).abs() < 0.5, "measured fps {fps}");
    assert!(v["measured"]["bitrate_kbps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["sinks"][0]["name"], "hls");
    assert!(v["uptime_s"].as_f64().unwrap() > 1.0);
    let m = d.get("/metrics").unwrap();
    assert_eq!(m.status, 200);
    let text = m.text();
    let encoded: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("roomcast_frames_encoded_total "))
        .expect("roomcast_frames_encoded_total in /metrics")
        .parse()
        .unwrap();
    assert!(encoded >= 45.0);
    assert!(text.contains("# TYPE roomcast_sink_dropped_frames_total counter"));
    assert!(text.contains("roomcast_sink_dropped_frames_total{sink=\"hls\"} 0"));
    assert_eq!(d.get("/nope").unwrap().status, 404);
    assert_eq!(d.get("/hls/seg1.ts").unwrap().status, 404);
}

fn run_expecting_exit_2(args: &[&str], data_dir: &Path, needle: &str) {
    let out = Command::new(roomcast_bin())
        .args(["--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run roomcast");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line, got: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn bad_flags_and_bad_config_exit_2_with_one_line() {
    let dir = temp_dir("flags");
    run_expecting_exit_2(&["--size", "0x0"], &dir, "video.width");
    run_expecting_exit_2(&["--fps", "abc"], &dir, "--fps wants a whole number");
    run_expecting_exit_2(&["--record", ""], &dir, "--record wants a directory");
    // A bad SRT URL names the output and what is wrong with it.
    run_expecting_exit_2(
        &["--srt", "srt://127.0.0.1:9000?mode=pull"],
        &dir,
        "outputs[0].url: mode must be caller, listener or rendezvous",
    );
    run_expecting_exit_2(&["--source", "v4l2:/etc/passwd"], &dir, "source: must be");
    run_expecting_exit_2(
        &["--encoder", "passthrough"],
        &dir,
        "passthrough needs a camera source",
    );
    run_expecting_exit_2(&["--bogus"], &dir, "unknown flag --bogus");
    // A broken stored file is reported and left alone.
    let file = dir.join("config.toml");
    std::fs::write(&file, "[video]\nwidth = \"wide\"\n").unwrap();
    run_expecting_exit_2(&[], &dir, "config.toml");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[video]\nwidth = \"wide\"\n"
    );
    std::fs::write(&file, "[video]\nfps = 0\n").unwrap();
    run_expecting_exit_2(&[], &dir, "video.fps");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn command_line_overrides_stay_out_of_the_stored_file() {
    let d = Daemon::start(
        "overrides",
        &["--size", "320x240", "--fps", "15", "--gop", "15"],
    );
    let r = d
        .put_json("/api/config", r#"{"video":{"bitrate_kbps":700}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let running: Value = serde_json::from_slice(&d.get("/api/config").unwrap().body).unwrap();
    assert_eq!(running["video"]["width"], 320);
    assert_eq!(running["video"]["bitrate_kbps"], 700);
    let stored = std::fs::read_to_string(d.data_dir.join("config.toml")).unwrap();
    assert!(stored.contains("bitrate_kbps = 700"), "{stored}");
    // The file holds only what the PUT named (issue 15): the overrides are
    // not in it, and the defaults stay defaults.
    assert!(
        !stored.contains("width = 320") && !stored.contains("height = 240"),
        "the --size override was saved: {stored}"
    );
    assert!(
        !stored.contains("fps = 15") && !stored.contains("gop = 15"),
        "the --fps/--gop override was saved: {stored}"
    );
}
