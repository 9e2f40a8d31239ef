//! The RTMP sink: one thread per enabled `rtmp://` or `rtmps://` output,
//! each fed by its own bounded queue on the frame bus, pushing FLV over RTMP
//! to an upstream server (the protocol is `roomcast_media::rtmp`, sans-IO;
//! this module only moves its bytes).
//!
//! * Blocking `std::net` sockets with connect, read and write timeouts, so a
//!   dead or slow server blocks only its own thread; capture and the other
//!   sinks never wait (the bus drops this sink's frames to the next keyframe
//!   when its queue is full).
//! * `rtmps://` is TLS 1.2/1.3 by rustls, checked against the bundled web PKI
//!   roots plus the PEM certificates in the output's `ca_file`.
//! * After every (re)connect the sink waits for the next keyframe, then sends
//!   `onMetaData`, the AVC sequence header and, when the stream has audio
//!   (`ValidConfig::audio_format`), the AAC sequence header, then frames:
//!   video as video messages, AAC as audio messages on their own chunk
//!   stream. RTMP timestamps are the frames' decode times (video) or
//!   presentation times (audio) relative to the first frame the output ever
//!   sent, so they continue across reconnects and keep A/V sync; audio
//!   before the keyframe a connection starts at is dropped.
//! * Failures (refused connection, TLS error, a publish the server rejects)
//!   retry after a capped exponential backoff, 250 ms doubling to 5 s,
//!   reset once a connection reaches publishing.
//!
//! [`Outputs`] owns the threads and applies configuration changes: only
//! outputs whose settings changed are stopped or started.

use crate::base::bus::{FrameBus, SinkQueue};
use crate::base::clock::SharedClock;
use crate::base::frame::{AudioFormat, EncodedFrame};
use crate::base::lock;
use crate::base::stats::{output_label, write_family};
use crate::config::url::{OutputUrl, RtmpUrl};
use crate::config::{Output, ValidConfig};
use roomcast_media::flv::{AudioMetadata, Metadata};
use roomcast_media::h264::{annexb_to_avcc, ParameterSets};
use roomcast_media::rtmp::{ClientConfig, ClientSession, Event, RtmpError, State};
use roomcast_media::time::Ticks90k;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames an output may fall behind (3 s at 30 fps) before the bus drops to
/// the next keyframe.
pub const QUEUE_FRAMES: usize = 90;
/// First retry delay; doubles per failure up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_MIN_MS: u64 = 250;
pub const BACKOFF_MAX_MS: u64 = 5_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write blocked this long means the server stopped reading: reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout while waiting for the server's answers during setup; also
/// how often a stop request is noticed then.
const SETUP_READ_TIMEOUT: Duration = Duration::from_millis(100);
/// How long the server may take from TCP connect to `Publish.Start`.
const SETUP_TIMEOUT_MS: u32 = 10_000;
/// Send rate is measured over windows of about this length.
const RATE_WINDOW_NS: u64 = 1_000_000_000;

/// What an output is doing, as `/api/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// Configured but `enabled = false`.
    Disabled,
    /// Resolving and opening TCP (and TLS).
    Connecting,
    /// RTMP handshake, connect, createStream, publish.
    Handshaking,
    Publishing,
    /// Waiting to retry after a failure.
    Backoff,
    /// Waiting to retry after the server refused the stream.
    Rejected,
    /// Removed from the configuration; the thread is ending.
    Stopped,
}

impl OutputState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputState::Disabled => "disabled",
            OutputState::Connecting => "connecting",
            OutputState::Handshaking => "handshaking",
            OutputState::Publishing => "publishing",
            OutputState::Backoff => "backoff",
            OutputState::Rejected => "rejected",
            OutputState::Stopped => "stopped",
        }
    }
}

/// One output's figures, updated by its thread.
#[derive(Debug, Clone)]
pub struct OutputStatus {
    pub state: OutputState,
    /// The server address of the current or last connection.
    pub peer: Option<SocketAddr>,
    /// Bytes written to the socket (RTMP, before TLS), all connections.
    pub bytes_sent: u64,
    /// Bits per second over the last second or so while publishing.
    pub send_rate_bps: f64,
    pub frames_sent: u64,
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// Why the last connection failed or was refused.
    pub last_error: Option<String>,
}

