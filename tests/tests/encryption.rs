//! HLS with `hls.encryption = "aes-128"` from the real binary: what goes on
//! the wire is not readable media, OpenSSL decrypts a segment with the key
//! and IV the playlist names into MPEG-TS that ffprobe reads, ffmpeg plays
//! both playlists without an error, hls.js in Chromium plays LL-HLS and TS,
//! keys sit behind the viewer password and leave with their segments.

use roomcast_e2e::edge::attr;
use roomcast_e2e::{
    browser_dir, ffprobe_json, http, http_with, run_with_timeout, segment_uris, temp_dir, Daemon,
};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[video]
width = 320
height = 240
fps = 30
bitrate_kbps = 600
gop = 30

[hls]
encryption = "aes-128"
key_rotation_segments = 3
window = 3

[audio]
source = "tone"
"#;

/// The `EXT-X-KEY` lines of a playlist.
fn key_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("#EXT-X-KEY:"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// ffmpeg reads `url` (with the test's token, which passes the viewer
/// gate) for `seconds` of media and decodes it; returns the video frames
/// decoded and what it printed at level "error".
fn ffmpeg_decodes(d: &Daemon, path: &str, seconds: u32) -> (usize, String) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-headers"])
        .arg(format!("Authorization: Bearer {}\r\n", d.token))
        .arg("-i")
        .arg(format!("{}{path}", d.base_url()))
        .args(["-t", &seconds.to_string(), "-f", "framecrc", "-"]);
    let (code, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "ffmpeg on {path} failed: {err}");
    let video = out
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with("0,"))
        .count();
    (video, err)
}

