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
//!   `onMetaData` and the AVC sequence header, then frames. RTMP timestamps
//!   are the frames' decode times relative to the first frame the output
//!   ever sent, so they continue across reconnects.
//! * Failures (refused connection, TLS error, a publish the server rejects)
//!   retry after a capped exponential backoff, 250 ms doubling to 5 s,
//!   reset once a connection reaches publishing.
//!
//! [`Outputs`] owns the threads and applies configuration changes: only
//! outputs whose settings changed are stopped or started.

use crate::bus::{lock, FrameBus, SinkQueue};
use crate::clock::SharedClock;
use crate::config::{Output, ValidConfig};
use crate::outputs::{OutputUrl, RtmpUrl};
use crate::stats::{output_label, write_family};
use roomcast_media::flv::Metadata;
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

    /// Writes what the session has to send.
    fn flush(
        &self,
        t: &mut Transport,
        sess: &mut ClientSession,
        out: &mut Vec<u8>,
        peer: SocketAddr,
    ) -> Result<(), SinkError> {
        out.clear();
        sess.poll_transmit(out);
        if out.is_empty() {
            return Ok(());
        }
        t.write_all(out)
            .map_err(|source| SinkError::Io { peer, source })?;
        let n = out.len() as u64;
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
        let mut record: Option<Vec<u8>> = None;
        let mut avcc = Vec::new();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut rate = (self.clock.monotonic_ns(), lock(&self.status).bytes_sent);
        while !self.stopped() {
            if let Some(f) = self.queue.pop_timeout(Duration::from_millis(100)) {
                if f.keyframe {
                    if let Ok(ps) = ParameterSets::from_annexb(&f.data) {
                        let r = ps.avc_decoder_configuration_record();
                        if record.as_ref() != Some(&r) {
                            let origin = *self.origin.get_or_insert(f.dts);
                            let ts = rtmp_ms(f.dts, origin);
                            let meta = Metadata {
                                width: f.width,
                                height: f.height,
                                framerate: if f.duration.0 > 0 {
                                    Ticks90k::HZ as f64 / f.duration.0 as f64
                                } else {
                                    0.0
                                },
                                videodatarate_kbps: f64::from(self.bitrate_kbps.load(Relaxed)),
                                encoder: format!("roomcast/{}", env!("CARGO_PKG_VERSION")),
                            };
                            sess.send_metadata(ts, &meta)?;
                            sess.send_avc_sequence_header(ts, &r)?;
                            record = Some(r);
                        }
                    }
                }
                // Nothing can be decoded before a sequence header.
                if record.is_some() {
                    let origin = *self.origin.get_or_insert(f.dts);
                    let ts = rtmp_ms(f.dts, origin);
                    let cts = f.pts.saturating_sub(f.dts).as_millis_rounded();
                    avcc.clear();
                    annexb_to_avcc(&f.data, &mut avcc);
                    sess.send_video(
                        ts,
                        i32::try_from(cts).unwrap_or(i32::MAX),
                        f.keyframe,
                        &avcc,
                    )?;
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
        let mut running = lock(&self.running);
        let mut old = std::mem::take(&mut *running);
        // srt:// outputs belong to crate::srt::SrtOutputs.
        for o in cfg
            .get()
            .outputs
            .iter()
            .filter(|o| !crate::srt::is_srt(&o.url))
        {
            match old.iter().position(|r| r.output == *o) {
                Some(i) => running.push(old.remove(i)),
                None => running.push(self.start(o)),
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

    fn start(&self, o: &Output) -> Running {
        let masked = crate::outputs::mask_url(&o.url);
        let stop = Arc::new(AtomicBool::new(false));
        let url = match OutputUrl::parse(&o.url) {
            Ok(OutputUrl::Rtmp(u)) if o.enabled => Some(u),
            _ => None,
        };
        let Some(url) = url else {
            return Running {
                output: o.clone(),
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
    use crate::clock::RealClock;
    use crate::config::Config;

    fn cfg(outputs: &[(&str, bool)]) -> ValidConfig {
        let c = Config {
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

    /// A minimal RTMP server for one test: answers connect, createStream
    /// and publish, records the media messages of `sessions` connections
    /// and hangs up on each after `frames` video frames.
    fn fake_server(
        listener: std::net::TcpListener,
        sessions: usize,
        frames: usize,
    ) -> Vec<Vec<(u8, u32, [u8; 2])>> {
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
                            got.push((m.type_id, m.timestamp, [m.payload[0], m.payload[1]]));
                            if got
                                .iter()
                                .filter(|g| g.2 == [0x17, 1] || g.2 == [0x27, 1])
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

    #[test]
    fn reconnect_resends_headers_and_time_continues() {
        use crate::frame::EncodedFrame;
        // Parameter sets of a 320x240 openh264 stream.
        const SPS: [u8; 13] = [
            0x67, 0x42, 0xc0, 0x15, 0x8c, 0x68, 0x14, 0x1f, 0x20, 0x1e, 0x11, 0x08, 0xd4,
        ];
        const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || fake_server(listener, 2, 25));
        let bus = Arc::new(FrameBus::new());
        let outs = Outputs::new(bus.clone(), Arc::new(RealClock::new()));
        outs.apply(&cfg(&[(&format!("rtmp://127.0.0.1:{port}/live/k"), true)]));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut n = 0u64;
        while !server.is_finished() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            let key = n % 10 == 0;
            let mut data = Vec::new();
            if key {
                for nal in [&SPS[..], &PPS[..], &[0x65, 0x88, 0x80][..]] {
                    data.extend_from_slice(&[0, 0, 0, 1]);
                    data.extend_from_slice(nal);
                }
            } else {
                data.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02]);
            }
            let ts = Ticks90k(1_000_000 + n * 3000);
            bus.publish(Arc::new(EncodedFrame {
                capture_ns: ts.as_nanos(),
                wall_ms: 0,
                pts: ts,
                dts: ts,
                duration: Ticks90k(3000),
                keyframe: key,
                data,
                epoch: 0,
                width: 320,
                height: 240,
                track: crate::frame::Track::Video,
            }));
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let sessions = server.join().unwrap();
        let mut last = None;
        for got in &sessions {
            // Every connection: onMetaData, then the sequence header, then a
            // keyframe, all at the keyframe's time.
            assert_eq!(got[0].0, 18, "{got:?}");
            assert_eq!(got[1].2, [0x17, 0], "{got:?}");
            assert_eq!(got[2].2, [0x17, 1], "{got:?}");
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
