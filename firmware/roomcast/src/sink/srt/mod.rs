//! The SRT sink: one thread per enabled `srt://` output, each fed by its own
//! bounded queue on the frame bus, sending MPEG-TS over SRT (the SRT
//! internet-draft, draft-sharabayko-srt; live mode) with srt-tokio.
//!
//! * **Tokio stays here.** srt-tokio needs a tokio runtime; the module owns
//!   one with a single worker thread (`srt-io`), made when the first SRT
//!   output starts. Each output's own thread pops frames from its bus queue,
//!   muxes them and hands the messages to srt-tokio without ever waiting:
//!   a full SRT send queue drops that receiver to the next keyframe, so a
//!   slow or dead receiver never holds up capture, HLS or another output.
//! * **Messages.** [`pack_messages`] cuts the transport stream into SRT
//!   messages of exactly seven 188-byte packets (1316 bytes, what every SRT
//!   receiver expects); the last message of a frame is filled up with null
//!   packets rather than held back for the next frame, so no frame waits
//!   for its successor.
//! * **Muxing.** One `ProgramMuxer` per output (H.264, and AAC when audio
//!   is on: audio PES wait for the next video frame and travel in its
//!   messages, so audio costs no extra half-empty messages), PAT/PMT in front of every
//!   keyframe; every connection starts at a keyframe (listener mode: each
//!   receiver joins at the next keyframe; caller mode: after each connect).
//! * **Modes.** caller and rendezvous connect out (3 s handshake timeout),
//!   listener accepts any number of receivers on one UDP port.
//! * **Reconnect.** A failed or lost connection is retried after 250 ms,
//!   doubling to 5 s, counted from the start of the failed attempt (so a
//!   receiver that comes back is found within about 2 s even at the cap);
//!   a connection that worked resets the delay. A peer that sends nothing
//!   for [`PEER_IDLE_TIMEOUT`] is taken as gone.
//! * **Encryption.** AES-128/192/256 with the URL's passphrase. A wrong
//!   passphrase is reported in the status with the peer's reason, and (in
//!   caller mode) the output backs off like any refused connection.
//!
//! Known limit of srt-tokio 0.4.4 handled here: its listener panics (in its
//! own task) on a key-length mismatch, so the accept step always answers a
//! caller with the key length the caller announced. A caller that sends key
//! material to a listener *without* a passphrase still ends srt-tokio's
//! listener task; the output notices, reports it and listens again.
//! Rendezvous: srt-tokio must be the HSv5 responder to interoperate with
//! libsrt; [`rendezvous`] arranges that before each attempt.

mod rendezvous;

use super::output::{
    wanted_outputs, write_common_families, Common, Ctx, OutputKind, State, Wanted,
};
use crate::base::backoff::Backoff;
use crate::base::frame::{AudioFormat, SharedFrame};
use crate::base::lock;
use crate::base::rate::RateMeter;
use crate::base::stats::{quantiles_ms, write_family};
pub use crate::config::srt_url::{SrtMode, SrtUrl, SrtUrlError};
use crate::config::url::OutputUrl;
use crate::config::ValidConfig;
use crate::sink::tsmux::ProgramMuxer;
use bytes::Bytes;
use futures::{Sink, Stream, StreamExt};
use roomcast_media::ts::pack_messages;
use serde_json::{json, Map, Value};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::CoreRejectReason;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{SocketStatistics, SrtListener, SrtSocket};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long a caller's handshake may take (libsrt's SRTO_CONNTIMEO default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A peer silent this long is gone. SRT receivers acknowledge every 10 ms
/// and send a keep-alive at least every second, so 2 s of silence is a dead
/// peer, not a slow one. srt-tokio's own idle check cannot fire before
/// about 5 s (16 expiry periods, as libsrt), which would keep a restarted
/// receiver waiting, so the output thread watches the received-packet
/// counter itself.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often srt-tokio reports statistics (its minimum is 200 ms).
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// How often the thread looks at its connections when no frame comes.
const POLL: Duration = Duration::from_millis(50);
/// SRT message payload: seven transport packets.
pub use roomcast_media::ts::MESSAGE_SIZE;
/// Send-delay samples kept for the status percentiles (about 30 s at 30 fps).
const DELAY_SAMPLES: usize = 1024;

