//! `Sps::parse` must return Ok or Err for any bytes, never panic, and what
//! it accepts must be within the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::h264::Sps;

fuzz_target!(|data: &[u8]| {
    // Also try the input as an SPS payload, so the fuzzer need not find the
    // header byte before it can reach the interesting syntax.
    let mut with_header = Vec::with_capacity(data.len() + 1);
    with_header.push(0x67);
    with_header.extend_from_slice(data);
    for nal in [data, &with_header[..]] {
        if let Ok(sps) = Sps::parse(nal) {
            assert!(sps.width > 0 && sps.width <= 16_384);
            assert!(sps.height > 0 && sps.height <= 16_384);
            assert!(sps.seq_parameter_set_id <= 31);
            let _ = sps.profile_name();
            assert_eq!(sps.codecs_string().len(), "avc1.".len() + 6);
        }
    }
});
