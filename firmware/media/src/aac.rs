//! AAC configuration and ADTS framing (ISO/IEC 14496-3).
//!
//! Each container carries AAC differently, and this module is the one place
//! that knows the bits:
//!
//! * [`AudioSpecificConfig`] (§1.6.2.1, with `GASpecificConfig` §4.4.1): the
//!   two bytes FLV sends as the AAC sequence header and MP4 puts in `esds`;
//! * ADTS (§1.A.2.2, tables 1.A.5–1.A.11): the 7-byte header in front of every
//!   frame in MPEG-TS (`stream_type` 0x0F) and in `.aac` files. FLV and MP4
//!   carry the raw frames without it.
//!
//! Only what a live AAC-LC encoder produces is supported: audio object types
//! 1–4 (the ones ADTS can signal), a sampling frequency from table 1.18,
//! channel configurations 1–7 (no program config element) and 1024-sample
//! frames. Parsing never panics; anything else is an [`AacError`].

use alloc::vec::Vec;

use crate::time::Ticks90k;

/// PCM samples per channel in one AAC-LC frame (`frameLengthFlag` 0).
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// `audioObjectType` 2: AAC LC (§1.5.1.1, table 1.1).
pub const AOT_AAC_LC: u8 = 2;

/// Bytes of an ADTS header without CRC (`protection_absent` = 1).
pub const ADTS_HEADER_LEN: usize = 7;

/// Largest ADTS frame: `aac_frame_length` is 13 bits and counts the header.
pub const MAX_ADTS_FRAME_LEN: usize = 0x1fff;

/// `samplingFrequencyIndex` → Hz (§1.6.3.4, table 1.18); 13 and 14 are
/// reserved, 15 means an explicit 24-bit frequency (not supported here).
pub const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Why AAC configuration or framing bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    #[error("AAC data is truncated")]
    Truncated,
    #[error("audio object type {0} is not supported (AAC Main, LC, SSR or LTP only)")]
    UnsupportedObjectType(u8),
    #[error("sample rate {0} Hz has no AAC sampling frequency index")]
    UnsupportedSampleRate(u32),
    #[error("sampling frequency index {0} is reserved or explicit")]
    BadSamplingIndex(u8),
    #[error("channel configuration {0} is not supported (1..=7 only)")]
    UnsupportedChannels(u8),
    #[error("960-sample frames and core coder delays are not supported")]
    UnsupportedFrameLayout,
    #[error("no ADTS syncword")]
    NoSync,
    #[error("ADTS layer is not 0")]
    BadLayer,
    #[error("ADTS frame length {0} is shorter than its header")]
    BadFrameLength(u16),
    #[error("AAC frame of {0} bytes does not fit an ADTS frame")]
    FrameTooLong(usize),
}

/// The decoder configuration of an AAC stream (§1.6.2.1): object type,
/// sampling frequency index and channel configuration. Always holds values
/// ADTS can carry, so every method is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioSpecificConfig {
    object_type: u8,
    sampling_index: u8,
    channel_config: u8,
}

impl AudioSpecificConfig {
    /// AAC-LC at `sample_rate` Hz (one of [`SAMPLE_RATES`]) with `channels`
    /// channels: 1–6 map to the same `channelConfiguration`, 8 to 7 (7.1),
    /// table 1.19.
    pub fn lc(sample_rate: u32, channels: u8) -> Result<Self, AacError> {
        let index = SAMPLE_RATES
            .iter()
            .position(|&r| r == sample_rate)
            .ok_or(AacError::UnsupportedSampleRate(sample_rate))?;
        let config = match channels {
            1..=6 => channels,
            8 => 7,
            _ => return Err(AacError::UnsupportedChannels(channels)),
        };
        Self::new(AOT_AAC_LC, index as u8, config)
    }

    /// From the three fields as they appear in the bitstream.
    pub fn new(object_type: u8, sampling_index: u8, channel_config: u8) -> Result<Self, AacError> {
        if !(1..=4).contains(&object_type) {
            return Err(AacError::UnsupportedObjectType(object_type));
        }
        if usize::from(sampling_index) >= SAMPLE_RATES.len() {
            return Err(AacError::BadSamplingIndex(sampling_index));
        }
        if !(1..=7).contains(&channel_config) {
            return Err(AacError::UnsupportedChannels(channel_config));
        }
        Ok(AudioSpecificConfig {
            object_type,
            sampling_index,
            channel_config,
        })
    }

