//! H.264 + AAC through every container, checked by FFmpeg: real x264 video
//! and real AAC-LC frames (FFmpeg's native encoder, ADTS) go through the
//! MPEG-TS muxer, an FLV file and fMP4 (init + fragments); ffprobe must
//! find both streams with the right sample rate and channels, and ffmpeg
//! must decode all of it without a complaint.

mod common;
use common::{access_units, need, temp_dir};

use std::path::Path;
use std::process::Command;

use roomcast_media::aac::{adts_frames, AdtsFrame, AudioSpecificConfig};
use roomcast_media::flv::{self, AudioMetadata, FlvWriter, Metadata, TagType};
use roomcast_media::fmp4::{
    init_segment_audio, init_segment_with_audio, write_av_fragment, AudioSample, Sample,
};
use roomcast_media::h264::{annexb_to_avcc, contains_idr, ParameterSets};
use roomcast_media::time::Ticks90k;
use roomcast_media::ts::{TsConfig, TsMuxer, DEFAULT_AUDIO_PID};

const FRAMES: usize = 60;
/// 30 fps on the 90 kHz clock.
const FRAME_TICKS: u64 = 3000;
const SAMPLE_RATE: u32 = 48_000;
/// 1024 samples at 48 kHz on the 90 kHz clock.
const AAC_TICKS: u64 = 1920;

fn ffmpeg(args: &[&str], out: &Path) {
    let run = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .output()
        .expect("run ffmpeg");
    assert!(
        run.status.success(),
        "ffmpeg could not encode: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Two seconds of the lavfi test pattern, Annex B with an AUD before every
/// access unit, and two seconds of a 440 Hz tone as stereo AAC-LC in ADTS.
struct Media {
    h264: Vec<u8>,
    adts: Vec<u8>,
}

fn encode(dir: &Path) -> Media {
    let h264 = dir.join("in.h264");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-frames:v",
            &FRAMES.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            "30",
            "-x264-params",
            "aud=1",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
        ],
        &h264,
    );
    let aac = dir.join("in.aac");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=2",
            "-ac",
            "2",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "adts",
        ],
        &aac,
    );
    Media {
        h264: std::fs::read(h264).expect("read h264"),
        adts: std::fs::read(aac).expect("read aac"),
    }
}

/// The configuration and the ADTS frames (whole, and their raw payloads).
fn aac_frames(adts: &[u8]) -> (AudioSpecificConfig, Vec<AdtsFrame<'_>>) {
    let frames: Vec<_> = adts_frames(adts)
        .collect::<Result<_, _>>()
        .expect("FFmpeg's ADTS parses");
    let config = frames[0].header.config;
    assert_eq!(config, AudioSpecificConfig::lc(SAMPLE_RATE, 2).unwrap());
    assert!(frames.iter().all(|f| f.header.config == config));
    assert!(frames.iter().all(|f| f.header.raw_blocks == 1));
    (config, frames)
}

/// The ADTS frames' payloads as fMP4 audio samples, back to back from 0 in
/// the sample-rate timescale.
fn audio_samples<'a>(frames: &[AdtsFrame<'a>]) -> Vec<AudioSample<'a>> {
    frames
        .iter()
        .enumerate()
        .map(|(k, f)| AudioSample {
            dts: k as u64 * 1024,
            duration: 1024,
            data: f.payload,
        })
        .collect()
}

