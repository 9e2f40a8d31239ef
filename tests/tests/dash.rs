//! MPEG-DASH from the real binary: dash.js (the pinned npm package) plays
//! `/dash/index.mpd` in Chromium under 2.5 s of latency without a stall,
//! ffprobe reads the MPD (every rendition at its size, and the sound) and
//! ffmpeg decodes every stream without an error; the routes refuse garbage,
//! sit behind the viewer password, and close while HLS is encrypted.

use roomcast_e2e::{browser_dir, http, http_with, run_with_timeout, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// A two-rendition ladder with sound, light enough for a CI machine.
const LADDER: &str = r#"
[video]
width = 640
height = 360
fps = 30
bitrate_kbps = 1200
gop = 30

[[ladder]]
width = 320
height = 180
bitrate_kbps = 300

[audio]
source = "tone"
"#;

/// The value of the first ` NAME="…"` attribute in an XML text.
fn xml_attr<'a>(text: &'a str, name: &str) -> &'a str {
    text.split(&format!(" {name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn mpd_url(d: &Daemon) -> String {
    format!("{}/dash/index.mpd", d.base_url())
}

#[test]
fn dash_js_plays_under_two_and_a_half_seconds_and_ffmpeg_reads_every_stream() {
    let d = Daemon::start_with_config("dash", &[], &[], Some(LADDER));
    let mpd = d.wait_for("/dash/index.mpd", Duration::from_secs(30), |r| {
        r.status == 200 && r.text().matches("<S ").count() >= 3
    });
    assert_eq!(mpd.header("Content-Type"), Some("application/dash+xml"));
    let text = mpd.text();
    assert!(text.contains("type=\"dynamic\""), "{text}");
    assert!(
        text.contains("<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\""),
        "{text}"
    );

    // ffprobe: both renditions at their sizes, and AAC.
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json", "-show_entries"])
        .arg("stream=codec_name,width,height,sample_rate")
        .arg(mpd_url(&d));
    let (code, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "ffprobe failed: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let streams: Vec<String> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match s["codec_name"].as_str().unwrap() {
            "h264" => format!("h264 {}x{}", s["width"], s["height"]),
            c => format!("{c} {}", s["sample_rate"].as_str().unwrap_or("")),
        })
        .collect();
    assert_eq!(
        streams,
        ["h264 640x360", "h264 320x180", "aac 48000"],
        "{out}"
    );

    // ffmpeg decodes 5 s of every stream; any decode error fails it.
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(mpd_url(&d))
        .args(["-map", "0", "-t", "5", "-f", "framecrc", "-"]);
    let (code, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "ffmpeg failed: {err}");
    assert_eq!(err.trim(), "", "ffmpeg reported errors");
    for (stream, least) in [(0, 140), (1, 140), (2, 200)] {
        let frames = out
            .lines()
            .filter(|l| l.starts_with(&format!("{stream},")))
            .count();
        assert!(frames >= least, "stream {stream}: {frames} frames in 5 s");
    }

    // dash.js in Chromium: 20 s without a stall, latency under 2.5 s by
    // its own measure and by the MPD's clock.
    let mut cmd = Command::new("node");
    cmd.args(["dash.mjs", &d.base_url(), "20", "2.5"]);
    let (code, out, err) =
        run_with_timeout(cmd.current_dir(browser_dir()), Duration::from_secs(120));
    println!("{out}");
    eprint!("{err}");
    assert_eq!(code, Some(0), "dash.js did not play it well (above)");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["advanced"].as_f64().unwrap() >= 18.0, "{v}");
    assert!(v["height"].as_u64().unwrap() >= 180, "{v}");
}

