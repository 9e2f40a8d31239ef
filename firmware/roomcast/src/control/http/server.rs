//! The HTTP server: hyper 1.x (HTTP/1.1, and HTTP/2 when the client
//! offers it) on a small tokio runtime of its own, in front of the
//! socket-free routes of [`super::handle`].
//!
//! What a hostile client on the LAN cannot do to it:
//!
//! * **Stop it listening.** Accept errors (out of file descriptors, out of
//!   memory) are waited out, 100 ms at a time, and the loop keeps going;
//!   [`HttpServer::accepting`] tells the systemd watchdog whether it still
//!   runs. Beyond [`MAX_CONNECTIONS`] a new connection is accepted and
//!   closed at once, so the descriptors stay below the process limit.
//! * **Hold connections.** A connection with nothing in flight that sends
//!   or receives nothing for [`IDLE_TIMEOUT`] is closed; a request's head
//!   must arrive within [`HEADER_TIMEOUT`] and its body within
//!   [`BODY_TIMEOUT`]. No thread waits per connection or per parked LL-HLS
//!   request: they are tasks.
//! * **Grow its memory.** The request head is limited to [`MAX_HEAD`]
//!   bytes and [`MAX_HEADERS`] fields (431 beyond), the body to
//!   [`super::MAX_BODY`] (413; a declared length is never allocated), and
//!   every read is bounded.
//! * **Make it panic.** Resets and half-closed sockets end their own
//!   connection task and nothing else.
//!
//! HTTPS (rustls, by tokio-rustls) serves the same routes on its own port
//! with the box's certificate ([`CertStore`]), HTTP/2 by ALPN; the TLS
//! handshake has the head's time limit and counts against the same
//! connection cap.
//!
//! Routes are synchronous (some wait: the first playlist, a configuration
//! change restarting the encoder, password hashing) and run on the
//! runtime's blocking pool; a parked LL-HLS request is answered through a
//! oneshot channel when its part is published.

use super::{count, handle, BodyError, Method, Reply, Req, Routed, MAX_BODY};
use crate::control::app::App;
use crate::control::tls::CertStore;
use crate::sink::llhls::{LlReply, Responder, Want};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

/// Connections served at once; more are closed as they arrive. Well below
/// systemd's default descriptor limit (1024) with everything else the
/// daemon holds.
pub const MAX_CONNECTIONS: usize = 512;
/// A request head (request line and headers) larger than this is 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// More header fields than this is 431.
pub const MAX_HEADERS: usize = 64;
/// How long a request head may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with nothing in flight and no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a parked LL-HLS request (the store answers 503 after
/// three target durations long before this).
const PARKED_MAX: Duration = Duration::from_secs(60);
/// Worker threads of the server's runtime, and its blocking pool's limit.
const WORKERS: usize = 2;
const BLOCKING_THREADS: usize = 32;
/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A running server.
pub struct HttpServer {
    addr: SocketAddr,
    /// Monotonic time the accept loop last went round (every 500 ms idle).
    heartbeat_ns: Arc<AtomicU64>,
    /// Counters for `/metrics`.
    pub counters: Arc<Counters>,
    _runtime: tokio::runtime::Runtime,
}

/// What the server has seen, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Closed at once because [`MAX_CONNECTIONS`] were open.
    pub refused: AtomicU64,
    /// `accept` failures (descriptors or memory ran out), waited out.
    pub accept_errors: AtomicU64,
    /// Closed for silence ([`IDLE_TIMEOUT`]) or a slow head.
    pub timed_out: AtomicU64,
}

impl HttpServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the accept loop went round within `within` of `now_ns`.
    pub fn accepting(&self, now_ns: u64, within: Duration) -> bool {
        now_ns.saturating_sub(self.heartbeat_ns.load(Relaxed)) <= within.as_nanos() as u64
    }
}

/// Pending connections the kernel queues for the accept loop (std's bind
/// asks for 128; a burst beyond that would wait for SYN-ACK retransmits).
const BACKLOG: i32 = 1024;

