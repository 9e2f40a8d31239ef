//! Rendezvous with libsrt: making sure srt-tokio ends up the HSv5 responder.
//!
//! In an HSv5 rendezvous both sides wave (WAVEAHAND) and compare cookies;
//! the result decides who is the *initiator* (sends HSREQ) and who the
//! *responder*. srt-tokio 0.4.4 as the initiator takes the responder's
//! initial sequence number for its own sending, while libsrt (1.5, what
//! `srt-live-transmit`, OBS and ffmpeg use) expects each side to send from
//! its own: the connection comes up, then libsrt drops every data packet or
//! breaks with "SEQUENCE DISCREPANCY". As the responder srt-tokio is right.
//! Measured against srt-live-transmit: 14 of 14 attempts with srt-tokio as
//! initiator failed, 10 of 10 as responder worked.
//!
//! srt-tokio's cookie is a hash of its local address and the current second
//! (`gen_cookie` in srt-protocol; the address is only used for that and the
//! informational "peer IP" field). So before handing the socket over we
//! listen for the peer's WAVEAHAND, read its cookie, and pick a local
//! address whose cookie makes us the responder in the current second.
//! While listening we send a 4-byte datagram every 250 ms: too short to be
//! an SRT packet (libsrt and srt-tokio drop it), it opens our NAT mapping
//! as a rendezvous must. A peer that never waves is reported as not
//! answering; every SRT implementation we know waves while it waits.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

/// How often the NAT-opening datagram goes out while we listen.
const PUNCH_EVERY: Duration = Duration::from_millis(250);

/// The cookie srt-protocol 0.4.4 puts in our handshakes for `local` at
/// `unix_secs` (its `gen_cookie`, which multiplies seconds by 60 rather than
/// dividing, so it changes every second). `tests::prediction_matches_srt_tokio`
/// checks this against a real srt-tokio WAVEAHAND.
pub fn srt_tokio_cookie(local: &SocketAddr, unix_secs: u64) -> i32 {
    let mut h = DefaultHasher::new();
    local.hash(&mut h);
    (unix_secs * 60).hash(&mut h);
    h.finish() as u32 as i32
}

/// srt-tokio's side of the cookie contest: it is the responder when its
/// cookie minus the peer's, as a wrapping 32-bit difference, is negative.
pub fn srt_tokio_responds(ours: i32, theirs: i32) -> bool {
    ours.wrapping_sub(theirs) < 0
}

/// The cookie of an SRT WAVEAHAND handshake packet, `None` for anything
/// else. Layout (draft-sharabayko-srt §3.2.1): 16-byte header with the
/// control bit and type 0 (handshake), then the handshake CIF: version,
/// encryption/extension, ISN, MTU, flow window, type (0 = WAVEAHAND), socket
/// id, cookie, peer IP.
pub fn waveahand_cookie(packet: &[u8]) -> Option<i32> {
    if packet.len() < 64 || packet[0] != 0x80 || packet[1] != 0x00 {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes(packet[at..at + 4].try_into().unwrap());
    if word(16 + 20) != 0 {
        return None;
    }
    Some(word(16 + 28) as i32)
}

/// Local addresses tried for the cookie (any of them is only a label).
fn candidates(v6: bool) -> Vec<IpAddr> {
    if v6 {
        let mut c = vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)];
        c.extend((1..16u16).map(|i| IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, i))));
        c
    } else {
        let mut c = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
        c.extend((1..16u8).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))));
        c
    }
}

/// A local address whose srt-tokio cookie in `unix_secs` makes us the
/// responder against `theirs`.
pub fn responder_ip(v6: bool, port: u16, unix_secs: u64, theirs: i32) -> Option<IpAddr> {
    candidates(v6).into_iter().find(|ip| {
        srt_tokio_responds(
            srt_tokio_cookie(&SocketAddr::new(*ip, port), unix_secs),
            theirs,
        )
    })
}

