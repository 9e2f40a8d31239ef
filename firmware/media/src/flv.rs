//! FLV tag bodies and files (Adobe, "Video File Format Specification,
//! Version 10.1", Annex E).
//!
//! RTMP carries FLV tag *bodies* as the payload of its audio, video and data
//! messages (RTMP 1.0 §7.1.4, §7.1.5); an `.flv` file wraps the same bodies
//! in tag headers. This module makes:
//!
//! * AVC video tag bodies (E.4.3.1 `VIDEODATA` + `AVCVIDEOPACKET`): the
//!   sequence header carrying the AVCDecoderConfigurationRecord, NALU packets
//!   with a signed 24-bit composition time, and the end of sequence;
//! * AAC audio tag bodies (E.4.2.1 `AUDIODATA` + `AACAUDIODATA`): the
//!   sequence header carrying the AudioSpecificConfig, then raw AAC frames;
//! * the `onMetaData` script data body (E.4.4, E.5), with the
//!   `@setDataFrame` prefix RTMP servers expect from a publisher;
//! * [`FlvWriter`], a whole file: header (E.2), tags (E.4.1) and the
//!   `PreviousTagSize` fields (E.3), for tests and recording.
//!
//! Nothing here panics; values the format cannot hold are clamped or
//! refused as each function says.

use alloc::string::String;
use alloc::vec::Vec;

use crate::amf0::{self, Value};

/// `CodecID` 7: AVC (E.4.3.1).
pub const CODEC_ID_AVC: u8 = 7;

/// `SoundFormat` 10: AAC (E.4.2.1).
pub const SOUND_FORMAT_AAC: u8 = 10;

/// First byte of every AAC audio tag: `SoundFormat` 10, `SoundRate` 3
/// (44 kHz), `SoundSize` 1 (16-bit), `SoundType` 1 (stereo). E.4.2.1 says
/// AAC always sets rate 3 and type 1: players take the real rate and
/// channels from the AudioSpecificConfig.
const AAC_AUDIO: u8 = (SOUND_FORMAT_AAC << 4) | (3 << 2) | (1 << 1) | 1;

/// `AACPacketType` (E.4.2.2).
const AAC_SEQUENCE_HEADER: u8 = 0;
const AAC_RAW: u8 = 1;

/// `TagType` values (E.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagType {
    Audio = 8,
    Video = 9,
    Script = 18,
}

/// `FrameType` 1 (key frame) and 2 (inter frame), in the high nibble, with
/// `CodecID` 7 in the low nibble.
const KEY_AVC: u8 = 0x10 | CODEC_ID_AVC;
const INTER_AVC: u8 = 0x20 | CODEC_ID_AVC;

/// `AVCPacketType` (E.4.3.2).
const AVC_SEQUENCE_HEADER: u8 = 0;
const AVC_NALU: u8 = 1;
const AVC_END_OF_SEQUENCE: u8 = 2;

/// Largest magnitude of the signed 24-bit `CompositionTime`.
pub const MAX_COMPOSITION_TIME_MS: i32 = 0x7F_FFFF;

/// Video tag body of an AVC sequence header: key frame, AVC, packet type 0,
/// composition time 0, then the AVCDecoderConfigurationRecord (ISO/IEC
/// 14496-15 §5.3.3.1; see `h264::ParameterSets::avc_decoder_configuration_record`).
pub fn avc_sequence_header(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + record.len());
    out.extend_from_slice(&[KEY_AVC, AVC_SEQUENCE_HEADER, 0, 0, 0]);
    out.extend_from_slice(record);
    out
}

/// Video tag body of one AVC access unit: frame type, packet type 1, the
/// composition time offset (PTS − DTS) in ms as a signed 24-bit value
/// (clamped to ±[`MAX_COMPOSITION_TIME_MS`]), then `avcc`, the NAL units
/// with 4-byte length prefixes (see `h264::annexb_to_avcc`).
pub fn avc_nalu(keyframe: bool, composition_time_ms: i32, avcc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + avcc.len());
    write_avc_nalu_header(keyframe, composition_time_ms, &mut out);
    out.extend_from_slice(avcc);
    out
}

/// Appends the 5-byte header of [`avc_nalu`] to `out` (so a caller can
/// append the NAL units straight after it without a copy).
pub fn write_avc_nalu_header(keyframe: bool, composition_time_ms: i32, out: &mut Vec<u8>) {
    let cts = composition_time_ms.clamp(-MAX_COMPOSITION_TIME_MS, MAX_COMPOSITION_TIME_MS);
    let b = cts.to_be_bytes();
    out.extend_from_slice(&[
        if keyframe { KEY_AVC } else { INTER_AVC },
        AVC_NALU,
        b[1],
        b[2],
        b[3],
    ]);
}

