//! Checks that a downloaded HLS segment is whole MPEG-TS (ISO/IEC 13818-1):
//! a whole number of 188-byte packets, each starting with the 0x47 sync
//! byte and without the transport error flag, and a PAT on PID 0 whose
//! section CRC-32 verifies.

use roomcast_media::ts::{crc32_mpeg2, PACKET_SIZE};

const SYNC: u8 = 0x47;

/// What a valid segment contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsSummary {
    /// Transport packets in the segment.
    pub packets: usize,
    /// Packets carrying PID 0 with a section start (PATs).
    pub pats: usize,
    /// From the first PAT: `(program_number, PMT PID)` pairs (program 0,
    /// the network PID, is left out).
    pub programs: Vec<(u16, u16)>,
}

/// Why a segment is not whole MPEG-TS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    #[error("empty segment")]
    Empty,
    #[error("{len} bytes is not a whole number of 188-byte packets ({} left over)", len % PACKET_SIZE)]
    Truncated { len: usize },
    #[error("packet {packet} (byte {offset}) starts with 0x{byte:02x}, not the 0x47 sync byte")]
    LostSync {
        packet: usize,
        offset: usize,
        byte: u8,
    },
    #[error("packet {packet} has the transport_error_indicator set")]
    TransportError { packet: usize },
    #[error("no PAT (PID 0 with a section start) in the segment")]
    NoPat,
    #[error("PAT in packet {packet} is malformed: {reason}")]
    BadPat { packet: usize, reason: &'static str },
    #[error("PAT in packet {packet} fails its CRC-32 check (stored 0x{stored:08x})")]
    PatCrc { packet: usize, stored: u32 },
}