    /// `audioObjectType` (2 for AAC-LC).
    pub fn object_type(&self) -> u8 {
        self.object_type
    }

    /// `samplingFrequencyIndex`, 0..=12.
    pub fn sampling_index(&self) -> u8 {
        self.sampling_index
    }

    /// `channelConfiguration`, 1..=7.
    pub fn channel_config(&self) -> u8 {
        self.channel_config
    }

    /// Sampling frequency in Hz.
    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATES
            .get(usize::from(self.sampling_index))
            .copied()
            .unwrap_or(0)
    }

    /// Number of output channels (configuration 7 is 7.1: 8 channels).
    pub fn channels(&self) -> u8 {
        if self.channel_config == 7 {
            8
        } else {
            self.channel_config
        }
    }

    /// The 2-byte AudioSpecificConfig: `audioObjectType` (5 bits),
    /// `samplingFrequencyIndex` (4), `channelConfiguration` (4), then the
    /// `GASpecificConfig` flags `frameLengthFlag`, `dependsOnCoreCoder` and
    /// `extensionFlag`, all 0. 48 kHz stereo LC is `11 90`.
    pub fn to_bytes(&self) -> [u8; 2] {
        let bits: u16 = (u16::from(self.object_type) << 11)
            | (u16::from(self.sampling_index) << 7)
            | (u16::from(self.channel_config) << 3);
        bits.to_be_bytes()
    }

    /// Reads an AudioSpecificConfig. Bytes after the `GASpecificConfig`
    /// (e.g. a backward-compatible SBR sync extension) are ignored: they do
    /// not change how the AAC core decodes.
    pub fn parse(bytes: &[u8]) -> Result<Self, AacError> {
        let (&b0, rest) = bytes.split_first().ok_or(AacError::Truncated)?;
        let &b1 = rest.first().ok_or(AacError::Truncated)?;
        let bits = u16::from_be_bytes([b0, b1]);
        let object_type = (bits >> 11) as u8;
        // 31 is the escape to a 6-bit extension; none of those are AAC-LC.
        if !(1..=4).contains(&object_type) {
            return Err(AacError::UnsupportedObjectType(object_type));
        }
        let sampling_index = ((bits >> 7) & 0x0f) as u8;
        if sampling_index == 0x0f {
            return Err(AacError::BadSamplingIndex(sampling_index));
        }
        let channel_config = ((bits >> 3) & 0x0f) as u8;
        // frameLengthFlag (960 samples) and dependsOnCoreCoder.
        if bits & 0b110 != 0 {
            return Err(AacError::UnsupportedFrameLayout);
        }
        Self::new(object_type, sampling_index, channel_config)
    }

    /// Media time of `samples` PCM samples (per channel) on the 90 kHz
    /// clock, rounded down: how an audio capture clock maps onto PTS.
    pub fn samples_to_ticks(&self, samples: u64) -> Ticks90k {
        let rate = u128::from(self.sample_rate().max(1));
        let t = u128::from(samples) * u128::from(Ticks90k::HZ) / rate;
        Ticks90k(u64::try_from(t).unwrap_or(u64::MAX))
    }

    /// The ADTS header (§1.A.2.2.1) for a frame whose raw data block is
    /// `raw_len` bytes: MPEG-4 (`ID` 0), layer 0, no CRC, `profile` =
    /// object type − 1, not private/original/home, no copyright bits,
    /// `aac_frame_length` = 7 + `raw_len`, `adts_buffer_fullness` 0x7FF
    /// (variable rate) and one raw data block.
    pub fn adts_header(&self, raw_len: usize) -> Result<[u8; ADTS_HEADER_LEN], AacError> {
        let len = raw_len
            .checked_add(ADTS_HEADER_LEN)
            .filter(|&l| l <= MAX_ADTS_FRAME_LEN)
            .ok_or(AacError::FrameTooLong(raw_len))?;
        let fullness: usize = 0x7ff;
        let ch = self.channel_config;
        Ok([
            0xff,
            0xf1, // syncword low nibble, ID 0, layer 00, protection_absent 1
            ((self.object_type - 1) << 6) | (self.sampling_index << 2) | (ch >> 2),
            ((ch & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | (fullness >> 6) as u8,
            ((fullness & 0x3f) << 2) as u8, // number_of_raw_data_blocks_in_frame 0
        ])
    }

    /// Appends the ADTS header and `raw` (one raw data block) to `out`.
    pub fn write_adts(&self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), AacError> {
        out.extend_from_slice(&self.adts_header(raw.len())?);
        out.extend_from_slice(raw);
        Ok(())
    }
}

/// A parsed ADTS header (§1.A.2.2.1, §1.A.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Object type, sampling frequency and channels, as an ASC would say.
    pub config: AudioSpecificConfig,
    /// `ID` 1: the stream says MPEG-2 AAC rather than MPEG-4; decoding is
    /// the same for LC.
    pub mpeg2: bool,
    /// Whether a CRC follows the fixed and variable headers.
    pub has_crc: bool,
    /// `aac_frame_length`: the whole frame, header included.
    pub frame_len: u16,
    /// `adts_buffer_fullness` (0x7FF: variable rate).
    pub buffer_fullness: u16,
    /// Raw data blocks in the frame (`number_of_raw_data_blocks_in_frame` + 1).
    pub raw_blocks: u8,
}

