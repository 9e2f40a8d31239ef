//! The fMP4 writer checked by FFmpeg: real x264 output goes through
//! `init_segment` + `write_fragment`, and ffprobe/ffmpeg must read back the
//! size, frame count and duration and decode it without a complaint.

mod common;
use common::{access_units, need, temp_dir};

use std::path::Path;
use std::process::Command;

use roomcast_media::fmp4::{init_segment, write_fragment, Sample};
use roomcast_media::h264::{contains_idr, ParameterSets};
use roomcast_media::time::Ticks90k;

const FRAMES: usize = 60;
const FRAMES_PER_FRAGMENT: usize = 10;
/// 30 fps on the 90 kHz clock.
const FRAME_TICKS: u32 = 3000;

/// Encodes the lavfi test pattern to Annex B with an AUD before every
/// access unit.
fn encode(h264: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=30")
        .args(["-frames:v", &FRAMES.to_string()])
        .args(["-pix_fmt", "yuv420p"])
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-g", "30"])
        .args(["-x264-params", "aud=1"])
        .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264"])
        .arg(h264)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not encode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The raw value after `"key":` in ffprobe's JSON (quotes stripped).
fn json_value<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let at = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in ffprobe output: {json}"));
    let rest = json[at + needle.len()..].trim_start();
    let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches('"')
}

#[test]
fn ffmpeg_reads_and_decodes_fragments() {
    need("ffmpeg");
    need("ffprobe");
    let dir = temp_dir("fmp4");
    let h264 = dir.join("in.h264");
    encode(&h264);
    let stream = std::fs::read(&h264).expect("read encoded stream");
    let aus = access_units(&stream);
    assert_eq!(aus.len(), FRAMES, "access units in the encoded stream");

    let ps = ParameterSets::from_annexb(aus[0]).expect("parameter sets in the first keyframe");
    let mut file = init_segment(&ps);
    let samples: Vec<Sample> = aus
        .iter()
        .enumerate()
        .map(|(n, au)| {
            let t = Ticks90k(n as u64 * u64::from(FRAME_TICKS));
            Sample {
                dts: t,
                pts: t,
                duration: FRAME_TICKS,
                keyframe: contains_idr(au),
                annexb: au,
            }
        })
        .collect();
    assert!(samples[0].keyframe && samples[30].keyframe && !samples[1].keyframe);
    for (i, chunk) in samples.chunks(FRAMES_PER_FRAGMENT).enumerate() {
        let before = file.len();
        let n = write_fragment(i as u32 + 1, chunk, &mut file);
        assert_eq!(n, file.len() - before);
    }
    let mp4 = dir.join("out.mp4");
    std::fs::write(&mp4, &file).expect("write mp4");

    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-show_entries", "format=duration", "-of", "json"])
        .arg(&mp4)
        .output()
        .expect("run ffprobe");
    let json = String::from_utf8_lossy(&probe.stdout);
    let errors = String::from_utf8_lossy(&probe.stderr);
    assert!(
        probe.status.success() && errors.is_empty(),
        "ffprobe: {errors}"
    );
    assert_eq!(json_value(&json, "codec_name"), "h264", "{json}");
    assert_eq!(json_value(&json, "width"), "320", "{json}");
    assert_eq!(json_value(&json, "height"), "240", "{json}");
    assert_eq!(json_value(&json, "nb_read_frames"), "60", "{json}");
    let duration: f64 = json_value(&json, "duration").parse().expect("duration");
    assert!((duration - 2.0).abs() < 0.05, "duration {duration}: {json}");

    // Timestamps and sync flags come back as written: keyframes every 30.
    let packets = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=pts,dts,flags"])
        .args(["-of", "csv=p=0"])
        .arg(&mp4)
        .output()
        .expect("run ffprobe");
    let packets = String::from_utf8_lossy(&packets.stdout);
    // Flags are "K" or "_" then more letters, as many as the FFmpeg version has.
    let want: Vec<String> = (0..FRAMES)
        .map(|n| {
            let t = n * FRAME_TICKS as usize;
            format!("{t},{t},{}", n % 30 == 0)
        })
        .collect();
    let got: Vec<String> = packets
        .lines()
        .map(|l| match l.rsplit_once(',') {
            Some((ts, flags)) => format!("{ts},{}", flags.starts_with('K')),
            None => l.to_string(),
        })
        .collect();
    assert_eq!(got, want);

    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&mp4)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && errors.is_empty(),
        "ffmpeg decode: {errors}"
    );

    let _ = std::fs::remove_dir_all(&dir);
}
