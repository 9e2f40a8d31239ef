//! H.264 bitstream helpers (ISO/IEC 14496-10).
//!
//! * Annex B byte-stream splitting (§B.1), the format encoders emit and
//!   MPEG-TS carries.
//! * NAL unit header (§7.3.1, table 7-1).
//! * Emulation-prevention removal, NAL payload to RBSP (§7.4.1).
//! * Sequence parameter set parsing (§7.3.2.1.1) up to the VUI timing info
//!   (§E.1.1), for picture size, frame rate and the RFC 6381 codecs string.
//!
//! Nothing here panics: readers are bounds-checked and malformed input is an
//! [`SpsError`] or, for Annex B, simply yields whatever NAL units can be found.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Splits an Annex B byte stream into NAL units (§B.1.1).
///
/// Yields the bytes after each 3- or 4-byte start code up to the next start
/// code, with trailing zero bytes (`trailing_zero_8bits`, or the leading zero
/// of a 4-byte start code) trimmed. Bytes before the first start code are
/// ignored and empty NAL units are skipped, so garbage cannot surface as a
/// zero-length unit.
pub fn split_annexb(data: &[u8]) -> AnnexBIter<'_> {
    let rest = match find_start_code(data) {
        Some((_, after)) => data.get(after..).unwrap_or(&[]),
        None => &[],
    };
    AnnexBIter { rest }
}

/// Iterator returned by [`split_annexb`].
#[derive(Debug, Clone)]
pub struct AnnexBIter<'a> {
    /// Bytes after the last start code seen, not yet returned.
    rest: &'a [u8],
}

impl<'a> Iterator for AnnexBIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (nal, rest) = match find_start_code(self.rest) {
                Some((at, after)) => (
                    self.rest.get(..at).unwrap_or(&[]),
                    self.rest.get(after..).unwrap_or(&[]),
                ),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let nal = trim_trailing_zeros(nal);
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// Finds the first `00 00 01`; returns (its offset, offset just after it).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    data.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|at| (at, at + 3))
}

fn trim_trailing_zeros(mut nal: &[u8]) -> &[u8] {
    while let [head @ .., 0] = nal {
        nal = head;
    }
    nal
}

/// `nal_unit_type` (table 7-1), with the types roomcast cares about named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalType {
    /// 1: coded slice of a non-IDR picture.
    Slice,
    /// 2: slice data partition A.
    SliceA,
    /// 3: slice data partition B.
    SliceB,
    /// 4: slice data partition C.
    SliceC,
    /// 5: coded slice of an IDR picture (a keyframe).
    Idr,
    /// 6: supplemental enhancement information.
    Sei,
    /// 7: sequence parameter set.
    Sps,
    /// 8: picture parameter set.
    Pps,
    /// 9: access unit delimiter.
    Aud,
    /// 10: end of sequence.
    EndOfSequence,
    /// 11: end of stream.
    EndOfStream,
    /// 12: filler data.
    Filler,
    /// Any other value (0, 13..=31).
    Other(u8),
}

impl NalType {
    /// Reads the type from a NAL unit's first byte.
    ///
    /// `None` for an empty unit or one with `forbidden_zero_bit` set, which
    /// marks a corrupted unit (§7.4.1) that should not be interpreted.
    pub fn of(nal: &[u8]) -> Option<NalType> {
        let &header = nal.first()?;
        if header & 0x80 != 0 {
            return None;
        }
        Some(NalType::from_id(header & 0x1f))
    }

    /// Maps a 5-bit `nal_unit_type`.
    pub fn from_id(id: u8) -> NalType {
        match id {
            1 => NalType::Slice,
            2 => NalType::SliceA,
            3 => NalType::SliceB,
            4 => NalType::SliceC,
            5 => NalType::Idr,
            6 => NalType::Sei,
            7 => NalType::Sps,
            8 => NalType::Pps,
            9 => NalType::Aud,
            10 => NalType::EndOfSequence,
            11 => NalType::EndOfStream,
            12 => NalType::Filler,
            other => NalType::Other(other),
        }
    }

