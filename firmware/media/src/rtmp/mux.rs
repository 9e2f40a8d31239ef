//! A/V interleaving for one RTMP publishing connection: encoded frames in,
//! FLV tag bodies with RTMP timestamps out (Adobe FLV 10.1 Annex E, RTMP
//! 1.0 §7.1.5 audio and video messages).
//!
//! A player can decode nothing before the AVC sequence header (E.4.3.1
//! `AVCPacketType` 0) and no AAC before the AAC sequence header (E.4.2.2
//! `AACPacketType` 0), and a server forwards `onMetaData` (E.5) to players
//! that join later. So a connection starts at a keyframe: in front of it
//! `onMetaData`, the AVC sequence header and, with audio, the AAC sequence
//! header, all at the keyframe's time.
//!
//! RTMP timestamps are milliseconds (§5.3.1, wrapping at 2^32). Video is
//! stamped with its DTS, audio with its PTS, both from one origin (the
//! output's first keyframe, kept across reconnects), so A/V sync survives
//! RTMP. Servers expect each stream's timestamps not to go backwards;
//! audio and video reach the sink only roughly interleaved, so audio
//! earlier than the connection's first keyframe, or than audio already
//! sent, is dropped.

use alloc::string::ToString;
use alloc::vec::Vec;

use crate::flv::{AudioMetadata, Metadata};
use crate::h264::{annexb_to_avcc, ParameterSets};
use crate::time::Ticks90k;

/// One encoded frame, as [`Mux::frame`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxFrame<'a> {
    /// An AAC frame (raw, no ADTS header) rather than an H.264 access unit.
    pub audio: bool,
    pub pts: Ticks90k,
    pub dts: Ticks90k,
    /// Until the next frame of the track; gives `onMetaData`'s frame rate.
    pub duration: Ticks90k,
    /// An IDR access unit (video only).
    pub keyframe: bool,
    /// Video: one Annex-B access unit, a keyframe with its SPS and PPS.
    /// Audio: one raw AAC frame.
    pub data: &'a [u8],
    /// Picture size, for `onMetaData`.
    pub width: u32,
    pub height: u32,
}

/// The audio track of a stream: what `onMetaData` says about it and the
/// AudioSpecificConfig its sequence header carries.
#[derive(Debug, Clone, PartialEq)]
pub struct MuxAudio {
    pub metadata: AudioMetadata,
    /// ISO/IEC 14496-3 §1.6.2.1, as `aac::AudioSpecificConfig::to_bytes`.
    pub asc: [u8; 2],
}

