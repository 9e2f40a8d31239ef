//! Fragmented MP4 / CMAF writer for one H.264 video track, as LL-HLS parts
//! carry it, optionally with an AAC audio track beside it.
//!
//! * ISO/IEC 14496-12 (ISOBMFF): the init segment `ftyp` (§4.3) + `moov`
//!   (§8.2.1) with empty sample tables and `mvex` (§8.8.1), then one movie
//!   fragment per call, `moof` (§8.8.4) + `mdat` (§8.1.1).
//! * ISO/IEC 14496-15 (AVC file format): the `avc1` sample entry with its
//!   `avcC` (§5.4.2, §5.3.3.1); samples hold 4-byte-length-prefixed NAL units,
//!   parameter sets live only in `avcC`.
//! * ISO/IEC 14496-14 (MP4): the `mp4a` sample entry with its `esds`
//!   carrying the AudioSpecificConfig; audio samples are raw AAC frames.
//! * ISO/IEC 23000-19 (CMAF): `cmfc` brand, one track per file (the
//!   video-only [`init_segment`]; with audio muxed in, the files are plain
//!   ISOBMFF fragments as HLS allows, without the brand), `tfdt` in
//!   every fragment, data offsets relative to the `moof`
//!   (`default-base-is-moof`), no edit lists (composition offsets are signed
//!   instead, `trun` version 1).
//!
//! The track is live: every duration in the init segment is 0 and no `mehd`
//! is written; the fragments say how long the media is.
//!
//! A track's samples follow each other without gaps in decode time (each
//! starts where the previous one's duration ends, §8.8.8 `trun`, with
//! `tfdt` §8.8.12 restating it per fragment), and an AAC frame lasts
//! exactly 1024 ticks of the audio timescale. Frames arrive stamped with a
//! jittery 90 kHz PTS, so [`AudioTimeline`] puts them on a grid of whole
//! frames instead of converting each PTS on its own.
//!
//! Nothing here panics or fails: any bytes make well-formed boxes. Values a
//! box field cannot hold (a sample over 4 GiB, a composition offset beyond
//! ±2^31 ticks) are clamped, which only garbage input can cause.

use alloc::vec::Vec;

use crate::aac::{AudioSpecificConfig, SAMPLES_PER_FRAME};
use crate::h264::{annexb_to_avcc, split_annexb, NalType, ParameterSets};
use crate::time::Ticks90k;

/// Media timescale of the track: 90 kHz, the same clock as MPEG-TS, so
/// timestamps carry over unchanged.
pub const TIMESCALE: u32 = 90_000;

/// `track_ID` of the one video track.
pub const TRACK_ID: u32 = 1;

/// `track_ID` of the audio track of [`init_segment_with_audio`]; its
/// timescale is the sample rate, so AAC frames last exactly 1024 ticks.
pub const AUDIO_TRACK_ID: u32 = 2;

/// `ftyp` brands (§4.3). Major `iso6`: the 14496-12 edition whose features
/// we use (`tfdt`, `trun` v1 signed offsets, `default-base-is-moof`).
/// Compatible: `iso6`, `cmfc` (the CMAF structural brand, required in a CMAF
/// header) and `avc1` (AVC file format, Annex E.3). No CMAF media profile
/// brand (`cfsd`/`cfhd`): those constrain level and VUI in ways the encoder
/// configuration, not this writer, decides.
const MAJOR_BRAND: [u8; 4] = *b"iso6";
const COMPATIBLE_BRANDS: [[u8; 4]; 3] = [*b"iso6", *b"cmfc", *b"avc1"];
/// With an audio track too: the same without `cmfc`, which promises one
/// track per file (ISO/IEC 23000-19 §7.3.1).
const COMPATIBLE_BRANDS_AV: [[u8; 4]; 2] = [*b"iso6", *b"avc1"];
/// An audio-only init segment is a CMAF track of its own.
const COMPATIBLE_BRANDS_AUDIO: [[u8; 4]; 2] = [*b"iso6", *b"cmfc"];

/// The identity transformation matrix of `mvhd`/`tkhd` (§8.2.2.3), 16.16 and
/// 2.30 fixed point.
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `tfhd` flag: data offsets count from the start of the `moof` (§8.8.7.1).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// `trun` flags (§8.8.8.1): data-offset present, then per-sample duration,
/// size, flags and composition time offset.
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_SAMPLE_DURATION: u32 = 0x00_0100;
const TRUN_SAMPLE_SIZE: u32 = 0x00_0200;
const TRUN_SAMPLE_FLAGS: u32 = 0x00_0400;
const TRUN_SAMPLE_CTO: u32 = 0x00_0800;

/// Sample flags (§8.8.3.1) of a sync sample: `sample_depends_on` = 2 (does
/// not depend on others).
const FLAGS_SYNC: u32 = 2 << 24;
/// Sample flags of any other sample: `sample_depends_on` = 1 and
/// `sample_is_non_sync_sample`.
const FLAGS_NON_SYNC: u32 = (1 << 24) | (1 << 16);

/// Init segment (CMAF header): `ftyp` + `moov` for one `avc1` track of the
/// picture size the SPS gives.
///
/// ```text
/// ftyp
/// moov
///   mvhd                       timescale TIMESCALE, duration 0
///   trak
///     tkhd                     enabled|in_movie, width/height 16.16
///     mdia
///       mdhd                   timescale TIMESCALE, language "und"
///       hdlr                   vide
///       minf
///         vmhd
///         dinf/dref/url        self-contained
///         stbl
///           stsd/avc1/avcC
///           stts stsc stsz stco  all empty
///   mvex
///     trex                     sample description 1, other defaults 0
/// ```
pub fn init_segment(ps: &ParameterSets) -> Vec<u8> {
    init(ps, None)
}

/// Init segment with the video track (1) as [`init_segment`] writes it and
/// an AAC audio track ([`AUDIO_TRACK_ID`]) after it, for HLS media that
/// mux both (RFC 8216 §3.3 allows several tracks in fMP4 segments).
///
/// ```text
/// ftyp                         iso6; compatible iso6 avc1 (no cmfc: a
///                              CMAF track file holds one track)
/// moov
///   mvhd                       next_track_ID 3
///   trak                       video, as in init_segment
///   trak
///     tkhd                     track 2, volume 1.0, no size
///     mdia
///       mdhd                   timescale = the sample rate
///       hdlr                   soun
///       minf
///         smhd
///         dinf/dref/url
///         stbl
///           stsd/mp4a/esds     AudioSpecificConfig
///           stts stsc stsz stco  all empty
///   mvex
///     trex                     track 1, as in init_segment
///     trex                     track 2, default flags: sync
/// ```
///
/// `bitrate` (bit/s, 0 if unknown) goes into the `esds` decoder config.
pub fn init_segment_with_audio(
    ps: &ParameterSets,
    audio: &AudioSpecificConfig,
    bitrate: u32,
) -> Vec<u8> {
    init(ps, Some((audio, bitrate)))
}

