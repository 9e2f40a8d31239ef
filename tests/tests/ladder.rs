//! The rendition ladder from the real binary: multivariant playlists (TS
//! and LL-HLS) list every rendition with what it really is, ffprobe decodes
//! each at its declared size with keyframes on the same capture times,
//! LL-HLS playlists report the other renditions, an output takes a lower
//! rendition, and a bad ladder is refused with its field.

use roomcast_e2e::edge::{attr, edge};
use roomcast_e2e::{ffprobe_json, segment_uris, temp_dir, Daemon};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// 640x360 on top, 320x180 and 160x90 below: cheap enough for two cores.
const LADDER: &str = r#"
[video]
width = 640
height = 360
fps = 25
bitrate_kbps = 1200
gop = 25

[[ladder]]
width = 320
height = 180
bitrate_kbps = 400

[[ladder]]
width = 160
height = 90
bitrate_kbps = 150

[hls]
segment_ms = 1000
part_ms = 200
"#;

/// `#EXT-X-STREAM-INF` attributes and URI of each variant, in order.
fn variants(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("#EXT-X-STREAM-INF:"))
        .map(|w| (w[0].to_string(), w[1].to_string()))
        .collect()
}

/// Keyframe presentation times (s, 3 decimals) of a TS file.
fn keyframe_times(file: &Path) -> Vec<String> {
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame,pts_time",
        ],
        file,
    );
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["key_frame"] == 1)
        .map(|f| {
            let t: f64 = f["pts_time"].as_str().unwrap().parse().unwrap();
            format!("{t:.3}")
        })
        .collect()
}

fn size(file: &Path) -> (u64, u64) {
    let v = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
        ],
        file,
    );
    let s = &v["streams"][0];
    (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap())
}

#[test]
fn every_rendition_decodes_at_its_size_with_keyframes_aligned() {
    let d = Daemon::start_with_config("ladder", &[], &[], Some(LADDER));
    let ts = d.wait_for("/hls/ts/index.m3u8", Duration::from_secs(20), |r| {
        r.status == 200
    });
    assert_eq!(ts.header("Cache-Control"), Some("public, max-age=2"));
    let text = ts.text();
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{text}");
    let list = variants(&text);
    assert_eq!(list.len(), 3, "{text}");
    let sizes = [(640, 360), (320, 180), (160, 90)];
    for (i, ((inf, uri), (w, h))) in list.iter().zip(sizes).enumerate() {
        assert_eq!(uri, &format!("r{i}/index.m3u8"));
        assert_eq!(
            attr(inf, "RESOLUTION"),
            Some(format!("{w}x{h}").as_str()),
            "{inf}"
        );
        assert_eq!(attr(inf, "FRAME-RATE"), Some("25.000"), "{inf}");
        let codecs = attr(inf, "CODECS").unwrap();
        assert!(
            codecs.starts_with("avc1.42") && codecs.ends_with(",mp4a.40.2"),
            "{inf}"
        );
        let bw: u64 = attr(inf, "BANDWIDTH").unwrap().parse().unwrap();
        let avg: u64 = attr(inf, "AVERAGE-BANDWIDTH").unwrap().parse().unwrap();
        assert!(avg <= bw && bw > 0, "{inf}");
    }
    // Wait for three segments in every rendition, then take one sequence
    // number all of them have.
    let mut playlists = Vec::new();
    for i in 0..3 {
        let p = d.wait_for(
            &format!("/hls/ts/r{i}/index.m3u8"),
            Duration::from_secs(20),
            |r| segment_uris(&r.text()).len() >= 3,
        );
        playlists.push(segment_uris(&p.text()));
    }
    let common: Vec<&String> = playlists[0]
        .iter()
        .filter(|u| playlists[1].contains(u) && playlists[2].contains(u))
        .collect();
    assert!(
        !common.is_empty(),
        "no segment number in every rendition: {playlists:?}"
    );
    let seg = common[common.len() / 2];
    let dir = temp_dir("ladder-segs");
    let mut keys = BTreeMap::new();
    for (i, (w, h)) in sizes.iter().enumerate() {
        let r = d.get(&format!("/hls/ts/r{i}/{seg}")).unwrap();
        assert_eq!(r.status, 200);
        let file = dir.join(format!("r{i}.ts"));
        std::fs::write(&file, &r.body).unwrap();
        assert_eq!(size(&file), (*w, *h), "rendition {i}");
        keys.insert(i, keyframe_times(&file));
    }
    assert!(!keys[&0].is_empty(), "segment without a keyframe");
    assert_eq!(keys[&0], keys[&1], "keyframes of r0 and r1 differ");
    assert_eq!(keys[&0], keys[&2], "keyframes of r0 and r2 differ");
    // Peak bitrate follows what each rendition was given.
    let text = d.get("/hls/ts/index.m3u8").unwrap().text();
    let bw: Vec<u64> = variants(&text)
        .iter()
        .map(|(inf, _)| attr(inf, "BANDWIDTH").unwrap().parse().unwrap())
        .collect();
    assert!(bw[0] > bw[1] && bw[1] > bw[2], "{text}");
    let status = d.status();
    assert_eq!(
        status["renditions"].as_array().unwrap().len(),
        3,
        "{status}"
    );
}