impl OutputStatus {
    fn new(state: OutputState) -> Self {
        OutputStatus {
            state,
            peer: None,
            bytes_sent: 0,
            send_rate_bps: 0.0,
            frames_sent: 0,
            reconnects: 0,
            last_error: None,
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("{0}")]
    Tls(String),
    #[error("connection to {peer} lost: {source}")]
    Io { peer: SocketAddr, source: io::Error },
    #[error("server at {0} closed the connection")]
    Closed(SocketAddr),
    #[error("RTMP: {0}")]
    Protocol(#[from] RtmpError),
    /// The server refused; not a fault of the connection.
    #[error("server refused the stream: {code}: {description}")]
    Rejected { code: String, description: String },
    /// The server closed the connection in answer to `publish`.
    #[error("server at {0} refused the stream: it hung up in answer to publish (is the stream key right?)")]
    HungUpOnPublish(SocketAddr),
}

/// The sink thread's view of one output.
struct Worker {
    url: RtmpUrl,
    ca_file: Option<String>,
    queue: Arc<SinkQueue>,
    status: Arc<Mutex<OutputStatus>>,
    stop: Arc<AtomicBool>,
    clock: SharedClock,
    bitrate_kbps: Arc<AtomicU32>,
    /// The stream's audio, when it has any: announced in `onMetaData` and
    /// by an AAC sequence header, then carried as audio messages.
    audio: Option<AudioFormat>,
    /// Decode time of the first frame this output sent: RTMP time zero.
    origin: Option<Ticks90k>,
    connections: u64,
}

/// A socket, plain or TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &s.sock,
        }
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(b),
            Transport::Tls(s) => {
                s.write_all(b)?;
                s.flush()
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    fn set<F: FnOnce(&mut OutputStatus)>(&self, f: F) {
        f(&mut lock(&self.status));
    }

    fn now_ms(&self) -> u32 {
        // RTMP's clocks are 32-bit milliseconds that wrap.
        (self.clock.monotonic_ns() / 1_000_000) as u32
    }

    fn run(mut self) {
        let mut backoff_ms = BACKOFF_MIN_MS;
        while !self.stopped() {
            if self.connections > 0 {
                self.set(|s| s.reconnects += 1);
            }
            self.connections += 1;
            let mut published = false;
            let result = self.connection(&mut published);
            if self.stopped() {
                break;
            }
            if published {
                backoff_ms = BACKOFF_MIN_MS;
            }
            let (state, text) = match &result {
                Err(e @ (SinkError::Rejected { .. } | SinkError::HungUpOnPublish(_))) => {
                    (OutputState::Rejected, e.to_string())
                }
                Err(e) => (OutputState::Backoff, e.to_string()),
                Ok(()) => (OutputState::Backoff, "connection ended".to_string()),
            };
            self.set(|s| {
                s.state = state;
                s.send_rate_bps = 0.0;
                s.last_error = Some(text);
            });
            self.idle(Duration::from_millis(backoff_ms));
            backoff_ms = (backoff_ms * 2).min(BACKOFF_MAX_MS);
        }
        self.set(|s| s.state = OutputState::Stopped);
    }

    /// Waits `d`, discarding frames (they would be stale by the time a
    /// connection is up), or until stopped.
    fn idle(&self, d: Duration) {
        let end = self.clock.monotonic_ns() + d.as_nanos() as u64;
        while !self.stopped() {
            let now = self.clock.monotonic_ns();
            if now >= end {
                return;
            }
            let _ = self.queue.pop_timeout(Duration::from_nanos(end - now));
        }
    }

    /// One connection, from TCP connect until it fails or the output stops.
    fn connection(&mut self, published: &mut bool) -> Result<(), SinkError> {
        self.set(|s| s.state = OutputState::Connecting);
        let (tcp, peer) = self.connect_tcp()?;
        self.set(|s| s.peer = Some(peer));
        let io_err = |source| SinkError::Io { peer, source };
        tcp.set_nodelay(true).map_err(io_err)?;
        tcp.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(io_err)?;
        let mut t = if self.url.tls {
            Transport::Tls(Box::new(self.tls(tcp)?))
        } else {
            Transport::Plain(tcp)
        };
        t.tcp()
            .set_read_timeout(Some(SETUP_READ_TIMEOUT))
            .map_err(io_err)?;
        self.set(|s| s.state = OutputState::Handshaking);

        let mut cfg = ClientConfig::new(&self.url.app, &self.url.tc_url(), &self.url.key);
        // flashVer stays the default "FMLE/3.0 (compatible; roomcast)":
        // nginx-rtmp keeps only 31 bytes of it; the version is in onMetaData.
        cfg.setup_timeout_ms = SETUP_TIMEOUT_MS;
        cfg.random_seed = self.clock.monotonic_ns() ^ self.connections.rotate_left(32);
        let mut sess = ClientSession::new(cfg, self.now_ms());
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];

        // Setup: until the server says Publish.Start.
        loop {
            self.flush(&mut t, &mut sess, &mut out, peer)?;
            if self.stopped() {
                return Ok(());
            }
            let closed = match t.read(&mut buf) {
                Ok(0) => Err(SinkError::Closed(peer)),
                Ok(n) => {
                    sess.handle_input(self.now_ms(), &buf[..n])?;
                    Ok(())
                }
                Err(e) if is_timeout(&e) => Ok(()),
                Err(e) => Err(io_err(e)),
            };
            if let Err(e) = closed {
                // Servers that refuse a stream key often just hang up
                // (nginx-rtmp's on_publish does): report it as a refusal.
                if sess.state() == State::PublishRequested {
                    return Err(SinkError::HungUpOnPublish(peer));
                }
                return Err(e);
            }
            sess.handle_timeout(self.now_ms())?;
            if drain_events(&mut sess)? {
                break;
            }
        }
        *published = true;
        self.set(|s| {
            s.state = OutputState::Publishing;
            s.last_error = None;
        });
        self.publish(&mut t, &mut sess, peer)
    }

    fn connect_tcp(&self) -> Result<(TcpStream, SocketAddr), SinkError> {
        let host = self.url.host.as_str();
        let addrs: Vec<SocketAddr> = (host, self.url.port)
            .to_socket_addrs()
            .map_err(|source| SinkError::Resolve {
                host: host.to_string(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => return Ok((s, a)),
                Err(e) => last = e,
            }
        }
        Err(SinkError::Connect {
            addr: format!("{host}:{}", self.url.port),
            source: last,
        })
    }

    /// Opens TLS on `tcp` and completes the handshake, so certificate
    /// problems show up here with a clear message.
    fn tls(
        &self,
        mut tcp: TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, SinkError> {
        let config = tls_config(self.ca_file.as_deref()).map_err(SinkError::Tls)?;
        let name = rustls_pki_types::ServerName::try_from(self.url.host.clone())
            .map_err(|e| SinkError::Tls(format!("TLS: bad server name {}: {e}", self.url.host)))?;
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| SinkError::Tls(format!("TLS: {e}")))?;
        let _ = tcp.set_read_timeout(Some(CONNECT_TIMEOUT));
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                return Err(SinkError::Tls(tls_error_text(&self.url.host, &e)));
            }
        }
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    /// Writes what the session has to send (`out` is the reused buffer).
    fn flush(
        &self,
        t: &mut Transport,
        sess: &mut ClientSession,
        out: &mut Vec<u8>,
        peer: SocketAddr,
    ) -> Result<(), SinkError> {
        sess.poll_transmit(out);
        if out.is_empty() {
            return Ok(());
        }
        let written = t.write_all(out);
        let n = out.len() as u64;
        out.clear();
        written.map_err(|source| SinkError::Io { peer, source })?;
        self.set(|s| s.bytes_sent += n);
        Ok(())
    }

    /// Streams frames until the connection fails or the output stops.
    fn publish(
        &mut self,
        t: &mut Transport,
        sess: &mut ClientSession,
        peer: SocketAddr,
    ) -> Result<(), SinkError> {
        let io_err = |source| SinkError::Io { peer, source };
        // What queued up during setup is stale: start from the next keyframe,
        // and ask for one rather than waiting out the GOP.
        while self.queue.pop_timeout(Duration::ZERO).is_some() {}
        self.queue.request_keyframe();
        let mut mux = Mux::new(self.audio);
        let encoder = format!("roomcast/{}", env!("CARGO_PKG_VERSION"));
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut rate = (self.clock.monotonic_ns(), lock(&self.status).bytes_sent);
        while !self.stopped() {
            if let Some(f) = self.queue.pop_timeout(Duration::from_millis(100)) {
                let kbps = self.bitrate_kbps.load(Relaxed);
                let sent = mux.frame(&f, &mut self.origin, kbps, &encoder, |tag| {
                    send_tag(sess, tag)
                })?;
                if sent {
                    self.set(|s| s.frames_sent += 1);
                }
            }
            self.flush(t, sess, &mut out, peer)?;
            // Whatever the server said meanwhile, without waiting for it.
            t.tcp().set_nonblocking(true).map_err(io_err)?;
            let read = loop {
                match t.read(&mut buf) {
                    Ok(0) => break Err(SinkError::Closed(peer)),
                    Ok(n) => {
                        if let Err(e) = sess.handle_input(self.now_ms(), &buf[..n]) {
                            break Err(e.into());
                        }
                    }
                    Err(e) if is_timeout(&e) => break Ok(()),
                    Err(e) => break Err(io_err(e)),
                }
            };
            t.tcp().set_nonblocking(false).map_err(io_err)?;
            read?;
            drain_events(sess)?;
            self.flush(t, sess, &mut out, peer)?;
            let now = self.clock.monotonic_ns();
            if now - rate.0 >= RATE_WINDOW_NS {
                let mut st = lock(&self.status);
                st.send_rate_bps = (st.bytes_sent - rate.1) as f64 * 8e9 / (now - rate.0) as f64;
                rate = (now, st.bytes_sent);
            }
        }
        Ok(())
    }
}

