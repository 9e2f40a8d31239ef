//! Sound in every output (issue 10), from outside: lip sync measured on what
//! the daemon serves, a sound card whose crystal is off, a sound card pulled
//! out mid-stream, and no audio track at all when audio is off.
//!
//! Sync is measured with ffmpeg as the instrument. The test pattern flashes a
//! white band across the top eighth of the picture on the first frame of
//! every second and the test tone (or the simulated card) beeps 1 kHz for
//! 100 ms from the same whole second; the offset is the beep's onset minus
//! the flash on the stream's own PTS timeline (`-copyts`: ffmpeg shifts
//! nothing). A unit test checks the instrument itself on files with a known
//! offset, so a shifted track cannot pass.

use roomcast_e2e::lipsync::{assert_in_sync, measure};
use roomcast_e2e::{assert_aac, free_port, segment_uris, stream_kinds, temp_dir, Daemon, Response};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PICTURE: [&str; 6] = ["--size", "320x240", "--fps", "30", "--gop", "30"];

/// The daemon tests measure timing on a 2-core machine: they take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_instrument_sees_a_known_offset() {
    let dir = temp_dir("sync-instrument");
    // 4 s of 320x240@30 with a flash on frames 0, 30, 60...; the beep
    // starts `shift` seconds after each whole second. Encoded like the
    // daemon's output: H.264 and AAC in MPEG-TS.
    let make = |shift: f64, name: &str| -> PathBuf {
        let file = dir.join(name);
        let beep = format!(
            "aevalsrc='lt(mod(t+1-{shift}\\,1)\\,0.1)*0.5*sin(2*PI*1000*t)':s=48000:c=stereo"
        );
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
            .arg(
                "color=c=gray:s=320x240:r=30,\
                 drawbox=x=0:y=0:w=iw:h=ih/8:color=white:t=fill:enable='eq(mod(n\\,30)\\,0)'",
            )
            .args(["-f", "lavfi", "-i", &beep])
            .args(["-t", "4", "-c:v", "libx264", "-g", "30", "-c:a", "aac"])
            .args(["-f", "mpegts", "-y"])
            .arg(&file)
            .output()
            .expect("run ffmpeg");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        file
    };
    for (shift, name) in [(0.0, "in-sync.ts"), (0.1, "late.ts"), (0.9, "early.ts")] {
        let s = measure(&make(shift, name));
        eprintln!("instrument, {name}: {:?}", s.offsets_ms());
        assert!(s.pairs.len() >= 3 && s.flashes.len() >= 3, "{name}: {s:?}");
        // 0.9 s late is 0.1 s early for the nearest flash.
        let want = if shift > 0.5 { shift - 1.0 } else { shift };
        for (_, off) in &s.pairs {
            assert!((off - want).abs() < 0.005, "{name}: {s:?}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_pmt_reader_finds_the_audio_pid() {
    // One PAT and one PMT packet as the daemon writes them (program 1, PMT
    // on 0x1000, H.264 on 0x100 with the PCR, AAC/ADTS on 0x101).
    let mut pat = vec![0x47, 0x40, 0x00, 0x10, 0x00];
    pat.extend([0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00]);
    pat.extend([0x00, 0x01, 0xf0, 0x00, 0, 0, 0, 0]);
    pat.resize(188, 0xff);
    let mut pmt = vec![0x47, 0x50, 0x00, 0x10, 0x00];
    pmt.extend([0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00]);
    pmt.extend([0xe1, 0x00, 0xf0, 0x00]);
    pmt.extend([0x1b, 0xe1, 0x00, 0xf0, 0x00]);
    pmt.extend([0x0f, 0xe1, 0x01, 0xf0, 0x00]);
    pmt.extend([0, 0, 0, 0]);
    pmt.resize(188, 0xff);
    assert_eq!(
        roomcast_e2e::pmt_streams(&[pat, pmt].concat()),
        [(0x1b, 0x100), (0x0f, 0x101)]
    );
}

// ---------------------------------------------------------------------------
// Helpers against the daemon.

/// The `audio` object of `/api/status`.
fn audio_status(d: &Daemon) -> Value {
    d.status()["audio"].clone()
}

/// Polls `/api/status` until its `audio` object satisfies `pred`.
fn wait_audio(d: &Daemon, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let a = audio_status(d);
        if pred(&a) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {timeout:?}: status audio is {a}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The classic HLS playlist once it lists at least `n` segments.
fn ts_playlist(d: &Daemon, n: usize) -> Response {
    d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(30), |r| {
        segment_uris(&r.text()).len() >= n
    })
}

/// The newest `n` TS segments back to back, written to `dir/name`.
fn last_segments(d: &Daemon, n: usize, dir: &Path, name: &str) -> PathBuf {
    let uris = segment_uris(&ts_playlist(d, n).text());
    let mut joined = Vec::new();
    for uri in &uris[uris.len() - n..] {
        let r = d.get(&format!("/hls/ts/r0/{uri}")).unwrap();
        assert_eq!(r.status, 200, "{uri}");
        joined.extend_from_slice(&r.body);
    }
    let file = dir.join(name);
    std::fs::write(&file, joined).unwrap();
    file
}

/// Waits for a TS segment that was not in `seen` and writes it to
/// `dir/name`.
fn new_segment(d: &Daemon, seen: &[String], dir: &Path, name: &str) -> PathBuf {
    let r = d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(10), |r| {
        segment_uris(&r.text()).iter().any(|u| !seen.contains(u))
    });
    let uri = segment_uris(&r.text()).pop().unwrap();
    let seg = d.get(&format!("/hls/ts/r0/{uri}")).unwrap();
    assert_eq!(seg.status, 200, "{uri}");
    let file = dir.join(name);
    std::fs::write(&file, seg.body).unwrap();
    file
}

/// A simulated sound card directory (`ROOMCAST_ALSA_SIM`) with one card
/// `NAME` described by `spec` (`key=value` lines).
fn sound_card(tag: &str, name: &str, spec: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join(name), spec).expect("simulated sound card");
    dir
}

