//! MPEG-2 transport stream muxer for one H.264 video stream and optionally
//! one AAC audio stream (ISO/IEC 13818-1; H.264 carriage per §2.14 / Amd.3,
//! AAC in ADTS per §2.4.4.9 `stream_type` 0x0F).
//!
//! Implements the pieces a live encoder needs and nothing more:
//!
//! * transport packet header and adaptation field (§2.4.3.2, §2.4.3.4),
//!   including the PCR (§2.4.3.5) and stuffing;
//! * the PAT (§2.4.4.3) and a PMT (§2.4.4.8) with one `stream_type` 0x1B
//!   stream (and, with audio, one `stream_type` 0x0F stream after it), each
//!   in a single packet, with the section CRC (Annex A);
//! * PES packets (§2.4.3.6/2.4.3.7) carrying one video access unit each, or
//!   ADTS audio frames (ISO/IEC 14496-3 §1.A.2) with their PTS;
//! * [`pack_messages`]: the stream cut into datagram payloads of seven
//!   packets, the last padded with null packets (PID 0x1FFF, §2.4.3.3), as
//!   SRT and MPEG-TS over UDP carry it.
//!
//! The PCR stays on the video PID: video is always there, and one clock
//! reference per program is all a receiver needs.
//!
//! The muxer never fails and never panics: any access unit, even an empty or
//! malformed one, produces whole 188-byte packets.

use alloc::vec::Vec;

use crate::aac::{AacError, AudioSpecificConfig};
use crate::h264::{split_annexb, NalType};
use crate::time::Ticks90k;

/// Size of every transport packet.
pub const PACKET_SIZE: usize = 188;

const SYNC_BYTE: u8 = 0x47;
/// Bytes of the fixed packet header.
const HEADER_SIZE: usize = 4;
/// Payload room in a packet with no adaptation field.
const MAX_PAYLOAD: usize = PACKET_SIZE - HEADER_SIZE;
/// `stream_type` for ISO/IEC 14496-10 video (table 2-34).
const STREAM_TYPE_H264: u8 = 0x1b;
/// `stream_id` for the first video stream (table 2-22).
const STREAM_ID_VIDEO: u8 = 0xe0;
/// `stream_type` for ISO/IEC 13818-7 audio with ADTS transport syntax
/// (table 2-34); MPEG-4 AAC-LC in ADTS is carried the same way.
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// `stream_id` for the first audio stream (table 2-22: 110x xxxx).
const STREAM_ID_AUDIO: u8 = 0xc0;
/// Largest `PES_packet_length` (16 bits). Audio PES must state their
/// length (only video may use 0, §2.4.3.7), so longer audio is split.
const MAX_PES_PACKET_LENGTH: usize = 0xffff;

/// PID most muxers give the first audio stream, next to video on 0x100.
pub const DEFAULT_AUDIO_PID: u16 = 0x101;
/// An access unit delimiter with `primary_pic_type` 7 ("any slice type"),
/// prefixed with a 4-byte start code. The AVC-in-TS rules (§2.14.1) require
/// every access unit to start with one, and some hardware decoders rely on it.
const AUD: [u8; 6] = [0x00, 0x00, 0x00, 0x01, 0x09, 0xf0];

/// CRC lookup table for [`crc32_mpeg2`], built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC_32 of PSI sections (Annex A): polynomial 0x04C11DB7, initial value
/// all ones, MSB first, no final inversion. A section including its CRC
/// checks to 0.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// Identifiers written into the tables.
///
/// PIDs are 13-bit; higher bits are ignored. The defaults are the ones most
/// muxers use, which keeps captures easy to compare.
#[derive(Debug, Clone, Copy)]
pub struct TsConfig {
    /// PID carrying the PMT.
    pub pmt_pid: u16,
    /// PID carrying the video PES packets and the PCR.
    pub video_pid: u16,
    /// `program_number` in PAT and PMT.
    pub program_number: u16,
    /// `transport_stream_id` in the PAT.
    pub transport_stream_id: u16,
}

impl Default for TsConfig {
    fn default() -> Self {
        TsConfig {
            pmt_pid: 0x1000,
            video_pid: 0x100,
            program_number: 1,
            transport_stream_id: 1,
        }
    }
}

impl TsConfig {
    /// Whether the PIDs are usable: distinct, 13-bit, and clear of the PAT
    /// (0), the reserved range (1..=0xF) and the null PID (0x1FFF); program
    /// number 0 is reserved for the network PID.
    pub fn is_valid(&self) -> bool {
        let ok = |pid: u16| (0x10..0x1fff).contains(&pid);
        ok(self.pmt_pid)
            && ok(self.video_pid)
            && self.pmt_pid != self.video_pid
            && self.program_number != 0
    }

    /// [`is_valid`](Self::is_valid), and `audio_pid` is usable too and
    /// distinct from the PMT and video PIDs.
    pub fn is_valid_with_audio(&self, audio_pid: u16) -> bool {
        self.is_valid()
            && (0x10..0x1fff).contains(&audio_pid)
            && audio_pid != self.pmt_pid
            && audio_pid != self.video_pid
    }
}

