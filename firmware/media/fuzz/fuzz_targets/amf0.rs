//! `amf0::decode`/`decode_all` must return Ok or Err for any bytes, never
//! panic; what decodes must re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::amf0;

fuzz_target!(|data: &[u8]| {
    if let Ok((v, used)) = amf0::decode(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        amf0::encode(&v, &mut again);
        // NaN != NaN, so compare the bytes of the re-encoding instead.
        let (v2, used2) = amf0::decode(&again).expect("re-encoded value decodes");
        assert_eq!(used2, again.len());
        let mut third = Vec::new();
        amf0::encode(&v2, &mut third);
        assert_eq!(again, third);
    }
    let _ = amf0::decode_all(data);
});
