//! Annex B splitting and TS muxing on arbitrary bytes: every NAL unit is a
//! non-empty sub-slice, and the muxer always emits whole, synced packets
//! with continuous continuity counters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::h264::{split_annexb, NalType};
use roomcast_media::time::Ticks90k;
use roomcast_media::ts::{TsConfig, TsMuxer, PACKET_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, au)) = data.split_first() else {
        return;
    };
    for nal in split_annexb(au) {
        assert!(!nal.is_empty());
        assert_ne!(nal.last(), Some(&0));
        if let Some(t) = NalType::of(nal) {
            assert_eq!(t.id(), nal[0] & 0x1f);
        }
    }

    let mut mux = TsMuxer::new(TsConfig::default());
    let mut out = Vec::new();
    let dts = Ticks90k(u64::from(ctl) << 30);
    let pts = Ticks90k(dts.0 + u64::from(ctl & 0x0f) * 3000);
    // Write the unit twice so the continuity counters move past their first value.
    for _ in 0..2 {
        out.clear();
        mux.write_video(pts, dts, ctl & 1 == 1, au, &mut out);
        assert!(!out.is_empty());
        assert_eq!(out.len() % PACKET_SIZE, 0);
        for p in out.chunks(PACKET_SIZE) {
            assert_eq!(p[0], 0x47);
        }
    }
});