/// Turns timestamped Annex B access units into transport packets.
///
/// Sans-IO: every call appends whole packets to the caller's buffer.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    cfg: TsConfig,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    /// PID of the AAC stream, if the program has one.
    audio_pid: Option<u16>,
    cc_audio: u8,
}

impl TsMuxer {
    /// A muxer with all continuity counters at 0.
    pub fn new(cfg: TsConfig) -> Self {
        TsMuxer {
            cfg,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            audio_pid: None,
            cc_audio: 0,
        }
    }

    /// A muxer whose program also has an AAC stream on `audio_pid` (13
    /// bits; check it with [`TsConfig::is_valid_with_audio`]), written with
    /// [`write_audio`](Self::write_audio) or [`write_aac`](Self::write_aac).
    pub fn with_audio(cfg: TsConfig, audio_pid: u16) -> Self {
        TsMuxer {
            audio_pid: Some(audio_pid & 0x1fff),
            ..TsMuxer::new(cfg)
        }
    }

    /// The audio PID, if the program has audio.
    pub fn audio_pid(&self) -> Option<u16> {
        self.audio_pid
    }

    /// The configuration this muxer writes.
    pub fn config(&self) -> &TsConfig {
        &self.cfg
    }

    /// Writes PAT then PMT (one packet each, stuffed with 0xFF), advancing their continuity counters.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let pat = self.pat_section();
        write_psi(out, 0, next_cc(&mut self.cc_pat), &pat);
        let pmt = self.pmt_section();
        write_psi(out, self.cfg.pmt_pid, next_cc(&mut self.cc_pmt), &pmt);
    }

    /// Writes one access unit (Annex-B bytes, as given) as a single PES on the video PID.
    ///
    /// * If `keyframe`, PAT and PMT go first so a receiver joining here can
    ///   decode, and the first packet sets `random_access_indicator`.
    /// * The first packet of every PES carries a PCR equal to the DTS
    ///   (base = DTS mod 2^33, extension 0). This puts the system clock at
    ///   the decode time as the access unit starts arriving, i.e. a zero
    ///   decoder-buffer delay: the timestamps stay exactly as captured, which
    ///   the sinks rely on, and live receivers (HLS players, SRT gateways)
    ///   buffer on their own. A caller that needs a strict T-STD margin can
    ///   add a constant to both PTS and DTS.
    /// * An AUD is inserted in front unless the access unit already starts
    ///   with one.
    /// * PES: `stream_id` 0xE0, `PES_packet_length` 0 (unbounded, allowed
    ///   only for video, §2.4.3.7), `data_alignment_indicator` set, PTS only
    ///   when `pts == dts`, else PTS and DTS.
    /// * The last packet is filled out with adaptation-field stuffing.
    pub fn write_video(
        &mut self,
        pts: Ticks90k,
        dts: Ticks90k,
        keyframe: bool,
        annexb: &[u8],
        out: &mut Vec<u8>,
    ) {
        if keyframe {
            self.write_tables(out);
        }

        let mut pes_header = [0u8; 19];
        let header_len = write_pes_header(&mut pes_header, pts, dts);
        let has_aud = split_annexb(annexb).next().and_then(NalType::of) == Some(NalType::Aud);
        let aud: &[u8] = if has_aud { &[] } else { &AUD };
        let mut payload = Chain {
            parts: [pes_header.get(..header_len).unwrap_or(&[]), aud, annexb],
        };

        // Adaptation field of the first packet: flags + PCR, 7 bytes.
        let mut pcr_af = [0u8; 7];
        pcr_af[0] = 0x10 | if keyframe { 0x40 } else { 0 }; // PCR_flag, random_access_indicator
        write_pcr(&mut pcr_af[1..], dts.wrapped33(), 0);

        let total = payload.len();
        out.reserve(
            (total / (MAX_PAYLOAD - 8))
                .saturating_add(1)
                .saturating_mul(PACKET_SIZE),
        );

        let pid = self.cfg.video_pid;
        let mut first = true;
        loop {
            let af: &[u8] = if first { &pcr_af } else { &[] };
            let cc = next_cc(&mut self.cc_video);
            write_pes_packet(out, pid, first, cc, af, &mut payload);
            first = false;
            if payload.is_empty() {
                break;
            }
        }
    }

    /// Writes ADTS audio (one or more whole ADTS frames, as given) as a PES
    /// on the audio PID, `pts` being the time of the first frame. Does
    /// nothing if the muxer was made without audio.
    ///
    /// * PES: `stream_id` 0xC0, PTS only, `data_alignment_indicator` set
    ///   (the payload starts with an ADTS syncword, §2.4.3.7), and
    ///   `PES_packet_length` set, as audio requires. Input over one PES
    ///   (65 527 bytes) continues in further PES without a PTS and without
    ///   the alignment flag.
    /// * No PCR and no tables: those ride on the video (tables go out with
    ///   every keyframe; write a keyframe or [`write_tables`](Self::write_tables)
    ///   before the first audio so a receiver knows the PID).
    /// * The last packet of each PES is filled with adaptation-field stuffing.
    pub fn write_audio(&mut self, pts: Ticks90k, adts: &[u8], out: &mut Vec<u8>) {
        self.write_audio_parts(pts, &[], adts, out);
    }

    /// Writes one raw AAC frame (one `raw_data_block`, as FLV and MP4 carry
    /// it) as [`write_audio`](Self::write_audio) does, behind the ADTS
    /// header `config` makes for it. Fails, writing nothing, only if the
    /// frame is too long for ADTS (over 8184 bytes).
    pub fn write_aac(
        &mut self,
        pts: Ticks90k,
        config: &AudioSpecificConfig,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AacError> {
        let header = config.adts_header(raw.len())?;
        self.write_audio_parts(pts, &header, raw, out);
        Ok(())
    }

    fn write_audio_parts(&mut self, pts: Ticks90k, head: &[u8], body: &[u8], out: &mut Vec<u8>) {
        let Some(pid) = self.audio_pid else {
            return;
        };
        let mut rest = Chain {
            parts: [head, body, &[]],
        };
        let mut first = true;
        loop {
            // Optional fields: 5 bytes of PTS in the first PES only.
            let header_len = if first { 14 } else { 9 };
            let room = MAX_PES_PACKET_LENGTH - (header_len - 6);
            let take = rest.len().min(room);
            let [h, b, _] = rest.parts;
            let (h_now, h_later) = h.split_at(take.min(h.len()));
            let (b_now, b_later) = b.split_at(take - h_now.len());
            rest.parts = [h_later, b_later, &[]];

            let mut pes_header = [0u8; 14];
            let pes_len = ((header_len - 6) + take) as u16;
            pes_header[..6].copy_from_slice(&[0x00, 0x00, 0x01, STREAM_ID_AUDIO, 0, 0]);
            pes_header[4..6].copy_from_slice(&pes_len.to_be_bytes());
            if first {
                pes_header[6..9].copy_from_slice(&[0x84, 0x80, 0x05]); // aligned, PTS only
                write_timestamp(&mut pes_header[9..14], 0b0010, pts.wrapped33());
            } else {
                pes_header[6..9].copy_from_slice(&[0x80, 0x00, 0x00]); // no flags
            }
            let mut payload = Chain {
                parts: [pes_header.get(..header_len).unwrap_or(&[]), h_now, b_now],
            };
            let mut pusi = true;
            loop {
                let cc = next_cc(&mut self.cc_audio);
                write_pes_packet(out, pid, pusi, cc, &[], &mut payload);
                pusi = false;
                if payload.is_empty() {
                    break;
                }
            }
            first = false;
            if rest.is_empty() {
                break;
            }
        }
    }

    // Layouts kept one field per line, as in the syntax tables.
    #[rustfmt::skip]
    fn pat_section(&self) -> Vec<u8> {
        let [tsid_hi, tsid_lo] = self.cfg.transport_stream_id.to_be_bytes();
        let [prog_hi, prog_lo] = self.cfg.program_number.to_be_bytes();
        let [pid_hi, pid_lo] = (self.cfg.pmt_pid & 0x1fff).to_be_bytes();
        finish_section(&[
            0x00,             // table_id: program_association_section
            0xb0, 0x00,       // section_syntax_indicator, '0', reserved, section_length (filled in)
            tsid_hi, tsid_lo, // transport_stream_id
            0xc1,             // reserved, version_number 0, current_next_indicator 1
            0x00, 0x00,       // section_number, last_section_number
            prog_hi, prog_lo, // program_number
            0xe0 | pid_hi, pid_lo, // reserved, program_map_PID
        ])
    }

    #[rustfmt::skip]
    fn pmt_section(&self) -> Vec<u8> {
        let [prog_hi, prog_lo] = self.cfg.program_number.to_be_bytes();
        let [pid_hi, pid_lo] = (self.cfg.video_pid & 0x1fff).to_be_bytes();
        let mut body = alloc::vec![
            0x02,             // table_id: TS_program_map_section
            0xb0, 0x00,       // section_syntax_indicator, '0', reserved, section_length (filled in)
            prog_hi, prog_lo, // program_number
            0xc1,             // reserved, version_number 0, current_next_indicator 1
            0x00, 0x00,       // section_number, last_section_number
            0xe0 | pid_hi, pid_lo, // reserved, PCR_PID = the video PID
            0xf0, 0x00,       // reserved, program_info_length 0
            STREAM_TYPE_H264, // stream_type
            0xe0 | pid_hi, pid_lo, // reserved, elementary_PID
            0xf0, 0x00,       // reserved, ES_info_length 0
        ];
        if let Some(audio) = self.audio_pid {
            let [a_hi, a_lo] = (audio & 0x1fff).to_be_bytes();
            body.extend_from_slice(&[
                STREAM_TYPE_AAC_ADTS, // stream_type
                0xe0 | a_hi, a_lo,    // reserved, elementary_PID
                0xf0, 0x00,           // reserved, ES_info_length 0
            ]);
        }
        finish_section(&body)
    }
}

