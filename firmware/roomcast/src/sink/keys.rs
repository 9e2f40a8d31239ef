//! AES-128 keys for the served HLS (`hls.encryption = "aes-128"`): one key
//! per `key_rotation_segments` segments, shared by every rendition and both
//! flavours (their segments carry the same sequence numbers), made from the
//! OS random source when the first segment of its period is packaged, served
//! at `/hls/keys/{id}.key` and forgotten once no playlist can list a segment
//! that needs it.
//!
//! Keys are secrets: nothing here logs or prints them (`Debug` is not
//! derived), and the HTTP side sends them with `Cache-Control: private,
//! no-store` so no shared cache keeps one.

use crate::base::lock;
use roomcast_media::aes128::{self, Iv, Key, SegmentKey};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Segments a key outlives the newest segment's window by: a player may
/// hold a playlist that is a segment or two old when it asks for the key.
const GRACE_SEGMENTS: u64 = 2;

/// The keys in use.
pub struct KeyRing {
    rotation: u64,
    /// Segments a playlist lists (the window).
    window: u64,
    /// Key by id (the first sequence number of its period).
    keys: Mutex<BTreeMap<u64, Key>>,
    random: fn(&mut [u8]) -> Result<(), getrandom::Error>,
}

/// What a segment is encrypted with, for its packager.
#[derive(Clone)]
pub struct Encryption {
    pub key: Key,
    pub iv: Iv,
    /// Key id: the file is `{id}.key` in `/hls/keys/`.
    pub id: u64,
}

impl Encryption {
    /// The playlist's view of it, with the key at `{keys_dir}{id}.key`
    /// (relative to the media playlist that lists the segment).
    pub fn segment_key(&self, keys_dir: &str) -> SegmentKey {
        SegmentKey {
            uri: format!("{keys_dir}{}.key", self.id),
            iv: self.iv,
        }
    }

    /// One resource (segment or part) encrypted, from the IV.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        aes128::encrypt(&self.key, &self.iv, plain)
    }
}

impl KeyRing {
    /// A ring that changes keys every `rotation` segments, for playlists of
    /// `window` segments.
    pub fn new(rotation: u32, window: u32) -> KeyRing {
        Self::with_random(rotation, window, getrandom::getrandom)
    }

    /// As [`Self::new`] with the random source passed in (tests).
    pub fn with_random(
        rotation: u32,
        window: u32,
        random: fn(&mut [u8]) -> Result<(), getrandom::Error>,
    ) -> KeyRing {
        KeyRing {
            rotation: u64::from(rotation.max(1)),
            window: u64::from(window),
            keys: Mutex::default(),
            random,
        }
    }

    /// The key and IV for segment `sequence` (made if it is the first of
    /// its period), dropping keys no listed segment can need any more.
    /// `None` only if the OS has no randomness to give, in which case the
    /// segment must not be served at all.
    pub fn for_segment(&self, sequence: u64) -> Option<Encryption> {
        let id = sequence - sequence % self.rotation;
        let mut keys = lock(&self.keys);
        let key = match keys.get(&id) {
            Some(k) => *k,
            None => {
                let mut k = Key::default();
                if let Err(e) = (self.random)(&mut k) {
                    eprintln!("roomcast: no random key for the HLS encryption: {e}");
                    return None;
                }
                keys.insert(id, k);
                k
            }
        };
        // The oldest segment any playlist can still list, and its key's id.
        let oldest = sequence.saturating_sub(self.window + GRACE_SEGMENTS);
        let keep_from = oldest - oldest % self.rotation;
        keys.retain(|&k, _| k >= keep_from);
        Some(Encryption {
            key,
            iv: aes128::sequence_iv(sequence),
            id,
        })
    }

    /// The key file `id`, while a listed segment needs it.
    pub fn get(&self, id: u64) -> Option<Key> {
        lock(&self.keys).get(&id).copied()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        lock(&self.keys).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(buf: &mut [u8]) -> Result<(), getrandom::Error> {
        use std::sync::atomic::{AtomicU8, Ordering};
        static N: AtomicU8 = AtomicU8::new(1);
        buf.fill(N.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }

    fn failing(_: &mut [u8]) -> Result<(), getrandom::Error> {
        Err(getrandom::Error::UNSUPPORTED)
    }

    #[test]
    fn keys_rotate_per_period_and_are_dropped_after_the_window() {
        let ring = KeyRing::with_random(4, 3, counting);
        let a = ring.for_segment(100).unwrap();
        assert_eq!(a.id, 100);
        assert_eq!(a.iv, aes128::sequence_iv(100));
        // The same period shares the key; the IV is the segment's own.
        let b = ring.for_segment(103).unwrap();
        assert_eq!((b.id, b.key), (100, a.key));
        assert_ne!(b.iv, a.iv);
        let c = ring.for_segment(104).unwrap();
        assert_eq!(c.id, 104);
        assert_ne!(c.key, a.key, "a new period has a new key");
        assert_eq!(ring.get(100), Some(a.key));
        assert_eq!(c.segment_key("../keys/").uri, "../keys/104.key");
        // Segment 109 lists 107..=109 (+2 grace: 105): key 100 is gone,
        // 104 stays.
        ring.for_segment(109).unwrap();
        assert_eq!(ring.get(100), None);
        assert_eq!(ring.get(104), Some(c.key));
        assert_eq!(ring.len(), 2);
        // Ids are never reused for another key once dropped: they are
        // sequence numbers, which only grow.
        ring.for_segment(200).unwrap();
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn without_randomness_there_is_no_key_and_so_no_segment() {
        let ring = KeyRing::with_random(10, 6, failing);
        assert!(ring.for_segment(5).is_none());
        assert!(ring.is_empty());
    }

    #[test]
    fn real_keys_differ() {
        let ring = KeyRing::new(1, 6);
        let (a, b) = (ring.for_segment(1).unwrap(), ring.for_segment(2).unwrap());
        assert_ne!(a.key, b.key);
        assert_ne!(a.key, [0; 16]);
        let plain = b"not readable once encrypted";
        assert_ne!(&a.encrypt(plain)[..plain.len()], plain);
    }
}