fn daemon_with_card(tag: &str, sim: &Path, card: &str, extra_config: &str) -> Daemon {
    Daemon::start_with_config(
        tag,
        &PICTURE,
        &[("ROOMCAST_ALSA_SIM", sim)],
        Some(&format!(
            "[audio]\nsource = \"alsa:sim:{card}\"\n{extra_config}"
        )),
    )
}

// ---------------------------------------------------------------------------
// The daemon.

#[test]
fn flash_and_beep_line_up_in_hls() {
    let _turn = turn();
    let d = Daemon::start("sync-hls", &PICTURE);
    let a = wait_audio(&d, Duration::from_secs(10), "the test tone", |a| {
        a["state"] == "tone"
    });
    eprintln!("status audio: {a}");
    let dir = temp_dir("sync-hls-out");
    ts_playlist(&d, 5);
    let file = last_segments(&d, 5, &dir, "five-seconds.ts");
    assert_aac(&file, 2, "five seconds of HLS");
    assert_in_sync(&file, "HLS, test tone");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sync_holds_with_a_100_ppm_sound_card() {
    let _turn = turn();
    // 1000 ppm for 60 s is the 60 ms that 100 ppm gathers in 10 minutes;
    // SYNC_PPM=100 SYNC_SECONDS=600 runs the literal case.
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (ppm, seconds) = (env("SYNC_PPM", 1000), env("SYNC_SECONDS", 60));
    let sim = sound_card("sync-ppm-sim", "fast", &format!("ppm={ppm}\n"));
    let d = daemon_with_card("sync-ppm", &sim, "fast", "");
    let a = wait_audio(&d, Duration::from_secs(10), "the sound card live", |a| {
        a["state"] == "live"
    });
    eprintln!("status audio at the start: {a}");
    let started = Instant::now();
    let dir = temp_dir("sync-ppm-out");
    ts_playlist(&d, 5);
    let first = last_segments(&d, 5, &dir, "start.ts");
    assert_aac(&first, 2, "the first five seconds");
    let at_start = assert_in_sync(&first, &format!("{ppm} ppm card, start"));
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed()));
    let last = last_segments(&d, 5, &dir, "end.ts");
    eprintln!("status audio at the end: {}", audio_status(&d));
    let measured = measure(&last);
    eprintln!(
        "SYNC {ppm} ppm over {} s: offsets at the start {at_start:?} ms, at the end {:?} ms",
        started.elapsed().as_secs(),
        measured.offsets_ms()
    );
    assert_in_sync(&last, &format!("{ppm} ppm card, after {seconds} s"));
    // The daemon saw the card's clock run fast by about as much.
    let drift = audio_status(&d)["drift_ppm"].as_f64().unwrap_or(0.0);
    let want = ppm as f64;
    assert!(
        (drift - want).abs() <= (want * 0.2).max(20.0),
        "status audio drift_ppm {drift}, the card runs {ppm} ppm fast"
    );
    // The video never stalled for it.
    assert_eq!(d.status()["encoder"]["restarts"], 0);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(sim);
}