/// Returns the counter to use and advances it (4 bits, §2.4.3.3). Every
/// packet this muxer writes has a payload, so every packet advances it.
fn next_cc(cc: &mut u8) -> u8 {
    let now = *cc & 0x0f;
    *cc = (now + 1) & 0x0f;
    now
}

/// Fills in `section_length` and appends the CRC.
fn finish_section(body: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(body.len() + 4);
    s.extend_from_slice(body);
    // Bytes after the length field, CRC included; sections here are tiny.
    let len = (body.len() - 3 + 4) as u16;
    if let Some(b) = s.get_mut(1) {
        *b |= (len >> 8) as u8 & 0x0f;
    }
    if let Some(b) = s.get_mut(2) {
        *b = len as u8;
    }
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn write_header(out: &mut Vec<u8>, pid: u16, pusi: bool, has_af: bool, cc: u8) {
    let [pid_hi, pid_lo] = (pid & 0x1fff).to_be_bytes();
    out.extend_from_slice(&[
        SYNC_BYTE,
        if pusi { 0x40 } else { 0 } | pid_hi,
        pid_lo,
        // not scrambled; adaptation_field_control 01 (payload) or 11 (both)
        if has_af { 0x30 } else { 0x10 } | (cc & 0x0f),
    ]);
}

/// One packet holding a whole PSI section: pointer_field 0, the section, 0xFF fill (§2.4.4).
fn write_psi(out: &mut Vec<u8>, pid: u16, cc: u8, section: &[u8]) {
    let start = out.len();
    write_header(out, pid, true, false, cc);
    out.push(0x00); // pointer_field
    out.extend_from_slice(section);
    out.resize(start + PACKET_SIZE, 0xff);
}

/// Writes one PES-carrying packet, taking as much of `payload` as fits and
/// stuffing the adaptation field when what is left is shorter than the room.
fn write_pes_packet(
    out: &mut Vec<u8>,
    pid: u16,
    first: bool,
    cc: u8,
    af_body: &[u8],
    payload: &mut Chain<'_>,
) {
    let af_size = if af_body.is_empty() {
        0
    } else {
        1 + af_body.len()
    };
    let room = MAX_PAYLOAD - af_size;
    let take = payload.len().min(room);
    let stuffing = room - take;
    let has_af = af_size > 0 || stuffing > 0;
    write_header(out, pid, first, has_af, cc);
    if af_size > 0 {
        out.push((af_body.len() + stuffing) as u8); // adaptation_field_length
        out.extend_from_slice(af_body);
        out.resize(out.len() + stuffing, 0xff);
    } else if stuffing == 1 {
        out.push(0); // a zero-length adaptation field is one byte of stuffing
    } else if stuffing > 1 {
        out.push((stuffing - 1) as u8);
        out.push(0x00); // no flags
        out.resize(out.len() + stuffing - 2, 0xff);
    }
    payload.take_into(take, out);
}

/// Writes the PES header (§2.4.3.7) into `buf`, returning its length.
fn write_pes_header(buf: &mut [u8; 19], pts: Ticks90k, dts: Ticks90k) -> usize {
    let with_dts = pts != dts;
    buf[..6].copy_from_slice(&[0x00, 0x00, 0x01, STREAM_ID_VIDEO, 0x00, 0x00]);
    buf[6] = 0x84; // '10', not scrambled, priority 0, data_alignment_indicator 1
    buf[7] = if with_dts { 0xc0 } else { 0x80 }; // PTS_DTS_flags
    buf[8] = if with_dts { 10 } else { 5 }; // PES_header_data_length
    if with_dts {
        write_timestamp(&mut buf[9..14], 0b0011, pts.wrapped33());
        write_timestamp(&mut buf[14..19], 0b0001, dts.wrapped33());
        19
    } else {
        write_timestamp(&mut buf[9..14], 0b0010, pts.wrapped33());
        14
    }
}

/// A 33-bit PTS or DTS in its 5-byte form: 4-bit prefix, then 3+15+15 bits
/// each followed by a marker bit.
fn write_timestamp(buf: &mut [u8], prefix: u8, ts: u64) {
    let bytes = [
        (prefix << 4) | (((ts >> 30) & 0x07) as u8) << 1 | 1,
        (ts >> 22) as u8,
        (((ts >> 15) & 0x7f) as u8) << 1 | 1,
        (ts >> 7) as u8,
        ((ts & 0x7f) as u8) << 1 | 1,
    ];
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = src;
    }
}