impl AdtsHeader {
    /// Parses the header at the start of `bytes` (at least 7 bytes, 9 with
    /// CRC). The frame itself may extend past `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, AacError> {
        let h: [u8; ADTS_HEADER_LEN] = bytes
            .get(..ADTS_HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(AacError::Truncated)?;
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(AacError::NoSync);
        }
        if h[1] & 0x06 != 0 {
            return Err(AacError::BadLayer);
        }
        let has_crc = h[1] & 0x01 == 0;
        let config = AudioSpecificConfig::new(
            (h[2] >> 6) + 1,
            (h[2] >> 2) & 0x0f,
            ((h[2] & 1) << 2) | (h[3] >> 6),
        )?;
        let frame_len =
            (u16::from(h[3] & 0x03) << 11) | (u16::from(h[4]) << 3) | u16::from(h[5] >> 5);
        let raw_blocks = (h[6] & 0x03) + 1;
        let header = AdtsHeader {
            config,
            mpeg2: h[1] & 0x08 != 0,
            has_crc,
            frame_len,
            buffer_fullness: (u16::from(h[5] & 0x1f) << 6) | u16::from(h[6] >> 2),
            raw_blocks,
        };
        if usize::from(frame_len) < header.header_len() {
            return Err(AacError::BadFrameLength(frame_len));
        }
        if bytes.len() < header.header_len() {
            return Err(AacError::Truncated);
        }
        Ok(header)
    }

    /// Bytes before the first raw data block: 7, or with CRC 9 plus the
    /// `raw_data_block_position` table of multi-block frames (§1.A.2.2.3).
    pub fn header_len(&self) -> usize {
        if self.has_crc {
            ADTS_HEADER_LEN + 2 * usize::from(self.raw_blocks)
        } else {
            ADTS_HEADER_LEN
        }
    }
}

/// One ADTS frame found by [`AdtsFrames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    pub header: AdtsHeader,
    /// The whole frame, header included (what MPEG-TS carries).
    pub frame: &'a [u8],
    /// The bytes after the header (what FLV and MP4 carry): one raw data
    /// block when `header.raw_blocks` is 1.
    pub payload: &'a [u8],
}

/// Splits a buffer of back-to-back ADTS frames. Yields an error and stops
/// at the first byte that does not start a whole, valid frame, so a caller
/// knows the rest was not used.
#[derive(Debug, Clone)]
pub struct AdtsFrames<'a> {
    rest: &'a [u8],
}

/// Iterates over the ADTS frames in `bytes`.
pub fn adts_frames(bytes: &[u8]) -> AdtsFrames<'_> {
    AdtsFrames { rest: bytes }
}