/// One live connection's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub addr: SocketAddr,
    /// Round-trip time measured during the handshake (srt-tokio's running
    /// statistics do not include the RTT).
    pub rtt_ms: f64,
    pub packets_sent: u64,
    pub packets_retransmitted: u64,
    /// Packets the peer reported lost (NAKs).
    pub packets_lost: u64,
    /// Packets dropped by the sender as too late to be useful.
    pub packets_dropped: u64,
    /// Frames skipped because this connection's send queue was full.
    pub frames_dropped: u64,
}

/// One output's figures, updated by its thread.
#[derive(Debug, Clone)]
pub struct SrtStatus {
    /// State, bytes and frames sent, send rate, reconnects, last error; its
    /// `peer` is filled in from `peers` and `last_peer` when read.
    pub common: Common,
    pub mode: SrtMode,
    /// Live connections (one in caller/rendezvous mode).
    pub peers: Vec<PeerStatus>,
    /// The last peer connected to, kept after it went away.
    pub last_peer: Option<SocketAddr>,
    /// Packet counters of connections that have ended, so totals never go
    /// backwards.
    pub closed: PeerTotals,
    /// Capture to the frame's last message handed to SRT, ns.
    delay_ns: VecDeque<u64>,
}

/// Summed packet counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTotals {
    pub packets_sent: u64,
    pub packets_retransmitted: u64,
    pub packets_lost: u64,
    pub packets_dropped: u64,
}

impl SrtStatus {
    fn new(state: State, mode: SrtMode) -> Self {
        SrtStatus {
            common: Common::new(state),
            mode,
            peers: Vec::new(),
            last_peer: None,
            closed: PeerTotals::default(),
            delay_ns: VecDeque::new(),
        }
    }

    /// Totals over past and live connections.
    pub fn totals(&self) -> PeerTotals {
        self.peers.iter().fold(self.closed, |t, p| PeerTotals {
            packets_sent: t.packets_sent + p.packets_sent,
            packets_retransmitted: t.packets_retransmitted + p.packets_retransmitted,
            packets_lost: t.packets_lost + p.packets_lost,
            packets_dropped: t.packets_dropped + p.packets_dropped,
        })
    }

    /// Median and 99th percentile of capture → handed to SRT, in ms.
    pub fn send_delay_ms(&self) -> Option<(f64, f64)> {
        quantiles_ms(self.delay_ns.iter().copied())
    }
}

/// Why a connection attempt or a listener failed.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error("no answer from {0} within {1} s (is the receiver running?)")]
    Timeout(String, u64),
    #[error("{peer} refused the connection: {reason}{hint}")]
    Refused {
        peer: String,
        reason: String,
        hint: &'static str,
    },
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// How a connection attempt ended, for the state shown while backing off.
fn failure_state(e: &SinkError) -> State {
    match e {
        SinkError::Refused { .. } => State::Rejected,
        _ => State::Backoff,
    }
}

/// Events from the accept task to the output thread (listener mode).
enum ListenerEvent {
    Connected(Box<SrtSocket>, SocketAddr),
    Refused(String),
    /// srt-tokio's listener task ended by itself.
    Ended,
}

/// One live SRT connection.
struct Conn {
    socket: SrtSocket,
    stats: Pin<Box<dyn Stream<Item = SocketStatistics> + Send>>,
    peer: PeerStatus,
    awaiting_keyframe: bool,
    /// Packets received from the peer, and when that count last changed.
    rx_packets: u64,
    rx_changed_ns: u64,
}

enum Sent {
    Ok,
    Full,
    Closed,
}

impl Conn {
    fn new(mut socket: SrtSocket, addr: SocketAddr, now_ns: u64) -> Conn {
        let stats = Box::pin(socket.statistics().clone());
        let rtt_ms = socket.settings().rtt.as_secs_f64() * 1e3;
        Conn {
            socket,
            stats,
            peer: PeerStatus {
                addr,
                rtt_ms,
                packets_sent: 0,
                packets_retransmitted: 0,
                packets_lost: 0,
                packets_dropped: 0,
                frames_dropped: 0,
            },
            awaiting_keyframe: true,
            rx_packets: 0,
            rx_changed_ns: now_ns,
        }
    }

