//! Arbitrary segments pushed into a playlist: render never panics, the
//! window never exceeds its size, and the media and discontinuity sequence
//! numbers never go backwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::aes128::{sequence_iv, SegmentKey};
use roomcast_media::hls::{MediaPlaylist, Segment, Segmenter};
use roomcast_media::time::Ticks90k;

fuzz_target!(|data: &[u8]| {
    let Some((&window, rest)) = data.split_first() else {
        return;
    };
    let window = usize::from(window % 8);
    let mut pl = MediaPlaylist::new(u32::from(window as u8) + 1, window);
    let mut seg = Segmenter::new(Ticks90k(90_000));
    let (mut last_ms, mut last_ds) = (pl.media_sequence(), pl.discontinuity_sequence());
    for (i, c) in rest.chunks(9).enumerate() {
        let mut b = [0u8; 9];
        b[..c.len()].copy_from_slice(c);
        let value = u64::from_le_bytes([b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]]);
        let _ = seg.push(Ticks90k(value), b[0] & 1 == 1, Ticks90k(u64::from(b[1])));
        if b[0] & 2 != 0 {
            let _ = seg.reset();
        }
        pl.push(Segment {
            sequence: value.rotate_left(u32::from(b[0])),
            duration: Ticks90k(value),
            uri: format!("s{i}.ts"),
            program_date_time_ms: (b[0] & 4 != 0).then_some(value),
            discontinuity: b[0] & 8 != 0,
            // Keys come and go, and repeat, so every key transition is rendered.
            key: (b[0] & 16 != 0).then(|| SegmentKey {
                uri: format!("k{}.key", b[0] >> 6),
                iv: sequence_iv(u64::from(b[0] >> 5 & 1)),
            }),
        });
        assert!(pl.segments().count() <= window.max(1));
        assert!(pl.media_sequence() >= last_ms);
        assert!(pl.discontinuity_sequence() >= last_ds);
        last_ms = pl.media_sequence();
        last_ds = pl.discontinuity_sequence();
        let text = pl.render();
        assert!(text.starts_with("#EXTM3U\n"));
    }
});