/// Video tag body marking the end of an AVC sequence.
pub fn avc_end_of_sequence() -> [u8; 5] {
    [KEY_AVC, AVC_END_OF_SEQUENCE, 0, 0, 0]
}

/// Audio tag body of the AAC sequence header: `0xAF`, packet type 0, then
/// the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1; see
/// `aac::AudioSpecificConfig::to_bytes`). Send it before the first frame
/// and again whenever the configuration changes.
pub fn aac_sequence_header(asc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + asc.len());
    out.extend_from_slice(&[AAC_AUDIO, AAC_SEQUENCE_HEADER]);
    out.extend_from_slice(asc);
    out
}

/// Audio tag body of one raw AAC frame (a `raw_data_block`, no ADTS
/// header): `0xAF`, packet type 1, the frame.
pub fn aac_raw(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + frame.len());
    write_aac_raw_header(&mut out);
    out.extend_from_slice(frame);
    out
}

/// Appends the 2-byte header of [`aac_raw`] to `out`, so a caller can
/// append the frame after it without a copy.
pub fn write_aac_raw_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&[AAC_AUDIO, AAC_RAW]);
}

/// The audio half of `onMetaData` (E.5), for a stream with AAC audio.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioMetadata {
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel count; more than one is written as `stereo: true`.
    pub channels: u8,
    /// Audio bitrate in kbit/s.
    pub datarate_kbps: f64,
}

impl AudioMetadata {
    /// The metadata of an AAC stream with this configuration and bitrate.
    pub fn aac(config: &crate::aac::AudioSpecificConfig, datarate_kbps: f64) -> Self {
        AudioMetadata {
            sample_rate: config.sample_rate(),
            channels: config.channels(),
            datarate_kbps,
        }
    }
}

/// What `onMetaData` tells a server and players about the stream (E.5).
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub width: u32,
    pub height: u32,
    /// Frames per second.
    pub framerate: f64,
    /// Video bitrate in kbit/s.
    pub videodatarate_kbps: f64,
    /// Name and version of the encoder, e.g. `roomcast/0.1.0`.
    pub encoder: String,
}

impl Metadata {
    fn ecma_array(&self, audio: Option<&AudioMetadata>) -> Value {
        let mut fields = alloc::vec![
            ("width".into(), Value::Number(f64::from(self.width))),
            ("height".into(), Value::Number(f64::from(self.height))),
            ("framerate".into(), Value::Number(self.framerate)),
            (
                "videodatarate".into(),
                Value::Number(self.videodatarate_kbps)
            ),
            (
                "videocodecid".into(),
                Value::Number(f64::from(CODEC_ID_AVC))
            ),
        ];
        if let Some(a) = audio {
            fields.extend([
                ("audiodatarate".into(), Value::Number(a.datarate_kbps)),
                (
                    "audiosamplerate".into(),
                    Value::Number(f64::from(a.sample_rate)),
                ),
                ("audiosamplesize".into(), Value::Number(16.0)),
                ("stereo".into(), Value::Boolean(a.channels > 1)),
                (
                    "audiocodecid".into(),
                    Value::Number(f64::from(SOUND_FORMAT_AAC)),
                ),
            ]);
        }
        fields.push(("encoder".into(), Value::String(self.encoder.clone())));
        Value::EcmaArray(fields)
    }

    /// Script data body as an FLV file stores it: `"onMetaData"` and an
    /// ECMA array (E.4.4.1, E.5).
    pub fn on_metadata(&self) -> Vec<u8> {
        self.on_metadata_with_audio(None)
    }

    /// [`on_metadata`](Self::on_metadata) with the audio fields too when
    /// `audio` is given: `audiodatarate`, `audiosamplerate`,
    /// `audiosamplesize` 16, `stereo` and `audiocodecid` 10.
    pub fn on_metadata_with_audio(&self, audio: Option<&AudioMetadata>) -> Vec<u8> {
        let mut out = Vec::new();
        amf0::encode_string("onMetaData", &mut out);
        amf0::encode(&self.ecma_array(audio), &mut out);
        out
    }