/// One FLV tag body to send on a connection, at RTMP time `ts` (ms).
#[derive(Debug, Clone, PartialEq)]
pub enum Tag<'a> {
    /// `@setDataFrame onMetaData`, with the audio fields when the stream
    /// has audio ([`Metadata::set_data_frame_with_audio`]).
    Metadata {
        ts: u32,
        meta: Metadata,
        audio: Option<AudioMetadata>,
    },
    /// The AVCDecoderConfigurationRecord ([`crate::flv::avc_sequence_header`]).
    AvcSequenceHeader { ts: u32, record: &'a [u8] },
    /// `AF 00` and the AudioSpecificConfig ([`crate::flv::aac_sequence_header`]).
    AacSequenceHeader { ts: u32, asc: [u8; 2] },
    /// One access unit as AVCC, composition time `cts` ms
    /// ([`crate::flv::avc_nalu`]).
    Video {
        ts: u32,
        cts: i32,
        keyframe: bool,
        avcc: &'a [u8],
    },
    /// `AF 01` and one raw AAC frame ([`crate::flv::aac_raw`]).
    Audio { ts: u32, frame: &'a [u8] },
}

/// Turns frames into the FLV tags of one connection; make a new one per
/// connection, and pass the same `origin` to every one of an output.
#[derive(Debug, Clone)]
pub struct Mux {
    audio: Option<MuxAudio>,
    /// The AVCDecoderConfigurationRecord last sent; none until the first
    /// keyframe of the connection.
    record: Option<Vec<u8>>,
    /// Audio with an earlier PTS is dropped: the first keyframe's DTS, then
    /// the PTS of the last audio frame sent.
    audio_floor: Option<Ticks90k>,
    avcc: Vec<u8>,
}

impl Mux {
    /// A connection's muxer; `audio` is `None` for a video-only stream
    /// (audio frames are then dropped).
    pub fn new(audio: Option<MuxAudio>) -> Mux {
        Mux {
            audio,
            record: None,
            audio_floor: None,
            avcc: Vec::new(),
        }
    }

    /// Hands the tags for `f` to `emit`, in order, and stops at its first
    /// error. `origin` is the DTS of the output's first keyframe (set here
    /// by the first one, kept across connections). `video_kbps` and
    /// `encoder` go into `onMetaData`. True when `f` went out as a video
    /// frame.
    ///
    /// A keyframe whose parameter sets differ from the ones sent (or the
    /// first of the connection) gets `onMetaData` and the AVC sequence
    /// header again; the AAC sequence header goes out once per connection.
    pub fn frame<E>(
        &mut self,
        f: &MuxFrame<'_>,
        origin: &mut Option<Ticks90k>,
        video_kbps: u32,
        encoder: &str,
        mut emit: impl FnMut(Tag<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        if f.audio {
            // Audio is only sent when announced, after the first keyframe.
            let (Some(_), Some(floor), Some(origin)) = (&self.audio, self.audio_floor, *origin)
            else {
                return Ok(false);
            };
            if f.pts < floor {
                return Ok(false);
            }
            self.audio_floor = Some(f.pts);
            emit(Tag::Audio {
                ts: rtmp_ms(f.pts, origin),
                frame: f.data,
            })?;
            return Ok(false);
        }
        if f.keyframe {
            if let Ok(ps) = ParameterSets::from_annexb(f.data) {
                let r = ps.avc_decoder_configuration_record();
                if self.record.as_ref() != Some(&r) {
                    let origin = *origin.get_or_insert(f.dts);
                    let ts = rtmp_ms(f.dts, origin);
                    let meta = Metadata {
                        width: f.width,
                        height: f.height,
                        framerate: if f.duration.0 > 0 {
                            Ticks90k::HZ as f64 / f.duration.0 as f64
                        } else {
                            0.0
                        },
                        videodatarate_kbps: f64::from(video_kbps),
                        encoder: encoder.to_string(),
                    };
                    let audio = self.audio.as_ref().map(|a| a.metadata.clone());
                    emit(Tag::Metadata { ts, meta, audio })?;
                    emit(Tag::AvcSequenceHeader { ts, record: &r })?;
                    // The audio configuration never changes on a
                    // connection: its header goes out once.
                    if let (None, Some(a)) = (&self.record, &self.audio) {
                        emit(Tag::AacSequenceHeader { ts, asc: a.asc })?;
                        self.audio_floor = Some(f.dts);
                    }
                    self.record = Some(r);
                }
            }
        }
        // Nothing can be decoded before a sequence header.
        if self.record.is_none() {
            return Ok(false);
        }
        let origin = *origin.get_or_insert(f.dts);
        let cts = f.pts.saturating_sub(f.dts).as_millis_rounded();
        self.avcc.clear();
        annexb_to_avcc(f.data, &mut self.avcc);
        emit(Tag::Video {
            ts: rtmp_ms(f.dts, origin),
            cts: i32::try_from(cts).unwrap_or(i32::MAX),
            keyframe: f.keyframe,
            avcc: &self.avcc,
        })?;
        Ok(true)
    }
}

/// RTMP time of a frame: milliseconds (rounded) since `origin`, modulo
/// 2^32; 0 for a time before `origin`.
pub fn rtmp_ms(t: Ticks90k, origin: Ticks90k) -> u32 {
    t.saturating_sub(origin).as_millis_rounded() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf0::{self, Value};
    use crate::flv;
    use alloc::vec;

    // Parameter sets of a 320x240 openh264 stream.
    const SPS: [u8; 13] = [
        0x67, 0x42, 0xc0, 0x15, 0x8c, 0x68, 0x14, 0x1f, 0x20, 0x1e, 0x11, 0x08, 0xd4,
    ];
    const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

    /// A frame with its bytes, for [`MuxFrame`] to borrow.
    #[derive(Debug, Clone)]
    struct Owned {
        audio: bool,
        pts: u64,
        dts: u64,
        duration: u64,
        keyframe: bool,
        data: Vec<u8>,
    }

    impl Owned {
        fn as_mux(&self) -> MuxFrame<'_> {
            MuxFrame {
                audio: self.audio,
                pts: Ticks90k(self.pts),
                dts: Ticks90k(self.dts),
                duration: Ticks90k(self.duration),
                keyframe: self.keyframe,
                data: &self.data,
                width: if self.audio { 0 } else { 320 },
                height: if self.audio { 0 } else { 240 },
            }
        }
    }

    /// A video access unit at `t` ticks (an IDR with SPS/PPS when `key`).
    fn video(t: u64, key: bool) -> Owned {
        let mut data = Vec::new();
        if key {
            for nal in [&SPS[..], &PPS[..], &[0x65, 0x88, 0x80][..]] {
                data.extend_from_slice(&[0, 0, 0, 1]);
                data.extend_from_slice(nal);
            }
        } else {
            data.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02]);
        }
        Owned {
            audio: false,
            pts: t,
            dts: t,
            duration: 3000,
            keyframe: key,
            data,
        }
    }

    /// An AAC frame at `t` ticks; its payload carries `t` (32 bits), so
    /// tests can tell frames apart and check their times.
    fn audio(t: u64) -> Owned {
        Owned {
            audio: true,
            pts: t,
            dts: t,
            duration: 1920,
            keyframe: false,
            data: [&[0x21][..], &(t as u32).to_be_bytes()].concat(),
        }
    }

    /// 48 kHz stereo AAC-LC at 128 kbit/s.
    fn stereo_48k() -> MuxAudio {
        MuxAudio {
            metadata: AudioMetadata {
                sample_rate: 48_000,
                channels: 2,
                datarate_kbps: 128.0,
            },
            asc: [0x11, 0x90],
        }
    }

    /// A tag as (FLV tag type, RTMP ms, the body RTMP carries).
    fn owned(tag: Tag<'_>) -> (u8, u32, Vec<u8>) {
        match tag {
            Tag::Metadata { ts, meta, audio } => {
                (18, ts, meta.set_data_frame_with_audio(audio.as_ref()))
            }
            Tag::AvcSequenceHeader { ts, record } => (9, ts, flv::avc_sequence_header(record)),
            Tag::AacSequenceHeader { ts, asc } => (8, ts, flv::aac_sequence_header(&asc)),
            Tag::Video {
                ts,
                cts,
                keyframe,
                avcc,
            } => (9, ts, flv::avc_nalu(keyframe, cts, avcc)),
            Tag::Audio { ts, frame } => (8, ts, flv::aac_raw(frame)),
        }
    }

    /// Runs `frames` through a fresh [`Mux`] (one connection).
    fn mux(
        audio: Option<MuxAudio>,
        origin: &mut Option<Ticks90k>,
        frames: &[Owned],
    ) -> Vec<(u8, u32, Vec<u8>)> {
        let mut m = Mux::new(audio);
        let mut tags = Vec::new();
        for f in frames {
            m.frame(&f.as_mux(), origin, 2500, "roomcast/test", |t| {
                tags.push(owned(t));
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        tags
    }

    /// Audio and video interleaved about as the bus delivers them: audio up
    /// to ~100 ms early or late. Keyframe at 100_000 ticks.
    fn interleaved() -> Vec<Owned> {
        vec![
            audio(99_000),         // before any keyframe: dropped
            video(97_000, false),  // waiting for a keyframe: dropped
            audio(101_000),        // ahead of the keyframe, still waiting: dropped
            video(100_000, true),  // t = 0
            audio(95_000),         // late, before the keyframe: dropped
            audio(100_000),        // 0 ms
            audio(101_920),        // 21 ms
            video(103_000, false), // 33 ms
            audio(103_840),        // 43 ms
            audio(113_440),        // 149 ms, ahead of the video
            audio(105_760),        // behind audio already sent: dropped
            video(106_000, false), // 67 ms
            audio(115_360),        // 171 ms
        ]
    }

    #[test]
    fn mux_sends_headers_then_audio_and_video_from_one_origin() {
        let mut origin = None;
        let tags = mux(Some(stereo_48k()), &mut origin, &interleaved());
        assert_eq!(origin, Some(Ticks90k(100_000)));
        let kinds: Vec<(u8, u32, &[u8])> = tags
            .iter()
            .map(|(k, t, b)| (*k, *t, &b[..b.len().min(2)]))
            .collect();
        assert_eq!(
            kinds,
            [
                (18, 0, &[0x02, 0x00][..]), // AMF0 string "@setDataFrame"
                (9, 0, &[0x17, 0x00]),
                (8, 0, &[0xAF, 0x00]),
                (9, 0, &[0x17, 0x01]),
                (8, 0, &[0xAF, 0x01]),
                (8, 21, &[0xAF, 0x01]),
                (9, 33, &[0x27, 0x01]),
                (8, 43, &[0xAF, 0x01]),
                (8, 149, &[0xAF, 0x01]),
                (9, 67, &[0x27, 0x01]),
                (8, 171, &[0xAF, 0x01]),
            ],
            "{tags:?}"
        );
        // AAC-LC, 48 kHz (index 3), 2 channels.
        assert_eq!(tags[2].2, [0xAF, 0x00, 0x11, 0x90]);
        // The frames themselves, untouched, after AF 01.
        assert_eq!(tags[4].2, [0xAF, 0x01, 0x21, 0, 0x01, 0x86, 0xA0]);
        let vals = amf0::decode_all(&tags[0].2).unwrap();
        assert_eq!(vals[1], Value::str("onMetaData"));
        let arr = &vals[2];
        assert_eq!(arr.get("audiocodecid"), Some(&Value::Number(10.0)));
        assert_eq!(arr.get("audiosamplerate"), Some(&Value::Number(48_000.0)));
        assert_eq!(arr.get("audiodatarate"), Some(&Value::Number(128.0)));
        assert_eq!(arr.get("stereo"), Some(&Value::Boolean(true)));
        assert_eq!(arr.get("videodatarate"), Some(&Value::Number(2500.0)));

        // A reconnect: the same origin, audio before the new keyframe
        // dropped, one AAC header again.
        let tags = mux(
            Some(stereo_48k()),
            &mut origin,
            &[
                audio(400_000),
                video(400_000, false),
                video(403_000, true),
                audio(402_000),
                audio(403_000),
            ],
        );
        let kinds: Vec<(u8, u32)> = tags.iter().map(|(k, t, _)| (*k, *t)).collect();
        assert_eq!(
            kinds,
            [(18, 3367), (9, 3367), (8, 3367), (9, 3367), (8, 3367)],
            "{tags:?}"
        );
    }

    #[test]
    fn mux_without_audio_is_video_only() {
        let frames = interleaved();
        let tags = mux(None, &mut None, &frames);
        assert!(tags.iter().all(|t| t.0 != 8), "{tags:?}");
        let with: Vec<_> = mux(Some(stereo_48k()), &mut None, &frames)
            .into_iter()
            .filter(|t| t.0 != 8)
            .skip(1)
            .collect();
        assert_eq!(tags[1..], with[..]);
        let meta = Metadata {
            width: 320,
            height: 240,
            framerate: 30.0,
            videodatarate_kbps: 2500.0,
            encoder: "roomcast/test".into(),
        };
        assert_eq!(tags[0], (18, 0, meta.set_data_frame()));
        // A changed parameter set mid-connection: metadata and the AVC
        // header again, no second AAC header.
        let mut other = video(106_000, true);
        other.data[8] = 0x1f; // level 3.1
        let mut frames = interleaved();
        frames.push(other);
        let tags = mux(Some(stereo_48k()), &mut None, &frames);
        let kinds: Vec<(u8, u32)> = tags
            .iter()
            .rev()
            .take(3)
            .map(|(k, t, _)| (*k, *t))
            .collect();
        assert_eq!(kinds, [(9, 67), (9, 67), (18, 67)], "{tags:?}");
        assert_eq!(tags.iter().filter(|t| t.2[..2] == [0xAF, 0]).count(), 1);
    }

    #[test]
    fn rtmp_time_is_relative_to_the_origin() {
        assert_eq!(rtmp_ms(Ticks90k(90_000 + 2_970), Ticks90k(90_000)), 33);
        assert_eq!(rtmp_ms(Ticks90k(5), Ticks90k(90_000)), 0);
        // Rounded to the nearest ms: 44 ticks down, 45 up.
        assert_eq!(rtmp_ms(Ticks90k(44), Ticks90k(0)), 0);
        assert_eq!(rtmp_ms(Ticks90k(45), Ticks90k(0)), 1);
        // Modulo 2^32 ms (about 49.7 days).
        let wrap = (1u64 << 32) * 90;
        assert_eq!(rtmp_ms(Ticks90k(wrap + 900), Ticks90k(0)), 10);
    }

    #[test]
    fn tags_byte_exact() {
        let mut origin = Some(Ticks90k(10_000));
        let mut b = video(100_000, false);
        // PTS 66 ms after DTS: composition time 66 (0x42).
        b.pts += 5_940;
        let tags = mux(
            Some(stereo_48k()),
            &mut origin,
            &[video(91_000, true), b, audio(91_000)],
        );
        let sps_pps_record = [
            &[0x01, 0x42, 0xc0, 0x15, 0xff, 0xe1, 0x00, 0x0d][..],
            &SPS,
            &[0x01, 0x00, 0x04],
            &PPS,
        ]
        .concat();
        let meta = Metadata {
            width: 320,
            height: 240,
            framerate: 30.0,
            videodatarate_kbps: 2500.0,
            encoder: "roomcast/test".into(),
        };
        let body = meta.set_data_frame_with_audio(Some(&stereo_48k().metadata));
        assert_eq!(
            tags,
            [
                // 81_000 ticks after the origin given: 900 ms.
                (18, 900, body),
                (9, 900, [&[0x17, 0, 0, 0, 0][..], &sps_pps_record].concat()),
                (8, 900, vec![0xAF, 0x00, 0x11, 0x90]),
                // The IDR alone, 4-byte length first: no SPS/PPS in it.
                (9, 900, vec![0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x80]),
                (
                    9,
                    1000,
                    vec![0x27, 1, 0, 0, 0x42, 0, 0, 0, 3, 0x41, 0x9a, 0x02]
                ),
                (8, 900, vec![0xAF, 0x01, 0x21, 0, 0x01, 0x63, 0x78]),
            ]
        );
        assert_eq!(origin, Some(Ticks90k(10_000)));
    }

    #[test]
    fn nothing_before_a_usable_keyframe() {
        let mut garbage = video(0, true);
        garbage.data = vec![0, 0, 0, 1, 0x65, 0x88];
        let frames = [garbage, video(3000, false), audio(3000)];
        let mut origin = None;
        assert!(mux(Some(stereo_48k()), &mut origin, &frames).is_empty());
        assert_eq!(origin, None);
        // Once headers went out, a keyframe without parameter sets is
        // just a frame.
        let mut bare = video(9_000, true);
        bare.data = vec![0, 0, 0, 1, 0x65, 0x88];
        let tags = mux(None, &mut origin, &[video(6_000, true), bare]);
        let kinds: Vec<(u8, u32, &[u8])> = tags.iter().map(|(k, t, b)| (*k, *t, &b[..2])).collect();
        assert_eq!(
            kinds,
            [
                (18, 0, &[0x02, 0x00][..]),
                (9, 0, &[0x17, 0x00]),
                (9, 0, &[0x17, 0x01]),
                (9, 33, &[0x17, 0x01]),
            ]
        );
    }

    #[test]
    fn audio_never_goes_backwards() {
        let frames = [
            video(0, true),
            audio(3_840),
            audio(3_840), // the same time again: kept (non-decreasing)
            audio(1_920), // behind: dropped
            audio(0),     // at the keyframe but behind: dropped
            audio(5_760),
        ];
        let tags = mux(Some(stereo_48k()), &mut None, &frames);
        let audio_ts: Vec<u32> = tags
            .iter()
            .filter(|t| t.2.starts_with(&[0xAF, 1]))
            .map(|t| t.1)
            .collect();
        assert_eq!(audio_ts, [43, 43, 64]);
    }

    #[test]
    fn emit_errors_stop_the_frame() {
        let mut m = Mux::new(Some(stereo_48k()));
        let mut origin = None;
        let key = video(0, true);
        let mut n = 0;
        let r = m.frame(&key.as_mux(), &mut origin, 1, "e", |_| {
            n += 1;
            if n == 2 {
                Err("down")
            } else {
                Ok(())
            }
        });
        assert_eq!((r, n), (Err("down"), 2));
        // Nothing counts as sent: the next keyframe starts over.
        let mut kinds = Vec::new();
        m.frame(&key.as_mux(), &mut origin, 1, "e", |t| {
            kinds.push(owned(t).0);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(kinds, [18, 9, 8, 9]);
    }
}