/// The bound socket for one rendezvous attempt and the local IP to give
/// srt-tokio's builder, once the peer has waved within `wait`
/// (`TimedOut` otherwise). Must be followed at once by the rendezvous call
/// (the choice holds for the current second; at least 150 ms of it are left).
pub async fn prepare(
    remote: SocketAddr,
    port: u16,
    wait: Duration,
) -> io::Result<(UdpSocket, IpAddr)> {
    let v6 = remote.is_ipv6();
    let any = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, port)).await?;
    let mut buf = [0u8; 1500];
    let heard = tokio::time::timeout(wait, async {
        loop {
            let _ = socket.send_to(b"rdv\0", remote).await;
            let next = tokio::time::Instant::now() + PUNCH_EVERY;
            while let Ok(r) = tokio::time::timeout_at(next, socket.recv_from(&mut buf)).await {
                // Errors are ICMP "port unreachable" while the peer is not up.
                if let Ok((n, from)) = r {
                    if let Some(c) = waveahand_cookie(&buf[..n]).filter(|_| from == remote) {
                        return c;
                    }
                }
            }
        }
    })
    .await;
    let Ok(theirs) = heard else {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer did not wave",
        ));
    };
    // Whatever else the peer sent is stale now; srt-tokio starts clean and
    // sends its WAVEAHAND before answering the peer's next one.
    while socket.try_recv_from(&mut buf).is_ok() {}
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()));
        if left < Duration::from_millis(150) {
            tokio::time::sleep(left + Duration::from_millis(5)).await;
            continue;
        }
        if let Some(ip) = responder_ip(v6, port, now.as_secs(), theirs) {
            return Ok((socket, ip));
        }
        // No label works this second (2^-16): the next second's cookies.
        tokio::time::sleep(left + Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waveahand_cookie_is_read_from_a_handshake_and_nothing_else() {
        let mut p = vec![0u8; 64];
        p[0] = 0x80; // control, type 0 = handshake
        p[16 + 28..16 + 32].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(waveahand_cookie(&p), Some(-5));
        let mut conclusion = p.clone();
        conclusion[16 + 20..16 + 24].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
        assert_eq!(waveahand_cookie(&conclusion), None);
        let mut data = p.clone();
        data[0] = 0x00;
        assert_eq!(waveahand_cookie(&data), None);
        assert_eq!(waveahand_cookie(&p[..40]), None);
    }

    #[test]
    fn contest_is_a_wrapping_difference() {
        assert!(srt_tokio_responds(1, 2));
        assert!(!srt_tokio_responds(2, 1));
        // The wrap: i32::MAX - i32::MIN is -1 as i32, so MAX responds.
        assert!(srt_tokio_responds(i32::MAX, i32::MIN));
        assert!(!srt_tokio_responds(i32::MIN, i32::MAX));
    }

    #[test]
    fn a_responder_label_exists_for_any_peer_cookie() {
        for (i, theirs) in [i32::MIN, -1, 0, 1, i32::MAX, 123_456_789]
            .into_iter()
            .enumerate()
        {
            let ip = responder_ip(false, 9000, 1_700_000_000 + i as u64, theirs)
                .expect("one of 16 labels");
            let ours = srt_tokio_cookie(&SocketAddr::new(ip, 9000), 1_700_000_000 + i as u64);
            assert!(srt_tokio_responds(ours, theirs));
        }
    }

    /// The prediction matches what srt-tokio really sends: start a
    /// rendezvous towards a plain UDP socket and read its WAVEAHAND.
    #[test]
    fn prediction_matches_srt_tokio() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let peer_addr = peer.local_addr().unwrap();
            let ours = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = ours.local_addr().unwrap().port();
            drop(ours);
            let label = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
            let task = tokio::spawn(async move {
                let socket = UdpSocket::bind(("0.0.0.0", port)).await.unwrap();
                let _ = srt_tokio::SrtSocket::builder()
                    .local_ip(label)
                    .local_port(port)
                    .socket(socket)
                    .rendezvous(peer_addr.to_string().as_str())
                    .await;
            });
            let mut buf = [0u8; 1500];
            let mut checked = 0;
            while checked < 2 {
                let before = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let (n, _) = tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf))
                    .await
                    .expect("srt-tokio waves")
                    .unwrap();
                let after = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let got = waveahand_cookie(&buf[..n]).expect("a WAVEAHAND");
                // The cookie was made when the rendezvous started; accept the
                // seconds around the packet's arrival.
                let label = SocketAddr::new(label, port);
                let matches =
                    (before.saturating_sub(3)..=after).any(|s| srt_tokio_cookie(&label, s) == got);
                assert!(matches, "srt-tokio's cookie {got} is not predicted");
                checked += 1;
            }
            task.abort();
        });
    }
}