    /// The data message an RTMP publisher sends: `"@setDataFrame"` before
    /// the [`on_metadata`](Self::on_metadata) body; the server strips the
    /// prefix and keeps the rest for every player that joins.
    pub fn set_data_frame(&self) -> Vec<u8> {
        self.set_data_frame_with_audio(None)
    }

    /// [`set_data_frame`](Self::set_data_frame) with the audio fields of
    /// [`on_metadata_with_audio`](Self::on_metadata_with_audio).
    pub fn set_data_frame_with_audio(&self, audio: Option<&AudioMetadata>) -> Vec<u8> {
        let mut out = Vec::new();
        amf0::encode_string("@setDataFrame", &mut out);
        out.extend_from_slice(&self.on_metadata_with_audio(audio));
        out
    }
}

/// Why a tag could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("FLV tag body of {0} bytes is over the 16 MiB limit of DataSize")]
    TagTooLarge(usize),
}

/// Writes an FLV file into memory: the header when created, then one tag per
/// [`tag`](Self::tag) call, each followed by its `PreviousTagSize`. Take the
/// bytes with [`take`](Self::take) to stream them to a file as they come.
#[derive(Debug, Clone)]
pub struct FlvWriter {
    buf: Vec<u8>,
}

impl FlvWriter {
    /// Starts a file whose header flags say it has audio and/or video tags.
    pub fn new(has_audio: bool, has_video: bool) -> FlvWriter {
        let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
        let mut buf = Vec::new();
        // "FLV", version 1, flags, DataOffset 9 (E.2), PreviousTagSize0 = 0.
        buf.extend_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]);
        FlvWriter { buf }
    }

    /// Appends a tag (E.4.1): type, 24-bit DataSize, 24-bit timestamp plus
    /// its upper 8 bits in TimestampExtended, StreamID 0, the body, then the
    /// PreviousTagSize (11 + body length).
    pub fn tag(&mut self, kind: TagType, timestamp_ms: u32, body: &[u8]) -> Result<(), FlvError> {
        if body.len() > 0xFF_FFFF {
            return Err(FlvError::TagTooLarge(body.len()));
        }
        let size = (body.len() as u32).to_be_bytes();
        let ts = timestamp_ms.to_be_bytes();
        self.buf.extend_from_slice(&[
            kind as u8, size[1], size[2], size[3], ts[1], ts[2], ts[3], ts[0], 0, 0, 0,
        ]);
        self.buf.extend_from_slice(body);
        self.buf
            .extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        Ok(())
    }

    /// The bytes written since the last `take`.
    pub fn take(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }

    /// The bytes written since the last `take`, without taking them.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_header_and_nalu_bodies_byte_exact() {
        assert_eq!(
            avc_sequence_header(&[1, 0x42, 0xC0, 0x1E]),
            [0x17, 0x00, 0, 0, 0, 1, 0x42, 0xC0, 0x1E]
        );
        assert_eq!(
            avc_nalu(true, 0, &[0, 0, 0, 1, 0x65]),
            [0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65]
        );
        // 66 ms = 0x000042; -33 ms = 0xFFFFDF in two's complement, 24 bits.
        assert_eq!(avc_nalu(false, 66, &[]), [0x27, 0x01, 0x00, 0x00, 0x42]);
        assert_eq!(avc_nalu(false, -33, &[]), [0x27, 0x01, 0xFF, 0xFF, 0xDF]);
        // Out of range is clamped, not wrapped into the wrong sign.
        assert_eq!(
            avc_nalu(false, i32::MAX, &[]),
            [0x27, 0x01, 0x7F, 0xFF, 0xFF]
        );
        assert_eq!(
            avc_nalu(false, i32::MIN, &[]),
            [0x27, 0x01, 0x80, 0x00, 0x01]
        );
        assert_eq!(avc_end_of_sequence(), [0x17, 0x02, 0, 0, 0]);
    }

    #[test]
    fn metadata_bodies() {
        let m = meta_720p();
        let body = m.set_data_frame();
        let vals = amf0::decode_all(&body).unwrap();
        assert_eq!(vals[0], Value::str("@setDataFrame"));
        assert_eq!(vals[1], Value::str("onMetaData"));
        let arr = &vals[2];
        assert_eq!(arr.get("width"), Some(&Value::Number(1280.0)));
        assert_eq!(arr.get("height"), Some(&Value::Number(720.0)));
        assert_eq!(arr.get("framerate"), Some(&Value::Number(30.0)));
        assert_eq!(arr.get("videodatarate"), Some(&Value::Number(2500.0)));
        assert_eq!(arr.get("videocodecid"), Some(&Value::Number(7.0)));
        assert_eq!(arr.get("encoder"), Some(&Value::str("roomcast/0.1.0")));
        // ECMA array header: marker 8, count 6.
        let start = 16 + 13;
        assert_eq!(&body[start..start + 5], &[0x08, 0, 0, 0, 6]);
        assert_eq!(&body[16..], &m.on_metadata()[..]);
    }

    /// The metadata the tests use: 720p30 at 2.5 Mbit/s.
    fn meta_720p() -> Metadata {
        Metadata {
            width: 1280,
            height: 720,
            framerate: 30.0,
            videodatarate_kbps: 2500.0,
            encoder: "roomcast/0.1.0".into(),
        }
    }

    #[test]
    fn aac_bodies_byte_exact() {
        // 1010 11 1 1: AAC, 44 kHz, 16-bit, stereo; packet type 0; ASC 11 90.
        assert_eq!(aac_sequence_header(&[0x11, 0x90]), [0xaf, 0x00, 0x11, 0x90]);
        assert_eq!(aac_raw(&[0x21, 0x10, 0x04]), [0xaf, 0x01, 0x21, 0x10, 0x04]);
        assert_eq!(aac_raw(&[]), [0xaf, 0x01]);
        let mut out = alloc::vec![7];
        write_aac_raw_header(&mut out);
        assert_eq!(out, [7, 0xaf, 0x01]);
    }

    #[test]
    fn metadata_with_audio() {
        let m = meta_720p();
        assert_eq!(m.on_metadata_with_audio(None), m.on_metadata());
        assert_eq!(m.set_data_frame_with_audio(None), m.set_data_frame());
        let asc = crate::aac::AudioSpecificConfig::lc(48_000, 2).unwrap();
        let audio = AudioMetadata::aac(&asc, 128.0);
        assert_eq!(
            audio,
            AudioMetadata {
                sample_rate: 48_000,
                channels: 2,
                datarate_kbps: 128.0
            }
        );
        let body = m.set_data_frame_with_audio(Some(&audio));
        let vals = amf0::decode_all(&body).unwrap();
        assert_eq!(vals[1], Value::str("onMetaData"));
        let arr = &vals[2];
        assert_eq!(arr.get("videocodecid"), Some(&Value::Number(7.0)));
        assert_eq!(arr.get("audiocodecid"), Some(&Value::Number(10.0)));
        assert_eq!(arr.get("audiosamplerate"), Some(&Value::Number(48_000.0)));
        assert_eq!(arr.get("audiosamplesize"), Some(&Value::Number(16.0)));
        assert_eq!(arr.get("audiodatarate"), Some(&Value::Number(128.0)));
        assert_eq!(arr.get("stereo"), Some(&Value::Boolean(true)));
        assert_eq!(arr.get("encoder"), Some(&Value::str("roomcast/0.1.0")));
        // ECMA array header: marker 8, count 11.
        let start = 16 + 13;
        assert_eq!(&body[start..start + 5], &[0x08, 0, 0, 0, 11]);
        // "stereo" is an AMF0 boolean: key length 6, key, marker 1, false.
        let mono = AudioMetadata {
            channels: 1,
            ..audio
        };
        let body = m.on_metadata_with_audio(Some(&mono));
        let stereo_false = [0x00, 0x06, b's', b't', b'e', b'r', b'e', b'o', 0x01, 0x00];
        assert!(body.windows(10).any(|w| w == stereo_false));
    }

    #[test]
    fn file_header_tags_and_previous_sizes() {
        let mut w = FlvWriter::new(false, true);
        w.tag(TagType::Video, 0x0123_4567, &[0xAA, 0xBB]).unwrap();
        assert_eq!(
            w.take(),
            [
                b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 9, 0, 0, 0, 0, // header, PreviousTagSize0
                9, 0, 0, 2, // video, DataSize 2
                0x23, 0x45, 0x67, 0x01, // Timestamp low 24 bits, then the upper 8
                0, 0, 0, // StreamID
                0xAA, 0xBB, 0, 0, 0, 13, // body, PreviousTagSize = 11 + 2
            ]
        );
        w.tag(TagType::Script, 0, &[]).unwrap();
        assert_eq!(w.bytes(), [18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
        assert_eq!(FlvWriter::new(true, true).bytes()[4], 0x05);
        let big = alloc::vec![0u8; 0x100_0000];
        assert_eq!(
            w.tag(TagType::Video, 0, &big),
            Err(FlvError::TagTooLarge(0x100_0000))
        );
    }
}