#[test]
fn dash_routes_refuse_garbage_follow_the_viewer_gate_and_close_under_encryption() {
    let mut d = Daemon::start_with_config("dash-routes", &[], &[], Some(LADDER));
    d.wait_for("/dash/index.mpd", Duration::from_secs(30), |r| {
        r.status == 200
    });
    // The clock players sync to: ISO 8601 in UTC, near ours.
    let t = http(d.port, "GET", "/dash/time", None).unwrap();
    assert_eq!(t.status, 200);
    assert_eq!(t.header("Cache-Control"), Some("no-store"));
    let text = t.text();
    assert!(
        text.len() == 24 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
        "{text}"
    );
    for path in [
        "/dash/",
        "/dash/index.mpd/x",
        "/dash/r0/../../etc/passwd",
        "/dash/r0/..%2f..%2fetc%2fpasswd",
        "/dash/r9/init-1-0.mp4",
        "/dash/r99999999999999999999/init-1-0.mp4",
        "/dash/x/seg1.m4s",
        "/dash/r0/seg1.m4s",
        "/dash/r0/1/seg18446744073709551615.m4s",
        "/dash/r0/99999999999999999999/seg1.m4s",
        "/dash/r0/-1/seg1.m4s",
        "/dash/r0/1/seg+1.m4s",
        "/dash/a/init-.mp4",
        &format!("/dash/r0/{}.m4s", "9".repeat(5000)),
    ] {
        let r = http(d.port, "GET", path, None).unwrap();
        assert!(
            r.status == 404 || r.status == 400 || r.status == 414 || r.status == 431,
            "{path}: {}",
            r.status
        );
    }
    // A declared body of a petabyte, a request dripped and dropped, a
    // reset in the middle of a segment's answer: refused or forgotten.
    let raw = |bytes: &[u8], read: bool| {
        let mut c = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = c.write_all(bytes);
        let mut head = [0u8; 12];
        let n = if read {
            c.read(&mut head).unwrap_or(0)
        } else {
            0
        };
        String::from_utf8_lossy(&head[..n]).into_owned()
    };
    let huge = raw(
        b"GET /dash/index.mpd HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n",
        true,
    );
    assert!(
        huge.starts_with("HTTP/1.1 413") || huge.starts_with("HTTP/1.1 400") || huge.is_empty(),
        "{huge:?}"
    );
    raw(b"GET /dash/ind", false);
    for _ in 0..20 {
        let c = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        let s2 = socket2::SockRef::from(&c);
        s2.set_linger(Some(Duration::ZERO)).unwrap();
        (&c).write_all(b"GET /dash/index.mpd HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        drop(c); // RST, whatever was on its way
    }

    // Writes are not for the stream.
    let r = http(d.port, "POST", "/dash/index.mpd", Some("x")).unwrap();
    assert_ne!(r.status, 200);
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited");
    assert_eq!(d.get("/api/status").unwrap().status, 200);

    // Every listed segment is there, for every representation.
    let text = http(d.port, "GET", "/dash/index.mpd", None).unwrap().text();
    let init = xml_attr(&text, "initialization").replace("$RepresentationID$/", "");
    let media = xml_attr(&text, "media").replace("$RepresentationID$/", "");
    let start: u64 = xml_attr(&text, "startNumber").parse().unwrap();
    for rep in ["r0", "r1", "a"] {
        let r = http(d.port, "GET", &format!("/dash/{rep}/{init}"), None).unwrap();
        assert_eq!(r.status, 200, "{rep} init");
        assert!(r.body.windows(4).any(|w| w == b"moov"));
        let seg = media.replace("$Number$", &start.to_string());
        let r = http(d.port, "GET", &format!("/dash/{rep}/{seg}"), None).unwrap();
        assert_eq!(r.status, 200, "{rep}/{seg}");
        assert!(r.body.windows(4).any(|w| w == b"moof"));
        // One track per fragment: pictures and sound apart.
        let count = |tag: &[u8]| r.body.windows(4).filter(|w| *w == tag).count();
        assert_eq!(
            count(b"traf"),
            count(b"moof"),
            "{rep}: one track per fragment"
        );
    }

    // With a viewer password, the stream needs a session or the token.
    let r = d
        .put_json("/api/viewer-password", r#"{"password":"only the room"}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for path in ["/dash/index.mpd", "/dash/time", &format!("/dash/r0/{init}")] {
        assert_eq!(
            http(d.port, "GET", path, None).unwrap().status,
            401,
            "{path}"
        );
    }
    let with_token = http_with(
        d.port,
        "GET",
        "/dash/index.mpd",
        None,
        &[("Authorization", &format!("Bearer {}", d.token))],
    )
    .unwrap();
    assert_eq!(with_token.status, 200);

    // Encrypted HLS closes DASH, which would serve the pictures in the clear.
    let mut cfg: Value = serde_json::from_str(&d.get("/api/config").unwrap().text()).unwrap();
    cfg["hls"]["encryption"] = "aes-128".into();
    let r = d.put_json("/api/config", &cfg.to_string()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.get("/dash/index.mpd").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("encrypted"), "{}", r.text());
}
