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
//!   retry after the common backoff ([`crate::base::backoff`]), reset once
//!   a connection reaches publishing.
//!
//! [`Rtmp`] is the output kind; [`super::output`] starts, restarts and
//! stops its outputs and reports their status.

use super::output::{wanted_outputs, Common, Ctx, OutputKind, State, Wanted};
use crate::base::backoff::Backoff;
use crate::base::frame::{AudioFormat, EncodedFrame};
use crate::base::rate::RateMeter;
use crate::config::url::{OutputUrl, RtmpUrl};
use crate::config::ValidConfig;
use roomcast_media::flv::AudioMetadata;
use roomcast_media::rtmp::mux::{Mux, MuxAudio, MuxFrame, Tag};
use roomcast_media::rtmp::{ClientConfig, ClientSession, Event, RtmpError, State as SessionState};
use roomcast_media::time::Ticks90k;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write blocked this long means the server stopped reading: reconnect.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout while waiting for the server's answers during setup; also
/// how often a stop request is noticed then.
const SETUP_READ_TIMEOUT: Duration = Duration::from_millis(100);
/// How long the server may take from TCP connect to `Publish.Start`.
const SETUP_TIMEOUT_MS: u32 = 10_000;

/// The RTMP output kind: `rtmp://` and `rtmps://` entries of `outputs`.
#[derive(Default)]
pub struct Rtmp {
    /// The configured video bitrate, announced in `onMetaData`; follows the
    /// configuration without restarting outputs.
    bitrate_kbps: AtomicU32,
}

/// What one RTMP output runs with; a change restarts it.
#[derive(Debug, Clone, PartialEq)]
pub struct RtmpSettings {
    pub url: RtmpUrl,
    pub ca_file: Option<String>,
    /// The stream's audio, when it has any: announced in `onMetaData` and
    /// by an AAC sequence header, then carried as audio messages.
    pub audio: Option<AudioFormat>,
}

impl OutputKind for Rtmp {
    type Settings = RtmpSettings;
    type Status = Common;
    const KIND: &'static str = "rtmp";
    /// 3 s at 30 fps.
    const QUEUE_FRAMES: usize = 90;

    fn wanted(&self, cfg: &ValidConfig) -> Vec<Wanted<RtmpSettings>> {
        self.bitrate_kbps
            .store(cfg.get().video.bitrate_kbps, Relaxed);
        let audio = cfg.audio_format();
        wanted_outputs(cfg, |url, o| match url {
            OutputUrl::Rtmp(u) => Some(RtmpSettings {
                url: u.clone(),
                ca_file: o.ca_file.clone(),
                audio,
            }),
            _ => None,
        })
    }

    fn idle_status(&self, _: &RtmpSettings, state: State) -> Common {
        Common::new(state)
    }

    fn run(&self, settings: RtmpSettings, ctx: Ctx<Common>) {
        Worker {
            url: settings.url,
            ca_file: settings.ca_file,
            audio: settings.audio,
            ctx,
            bitrate_kbps: &self.bitrate_kbps,
            origin: None,
            connections: 0,
        }
        .run()
    }

    fn common(status: &Common) -> Common {
        status.clone()
    }

