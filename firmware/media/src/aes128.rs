//! HLS `METHOD=AES-128` (RFC 8216 §4.3.2.4, §5.2): whole resources
//! encrypted with AES-128 in CBC mode with PKCS#7 padding, and the
//! `EXT-X-KEY` tag that tells players how to decrypt them.
//!
//! * [`encrypt`] / [`decrypt`]: one resource (a segment, or one LL-HLS part:
//!   each is fetched on its own, so each is encrypted on its own, starting
//!   again from the IV).
//! * [`sequence_iv`]: the IV players assume when the tag gives none.
//! * [`key_tag`] and [`SegmentKey`]: the tag, and the key a playlist segment
//!   carries (`hls::Segment::key`, `llhls::LlSegment::key`).
//!
//! The cipher is RustCrypto's `aes` + `cbc` (constant-time AES with
//! hardware support where the CPU has it). [`decrypt`] is for tests and the
//! latency probe, not for untrusted peers: its padding check is not constant
//! time, which only matters to a server that reveals padding failures.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

/// An AES-128 key: the 16 bytes a player fetches from the key URI (§5.1).
pub type Key = [u8; 16];
/// A CBC initialisation vector.
pub type Iv = [u8; 16];

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

/// AES block size, bytes.
const BLOCK: usize = 16;

/// Why [`decrypt`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Aes128Error {
    /// Ciphertext must be one or more whole blocks (padding always adds at
    /// least one byte, so even an empty resource encrypts to one block).
    #[error("AES-128 ciphertext of {0} bytes is not one or more whole 16-byte blocks")]
    Length(usize),
    /// The last block does not end in valid PKCS#7 padding: wrong key or
    /// IV, or damaged data.
    #[error("bad PKCS#7 padding (wrong key or IV, or damaged data)")]
    Padding,
}

/// Encrypts a whole resource (segment or part) with AES-128-CBC and PKCS#7 padding, as RFC 8216 §4.3.2.4 requires.
///
/// The output is `plain.len()` rounded up to the next multiple of 16,
/// plus 16 when already a multiple (1 to 16 bytes of padding).
pub fn encrypt(key: &Key, iv: &Iv, plain: &[u8]) -> Vec<u8> {
    Encryptor::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

/// Decrypt (tests and the latency probe use it); error on bad padding/length.
///
/// Every padding byte is checked, not just the last; never panics.
pub fn decrypt(key: &Key, iv: &Iv, data: &[u8]) -> Result<Vec<u8>, Aes128Error> {
    if data.is_empty() || !data.len().is_multiple_of(BLOCK) {
        return Err(Aes128Error::Length(data.len()));
    }
    Decryptor::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .map_err(|_| Aes128Error::Padding)
}

/// The IV a player assumes when EXT-X-KEY has none: the media sequence number as a big-endian 128-bit integer (§5.2).
pub fn sequence_iv(msn: u64) -> Iv {
    u128::from(msn).to_be_bytes()
}

/// `#EXT-X-KEY:METHOD=AES-128,URI="...",IV=0x...` (no line end).
///
/// The IV is always written, so players need not derive it from the Media
/// Sequence Number (LL-HLS parts and renumbered segments make that easy to
/// get wrong); it needs `EXT-X-VERSION` 2 or later, which every playlist
/// here declares. Its 32 hex digits are uppercase: RFC 8216 §4.2 defines a
/// hexadecimal-sequence as `0x` followed by `[0..9]` and `[A..F]`. `uri` is
/// written as given (no `"`, CR or LF).
pub fn key_tag(uri: &str, iv: &Iv) -> String {
    let mut s = String::with_capacity(64 + uri.len());
    write_key_tag(&mut s, uri, iv);
    s
}

fn write_key_tag(s: &mut String, uri: &str, iv: &Iv) {
    // Writing to a String cannot fail.
    let _ = write!(s, "#EXT-X-KEY:METHOD=AES-128,URI=\"{uri}\",IV=0x");
    for b in iv {
        let _ = write!(s, "{b:02X}");
    }
}

/// The key a segment (and, in LL-HLS, its parts) is encrypted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentKey {
    /// Where players fetch the 16-byte key, relative to the playlist.
    pub uri: String,
    /// The IV the segment was encrypted with (e.g. [`sequence_iv`]).
    pub iv: Iv,
}

