//! `aes128::decrypt` of arbitrary bytes with a fixed key never panics: it
//! refuses lengths that are not whole blocks and bad padding; whatever it
//! accepts encrypts back to the same bytes (CBC with PKCS#7 is a bijection
//! on validly padded data).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::aes128::{decrypt, encrypt, sequence_iv, Aes128Error};

const KEY: [u8; 16] = *b"roomcast-fuzzkey";

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes, when there are that many, also pick the IV.
    let msn = data
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let iv = sequence_iv(msn);
    match decrypt(&KEY, &iv, data) {
        Ok(plain) => {
            assert!(plain.len() < data.len() && data.len() - plain.len() <= 16);
            assert_eq!(encrypt(&KEY, &iv, &plain), data);
        }
        Err(Aes128Error::Length(n)) => {
            assert_eq!(n, data.len());
            assert!(n == 0 || n % 16 != 0);
        }
        Err(Aes128Error::Padding) => assert!(!data.is_empty() && data.len() % 16 == 0),
    }
});
