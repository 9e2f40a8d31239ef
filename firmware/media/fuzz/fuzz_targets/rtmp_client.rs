//! `rtmp::ClientSession::handle_input` must never panic on any server bytes,
//! however they are split. The first byte picks the split size; a valid
//! S0/S1/S2 (echoing the client's C1) goes first so the fuzzer reaches the
//! chunk reader and command handling, not just the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_media::rtmp::{ClientConfig, ClientSession, State};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cfg = ClientConfig::new("live", "rtmp://h/live", "key");
    let mut c = ClientSession::new(cfg, 0);
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    let mut hs = vec![3u8];
    hs.extend_from_slice(&[0u8; 1536]);
    hs.extend_from_slice(&out[1..]);
    c.handle_input(0, &hs).expect("valid handshake");
    let step = usize::from(split).max(1);
    for (i, piece) in rest.chunks(step).enumerate() {
        if c.handle_input(i as u32, piece).is_err() {
            return;
        }
        out.clear();
        c.poll_transmit(&mut out);
        while c.poll_event().is_some() {}
        if c.state() == State::Publishing {
            let _ = c.send_video(i as u32, 0, false, piece);
        }
    }
});