/// The tag that ends every key, so media after it is read in the clear.
pub(crate) const NO_KEY_LINE: &str = "#EXT-X-KEY:METHOD=NONE\n";

/// Writes the `EXT-X-KEY` line that changes the key in force from `*in_force`
/// to `next` (nothing when they are equal) and records `next` as in force.
///
/// An `EXT-X-KEY` applies to everything after it up to the next one
/// (RFC 8216 §4.3.2.4), so a segment without a key after a keyed one needs
/// `METHOD=NONE`.
pub(crate) fn write_key_change<'a>(
    s: &mut String,
    in_force: &mut Option<&'a SegmentKey>,
    next: Option<&'a SegmentKey>,
) {
    if *in_force == next {
        return;
    }
    match next {
        Some(k) => {
            write_key_tag(s, &k.uri, &k.iv);
            s.push('\n');
        }
        None => s.push_str(NO_KEY_LINE),
    }
    *in_force = next;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt.
    const NIST_KEY: Key = [
        0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f,
        0x3c,
    ];
    const NIST_IV: Iv = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];
    const NIST_PLAIN: [u8; 64] = [
        0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17,
        0x2a, 0xae, 0x2d, 0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac, 0x45, 0xaf,
        0x8e, 0x51, 0x30, 0xc8, 0x1c, 0x46, 0xa3, 0x5c, 0xe4, 0x11, 0xe5, 0xfb, 0xc1, 0x19, 0x1a,
        0x0a, 0x52, 0xef, 0xf6, 0x9f, 0x24, 0x45, 0xdf, 0x4f, 0x9b, 0x17, 0xad, 0x2b, 0x41, 0x7b,
        0xe6, 0x6c, 0x37, 0x10,
    ];
    const NIST_CIPHER: [u8; 64] = [
        0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9, 0x19,
        0x7d, 0x50, 0x86, 0xcb, 0x9b, 0x50, 0x72, 0x19, 0xee, 0x95, 0xdb, 0x11, 0x3a, 0x91, 0x76,
        0x78, 0xb2, 0x73, 0xbe, 0xd6, 0xb8, 0xe3, 0xc1, 0x74, 0x3b, 0x71, 0x16, 0xe6, 0x9e, 0x22,
        0x22, 0x95, 0x16, 0x3f, 0xf1, 0xca, 0xa1, 0x68, 0x1f, 0xac, 0x09, 0x12, 0x0e, 0xca, 0x30,
        0x75, 0x86, 0xe1, 0xa7,
    ];

    #[test]
    fn nist_cbc_vector_then_a_padding_block() {
        let out = encrypt(&NIST_KEY, &NIST_IV, &NIST_PLAIN);
        // Four whole blocks: the NIST ciphertext, then a block of 16 × 0x10.
        assert_eq!(out.len(), 80);
        assert_eq!(out[..64], NIST_CIPHER);
        assert_eq!(decrypt(&NIST_KEY, &NIST_IV, &out).unwrap(), NIST_PLAIN);
        // Each prefix of whole blocks is the same chain.
        for blocks in 1..4 {
            let out = encrypt(&NIST_KEY, &NIST_IV, &NIST_PLAIN[..16 * blocks]);
            assert_eq!(out.len(), 16 * blocks + 16);
            assert_eq!(out[..16 * blocks], NIST_CIPHER[..16 * blocks]);
        }
    }

    #[test]
    fn padding_lengths() {
        // 16 bytes in: 32 out (a whole block of padding).
        let one = encrypt(&NIST_KEY, &NIST_IV, &NIST_PLAIN[..16]);
        assert_eq!(one.len(), 32);
        assert_eq!(one[..16], NIST_CIPHER[..16]);
        // Empty in: one block of padding out, which decrypts to nothing.
        let empty = encrypt(&NIST_KEY, &NIST_IV, &[]);
        assert_eq!(empty.len(), 16);
        assert_eq!(decrypt(&NIST_KEY, &NIST_IV, &empty).unwrap(), b"");
        for n in 0..=48 {
            assert_eq!(
                encrypt(&NIST_KEY, &NIST_IV, &NIST_PLAIN[..n]).len(),
                (n / 16 + 1) * 16,
                "{n}"
            );
        }
    }

    #[test]
    fn round_trip() {
        let key: Key = *b"roomcast-key-16b";
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for n in [0, 1, 15, 16, 17, 188, 999, 1000] {
            let iv = sequence_iv(n as u64);
            let c = encrypt(&key, &iv, &plain[..n]);
            assert_eq!(decrypt(&key, &iv, &c).unwrap(), &plain[..n], "{n}");
        }
    }

    #[test]
    fn decrypt_rejects_bad_padding_and_length() {
        // 14 bytes: the last block ends 0x02 0x02. A flipped bit in the
        // block before flips the same bit of the plaintext (CBC).
        let good = encrypt(&NIST_KEY, &NIST_IV, &NIST_PLAIN[..30]);
        assert_eq!(good.len(), 32);
        let with = |i: usize, x: u8| {
            let mut c = good.clone();
            c[i] ^= x;
            decrypt(&NIST_KEY, &NIST_IV, &c)
        };
        // Last pad byte 0x02 -> 0x03: the byte before (0x02) no longer matches.
        assert_eq!(with(15, 0x01), Err(Aes128Error::Padding));
        // Last pad byte 0x02 -> 0x00 and -> 0x12 (> 16): never valid.
        assert_eq!(with(15, 0x02), Err(Aes128Error::Padding));
        assert_eq!(with(15, 0x10), Err(Aes128Error::Padding));
        // First pad byte 0x02 -> 0x03 while the last stays 0x02.
        assert_eq!(with(14, 0x01), Err(Aes128Error::Padding));
        // Last pad byte 0x02 -> 0x01 is valid padding: one byte more comes out.
        assert_eq!(with(15, 0x03).unwrap().len(), 31);
        for n in [0, 1, 15, 17, 31, 33] {
            assert_eq!(
                decrypt(&NIST_KEY, &NIST_IV, &vec![0; n]),
                Err(Aes128Error::Length(n))
            );
        }
        assert_eq!(
            alloc::format!("{}", Aes128Error::Length(15)),
            "AES-128 ciphertext of 15 bytes is not one or more whole 16-byte blocks"
        );
    }

    #[test]
    fn sequence_iv_is_big_endian_msn() {
        assert_eq!(sequence_iv(0), [0; 16]);
        assert_eq!(
            sequence_iv(0x0102_0304_0506_0708),
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(sequence_iv(u64::MAX)[..8], [0; 8]);
        assert_eq!(sequence_iv(u64::MAX)[8..], [0xff; 8]);
    }

    #[test]
    fn key_tag_has_uppercase_hex_iv() {
        assert_eq!(
            key_tag("keys/7.key", &sequence_iv(0x2a)),
            "#EXT-X-KEY:METHOD=AES-128,URI=\"keys/7.key\",IV=0x0000000000000000000000000000002A"
        );
        assert_eq!(
            key_tag("k", &NIST_IV),
            "#EXT-X-KEY:METHOD=AES-128,URI=\"k\",IV=0x000102030405060708090A0B0C0D0E0F"
        );
    }

    #[test]
    fn key_changes_are_written_once() {
        let a = SegmentKey {
            uri: "a.key".into(),
            iv: sequence_iv(1),
        };
        // Same URI, other IV: a change too.
        let b = SegmentKey {
            uri: "a.key".into(),
            iv: sequence_iv(2),
        };
        let mut s = String::new();
        let mut in_force = None;
        for k in [None, Some(&a), Some(&a), Some(&b), None, None] {
            write_key_change(&mut s, &mut in_force, k);
        }
        assert_eq!(
            s,
            "#EXT-X-KEY:METHOD=AES-128,URI=\"a.key\",IV=0x00000000000000000000000000000001\n\
             #EXT-X-KEY:METHOD=AES-128,URI=\"a.key\",IV=0x00000000000000000000000000000002\n\
             #EXT-X-KEY:METHOD=NONE\n"
        );
    }
}
