//! The simple RTMP handshake, client side (RTMP 1.0 §5.2).
//!
//! The client sends C0 (version 3, §5.2.2) and C1 (time, four zero bytes,
//! 1528 random bytes, §5.2.3) at once. When S0 and S1 have arrived it sends
//! C2, an echo of S1 (§5.2.4): S1's time, the time S1 was read, S1's random
//! bytes. The handshake is done when S2 has arrived and echoes C1's random
//! bytes. Zeros in C1's second field ask for this simple handshake; servers
//! that also speak Adobe's digest handshake fall back to it.

use alloc::vec::Vec;

use super::RtmpError;

/// The only protocol version (§5.2.2).
pub const VERSION: u8 = 3;
/// Size of C1, C2, S1 and S2 (§5.2.3).
pub const PACKET_SIZE: usize = 1536;

/// Client handshake state.
#[derive(Debug, Clone)]
pub struct Handshake {
    c1: Vec<u8>,
    received: Vec<u8>,
    sent_c2: bool,
    done: bool,
}

/// What the handshake did with some input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes to send (C2) now.
    pub transmit: Vec<u8>,
    /// Input bytes that came after S2: the server's first chunks.
    pub rest: Vec<u8>,
    /// S2 has arrived and checks out.
    pub done: bool,
}

impl Handshake {
    /// Starts a handshake; returns it and C0+C1 to send. `random_seed` feeds
    /// C1's random field (any value; it only has to differ between sessions
    /// so the echo check means something).
    pub fn start(now_ms: u32, random_seed: u64) -> (Handshake, Vec<u8>) {
        let mut c1 = Vec::with_capacity(PACKET_SIZE);
        c1.extend_from_slice(&now_ms.to_be_bytes());
        c1.extend_from_slice(&[0; 4]);
        let mut x = random_seed | 1;
        while c1.len() < PACKET_SIZE {
            // xorshift64*: not cryptographic, the field is not a secret.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes();
            let n = (PACKET_SIZE - c1.len()).min(8);
            c1.extend_from_slice(&r[..n]);
        }
        let mut out = Vec::with_capacity(1 + PACKET_SIZE);
        out.push(VERSION);
        out.extend_from_slice(&c1);
        (
            Handshake {
                c1,
                received: Vec::new(),
                sent_c2: false,
                done: false,
            },
            out,
        )
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes server bytes. Errors on a version other than 3 in S0 or an S2
    /// that does not echo C1.
    pub fn handle_input(&mut self, now_ms: u32, data: &[u8]) -> Result<Progress, RtmpError> {
        let mut p = Progress::default();
        if self.done {
            p.rest = data.to_vec();
            return Ok(p);
        }
        let need = 1 + 2 * PACKET_SIZE;
        let take = (need - self.received.len()).min(data.len());
        self.received.extend_from_slice(&data[..take]);
        if let Some(&v) = self.received.first() {
            if v != VERSION {
                return Err(RtmpError::UnsupportedVersion(v));
            }
        }
        if !self.sent_c2 {
            if let Some(s1) = self.received.get(1..1 + PACKET_SIZE) {
                // C2: S1's time, when we read S1, S1's random bytes.
                p.transmit.extend_from_slice(&s1[..4]);
                p.transmit.extend_from_slice(&now_ms.to_be_bytes());
                p.transmit.extend_from_slice(&s1[8..]);
                self.sent_c2 = true;
            }
        }
        if let Some(s2) = self.received.get(1 + PACKET_SIZE..need) {
            if s2[8..] != self.c1[8..] {
                return Err(RtmpError::HandshakeEcho);
            }
            self.done = true;
            p.done = true;
            p.rest = data[take..].to_vec();
            self.received = Vec::new();
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_c1_layout() {
        let (_, out) = Handshake::start(0x0102_0304, 7);
        assert_eq!(out.len(), 1537);
        assert_eq!(&out[..9], &[3, 1, 2, 3, 4, 0, 0, 0, 0]);
        // Random, deterministic for a seed, different for another.
        let (_, again) = Handshake::start(0x0102_0304, 7);
        let (_, other) = Handshake::start(0x0102_0304, 8);
        assert_eq!(out, again);
        assert_ne!(out[9..], other[9..]);
    }

    fn s1() -> Vec<u8> {
        let mut s1 = alloc::vec![0u8; PACKET_SIZE];
        s1[..4].copy_from_slice(&[0, 0, 0, 9]);
        for (i, b) in s1[8..].iter_mut().enumerate() {
            *b = i as u8;
        }
        s1
    }

    #[test]
    fn c2_echoes_s1_and_s2_must_echo_c1() {
        let (mut hs, c0c1) = Handshake::start(0, 1);
        let mut server = alloc::vec![3u8];
        server.extend_from_slice(&s1());
        // S0+S1 in two pieces: C2 only once S1 is whole.
        let p = hs.handle_input(500, &server[..100]).unwrap();
        assert!(p.transmit.is_empty());
        let p = hs.handle_input(500, &server[100..]).unwrap();
        let mut c2 = alloc::vec![0, 0, 0, 9, 0, 0, 0x01, 0xF4];
        c2.extend_from_slice(&s1()[8..]);
        assert_eq!(p.transmit, c2);
        assert!(!p.done);
        // S2 = C1 echoed, with two bytes of the first chunk behind it.
        let mut s2 = c0c1[1..].to_vec();
        s2.extend_from_slice(&[0x02, 0x00]);
        let p = hs.handle_input(600, &s2).unwrap();
        assert!(p.done && hs.is_done());
        assert!(p.transmit.is_empty());
        assert_eq!(p.rest, [0x02, 0x00]);
    }

    #[test]
    fn bad_version_and_bad_echo() {
        let (mut hs, _) = Handshake::start(0, 1);
        assert_eq!(
            hs.handle_input(0, &[6]),
            Err(RtmpError::UnsupportedVersion(6))
        );
        let (mut hs, _) = Handshake::start(0, 1);
        let mut server = alloc::vec![3u8];
        server.extend_from_slice(&s1());
        server.extend_from_slice(&s1()); // S2 that is not C1
        assert_eq!(hs.handle_input(0, &server), Err(RtmpError::HandshakeEcho));
    }
}