    fn set_error(status: &mut Common, error: String) {
        status.last_error = Some(error);
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
struct Worker<'a> {
    url: RtmpUrl,
    ca_file: Option<String>,
    audio: Option<AudioFormat>,
    ctx: Ctx<Common>,
    bitrate_kbps: &'a AtomicU32,
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

impl Worker<'_> {
    fn stopped(&self) -> bool {
        self.ctx.stopped()
    }

    fn set<F: FnOnce(&mut Common)>(&self, f: F) {
        self.ctx.set(f)
    }

    fn now_ms(&self) -> u32 {
        // RTMP's clocks are 32-bit milliseconds that wrap.
        (self.ctx.now_ns() / 1_000_000) as u32
    }

    fn run(mut self) {
        let mut backoff = Backoff::default();
        while !self.stopped() {
            if self.connections > 0 {
                self.set(|s| s.reconnects += 1);
            }
            self.connections += 1;
            let started = self.ctx.now_ns();
            let mut published = false;
            let result = self.connection(&mut published);
            if self.stopped() {
                break;
            }
            if published {
                backoff.succeeded();
            }
            let (state, text) = match &result {
                Err(e @ (SinkError::Rejected { .. } | SinkError::HungUpOnPublish(_))) => {
                    (State::Rejected, e.to_string())
                }
                Err(e) => (State::Backoff, e.to_string()),
                Ok(()) => (State::Backoff, "connection ended".to_string()),
            };
            self.set(|s| {
                s.state = state;
                s.send_rate_bps = 0.0;
                s.last_error = Some(text);
            });
            // A connection that published was an attempt that worked: the
            // retry counts from its end, not its start.
            let from = if published {
                self.ctx.now_ns()
            } else {
                started
            };
            self.ctx.idle_until(backoff.failed(from));
        }
        self.set(|s| s.state = State::Stopped);
    }

    /// One connection, from TCP connect until it fails or the output stops.
    fn connection(&mut self, published: &mut bool) -> Result<(), SinkError> {
        self.set(|s| s.state = State::Connecting);
        let (tcp, peer) = self.connect_tcp()?;
        self.set(|s| s.peer = Some(peer.to_string()));
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
        self.set(|s| s.state = State::Handshaking);

        let mut cfg = ClientConfig::new(&self.url.app, &self.url.tc_url(), &self.url.key);
        // flashVer stays the default "FMLE/3.0 (compatible; roomcast)":
        // nginx-rtmp keeps only 31 bytes of it; the version is in onMetaData.
        cfg.setup_timeout_ms = SETUP_TIMEOUT_MS;
        cfg.random_seed = self.ctx.now_ns() ^ self.connections.rotate_left(32);
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
                if sess.state() == SessionState::PublishRequested {
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
            s.state = State::Publishing;
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
        self.ctx.restart_at_keyframe();
        let mut mux = Mux::new(self.audio.map(mux_audio));
        let encoder = format!("roomcast/{}", env!("CARGO_PKG_VERSION"));
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut rate = RateMeter::new(self.ctx.now_ns(), self.ctx.set(|s| s.bytes_sent));
        while !self.stopped() {
            if let Some(f) = self.ctx.pop(Duration::from_millis(100)) {
                let kbps = self.bitrate_kbps.load(Relaxed);
                let sent = mux.frame(&mux_frame(&f), &mut self.origin, kbps, &encoder, |tag| {
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
            let now = self.ctx.now_ns();
            self.set(|s| s.send_rate_bps = rate.update(now, s.bytes_sent));
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

/// The stream's audio as [`Mux`] announces it.
fn mux_audio(a: AudioFormat) -> MuxAudio {
    MuxAudio {
        metadata: AudioMetadata {
            sample_rate: a.sample_rate,
            channels: a.channels,
            datarate_kbps: f64::from(a.bitrate_kbps),
        },
        asc: a.asc(),
    }
}

/// A bus frame as [`Mux`] reads it.
fn mux_frame(f: &EncodedFrame) -> MuxFrame<'_> {
    MuxFrame {
        audio: f.is_audio(),
        pts: f.pts,
        dts: f.dts,
        duration: f.duration,
        keyframe: f.keyframe,
        data: &f.data,
        width: f.width,
        height: f.height,
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

#[cfg(test)]
mod tests {
    use super::super::output::{test_manager, Manager};
    use super::*;
    use crate::base::bus::FrameBus;
    use roomcast_media::flv::Metadata;
    use roomcast_media::h264::{annexb_to_avcc, ParameterSets};
    use roomcast_media::rtmp::mux::rtmp_ms;

    /// Outputs without audio (`[audio] source = "none"`).
    fn cfg(outputs: &[(&str, bool)]) -> ValidConfig {
        cfg_audio(outputs, false)
    }

    fn cfg_audio(outputs: &[(&str, bool)], audio: bool) -> ValidConfig {
        super::super::output::config_with_outputs(outputs, audio)
    }

    #[test]
    fn apply_touches_only_changed_outputs() {
        let (bus, outs) = test_manager(Rtmp::default());
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
        let (_bus, outs) = test_manager(Rtmp::default());
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
        Manager<Rtmp>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || fake_server(listener, sessions, 25));
        let (bus, outs) = test_manager(Rtmp::default());
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
            rendition: 0,
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
            rendition: 0,
            track: crate::base::frame::Track::Audio,
        }
    }

    const STEREO_48K: AudioFormat = AudioFormat {
        sample_rate: 48_000,
        channels: 2,
        bitrate_kbps: 128,
    };

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
        assert_eq!(
            (sess.state(), sess.stream_id()),
            (SessionState::Publishing, 1)
        );
        out.clear();
        sess.poll_transmit(&mut out);
        sess
    }

    /// The bytes [`Mux`] and [`send_tag`] put on the wire for `frames`.
    fn wire(audio: Option<AudioFormat>, frames: &[EncodedFrame]) -> Vec<u8> {
        let mut sess = publishing_session();
        let mut m = Mux::new(audio.map(mux_audio));
        let (mut origin, mut out) = (None, Vec::new());
        for f in frames {
            m.frame(&mux_frame(f), &mut origin, 2500, "roomcast/test", |t| {
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
    fn bad_ca_file_is_a_clear_error() {
        let e = tls_config(Some("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            e.starts_with("ca_file /nonexistent/ca.pem: cannot read it"),
            "{e}"
        );
        assert!(tls_config(None).is_ok());
    }
}