    /// Queues one message without waiting.
    fn send(&mut self, msg: Bytes) -> Sent {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match Pin::new(&mut self.socket).poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {
                match Pin::new(&mut self.socket).start_send((Instant::now(), msg)) {
                    Ok(()) => Sent::Ok,
                    Err(_) => Sent::Closed,
                }
            }
            Poll::Ready(Err(_)) => Sent::Closed,
            Poll::Pending => Sent::Full,
        }
    }

    /// Takes in the latest statistics; true once the connection has ended
    /// or the peer has been silent for [`PEER_IDLE_TIMEOUT`].
    fn poll(&mut self, now_ns: u64) -> bool {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        while let Poll::Ready(Some(s)) = self.stats.poll_next_unpin(&mut cx) {
            self.peer.packets_sent = s.tx_data;
            self.peer.packets_retransmitted = s.tx_retransmit_data;
            self.peer.packets_lost = s.tx_loss_data;
            self.peer.packets_dropped = s.tx_dropped_data;
            if s.rx_all_packets != self.rx_packets {
                self.rx_packets = s.rx_all_packets;
                self.rx_changed_ns = now_ns;
            }
        }
        if now_ns.saturating_sub(self.rx_changed_ns) > PEER_IDLE_TIMEOUT.as_nanos() as u64 {
            return true;
        }
        // Receivers send no data; the stream ends when the connection does.
        loop {
            match self.socket.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) => return true,
                Poll::Pending => return false,
            }
        }
    }
}