/// Handles the session's events; true once publishing has started.
fn drain_events(sess: &mut ClientSession) -> Result<bool, SinkError> {
    let mut publishing = false;
    while let Some(ev) = sess.poll_event() {
        match ev {
            Event::Publishing { .. } => publishing = true,
            Event::Rejected { code, description } => {
                return Err(SinkError::Rejected { code, description })
            }
            Event::HandshakeDone | Event::Connected | Event::Status { .. } => {}
        }
    }
    Ok(publishing)
}

/// One FLV tag body to send on a connection, at RTMP time `ts` (ms).
#[derive(Debug, Clone, PartialEq)]
enum Tag<'a> {
    /// `@setDataFrame onMetaData`, with the audio fields when the stream
    /// has audio.
    Metadata {
        ts: u32,
        meta: Metadata,
        audio: Option<AudioMetadata>,
    },
    AvcSequenceHeader {
        ts: u32,
        record: &'a [u8],
    },
    /// `AF 00` and the AudioSpecificConfig.
    AacSequenceHeader {
        ts: u32,
        asc: [u8; 2],
    },
    Video {
        ts: u32,
        cts: i32,
        keyframe: bool,
        avcc: &'a [u8],
    },
    /// `AF 01` and one raw AAC frame.
    Audio {
        ts: u32,
        frame: &'a [u8],
    },
}

/// Turns bus frames into the FLV tags of one connection, without I/O.
///
/// Nothing goes out before a keyframe; in front of it `onMetaData`, the AVC
/// sequence header and (with audio) the AAC sequence header, all at its
/// time. Video is stamped with its DTS, audio with its PTS, both in ms from
/// the same origin (the output's first keyframe), so A/V sync survives
/// RTMP. Audio and video arrive only roughly interleaved; each stream is
/// kept non-decreasing on its own: audio earlier than the connection's
/// first keyframe, or than audio already sent, is dropped.
struct Mux {
    audio: Option<AudioFormat>,
    /// The AVCDecoderConfigurationRecord last sent; none until the first
    /// keyframe of the connection.
    record: Option<Vec<u8>>,
    /// Audio with an earlier PTS is dropped: the first keyframe's DTS, then
    /// the PTS of the last audio frame sent.
    audio_floor: Option<Ticks90k>,
    avcc: Vec<u8>,
}

impl Mux {
    fn new(audio: Option<AudioFormat>) -> Mux {
        Mux {
            audio,
            record: None,
            audio_floor: None,
            avcc: Vec::new(),
        }
    }

    /// Hands the tags for `f` to `emit`, in order. `origin` is the DTS of
    /// the output's first keyframe (set here by the first one, kept across
    /// connections). True when `f` went out as a video frame.
    fn frame<E>(
        &mut self,
        f: &EncodedFrame,
        origin: &mut Option<Ticks90k>,
        video_kbps: u32,
        encoder: &str,
        mut emit: impl FnMut(Tag<'_>) -> Result<(), E>,
    ) -> Result<bool, E> {
        if f.is_audio() {
            // Audio is only sent when announced, after the first keyframe.
            let (Some(_), Some(floor), Some(origin)) = (self.audio, self.audio_floor, *origin)
            else {
                return Ok(false);
            };
            if f.pts < floor {
                return Ok(false);
            }
            self.audio_floor = Some(f.pts);
            emit(Tag::Audio {
                ts: rtmp_ms(f.pts, origin),
                frame: &f.data,
            })?;
            return Ok(false);
        }
        if f.keyframe {
            if let Ok(ps) = ParameterSets::from_annexb(&f.data) {
                let r = ps.avc_decoder_configuration_record();
                if self.record.as_ref() != Some(&r) {
                    let origin = *origin.get_or_insert(f.dts);
                    let ts = rtmp_ms(f.dts, origin);
                    let meta = Metadata {
                        width: f.width,
                        height: f.height,
                        framerate: if f.duration.0 > 0 {
                            Ticks90k::HZ as f64 / f.duration.0 as f64
                        } else {
                            0.0
                        },
                        videodatarate_kbps: f64::from(video_kbps),
                        encoder: encoder.to_string(),
                    };
                    let audio = self.audio.map(|a| AudioMetadata {
                        sample_rate: a.sample_rate,
                        channels: a.channels,
                        datarate_kbps: f64::from(a.bitrate_kbps),
                    });
                    emit(Tag::Metadata { ts, meta, audio })?;
                    emit(Tag::AvcSequenceHeader { ts, record: &r })?;
                    // The audio configuration never changes on a
                    // connection: its header goes out once.
                    if let (None, Some(a)) = (&self.record, self.audio) {
                        emit(Tag::AacSequenceHeader { ts, asc: a.asc() })?;
                        self.audio_floor = Some(f.dts);
                    }
                    self.record = Some(r);
                }
            }
        }
        // Nothing can be decoded before a sequence header.
        if self.record.is_none() {
            return Ok(false);
        }
        let origin = *origin.get_or_insert(f.dts);
        let cts = f.pts.saturating_sub(f.dts).as_millis_rounded();
        self.avcc.clear();
        annexb_to_avcc(&f.data, &mut self.avcc);
        emit(Tag::Video {
            ts: rtmp_ms(f.dts, origin),
            cts: i32::try_from(cts).unwrap_or(i32::MAX),
            keyframe: f.keyframe,
            avcc: &self.avcc,
        })?;
        Ok(true)
    }
}

/// Sends one [`Tag`] on a publishing session (its own chunk streams: data
/// 5, video 6, audio 7).
fn send_tag(sess: &mut ClientSession, tag: Tag<'_>) -> Result<(), RtmpError> {
    match tag {
        Tag::Metadata { ts, meta, audio } => {
            sess.send_metadata_with_audio(ts, &meta, audio.as_ref())
        }
        Tag::AvcSequenceHeader { ts, record } => sess.send_avc_sequence_header(ts, record),
        Tag::Video {
            ts,
            cts,
            keyframe,
            avcc,
        } => sess.send_video(ts, cts, keyframe, avcc),
        Tag::AacSequenceHeader { ts, asc } => sess.send_aac_sequence_header(ts, &asc),
        Tag::Audio { ts, frame } => sess.send_aac(ts, frame),
    }
}

/// RTMP time of a frame: milliseconds since `origin`, modulo 2^32.
fn rtmp_ms(dts: Ticks90k, origin: Ticks90k) -> u32 {
    dts.saturating_sub(origin).as_millis_rounded() as u32
}

/// Trust: the bundled web PKI roots plus every certificate in `ca_file`.
fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("ca_file {path}: cannot read it: {e}"))?;
        let mut n = 0;
        for c in certs {
            let c = c.map_err(|e| format!("ca_file {path}: bad PEM: {e}"))?;
            roots
                .add(c)
                .map_err(|e| format!("ca_file {path}: unusable certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("ca_file {path}: no PEM certificates in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A TLS handshake failure in words a user can act on.
fn tls_error_text(host: &str, e: &io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "TLS: certificate of {host} not accepted: {c:?} (for a private server set ca_file to the CA that signed it)"
        ),
        Some(r) => format!("TLS handshake with {host} failed: {r}"),
        None => format!("TLS handshake with {host} failed: {e}"),
    }
}

/// A metric: name, type, help, and how to read it from a status.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&OutputStatus) -> f64,
);