impl<'a> Iterator for AdtsFrames<'a> {
    type Item = Result<AdtsFrame<'a>, AacError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = AdtsHeader::parse(self.rest).and_then(|header| {
            let frame = self
                .rest
                .get(..usize::from(header.frame_len))
                .ok_or(AacError::Truncated)?;
            let payload = frame.get(header.header_len()..).unwrap_or(&[]);
            Ok(AdtsFrame {
                header,
                frame,
                payload,
            })
        });
        match parsed {
            Ok(f) => {
                self.rest = self.rest.get(f.frame.len()..).unwrap_or(&[]);
                Some(Ok(f))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn asc_bytes_by_hand() {
        // 00010 0011 0010 000: LC, 48 kHz (index 3), stereo.
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        assert_eq!(asc.to_bytes(), [0x11, 0x90]);
        // 00010 0100 0010 000: LC, 44.1 kHz (index 4), stereo.
        assert_eq!(
            AudioSpecificConfig::lc(44_100, 2).unwrap().to_bytes(),
            [0x12, 0x10]
        );
        // 00010 0011 0001 000: LC, 48 kHz, mono.
        assert_eq!(
            AudioSpecificConfig::lc(48_000, 1).unwrap().to_bytes(),
            [0x11, 0x88]
        );
        // 00010 1011 0001 000: LC, 8 kHz (index 11), mono.
        assert_eq!(
            AudioSpecificConfig::lc(8_000, 1).unwrap().to_bytes(),
            [0x15, 0x88]
        );
        // 7.1 is configuration 7: 00010 0011 0111 000.
        let surround = AudioSpecificConfig::lc(48_000, 8).unwrap();
        assert_eq!(surround.to_bytes(), [0x11, 0xb8]);
        assert_eq!((surround.channel_config(), surround.channels()), (7, 8));
        assert_eq!(
            AudioSpecificConfig::lc(47_999, 2),
            Err(AacError::UnsupportedSampleRate(47_999))
        );
        assert_eq!(
            AudioSpecificConfig::lc(48_000, 7),
            Err(AacError::UnsupportedChannels(7))
        );
        assert_eq!(
            AudioSpecificConfig::lc(48_000, 0),
            Err(AacError::UnsupportedChannels(0))
        );
    }

    #[test]
    fn asc_parse() {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(asc.object_type(), 2);
        assert_eq!(asc.sample_rate(), 48_000);
        assert_eq!(asc.channels(), 2);
        // FFmpeg's encoder may append the SBR sync extension 0x2B7: ignored.
        assert_eq!(
            AudioSpecificConfig::parse(&[0x12, 0x10, 0x56, 0xe5, 0x00]).unwrap(),
            AudioSpecificConfig::lc(44_100, 2).unwrap()
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x11]),
            Err(AacError::Truncated)
        );
        assert_eq!(AudioSpecificConfig::parse(&[]), Err(AacError::Truncated));
        // HE-AAC (5), escape (31), null (0).
        assert_eq!(
            AudioSpecificConfig::parse(&[0x2b, 0x90]),
            Err(AacError::UnsupportedObjectType(5))
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0xf8, 0x00]),
            Err(AacError::UnsupportedObjectType(31))
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x00, 0x00]),
            Err(AacError::UnsupportedObjectType(0))
        );
        // Explicit frequency, reserved index 13, PCE-defined channels.
        assert_eq!(
            AudioSpecificConfig::parse(&[0x17, 0x80, 0, 0, 0]),
            Err(AacError::BadSamplingIndex(15))
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x90]),
            Err(AacError::BadSamplingIndex(13))
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x11, 0x80]),
            Err(AacError::UnsupportedChannels(0))
        );
        // frameLengthFlag (960) and dependsOnCoreCoder.
        assert_eq!(
            AudioSpecificConfig::parse(&[0x11, 0x94]),
            Err(AacError::UnsupportedFrameLayout)
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x11, 0x92]),
            Err(AacError::UnsupportedFrameLayout)
        );
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                if let Ok(a) = AudioSpecificConfig::parse(&[b0, b1]) {
                    assert_eq!(a.to_bytes(), [b0, b1 & 0xf8]);
                }
            }
        }
    }

    #[test]
    fn adts_header_by_hand() {
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        // Frame of 7 + 371 = 378 = 0b00_0001_0111_1010 bytes.
        // FFF 0 00 1 | 01 0011 0 0 | 10 0 0 0 0 00 | 0010_1111 | 010 11111 | 111111 00
        assert_eq!(
            asc.adts_header(371).unwrap(),
            [0xff, 0xf1, 0x4c, 0x80, 0x2f, 0x5f, 0xfc]
        );
        // 44.1 kHz mono, 7 + 8184 = 8191 bytes: the largest frame.
        let mono = AudioSpecificConfig::lc(44_100, 1).unwrap();
        assert_eq!(
            mono.adts_header(8184).unwrap(),
            [0xff, 0xf1, 0x50, 0x43, 0xff, 0xff, 0xfc]
        );
        assert_eq!(mono.adts_header(8185), Err(AacError::FrameTooLong(8185)));
        assert_eq!(
            mono.adts_header(usize::MAX),
            Err(AacError::FrameTooLong(usize::MAX))
        );
        // 7.1 sets the channel bit in the third byte.
        let surround = AudioSpecificConfig::lc(48_000, 8).unwrap();
        assert_eq!(surround.adts_header(0).unwrap()[2..4], [0x4d, 0xc0]);

        let mut out = vec![9];
        asc.write_adts(&[1, 2, 3], &mut out).unwrap();
        assert_eq!(out, [9, 0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc, 1, 2, 3]);
    }

    #[test]
    fn adts_parse_round_trip_and_errors() {
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        let h = AdtsHeader::parse(&asc.adts_header(371).unwrap()).unwrap();
        assert_eq!(
            h,
            AdtsHeader {
                config: asc,
                mpeg2: false,
                has_crc: false,
                frame_len: 378,
                buffer_fullness: 0x7ff,
                raw_blocks: 1,
            }
        );
        assert_eq!(h.header_len(), 7);
        // MPEG-2 ID, with CRC: 9-byte header.
        let crc = [0xff, 0xf8, 0x4c, 0x80, 0x2f, 0x5f, 0xfc, 0xab, 0xcd];
        let h = AdtsHeader::parse(&crc).unwrap();
        assert!(h.mpeg2 && h.has_crc);
        assert_eq!(h.header_len(), 9);
        assert_eq!(AdtsHeader::parse(&crc[..8]), Err(AacError::Truncated));
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf1, 0x4c, 0x80]),
            Err(AacError::Truncated)
        );
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xe1, 0x4c, 0x80, 0x2f, 0x5f, 0xfc]),
            Err(AacError::NoSync)
        );
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf3, 0x4c, 0x80, 0x2f, 0x5f, 0xfc]),
            Err(AacError::BadLayer)
        );
        // Profile 3 (LTP) is fine; frame length 6 is not.
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf1, 0xcc, 0x80, 0x00, 0xdf, 0xfc]),
            Err(AacError::BadFrameLength(6))
        );
        // Sampling index 15 and channel configuration 0.
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf1, 0x7c, 0x80, 0x2f, 0x5f, 0xfc]),
            Err(AacError::BadSamplingIndex(15))
        );
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf1, 0x4c, 0x00, 0x2f, 0x5f, 0xfc]),
            Err(AacError::UnsupportedChannels(0))
        );
    }

    #[test]
    fn frames_split_and_stop_at_garbage() {
        let asc = AudioSpecificConfig::lc(48_000, 1).unwrap();
        let mut stream = Vec::new();
        asc.write_adts(&[0xaa; 5], &mut stream).unwrap();
        asc.write_adts(&[], &mut stream).unwrap();
        asc.write_adts(&[0xbb; 3], &mut stream).unwrap();
        let frames: Vec<_> = adts_frames(&stream).collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].payload, &[0xaa; 5]);
        assert_eq!(frames[0].frame.len(), 12);
        assert_eq!(frames[1].payload, &[] as &[u8]);
        assert_eq!(frames[2].payload, &[0xbb; 3]);

        stream.truncate(stream.len() - 1);
        let got: Vec<_> = adts_frames(&stream).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Err(AacError::Truncated));
        let got: Vec<_> = adts_frames(&[0x00, 0xff, 0xf1]).collect();
        assert_eq!(got, [Err(AacError::Truncated)]);
        assert_eq!(adts_frames(&[]).count(), 0);
    }

    #[test]
    fn sample_clock() {
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        // 1024 samples at 48 kHz are 1920 ticks exactly.
        assert_eq!(asc.samples_to_ticks(1024), Ticks90k(1920));
        let asc = AudioSpecificConfig::lc(44_100, 2).unwrap();
        // 1024 / 44100 s = 2089.79 ticks, rounded down.
        assert_eq!(asc.samples_to_ticks(1024), Ticks90k(2089));
        assert_eq!(asc.samples_to_ticks(44_100 * 3600), Ticks90k(90_000 * 3600));
        assert_eq!(asc.samples_to_ticks(u64::MAX), Ticks90k(u64::MAX));
    }
}