/// The output thread.
struct Worker {
    url: SrtUrl,
    ctx: Ctx<SrtStatus>,
    rt: tokio::runtime::Handle,
    muxer: ProgramMuxer,
    /// Audio muxed since the last video frame, sent in front of it.
    pending_audio: Vec<u8>,
    conns: Vec<Conn>,
    ts: Vec<u8>,
    messages: Vec<Bytes>,
    rate: RateMeter,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.ctx.stopped()
    }

    fn set<F: FnOnce(&mut SrtStatus)>(&self, f: F) {
        self.ctx.set(f)
    }

    fn run(mut self) {
        match self.url.mode {
            SrtMode::Listener => self.run_listener(),
            SrtMode::Caller | SrtMode::Rendezvous => self.run_caller(),
        }
        self.close_all();
        self.set(|s| s.common.state = State::Stopped);
    }

    fn idle_until(&self, until_ns: u64) {
        self.ctx.idle_until(until_ns)
    }

    fn options(&self) -> impl FnOnce(&mut srt_tokio::options::SocketOptions) {
        let latency = Duration::from_millis(u64::from(self.url.latency_ms));
        move |o| {
            o.connect.timeout = CONNECT_TIMEOUT;
            o.session.peer_idle_timeout = PEER_IDLE_TIMEOUT;
            o.session.statistics_interval = STATS_INTERVAL;
            o.sender.peer_latency = latency;
            o.receiver.latency = latency;
        }
    }

    fn key_settings(&self, size: KeySize) -> Option<KeySettings> {
        let passphrase = Passphrase::try_from(self.url.passphrase.clone()?).ok()?;
        Some(KeySettings {
            key_size: size,
            passphrase,
        })
    }

    fn url_key_size(&self) -> KeySize {
        match self.url.key_len() {
            24 => KeySize::AES192,
            32 => KeySize::AES256,
            _ => KeySize::AES128,
        }
    }

    /// Caller and rendezvous: connect, stream until the connection ends,
    /// back off, again.
    fn run_caller(&mut self) {
        let mut backoff = Backoff::default();
        let mut attempts = 0u64;
        while !self.stopped() {
            if attempts > 0 {
                self.set(|s| s.common.reconnects += 1);
            }
            attempts += 1;
            let started = self.ctx.now_ns();
            self.set(|s| s.common.state = State::Connecting);
            match self.connect() {
                Ok((socket, peer)) => {
                    backoff.succeeded();
                    self.set(|s| {
                        s.last_peer = Some(peer);
                        s.common.last_error = None;
                        s.common.state = State::Sending;
                    });
                    let now = self.ctx.now_ns();
                    self.conns.push(Conn::new(socket, peer, now));
                    // Frames queued during the handshake are stale; the
                    // receiver starts at a keyframe: ask for one now rather
                    // than wait up to a GOP.
                    self.ctx.restart_at_keyframe();
                    while !self.stopped() && !self.conns.is_empty() {
                        self.step();
                    }
                    if self.stopped() {
                        break;
                    }
                    self.set(|s| {
                        s.common.state = State::Backoff;
                        s.common.last_error = Some(format!(
                            "connection to {peer} ended: the receiver closed it or sent nothing for {} s",
                            PEER_IDLE_TIMEOUT.as_secs()
                        ));
                    });
                    self.idle_until(backoff.failed(self.ctx.now_ns()));
                }
                Err(e) => {
                    if self.stopped() {
                        break;
                    }
                    let state = failure_state(&e);
                    self.set(|s| {
                        s.common.state = state;
                        s.common.send_rate_bps = 0.0;
                        s.common.last_error = Some(e.to_string());
                    });
                    self.idle_until(backoff.failed(started));
                }
            }
        }
    }

    fn connect(&self) -> Result<(SrtSocket, SocketAddr), SinkError> {
        let url = &self.url;
        let remote = url.host_port();
        let mut b = SrtSocket::builder().set(self.options());
        if let Some(k) = self.key_settings(self.url_key_size()) {
            b = b.set(move |o| {
                o.encryption.key_size = k.key_size;
                o.encryption.passphrase = Some(k.passphrase);
            });
        }
        let to = remote.clone();
        let fut = async move {
            match url.mode {
                SrtMode::Rendezvous => {
                    let port = url.local_port.unwrap_or(url.port);
                    let remote = tokio::net::lookup_host(to.as_str())
                        .await?
                        .next()
                        .ok_or_else(|| std::io::Error::other("the peer's name did not resolve"))?;
                    let (socket, label) =
                        rendezvous::prepare(remote, port, CONNECT_TIMEOUT).await?;
                    b.local_ip(label)
                        .local_port(port)
                        .socket(socket)
                        .rendezvous(to.as_str())
                        .await
                }
                _ => {
                    if let Some(p) = url.local_port {
                        b = b.local_port(p);
                    }
                    b.call(to.as_str(), url.streamid.as_deref()).await
                }
            }
        };
        // srt-tokio gives up after CONNECT_TIMEOUT; the outer timeout only
        // guards against a handshake that never returns.
        let r = self.rt.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(2), fut).await
        });
        let socket = match r {
            Err(_) => return Err(SinkError::Timeout(remote, CONNECT_TIMEOUT.as_secs())),
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_error(remote, e)),
        };
        let peer = socket.settings().remote;
        Ok((socket, peer))
    }

    /// Listener: bind, accept receivers (in a task on the SRT runtime) while
    /// streaming to those connected; bind again if the listener dies.
    fn run_listener(&mut self) {
        let mut backoff = Backoff::default();
        let mut accepted = 0u64;
        while !self.stopped() {
            let started = self.ctx.now_ns();
            let (listener, events) = match self.listen() {
                Ok(l) => l,
                Err(e) => {
                    self.set(|s| {
                        s.common.state = State::Backoff;
                        s.common.last_error = Some(e.to_string());
                    });
                    self.idle_until(backoff.failed(started));
                    continue;
                }
            };
            backoff.succeeded();
            self.set(|s| s.common.state = State::Listening);
            let mut ended = false;
            while !self.stopped() && !ended {
                loop {
                    match events.try_recv() {
                        Ok(ListenerEvent::Connected(socket, peer)) => {
                            accepted += 1;
                            let now = self.ctx.now_ns();
                            self.conns.push(Conn::new(*socket, peer, now));
                            // It starts at a keyframe: ask for one now.
                            self.ctx.queue.request_keyframe();
                            self.set(|s| {
                                s.last_peer = Some(peer);
                                if accepted > 1 {
                                    s.common.reconnects += 1;
                                }
                            });
                        }
                        Ok(ListenerEvent::Refused(why)) => {
                            self.set(|s| s.common.last_error = Some(why))
                        }
                        Ok(ListenerEvent::Ended) | Err(mpsc::TryRecvError::Disconnected) => {
                            ended = true;
                            break;
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                    }
                }
                self.step();
                let state = if self.conns.is_empty() {
                    State::Listening
                } else {
                    State::Sending
                };
                self.set(|s| s.common.state = state);
            }
            drop(listener);
            self.close_all();
            if ended && !self.stopped() {
                self.set(|s| {
                    s.common.state = State::Backoff;
                    s.common.last_error = Some(
                        "the SRT listener stopped (srt-tokio ends it when a caller offers \
                         encryption this output is not set up for); listening again"
                            .into(),
                    );
                });
                self.idle_until(backoff.failed(self.ctx.now_ns()));
            }
        }
    }

    fn listen(&self) -> Result<(SrtListener, mpsc::Receiver<ListenerEvent>), SinkError> {
        let url = &self.url;
        let host = if url.host.is_empty() {
            "0.0.0.0"
        } else {
            url.host.as_str()
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{}", url.port)
        } else {
            format!("{host}:{}", url.port)
        };
        let bound = self.rt.block_on(async {
            SrtListener::builder()
                .set(self.options())
                .bind(addr.as_str())
                .await
        });
        let (listener, incoming) = bound.map_err(|source| SinkError::Listen {
            addr: addr.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel();
        let keys = self.key_settings(KeySize::Unspecified);
        let streamid = url.streamid.clone();
        self.rt.spawn(accept_loop(incoming, tx, keys, streamid));
        Ok((listener, rx))
    }

    /// One round: at most one frame out to every connection, then the
    /// connections' news (statistics, closures).
    fn step(&mut self) {
        if let Some(f) = self.ctx.pop(POLL) {
            self.send_frame(&f);
        }
        let mut closed = Vec::new();
        let now = self.ctx.now_ns();
        self.conns.retain_mut(|c| {
            if c.poll(now) {
                closed.push(c.peer.clone());
                false
            } else {
                true
            }
        });
        let peers: Vec<PeerStatus> = self.conns.iter().map(|c| c.peer.clone()).collect();
        let mut st = lock(&self.ctx.status);
        for p in closed {
            st.closed.packets_sent += p.packets_sent;
            st.closed.packets_retransmitted += p.packets_retransmitted;
            st.closed.packets_lost += p.packets_lost;
            st.closed.packets_dropped += p.packets_dropped;
        }
        st.peers = peers;
        st.common.send_rate_bps = self.rate.update(now, st.common.bytes_sent);
    }

    fn send_frame(&mut self, f: &SharedFrame) {
        if f.is_audio() {
            self.muxer.write(f, &mut self.pending_audio);
            // No video for a while (encoder restarting): keep it bounded.
            if self.pending_audio.len() > 256 * 1024 {
                self.pending_audio.clear();
            }
            return;
        }
        let wanted = self
            .conns
            .iter()
            .any(|c| f.keyframe || !c.awaiting_keyframe);
        if !wanted {
            self.pending_audio.clear();
            return;
        }
        self.ts.clear();
        self.ts.append(&mut self.pending_audio);
        self.muxer.write(f, &mut self.ts);
        self.messages.clear();
        pack_messages(&self.ts, |m| self.messages.push(Bytes::copy_from_slice(m)));
        let mut sent_to = 0;
        for c in &mut self.conns {
            if f.keyframe {
                c.awaiting_keyframe = false;
            }
            if c.awaiting_keyframe {
                c.peer.frames_dropped += 1;
                continue;
            }
            let mut ok = true;
            for m in &self.messages {
                match c.send(m.clone()) {
                    Sent::Ok => {}
                    // A partial frame is useless: skip to the next keyframe.
                    Sent::Full => {
                        c.awaiting_keyframe = true;
                        c.peer.frames_dropped += 1;
                        ok = false;
                        break;
                    }
                    // Noticed and removed by `Conn::poll`.
                    Sent::Closed => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                sent_to += 1;
            }
        }
        if sent_to > 0 {
            let bytes = (self.messages.len() * MESSAGE_SIZE * sent_to) as u64;
            let delay = self.ctx.now_ns().saturating_sub(f.capture_ns);
            self.set(|s| {
                s.common.bytes_sent += bytes;
                s.common.frames_sent += 1;
                if s.delay_ns.len() >= DELAY_SAMPLES {
                    s.delay_ns.pop_front();
                }
                s.delay_ns.push_back(delay);
            });
        }
    }

    /// Ends every connection (dropping a socket closes it in the background).
    fn close_all(&mut self) {
        let mut st = lock(&self.ctx.status);
        for c in self.conns.drain(..) {
            st.closed.packets_sent += c.peer.packets_sent;
            st.closed.packets_retransmitted += c.peer.packets_retransmitted;
            st.closed.packets_lost += c.peer.packets_lost;
            st.closed.packets_dropped += c.peer.packets_dropped;
        }
        st.peers.clear();
        st.common.send_rate_bps = 0.0;
    }
}

/// An error from srt-tokio's connect in words a user can act on.
fn connect_error(peer: String, e: std::io::Error) -> SinkError {
    match e.kind() {
        std::io::ErrorKind::TimedOut => SinkError::Timeout(peer, CONNECT_TIMEOUT.as_secs()),
        std::io::ErrorKind::ConnectionRefused => {
            let reason = e.to_string();
            let hint = if reason.contains("password") || reason.contains("secret") {
                " (the passphrase differs from the receiver's)"
            } else if reason.contains("nsecure") || reason.contains("encrypt") {
                " (one side has a passphrase and the other has none)"
            } else {
                ""
            };
            SinkError::Refused { peer, reason, hint }
        }
        _ => SinkError::Connect { peer, source: e },
    }
}

/// Accepts receivers for a listener output and hands them to its thread.
async fn accept_loop(
    mut incoming: srt_tokio::SrtIncoming,
    tx: mpsc::Sender<ListenerEvent>,
    keys: Option<KeySettings>,
    streamid: Option<String>,
) {
    // Turns a caller away and tells the output thread why.
    let refuse = |reason: RejectReason, why: String| {
        let _ = tx.send(ListenerEvent::Refused(why));
        reason
    };
    while let Some(req) = incoming.incoming().next().await {
        let peer = req.remote();
        if let Some(want) = &streamid {
            if req.stream_id().map(|s| s.as_str()) != Some(want.as_str()) {
                let why = format!(
                    "refused receiver {peer}: its streamid is not the one this output wants"
                );
                let reason = refuse(RejectReason::Server(ServerRejectReason::Forbidden), why);
                let _ = req.reject(reason).await;
                continue;
            }
        }
        // srt-tokio panics unless the key length we answer with equals the
        // one the caller announced; the caller's key material decides anyway.
        let answer = match (&keys, req.key_size()) {
            (Some(k), size) => Some(KeySettings {
                key_size: size,
                passphrase: k.passphrase.clone(),
            }),
            (None, KeySize::Unspecified) => None,
            (None, _) => {
                let why = format!(
                    "refused receiver {peer}: it wants encryption but this output has no passphrase"
                );
                let _ = req
                    .reject(refuse(RejectReason::Core(CoreRejectReason::Unsecure), why))
                    .await;
                continue;
            }
        };
        let encrypted = answer.is_some();
        match req.accept(answer).await {
            Ok(socket) => {
                if tx
                    .send(ListenerEvent::Connected(Box::new(socket), peer))
                    .is_err()
                {
                    return;
                }
            }
            Err(_) => {
                let why = if encrypted {
                    format!("refused receiver {peer}: wrong passphrase, or it has none")
                } else {
                    format!("handshake with receiver {peer} failed")
                };
                let _ = tx.send(ListenerEvent::Refused(why));
            }
        }
    }
    let _ = tx.send(ListenerEvent::Ended);
}

/// The SRT output kind: `srt://` entries of `outputs`, and the tokio
/// runtime they share (made when the first one starts).
#[derive(Default)]
pub struct Srt {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// What one SRT output runs with; a change restarts it.
#[derive(Debug, Clone, PartialEq)]
pub struct SrtSettings {
    pub url: SrtUrl,
    /// The audio track it muxes.
    pub audio: Option<AudioFormat>,
}

impl Srt {
    fn runtime(&self) -> std::io::Result<tokio::runtime::Handle> {
        let mut rt = lock(&self.runtime);
        if let Some(rt) = rt.as_ref() {
            return Ok(rt.handle().clone());
        }
        let new = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("srt-io")
            .enable_io()
            .enable_time()
            .build()?;
        let h = new.handle().clone();
        *rt = Some(new);
        Ok(h)
    }
}

impl Drop for Srt {
    fn drop(&mut self) {
        if let Some(rt) = lock(&self.runtime).take() {
            // Do not wait for connections to say goodbye.
            rt.shutdown_background();
        }
    }
}

impl OutputKind for Srt {
    type Settings = SrtSettings;
    type Status = SrtStatus;
    const KIND: &'static str = "srt";
    /// 3 s at 30 fps.
    const QUEUE_FRAMES: usize = 90;

    fn wanted(&self, cfg: &ValidConfig) -> Vec<Wanted<SrtSettings>> {
        let audio = cfg.audio_format();
        wanted_outputs(cfg, |url, _| match url {
            OutputUrl::Srt(u) => Some(SrtSettings {
                url: u.clone(),
                audio,
            }),
            _ => None,
        })
    }

    fn idle_status(&self, settings: &SrtSettings, state: State) -> SrtStatus {
        SrtStatus::new(state, settings.url.mode)
    }

    fn run(&self, settings: SrtSettings, ctx: Ctx<SrtStatus>) {
        let rt = match self.runtime() {
            Ok(rt) => rt,
            Err(e) => {
                ctx.set(|s| {
                    s.common.state = State::Stopped;
                    s.common.last_error = Some(format!("cannot start the SRT runtime: {e}"));
                });
                return;
            }
        };
        let rate = RateMeter::new(ctx.now_ns(), 0);
        Worker {
            url: settings.url,
            ctx,
            rt,
            muxer: ProgramMuxer::new(settings.audio),
            pending_audio: Vec::new(),
            conns: Vec::new(),
            ts: Vec::with_capacity(256 * 1024),
            messages: Vec::new(),
            rate,
        }
        .run()
    }

    fn common(s: &SrtStatus) -> Common {
        let peer = s.peers.first().map(|p| p.addr).or(s.last_peer);
        Common {
            peer: peer.map(|p| p.to_string()),
            ..s.common.clone()
        }
    }

    fn set_error(status: &mut SrtStatus, error: String) {
        status.common.last_error = Some(error);
    }

    fn extra_json(s: &SrtStatus, out: &mut Map<String, Value>) {
        let t = s.totals();
        let (d50, d99) = s.send_delay_ms().unzip();
        let peers: Vec<Value> = s
            .peers
            .iter()
            .map(|p| {
                json!({
                    "addr": p.addr.to_string(),
                    "rtt_ms": round1(p.rtt_ms),
                    "packets_sent": p.packets_sent,
                    "packets_retransmitted": p.packets_retransmitted,
                    "packets_lost": p.packets_lost,
                    "packets_dropped": p.packets_dropped,
                    "frames_dropped": p.frames_dropped,
                })
            })
            .collect();
        let extra = json!({
            "mode": s.mode.as_str(),
            "receivers": s.peers.len(),
            "peers": peers,
            "rtt_ms": s.peers.first().map(|p| round1(p.rtt_ms)),
            "packets_sent": t.packets_sent,
            "packets_retransmitted": t.packets_retransmitted,
            "packets_lost": t.packets_lost,
            "packets_dropped": t.packets_dropped,
            "send_delay_ms": { "p50": d50.map(round1), "p99": d99.map(round1) },
        });
        if let Value::Object(m) = extra {
            out.extend(m);
        }
    }

    fn write_metrics(rows: &[(String, SrtStatus)], out: &mut String) {
        if rows.is_empty() {
            return;
        }
        let common: Vec<(String, Common)> = rows
            .iter()
            .map(|(l, s)| (l.clone(), Self::common(s)))
            .collect();
        write_common_families(out, "roomcast_srt", "an SRT output", &common);
        type Metric = (
            &'static str,
            &'static str,
            &'static str,
            fn(&SrtStatus) -> f64,
        );
        #[rustfmt::skip]
        let metrics: [Metric; 4] = [
            ("roomcast_srt_receivers", "gauge", "Live SRT connections of an output.", |s| s.peers.len() as f64),
            ("roomcast_srt_packets_retransmitted_total", "counter", "SRT packets sent again after a loss report.", |s| s.totals().packets_retransmitted as f64),
            ("roomcast_srt_packets_lost_total", "counter", "SRT packets the receivers reported lost.", |s| s.totals().packets_lost as f64),
            ("roomcast_srt_rtt_seconds", "gauge", "Handshake round-trip time of the first connection.", |s| s.peers.first().map_or(0.0, |p| p.rtt_ms / 1e3)),
        ];
        for (name, kind, help, f) in metrics {
            write_family(
                out,
                (name, kind, help),
                rows.iter().map(|(l, s)| (l.clone(), f(s))),
            );
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::super::output::{test_manager, Manager};
    use super::*;
    use crate::base::bus::FrameBus;
    use crate::base::clock::RealClock;
    use crate::base::clock::SharedClock;
    use std::sync::Arc;

    /// Outputs with the sound track on (the default).
    fn cfg(outputs: &[(&str, bool)]) -> ValidConfig {
        super::super::output::config_with_outputs(outputs, true)
    }

    #[test]
    fn apply_touches_only_changed_srt_outputs_and_caller_backs_off() {
        let (bus, outs) = test_manager(Srt::default());
        // Nobody answers on port 9: the caller times out and retries.
        let a = "srt://127.0.0.1:9?passphrase=aaaaaaaaaaaaaaaa";
        let free = || {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .unwrap()
                .port()
        };
        let b = format!("srt://:{}?mode=listener", free());
        let b2 = format!("srt://127.0.0.1:{}?mode=listener&latency=200", free());
        let (b, b2) = (b.as_str(), b2.as_str());
        outs.apply(&cfg(&[(a, true), (b, true), ("rtmp://h/live/k", true)]));
        let before = bus.sinks();
        assert_eq!(before.len(), 2, "RTMP outputs are not ours");
        outs.apply(&cfg(&[(a, true), (b2, true)]));
        let after = bus.sinks();
        assert!(Arc::ptr_eq(&before[0], &after[0]));
        assert!(before[1].is_closed());
        std::thread::sleep(Duration::from_millis(300));
        let st = outs.status_json();
        assert_eq!(
            st[0]["url"],
            "srt://127.0.0.1:9?mode=caller&latency=300&passphrase=****"
        );
        assert_eq!(st[0]["state"], "connecting");
        assert_eq!(st[1]["state"], "listening", "{}", st[1]);
        outs.apply(&cfg(&[(a, false)]));
        assert_eq!(outs.status_json()[0]["state"], "disabled");
        assert!(bus.sinks().is_empty());
        let mut m = String::new();
        outs.write_metrics(&mut m);
        assert!(m.contains("roomcast_srt_reconnects_total{output=\"srt://127.0.0.1:9"));
    }

    /// CPU cost of one SRT output at 4 Mbit/s, and capture → handed to SRT
    /// delay: synthetic 720p30-sized frames (16.7 kB, keyframe every 30)
    /// pushed to libsrt's srt-live-transmit on loopback for 20 s. Run by
    /// hand (README "SRT output"):
    /// `cargo test --release -p roomcast --lib srt::tests::cost -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement; needs srt-live-transmit"]
    fn cost_of_one_output_at_4_mbit() {
        use crate::base::frame::EncodedFrame;
        use roomcast_media::time::Ticks90k;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let mut rx = std::process::Command::new("srt-live-transmit")
            .args([
                "-q",
                &format!("srt://127.0.0.1:{port}?mode=listener"),
                "file://con",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("srt-live-transmit (apt install srt-tools)");
        let clock: SharedClock = Arc::new(RealClock::new());
        let bus = Arc::new(FrameBus::new());
        let outs = Manager::new(Srt::default(), bus.clone(), clock.clone());
        outs.apply(&cfg(&[(&format!("srt://127.0.0.1:{port}"), true)]));
        let thread_cpu = || -> u64 {
            let mut ticks = 0;
            for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                let Some((name, rest)) = stat.split_once(") ") else {
                    continue;
                };
                if name.ends_with("(srt") || name.ends_with("(srt-io") {
                    let f: Vec<&str> = rest.split(' ').collect();
                    ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
                }
            }
            ticks
        };
        let frame_bytes = 4_000_000 / 8 / 30;
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut publish = |n: u64| {
            let mut data = vec![0, 0, 0, 1, if n.is_multiple_of(30) { 0x65 } else { 0x41 }];
            while data.len() < frame_bytes {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.extend_from_slice(&seed.to_le_bytes());
            }
            let now = clock.monotonic_ns();
            bus.publish(Arc::new(EncodedFrame {
                capture_ns: now,
                wall_ms: 0,
                pts: Ticks90k::from_nanos(now),
                dts: Ticks90k::from_nanos(now),
                duration: Ticks90k(3000),
                keyframe: n.is_multiple_of(30),
                data,
                epoch: 0,
                width: 1280,
                height: 720,
                rendition: 0,
                track: crate::base::frame::Track::Video,
            }));
        };
        let period = Duration::from_nanos(1_000_000_000 / 30);
        let start = Instant::now();
        let mut n = 0;
        let mut measured_from = None;
        while start.elapsed() < Duration::from_secs(25) {
            if measured_from.is_none() && start.elapsed() >= Duration::from_secs(5) {
                measured_from = Some((Instant::now(), thread_cpu()));
            }
            publish(n);
            n += 1;
            std::thread::sleep(
                (start + period * n as u32).saturating_duration_since(Instant::now()),
            );
        }
        let (t0, c0) = measured_from.unwrap();
        let hz = 100.0; // USER_HZ on Linux
        let cpu = (thread_cpu() - c0) as f64 / hz / t0.elapsed().as_secs_f64();
        let st = &outs.status_json()[0];
        eprintln!(
            "one SRT output at 4 Mbit/s: {:.2} % of a core (srt + srt-io threads); send rate {} kbit/s; capture -> handed to SRT {}; {st}",
            cpu * 100.0,
            st["send_rate_kbps"],
            st["send_delay_ms"]
        );
        assert_eq!(st["state"], "sending", "{st}");
        let _ = rx.kill();
        let _ = rx.wait();
    }
}