#[test]
fn aes_128_segments_are_secret_on_the_wire_and_play_in_ffmpeg_and_hls_js() {
    let d = Daemon::start_with_config("aes", &[], &[], Some(CONFIG));
    let ts = d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(30), |r| {
        r.status == 200 && segment_uris(&r.text()).len() >= 3
    });
    let text = ts.text();
    // Every keyed segment states its key and IV; the first listed one too.
    let keys = key_lines(&text);
    assert!(!keys.is_empty(), "{text}");
    for k in &keys {
        assert!(
            k.starts_with("#EXT-X-KEY:METHOD=AES-128,URI=\"../../keys/"),
            "{k}"
        );
        let iv = attr(k, "IV").unwrap();
        assert!(iv.len() == 34 && iv.starts_with("0x"), "{k}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let first_seg = lines.iter().position(|l| l.ends_with(".ts")).unwrap();
    assert!(
        lines[..first_seg]
            .iter()
            .any(|l| l.starts_with("#EXT-X-KEY:METHOD=AES-128")),
        "the first segment's key is stated before it\n{text}"
    );

    // On the wire: not MPEG-TS, and ffprobe cannot read it.
    let uri = segment_uris(&text).last().unwrap().clone();
    let seg = d.get(&format!("/hls/ts/r0/{uri}")).unwrap();
    assert_eq!(seg.status, 200);
    assert_eq!(seg.body.len() % 16, 0, "whole AES blocks");
    let sync_bytes = seg.body.iter().step_by(188).filter(|&&b| b == 0x47).count();
    assert!(
        sync_bytes < seg.body.len() / 188 / 4,
        "the encrypted segment still looks like TS"
    );
    let dir = temp_dir("aes-files");
    let secret = dir.join("secret.ts");
    std::fs::write(&secret, &seg.body).unwrap();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&probe.stdout).contains("h264"),
        "ffprobe found H.264 in an encrypted segment"
    );

    // With the key and IV the playlist names, OpenSSL gets the TS back.
    let key_line = lines[..lines.iter().position(|l| *l == uri).unwrap()]
        .iter()
        .rev()
        .find(|l| l.starts_with("#EXT-X-KEY:"))
        .unwrap();
    let key_uri = attr(key_line, "URI").unwrap();
    let key_file = key_uri.strip_prefix("../../").unwrap();
    let key = d.get(&format!("/hls/{key_file}")).unwrap();
    assert_eq!(key.status, 200);
    assert_eq!(key.body.len(), 16);
    assert_eq!(key.header("Cache-Control"), Some("private, no-store"));
    let iv = attr(key_line, "IV")
        .unwrap()
        .trim_start_matches("0x")
        .to_string();
    let clear = dir.join("clear.ts");
    let out = Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-128-cbc",
            "-K",
            &hex(&key.body),
            "-iv",
            &iv,
            "-in",
        ])
        .arg(&secret)
        .arg("-out")
        .arg(&clear)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&clear).unwrap();
    assert_eq!(bytes.len() % 188, 0);
    assert!(
        bytes.iter().step_by(188).all(|&b| b == 0x47),
        "decrypted TS has sync bytes"
    );
    let v = ffprobe_json(&["-show_entries", "stream=codec_name,width,height"], &clear);
    let codecs: Vec<&str> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{v}");

    // LL-HLS: parts are encrypted too, the init segment is not.
    let ll = d.get("/hls/r0/index.m3u8").unwrap().text();
    let ll_keys = key_lines(&ll);
    assert!(
        ll_keys
            .iter()
            .any(|k| k.starts_with("#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/")),
        "{ll}"
    );
    let map = ll.find("#EXT-X-MAP").unwrap();
    assert!(
        !ll[..map].contains("METHOD=AES-128"),
        "a key before the map\n{ll}"
    );
    let part = ll
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| attr(l, "URI"))
        .next_back()
        .unwrap()
        .to_string();
    let p = d.get(&format!("/hls/r0/{part}")).unwrap();
    assert_eq!(p.status, 200);
    assert_ne!(&p.body[4..8], b"moof", "a part in the clear");
    let init = attr(
        ll.lines().find(|l| l.starts_with("#EXT-X-MAP")).unwrap(),
        "URI",
    )
    .unwrap();
    assert_eq!(
        &d.get(&format!("/hls/r0/{init}")).unwrap().body[4..8],
        b"ftyp"
    );

    // ffmpeg plays both flavours through the multivariant playlists.
    for path in ["/hls/ts/index.m3u8", "/hls/index.m3u8"] {
        let (frames, err) = ffmpeg_decodes(&d, path, 3);
        assert!(frames >= 60, "{path}: ffmpeg decoded {frames} frames");
        assert!(err.trim().is_empty(), "{path}: ffmpeg said {err}");
    }

    // hls.js in Chromium: LL-HLS and TS, no stalls, no restarts.
    let browser = browser_dir();
    for (playlist, limit) in [("/hls/index.m3u8", "3"), ("/hls/ts/index.m3u8", "8")] {
        let mut cmd = Command::new("node");
        cmd.args(["latency.mjs", &d.base_url(), playlist, "10", limit]);
        let (code, out, err) = run_with_timeout(cmd.current_dir(&browser), Duration::from_secs(90));
        println!("{out}");
        eprint!("{err}");
        assert_eq!(code, Some(0), "{playlist}: hls.js did not play it");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["advanced"].as_f64().unwrap() >= 9.0, "{v}");
    }

    // A viewer password closes the keys like the rest of the stream.
    let r = d
        .put_json("/api/viewer-password", r#"{"password":"only the room"}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let key_path = format!("/hls/{key_file}");
    let live_key = {
        // The newest key (the one above may have rotated out by now).
        let t = d.get("/hls/ts/r0/index.m3u8").unwrap().text();
        let k = attr(key_lines(&t).last().unwrap(), "URI")
            .unwrap()
            .to_string();
        format!("/hls/{}", k.strip_prefix("../../").unwrap())
    };
    assert_eq!(http(d.port, "GET", &live_key, None).unwrap().status, 401);
    let login = http(
        d.port,
        "POST",
        "/api/viewer-login",
        Some(r#"{"password":"only the room"}"#),
    )
    .unwrap();
    assert_eq!(login.status, 200);
    let cookie = login
        .header("Set-Cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with_session = http_with(d.port, "GET", &live_key, None, &[("Cookie", &cookie)]).unwrap();
    assert_eq!(with_session.status, 200);
    assert_eq!(with_session.body.len(), 16);

    // The first key leaves once no listed segment needs it (window 3,
    // rotation 3: about ten seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get(&key_path).unwrap().status == 200 {
        assert!(Instant::now() < deadline, "{key_path} is still served");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(d.get(&key_path).unwrap().status, 404);
    let _ = std::fs::remove_dir_all(dir);
}