    /// The numeric `nal_unit_type`.
    pub fn id(self) -> u8 {
        match self {
            NalType::Slice => 1,
            NalType::SliceA => 2,
            NalType::SliceB => 3,
            NalType::SliceC => 4,
            NalType::Idr => 5,
            NalType::Sei => 6,
            NalType::Sps => 7,
            NalType::Pps => 8,
            NalType::Aud => 9,
            NalType::EndOfSequence => 10,
            NalType::EndOfStream => 11,
            NalType::Filler => 12,
            NalType::Other(id) => id,
        }
    }

    /// Whether the unit carries picture data (types 1..=5, the VCL units of §7.4.1.2.2).
    pub fn is_vcl(self) -> bool {
        matches!(
            self,
            NalType::Slice | NalType::SliceA | NalType::SliceB | NalType::SliceC | NalType::Idr
        )
    }
}

/// Whether an Annex B access unit contains an IDR slice, i.e. can start a
/// segment or a decoder.
pub fn contains_idr(annexb: &[u8]) -> bool {
    split_annexb(annexb).any(|nal| NalType::of(nal) == Some(NalType::Idr))
}

/// Removes emulation-prevention bytes (the `03` in `00 00 03`, §7.4.1),
/// turning NAL payload bytes into the RBSP the syntax tables describe.
pub fn unescape_rbsp(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0usize;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            // The byte after the 03 starts a fresh count: 00 00 03 00 00 03 is
            // two separate escapes.
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Why an SPS could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpsError {
    /// The NAL unit is empty or not of type 7.
    #[error("NAL unit is not a sequence parameter set")]
    NotSps,
    /// The RBSP ended before the syntax did.
    #[error("sequence parameter set is truncated")]
    Truncated,
    /// Valid syntax this parser does not handle.
    #[error("unsupported sequence parameter set: {0}")]
    Unsupported(&'static str),
    /// A field holds a value the spec forbids or no real encoder produces.
    #[error("sequence parameter set field out of range: {0}")]
    OutOfRange(&'static str),
}

/// The parts of a sequence parameter set that roomcast uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc` (Annex A): 66 Baseline, 77 Main, 100 High, ...
    pub profile_idc: u8,
    /// The byte holding `constraint_set0_flag` (MSB) to `constraint_set5_flag`
    /// and the two reserved bits, as it goes into a codecs string.
    pub constraint_flags: u8,
    /// `level_idc`: ten times the level number (31 = level 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id` (0..=31).
    pub seq_parameter_set_id: u32,
    /// Displayed width in pixels, after frame cropping.
    pub width: u32,
    /// Displayed height in pixels, after frame cropping.
    pub height: u32,
    /// Frame rate `(num, den)` from the VUI timing info, reduced; `None` when
    /// absent or zero. Assumes the common `time_scale / (2 * num_units_in_tick)`
    /// (two field ticks per frame, as x264, openh264 and hardware encoders use).
    pub frame_rate: Option<(u32, u32)>,
}

/// Largest picture dimension accepted; larger than any H.264 level allows
/// (level 6.2 tops out at 8192x4320), so anything bigger is corrupt data.
const MAX_DIMENSION: u64 = 16_384;

impl Sps {
    /// Parses a complete SPS NAL unit (header byte included, no start code).
    pub fn parse(nal: &[u8]) -> Result<Sps, SpsError> {
        match NalType::of(nal) {
            Some(NalType::Sps) => {}
            _ => return Err(SpsError::NotSps),
        }
        let rbsp = unescape_rbsp(nal.get(1..).unwrap_or(&[]));
        let mut r = BitReader::new(&rbsp);

        let profile_idc = r.u8()?;
        let constraint_flags = r.u8()?;
        let level_idc = r.u8()?;
        let seq_parameter_set_id = r.ue_max(31, "seq_parameter_set_id")?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        if has_chroma_info(profile_idc) {
            chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.flag()?;
            }
            r.ue_max(6, "bit_depth_luma_minus8")?;
            r.ue_max(6, "bit_depth_chroma_minus8")?;
            let _qpprime_y_zero_transform_bypass = r.flag()?;
            if r.flag()? {
                // seq_scaling_matrix_present_flag: the lists only matter to a
                // decoder, but they must be walked to find the fields after.
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        r.ue_max(12, "log2_max_frame_num_minus4")?;
        match r.ue_max(2, "pic_order_cnt_type")? {
            0 => {
                r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.flag()?;
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                let n = r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")?;
                for _ in 0..n {
                    r.se()?; // offset_for_ref_frame[i]
                }
            }
            _ => {}
        }
        r.ue_max(16, "max_num_ref_frames")?;
        let _gaps_in_frame_num_value_allowed = r.flag()?;
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.flag()?;
        }
        let _direct_8x8_inference = r.flag()?;

        let coded_width = width_mbs * 16;
        let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
        let coded_height = field_factor * height_map_units * 16;
        if coded_width > MAX_DIMENSION {
            return Err(SpsError::OutOfRange("pic_width_in_mbs_minus1"));
        }
        if coded_height > MAX_DIMENSION {
            return Err(SpsError::OutOfRange("pic_height_in_map_units_minus1"));
        }

        let (mut width, mut height) = (coded_width, coded_height);
        if r.flag()? {
            // frame_cropping_flag: offsets count in crop units (§7.4.2.1.1,
            // equations 7-19 to 7-22), which depend on chroma subsampling.
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            };
            let (unit_x, unit_y) = if chroma_array_type == 0 {
                (1, field_factor)
            } else {
                let sub_width_c = if chroma_format_idc == 3 { 1 } else { 2 };
                let sub_height_c = if chroma_format_idc == 1 { 2 } else { 1 };
                (sub_width_c, sub_height_c * field_factor)
            };
            let left = u64::from(r.ue()?);
            let right = u64::from(r.ue()?);
            let top = u64::from(r.ue()?);
            let bottom = u64::from(r.ue()?);
            width = width
                .checked_sub(unit_x * (left + right))
                .filter(|&w| w > 0)
                .ok_or(SpsError::OutOfRange("frame_crop_left/right_offset"))?;
            height = height
                .checked_sub(unit_y * (top + bottom))
                .filter(|&h| h > 0)
                .ok_or(SpsError::OutOfRange("frame_crop_top/bottom_offset"))?;
        }

        let frame_rate = if r.flag()? {
            parse_vui_frame_rate(&mut r)?
        } else {
            None
        };

        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            seq_parameter_set_id,
            // Both are at most MAX_DIMENSION, so they fit.
            width: u32::try_from(width).unwrap_or(u32::MAX),
            height: u32::try_from(height).unwrap_or(u32::MAX),
            frame_rate,
        })
    }

    /// The Annex A profile name, as a UI or log line shows it.
    pub fn profile_name(&self) -> &'static str {
        let set = |n: u8| self.constraint_flags & (0x80 >> n) != 0;
        match self.profile_idc {
            66 if set(1) => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 if set(4) && set(5) => "Constrained High",
            100 if set(4) => "Progressive High",
            100 => "High",
            110 if set(3) => "High 10 Intra",
            110 => "High 10",
            122 if set(3) => "High 4:2:2 Intra",
            122 => "High 4:2:2",
            244 if set(3) => "High 4:4:4 Intra",
            244 => "High 4:4:4 Predictive",
            44 => "CAVLC 4:4:4 Intra",
            83 => "Scalable Baseline",
            86 => "Scalable High",
            118 => "Multiview High",
            128 => "Stereo High",
            134 => "MFC High",
            135 => "MFC Depth High",
            138 => "Multiview Depth High",
            139 => "Enhanced Multiview Depth High",
            _ => "Unknown",
        }
    }

    /// The RFC 6381 `codecs` parameter (`avc1.PPCCLL`, lowercase hex), as an
    /// HLS master playlist's `CODECS` attribute wants it.
    pub fn codecs_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// Profiles whose SPS carries chroma format, bit depth and scaling matrices
