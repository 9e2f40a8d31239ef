//! Cameras and hardware encoders, end to end: the real binary with the V4L2
//! simulator (`ROOMCAST_V4L2_SIM=DIR`: a file `DIR/videoN` containing `uvc`
//! is a plugged-in UVC camera, `m2m` a Pi-style hardware encoder; deleting
//! the file unplugs it, `DIR/videoN.stall` stalls it). This machine has no
//! V4L2 drivers at all, so this is as close to a camera as CI gets; the
//! simulated devices follow the kernel's rules (see `v4l2/fake`).
//! ffprobe checks what comes out; srt-live-transmit stays connected through
//! an unplug.

use roomcast_e2e::{ffprobe_json, free_port, have, segment_uris, temp_dir, Daemon};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A simulator directory with the given nodes (`("video0", "uvc")`).
fn sim(tag: &str, nodes: &[(&str, &str)]) -> PathBuf {
    let dir = temp_dir(&format!("sim-{tag}"));
    for (node, kind) in nodes {
        std::fs::write(dir.join(node), kind).unwrap();
    }
    dir
}

fn start(tag: &str, dir: &Path, args: &[&str]) -> Daemon {
    Daemon::start_with_env(tag, args, &[("ROOMCAST_V4L2_SIM", dir)])
}

/// Polls `/api/status` until `pred` holds; panics with the last status.
fn wait_status(d: &Daemon, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = d.status();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "status not as expected: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn camera(s: &Value) -> &Value {
    &s["source"]["camera"]
}

