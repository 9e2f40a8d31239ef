//! `rtmp::mux::Mux` on arbitrary frame sequences, over several connections
//! sharing one origin: never panics, and what it emits is what a server
//! and player need. Per connection: `onMetaData` then the AVC sequence
//! header come first; no video before an AVC sequence header; no audio
//! before the AAC sequence header (sent once, only when the stream has
//! audio); video timestamps non-decreasing (the encoder's DTS are),
//! audio timestamps non-decreasing and not before the first keyframe's.
//!
//! Each frame is 4 bytes: flags (audio, keyframe, valid parameter sets,
//! new connection, PTS ahead of DTS), a time step (video: forward only;
//! audio: around the video clock, backwards too), and a payload length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::flv::AudioMetadata;
use roomcast_media::rtmp::mux::{rtmp_ms, Mux, MuxAudio, MuxFrame, Tag};
use roomcast_media::time::Ticks90k;

// Parameter sets of a 320x240 stream, and a variant (another level).
const SPS: [u8; 13] = [
    0x67, 0x42, 0xc0, 0x15, 0x8c, 0x68, 0x14, 0x1f, 0x20, 0x1e, 0x11, 0x08, 0xd4,
];
const SPS_31: [u8; 13] = [
    0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x68, 0x14, 0x1f, 0x20, 0x1e, 0x11, 0x08, 0xd4,
];
const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

/// What one connection has emitted so far.
#[derive(Default)]
struct Seen {
    tags: usize,
    metadata: bool,
    avc_header: bool,
    aac_header: Option<u32>,
    last_video: Option<u32>,
    last_audio: Option<u32>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let with_audio = head & 1 != 0;
    let audio = with_audio.then(|| MuxAudio {
        metadata: AudioMetadata {
            sample_rate: 48_000,
            channels: 2,
            datarate_kbps: 128.0,
        },
        asc: [0x11, 0x90],
    });
    let mut origin = None;
    let mut mux = Mux::new(audio.clone());
    let mut seen = Seen::default();
    // Near the top of the range sometimes, to reach the saturating paths.
    let mut video_t = if head & 2 != 0 {
        u64::MAX - 1_000_000
    } else {
        900_000
    };
    let mut payload = Vec::new();
    for c in rest.chunks(4) {
        let mut b = [0u8; 4];
        b[..c.len()].copy_from_slice(c);
        let [flags, step, extra, len] = b;
        if flags & 0x08 != 0 {
            mux = Mux::new(audio.clone());
            seen = Seen::default();
        }
        let is_audio = flags & 1 != 0;
        let keyframe = flags & 2 != 0;
        let (pts, dts) = if is_audio {
            // Within about ±140 ms of the video clock.
            let t = video_t
                .saturating_add(u64::from(step) * 100)
                .saturating_sub(12_800);
            (t, t)
        } else {
            video_t = video_t.saturating_add(u64::from(step) * 50);
            let pts = if flags & 0x10 != 0 {
                video_t.saturating_add(u64::from(extra) * 300)
            } else {
                video_t
            };
            (pts, video_t)
        };
        payload.clear();
        if !is_audio && keyframe && flags & 4 != 0 {
            let sps = if flags & 0x20 != 0 { &SPS_31 } else { &SPS };
            for nal in [&sps[..], &PPS[..]] {
                payload.extend_from_slice(&[0, 0, 0, 1]);
                payload.extend_from_slice(nal);
            }
        }
        if !is_audio {
            payload.extend_from_slice(&[0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
        }
        payload.extend((0..len % 32).map(|i| i ^ extra));
        let f = MuxFrame {
            audio: is_audio,
            pts: Ticks90k(pts),
            dts: Ticks90k(dts),
            duration: Ticks90k(u64::from(extra) * 20),
            keyframe,
            data: &payload,
            width: 320,
            height: 240,
        };
        let mut videos = 0;
        let sent = mux
            .frame(&f, &mut origin, 2500, "fuzz", |tag| {
                check(&mut seen, &tag, with_audio);
                if matches!(tag, Tag::Video { .. }) {
                    videos += 1;
                }
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(sent, videos == 1);
        assert!(videos <= 1);
        if sent {
            let o = origin.expect("video went out, so the origin is set");
            assert_eq!(seen.last_video, Some(rtmp_ms(Ticks90k(dts), o)));
        }
    }
});

fn check(seen: &mut Seen, tag: &Tag<'_>, with_audio: bool) {
    match *tag {
        Tag::Metadata { ts, ref audio, .. } => {
            assert_eq!(audio.is_some(), with_audio);
            assert!(seen.last_video.map_or(true, |v| v <= ts));
            seen.metadata = true;
        }
        Tag::AvcSequenceHeader { ts, record } => {
            assert!(seen.metadata, "sequence header before onMetaData");
            assert!(!record.is_empty());
            assert!(seen.last_video.map_or(true, |v| v <= ts));
            seen.avc_header = true;
        }
        Tag::AacSequenceHeader { ts, asc } => {
            assert!(with_audio, "AAC header without audio");
            assert!(seen.avc_header && seen.aac_header.is_none());
            assert_eq!(asc, [0x11, 0x90]);
            seen.aac_header = Some(ts);
        }
        Tag::Video { ts, .. } => {
            assert!(seen.avc_header, "video before the AVC sequence header");
            assert!(seen.last_video.map_or(true, |v| v <= ts), "video went back");
            seen.last_video = Some(ts);
        }
        Tag::Audio { ts, .. } => {
            let first = seen
                .aac_header
                .expect("audio before the AAC sequence header");
            assert!(first <= ts, "audio before the first keyframe");
            assert!(seen.last_audio.map_or(true, |a| a <= ts), "audio went back");
            seen.last_audio = Some(ts);
        }
    }
    if seen.tags == 0 {
        assert!(matches!(tag, Tag::Metadata { .. }), "first tag {tag:?}");
    }
    seen.tags += 1;
}