/// Binds the server's socket: address reuse, a deep accept queue.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Serves HTTP on `listener` and HTTPS on `https` with its certificate
/// (both bound by the caller, so a port in use is reported before anything
/// starts) until the returned server is dropped.
pub fn start(
    listener: std::net::TcpListener,
    https: Option<(std::net::TcpListener, Arc<CertStore>)>,
    app: Arc<App>,
) -> io::Result<HttpServer> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("http")
        .enable_io()
        .enable_time()
        .build()?;
    let listener = {
        let _guard = runtime.enter();
        TcpListener::from_std(listener)?
    };
    let heartbeat_ns = Arc::new(AtomicU64::new(app.clock.monotonic_ns()));
    let counters = Arc::new(Counters::default());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shared = Shared {
        app: app.clone(),
        counters: counters.clone(),
        slots,
    };
    if let Some((tls_listener, certs)) = https {
        let tls_addr = tls_listener.local_addr()?;
        tls_listener.set_nonblocking(true)?;
        let tls_listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(tls_listener)?
        };
        let config = certs.server_config().map_err(io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        app.https_port.store(tls_addr.port(), Relaxed);
        // The plain listener's loop feeds the watchdog; this one only serves.
        runtime.spawn(accept_loop(
            tls_listener,
            Some(acceptor),
            shared.clone(),
            Arc::new(AtomicU64::new(0)),
        ));
    }
    runtime.spawn(accept_loop(listener, None, shared, heartbeat_ns.clone()));
    Ok(HttpServer {
        addr,
        heartbeat_ns,
        counters,
        _runtime: runtime,
    })
}

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    app: Arc<App>,
    counters: Arc<Counters>,
    /// One permit per open connection, HTTP and HTTPS together.
    slots: Arc<Semaphore>,
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Shared,
    heartbeat_ns: Arc<AtomicU64>,
) {
    let Shared {
        app,
        counters,
        slots,
    } = shared;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let accepted = tokio::select! {
            _ = tick.tick() => {
                heartbeat_ns.store(app.clock.monotonic_ns(), Relaxed);
                continue;
            }
            r = listener.accept() => r,
        };
        heartbeat_ns.store(app.clock.monotonic_ns(), Relaxed);
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM/ECONNABORTED: the listener is fine;
                // wait for descriptors to come back rather than spin.
                if counters
                    .accept_errors
                    .fetch_add(1, Relaxed)
                    .is_multiple_of(1000)
                {
                    eprintln!("roomcast: HTTP accept failed (retrying): {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        counters.accepted.fetch_add(1, Relaxed);
        let (app, counters, tls) = (app.clone(), counters.clone(), tls.clone());
        tokio::spawn(async move {
            counters.open.fetch_add(1, Relaxed);
            if connection(stream, peer, app, tls).await == Ended::TimedOut {
                counters.timed_out.fetch_add(1, Relaxed);
            }
            counters.open.fetch_sub(1, Relaxed);
            drop(slot);
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Done,
    TimedOut,
}

/// Serves one connection until it ends, fails or falls silent.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Ended {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let Some(acceptor) = tls else {
        let h2 = match tokio::time::timeout(HEADER_TIMEOUT, offers_h2(&stream)).await {
            Ok(Ok(h2)) => h2,
            Ok(Err(_)) => return Ended::Done,
            Err(_) => return Ended::TimedOut,
        };
        let io = Watched {
            inner: stream,
            activity: activity.clone(),
        };
        return serve_io(io, h2, false, peer, app, activity).await;
    };
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let tls = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) => return Ended::Done,
        Err(_) => return Ended::TimedOut,
    };
    // HTTP/2 when the client chose it by ALPN (browsers do).
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    serve_io(tls, h2, true, peer, app, activity).await
}

/// HTTP/1.1 or HTTP/2 on an open (plain or TLS) connection.
async fn serve_io<I>(
    io: I,
    h2: bool,
    secure: bool,
    peer: SocketAddr,
    app: Arc<App>,
    activity: Arc<Activity>,
) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let service = {
        let activity = activity.clone();
        service_fn(move |req| serve(app.clone(), peer.ip(), secure, activity.clone(), req))
    };
    let served: Pin<Box<dyn Future<Output = ()> + Send>> = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(100)
            .max_header_list_size(MAX_HEAD as u32)
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(10));
        let conn = b.serve_connection(io, service);
        Box::pin(async move {
            let _ = conn.await;
        })
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS);
        let conn = b.serve_connection(io, service);
        Box::pin(async move {
            let _ = conn.await;
        })
    };
    tokio::select! {
        () = served => Ended::Done,
        () = activity.silent_for(IDLE_TIMEOUT) => Ended::TimedOut,
    }
}