/// The 6-byte PCR: 33-bit base, 6 reserved ones, 9-bit extension.
fn write_pcr(buf: &mut [u8], base: u64, ext: u16) {
    let bytes = [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        ((base & 1) as u8) << 7 | 0x7e | ((ext >> 8) & 1) as u8,
        ext as u8,
    ];
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = src;
    }
}

/// The PES as three borrowed pieces, so the access unit is copied once,
/// straight into the packets, instead of first into a PES buffer.
struct Chain<'a> {
    parts: [&'a [u8]; 3],
}

impl Chain<'_> {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.is_empty())
    }

    fn take_into(&mut self, mut n: usize, out: &mut Vec<u8>) {
        for part in self.parts.iter_mut() {
            let k = n.min(part.len());
            let (head, tail) = part.split_at(k);
            out.extend_from_slice(head);
            *part = tail;
            n -= k;
        }
    }
}

/// Transport packets in one datagram message ([`MESSAGE_SIZE`]).
pub const PACKETS_PER_MESSAGE: usize = 7;
/// Payload of one SRT (or MPEG-TS over UDP) message: seven packets, 1316
/// bytes, the most that fit a 1500-byte Ethernet MTU under the IP, UDP and
/// SRT headers, and what every SRT receiver expects.
pub const MESSAGE_SIZE: usize = PACKETS_PER_MESSAGE * PACKET_SIZE;
/// Header of a null packet (§2.4.3.3: PID 0x1FFF, `adaptation_field_control`
/// '01', continuity counter 0, which receivers do not check for this PID).
/// Receivers discard null packets.
pub const NULL_PACKET_HEADER: [u8; 4] = [SYNC_BYTE, 0x1f, 0xff, 0x10];