/// A port free for UDP too.
fn free_udp_port() -> u16 {
    loop {
        let p = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// libsrt's `srt-live-transmit` writing what it receives to a file; killed
/// when dropped.
struct SrtReceiver(Child);

impl SrtReceiver {
    fn start(uri: &str, out: &Path) -> SrtReceiver {
        let file = File::create(out).expect("create receiver output");
        let child = Command::new("srt-live-transmit")
            .args(["-q", "-a:no", uri, "file://con"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (tests/run.sh installs Debian's srt-tools)");
        SrtReceiver(child)
    }
}

impl Drop for SrtReceiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unplugged_sound_card_keeps_every_output_running() {
    let _turn = turn();
    let sim = sound_card("unplug-sim", "mic", "channels=1\n");
    let card = sim.join("mic");
    let dir = temp_dir("unplug-out");
    let port = free_udp_port();
    let received = dir.join("srt.ts");
    let rx = SrtReceiver::start(&format!("srt://127.0.0.1:{port}?mode=listener"), &received);
    let d = Daemon::start_with_config(
        "unplug",
        &[&PICTURE[..], &["--srt", &format!("srt://127.0.0.1:{port}")]].concat(),
        &[("ROOMCAST_ALSA_SIM", &sim)],
        Some("[audio]\nsource = \"alsa:sim:mic\"\n"),
    );
    let a = wait_audio(&d, Duration::from_secs(10), "the sound card live", |a| {
        a["state"] == "live"
    });
    eprintln!("status audio, plugged in: {a}");
    d.wait_output(0, Duration::from_secs(10), |o| {
        o["state"] == "sending" && o["frames_sent"].as_u64() > Some(30)
    });
    ts_playlist(&d, 3);
    std::thread::sleep(Duration::from_secs(2));
    // The mono card is copied to both sides of the stereo track, with the
    // beep where the flash is.
    let plugged = last_segments(&d, 3, &dir, "plugged.ts");
    assert_aac(&plugged, 2, "HLS with the card plugged in");
    assert!(
        measure(&plugged).beeps.len() >= 2,
        "no beeps from the card: {:?}",
        measure(&plugged)
    );

    // Unplugged: silence within a few seconds, and nothing else changes.
    let seen = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
    std::fs::remove_file(&card).unwrap();
    let t = Instant::now();
    let a = wait_audio(
        &d,
        Duration::from_secs(5),
        "silence after the unplug",
        |a| a["state"] == "silence",
    );
    eprintln!("status audio {:?} after the unplug: {a}", t.elapsed());
    assert!(
        a["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "silence without a reason: {a}"
    );
    let metrics = d.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("\nroomcast_audio_live 0\n"),
        "metrics during silence: {metrics}"
    );
    // The segment being made at the unplug may still have sound; the ones
    // after it carry the AAC track, silent.
    let mut after = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
    for i in 0..3 {
        let f = new_segment(&d, &after, &dir, &format!("unplugged-{i}.ts"));
        after = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
        if i == 0 {
            continue;
        }
        assert_aac(&f, 2, "an HLS segment while unplugged");
        let peak = measure(&f).peak_db;
        assert!(peak < -50.0, "unplugged, yet the audio peaks at {peak} dB");
    }
    let made = after.iter().filter(|u| !seen.contains(u)).count();
    assert!(made >= 3, "only {made} segments since the unplug");
    let o = d.output(0);
    assert_eq!(o["state"], "sending", "{o}");
    assert_eq!(o["reconnects"], 0, "{o}");

    // Plugged back in: live again.
    std::fs::write(&card, "channels=1\n").unwrap();
    let t = Instant::now();
    let a = wait_audio(&d, Duration::from_secs(5), "live after replugging", |a| {
        a["state"] == "live"
    });
    eprintln!("status audio {:?} after plugging back in: {a}", t.elapsed());
    assert_eq!(a["device"], "sim:mic", "{a}");
    std::thread::sleep(Duration::from_secs(3));
    let o = d.output(0);
    assert_eq!(o["state"], "sending", "{o}");
    assert_eq!(o["reconnects"], 0, "{o}");
    let st = d.status();
    assert_eq!(st["encoder"]["restarts"], 0, "{st}");
    let playlist = d.get("/hls/ts/r0/index.m3u8").unwrap().text();
    eprintln!("playlist after replugging:\n{playlist}");
    drop(rx);
    drop(d);

    // What the SRT receiver got, from start to the last whole GOP (the kill
    // cut the end), decodes without an error and has both streams.
    let whole = dir.join("srt-whole-gops.ts");
    roomcast_e2e::whole_gops(&received, &whole);
    assert_eq!(
        stream_kinds(&whole),
        [
            ("video".to_string(), "h264".to_string()),
            ("audio".to_string(), "aac".to_string())
        ]
    );
    assert_aac(&whole, 2, "SRT through unplug and replug");
    let dec = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&whole)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&dec.stderr);
    assert!(
        dec.status.success() && errors.trim().is_empty(),
        "decoding what SRT received:\n{errors}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(sim);
}

#[test]
fn audio_none_has_no_audio_track() {
    let _turn = turn();
    let d = Daemon::start("audio-none", &PICTURE);
    let dir = temp_dir("audio-none-out");
    let with = new_segment(&d, &[], &dir, "with.ts");
    assert_eq!(
        stream_kinds(&with),
        [
            ("video".to_string(), "h264".to_string()),
            ("audio".to_string(), "aac".to_string())
        ],
        "by default"
    );
    let r = d
        .put_json("/api/config", r#"{"audio":{"source":"none"}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cfg: Value = serde_json::from_slice(&d.get("/api/config").unwrap().body).unwrap();
    assert_eq!(cfg["audio"]["source"], "none", "{cfg}");
    // Segments made from now on: picture only, and the PMT lists only it.
    let mut seen = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
    for i in 0..2 {
        let f = new_segment(&d, &seen, &dir, &format!("none-{i}.ts"));
        seen = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
        if i == 0 {
            continue; // may have begun before the change
        }
        assert_eq!(
            stream_kinds(&f),
            [("video".to_string(), "h264".to_string())]
        );
        assert_eq!(
            roomcast_e2e::pmt_streams(&std::fs::read(&f).unwrap()),
            [(0x1b, 0x100)]
        );
    }
    let a = audio_status(&d);
    assert_eq!(a["state"], "off", "status audio with source none: {a}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Gain and mute change the running sound: no encoder restart, no new
/// audio stage (same opens), the tone's level follows the gain and a muted
/// segment is silent; unmuting brings the beeps back.
#[test]
fn gain_and_mute_apply_live() {
    let _turn = turn();
    let d = Daemon::start("audio-levels", &PICTURE);
    wait_audio(&d, Duration::from_secs(10), "the test tone", |a| {
        a["state"] == "tone"
    });
    let dir = temp_dir("audio-levels-out");
    let peak = |f: &Path| measure(f).peak_db;
    let mut seen = segment_uris(&ts_playlist(&d, 2).text());
    let before = new_segment(&d, &seen, &dir, "before.ts");
    let loud = peak(&before);
    let mut change = |body: &str, name: &str| {
        let r = d.put_json("/api/config", body).unwrap();
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        // The segment being built may straddle the change: take the next.
        seen = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
        let _ = new_segment(&d, &seen, &dir, "straddle.ts");
        seen = segment_uris(&d.get("/hls/ts/r0/index.m3u8").unwrap().text());
        new_segment(&d, &seen, &dir, name)
    };
    let quieter = peak(&change(r#"{"audio":{"gain_db":-20}}"#, "quiet.ts"));
    assert!(
        (loud - quieter - 20.0).abs() < 2.0,
        "-20 dB of gain: peak {loud:.1} dB -> {quieter:.1} dB"
    );
    let muted = change(r#"{"audio":{"gain_db":0,"mute":true}}"#, "muted.ts");
    assert_aac(&muted, 2, "a muted segment still has its audio track");
    assert!(peak(&muted) < -80.0, "muted: peak {:.1} dB", peak(&muted));
    let back = peak(&change(r#"{"audio":{"mute":false}}"#, "back.ts"));
    assert!(
        (back - loud).abs() < 2.0,
        "unmuted: {back:.1} dB, was {loud:.1} dB"
    );
    let st = d.status();
    assert_eq!(st["encoder"]["restarts"], 0, "{st}");
    assert_eq!(st["audio"]["opens"], 1, "{}", st["audio"]);
    assert_eq!(st["audio"]["mute"], false, "{}", st["audio"]);
    let _ = std::fs::remove_dir_all(dir);
}
