//! Low-latency HLS from the real binary: hls.js in Debian's headless Chromium
//! at low latency, the classic TS playlist beside it, ffprobe on the CMAF
//! output, and 50 clients doing blocking reloads at once.

use roomcast_e2e::edge::{attr, edge, follow};
use roomcast_e2e::{browser_dir, parse_pdt_ms, run_with_timeout, temp_dir, Daemon, Response};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each test here wants the machine to itself (CI has two cores; timing is
/// what they check): they take turns.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_for_parts(d: &Daemon) -> Response {
    d.wait_for("/hls/r0/index.m3u8", Duration::from_secs(20), |r| {
        edge(&r.text()).is_some_and(|e| e.parts >= 1)
    })
}

#[test]
fn playlist_is_ll_hls_and_cmaf_decodes_in_ffprobe() {
    let _turn = heavy();
    let d = Daemon::start(
        "ll-ffprobe",
        &["--size", "320x240", "--fps", "30", "--gop", "30"],
    );
    let r = d.wait_for("/hls/r0/index.m3u8", Duration::from_secs(20), |r| {
        r.text().matches("#EXTINF:").count() >= 2
    });
    // A plain reload lives a second in a cache; a blocking one (keyed by
    // its query, always holding what it waited for) a few.
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=1"));
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let text = r.text();
    for tag in [
        "#EXT-X-VERSION:9",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES",
        "PART-HOLD-BACK=",
        "CAN-SKIP-UNTIL=",
        "#EXT-X-PART-INF:PART-TARGET=0.267",
        "#EXT-X-MAP:URI=\"init-",
        "#EXT-X-PROGRAM-DATE-TIME:",
        ",INDEPENDENT=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part",
    ] {
        assert!(text.contains(tag), "{tag} missing from\n{text}");
    }
    // Init segment + the first complete segment decode as H.264 320x240.
    let init_uri = attr(
        text.lines().find(|l| l.starts_with("#EXT-X-MAP:")).unwrap(),
        "URI",
    )
    .unwrap();
    let seg_uri = text
        .lines()
        .skip_while(|l| !l.starts_with("#EXTINF:"))
        .nth(1)
        .unwrap();
    let init = d.get(&format!("/hls/r0/{init_uri}")).unwrap();
    let seg = d.get(&format!("/hls/r0/{seg_uri}")).unwrap();
    assert_eq!((init.status, seg.status), (200, 200));
    assert_eq!(
        seg.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        seg.header("Content-Encoding").is_none(),
        "media is never compressed"
    );
    let dir = temp_dir("ll-ffprobe-out");
    let file = dir.join("seg.mp4");
    std::fs::write(&file, [init.body, seg.body].concat()).unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-of",
            "json",
            "-show_entries",
        ])
        .arg("stream=codec_name,width,height,nb_read_frames")
        .arg(&file)
        .output()
        .expect("ffprobe (tests/run.sh installs ffmpeg)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{v}");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(s["nb_read_frames"], "30", "one 1 s segment at 30 fps: {v}");
    // The sound (issue 10): the init segment declares a second track, AAC,
    // and the segment's fragments carry it.
    roomcast_e2e::assert_aac(&file, 2, "LL-HLS init + segment");
    // Init + the newest complete parts, as a player joining at the live
    // edge reads them, have the AAC track too.
    let parts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| attr(l, "URI"))
        .collect();
    assert!(parts.len() >= 2, "{text}");
    let mut joined = d.get(&format!("/hls/r0/{init_uri}")).unwrap().body;
    for p in &parts[parts.len() - 2..] {
        let r = d.get(&format!("/hls/r0/{p}")).unwrap();
        assert_eq!(r.status, 200, "{p}");
        joined.extend_from_slice(&r.body);
    }
    let parts_file = dir.join("parts.mp4");
    std::fs::write(&parts_file, joined).unwrap();
    roomcast_e2e::assert_aac(&parts_file, 2, "LL-HLS init + parts");
    // Lip sync in fMP4: init + the last four whole segments, measured.
    let d_text = d
        .wait_for("/hls/r0/index.m3u8", Duration::from_secs(15), |r| {
            roomcast_e2e::segment_uris(&r.text()).len() >= 4
        })
        .text();
    let segs = roomcast_e2e::segment_uris(&d_text);
    let mut four = d.get(&format!("/hls/r0/{init_uri}")).unwrap().body;
    for u in &segs[segs.len() - 4..] {
        four.extend_from_slice(&d.get(&format!("/hls/r0/{u}")).unwrap().body);
    }
    let four_file = dir.join("four-segments.mp4");
    std::fs::write(&four_file, four).unwrap();
    roomcast_e2e::lipsync::assert_in_sync(&four_file, "LL-HLS fMP4");
    // Beyond the edge: 400; part without msn: 400.
    let e = edge(&text).unwrap();
    assert_eq!(
        d.get(&format!("/hls/r0/index.m3u8?_HLS_msn={}", e.msn + 10))
            .unwrap()
            .status,
        400
    );
    assert_eq!(d.get("/hls/r0/index.m3u8?_HLS_part=1").unwrap().status, 400);
    // Delta update: the same playlist with old segments skipped.
    let delta = d.get("/hls/r0/index.m3u8?_HLS_skip=YES").unwrap().text();
    assert!(delta.contains("#EXT-X-VERSION:9"), "{delta}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn blocking_reload_answers_when_the_next_part_is_published() {
    let _turn = heavy();
    let d = Daemon::start(
        "ll-block",
        &["--size", "320x240", "--fps", "30", "--gop", "30"],
    );
    let e = edge(&wait_for_parts(&d).text()).unwrap();
    // Ask for the part after the newest one: held, then answered with a
    // playlist that lists it (or, if that segment ended, the next segment).
    let t = Instant::now();
    let r = d
        .get(&format!(
            "/hls/r0/index.m3u8?_HLS_msn={}&_HLS_part={}",
            e.msn, e.parts
        ))
        .unwrap();
    let waited = t.elapsed();
    assert_eq!(r.status, 200);
    let after = edge(&r.text()).unwrap();
    assert!(
        (after.msn, after.parts) > (e.msn, e.parts),
        "{e:?} then {after:?}"
    );
    assert!(
        waited < Duration::from_millis(600),
        "held {waited:?} for a 267 ms part"
    );
    // The hinted part blocks until it is complete, then arrives whole.
    let hint = attr(
        r.text()
            .lines()
            .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
            .unwrap(),
        "URI",
    )
    .unwrap()
    .to_string();
    let part = d.get(&format!("/hls/r0/{hint}")).unwrap();
    assert_eq!(part.status, 200);
    assert_eq!(&part.body[4..8], b"moof");
    assert_eq!(d.get("/hls/r0/part1.m4s").unwrap().status, 404);
}