/// One configured output and, when enabled, its thread.
struct Running {
    output: Output,
    /// The audio it was started with; a change restarts it.
    audio: Option<AudioFormat>,
    masked: String,
    status: Arc<Mutex<OutputStatus>>,
    stop: Arc<AtomicBool>,
    queue: Option<Arc<SinkQueue>>,
    _thread: Option<JoinHandle<()>>,
}

/// All RTMP outputs of the daemon.
pub struct Outputs {
    bus: Arc<FrameBus>,
    clock: SharedClock,
    bitrate_kbps: Arc<AtomicU32>,
    running: Mutex<Vec<Running>>,
}

impl Outputs {
    pub fn new(bus: Arc<FrameBus>, clock: SharedClock) -> Self {
        Outputs {
            bus,
            clock,
            bitrate_kbps: Arc::new(AtomicU32::new(0)),
            running: Mutex::new(Vec::new()),
        }
    }

    /// Makes the running outputs match `cfg`: outputs whose settings (URL,
    /// enabled, ca_file) are unchanged keep running untouched; the others
    /// stop or start.
    pub fn apply(&self, cfg: &ValidConfig) {
        self.bitrate_kbps
            .store(cfg.get().video.bitrate_kbps, Relaxed);
        let audio = cfg.audio_format();
        let mut running = lock(&self.running);
        let mut old = std::mem::take(&mut *running);
        // srt:// outputs belong to crate::sink::srt::SrtOutputs.
        for o in cfg
            .get()
            .outputs
            .iter()
            .filter(|o| !crate::sink::srt::is_srt(&o.url))
        {
            match old.iter().position(|r| r.output == *o && r.audio == audio) {
                Some(i) => running.push(old.remove(i)),
                None => running.push(self.start(o, audio)),
            }
        }
        for r in old {
            self.stop(r);
        }
    }

    /// Stops every output (at shutdown).
    pub fn stop_all(&self) {
        for r in std::mem::take(&mut *lock(&self.running)) {
            self.stop(r);
        }
    }

    fn stop(&self, r: Running) {
        r.stop.store(true, Relaxed);
        if let Some(q) = &r.queue {
            self.bus.unsubscribe(q);
        }
        // The thread notices within a read timeout (or a connect timeout)
        // and ends by itself; nobody waits for it.
    }

    fn start(&self, o: &Output, audio: Option<AudioFormat>) -> Running {
        let masked = crate::config::url::mask_url(&o.url);
        let stop = Arc::new(AtomicBool::new(false));
        let url = match OutputUrl::parse(&o.url) {
            Ok(OutputUrl::Rtmp(u)) if o.enabled => Some(u),
            _ => None,
        };
        let Some(url) = url else {
            return Running {
                output: o.clone(),
                audio,
                masked,
                status: Arc::new(Mutex::new(OutputStatus::new(OutputState::Disabled))),
                stop,
                queue: None,
                _thread: None,
            };
        };
        let status = Arc::new(Mutex::new(OutputStatus::new(OutputState::Connecting)));
        let queue = self.bus.subscribe(&format!("rtmp {masked}"), QUEUE_FRAMES);
        let worker = Worker {
            url,
            ca_file: o.ca_file.clone(),
            queue: queue.clone(),
            status: status.clone(),
            stop: stop.clone(),
            clock: self.clock.clone(),
            bitrate_kbps: self.bitrate_kbps.clone(),
            audio,
            origin: None,
            connections: 0,
        };
        let thread = std::thread::Builder::new()
            .name("rtmp".into())
            .spawn(move || worker.run());
        let (thread, status) = match thread {
            Ok(t) => (Some(t), status),
            Err(e) => {
                self.bus.unsubscribe(&queue);
                let mut st = OutputStatus::new(OutputState::Stopped);
                st.last_error = Some(format!("cannot start a thread: {e}"));
                (None, Arc::new(Mutex::new(st)))
            }
        };
        Running {
            output: o.clone(),
            audio,
            masked,
            status,
            stop,
            queue: Some(queue),
            _thread: thread,
        }
    }

    /// A JSON array: each output's status in configuration order, keys
    /// masked.
    pub fn status_json(&self) -> Value {
        let outputs: Vec<Value> = lock(&self.running)
            .iter()
            .map(|r| {
                let s = lock(&r.status).clone();
                let q = r.queue.as_ref().map(|q| q.stats());
                json!({
                    "url": r.masked,
                    "enabled": r.output.enabled,
                    "state": s.state.as_str(),
                    "peer": s.peer.map(|p| p.to_string()),
                    "bytes_sent": s.bytes_sent,
                    "send_rate_kbps": (s.send_rate_bps / 100.0).round() / 10.0,
                    "frames_sent": s.frames_sent,
                    "reconnects": s.reconnects,
                    "dropped": q.map_or(0, |q| q.dropped),
                    "last_error": s.last_error,
                })
            })
            .collect();
        Value::Array(outputs)
    }