/// Checks `seg`; every PAT that starts in a packet is verified, and the
/// first one is summarised.
pub fn check_segment(seg: &[u8]) -> Result<TsSummary, TsError> {
    if seg.is_empty() {
        return Err(TsError::Empty);
    }
    if !seg.len().is_multiple_of(PACKET_SIZE) {
        return Err(TsError::Truncated { len: seg.len() });
    }
    let mut summary = TsSummary {
        packets: seg.len() / PACKET_SIZE,
        pats: 0,
        programs: Vec::new(),
    };
    for (packet, p) in seg.chunks_exact(PACKET_SIZE).enumerate() {
        if p[0] != SYNC {
            return Err(TsError::LostSync {
                packet,
                offset: packet * PACKET_SIZE,
                byte: p[0],
            });
        }
        if p[1] & 0x80 != 0 {
            return Err(TsError::TransportError { packet });
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if pid != 0 || !pusi {
            continue;
        }
        let programs = check_pat(p).map_err(|e| match e {
            PatProblem::Malformed(reason) => TsError::BadPat { packet, reason },
            PatProblem::Crc(stored) => TsError::PatCrc { packet, stored },
        })?;
        if summary.pats == 0 {
            summary.programs = programs;
        }
        summary.pats += 1;
    }
    if summary.pats == 0 {
        return Err(TsError::NoPat);
    }
    Ok(summary)
}

enum PatProblem {
    Malformed(&'static str),
    Crc(u32),
}

/// Parses the PAT section starting in packet `p` (which must fit in it, as
/// every PAT with fewer than ~40 programs does).
fn check_pat(p: &[u8]) -> Result<Vec<(u16, u16)>, PatProblem> {
    use PatProblem::Malformed as M;
    let afc = (p[3] >> 4) & 0x3;
    let mut i = 4;
    match afc {
        0b01 => {}
        0b11 => i += 1 + usize::from(*p.get(4).ok_or(M("truncated"))?),
        _ => return Err(M("packet has no payload")),
    }
    let pointer = usize::from(*p.get(i).ok_or(M("adaptation field fills the packet"))?);
    i += 1 + pointer;
    let section = p
        .get(i..)
        .ok_or(M("pointer_field points past the packet"))?;
    if section.len() < 3 {
        return Err(M("section header does not fit in the packet"));
    }
    if section[0] != 0x00 {
        return Err(M("table_id is not 0 (program_association_section)"));
    }
    if section[1] & 0x80 == 0 {
        return Err(M("section_syntax_indicator is 0"));
    }
    let len = usize::from(u16::from_be_bytes([section[1] & 0x0f, section[2]]));
    if !(9..=1021).contains(&len) {
        return Err(M("section_length out of range"));
    }
    let whole = section
        .get(..3 + len)
        .ok_or(M("section does not fit in its packet"))?;
    if crc32_mpeg2(whole) != 0 {
        let stored =
            u32::from_be_bytes([whole[len - 1], whole[len], whole[len + 1], whole[len + 2]]);
        return Err(PatProblem::Crc(stored));
    }
    let loop_bytes = &whole[8..3 + len - 4];
    if loop_bytes.len() % 4 != 0 {
        return Err(M("program loop is not a whole number of entries"));
    }
    Ok(loop_bytes
        .chunks_exact(4)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u16::from_be_bytes([e[2] & 0x1f, e[3]]),
            )
        })
        .filter(|&(program, _)| program != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_media::time::Ticks90k;
    use roomcast_media::ts::{TsConfig, TsMuxer};

    /// Two access units as the muxer writes them: PAT+PMT+video, then video.
    fn segment() -> Vec<u8> {
        let mut m = TsMuxer::new(TsConfig::default());
        let mut out = Vec::new();
        let idr = [0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0xa0];
        let mut big = vec![0, 0, 0, 1, 0x41];
        big.resize(700, 0x5a);
        m.write_video(Ticks90k(900_000), Ticks90k(900_000), true, &idr, &mut out);
        m.write_video(Ticks90k(903_000), Ticks90k(903_000), false, &big, &mut out);
        m.write_video(Ticks90k(906_000), Ticks90k(906_000), true, &idr, &mut out);
        out
    }

    #[test]
    fn muxer_output_passes() {
        let s = check_segment(&segment()).unwrap();
        assert!(s.packets >= 8, "{s:?}");
        assert_eq!(s.pats, 2);
        assert_eq!(s.programs, [(1, 0x1000)]);
    }

    #[test]
    fn truncation_and_lost_sync_are_caught() {
        let seg = segment();
        assert_eq!(check_segment(&[]), Err(TsError::Empty));
        assert_eq!(
            check_segment(&seg[..seg.len() - 1]),
            Err(TsError::Truncated { len: seg.len() - 1 })
        );
        // A byte lost in the middle: length no longer a multiple of 188.
        let mut cut = seg.clone();
        cut.remove(400);
        assert!(matches!(
            check_segment(&cut),
            Err(TsError::Truncated { .. })
        ));
        // Sync byte damaged in the third packet.
        let mut bad = seg.clone();
        bad[2 * PACKET_SIZE] = 0x48;
        assert_eq!(
            check_segment(&bad),
            Err(TsError::LostSync {
                packet: 2,
                offset: 376,
                byte: 0x48
            })
        );
        let mut tei = seg.clone();
        tei[PACKET_SIZE + 1] |= 0x80;
        assert_eq!(
            check_segment(&tei),
            Err(TsError::TransportError { packet: 1 })
        );
    }

    #[test]
    fn pat_damage_is_caught() {
        let seg = segment();
        // Flip a bit in the PAT's program loop (packet 0: header 4, pointer 1,
        // section header 8, then the loop).
        let mut crc = seg.clone();
        crc[4 + 1 + 8 + 3] ^= 0x01;
        assert!(matches!(
            check_segment(&crc),
            Err(TsError::PatCrc { packet: 0, .. })
        ));
        // The second PAT (second keyframe) is checked too.
        let second = seg
            .chunks_exact(PACKET_SIZE)
            .enumerate()
            .filter(|(_, p)| p[1] & 0x1f == 0 && p[2] == 0)
            .nth(1)
            .unwrap()
            .0;
        let mut crc2 = seg.clone();
        crc2[second * PACKET_SIZE + 20] ^= 0x80;
        assert!(matches!(
            check_segment(&crc2),
            Err(TsError::PatCrc { packet, .. }) if packet == second
        ));
        let mut table = seg.clone();
        table[5] = 0x02; // table_id of a PMT
        assert!(matches!(
            check_segment(&table),
            Err(TsError::BadPat { packet: 0, .. })
        ));
        let mut pointer = seg.clone();
        pointer[4] = 200;
        assert!(matches!(
            check_segment(&pointer),
            Err(TsError::BadPat { packet: 0, .. })
        ));
        // Remove every PAT: the segment is no longer self-contained.
        let no_pat: Vec<u8> = seg
            .chunks_exact(PACKET_SIZE)
            .filter(|p| !(p[1] & 0x1f == 0 && p[2] == 0))
            .flatten()
            .copied()
            .collect();
        assert_eq!(check_segment(&no_pat), Err(TsError::NoPat));
    }
}