/// Whether the client starts with the HTTP/2 preface (prior knowledge);
/// anything else is HTTP/1.
async fn offers_h2(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A partial preface: wait for the rest (peek returns at once).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// When a connection last moved bytes, and how many requests it has in
/// flight (a parked LL-HLS request is silent but not idle).
struct Activity {
    last: std::sync::Mutex<tokio::time::Instant>,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            last: std::sync::Mutex::new(tokio::time::Instant::now()),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        *crate::base::lock(&self.last) = tokio::time::Instant::now();
    }

    /// Resolves once nothing is in flight and nothing moved for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let last = *crate::base::lock(&self.last);
            let deadline = last + limit;
            if tokio::time::Instant::now() >= deadline && self.in_flight.load(Relaxed) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline.max(tokio::time::Instant::now() + limit / 4)).await;
        }
    }
}

/// A request in flight, for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: Arc<Activity>) -> Busy {
        a.in_flight.fetch_add(1, Relaxed);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.touch();
    }
}

/// A socket that records when it last moved bytes.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

type Response = hyper::Response<Full<Bytes>>;

/// One request: read with limits, routed off the async threads, answered.
async fn serve(
    app: Arc<App>,
    remote: IpAddr,
    secure: bool,
    activity: Arc<Activity>,
    req: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    let _busy = Busy::new(activity);
    let mut req = read(req, remote).await;
    req.secure = secure;
    let routed = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || handle(&app, &req)).await
    };
    let reply = match routed {
        Ok(Routed::Reply(r)) => r,
        Ok(Routed::Parked(rendition, want)) => {
            let blocking = matches!(want, Want::Playlist { msn: Some(_), .. });
            let (tx, rx) = oneshot::channel();
            match app.renditions.get(rendition) {
                Some(r) => r.ll.request(want, Box::new(OneShot(tx))),
                None => {
                    let _ = tx.send(LlReply::NotFound);
                }
            }
            match tokio::time::timeout(PARKED_MAX, rx).await {
                Ok(Ok(r)) => super::stream::ll_reply(r, blocking),
                _ => super::stream::ll_reply(LlReply::Unavailable, blocking),
            }
        }
        Err(_) => Reply::error(500, "the request failed inside the box"),
    };
    count(&app, reply.status);
    Ok(response(reply))
}

/// The routes' view of a request; the body read within the limits.
async fn read(req: hyper::Request<Incoming>, remote: IpAddr) -> Req {
    let (parts, body) = req.into_parts();
    let method = match parts.method {
        hyper::Method::GET => Method::Get,
        hyper::Method::HEAD => Method::Head,
        hyper::Method::POST => Method::Post,
        hyper::Method::PUT => Method::Put,
        hyper::Method::DELETE => Method::Delete,
        ref m => Method::Other(m.as_str().to_string()),
    };
    let url = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = if declared.is_some_and(|n| n > MAX_BODY as u64) {
        // Refused unread; hyper closes the connection rather than drain it.
        Err(BodyError::TooLarge)
    } else {
        match tokio::time::timeout(BODY_TIMEOUT, read_body(body)).await {
            Ok(b) => b,
            Err(_) => Err(BodyError::Unreadable("it did not arrive in time".into())),
        }
    };
    Req {
        method,
        url,
        headers,
        remote,
        secure: false,
        body,
    }
}

/// Reads a body frame by frame, stopping past [`MAX_BODY`].
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_BODY {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn response(reply: Reply) -> Response {
    let mut b = hyper::Response::builder()
        .status(reply.status)
        .header(hyper::header::CONTENT_TYPE, reply.content_type);
    for (k, v) in &reply.headers {
        b = b.header(*k, v.as_str());
    }
    let body = Full::new(Bytes::from_owner(reply.body));
    b.body(body).unwrap_or_else(|_| {
        let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"bad reply")));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// Answers a parked LL-HLS request from the store's reply thread.
struct OneShot(oneshot::Sender<LlReply>);

impl Responder for OneShot {
    fn respond(self: Box<Self>, reply: LlReply) {
        // The client may have gone; its task ended already.
        let _ = self.0.send(reply);
    }
}