/// (the `if( profile_idc == 100 || ...)` branch of §7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Walks `scaling_list()` (§7.3.2.1.1.1) without keeping it.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), SpsError> {
    let mut last_scale: i32 = 8;
    let mut next_scale: i32 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = r.se()?;
            if !(-128..=127).contains(&delta) {
                return Err(SpsError::OutOfRange("delta_scale"));
            }
            next_scale = (last_scale + delta + 256).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Reads `vui_parameters()` (§E.1.1) as far as `timing_info` and returns the
/// frame rate it gives.
fn parse_vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, SpsError> {
    if r.flag()? {
        // aspect_ratio_info_present_flag
        const EXTENDED_SAR: u8 = 255;
        if r.u8()? == EXTENDED_SAR {
            r.bits(16)?; // sar_width
            r.bits(16)?; // sar_height
        }
    }
    if r.flag()? {
        // overscan_info_present_flag
        r.flag()?; // overscan_appropriate_flag
    }
    if r.flag()? {
        // video_signal_type_present_flag
        r.bits(3)?; // video_format
        r.flag()?; // video_full_range_flag
        if r.flag()? {
            // colour_description_present_flag
            r.bits(24)?; // colour_primaries, transfer_characteristics, matrix_coefficients
        }
    }
    if r.flag()? {
        // chroma_loc_info_present_flag
        r.ue_max(5, "chroma_sample_loc_type_top_field")?;
        r.ue_max(5, "chroma_sample_loc_type_bottom_field")?;
    }
    if !r.flag()? {
        return Ok(None);
    }
    let num_units_in_tick = u64::from(r.bits(32)?);
    let time_scale = u64::from(r.bits(32)?);
    let _fixed_frame_rate = r.flag()?;
    if num_units_in_tick == 0 || time_scale == 0 {
        // Forbidden by §E.2.1; treat as "no timing" rather than failing the
        // whole SPS, since the picture size is still good.
        return Ok(None);
    }
    let (num, den) = (time_scale, 2 * num_units_in_tick);
    let g = gcd(num, den);
    Ok(match (u32::try_from(num / g), u32::try_from(den / g)) {
        (Ok(n), Ok(d)) => Some((n, d)),
        _ => None,
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// MSB-first bit reader over an RBSP, with exp-Golomb codes (§9.1).
struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn flag(&mut self) -> Result<bool, SpsError> {
        let byte = self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` bits (at most 32) as an unsigned big-endian number.
    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n.min(32) {
            v = (v << 1) | u64::from(self.flag()?);
        }
        Ok(v as u32)
    }

    fn u8(&mut self) -> Result<u8, SpsError> {
        Ok(self.bits(8)? as u8)
    }

    /// `ue(v)`. More than 31 leading zeros would exceed `u32`, which no
    /// field needs, so that is an error.
    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange("exp-Golomb code longer than 32 bits"));
            }
        }
        let suffix = u64::from(self.bits(zeros)?);
        // (1 << 31) - 1 + (2^31 - 1) = 2^32 - 2 at most: fits.
        Ok(((1u64 << zeros) - 1 + suffix) as u32)
    }

    fn ue_max(&mut self, max: u32, field: &'static str) -> Result<u32, SpsError> {
        let v = self.ue()?;
        if v > max {
            return Err(SpsError::OutOfRange(field));
        }
        Ok(v)
    }

    /// `se(v)`: 0, 1, -1, 2, -2, ... (table 9-3).
    fn se(&mut self) -> Result<i32, SpsError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).map_err(|_| SpsError::OutOfRange("se(v)"))
    }
}

/// Parameter sets of one stream, as the containers that carry them out of
/// band (FLV's AVC sequence header, MP4's `avcC`) need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// The SPS NAL unit (header byte included, no start code).
    pub sps: Vec<u8>,
    /// The PPS NAL unit.
    pub pps: Vec<u8>,
    /// What the SPS says.
    pub info: Sps,
}

/// Why parameter sets could not be taken from an access unit.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParameterSetsError {
    #[error("access unit has no SPS")]
    NoSps,
    #[error("access unit has no PPS")]
    NoPps,
    #[error("bad SPS: {0}")]
    Sps(#[from] SpsError),
    #[error("parameter set longer than 65535 bytes")]
    TooLong,
}

impl ParameterSets {
    /// The first SPS and PPS of an Annex-B access unit (a keyframe from our
    /// encoders carries both).
    pub fn from_annexb(annexb: &[u8]) -> Result<ParameterSets, ParameterSetsError> {
        let (mut sps, mut pps) = (None, None);
        for nal in split_annexb(annexb) {
            match NalType::of(nal) {
                Some(NalType::Sps) if sps.is_none() => sps = Some(nal),
                Some(NalType::Pps) if pps.is_none() => pps = Some(nal),
                _ => {}
            }
        }
        let sps = sps.ok_or(ParameterSetsError::NoSps)?;
        let pps = pps.ok_or(ParameterSetsError::NoPps)?;
        if sps.len() > 0xFFFF || pps.len() > 0xFFFF {
            return Err(ParameterSetsError::TooLong);
        }
        Ok(ParameterSets {
            info: Sps::parse(sps)?,
            sps: sps.to_vec(),
            pps: pps.to_vec(),
        })
    }

    /// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1): the body of
    /// MP4's `avcC` box and of FLV's AVC sequence header. One SPS, one PPS,
    /// 4-byte NAL lengths; the high-profile chroma/bit-depth fields are
    /// written for profiles that require them.
    pub fn avc_decoder_configuration_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.sps.len() + self.pps.len());
        // configurationVersion, AVCProfileIndication, profile_compatibility,
        // AVCLevelIndication: the three bytes after the SPS header byte.
        out.push(1);
        out.extend_from_slice(self.sps.get(1..4).unwrap_or(&[0, 0, 0]));
        out.push(0xFC | 3); // reserved 6 bits, lengthSizeMinusOne = 3
        out.push(0xE0 | 1); // reserved 3 bits, numOfSequenceParameterSets = 1
        out.extend_from_slice(&(self.sps.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.sps);
        out.push(1); // numOfPictureParameterSets
        out.extend_from_slice(&(self.pps.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.pps);
        if matches!(self.info.profile_idc, 100 | 110 | 122 | 144) {
            // chroma_format 4:2:0, 8-bit luma and chroma, no SPS extensions.
            out.extend_from_slice(&[0xFC | 1, 0xF8, 0xF8, 0]);
        }
        out
    }
}

/// Appends the NAL units of an Annex-B access unit to `out` with 4-byte
/// big-endian length prefixes (the AVCC form MP4 and FLV samples use),
/// leaving out parameter sets and access unit delimiters, which those
/// containers carry elsewhere. Returns the number of bytes appended.
pub fn annexb_to_avcc(annexb: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    for nal in split_annexb(annexb) {
        if matches!(
            NalType::of(nal),
            None | Some(NalType::Sps | NalType::Pps | NalType::Aud)
        ) {
            continue;
        }
        let Ok(len) = u32::try_from(nal.len()) else {
            continue;
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    out.len() - start
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Test-only MSB-first bit writer, to hand-encode SPS syntax.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        nbits: usize,
    }

    impl BitWriter {
        fn bit(&mut self, b: bool) -> &mut Self {
            if self.nbits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if b {
                let last = self.bytes.last_mut().unwrap();
                *last |= 0x80 >> (self.nbits % 8);
            }
            self.nbits += 1;
            self
        }
        fn bits(&mut self, n: u32, v: u64) -> &mut Self {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u32) -> &mut Self {
            let x = u64::from(v) + 1;
            let len = 64 - x.leading_zeros();
            self.bits(len - 1, 0).bits(len, x)
        }
        fn se(&mut self, v: i32) -> &mut Self {
            let k = if v > 0 {
                2 * v as u32 - 1
            } else {
                (-2 * v) as u32
            };
            self.ue(k)
        }
        /// rbsp_trailing_bits, then escape into a NAL payload.
        fn finish_nal(&mut self, header: u8) -> Vec<u8> {
            self.bit(true);
            while !self.nbits.is_multiple_of(8) {
                self.bit(false);
            }
            let mut nal = vec![header];
            let mut zeros = 0;
            for &b in &self.bytes {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|c| u8::from_str_radix(core::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn annexb_split() {
        let data = hex(
            "ff ee 00 01   00 00 00 01 67 42 00 00   00 00 01 68 ce 00 00 00
             00 00 01 65 88 00 00 03 01   00 00 01   00 00 01 06 05 00 00",
        );
        let nals: Vec<&[u8]> = split_annexb(&data).collect();
        assert_eq!(
            nals,
            vec![
                &[0x67, 0x42][..],
                &[0x68, 0xce][..],
                &[0x65, 0x88, 0x00, 0x00, 0x03, 0x01][..],
                &[0x06, 0x05][..],
            ]
        );
        assert_eq!(split_annexb(&[]).count(), 0);
        assert_eq!(split_annexb(&[0, 0, 1]).count(), 0);
        assert_eq!(split_annexb(&[1, 2, 3, 0, 0]).count(), 0);
        assert_eq!(
            split_annexb(&[0, 0, 1, 9]).collect::<Vec<_>>(),
            vec![&[9u8][..]]
        );
        assert!(contains_idr(&data));
        assert!(!contains_idr(&hex("00 00 01 41 9a")));
    }

    #[test]
    fn nal_types() {
        assert_eq!(NalType::of(&[0x67]), Some(NalType::Sps));
        assert_eq!(NalType::of(&[0x65, 0x88]), Some(NalType::Idr));
        assert_eq!(NalType::of(&[0x09, 0xf0]), Some(NalType::Aud));
        assert_eq!(NalType::of(&[0x18]), Some(NalType::Other(24)));
        assert_eq!(NalType::of(&[0xe7]), None, "forbidden_zero_bit");
        assert_eq!(NalType::of(&[]), None);
        assert!(NalType::Idr.is_vcl() && NalType::Slice.is_vcl());
        assert!(!NalType::Sps.is_vcl() && !NalType::Sei.is_vcl());
        for id in 0..32 {
            assert_eq!(NalType::from_id(id).id(), id);
        }
    }

    #[test]
    fn emulation_prevention() {
        assert_eq!(unescape_rbsp(&hex("00 00 03 01")), hex("00 00 01"));
        assert_eq!(
            unescape_rbsp(&hex("00 00 03 00 00 03 00")),
            hex("00 00 00 00 00")
        );
        assert_eq!(unescape_rbsp(&hex("00 03 00 00 03")), hex("00 03 00 00"));
        assert_eq!(unescape_rbsp(&hex("00 00 00 03")), hex("00 00 00"));
        assert_eq!(unescape_rbsp(&hex("01 00 00 03 03")), hex("01 00 00 03"));
    }

    #[test]
    fn exp_golomb() {
        let mut w = BitWriter::default();
        w.ue(0)
            .ue(1)
            .ue(2)
            .ue(254)
            .se(0)
            .se(1)
            .se(-1)
            .se(-64)
            .ue(u32::MAX - 1);
        let bytes = w.bytes.clone();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.ue(), Ok(0));
        assert_eq!(r.ue(), Ok(1));
        assert_eq!(r.ue(), Ok(2));
        assert_eq!(r.ue(), Ok(254));
        assert_eq!(r.se(), Ok(0));
        assert_eq!(r.se(), Ok(1));
        assert_eq!(r.se(), Ok(-1));
        assert_eq!(r.se(), Ok(-64));
        assert_eq!(r.ue(), Ok(u32::MAX - 1));
        // 33 zero bits: longer than any legal field.
        let mut r = BitReader::new(&[0, 0, 0, 0, 0x80]);
        assert!(matches!(r.ue(), Err(SpsError::OutOfRange(_))));
        let mut r = BitReader::new(&[0x00]);
        assert_eq!(r.ue(), Err(SpsError::Truncated));
    }

    /// Constrained Baseline 320x240, level 1.3, with VUI timing for 30 fps,
    /// shaped like openh264's output.
    fn baseline_320x240() -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(8, 66).bits(8, 0xc0).bits(8, 13); // profile, constraints, level
        w.ue(0); // seq_parameter_set_id
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(2); // pic_order_cnt_type
        w.ue(1); // max_num_ref_frames
        w.bit(false); // gaps
        w.ue(19).ue(14); // 20x15 macroblocks
        w.bit(true); // frame_mbs_only
        w.bit(true); // direct_8x8_inference
        w.bit(false); // frame_cropping
        w.bit(true); // vui_parameters_present
        w.bit(false).bit(false); // aspect, overscan
        w.bit(true).bits(3, 5).bit(false).bit(false); // video signal, no colour desc
        w.bit(false); // chroma loc
        w.bit(true).bits(32, 1).bits(32, 60).bit(true); // timing 60/(2*1)
        w.finish_nal(0x67)
    }

    #[test]
    fn sps_hand_encoded_baseline() {
        let nal = baseline_320x240();
        assert_eq!(&nal[..4], &[0x67, 0x42, 0xc0, 0x0d]);
        let sps = Sps::parse(&nal).unwrap();
        assert_eq!(
            sps,
            Sps {
                profile_idc: 66,
                constraint_flags: 0xc0,
                level_idc: 13,
                seq_parameter_set_id: 0,
                width: 320,
                height: 240,
                frame_rate: Some((30, 1)),
            }
        );
        assert_eq!(sps.profile_name(), "Constrained Baseline");
        assert_eq!(sps.codecs_string(), "avc1.42c00d");
    }

    /// High 4:2:2, interlaced, scaling matrices, POC type 1, cropping and an
    /// Extended_SAR VUI: every branch the simple streams skip.
    #[test]
    fn sps_hand_encoded_high422_interlaced() {
        let mut w = BitWriter::default();
        w.bits(8, 122).bits(8, 0).bits(8, 41);
        w.ue(3); // sps id
        w.ue(2); // chroma_format_idc 4:2:2
        w.ue(2).ue(2); // 10-bit
        w.bit(false); // qpprime
        w.bit(true); // seq_scaling_matrix_present
        for i in 0..8 {
            let present = i == 0 || i == 6;
            w.bit(present);
            if present {
                // 8 + 5 = 13, then 13 - 13 = 0: next_scale 0 means the rest of
                // the list (16 or 64 entries) repeats and carries no deltas.
                w.se(5).se(-13);
            }
        }
        w.ue(4); // log2_max_frame_num_minus4
        w.ue(1); // poc type 1
        w.bit(false).se(-3).se(7).ue(2).se(1).se(-1);
        w.ue(4); // max_num_ref_frames
        w.bit(false);
        w.ue(119).ue(33); // 1920 wide, 34 map units = 68 MB rows of fields = 1088
        w.bit(false).bit(true); // frame_mbs_only=0, mbaff=1
        w.bit(true); // direct_8x8
        w.bit(true).ue(0).ue(0).ue(0).ue(2); // crop bottom 2 * (1 * 2) = 4 rows
        w.bit(true); // vui
        w.bit(true).bits(8, 255).bits(16, 4).bits(16, 3); // Extended_SAR
        w.bit(true).bit(true); // overscan
        w.bit(true)
            .bits(3, 5)
            .bit(true)
            .bit(true)
            .bits(24, 0x01_01_01);
        w.bit(true).ue(1).ue(1); // chroma loc
        w.bit(true).bits(32, 1001).bits(32, 60000).bit(true);
        let nal = w.finish_nal(0x67);
        let sps = Sps::parse(&nal).unwrap();
        assert_eq!(sps.profile_idc, 122);
        assert_eq!(sps.seq_parameter_set_id, 3);
        assert_eq!((sps.width, sps.height), (1920, 1084));
        assert_eq!(sps.frame_rate, Some((30000, 1001)));
        assert_eq!(sps.profile_name(), "High 4:2:2");
        assert_eq!(sps.codecs_string(), "avc1.7a0029");
    }

    /// Real x264 output for 1920x1080 High@4.0: 1088 coded rows, cropped by 8.
    #[test]
    fn sps_real_x264_1080p() {
        let nal = hex("67640028acd940780227e5c044000003000400000300f03c60c658");
        let sps = Sps::parse(&nal).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.level_idc, 40);
        assert_eq!(sps.profile_name(), "High");
        assert_eq!(sps.codecs_string(), "avc1.640028");
        assert_eq!(sps.frame_rate, Some((30, 1)));
    }

    /// Real OBS (macOS, x264) output: 1920x1080 High with a video signal type
    /// and colour description in the VUI before the timing info.
    #[test]
    fn sps_real_obs_1080p() {
        let nal = hex("67640028acd940780227e5c05a808080a0000003002000000791e30632c0");
        let sps = Sps::parse(&nal).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.frame_rate, Some((30, 1)));
    }

    #[test]
    fn sps_errors() {
        assert_eq!(Sps::parse(&[]), Err(SpsError::NotSps));
        assert_eq!(Sps::parse(&[0x68, 0x42]), Err(SpsError::NotSps));
        assert_eq!(Sps::parse(&[0x67, 0x42, 0xc0]), Err(SpsError::Truncated));
        let good = baseline_320x240();
        for len in 1..good.len() - 1 {
            assert!(Sps::parse(&good[..len]).is_err(), "truncated at {len}");
        }
        // 1024 macroblocks wide = 16384 pixels is the limit; 1025 is rejected.
        let huge = |mbs: u32| {
            let mut w = BitWriter::default();
            w.bits(8, 66)
                .bits(8, 0)
                .bits(8, 30)
                .ue(0)
                .ue(0)
                .ue(2)
                .ue(1)
                .bit(false);
            w.ue(mbs - 1)
                .ue(0)
                .bit(true)
                .bit(true)
                .bit(false)
                .bit(false);
            Sps::parse(&w.finish_nal(0x67))
        };
        assert_eq!(huge(1024).map(|s| s.width), Ok(16384));
        assert_eq!(
            huge(1025),
            Err(SpsError::OutOfRange("pic_width_in_mbs_minus1"))
        );
        // Cropping everything away.
        let mut w = BitWriter::default();
        w.bits(8, 66)
            .bits(8, 0)
            .bits(8, 30)
            .ue(0)
            .ue(0)
            .ue(2)
            .ue(1)
            .bit(false);
        w.ue(0)
            .ue(0)
            .bit(true)
            .bit(true)
            .bit(true)
            .ue(4)
            .ue(4)
            .ue(0)
            .ue(0);
        assert!(matches!(
            Sps::parse(&w.finish_nal(0x67)),
            Err(SpsError::OutOfRange(_))
        ));
        // chroma_format_idc 4.
        let mut w = BitWriter::default();
        w.bits(8, 100).bits(8, 0).bits(8, 30).ue(0).ue(4);
        assert_eq!(
            Sps::parse(&w.finish_nal(0x67)),
            Err(SpsError::OutOfRange("chroma_format_idc"))
        );
    }

    #[test]
    fn decoder_configuration_record_and_avcc_conversion() {
        // A constrained-baseline keyframe: AUD, SPS, PPS, IDR.
        let sps = baseline_320x240();
        let au = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1],
            &sps,
            &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80],
            &[0, 0, 1, 0x65, 0x88, 0x84],
        ]
        .concat();
        let ps = ParameterSets::from_annexb(&au).unwrap();
        assert_eq!((ps.info.width, ps.info.height), (320, 240));
        let rec = ps.avc_decoder_configuration_record();
        let mut want = vec![1, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0, sps.len() as u8];
        want.extend_from_slice(&sps);
        want.extend_from_slice(&[1, 0, 4, 0x68, 0xce, 0x3c, 0x80]);
        assert_eq!(rec, want);
        let mut out = vec![0xAA];
        assert_eq!(annexb_to_avcc(&au, &mut out), 7);
        assert_eq!(out, [0xAA, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
        assert_eq!(
            ParameterSets::from_annexb(&[0, 0, 1, 0x65, 1]).unwrap_err(),
            ParameterSetsError::NoSps
        );
    }
}