#[test]
fn ll_hls_multivariant_reports_the_other_renditions() {
    let d = Daemon::start_with_config("ladder-ll", &[], &[], Some(LADDER));
    let mv = d.wait_for("/hls/index.m3u8", Duration::from_secs(20), |r| {
        r.status == 200
    });
    let list = variants(&mv.text());
    assert_eq!(list.len(), 3, "{}", mv.text());
    let r1 = d.wait_for("/hls/r1/index.m3u8", Duration::from_secs(20), |r| {
        let t = r.text();
        edge(&t).is_some_and(|e| e.parts >= 2) && t.matches("#EXT-X-RENDITION-REPORT:").count() == 2
    });
    let text = r1.text();
    let reports: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-RENDITION-REPORT:"))
        .collect();
    assert_eq!(attr(reports[0], "URI"), Some("../r0/index.m3u8"), "{text}");
    assert_eq!(attr(reports[1], "URI"), Some("../r2/index.m3u8"), "{text}");
    let mine = edge(&text).unwrap();
    for r in reports {
        let msn: u64 = attr(r, "LAST-MSN").unwrap().parse().unwrap();
        // Same keyframes, same sequence numbers: the others are at most a
        // segment apart from this one.
        assert!(msn.abs_diff(mine.msn) <= 1, "{r} vs {mine:?}");
    }
    // Blocking reload works per rendition: ask r2 for the next part.
    let e2 = edge(&d.get("/hls/r2/index.m3u8").unwrap().text()).unwrap();
    let (msn, part) = (e2.msn, e2.parts);
    let r = d
        .get(&format!(
            "/hls/r2/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
        ))
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=6"));
    let after = edge(&r.text()).unwrap();
    assert!((after.msn, after.parts) > (msn, part), "{after:?}");
    // The init segment of r2 says 160x90.
    let text = r.text();
    let init = attr(
        text.lines().find(|l| l.starts_with("#EXT-X-MAP:")).unwrap(),
        "URI",
    )
    .unwrap();
    let file = temp_dir("ladder-init").join("init.mp4");
    let r = d.get(&format!("/hls/r2/{init}")).unwrap();
    assert_eq!(
        r.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    std::fs::write(&file, r.body).unwrap();
    assert_eq!(size(&file), (160, 90));
    // No such rendition.
    assert_eq!(d.get("/hls/r3/index.m3u8").unwrap().status, 404);
    assert_eq!(d.get("/hls/ts/r3/index.m3u8").unwrap().status, 404);
}

#[test]
fn the_recorder_takes_the_rendition_it_names() {
    let rec = temp_dir("ladder-rec-dir");
    let config = format!(
        "{LADDER}\n[record]\nenabled = true\ndir = \"{}\"\nrendition = 2\n",
        rec.display()
    );
    let d = Daemon::start_with_config("ladder-rec", &[], &[], Some(&config));
    // The recorder is `recording` in status (outputs lists RTMP and SRT).
    d.wait_for("/api/status", Duration::from_secs(20), |r| {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        v["recording"]["frames_sent"].as_u64().unwrap_or(0) > 30
    });
    let status = d.status();
    let row = &status["recording"];
    assert_eq!(row["rendition"], 2, "{status}");
    // Stopping the recorder closes its file (`.ts.part` → `.ts`).
    let r = d
        .put_json("/api/config", r#"{"record": {"enabled": false}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let file = loop {
        let done = std::fs::read_dir(&rec)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "ts"));
        if let Some(f) = done {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "no closed recording");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(size(&file), (160, 90));
}