/// Downloads the newest TS segment and returns (codec, width, height, frames).
fn newest_segment(d: &Daemon, tag: &str) -> (String, u64, u64, u64) {
    let r = d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(20), |r| {
        !segment_uris(&r.text()).is_empty()
    });
    let uris = segment_uris(&r.text());
    let uri = uris.last().unwrap();
    let seg = d.get(&format!("/hls/ts/r0/{uri}")).unwrap();
    assert_eq!(seg.status, 200);
    let dir = temp_dir(tag);
    let file = dir.join("seg.ts");
    std::fs::write(&file, &seg.body).unwrap();
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ],
        &file,
    );
    let _ = std::fs::remove_dir_all(dir);
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or("").to_string(),
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
        s["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

#[test]
fn devices_are_listed_and_a_yuyv_camera_is_encoded_to_hls() {
    let dir = sim("yuyv", &[("video0", "uvc")]);
    let d = start(
        "camera-yuyv",
        &dir,
        &[
            "--source",
            "v4l2:/dev/video0",
            "--size",
            "640x480",
            "--fps",
            "30",
        ],
    );
    // /api/devices: the camera with its real modes.
    let r = d.get("/api/devices").unwrap();
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 1, "{v}");
    assert_eq!(devs[0]["path"], "/dev/video0");
    assert_eq!(devs[0]["kind"], "camera");
    let modes: Vec<String> = devs[0]["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}x{}@{}",
                m["fourcc"].as_str().unwrap(),
                m["width"],
                m["height"],
                m["interval"]["fps"]
            )
        })
        .collect();
    for want in [
        "YUYV 640x480@30.0",
        "YUYV 1280x720@10.0",
        "H264 1920x1080@30.0",
    ] {
        assert!(modes.iter().any(|m| m == want), "{want} not in {modes:?}");
    }
    // The negotiated mode and the picture that comes out.
    let s = wait_status(&d, Duration::from_secs(10), |s| {
        camera(s)["state"] == "live"
    });
    assert_eq!(camera(&s)["mode"], "YUYV 640x480@30", "{s}");
    assert_eq!(s["encoder"]["kind"], "openh264");
    // Wait for a segment made entirely from camera frames.
    std::thread::sleep(Duration::from_secs(3));
    let (codec, w, h, frames) = newest_segment(&d, "yuyv-seg");
    assert_eq!((codec.as_str(), w, h), ("h264", 640, 480));
    assert!(
        (28..=32).contains(&frames),
        "one second at 30 fps: {frames}"
    );
    let s = d.status();
    assert!(camera(&s)["frames"].as_u64().unwrap() >= 60, "{s}");
    assert_eq!(camera(&s)["slate_frames"], 0, "{s}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn passthrough_sends_the_cameras_own_h264() {
    let dir = sim("pass", &[("video0", "uvc")]);
    let d = start(
        "camera-pass",
        &dir,
        &[
            "--source",
            "v4l2:/dev/video0",
            "--encoder",
            "passthrough",
            "--size",
            "1280x720",
        ],
    );
    let s = wait_status(&d, Duration::from_secs(10), |s| {
        camera(s)["state"] == "live" && s["encoder"]["kind"] == "passthrough"
    });
    assert_eq!(camera(&s)["mode"], "H264 1280x720@30", "{s}");
    std::thread::sleep(Duration::from_secs(3));
    let (codec, w, h, frames) = newest_segment(&d, "pass-seg");
    assert_eq!((codec.as_str(), w, h), ("h264", 1280, 720));
    assert!(frames >= 28, "{frames}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_boards_hardware_encoder_is_chosen_by_auto_and_its_output_decodes() {
    let dir = sim("m2m", &[("video11", "m2m")]);
    let d = start(
        "camera-m2m",
        &dir,
        &["--size", "320x240", "--fps", "30", "--gop", "30"],
    );
    // /api/devices lists it as an encoder.
    let v: Value = serde_json::from_slice(&d.get("/api/devices").unwrap().body).unwrap();
    assert_eq!(v["devices"][0]["kind"], "encoder", "{v}");
    let s = wait_status(&d, Duration::from_secs(10), |s| {
        s["frames"]["encoded"].as_u64() > Some(30)
    });
    let kind = s["encoder"]["kind"].as_str().unwrap();
    assert!(kind.starts_with("v4l2m2m:/dev/video11"), "{s}");
    std::thread::sleep(Duration::from_secs(2));
    let (codec, w, h, frames) = newest_segment(&d, "m2m-seg");
    assert_eq!((codec.as_str(), w, h), ("h264", 320, 240));
    assert!((28..=32).contains(&frames), "{frames}");
    assert_eq!(s["encoder"]["errors"], 0, "{s}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `srt-live-transmit` listening, writing what it receives to a file.
struct SrtReceiver(Child);

impl Drop for SrtReceiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unplug_and_stall_show_the_slate_while_outputs_stay_connected() {
    assert!(
        have("srt-live-transmit"),
        "srt-live-transmit is missing: run tests/run.sh (Debian srt-tools)"
    );
    let dir = sim("unplug", &[("video0", "uvc")]);
    let out_dir = temp_dir("unplug-out");
    let received = out_dir.join("received.ts");
    let port = free_port();
    let _rx = SrtReceiver(
        Command::new("srt-live-transmit")
            .args(["-q", "-a:no"])
            .arg(format!("srt://:{port}?mode=listener"))
            .arg("file://con")
            .stdin(Stdio::null())
            .stdout(File::create(&received).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start srt-live-transmit"),
    );
    let d = start(
        "camera-unplug",
        &dir,
        &[
            "--source",
            "v4l2:/dev/video0",
            "--size",
            "640x480",
            "--srt",
            &format!("srt://127.0.0.1:{port}?mode=caller"),
        ],
    );
    wait_status(&d, Duration::from_secs(10), |s| {
        camera(s)["state"] == "live"
    });
    d.wait_output(0, Duration::from_secs(10), |o| o["state"] == "sending");
    std::thread::sleep(Duration::from_secs(1));
    let hls_before = d.get("/hls/ts/r0/index.m3u8").unwrap().text();

    // Unplug: the slate within 2 s, the outputs untouched.
    std::fs::remove_file(dir.join("video0")).unwrap();
    let t = Instant::now();
    let s = wait_status(&d, Duration::from_secs(2), |s| {
        camera(s)["state"] == "no signal"
    });
    assert!(
        camera(&s)["reason"].as_str().unwrap().contains("unplugged"),
        "{s}"
    );
    eprintln!("slate after {:?}", t.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let s = d.status();
    assert!(camera(&s)["slate_frames"].as_u64().unwrap() >= 60, "{s}");
    let o = d.output(0);
    assert_eq!(o["state"], "sending", "{o}");
    assert_eq!(o["reconnects"], 0, "{o}");
    // HLS kept going with the slate at the same size.
    let hls_during = d.get("/hls/ts/r0/index.m3u8").unwrap().text();
    assert_ne!(
        segment_uris(&hls_before).last(),
        segment_uris(&hls_during).last()
    );
    let (codec, w, h, frames) = newest_segment(&d, "slate-seg");
    assert_eq!((codec.as_str(), w, h), ("h264", 640, 480));
    assert!(
        frames >= 28,
        "the slate runs at the configured rate: {frames}"
    );

    // The camera returns: the picture resumes.
    std::fs::write(dir.join("video0"), "uvc").unwrap();
    let t = Instant::now();
    let s = wait_status(&d, Duration::from_secs(5), |s| camera(s)["state"] == "live");
    eprintln!("camera back after {:?}", t.elapsed());
    assert_eq!(camera(&s)["opens"], 2, "{s}");

    // A stall (no frames, no error) is noticed after 2 s, then it recovers.
    std::fs::write(dir.join("video0.stall"), "").unwrap();
    let t = Instant::now();
    let s = wait_status(&d, Duration::from_secs(4), |s| {
        camera(s)["state"] == "no signal"
    });
    assert!(
        camera(&s)["reason"]
            .as_str()
            .unwrap()
            .contains("no picture"),
        "{s}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    std::fs::remove_file(dir.join("video0.stall")).unwrap();
    wait_status(&d, Duration::from_secs(8), |s| camera(s)["state"] == "live");

    let o = d.output(0);
    assert_eq!(o["state"], "sending", "{o}");
    assert_eq!(o["reconnects"], 0, "{o}");
    let sent = o["frames_sent"].as_u64().unwrap();
    drop(d);
    // Everything the receiver got decodes: camera, slate, camera again.
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
        ],
        &received,
    );
    let frames: u64 = v["streams"][0]["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // What was sent until the status read, less what was in flight.
    assert!(frames + 30 >= sent && sent > 150, "sent {sent}: {v}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(out_dir);
}