/// hls.js in lowLatencyMode through the box's page plays for 20 s without
/// stalling, at under 1.5 s of latency, 720p30; the classic TS playlist of
/// the same run plays too (its latency is printed for the README).
#[test]
fn hls_js_plays_ll_hls_under_1_5_s_and_classic_ts_still_plays() {
    let _turn = heavy();
    let dir = browser_dir();
    let d = Daemon::start(
        "ll-browser",
        &["--size", "1280x720", "--fps", "30", "--gop", "30"],
    );
    wait_for_parts(&d);
    for (playlist, limit) in [
        ("/hls/index.m3u8", Some("1.5")),
        ("/hls/ts/index.m3u8", None),
    ] {
        let mut cmd = Command::new("node");
        cmd.args(["latency.mjs", &d.base_url(), playlist, "20"]);
        if let Some(l) = limit {
            cmd.arg(l);
        }
        let (code, out, err) = run_with_timeout(cmd.current_dir(&dir), Duration::from_secs(90));
        println!("{out}");
        eprint!("{err}");
        assert_eq!(code, Some(0), "{playlist}: latency.mjs failed");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["advanced"].as_f64().unwrap() >= 18.0, "{v}");
    }
    // Capture drops are the load test's business: here Chromium decodes
    // 720p30 on the same two cores, and a busy CI machine may starve the
    // encoder for a frame or two. They are reported; playback is what counts.
    let s = d.status();
    println!(
        "capture to part published (ms): {}; frames: {}",
        s["llhls"]["part_latency_ms"], s["frames"]
    );
}

/// 50 clients each follow the live edge for 30 s with blocking playlist
/// reloads and part downloads, as LL-HLS players do.
#[test]
fn fifty_clients_doing_blocking_reloads_are_all_served_promptly() {
    let _turn = heavy();
    let d = Daemon::start(
        "ll-load",
        &["--size", "640x360", "--fps", "30", "--gop", "30"],
    );
    wait_for_parts(&d);
    let port = d.port;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (ages, served, errors) = follow(port, &stop);
                (served, errors, ages)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let mut ages = Vec::new();
    let mut total = 0;
    for c in clients {
        let (served, errors, a) = c.join().unwrap();
        assert!(errors.is_empty(), "a client saw errors: {errors:?}");
        // 30 s of 267 ms parts is ~112; allow for start-up and slow machines.
        assert!(served >= 80, "a client got only {served} parts in 30 s");
        total += served;
        ages.extend(a);
    }
    ages.sort_by(f64::total_cmp);
    let s = d.status();
    println!(
        "50 clients, {total} parts: capture of a part's last frame to the blocked playlist \
         delivered (client clock) p50 {:.0} ms p99 {:.0} ms; \
         publication to delivery (server) {}; capture to publication {}",
        ages[ages.len() / 2],
        ages[ages.len() * 99 / 100],
        s["llhls"]["delivery_ms"],
        s["llhls"]["part_latency_ms"],
    );
    let delivery_p50 = s["llhls"]["delivery_ms"]["p50"].as_f64().unwrap();
    assert!(
        delivery_p50 < 50.0,
        "median publication-to-delivery {delivery_p50} ms"
    );
    assert_eq!(
        s["frames"]["dropped_at_capture"], 0,
        "capture dropped frames: {s}"
    );
    assert_eq!(s["frames"]["dropped"], 0, "a sink dropped frames: {s}");
}

#[test]
fn pdt_parsing_matches_known_instants() {
    assert_eq!(parse_pdt_ms("1970-01-01T00:00:00.000Z"), Some(0.0));
    assert_eq!(
        parse_pdt_ms("2025-11-25T10:00:00.123Z"),
        Some(1_764_064_800_123.0)
    );
}