#[test]
fn a_bad_ladder_is_refused_with_its_field_and_changes_nothing() {
    let d = Daemon::start_with_config("ladder-bad", &[], &[], Some(LADDER));
    let before = d.get("/api/config").unwrap().text();
    let file_before = std::fs::read(d.data_dir.join("config.toml")).unwrap();
    for (body, field) in [
        (
            r#"{"ladder": [{"width": 1280, "height": 720, "bitrate_kbps": 800}]}"#,
            "ladder[0].width",
        ),
        (
            r#"{"ladder": [{"width": 320, "height": 180, "bitrate_kbps": 400}, {"width": 256, "height": 144, "bitrate_kbps": 300}, {"width": 192, "height": 108, "bitrate_kbps": 200}, {"width": 160, "height": 90, "bitrate_kbps": 100}]}"#,
            "ladder",
        ),
        (
            r#"{"ladder": [{"width": 600, "height": 338, "bitrate_kbps": 900}, {"width": 560, "height": 316, "bitrate_kbps": 800}]}"#,
            "ladder",
        ),
        (r#"{"ladder": [[320, 180, 400]]}"#, "ladder[0]"),
        (
            r#"{"outputs": [{"url": "rtmp://127.0.0.1:9/live/k", "rendition": 3}]}"#,
            "outputs[0].rendition",
        ),
        (r#"{"record": {"rendition": 5}}"#, "record.rendition"),
        (r#"{"hls": {"encryption": "rot13"}}"#, "hls.encryption"),
        (
            r#"{"hls": {"key_rotation_segments": 0}}"#,
            "hls.key_rotation_segments",
        ),
    ] {
        let r = d.put_json("/api/config", body).unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    assert_eq!(d.get("/api/config").unwrap().text(), before);
    assert_eq!(
        std::fs::read(d.data_dir.join("config.toml")).unwrap(),
        file_before
    );
    // One rendition on request: the multivariant lists one.
    let r = d.put_json("/api/config", r#"{"ladder": []}"#).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mv = d.wait_for("/hls/ts/index.m3u8", Duration::from_secs(20), |r| {
        r.status == 200 && variants(&r.text()).len() == 1
    });
    assert_eq!(variants(&mv.text())[0].1, "r0/index.m3u8");
}

/// hls.js with the browser's download rate limited (DevTools network
/// emulation) below the top rendition's average bitrate: it switches down,
/// and back up once the limit is lifted.
#[test]
fn hls_js_switches_down_under_a_rate_limit_and_back_up() {
    // Rungs under 3x apart, as players need them: hls.js counts every
    // download as taking at least 50 ms, so a low rendition's small LL-HLS
    // parts can show it at most 160 x their bytes per second, and it
    // climbs back only where that reaches the top's BANDWIDTH / 0.7.
    const ABR: &str = r#"
[video]
width = 640
height = 360
fps = 30
bitrate_kbps = 1500
gop = 30

[[ladder]]
width = 320
height = 180
bitrate_kbps = 100

# Little audio, so the renditions' bitrates differ by their pictures.
[audio]
source = "tone"
channels = 1
bitrate_kbps = 32
"#;
    let d = Daemon::start_with_config("ladder-abr", &[], &[], Some(ABR));
    // Measured bitrates settle after a few segments.
    d.wait_for("/hls/index.m3u8", Duration::from_secs(30), |r| {
        r.status == 200 && {
            let s = d.status();
            s["renditions"][1]["segments"].as_u64().unwrap_or(0) >= 4
        }
    });
    let number = |a: &str, name: &str| -> f64 { attr(a, name).unwrap().parse().unwrap() };
    // MPEG-TS: down and back up without a stall. LL-HLS: down and back up,
    // but hls.js's estimate lags Chromium's emulated link (it reads 2-4x
    // the limit for 5-8 s, and falls back to whole segments once behind
    // the parts), so its 0.8 s buffer runs dry a few times, for up to ~2 s,
    // before it switches (measured: 3 stalls, README "Renditions").
    for (playlist, stalls, freeze_s) in [
        ("/hls/ts/index.m3u8", "0", "2"),
        ("/hls/index.m3u8", "8", "5"),
    ] {
        // Each playlist's own measured bitrates (TS weighs more than fMP4).
        let v = variants(&d.get(playlist).expect("multivariant").text());
        let bw: Vec<f64> = v.iter().map(|(a, _)| number(a, "BANDWIDTH")).collect();
        let top_average = number(&v[0].0, "AVERAGE-BANDWIDTH");
        // A link a quarter below the top rendition's average that carries
        // the lower one at its peak, with its playlist reloads, with room.
        let limit = 0.75 * top_average;
        assert!(
            limit > 1.35 * bw[1],
            "{playlist}: too close to tell apart: {bw:?}"
        );
        let limit_kbps = (limit / 1000.0).round() as u64;
        println!("{playlist}: BANDWIDTH {bw:?}: limiting the browser to {limit_kbps} kbit/s");
        let mut cmd = std::process::Command::new("node");
        cmd.args([
            "abr.mjs",
            &d.base_url(),
            playlist,
            &limit_kbps.to_string(),
            stalls,
            freeze_s,
        ]);
        let (code, out, err) = roomcast_e2e::run_with_timeout(
            cmd.current_dir(roomcast_e2e::browser_dir()),
            Duration::from_secs(180),
        );
        println!("{out}");
        eprint!("{err}");
        assert_eq!(
            code,
            Some(0),
            "{playlist}: abr.mjs failed (its output is above)"
        );
    }
}