    /// Prometheus lines for the outputs (text format 0.0.4).
    pub fn write_metrics(&self, out: &mut String) {
        let rows: Vec<(String, OutputStatus)> = lock(&self.running)
            .iter()
            .map(|r| (output_label(&r.masked), lock(&r.status).clone()))
            .collect();
        #[rustfmt::skip]
        let metrics: [Metric; 5] = [
            ("roomcast_output_bytes_sent_total", "counter", "Bytes sent to an upstream output.", |s| s.bytes_sent as f64),
            ("roomcast_output_frames_sent_total", "counter", "Frames sent to an upstream output.", |s| s.frames_sent as f64),
            ("roomcast_output_reconnects_total", "counter", "Connection attempts after the first.", |s| s.reconnects as f64),
            ("roomcast_output_send_rate_bits_per_second", "gauge", "Measured send rate of an output.", |s| s.send_rate_bps),
            ("roomcast_output_publishing", "gauge", "1 while an output is publishing.", |s| f64::from(u8::from(s.state == OutputState::Publishing))),
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

impl Drop for Outputs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::RealClock;
    use crate::config::Config;
    use roomcast_media::flv;

    /// Outputs without audio (`[audio] source = "none"`).
    fn cfg(outputs: &[(&str, bool)]) -> ValidConfig {
        cfg_audio(outputs, false)
    }

    fn cfg_audio(outputs: &[(&str, bool)], audio: bool) -> ValidConfig {
        let mut c = Config {
            outputs: outputs
                .iter()
                .map(|(u, e)| Output {
                    url: u.to_string(),
                    enabled: *e,
                    ca_file: None,
                })
                .collect(),
            ..Config::default()
        };
        if !audio {
            c.audio.source = "none".into();
        }
        c.validate().unwrap()
    }

    #[test]
    fn apply_touches_only_changed_outputs() {
        let bus = Arc::new(FrameBus::new());
        let outs = Outputs::new(bus.clone(), Arc::new(RealClock::new()));
        // Port 9 on loopback: nobody listens, so the threads just retry.
        let a = "rtmp://127.0.0.1:9/live/aaaaaaaaaaaaaaaa";
        let b = "rtmp://127.0.0.1:9/live/bbbbbbbbbbbbbbbb";
        let b2 = "rtmp://127.0.0.1:9/live/cccccccccccccccc";
        outs.apply(&cfg(&[(a, true), (b, true)]));
        let before = bus.sinks();
        assert_eq!(before.len(), 2);
        outs.apply(&cfg(&[(a, true), (b2, true)]));
        let after = bus.sinks();
        assert_eq!(after.len(), 2);
        // A's queue is the same one; B's was replaced (and closed).
        assert!(Arc::ptr_eq(&before[0], &after[0]));
        assert!(!Arc::ptr_eq(&before[1], &after[1]));
        assert!(before[1].is_closed());
        let st = outs.status_json();
        assert_eq!(st[1]["url"], "rtmp://127.0.0.1:9/live/****cccc");
        // Disabling keeps the entry but stops its thread and queue.
        outs.apply(&cfg(&[(a, true), (b2, false)]));
        assert_eq!(bus.sinks().len(), 1);
        assert_eq!(outs.status_json()[1]["state"], "disabled");
        outs.stop_all();
        assert!(bus.sinks().is_empty());
    }

    #[test]
    fn refused_connection_backs_off() {
        let bus = Arc::new(FrameBus::new());
        let outs = Outputs::new(bus, Arc::new(RealClock::new()));
        outs.apply(&cfg(&[("rtmp://127.0.0.1:9/live/k", true)]));
        std::thread::sleep(Duration::from_millis(1200));
        let st = &outs.status_json()[0];
        // Attempts at 0, 0.25, 0.75 s (then 1.75): a tight loop would show
        // hundreds.
        let n = st["reconnects"].as_u64().unwrap();
        assert!((1..=3).contains(&n), "{st}");
        assert!(
            st["last_error"]
                .as_str()
                .unwrap()
                .contains("cannot connect to 127.0.0.1:9"),
            "{st}"
        );
    }

    type Sessions = Vec<Vec<(u8, u32, Vec<u8>)>>;

    /// A [`fake_server`] for `sessions` connections of 25 frames on a free
    /// port, and outputs on a fresh bus to point at it.
    fn loopback(
        sessions: usize,
    ) -> (
        u16,
        std::thread::JoinHandle<Sessions>,
        Arc<FrameBus>,
        Outputs,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || fake_server(listener, sessions, 25));
        let bus = Arc::new(FrameBus::new());
        let outs = Outputs::new(bus.clone(), Arc::new(RealClock::new()));
        (port, server, bus, outs)
    }

    /// A minimal RTMP server for one test: answers connect, createStream
    /// and publish, records the media messages of `sessions` connections
    /// and hangs up on each after `frames` video frames.
    fn fake_server(listener: std::net::TcpListener, sessions: usize, frames: usize) -> Sessions {
        use roomcast_media::amf0::{self, Value};
        use roomcast_media::rtmp::chunk::{ChunkReader, ChunkWriter};
        let mut all = Vec::new();
        for _ in 0..sessions {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut c0c1 = vec![0u8; 1537];
            s.read_exact(&mut c0c1).unwrap();
            let mut hs = vec![3u8];
            hs.extend_from_slice(&[0u8; 1536]);
            hs.extend_from_slice(&c0c1[1..]);
            s.write_all(&hs).unwrap();
            let mut c2 = vec![0u8; 1536];
            s.read_exact(&mut c2).unwrap();
            let (mut r, mut w) = (ChunkReader::default(), ChunkWriter::default());
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            'conn: loop {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client hung up");
                r.push(&buf[..n]);
                while let Some(m) = r.next_message().unwrap() {
                    let mut reply = |vals: &[Value], csid, sid| {
                        let mut body = Vec::new();
                        vals.iter().for_each(|v| amf0::encode(v, &mut body));
                        let mut out = Vec::new();
                        w.write(csid, 0, 20, sid, &body, &mut out).unwrap();
                        out
                    };
                    match m.type_id {
                        1 => r
                            .set_chunk_size(u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
                            .unwrap(),
                        20 => {
                            let v = amf0::decode_all(&m.payload).unwrap();
                            let out = match v[0].as_str().unwrap() {
                                "connect" => reply(
                                    &[
                                        Value::str("_result"),
                                        Value::Number(1.0),
                                        Value::Null,
                                        Value::Null,
                                    ],
                                    3,
                                    0,
                                ),
                                "createStream" => reply(
                                    &[
                                        Value::str("_result"),
                                        Value::Number(4.0),
                                        Value::Null,
                                        Value::Number(1.0),
                                    ],
                                    3,
                                    0,
                                ),
                                "publish" => {
                                    let info = Value::Object(vec![
                                        ("level".into(), Value::str("status")),
                                        ("code".into(), Value::str("NetStream.Publish.Start")),
                                    ]);
                                    reply(
                                        &[
                                            Value::str("onStatus"),
                                            Value::Number(0.0),
                                            Value::Null,
                                            info,
                                        ],
                                        5,
                                        1,
                                    )
                                }
                                _ => Vec::new(),
                            };
                            s.write_all(&out).unwrap();
                        }
                        8 | 9 | 18 => {
                            got.push((m.type_id, m.timestamp, m.payload));
                            if got
                                .iter()
                                .filter(|g| {
                                    g.2.starts_with(&[0x17, 1]) || g.2.starts_with(&[0x27, 1])
                                })
                                .count()
                                >= frames
                            {
                                break 'conn;
                            }
                        }
                        _ => {}
                    }
                }
            }
            all.push(got);
        }
        all
    }

    // Parameter sets of a 320x240 openh264 stream.
    const SPS: [u8; 13] = [
        0x67, 0x42, 0xc0, 0x15, 0x8c, 0x68, 0x14, 0x1f, 0x20, 0x1e, 0x11, 0x08, 0xd4,
    ];
    const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

    #[test]
    fn reconnect_resends_headers_and_time_continues() {
        let (port, server, bus, outs) = loopback(2);
        outs.apply(&cfg(&[(&format!("rtmp://127.0.0.1:{port}/live/k"), true)]));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut n = 0u64;
        while !server.is_finished() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            let f = video(1_000_000 + n * 3000, n.is_multiple_of(10));
            bus.publish(Arc::new(f));
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let sessions = server.join().unwrap();
        let mut last = None;
        for got in &sessions {
            // Every connection: onMetaData, then the sequence header, then a
            // keyframe, all at the keyframe's time.
            assert_eq!(got[0].0, 18, "{got:?}");
            assert_eq!(got[1].2[..2], [0x17, 0], "{got:?}");
            assert_eq!(got[2].2[..2], [0x17, 1], "{got:?}");
            assert!(got[0].1 == got[1].1 && got[1].1 == got[2].1, "{got:?}");
            // Time only moves forward, across the reconnect too.
            for g in got {
                if let Some(l) = last {
                    assert!(g.1 >= l, "{sessions:?}");
                }
                last = Some(g.1);
            }
        }
        assert!(sessions[1][0].1 > sessions[0].last().unwrap().1);
        // Frames are 33 ms apart in RTMP time.
        let video: Vec<u32> = sessions[0]
            .iter()
            .filter(|g| g.0 == 9)
            .map(|g| g.1)
            .collect();
        // (After the sequence header: frame i at i × 33.3 ms, rounded, so
        // no drift.)
        for (i, t) in (0u32..).zip(&video[1..]) {
            assert_eq!(*t, (i * 100 + 1) / 3, "{video:?}");
        }
        assert!(outs.status_json()[0]["reconnects"].as_u64().unwrap() >= 1);
    }

    /// A video access unit at `t` ticks (an IDR with SPS/PPS when `key`).
    fn video(t: u64, key: bool) -> EncodedFrame {
        let mut data = Vec::new();
        if key {
            for nal in [&SPS[..], &PPS[..], &[0x65, 0x88, 0x80][..]] {
                data.extend_from_slice(&[0, 0, 0, 1]);
                data.extend_from_slice(nal);
            }
        } else {
            data.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02]);
        }
        EncodedFrame {
            capture_ns: Ticks90k(t).as_nanos(),
            wall_ms: 0,
            pts: Ticks90k(t),
            dts: Ticks90k(t),
            duration: Ticks90k(3000),
            keyframe: key,
            data,
            epoch: 0,
            width: 320,
            height: 240,
            track: crate::base::frame::Track::Video,
        }
    }

    /// An AAC frame at `t` ticks; its payload carries `t` (32 bits), so
    /// tests can tell frames apart and check their times.
    fn audio(t: u64) -> EncodedFrame {
        EncodedFrame {
            capture_ns: Ticks90k(t).as_nanos(),
            wall_ms: 0,
            pts: Ticks90k(t),
            dts: Ticks90k(t),
            duration: Ticks90k(1920),
            keyframe: false,
            data: [&[0x21][..], &(t as u32).to_be_bytes()].concat(),
            epoch: 0,
            width: 0,
            height: 0,
            track: crate::base::frame::Track::Audio,
        }
    }

    const STEREO_48K: AudioFormat = AudioFormat {
        sample_rate: 48_000,
        channels: 2,
        bitrate_kbps: 128,
    };

    /// A tag as (FLV tag type, RTMP ms, body).
    fn owned(tag: Tag<'_>) -> (u8, u32, Vec<u8>) {
        match tag {
            Tag::Metadata { ts, meta, audio } => {
                (18, ts, meta.set_data_frame_with_audio(audio.as_ref()))
            }
            Tag::AvcSequenceHeader { ts, record } => (9, ts, flv::avc_sequence_header(record)),
            Tag::AacSequenceHeader { ts, asc } => (8, ts, flv::aac_sequence_header(&asc)),
            Tag::Video {
                ts,
                cts,
                keyframe,
                avcc,
            } => (9, ts, flv::avc_nalu(keyframe, cts, avcc)),
            Tag::Audio { ts, frame } => (8, ts, flv::aac_raw(frame)),
        }
    }

    /// Runs `frames` through a fresh [`Mux`] (one connection).
    fn mux(
        audio: Option<AudioFormat>,
        origin: &mut Option<Ticks90k>,
        frames: &[EncodedFrame],
    ) -> Vec<(u8, u32, Vec<u8>)> {
        let mut m = Mux::new(audio);
        let mut tags = Vec::new();
        for f in frames {
            m.frame(f, origin, 2500, "roomcast/test", |t| {
                tags.push(owned(t));
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        tags
    }

    /// Audio and video interleaved about as the bus delivers them: audio up
    /// to ~100 ms early or late. Keyframe at 100_000 ticks.
    fn interleaved() -> Vec<EncodedFrame> {
        vec![
            audio(99_000),         // before any keyframe: dropped
            video(97_000, false),  // waiting for a keyframe: dropped
            audio(101_000),        // ahead of the keyframe, still waiting: dropped
            video(100_000, true),  // t = 0
            audio(95_000),         // late, before the keyframe: dropped
            audio(100_000),        // 0 ms
            audio(101_920),        // 21 ms
            video(103_000, false), // 33 ms
            audio(103_840),        // 43 ms
            audio(113_440),        // 149 ms, ahead of the video
            audio(105_760),        // behind audio already sent: dropped
            video(106_000, false), // 67 ms
            audio(115_360),        // 171 ms
        ]
    }

    #[test]
    fn mux_sends_headers_then_audio_and_video_from_one_origin() {
        let mut origin = None;
        let tags = mux(Some(STEREO_48K), &mut origin, &interleaved());
        assert_eq!(origin, Some(Ticks90k(100_000)));
        let kinds: Vec<(u8, u32, &[u8])> = tags
            .iter()
            .map(|(k, t, b)| (*k, *t, &b[..b.len().min(2)]))
            .collect();
        assert_eq!(
            kinds,
            [
                (18, 0, &[0x02, 0x00][..]), // AMF0 string "@setDataFrame"
                (9, 0, &[0x17, 0x00]),
                (8, 0, &[0xAF, 0x00]),
                (9, 0, &[0x17, 0x01]),
                (8, 0, &[0xAF, 0x01]),
                (8, 21, &[0xAF, 0x01]),
                (9, 33, &[0x27, 0x01]),
                (8, 43, &[0xAF, 0x01]),
                (8, 149, &[0xAF, 0x01]),
                (9, 67, &[0x27, 0x01]),
                (8, 171, &[0xAF, 0x01]),
            ],
            "{tags:?}"
        );
        // AAC-LC, 48 kHz (index 3), 2 channels.
        assert_eq!(tags[2].2, [0xAF, 0x00, 0x11, 0x90]);
        // The frames themselves, untouched, after AF 01.
        assert_eq!(tags[4].2, [0xAF, 0x01, 0x21, 0, 0x01, 0x86, 0xA0]);
        use roomcast_media::amf0::{self, Value};
        let vals = amf0::decode_all(&tags[0].2).unwrap();
        assert_eq!(vals[1], Value::str("onMetaData"));
        let arr = &vals[2];
        assert_eq!(arr.get("audiocodecid"), Some(&Value::Number(10.0)));
        assert_eq!(arr.get("audiosamplerate"), Some(&Value::Number(48_000.0)));
        assert_eq!(arr.get("audiodatarate"), Some(&Value::Number(128.0)));
        assert_eq!(arr.get("stereo"), Some(&Value::Boolean(true)));
        assert_eq!(arr.get("videodatarate"), Some(&Value::Number(2500.0)));

        // A reconnect: the same origin, audio before the new keyframe
        // dropped, one AAC header again.
        let tags = mux(
            Some(STEREO_48K),
            &mut origin,
            &[
                audio(400_000),
                video(400_000, false),
                video(403_000, true),
                audio(402_000),
                audio(403_000),
            ],
        );
        let kinds: Vec<(u8, u32)> = tags.iter().map(|(k, t, _)| (*k, *t)).collect();
        assert_eq!(
            kinds,
            [(18, 3367), (9, 3367), (8, 3367), (9, 3367), (8, 3367)],
            "{tags:?}"
        );
    }

    #[test]
    fn mux_without_audio_is_video_only() {
        let frames = interleaved();
        let tags = mux(None, &mut None, &frames);
        assert!(tags.iter().all(|t| t.0 != 8), "{tags:?}");
        let with: Vec<_> = mux(Some(STEREO_48K), &mut None, &frames)
            .into_iter()
            .filter(|t| t.0 != 8)
            .skip(1)
            .collect();
        assert_eq!(tags[1..], with[..]);
        let meta = Metadata {
            width: 320,
            height: 240,
            framerate: 30.0,
            videodatarate_kbps: 2500.0,
            encoder: "roomcast/test".into(),
        };
        assert_eq!(tags[0], (18, 0, meta.set_data_frame()));
        // A changed parameter set mid-connection: metadata and the AVC
        // header again, no second AAC header.
        let mut other = video(106_000, true);
        other.data[8] = 0x1f; // level 3.1
        let mut frames = interleaved();
        frames.push(other);
        let tags = mux(Some(STEREO_48K), &mut None, &frames);
        let kinds: Vec<(u8, u32)> = tags
            .iter()
            .rev()
            .take(3)
            .map(|(k, t, _)| (*k, *t))
            .collect();
        assert_eq!(kinds, [(9, 67), (9, 67), (18, 67)], "{tags:?}");
        assert_eq!(tags.iter().filter(|t| t.2[..2] == [0xAF, 0]).count(), 1);
    }

    /// A session that reached publishing (stream id 1) against a scripted
    /// server in memory, its setup bytes already taken.
    fn publishing_session() -> ClientSession {
        use roomcast_media::amf0::{self, Value};
        let mut cfg = ClientConfig::new("live", "rtmp://127.0.0.1/live", "k");
        cfg.random_seed = 7;
        let mut sess = ClientSession::new(cfg, 0);
        let mut out = Vec::new();
        sess.poll_transmit(&mut out);
        let mut s0s1s2 = vec![3u8];
        s0s1s2.extend_from_slice(&[0u8; 1536]);
        s0s1s2.extend_from_slice(&out[1..1537]);
        sess.handle_input(0, &s0s1s2).unwrap();
        let mut w = roomcast_media::rtmp::chunk::ChunkWriter::default();
        let info = Value::Object(vec![
            ("level".into(), Value::str("status")),
            ("code".into(), Value::str("NetStream.Publish.Start")),
        ]);
        let replies = [
            (
                3,
                0,
                vec![
                    Value::str("_result"),
                    Value::Number(1.0),
                    Value::Null,
                    Value::Null,
                ],
            ),
            (
                3,
                0,
                vec![
                    Value::str("_result"),
                    Value::Number(4.0),
                    Value::Null,
                    Value::Number(1.0),
                ],
            ),
            (
                5,
                1,
                vec![
                    Value::str("onStatus"),
                    Value::Number(0.0),
                    Value::Null,
                    info,
                ],
            ),
        ];
        for (csid, sid, vals) in replies {
            let mut body = Vec::new();
            vals.iter().for_each(|v| amf0::encode(v, &mut body));
            let mut msg = Vec::new();
            w.write(csid, 0, 20, sid, &body, &mut msg).unwrap();
            sess.handle_input(0, &msg).unwrap();
        }
        assert!(drain_events(&mut sess).unwrap());
        assert_eq!((sess.state(), sess.stream_id()), (State::Publishing, 1));
        out.clear();
        sess.poll_transmit(&mut out);
        sess
    }

    /// The bytes [`Mux`] and [`send_tag`] put on the wire for `frames`.
    fn wire(audio: Option<AudioFormat>, frames: &[EncodedFrame]) -> Vec<u8> {
        let mut sess = publishing_session();
        let mut m = Mux::new(audio);
        let (mut origin, mut out) = (None, Vec::new());
        for f in frames {
            m.frame(f, &mut origin, 2500, "roomcast/test", |t| {
                send_tag(&mut sess, t)
            })
            .unwrap();
        }
        sess.poll_transmit(&mut out);
        out
    }

    #[test]
    fn without_audio_the_wire_bytes_are_what_they_were() {
        let frames = interleaved();
        // The calls the sink made before it knew audio.
        let mut sess = publishing_session();
        let (mut record, mut origin) = (None::<Vec<u8>>, None);
        for f in frames.iter().filter(|f| f.is_video()) {
            if f.keyframe {
                let r = ParameterSets::from_annexb(&f.data)
                    .unwrap()
                    .avc_decoder_configuration_record();
                if record.as_ref() != Some(&r) {
                    let ts = rtmp_ms(f.dts, *origin.get_or_insert(f.dts));
                    let meta = Metadata {
                        width: 320,
                        height: 240,
                        framerate: 30.0,
                        videodatarate_kbps: 2500.0,
                        encoder: "roomcast/test".into(),
                    };
                    sess.send_metadata(ts, &meta).unwrap();
                    sess.send_avc_sequence_header(ts, &r).unwrap();
                    record = Some(r);
                }
            }
            if record.is_some() {
                let ts = rtmp_ms(f.dts, *origin.get_or_insert(f.dts));
                let mut avcc = Vec::new();
                annexb_to_avcc(&f.data, &mut avcc);
                sess.send_video(ts, 0, f.keyframe, &avcc).unwrap();
            }
        }
        let mut before = Vec::new();
        sess.poll_transmit(&mut before);
        assert!(before.len() > 100);
        assert_eq!(wire(None, &frames), before);
    }

    #[test]
    fn audio_messages_on_the_wire() {
        use roomcast_media::rtmp::chunk::ChunkReader;
        let bytes = wire(Some(STEREO_48K), &interleaved());
        let mut r = ChunkReader::default();
        r.set_chunk_size(4096).unwrap();
        r.push(&bytes);
        let mut msgs = Vec::new();
        while let Some(m) = r.next_message().unwrap() {
            msgs.push(m);
        }
        let heads: Vec<(u32, u8, u32, u32)> = msgs
            .iter()
            .map(|m| (m.csid, m.type_id, m.stream_id, m.timestamp))
            .collect();
        assert_eq!(
            heads,
            [
                (5, 18, 1, 0),
                (6, 9, 1, 0),
                (7, 8, 1, 0),
                (6, 9, 1, 0),
                (7, 8, 1, 0),
                (7, 8, 1, 21),
                (6, 9, 1, 33),
                (7, 8, 1, 43),
                (7, 8, 1, 149),
                (6, 9, 1, 67),
                (7, 8, 1, 171),
            ]
        );
        assert_eq!(msgs[2].payload, [0xAF, 0x00, 0x11, 0x90]);
        assert_eq!(msgs[4].payload, [0xAF, 0x01, 0x21, 0, 0x01, 0x86, 0xA0]);
        assert_eq!(msgs[5].payload, [0xAF, 0x01, 0x21, 0, 0x01, 0x8E, 0x20]);
        let meta = roomcast_media::amf0::decode_all(&msgs[0].payload).unwrap();
        assert_eq!(
            meta[2].get("audiocodecid"),
            Some(&roomcast_media::amf0::Value::Number(10.0))
        );
    }

    #[test]
    fn audio_over_loopback_and_audio_changes_restart_outputs() {
        let (port, server, bus, outs) = loopback(1);
        let url = format!("rtmp://127.0.0.1:{port}/live/k");
        outs.apply(&cfg_audio(&[(&url, true)], true));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut n = 0u64;
        while !server.is_finished() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            let t = 1_000_000 + n * 3000;
            bus.publish(Arc::new(video(t, n.is_multiple_of(10))));
            // 48 kHz AAC: 1920 ticks a frame, published ~60 ms early.
            for k in (t + 5400).div_ceil(1920)..(t + 8400).div_ceil(1920) {
                bus.publish(Arc::new(audio(k * 1920)));
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = server.join().unwrap().remove(0);
        assert_eq!(got[0].0, 18, "{got:?}");
        assert!(got[1].2.starts_with(&[0x17, 0]), "{got:?}");
        assert_eq!((got[2].0, &got[2].2[..]), (8, &[0xAF, 0, 0x11, 0x90][..]));
        assert!(got[3].2.starts_with(&[0x17, 1]), "{got:?}");
        assert!(got[..4].iter().all(|g| g.1 == got[0].1), "{got:?}");
        let base = got[0].1;
        for kind in [8, 9] {
            let ts: Vec<u32> = got.iter().filter(|g| g.0 == kind).map(|g| g.1).collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{kind}: {ts:?}");
            assert!(ts.iter().all(|&t| t >= base), "{kind}: {ts:?}");
        }
        // The first keyframe is RTMP time 0, and every audio frame is at
        // its PTS in ms from that same origin (±0.5 ms of rounding).
        assert_eq!(base, 0);
        let audio: Vec<(u32, u64)> = got
            .iter()
            .filter(|g| g.0 == 8)
            .skip(1)
            .map(|g| {
                assert_eq!(g.2[..3], [0xAF, 1, 0x21], "{g:?}");
                (
                    g.1,
                    u64::from(u32::from_be_bytes(g.2[3..7].try_into().unwrap())),
                )
            })
            .collect();
        assert!(audio.len() > 20, "{got:?}");
        let origin = audio[0].1 - u64::from(audio[0].0) * 90;
        let key = (origin + 45 - 1_000_000) / 30_000 * 30_000 + 1_000_000;
        assert!(origin.abs_diff(key) <= 45, "{audio:?}");
        for (ts, pts) in &audio {
            assert_eq!(*ts, rtmp_ms(Ticks90k(*pts), Ticks90k(key)), "{audio:?}");
            assert!(*pts >= key);
        }
        // The audio format is part of an output's identity.
        let before = bus.sinks();
        outs.apply(&cfg_audio(&[(&url, true)], true));
        assert!(Arc::ptr_eq(&before[0], &bus.sinks()[0]));
        outs.apply(&cfg_audio(&[(&url, true)], false));
        assert!(before[0].is_closed());
        outs.stop_all();
    }

    #[test]
    fn rtmp_time_is_relative_to_the_origin() {
        assert_eq!(rtmp_ms(Ticks90k(90_000 + 2_970), Ticks90k(90_000)), 33);
        assert_eq!(rtmp_ms(Ticks90k(5), Ticks90k(90_000)), 0);
    }

    #[test]
    fn bad_ca_file_is_a_clear_error() {
        let e = tls_config(Some("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            e.starts_with("ca_file /nonexistent/ca.pem: cannot read it"),
            "{e}"
        );
        assert!(tls_config(None).is_ok());
    }
}