/// Init segment of an AAC track alone (track [`AUDIO_TRACK_ID`], as in
/// [`init_segment_with_audio`]), for audio kept apart from the video: an
/// HLS audio rendition or a DASH audio `AdaptationSet` over the same
/// fragments, which [`write_av_fragment`] writes with no video.
///
/// ```text
/// ftyp                         iso6; compatible iso6 cmfc (a CMAF track)
/// moov
///   mvhd                       next_track_ID 3
///   trak                       the audio trak of init_segment_with_audio
///   mvex
///     trex                     track 2, default flags: sync
/// ```
pub fn init_segment_audio(audio: &AudioSpecificConfig, bitrate: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    bx(&mut out, b"ftyp", |b| {
        b.extend_from_slice(&MAJOR_BRAND);
        put_u32(b, 0); // minor_version
        for brand in &COMPATIBLE_BRANDS_AUDIO {
            b.extend_from_slice(brand);
        }
    });
    bx(&mut out, b"moov", |b| {
        mvhd(b, AUDIO_TRACK_ID + 1);
        audio_trak(b, audio, bitrate);
        bx(b, b"mvex", |b| trex(b, AUDIO_TRACK_ID, FLAGS_SYNC));
    });
    out
}

fn init(ps: &ParameterSets, audio: Option<(&AudioSpecificConfig, u32)>) -> Vec<u8> {
    let width = ps.info.width.min(0xffff);
    let height = ps.info.height.min(0xffff);
    let mut out = Vec::with_capacity(700 + ps.sps.len() + ps.pps.len());

    bx(&mut out, b"ftyp", |b| {
        b.extend_from_slice(&MAJOR_BRAND);
        put_u32(b, 0); // minor_version
        let brands: &[[u8; 4]] = if audio.is_some() {
            &COMPATIBLE_BRANDS_AV
        } else {
            &COMPATIBLE_BRANDS
        };
        for brand in brands {
            b.extend_from_slice(brand);
        }
    });
    bx(&mut out, b"moov", |b| {
        let last_track = if audio.is_some() {
            AUDIO_TRACK_ID
        } else {
            TRACK_ID
        };
        mvhd(b, last_track + 1);
        bx(b, b"trak", |b| {
            tkhd(b, TRACK_ID, 0, width, height);
            bx(b, b"mdia", |b| {
                mdhd(b, TIMESCALE);
                hdlr(b, b"vide", b"VideoHandler\0");
                bx(b, b"minf", |b| {
                    full_box(b, b"vmhd", 0, 1, |b| {
                        put_u16(b, 0); // graphicsmode: copy
                        b.extend_from_slice(&[0; 6]); // opcolor
                    });
                    dinf(b);
                    stbl(b, |b| avc1(b, ps, width as u16, height as u16));
                });
            });
        });
        if let Some((asc, bitrate)) = audio {
            audio_trak(b, asc, bitrate);
        }
        bx(b, b"mvex", |b| {
            // Every fragment sets all per-sample values, so the defaults
            // matter only for the sample description index.
            trex(b, TRACK_ID, 0);
            if audio.is_some() {
                // Audio fragments leave out sample flags: every AAC frame
                // is a sync sample.
                trex(b, AUDIO_TRACK_ID, FLAGS_SYNC);
            }
        });
    });
    out
}

/// The AAC `trak` (track [`AUDIO_TRACK_ID`]).
fn audio_trak(b: &mut Vec<u8>, asc: &AudioSpecificConfig, bitrate: u32) {
    bx(b, b"trak", |b| {
        tkhd(b, AUDIO_TRACK_ID, 0x0100, 0, 0);
        bx(b, b"mdia", |b| {
            mdhd(b, asc.sample_rate());
            hdlr(b, b"soun", b"SoundHandler\0");
            bx(b, b"minf", |b| {
                // Sound media header (§12.2.2): balance 0 (centre).
                full_box(b, b"smhd", 0, 0, |b| {
                    put_u16(b, 0); // balance
                    put_u16(b, 0); // reserved
                });
                dinf(b);
                stbl(b, |b| mp4a(b, asc, bitrate));
            });
        });
    });
}

/// `dinf` with one self-contained `url ` entry (§8.7.1, §8.7.2).
fn dinf(b: &mut Vec<u8>) {
    bx(b, b"dinf", |b| {
        full_box(b, b"dref", 0, 0, |b| {
            put_u32(b, 1); // entry_count
                           // Flag 1: the media is in this file; no URL.
            full_box(b, b"url ", 0, 1, |_| {});
        });
    });
}

/// `stbl` with one sample entry and empty sample tables: fragmented, the
/// samples are in the fragments (§8.8.1).
fn stbl(b: &mut Vec<u8>, entry: impl FnOnce(&mut Vec<u8>)) {
    bx(b, b"stbl", |b| {
        full_box(b, b"stsd", 0, 0, |b| {
            put_u32(b, 1); // entry_count
            entry(b);
        });
        full_box(b, b"stts", 0, 0, |b| put_u32(b, 0));
        full_box(b, b"stsc", 0, 0, |b| put_u32(b, 0));
        full_box(b, b"stsz", 0, 0, |b| {
            put_u32(b, 0); // sample_size
            put_u32(b, 0); // sample_count
        });
        full_box(b, b"stco", 0, 0, |b| put_u32(b, 0));
    });
}

/// `trex` (§8.8.3): sample description 1, no default duration or size.
fn trex(b: &mut Vec<u8>, track_id: u32, default_flags: u32) {
    full_box(b, b"trex", 0, 0, |b| {
        put_u32(b, track_id);
        put_u32(b, 1); // default_sample_description_index
        put_u32(b, 0); // default_sample_duration
        put_u32(b, 0); // default_sample_size
        put_u32(b, default_flags); // default_sample_flags
    });
}