/// One line per stream from ffprobe, `type,codec,nb_read_frames` for
/// video and `type,codec,sample_rate,channels,nb_read_frames` for audio,
/// sorted. Read from the `flat` output's top-level `streams` (MPEG-TS
/// programs list their streams a second time).
fn probe_streams(file: &Path) -> Vec<String> {
    const KEYS: [&str; 5] = [
        "codec_type",
        "codec_name",
        "sample_rate",
        "channels",
        "nb_read_frames",
    ];
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args(["-show_entries", &format!("stream={}", KEYS.join(","))])
        .args(["-of", "flat"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    let errors = String::from_utf8_lossy(&probe.stderr);
    assert!(
        probe.status.success() && errors.is_empty(),
        "ffprobe {}: {errors}",
        file.display()
    );
    let mut streams: Vec<Vec<(String, String)>> = Vec::new();
    for line in String::from_utf8_lossy(&probe.stdout).lines() {
        let Some(rest) = line.strip_prefix("streams.stream.") else {
            continue;
        };
        let (index, kv) = rest.split_once('.').expect("index.key=value");
        let (key, value) = kv.split_once('=').expect("key=value");
        let index: usize = index.parse().expect("stream index");
        if streams.len() <= index {
            streams.resize(index + 1, Vec::new());
        }
        streams[index].push((key.to_string(), value.trim_matches('"').to_string()));
    }
    let mut lines: Vec<String> = streams
        .iter()
        .map(|fields| {
            KEYS.iter()
                .filter_map(|k| fields.iter().find(|(key, _)| key == k))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    lines.sort();
    lines
}

/// The audio packets' PTS as ffprobe reads them, in the stream's time base.
fn audio_pts(file: &Path) -> Vec<u64> {
    let packets = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a"])
        .args(["-show_entries", "packet=pts", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&packets.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("pts"))
        .collect()
}

fn decode_cleanly(file: &Path) {
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && errors.is_empty(),
        "ffmpeg decode {}: {errors}",
        file.display()
    );
}

#[test]
fn mpeg_ts_with_aac() {
    need("ffmpeg");
    need("ffprobe");
    let dir = temp_dir("av-ts");
    let media = encode(&dir);
    let aus = access_units(&media.h264);
    assert_eq!(aus.len(), FRAMES);
    let (config, frames) = aac_frames(&media.adts);

    let mut mux = TsMuxer::with_audio(TsConfig::default(), DEFAULT_AUDIO_PID);
    let mut ts = Vec::new();
    let mut next_audio = 0;
    for (n, au) in aus.iter().enumerate() {
        let t = Ticks90k(n as u64 * FRAME_TICKS);
        mux.write_video(t, t, contains_idr(au), au, &mut ts);
        // Audio up to the next picture, two ways: whole ADTS frames as the
        // encoder made them, and raw frames behind our own ADTS header.
        let until = (n as u64 + 1) * FRAME_TICKS;
        while next_audio < frames.len() && next_audio as u64 * AAC_TICKS < until {
            let pts = Ticks90k(next_audio as u64 * AAC_TICKS);
            let AdtsFrame {
                frame: whole,
                payload: raw,
                ..
            } = frames[next_audio];
            if next_audio % 2 == 0 {
                mux.write_audio(pts, whole, &mut ts);
            } else {
                mux.write_aac(pts, &config, raw, &mut ts).unwrap();
            }
            next_audio += 1;
        }
    }
    let file = dir.join("out.ts");
    std::fs::write(&file, &ts).expect("write ts");

    let streams = probe_streams(&file);
    assert_streams(&streams, next_audio);
    // PTS come back as written, on the 90 kHz clock.
    let want: Vec<u64> = (0..next_audio as u64).map(|k| k * AAC_TICKS).collect();
    assert_eq!(audio_pts(&file), want);
    decode_cleanly(&file);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flv_with_aac() {
    need("ffmpeg");
    need("ffprobe");
    let dir = temp_dir("av-flv");
    let media = encode(&dir);
    let aus = access_units(&media.h264);
    let (config, frames) = aac_frames(&media.adts);
    let ps = ParameterSets::from_annexb(aus[0]).expect("parameter sets");

    let mut w = FlvWriter::new(true, true);
    let meta = Metadata {
        width: 320,
        height: 240,
        framerate: 30.0,
        videodatarate_kbps: 500.0,
        encoder: "roomcast-test".into(),
    };
    let audio_meta = AudioMetadata::aac(&config, 128.0);
    w.tag(
        TagType::Script,
        0,
        &meta.on_metadata_with_audio(Some(&audio_meta)),
    )
    .unwrap();
    w.tag(
        TagType::Video,
        0,
        &flv::avc_sequence_header(&ps.avc_decoder_configuration_record()),
    )
    .unwrap();
    w.tag(
        TagType::Audio,
        0,
        &flv::aac_sequence_header(&config.to_bytes()),
    )
    .unwrap();
    let mut next_audio = 0;
    for (n, au) in aus.iter().enumerate() {
        let ms = (n as u64 * FRAME_TICKS / 90) as u32;
        let mut avcc = Vec::new();
        annexb_to_avcc(au, &mut avcc);
        w.tag(
            TagType::Video,
            ms,
            &flv::avc_nalu(contains_idr(au), 0, &avcc),
        )
        .unwrap();
        let until = (n as u64 + 1) * FRAME_TICKS;
        while next_audio < frames.len() && next_audio as u64 * AAC_TICKS < until {
            let ms = (next_audio as u64 * AAC_TICKS / 90) as u32;
            w.tag(
                TagType::Audio,
                ms,
                &flv::aac_raw(frames[next_audio].payload),
            )
            .unwrap();
            next_audio += 1;
        }
    }
    let file = dir.join("out.flv");
    std::fs::write(&file, w.take()).expect("write flv");

    let streams = probe_streams(&file);
    assert_streams(&streams, next_audio);
    // Tag timestamps in ms.
    let want: Vec<u64> = (0..next_audio as u64).map(|k| k * AAC_TICKS / 90).collect();
    assert_eq!(audio_pts(&file), want);
    decode_cleanly(&file);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fmp4_with_aac() {
    need("ffmpeg");
    need("ffprobe");
    let dir = temp_dir("av-fmp4");
    let media = encode(&dir);
    let aus = access_units(&media.h264);
    let (config, frames) = aac_frames(&media.adts);
    let ps = ParameterSets::from_annexb(aus[0]).expect("parameter sets");

    let mut file = init_segment_with_audio(&ps, &config, 128_000);
    let video: Vec<Sample> = aus
        .iter()
        .enumerate()
        .map(|(n, au)| {
            let t = Ticks90k(n as u64 * FRAME_TICKS);
            Sample {
                dts: t,
                pts: t,
                duration: FRAME_TICKS as u32,
                keyframe: contains_idr(au),
                annexb: au,
            }
        })
        .collect();
    let audio = audio_samples(&frames);
    // Fragments of 10 pictures, each with the audio of the same time span.
    let mut used_audio = 0;
    for (i, chunk) in video.chunks(10).enumerate() {
        let until = (i as u64 + 1) * 10 * FRAME_TICKS;
        let end = audio
            .iter()
            .position(|a| a.dts * 90_000 / u64::from(SAMPLE_RATE) >= until)
            .unwrap_or(audio.len());
        let before = file.len();
        let n = write_av_fragment(i as u32 + 1, chunk, &audio[used_audio..end], &mut file);
        assert_eq!(n, file.len() - before);
        used_audio = end;
    }
    let path = dir.join("out.mp4");
    std::fs::write(&path, &file).expect("write mp4");

    let streams = probe_streams(&path);
    assert_streams(&streams, used_audio);
    decode_cleanly(&path);

    // Audio timestamps come back in the sample-rate timescale.
    let want: Vec<u64> = (0..used_audio as u64).map(|k| k * 1024).collect();
    assert_eq!(audio_pts(&path), want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sound kept apart from the video (an HLS audio rendition, a DASH
/// audio AdaptationSet): an audio-only init segment and fragments of AAC
/// alone, as ffprobe and ffmpeg read them.
#[test]
fn fmp4_audio_alone() {
    need("ffmpeg");
    need("ffprobe");
    let dir = temp_dir("av-fmp4-audio");
    let media = encode(&dir);
    let (config, frames) = aac_frames(&media.adts);
    let mut file = init_segment_audio(&config, 128_000);
    let audio = audio_samples(&frames);
    // Fragments of 12 frames (256 ms at 48 kHz), like LL-HLS parts.
    for (i, chunk) in audio.chunks(12).enumerate() {
        write_av_fragment(i as u32 + 1, &[], chunk, &mut file);
    }
    let path = dir.join("audio.mp4");
    std::fs::write(&path, &file).expect("write mp4");
    assert_eq!(
        probe_streams(&path),
        [format!("audio,aac,48000,2,{}", audio.len())],
        "ffprobe streams"
    );
    decode_cleanly(&path);
    let want: Vec<u64> = (0..audio.len() as u64).map(|k| k * 1024).collect();
    assert_eq!(audio_pts(&path), want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// ffprobe found exactly an AAC stream (48 kHz, stereo, `audio_frames`
/// frames) and the 60-picture H.264 stream.
fn assert_streams(lines: &[String], audio_frames: usize) {
    let want_audio = format!("audio,aac,48000,2,{audio_frames}");
    let want_video = format!("video,h264,{FRAMES}");
    assert_eq!(lines, [want_audio, want_video], "ffprobe streams");
}
