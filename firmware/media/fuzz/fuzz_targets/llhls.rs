//! An arbitrary sequence of operations on a low-latency playlist (start,
//! push part, finish, hint, map or key change, blocking-reload decision,
//! render with and without `_HLS_skip`): nothing panics, the rendered
//! EXT-X-MEDIA-SEQUENCE matches `media_sequence()` and, like the
//! discontinuity sequence, never goes backwards, parts get consecutive
//! positions, and no EXT-X-MAP is written while a key is in force.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::aes128::{sequence_iv, SegmentKey};
use roomcast_media::llhls::{LlConfig, LlPart, LlPlaylist};
use roomcast_media::time::Ticks90k;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let mut pl = LlPlaylist::new(LlConfig {
        target_duration_s: u32::from(head & 7),
        part_target: Ticks90k(u64::from(head >> 3) * 9_000),
        window: usize::from(head & 7),
        init_uri: "i.mp4".into(),
    });
    let (mut last_ms, mut last_ds) = (pl.media_sequence(), pl.discontinuity_sequence());
    for (i, c) in rest.chunks(9).enumerate() {
        let mut b = [0u8; 9];
        b[..c.len()].copy_from_slice(c);
        let op = b[0];
        let value = u64::from_le_bytes([b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]]);
        // Mostly small numbers, so msns and part indexes collide and repeat.
        let small = if op & 0x80 != 0 { value } else { value & 0xff };
        match op % 8 {
            0 => {
                pl.start_segment(small, (op & 8 != 0).then_some(value), op & 16 != 0);
            }
            1 => {
                let before = pl.last_part();
                let pushed = pl.push_part(LlPart {
                    duration: Ticks90k(small),
                    uri: format!("p{i}.m4s"),
                    independent: op & 8 != 0,
                });
                if let Some(pos) = pushed {
                    assert_eq!(pl.last_part(), Some(pos));
                    assert!(before.map_or(true, |b| b < pos));
                    assert_eq!(
                        pl.find_part(&format!("p{i}.m4s")),
                        Some((pos.0, pos.1, true))
                    );
                }
            }
            2 => {
                pl.finish_segment(format!("s{i}.m4s"));
            }
            3 => pl.set_preload_hint((op & 8 != 0).then(|| format!("p{}.m4s", i + 1))),
            4 if op & 8 != 0 => pl.set_key((op & 16 != 0).then(|| SegmentKey {
                uri: format!("k{}.key", op >> 5),
                iv: sequence_iv(small),
            })),
            4 => pl.set_init_uri(format!("i{i}.mp4")),
            5 => {
                let part = (op & 8 != 0).then_some(b[8] as u32 % 16);
                let _ = pl.decide(small, part);
            }
            _ => {
                let _ = pl.find_part(&format!("p{small}.m4s"));
                let _ = pl.preload_hint();
            }
        }
        let ms = pl.media_sequence();
        assert!(ms >= last_ms, "media sequence went from {last_ms} to {ms}");
        assert!(pl.discontinuity_sequence() >= last_ds);
        last_ms = ms;
        last_ds = pl.discontinuity_sequence();
        for skip in [false, true] {
            let text = pl.render(skip);
            assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n"));
            let want = format!("\n#EXT-X-MEDIA-SEQUENCE:{ms}\n");
            assert!(text.contains(&want), "{text}");
            assert!(text.matches("#EXT-X-SKIP:").count() <= usize::from(skip));
            // The init segment is never under a key.
            let mut keyed = false;
            for line in text.lines() {
                if line.starts_with("#EXT-X-KEY:") {
                    keyed = line != "#EXT-X-KEY:METHOD=NONE";
                }
                assert!(!(keyed && line.starts_with("#EXT-X-MAP:")), "{text}");
            }
        }
    }
});