/// `mvhd` version 0 (§8.2.2).
fn mvhd(b: &mut Vec<u8>, next_track_id: u32) {
    full_box(b, b"mvhd", 0, 0, |b| {
        put_u32(b, 0); // creation_time
        put_u32(b, 0); // modification_time
        put_u32(b, TIMESCALE);
        put_u32(b, 0); // duration: live
        put_u32(b, 0x0001_0000); // rate 1.0
        put_u16(b, 0x0100); // volume 1.0
        b.extend_from_slice(&[0; 2 + 8]); // reserved
        matrix(b);
        b.extend_from_slice(&[0; 24]); // pre_defined
        put_u32(b, next_track_id);
    });
}

/// `tkhd` version 0 (§8.3.2), flags track_enabled | track_in_movie.
/// `volume` is 8.8 (1.0 for audio, 0 for video), the size 16.16.
fn tkhd(b: &mut Vec<u8>, track_id: u32, volume: u16, width: u32, height: u32) {
    full_box(b, b"tkhd", 0, 0x3, |b| {
        put_u32(b, 0); // creation_time
        put_u32(b, 0); // modification_time
        put_u32(b, track_id);
        put_u32(b, 0); // reserved
        put_u32(b, 0); // duration: live
        b.extend_from_slice(&[0; 8]); // reserved
        put_u16(b, 0); // layer
        put_u16(b, 0); // alternate_group
        put_u16(b, volume);
        put_u16(b, 0); // reserved
        matrix(b);
        put_u32(b, width << 16); // 16.16
        put_u32(b, height << 16);
    });
}

/// `mdhd` version 0 (§8.4.2).
fn mdhd(b: &mut Vec<u8>, timescale: u32) {
    full_box(b, b"mdhd", 0, 0, |b| {
        put_u32(b, 0); // creation_time
        put_u32(b, 0); // modification_time
        put_u32(b, timescale);
        put_u32(b, 0); // duration: live
                       // pad bit + ISO 639-2/T "und", three 5-bit letters minus 0x60.
        put_u16(b, (21 << 10) | (14 << 5) | 4);
        put_u16(b, 0); // pre_defined
    });
}

/// `hdlr` (§8.4.3): handler type and its null-terminated name.
fn hdlr(b: &mut Vec<u8>, handler: &[u8; 4], name: &[u8]) {
    full_box(b, b"hdlr", 0, 0, |b| {
        put_u32(b, 0); // pre_defined
        b.extend_from_slice(handler);
        b.extend_from_slice(&[0; 12]); // reserved
        b.extend_from_slice(name);
    });
}

/// `mp4a` sample entry (AudioSampleEntry §12.2.3, MP4AudioSampleEntry
/// ISO/IEC 14496-14 §5.6.1) with its `esds`.
fn mp4a(b: &mut Vec<u8>, asc: &AudioSpecificConfig, bitrate: u32) {
    bx(b, b"mp4a", |b| {
        b.extend_from_slice(&[0; 6]); // SampleEntry reserved
        put_u16(b, 1); // data_reference_index
        b.extend_from_slice(&[0; 8]); // reserved
        put_u16(b, u16::from(asc.channels())); // channelcount
        put_u16(b, 16); // samplesize
        put_u16(b, 0); // pre_defined
        put_u16(b, 0); // reserved
                       // 16.16; rates above 65535 Hz do not fit, and decoders take the
                       // rate from the AudioSpecificConfig anyway.
        let rate = asc.sample_rate();
        put_u32(b, if rate <= 0xffff { rate << 16 } else { 0 });
        esds(b, asc, bitrate);
    });
}

/// `esds` (ISO/IEC 14496-14 §5.6): an ES_Descriptor (ISO/IEC 14496-1
/// §7.2.6.5) holding the DecoderConfigDescriptor (§7.2.6.6: MPEG-4 audio,
/// audio stream) with the AudioSpecificConfig as DecoderSpecificInfo, and
/// the SLConfigDescriptor MP4 files use (predefined 2, §7.2.6.8).
/// Descriptor sizes fit the 1-byte form of the expandable size (§8.3.3).
fn esds(b: &mut Vec<u8>, config: &AudioSpecificConfig, bitrate: u32) {
    let asc = config.to_bytes();
    // An AAC decoder's input buffer: 6144 bits per channel (14496-3 §4.5.3.1).
    let buffer_size = 768 * u32::from(config.channels());
    let [_, buf_hi, buf_mid, buf_lo] = buffer_size.to_be_bytes();
    let dsi_len = 2 + asc.len();
    let dcd_len = 2 + 13 + dsi_len;
    let sl_len = 3;
    full_box(b, b"esds", 0, 0, |b| {
        b.extend_from_slice(&[0x03, (3 + dcd_len + sl_len) as u8]); // ES_DescrTag
        put_u16(b, 0); // ES_ID: 0 as stored (14496-14 §3.1.2)
        b.push(0x00); // no stream dependence, URL or OCR; priority 0
        b.extend_from_slice(&[0x04, (dcd_len - 2) as u8]); // DecoderConfigDescrTag
        b.push(0x40); // objectTypeIndication: Audio ISO/IEC 14496-3
        b.push((0x05 << 2) | 0x01); // streamType audio, upStream 0, reserved 1
        b.extend_from_slice(&[buf_hi, buf_mid, buf_lo]); // bufferSizeDB
        put_u32(b, bitrate); // maxBitrate
        put_u32(b, bitrate); // avgBitrate
        b.extend_from_slice(&[0x05, asc.len() as u8]); // DecSpecificInfoTag
        b.extend_from_slice(&asc);
        b.extend_from_slice(&[0x06, 0x01, 0x02]); // SLConfigDescrTag, predefined 2
    });
}

/// `avc1` sample entry (VisualSampleEntry §12.1.3 + AVCSampleEntry,
/// 14496-15 §5.4.2) with its `avcC`.
fn avc1(b: &mut Vec<u8>, ps: &ParameterSets, width: u16, height: u16) {
    bx(b, b"avc1", |b| {
        b.extend_from_slice(&[0; 6]); // SampleEntry reserved
        put_u16(b, 1); // data_reference_index
        b.extend_from_slice(&[0; 2 + 2 + 12]); // pre_defined, reserved, pre_defined
        put_u16(b, width);
        put_u16(b, height);
        put_u32(b, 0x0048_0000); // horizresolution 72 dpi
        put_u32(b, 0x0048_0000); // vertresolution 72 dpi
        put_u32(b, 0); // reserved
        put_u16(b, 1); // frame_count
        b.extend_from_slice(&[0; 32]); // compressorname: empty
        put_u16(b, 0x0018); // depth: colour, no alpha
        put_u16(b, 0xffff); // pre_defined = -1
        bx(b, b"avcC", |b| {
            b.extend_from_slice(&ps.avc_decoder_configuration_record())
        });
    });
}

