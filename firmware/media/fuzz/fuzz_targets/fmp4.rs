//! fMP4 writing on arbitrary bytes: the input, cut into access units at each
//! AUD start code, becomes one fragment. `write_fragment` never panics, the
//! boxes it writes tile the output exactly (moof + mdat, and the boxes inside
//! moof and traf), and trun's data offset and sample sizes cover the mdat
//! payload. Parameter sets found in the input also make an init segment
//! whose top-level boxes tile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::fmp4::{init_segment, write_fragment, Sample};
use roomcast_media::h264::{contains_idr, ParameterSets};
use roomcast_media::time::Ticks90k;

/// The (type, body) of each box in `data`, asserting that they tile it.
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "partial box header");
        let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as u64;
        let fourcc: [u8; 4] = rest[4..8].try_into().unwrap();
        let (size, header) = if size == 1 {
            (u64::from_be_bytes(rest[8..16].try_into().unwrap()), 16)
        } else {
            (size, 8)
        };
        let size = usize::try_from(size).unwrap();
        assert!(
            size >= header && size <= rest.len(),
            "box size out of bounds"
        );
        out.push((fourcc, &rest[header..size]));
        rest = &rest[size..];
    }
    out
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    // Access units start at each AUD start code (00 00 01 09).
    let mut cuts: Vec<usize> = stream
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0, 0, 1, 9])
        .map(|(i, _)| i)
        .collect();
    cuts.insert(0, 0);
    cuts.push(stream.len());
    cuts.dedup();
    let base = u64::from(ctl) << 28;
    let samples: Vec<Sample> = cuts
        .windows(2)
        .enumerate()
        .map(|(n, w)| {
            let au = &stream[w[0]..w[1]];
            let dts = Ticks90k(base + n as u64 * 3000);
            Sample {
                dts,
                // Some reordering: pts a few frames either side of dts.
                pts: Ticks90k((dts.0 + u64::from(ctl & 7) * 3000).saturating_sub(9000)),
                duration: 3000,
                keyframe: contains_idr(au),
                annexb: au,
            }
        })
        .collect();

    let mut out = vec![0xee; usize::from(ctl & 3)];
    let prefix = out.len();
    let n = write_fragment(u32::from(ctl), &samples, &mut out);
    assert_eq!(n, out.len() - prefix);
    let frag = &out[prefix..];
    if samples.is_empty() {
        assert_eq!(n, 0);
        return;
    }

    let top = boxes(frag);
    assert_eq!(top.len(), 2);
    let ((moof_t, moof), (mdat_t, mdat)) = (top[0], top[1]);
    assert_eq!((&moof_t, &mdat_t), (b"moof", b"mdat"));
    let moof_children = boxes(moof);
    assert_eq!(moof_children.len(), 2);
    assert_eq!(&moof_children[0].0, b"mfhd");
    assert_eq!(&moof_children[1].0, b"traf");
    let traf = boxes(moof_children[1].1);
    let types: Vec<&[u8; 4]> = traf.iter().map(|(t, _)| t).collect();
    assert_eq!(types, [b"tfhd", b"tfdt", b"trun"]);
    assert_eq!(&traf[1].1[4..], &samples[0].dts.0.to_be_bytes());

    let trun = traf[2].1;
    let count = be32(trun, 4) as usize;
    assert_eq!(count, samples.len());
    assert_eq!(trun.len(), 12 + 16 * count);
    let data_offset = be32(trun, 8) as usize;
    assert_eq!(
        data_offset,
        frag.len() - mdat.len(),
        "data offset is mdat payload"
    );
    let total: u64 = (0..count)
        .map(|i| u64::from(be32(trun, 12 + 16 * i + 4)))
        .sum();
    assert_eq!(total, mdat.len() as u64);
    // Every sample is whole length-prefixed NAL units.
    let mut at = 0;
    for i in 0..count {
        let end = at + be32(trun, 12 + 16 * i + 4) as usize;
        while at < end {
            at += 4 + be32(mdat, at) as usize;
        }
        assert_eq!(at, end);
    }

    if let Ok(ps) = ParameterSets::from_annexb(stream) {
        let init = init_segment(&ps);
        let top = boxes(&init);
        let types: Vec<&[u8; 4]> = top.iter().map(|(t, _)| t).collect();
        assert_eq!(types, [b"ftyp", b"moov"]);
    }
});