/// Cuts whole transport packets into messages of exactly [`MESSAGE_SIZE`]
/// bytes and hands each to `out`, in order. The last message is filled up
/// with null packets (the header, then 0xFF) rather than held back for the
/// next frame, so no frame waits for its successor. A trailing partial
/// packet (never produced by [`TsMuxer`]) is dropped; no whole packet, no
/// message.
pub fn pack_messages(ts: &[u8], mut out: impl FnMut(&[u8])) {
    let whole = ts.len() - ts.len() % PACKET_SIZE;
    for chunk in ts[..whole].chunks(MESSAGE_SIZE) {
        if chunk.len() == MESSAGE_SIZE {
            out(chunk);
            continue;
        }
        let mut m = [0xff; MESSAGE_SIZE];
        m[..chunk.len()].copy_from_slice(chunk);
        for null in m[chunk.len()..].chunks_exact_mut(PACKET_SIZE) {
            null[..NULL_PACKET_HEADER.len()].copy_from_slice(&NULL_PACKET_HEADER);
        }
        out(&m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A whole packet: `head` followed by `fill` up to 188 bytes.
    fn packet(head: &[u8], fill: u8) -> Vec<u8> {
        let mut p = head.to_vec();
        p.resize(PACKET_SIZE, fill);
        p
    }

    /// What [`pack_messages`] hands out, collected.
    fn messages(ts: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        pack_messages(ts, |m| out.push(m.to_vec()));
        out
    }

    #[test]
    fn messages_are_seven_packets_padded_with_null_packets() {
        let ts: Vec<u8> = (0..9)
            .flat_map(|i| packet(&[0x47, 0x01, 0x00, 0x10 | i as u8], i as u8))
            .collect();
        let out = messages(&ts);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|m| m.len() == MESSAGE_SIZE));
        assert_eq!(MESSAGE_SIZE, 1316);
        assert_eq!(&out[0][..], &ts[..MESSAGE_SIZE]);
        assert_eq!(&out[1][..2 * PACKET_SIZE], &ts[MESSAGE_SIZE..]);
        let null = packet(&[0x47, 0x1f, 0xff, 0x10], 0xff);
        assert_eq!(out[1][2 * PACKET_SIZE..], null.repeat(5)[..]);
        // Exactly seven packets: no padding message.
        assert_eq!(messages(&ts[..MESSAGE_SIZE]), [&ts[..MESSAGE_SIZE]]);
        assert!(messages(&[]).is_empty());
        // A trailing partial packet is dropped; less than one packet is
        // nothing.
        assert_eq!(messages(&ts[..MESSAGE_SIZE + 187]), [&ts[..MESSAGE_SIZE]]);
        assert!(messages(&ts[..187]).is_empty());
        // One packet: itself and six null packets.
        assert_eq!(
            messages(&ts[..PACKET_SIZE]),
            [[&ts[..PACKET_SIZE], &null.repeat(6)[..]].concat()]
        );
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
        assert_eq!(crc32_mpeg2(b""), 0xffff_ffff);
    }

    const PAT: [u8; 21] = [
        0x47, 0x40, 0x00, 0x10, // sync, PUSI + PID 0, payload only, CC 0
        0x00, // pointer_field
        0x00, 0xb0, 0x0d, // table_id 0, section_length 13
        0x00, 0x01, // transport_stream_id 1
        0xc1, 0x00, 0x00, // version 0, current, section 0 of 0
        0x00, 0x01, 0xf0, 0x00, // program 1 -> PMT PID 0x1000
        0x2a, 0xb1, 0x04, 0xb2, // CRC_32
    ];

    const PMT: [u8; 26] = [
        0x47, 0x50, 0x00, 0x10, // PUSI + PID 0x1000, CC 0
        0x00, // pointer_field
        0x02, 0xb0, 0x12, // table_id 2, section_length 18
        0x00, 0x01, // program_number 1
        0xc1, 0x00, 0x00, // version 0, current, section 0 of 0
        0xe1, 0x00, // PCR_PID 0x100
        0xf0, 0x00, // program_info_length 0
        0x1b, 0xe1, 0x00, 0xf0, 0x00, // H.264 on PID 0x100, no descriptors
        0x15, 0xbd, 0x4d, 0x56, // CRC_32
    ];

    #[test]
    fn pat_and_pmt_bytes() {
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        mux.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET_SIZE);
        assert_eq!(&out[..PACKET_SIZE], &packet(&PAT, 0xff)[..]);
        assert_eq!(&out[PACKET_SIZE..], &packet(&PMT, 0xff)[..]);
        // A section checks to zero including its CRC.
        assert_eq!(crc32_mpeg2(&PAT[5..]), 0);
        assert_eq!(crc32_mpeg2(&PMT[5..]), 0);
        // Second round: continuity counters advanced to 1.
        out.clear();
        mux.write_tables(&mut out);
        assert_eq!(out[3], 0x11);
        assert_eq!(out[PACKET_SIZE + 3], 0x11);
    }

    #[test]
    fn timestamp_encoding() {
        let mut b = [0u8; 5];
        write_timestamp(&mut b, 0b0010, Ticks90k(90_000).wrapped33());
        assert_eq!(b, [0x21, 0x00, 0x05, 0xbf, 0x21]);
        // Above 2^32, and unwrapped one full cycle higher: same bytes.
        write_timestamp(
            &mut b,
            0b0011,
            Ticks90k(0x1_2345_6789 + (1 << 33)).wrapped33(),
        );
        assert_eq!(b, [0x39, 0x8d, 0x15, 0xcf, 0x13]);
        write_timestamp(&mut b, 0b0001, 0x1_2345_6789 - 3000);
        assert_eq!(b, [0x19, 0x8d, 0x15, 0xb7, 0xa3]);
        write_timestamp(&mut b, 0b0010, (1 << 33) - 1);
        assert_eq!(b, [0x2f, 0xff, 0xff, 0xff, 0xff]);

        let mut p = [0u8; 6];
        write_pcr(&mut p, 90_000, 0);
        assert_eq!(p, [0x00, 0x00, 0xaf, 0xc8, 0x7e, 0x00]);
        write_pcr(&mut p, (1 << 33) - 1, 299);
        assert_eq!(p, [0xff, 0xff, 0xff, 0xff, 0xff, 0x2b]);
    }

    const IDR_AU: [u8; 10] = [0x00, 0x00, 0x00, 0x01, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff];

    #[test]
    fn small_keyframe_in_one_packet() {
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        mux.write_video(Ticks90k(90_000), Ticks90k(90_000), true, &IDR_AU, &mut out);
        assert_eq!(out.len(), 3 * PACKET_SIZE);
        assert_eq!(&out[..PACKET_SIZE], &packet(&PAT, 0xff)[..]);
        assert_eq!(&out[PACKET_SIZE..2 * PACKET_SIZE], &packet(&PMT, 0xff)[..]);

        let mut want = vec![
            0x47, 0x41, 0x00, 0x30, // PUSI + PID 0x100, adaptation + payload, CC 0
            153,  // adaptation_field_length: 7 + 146 stuffing
            0x50, // random_access_indicator, PCR_flag
            0x00, 0x00, 0xaf, 0xc8, 0x7e, 0x00, // PCR base 90000, ext 0
        ];
        want.resize(4 + 1 + 153, 0xff);
        want.extend_from_slice(&[
            0x00, 0x00, 0x01, 0xe0, 0x00, 0x00, // start code, stream_id, length 0
            0x84, 0x80, 0x05, // data_alignment, PTS only, 5 header bytes
            0x21, 0x00, 0x05, 0xbf, 0x21, // PTS 90000
            0x00, 0x00, 0x00, 0x01, 0x09, 0xf0, // inserted AUD
        ]);
        want.extend_from_slice(&IDR_AU);
        assert_eq!(want.len(), PACKET_SIZE);
        assert_eq!(&out[2 * PACKET_SIZE..], &want[..]);
    }

    #[test]
    fn existing_aud_is_kept_and_dts_written() {
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        let au = [0, 0, 0, 1, 0x09, 0x30, 0, 0, 1, 0x41, 0x9a];
        mux.write_video(Ticks90k(93_000), Ticks90k(90_000), false, &au, &mut out);
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(&out[..6], &[0x47, 0x41, 0x00, 0x30, 0x07 + 146, 0x10]);
        let pes = &out[PACKET_SIZE - 19 - au.len()..];
        assert_eq!(
            &pes[..19],
            &[
                0x00, 0x00, 0x01, 0xe0, 0x00, 0x00, 0x84, 0xc0, 0x0a, // PTS+DTS, 10 bytes
                0x31, 0x00, 0x05, 0xd6, 0x91, // PTS 93000
                0x11, 0x00, 0x05, 0xbf, 0x21, // DTS 90000
            ]
        );
        assert_eq!(&pes[19..], &au);
    }

    #[test]
    fn large_access_unit_spans_packets() {
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut au = vec![0, 0, 0, 1, 0x65];
        au.extend((0..5000u32).map(|i| (i % 251) as u8 | 1));
        let mut out = Vec::new();
        for frame in 0..3u64 {
            out.clear();
            mux.write_video(
                Ticks90k(frame * 3000),
                Ticks90k(frame * 3000),
                frame == 0,
                &au,
                &mut out,
            );
            assert_eq!(out.len() % PACKET_SIZE, 0);
            let packets: Vec<&[u8]> = out.chunks(PACKET_SIZE).collect();
            let video: Vec<&[u8]> = packets
                .iter()
                .copied()
                .filter(|p| u16::from_be_bytes([p[1] & 0x1f, p[2]]) == 0x100)
                .collect();
            assert_eq!(packets.len() - video.len(), if frame == 0 { 2 } else { 0 });
            // 14 + 6 + 5005 = 5025 bytes: 176 in the first, then 184 each.
            assert_eq!(video.len(), 1 + (5025 - 176usize).div_ceil(184));
            for (i, p) in video.iter().enumerate() {
                assert_eq!(p[0], 0x47);
                assert_eq!(p[1] & 0x40 != 0, i == 0, "PUSI only on the first");
                let cc = (frame as usize * video.len() + i) % 16;
                assert_eq!(usize::from(p[3] & 0x0f), cc, "continuity counter");
            }
            // Payload reassembles to the PES.
            let mut pes = Vec::new();
            for p in &video {
                let body = if p[3] & 0x20 != 0 {
                    &p[5 + usize::from(p[4])..]
                } else {
                    &p[4..]
                };
                pes.extend_from_slice(body);
            }
            assert_eq!(&pes[14..20], &AUD);
            assert_eq!(&pes[20..], &au[..]);
        }
    }

    #[test]
    fn one_byte_stuffing() {
        // PES of 14 + 6 + n bytes; choose n so the second packet is 183 bytes.
        let n = 176 + 183 - 20;
        let mut au = vec![0, 0, 1, 0x41];
        au.resize(n, 0x55);
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        mux.write_video(Ticks90k(0), Ticks90k(0), false, &au, &mut out);
        assert_eq!(out.len(), 2 * PACKET_SIZE);
        assert_eq!(
            &out[PACKET_SIZE..PACKET_SIZE + 5],
            &[0x47, 0x01, 0x00, 0x31, 0x00]
        );
        assert_eq!(out[2 * PACKET_SIZE - 1], 0x55);
    }

    #[test]
    fn empty_access_unit_still_packetizes() {
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        mux.write_video(Ticks90k(u64::MAX), Ticks90k(0), true, &[], &mut out);
        assert_eq!(out.len(), 3 * PACKET_SIZE);
        assert!(out.chunks(PACKET_SIZE).all(|p| p[0] == 0x47));
    }

    const PMT_AV: [u8; 31] = [
        0x47, 0x50, 0x00, 0x10, // PUSI + PID 0x1000, CC 0
        0x00, // pointer_field
        0x02, 0xb0, 0x17, // table_id 2, section_length 23
        0x00, 0x01, // program_number 1
        0xc1, 0x00, 0x00, // version 0, current, section 0 of 0
        0xe1, 0x00, // PCR_PID 0x100: the video
        0xf0, 0x00, // program_info_length 0
        0x1b, 0xe1, 0x00, 0xf0, 0x00, // H.264 on PID 0x100, no descriptors
        0x0f, 0xe1, 0x01, 0xf0, 0x00, // AAC ADTS on PID 0x101, no descriptors
        0x2f, 0x44, 0xb9, 0x9b, // CRC_32
    ];

    /// The PES payload of the packets on `pid`, PES by PES.
    fn pes_on(out: &[u8], pid: u16) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = Vec::new();
        for p in out.chunks(PACKET_SIZE) {
            if u16::from_be_bytes([p[1] & 0x1f, p[2]]) != pid {
                continue;
            }
            let body = if p[3] & 0x20 != 0 {
                &p[5 + usize::from(p[4])..]
            } else {
                &p[4..]
            };
            if p[1] & 0x40 != 0 {
                all.push(Vec::new());
            }
            all.last_mut().unwrap().extend_from_slice(body);
        }
        all
    }

    #[test]
    fn pmt_lists_audio() {
        let mut mux = TsMuxer::with_audio(TsConfig::default(), DEFAULT_AUDIO_PID);
        assert_eq!(mux.audio_pid(), Some(0x101));
        assert_eq!(TsMuxer::new(TsConfig::default()).audio_pid(), None);
        let mut out = Vec::new();
        mux.write_tables(&mut out);
        assert_eq!(&out[..PACKET_SIZE], &packet(&PAT, 0xff)[..]);
        assert_eq!(&out[PACKET_SIZE..], &packet(&PMT_AV, 0xff)[..]);
        assert_eq!(crc32_mpeg2(&PMT_AV[5..]), 0);
        // A keyframe carries the same tables; the video packet is unchanged.
        let mut av = Vec::new();
        mux.write_video(Ticks90k(90_000), Ticks90k(90_000), true, &IDR_AU, &mut av);
        let mut v = Vec::new();
        TsMuxer::new(TsConfig::default()).write_video(
            Ticks90k(90_000),
            Ticks90k(90_000),
            true,
            &IDR_AU,
            &mut v,
        );
        assert_eq!(av.len(), 3 * PACKET_SIZE);
        assert_eq!(
            &av[PACKET_SIZE + 4..2 * PACKET_SIZE],
            &packet(&PMT_AV, 0xff)[4..]
        );
        assert_eq!(&av[2 * PACKET_SIZE..], &v[2 * PACKET_SIZE..]);
    }

    #[test]
    fn small_aac_frame_in_one_packet() {
        let mut mux = TsMuxer::with_audio(TsConfig::default(), DEFAULT_AUDIO_PID);
        let asc = AudioSpecificConfig::lc(48_000, 2).unwrap();
        let raw = [0x21, 0x10, 0x04];
        let mut out = Vec::new();
        mux.write_aac(Ticks90k(90_000), &asc, &raw, &mut out)
            .unwrap();
        assert_eq!(out.len(), PACKET_SIZE);
        // 14 + 7 + 3 = 24 payload bytes leave 160 of stuffing, no PCR.
        let mut want = vec![
            0x47, 0x41, 0x01, 0x30, // PUSI + PID 0x101, adaptation + payload, CC 0
            159,  // adaptation_field_length
            0x00, // no flags
        ];
        want.resize(4 + 160, 0xff);
        want.extend_from_slice(&[
            0x00, 0x00, 0x01, 0xc0, 0x00, 0x12, // start code, audio stream 0, length 18
            0x84, 0x80, 0x05, // data_alignment, PTS only, 5 header bytes
            0x21, 0x00, 0x05, 0xbf, 0x21, // PTS 90000
            0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc, // ADTS: LC 48 kHz stereo, 10 bytes
            0x21, 0x10, 0x04,
        ]);
        assert_eq!(out, want);
        // The same bytes through write_audio with the ADTS frame given.
        let mut adts = Vec::new();
        asc.write_adts(&raw, &mut adts).unwrap();
        let mut again = Vec::new();
        mux.write_audio(Ticks90k(90_000), &adts, &mut again);
        want[3] = 0x31; // CC 1
        assert_eq!(again, want);
    }

    #[test]
    fn long_audio_splits_into_bounded_pes() {
        let mut mux = TsMuxer::with_audio(TsConfig::default(), 0x1ff);
        let adts: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        mux.write_audio(Ticks90k(1 << 33), &adts, &mut out);
        assert_eq!(out.len() % PACKET_SIZE, 0);
        let pes = pes_on(&out, 0x1ff);
        assert_eq!(pes.len(), 2);
        // First: PTS (wrapped to 0), 65 527 bytes, length field at its maximum.
        assert_eq!(&pes[0][..9], &[0, 0, 1, 0xc0, 0xff, 0xff, 0x84, 0x80, 0x05]);
        assert_eq!(&pes[0][9..14], &[0x21, 0x00, 0x01, 0x00, 0x01]);
        assert_eq!(pes[0].len(), 6 + 0xffff);
        // Then the rest without PTS or alignment: 3 + 4473 bytes.
        assert_eq!(&pes[1][..9], &[0, 0, 1, 0xc0, 0x11, 0x7c, 0x80, 0x00, 0x00]);
        let mut joined = pes[0][14..].to_vec();
        joined.extend_from_slice(&pes[1][9..]);
        assert_eq!(joined, adts);
        for (i, p) in out.chunks(PACKET_SIZE).enumerate() {
            assert_eq!(usize::from(p[3] & 0x0f), i % 16, "continuity counter");
        }
    }

    #[test]
    fn audio_edge_cases() {
        // No audio stream: nothing written.
        let mut mux = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        mux.write_audio(Ticks90k(0), &[0xff, 0xf1], &mut out);
        let asc = AudioSpecificConfig::lc(44_100, 1).unwrap();
        mux.write_aac(Ticks90k(0), &asc, &[1], &mut out).unwrap();
        assert!(out.is_empty());
        // Too long for ADTS: refused, nothing written.
        let mut mux = TsMuxer::with_audio(TsConfig::default(), 0x101);
        assert_eq!(
            mux.write_aac(Ticks90k(0), &asc, &[0; 8185], &mut out),
            Err(AacError::FrameTooLong(8185))
        );
        assert!(out.is_empty());
        // The largest frame fits one PES; empty audio still makes a packet.
        mux.write_aac(Ticks90k(0), &asc, &[0; 8184], &mut out)
            .unwrap();
        assert_eq!(pes_on(&out, 0x101)[0].len(), 14 + 8191);
        out.clear();
        mux.write_audio(Ticks90k(0), &[], &mut out);
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(
            &out[PACKET_SIZE - 14..PACKET_SIZE - 8],
            &[0, 0, 1, 0xc0, 0, 8]
        );
    }

    #[test]
    fn config_validation() {
        assert!(TsConfig::default().is_valid());
        assert!(!TsConfig {
            video_pid: 0x1000,
            ..TsConfig::default()
        }
        .is_valid());
        assert!(!TsConfig {
            video_pid: 0x1fff,
            ..TsConfig::default()
        }
        .is_valid());
        assert!(!TsConfig {
            program_number: 0,
            ..TsConfig::default()
        }
        .is_valid());
        let cfg = TsConfig::default();
        assert!(cfg.is_valid_with_audio(DEFAULT_AUDIO_PID));
        assert!(!cfg.is_valid_with_audio(cfg.video_pid));
        assert!(!cfg.is_valid_with_audio(cfg.pmt_pid));
        assert!(!cfg.is_valid_with_audio(0x0f));
        assert!(!cfg.is_valid_with_audio(0x1fff));
    }
}