fn matrix(b: &mut Vec<u8>) {
    for v in UNITY_MATRIX {
        put_u32(b, v);
    }
}

/// One encoded picture.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Decode time.
    pub dts: Ticks90k,
    /// Presentation time; may be before `dts` (written as a negative offset).
    pub pts: Ticks90k,
    /// Ticks until the next sample's `dts`.
    pub duration: u32,
    /// Whether decoding can start here (an IDR picture).
    pub keyframe: bool,
    /// The access unit, Annex B.
    pub annexb: &'a [u8],
}

/// Appends one movie fragment (`moof` + `mdat`) holding `samples` in decode
/// order, and returns the number of bytes appended.
///
/// ```text
/// moof
///   mfhd     sequence_number
///   traf
///     tfhd   track 1, default-base-is-moof
///     tfdt   version 1: first sample's dts, all 64 bits
///     trun   version 1: data offset, then per sample duration, size,
///            flags (sync or not), signed composition offset pts - dts
/// mdat       the samples as 4-byte-length AVCC, without SPS/PPS/AUD
/// ```
///
/// Empty `samples` writes nothing.
pub fn write_fragment(sequence_number: u32, samples: &[Sample<'_>], out: &mut Vec<u8>) -> usize {
    write_av_fragment(sequence_number, samples, &[], out)
}

/// One AAC frame of the audio track.
#[derive(Debug, Clone, Copy)]
pub struct AudioSample<'a> {
    /// Decode (= presentation) time in the audio timescale, the sample
    /// rate: the number of PCM samples per channel before this frame.
    pub dts: u64,
    /// Ticks until the next frame: 1024 for AAC-LC.
    pub duration: u32,
    /// One raw AAC frame (`raw_data_block`), no ADTS header.
    pub data: &'a [u8],
}

/// Decode times of the frames of the audio track, in its timescale (the
/// sample rate): frame `n` after the anchor (the first frame placed)
/// decodes at the anchor's time plus `n` × [`SAMPLES_PER_FRAME`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTimeline {
    /// Samples per second, at least 1.
    rate: u32,
    anchor: Option<Anchor>,
}

/// Where the timeline is anchored and how far it has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    /// PTS of the frame the timeline was anchored on.
    pts: Ticks90k,
    /// Its decode time in samples.
    samples: u64,
    /// Frames placed after it.
    frames: u64,
}

impl AudioTimeline {
    /// An empty timeline for a track of `sample_rate` Hz (0 is taken as 1).
    pub fn new(sample_rate: u32) -> Self {
        AudioTimeline {
            rate: sample_rate.max(1),
            anchor: None,
        }
    }

    /// Forgets the anchor: the next frame placed starts a new timeline.
    pub fn reset(&mut self) {
        self.anchor = None;
    }

    /// The decode time (in samples) of the frame at `pts`. The first frame
    /// placed anchors the timeline at its PTS in samples, rounded. After
    /// that: the next slot when `pts` is within half a frame of it; `None`
    /// (drop the frame) when it is further back (a repeat, or an audio
    /// clock running slow); when further ahead (frames were dropped), the
    /// slot nearest its time, so the gap is whole frames and the timeline
    /// keeps its phase. Saturates rather than overflows.
    pub fn place(&mut self, pts: Ticks90k) -> Option<u64> {
        let rate = u128::from(self.rate);
        let hz = u128::from(Ticks90k::HZ);
        // One frame on the 90 kHz clock is frame_hz / rate ticks.
        let frame_hz = u128::from(SAMPLES_PER_FRAME) * hz;
        let Some(a) = &mut self.anchor else {
            let samples = (u128::from(pts.0) * rate + hz / 2) / hz;
            let samples = u64::try_from(samples).unwrap_or(u64::MAX);
            self.anchor = Some(Anchor {
                pts,
                samples,
                frames: 0,
            });
            return Some(samples);
        };
        let next = a.frames.saturating_add(1);
        // Both in ticks times the rate, so nothing is rounded.
        let expected = u128::from(next) * frame_hz;
        let since = u128::from(pts.0.saturating_sub(a.pts.0)) * rate;
        if pts < a.pts || since + frame_hz / 2 < expected {
            return None;
        }
        let slot = if since <= expected + frame_hz / 2 {
            next
        } else {
            let nearest = (since + frame_hz / 2) / frame_hz;
            u64::try_from(nearest).unwrap_or(u64::MAX).max(next)
        };
        a.frames = slot;
        Some(
            a.samples
                .saturating_add(slot.saturating_mul(u64::from(SAMPLES_PER_FRAME))),
        )
    }
}

/// Appends one movie fragment with both tracks of
/// [`init_segment_with_audio`] and returns the bytes appended: video as
/// [`write_fragment`] writes it, then a `traf` for track 2, and one `mdat`
/// with the video samples followed by the audio frames.
///
/// ```text
/// moof
///   mfhd
///   traf     video, as in write_fragment (left out if `video` is empty)
///   traf     audio (left out if `audio` is empty)
///     tfhd   track 2, default-base-is-moof
///     tfdt   version 1: first frame's dts, in the audio timescale
///     trun   version 0: data offset, then per frame duration and size
///            (flags from trex: sync)
/// mdat       video samples, then the raw AAC frames
/// ```
///
/// Every part stays independent when its video starts with a keyframe:
/// audio frames never depend on earlier fragments. Both slices empty writes
/// nothing.
pub fn write_av_fragment(
    sequence_number: u32,
    video: &[Sample<'_>],
    audio: &[AudioSample<'_>],
    out: &mut Vec<u8>,
) -> usize {
    if video.is_empty() && audio.is_empty() {
        return 0;
    }
    let start = out.len();
    // Sizes first, so the truns and the mdat header can be written straight
    // out and the data offsets are known before the mdat starts.
    let video_payload: u64 = video.iter().map(|s| avcc_len(s.annexb)).sum();
    let audio_payload: u64 = audio.iter().map(|s| s.data.len() as u64).sum();
    let mdat_payload = video_payload + audio_payload;
    let mdat_header_len = if mdat_payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };

    // (where the trun's data_offset field is, offset of its data in the mdat payload)
    let mut patches: [Option<(usize, u64)>; 2] = [None, None];
    bx(out, b"moof", |b| {
        full_box(b, b"mfhd", 0, 0, |b| put_u32(b, sequence_number));
        if let Some(first) = video.first() {
            bx(b, b"traf", |b| {
                full_box(b, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |b| {
                    put_u32(b, TRACK_ID)
                });
                full_box(b, b"tfdt", 1, 0, |b| put_u64(b, first.dts.0));
                let flags = TRUN_DATA_OFFSET
                    | TRUN_SAMPLE_DURATION
                    | TRUN_SAMPLE_SIZE
                    | TRUN_SAMPLE_FLAGS
                    | TRUN_SAMPLE_CTO;
                full_box(b, b"trun", 1, flags, |b| {
                    put_u32(b, clamp_u32(video.len() as u64));
                    patches[0] = Some((b.len(), 0));
                    put_u32(b, 0); // data_offset, patched below
                    for s in video {
                        put_u32(b, s.duration);
                        put_u32(b, clamp_u32(avcc_len(s.annexb)));
                        put_u32(
                            b,
                            if s.keyframe {
                                FLAGS_SYNC
                            } else {
                                FLAGS_NON_SYNC
                            },
                        );
                        put_u32(b, composition_offset(s) as u32);
                    }
                });
            });
        }
        if let Some(first) = audio.first() {
            bx(b, b"traf", |b| {
                full_box(b, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |b| {
                    put_u32(b, AUDIO_TRACK_ID)
                });
                full_box(b, b"tfdt", 1, 0, |b| put_u64(b, first.dts));
                let flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE;
                full_box(b, b"trun", 0, flags, |b| {
                    put_u32(b, clamp_u32(audio.len() as u64));
                    patches[1] = Some((b.len(), video_payload));
                    put_u32(b, 0); // data_offset, patched below
                    for s in audio {
                        put_u32(b, s.duration);
                        put_u32(b, clamp_u32(s.data.len() as u64));
                    }
                });
            });
        }
    });
    // Each track's first byte sits after the mdat header and what precedes
    // it in the mdat.
    let moof_len = (out.len() - start) as u64;
    for (at, in_mdat) in patches.into_iter().flatten() {
        let offset = i32::try_from(moof_len + mdat_header_len + in_mdat).unwrap_or(i32::MAX);
        if let Some(field) = out.get_mut(at..at + 4) {
            field.copy_from_slice(&offset.to_be_bytes());
        }
    }

    if mdat_header_len == 16 {
        // size 1: the real size follows as a 64-bit largesize (§4.2).
        put_u32(out, 1);
        out.extend_from_slice(b"mdat");
        put_u64(out, mdat_payload + 16);
    } else {
        put_u32(out, (mdat_payload + 8) as u32);
        out.extend_from_slice(b"mdat");
    }
    for s in video {
        annexb_to_avcc(s.annexb, out);
    }
    for s in audio {
        out.extend_from_slice(s.data);
    }
    out.len() - start
}

/// Bytes [`annexb_to_avcc`] appends for `annexb`, without writing them.
fn avcc_len(annexb: &[u8]) -> u64 {
    split_annexb(annexb)
        .filter(|nal| {
            !matches!(
                NalType::of(nal),
                None | Some(NalType::Sps | NalType::Pps | NalType::Aud)
            ) && u32::try_from(nal.len()).is_ok()
        })
        .map(|nal| 4 + nal.len() as u64)
        .sum()
}

/// `pts - dts`, clamped to the signed 32 bits of a `trun` v1 offset.
fn composition_offset(s: &Sample<'_>) -> i32 {
    let d = i128::from(s.pts.0) - i128::from(s.dts.0);
    d.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Writes a box (§4.2): a size placeholder and `fourcc`, then `body`, then
/// patches the size. Boxes other than `mdat` stay far below 4 GiB.
fn bx(out: &mut Vec<u8>, fourcc: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    put_u32(out, 0);
    out.extend_from_slice(fourcc);
    body(out);
    let size = clamp_u32((out.len() - start) as u64);
    if let Some(field) = out.get_mut(start..start + 4) {
        field.copy_from_slice(&size.to_be_bytes());
    }
}

/// Writes a full box (§4.2): a box whose body starts with version and flags.
fn full_box(
    out: &mut Vec<u8>,
    fourcc: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(out, fourcc, |b| {
        put_u32(b, (u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(b);
    });
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// SPS and PPS of a 320x240 stream from our daemon's openh264 encoder
    /// (`roomcast --size 320x240`, first keyframe of an HLS segment):
    /// Constrained Baseline, level 2.1.
    const SPS: [u8; 13] = [
        0x67, 0x42, 0xc0, 0x15, 0x8c, 0x68, 0x14, 0x1f, 0x20, 0x1e, 0x11, 0x08, 0xd4,
    ];
    const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

    fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|c| u8::from_str_radix(core::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for nal in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(nal);
        }
        v
    }

    fn parameter_sets() -> ParameterSets {
        let ps = ParameterSets::from_annexb(&annexb(&[&SPS, &PPS])).unwrap();
        assert_eq!((ps.info.width, ps.info.height), (320, 240));
        ps
    }

    #[test]
    fn init_segment_bytes() {
        let matrix = "00010000 00000000 00000000 00000000 00010000 00000000
                      00000000 00000000 40000000";
        let want = [
            // ftyp, 28 bytes: major iso6, minor 0, compatible iso6 cmfc avc1
            "0000001c 66747970 69736f36 00000000 69736f36 636d6663 61766331",
            // moov, 619 = 8 + mvhd 108 + trak 463 + mvex 40
            "0000026b 6d6f6f76",
            // mvhd v0: times 0, timescale 90000, duration 0, rate 1.0,
            // volume 1.0, reserved
            "0000006c 6d766864 00000000 00000000 00000000 00015f90 00000000
             00010000 0100 0000 00000000 00000000",
            matrix,
            // pre_defined x6, next_track_ID 2
            "00000000 00000000 00000000 00000000 00000000 00000000 00000002",
            // trak, 463 = 8 + tkhd 92 + mdia 363
            "000001cf 7472616b",
            // tkhd v0 flags 3: times 0, track 1, reserved, duration 0,
            // reserved x2, layer, alternate_group, volume, reserved
            "0000005c 746b6864 00000003 00000000 00000000 00000001 00000000
             00000000 00000000 00000000 0000 0000 0000 0000",
            matrix,
            // width 320.0, height 240.0
            "01400000 00f00000",
            // mdia, 363 = 8 + mdhd 32 + hdlr 45 + minf 278
            "0000016b 6d646961",
            // mdhd v0: times 0, timescale 90000, duration 0, "und", pre_defined
            "00000020 6d646864 00000000 00000000 00000000 00015f90 00000000
             55c4 0000",
            // hdlr: pre_defined, "vide", reserved x3, "VideoHandler\0"
            "0000002d 68646c72 00000000 00000000 76696465 00000000 00000000
             00000000 566964656f48616e646c657200",
            // minf, 278 = 8 + vmhd 20 + dinf 36 + stbl 214
            "00000116 6d696e66",
            // vmhd v0 flags 1: graphicsmode, opcolor
            "00000014 766d6864 00000001 0000 000000000000",
            // dinf > dref (1 entry) > "url " flags 1 (self-contained)
            "00000024 64696e66 0000001c 64726566 00000000 00000001
             0000000c 75726c20 00000001",
            // stbl, 214 = 8 + stsd 138 + stts 16 + stsc 16 + stsz 20 + stco 16
            "000000d6 7374626c",
            // stsd: 1 entry
            "0000008a 73747364 00000000 00000001",
            // avc1, 122 = 86 + avcC 36: reserved, data_reference_index 1,
            // pre_defined/reserved, 320x240, 72 dpi x2, reserved,
            // frame_count 1, compressorname (32 zero bytes), depth 24, -1
            "0000007a 61766331 000000000000 0001 0000 0000 00000000 00000000
             00000000 0140 00f0 00480000 00480000 00000000 0001
             00000000000000000000000000000000 00000000000000000000000000000000
             0018 ffff",
            // avcC: version 1, profile 66, compat c0, level 21, 4-byte lengths,
            // 1 SPS (13 bytes), 1 PPS (4 bytes)
            "00000024 61766343 01 42c015 ff e1 000d 6742c0158c68141f201e1108d4
             01 0004 68ce3c80",
            // stts, stsc, stsz, stco: empty
            "00000010 73747473 00000000 00000000",
            "00000010 73747363 00000000 00000000",
            "00000014 7374737a 00000000 00000000 00000000",
            "00000010 7374636f 00000000 00000000",
            // mvex > trex: track 1, description 1, other defaults 0
            "00000028 6d766578 00000020 74726578 00000000 00000001 00000001
             00000000 00000000 00000000",
        ];
        let want = hex(&want.concat());
        let got = init_segment(&parameter_sets());
        assert_eq!(got.len(), 28 + 619);
        assert_eq!(got, want);
    }

    /// A keyframe as our encoder emits it (AUD, SPS, PPS, IDR slice cut
    /// short) and a P frame, Annex B.
    fn key_and_p() -> (Vec<u8>, Vec<u8>) {
        let idr: &[u8] = &[0x65, 0xb8, 0x00, 0x02, 0x02, 0x7f];
        let p: &[u8] = &[0x41, 0x9a, 0x02, 0x1c];
        (
            annexb(&[&[0x09, 0xf0], &SPS, &PPS, idr]),
            annexb(&[&[0x09, 0xf0], p]),
        )
    }

    /// The two as samples at 1 s, the P frame displayed first (CTS -3000).
    fn key_and_p_samples<'a>(key: &'a [u8], p_au: &'a [u8]) -> [Sample<'a>; 2] {
        [
            Sample {
                dts: Ticks90k(90_000),
                pts: Ticks90k(93_000),
                duration: 3000,
                keyframe: true,
                annexb: key,
            },
            Sample {
                dts: Ticks90k(93_000),
                pts: Ticks90k(90_000),
                duration: 3000,
                keyframe: false,
                annexb: p_au,
            },
        ]
    }

    #[test]
    fn fragment_of_keyframe_and_p_frame() {
        // Keyframe as our encoder emits it: AUD, SPS, PPS, IDR slice (cut short).
        let (key, p_au) = key_and_p();
        let samples = key_and_p_samples(&key, &p_au);
        let want = hex(&[
            // moof, 120 = 8 + mfhd 16 + traf 96
            "00000078 6d6f6f66",
            // mfhd: sequence_number 7
            "00000010 6d666864 00000000 00000007",
            // traf, 96 = 8 + tfhd 16 + tfdt 20 + trun 52
            "00000060 74726166",
            // tfhd flags 020000 (default-base-is-moof), track 1
            "00000010 74666864 00020000 00000001",
            // tfdt v1: baseMediaDecodeTime 90000
            "00000014 74666474 01000000 00000000 00015f90",
            // trun v1 flags 000f01: 2 samples, data_offset 128 = moof 120 + mdat header 8
            "00000034 7472756e 01000f01 00000002 00000080",
            // sample 1: duration 3000, size 10, sync (depends_on 2), offset +3000
            "00000bb8 0000000a 02000000 00000bb8",
            // sample 2: duration 3000, size 8, non-sync (depends_on 1), offset -3000
            "00000bb8 00000008 01010000 fffff448",
            // mdat, 8 + 10 + 8; SPS, PPS and AUDs dropped
            "0000001a 6d646174",
            "00000006 65b80002027f",
            "00000004 419a021c",
        ]
        .concat());
        let mut out = vec![0xaa]; // appends after what is there
        let n = write_fragment(7, &samples, &mut out);
        assert_eq!(n, want.len());
        assert_eq!(out[0], 0xaa);
        assert_eq!(&out[1..], &want[..]);
        // data_offset points at the first sample's length prefix.
        assert_eq!(&want[128..133], &[0, 0, 0, 6, 0x65]);
    }

    #[test]
    fn init_segment_with_audio_bytes() {
        let video_only = init_segment(&parameter_sets());
        // The video trak as init_segment writes it (checked byte by byte above).
        let video_trak = &video_only[28 + 8 + 108..28 + 8 + 108 + 463];
        let matrix = "00010000 00000000 00000000 00000000 00010000 00000000
                      00000000 00000000 40000000";
        let mut want = hex(&[
            // ftyp, 24 bytes: major iso6, minor 0, compatible iso6 avc1
            "00000018 66747970 69736f36 00000000 69736f36 61766331",
            // moov, 1063 = 8 + mvhd 108 + video trak 463 + audio trak 412 + mvex 72
            "00000427 6d6f6f76",
            "0000006c 6d766864 00000000 00000000 00000000 00015f90 00000000
             00010000 0100 0000 00000000 00000000",
            matrix,
            // pre_defined x6, next_track_ID 3
            "00000000 00000000 00000000 00000000 00000000 00000000 00000003",
        ]
        .concat());
        want.extend_from_slice(video_trak);
        want.extend(hex(&[
            // trak, 412 = 8 + tkhd 92 + mdia 312
            "0000019c 7472616b",
            // tkhd v0 flags 3: track 2, volume 1.0
            "0000005c 746b6864 00000003 00000000 00000000 00000002 00000000
             00000000 00000000 00000000 0000 0000 0100 0000",
            matrix,
            // no width or height
            "00000000 00000000",
            // mdia, 312 = 8 + mdhd 32 + hdlr 45 + minf 227
            "00000138 6d646961",
            // mdhd: timescale 48000, "und"
            "00000020 6d646864 00000000 00000000 00000000 0000bb80 00000000
             55c4 0000",
            // hdlr: "soun", "SoundHandler\0"
            "0000002d 68646c72 00000000 00000000 736f756e 00000000 00000000
             00000000 536f756e6448616e646c657200",
            // minf, 227 = 8 + smhd 16 + dinf 36 + stbl 167
            "000000e3 6d696e66",
            // smhd: balance 0, reserved
            "00000010 736d6864 00000000 0000 0000",
            "00000024 64696e66 0000001c 64726566 00000000 00000001
             0000000c 75726c20 00000001",
            // stbl, 167 = 8 + stsd 91 + 68 of empty tables
            "000000a7 7374626c",
            "0000005b 73747364 00000000 00000001",
            // mp4a, 75 = 36 + esds 39: reserved, data_reference_index 1,
            // reserved, 2 channels, 16 bits, pre_defined, reserved, 48000.0
            "0000004b 6d703461 000000000000 0001 00000000 00000000
             0002 0010 0000 0000 bb800000",
            // esds v0: ES_Descriptor (tag 3, 25 bytes): ES_ID 0, flags 0;
            // DecoderConfigDescriptor (tag 4, 17 bytes): MPEG-4 audio (0x40),
            // audio stream (0x15), buffer 1536, max and avg 128000 bit/s;
            // DecoderSpecificInfo (tag 5, 2 bytes): ASC 11 90;
            // SLConfigDescriptor (tag 6, 1 byte): predefined 2
            "00000027 65736473 00000000 03 19 0000 00
             04 11 40 15 000600 0001f400 0001f400
             05 02 1190
             06 01 02",
            "00000010 73747473 00000000 00000000",
            "00000010 73747363 00000000 00000000",
            "00000014 7374737a 00000000 00000000 00000000",
            "00000010 7374636f 00000000 00000000",
            // mvex, 72: trex track 1 as before, trex track 2 with sync flags
            "00000048 6d766578",
            "00000020 74726578 00000000 00000001 00000001
             00000000 00000000 00000000",
            "00000020 74726578 00000000 00000002 00000001
             00000000 00000000 02000000",
        ]
        .concat()));
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        let got = init_segment_with_audio(&parameter_sets(), &asc, 128_000);
        assert_eq!(got.len(), 24 + 1063);
        assert_eq!(got, want);

        // Mono at 96 kHz: one channel, and a rate 16.16 cannot hold.
        let hi = AudioSpecificConfig::lc(96_000, 1).unwrap();
        let got = init_segment_with_audio(&parameter_sets(), &hi, 0);
        let mp4a = got.windows(4).position(|w| w == b"mp4a").unwrap();
        assert_eq!(
            &got[mp4a + 20..mp4a + 32],
            &hex("0001 0010 0000 0000 00000000")
        );
        let esds = got.windows(4).position(|w| w == b"esds").unwrap();
        assert_eq!(&got[esds + 17..esds + 20], &hex("000300"));
        assert_eq!(&got[esds + 30..esds + 32], &hi.to_bytes());
    }

    #[test]
    fn audio_only_init_segment_bytes() {
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        let av = init_segment_with_audio(&parameter_sets(), &asc, 128_000);
        // In the AV init: ftyp 24, moov header 8, mvhd 108, video trak 463,
        // audio trak 412, mvex 72.
        let mvhd = &av[24 + 8..24 + 8 + 108];
        let audio_trak = &av[24 + 8 + 108 + 463..][..412];
        let mut want = hex(&[
            // ftyp, 24 bytes: major iso6, minor 0, compatible iso6 cmfc
            "00000018 66747970 69736f36 00000000 69736f36 636d6663",
            // moov, 568 = 8 + mvhd 108 + audio trak 412 + mvex 40
            "00000238 6d6f6f76",
        ]
        .concat());
        want.extend_from_slice(mvhd);
        want.extend_from_slice(audio_trak);
        want.extend(hex(&[
            // mvex, 40 = 8 + trex 32: track 2, description 1, flags sync
            "00000028 6d766578",
            "00000020 74726578 00000000 00000002 00000001 00000000 00000000 02000000",
        ]
        .concat()));
        assert_eq!(init_segment_audio(&asc, 128_000), want);
        // next_track_ID 3, as in the AV init.
        assert_eq!(&mvhd[mvhd.len() - 4..], &[0, 0, 0, 3]);
    }

    #[test]
    fn fragment_with_audio() {
        let (key, p_au) = key_and_p();
        let video = key_and_p_samples(&key, &p_au);
        let audio = [
            AudioSample {
                dts: 48_000,
                duration: 1024,
                data: &[0x21, 0x10, 0x04],
            },
            AudioSample {
                dts: 49_024,
                duration: 1024,
                data: &[0xde, 0xad],
            },
        ];
        let want = hex(&[
            // moof, 200 = 8 + mfhd 16 + video traf 96 + audio traf 80
            "000000c8 6d6f6f66",
            "00000010 6d666864 00000000 00000007",
            // video traf as write_fragment writes it, data_offset 208 = 200 + 8
            "00000060 74726166",
            "00000010 74666864 00020000 00000001",
            "00000014 74666474 01000000 00000000 00015f90",
            "00000034 7472756e 01000f01 00000002 000000d0",
            "00000bb8 0000000a 02000000 00000bb8",
            "00000bb8 00000008 01010000 fffff448",
            // audio traf, 80 = 8 + tfhd 16 + tfdt 20 + trun 36
            "00000050 74726166",
            // tfhd: default-base-is-moof, track 2
            "00000010 74666864 00020000 00000002",
            // tfdt v1: 48000 in the audio timescale
            "00000014 74666474 01000000 00000000 0000bb80",
            // trun v0 flags 000301: 2 frames, data_offset 226 = 208 + 18 of video
            "00000024 7472756e 00000301 00000002 000000e2",
            "00000400 00000003",
            "00000400 00000002",
            // mdat, 8 + 18 + 5
            "0000001f 6d646174",
            "00000006 65b80002027f",
            "00000004 419a021c",
            "211004 dead",
        ]
        .concat());
        let mut out = Vec::new();
        let n = write_av_fragment(7, &video, &audio, &mut out);
        assert_eq!(n, want.len());
        assert_eq!(out, want);
        assert_eq!(&want[226..229], &[0x21, 0x10, 0x04]);

        // Without audio it is write_fragment's output.
        let mut v = Vec::new();
        write_fragment(7, &video, &mut v);
        let mut av = Vec::new();
        write_av_fragment(7, &video, &[], &mut av);
        assert_eq!(av, v);

        // Audio only: the audio traf alone, data at 104 + 8.
        let mut a = Vec::new();
        let n = write_av_fragment(1, &[], &audio, &mut a);
        assert_eq!(n, 104 + 13);
        assert_eq!(&a[..8], &hex("00000068 6d6f6f66")[..]);
        assert_eq!(&a[24..32], &hex("00000050 74726166")[..]);
        assert_eq!(&a[84..88], &112u32.to_be_bytes());
        assert_eq!(&a[112..], &[0x21, 0x10, 0x04, 0xde, 0xad]);
        let mut none = vec![1];
        assert_eq!(write_av_fragment(1, &[], &[], &mut none), 0);
        assert_eq!(none, [1]);
    }

    #[test]
    fn tfdt_is_full_64_bit() {
        let au = annexb(&[&[0x41, 0x9a]]);
        let s = Sample {
            dts: Ticks90k((1 << 33) + 5),
            pts: Ticks90k((1 << 33) + 5),
            duration: 3000,
            keyframe: false,
            annexb: &au,
        };
        let mut out = Vec::new();
        write_fragment(1, &[s], &mut out);
        let tfdt = hex("00000014 74666474 01000000 00000002 00000005");
        assert!(out.windows(tfdt.len()).any(|w| w == tfdt));
    }

    #[test]
    fn empty_writes_nothing() {
        let mut out = vec![1, 2];
        assert_eq!(write_fragment(1, &[], &mut out), 0);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn odd_input_still_tiles() {
        // A sample with no NAL units at all, and far-apart timestamps.
        let samples = [
            Sample {
                dts: Ticks90k(u64::MAX),
                pts: Ticks90k(0),
                duration: u32::MAX,
                keyframe: true,
                annexb: &[],
            },
            Sample {
                dts: Ticks90k(0),
                pts: Ticks90k(u64::MAX),
                duration: 0,
                keyframe: false,
                annexb: &[0, 0, 1],
            },
        ];
        let mut out = Vec::new();
        let n = write_fragment(0, &samples, &mut out);
        assert_eq!(n, out.len());
        let moof = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(&out[moof..], &hex("00000008 6d646174")[..]);
        // Offsets clamped to i32.
        let trun = &out[moof - 2 * 16..];
        assert_eq!(&trun[12..16], &i32::MIN.to_be_bytes());
        assert_eq!(&trun[28..32], &i32::MAX.to_be_bytes());
    }

    #[test]
    fn avcc_len_matches_conversion() {
        for au in [
            annexb(&[&[0x09, 0xf0], &SPS, &PPS, &[0x65, 1, 2, 0, 0]]),
            vec![0, 0, 1, 0x80, 0, 0, 0, 1, 0x41, 0, 0, 3],
            vec![7, 0, 0, 1],
            vec![],
        ] {
            let mut v = Vec::new();
            assert_eq!(avcc_len(&au), annexb_to_avcc(&au, &mut v) as u64);
        }
    }

    #[test]
    fn audio_timeline_places_frames_on_whole_frame_slots() {
        // 48 kHz: a frame is 1920 ticks exactly.
        let mut t = AudioTimeline::new(48_000);
        let at = |ticks: u64| Ticks90k(90_000 + ticks);
        assert_eq!(t.place(at(0)), Some(48_000));
        assert_eq!(t.place(at(1920)), Some(49_024));
        // Late by less than half a frame: still the next slot.
        assert_eq!(t.place(at(3840 + 900)), Some(50_048));
        // A repeat of slot 2's time, and a time before the anchor: dropped.
        assert_eq!(t.place(at(3840)), None);
        assert_eq!(t.place(Ticks90k(80_000)), None);
        // Early by just under half a frame (960 ticks): the next slot.
        assert_eq!(t.place(at(5760 - 959)), Some(51_072));
        // Frames 4..=6 went missing: the slot nearest the time, 7.
        assert_eq!(t.place(at(7 * 1920 + 500)), Some(55_168));
        assert_eq!(t.place(at(8 * 1920)), Some(56_192));
        // Back to the start: a new anchor at the next frame's time.
        t.reset();
        assert_eq!(t.place(Ticks90k(1_000_000)), Some(533_333));
        assert_eq!(t.place(Ticks90k(1_001_920)), Some(534_357));
    }

    #[test]
    fn audio_timeline_does_not_drift_at_44_1_khz() {
        // 1024 samples at 44.1 kHz are 2089.8 ticks: PTS rounded to ticks
        // still land on consecutive slots.
        let mut t = AudioTimeline::new(44_100);
        assert_eq!(t.place(Ticks90k(0)), Some(0));
        for n in 1..10_000u64 {
            let pts = (n * 1024 * 90_000 + 22_050) / 44_100;
            assert_eq!(t.place(Ticks90k(pts)), Some(n * 1024), "frame {n}");
        }
        // The anchor's PTS in samples, rounded to nearest.
        assert_eq!(AudioTimeline::new(44_100).place(Ticks90k(1)), Some(0));
        assert_eq!(AudioTimeline::new(44_100).place(Ticks90k(2)), Some(1));
    }

    #[test]
    fn audio_timeline_extremes_do_not_panic() {
        // Rate 0 is taken as 1 Hz.
        let mut t = AudioTimeline::new(0);
        assert_eq!(t.place(Ticks90k(90_000)), Some(1));
        assert_eq!(t.place(Ticks90k(90_000 + 1024 * 90_000)), Some(1025));
        let mut t = AudioTimeline::new(u32::MAX);
        assert_eq!(t.place(Ticks90k(u64::MAX)), Some(u64::MAX));
        assert_eq!(t.place(Ticks90k(u64::MAX)), None);
        let mut t = AudioTimeline::new(u32::MAX);
        assert_eq!(t.place(Ticks90k(0)), Some(0));
        assert_eq!(t.place(Ticks90k(u64::MAX)), Some(u64::MAX));
        assert_eq!(t.place(Ticks90k(u64::MAX)), Some(u64::MAX));
    }
}
