//! A hostile client on the LAN against the release binary (issue 15's
//! table, one test per row): huge declared bodies, thousands of half-open
//! connections, descriptor exhaustion, resets, oversized heads, big bodies
//! on keep-alive. The box must answer or close, stay alive, keep its
//! listener, and keep its threads and memory bounded.

use roomcast_e2e::{temp_dir, Daemon, STDERR_TO};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The server closes a silent or half-sent connection after this (10 s in
/// control/http/server.rs), plus slack for a busy CI machine.
const CLOSED_WITHIN: Duration = Duration::from_secs(16);

fn daemon(tag: &str) -> (Daemon, PathBuf) {
    let log = temp_dir(&format!("{tag}-log")).join("stderr.log");
    let d = Daemon::start_with_env(
        tag,
        &["--size", "320x240", "--fps", "15", "--no-mdns"],
        &[(STDERR_TO, log.as_path())],
    );
    (d, log)
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn rss_kb(d: &Daemon) -> u64 {
    proc_status(d.child.id(), "VmRSS:")
}

fn threads(d: &Daemon) -> u64 {
    proc_status(d.child.id(), "Threads:")
}

/// The test process may need thousands of sockets: raise its own limit
/// (as root on CI; the soft limit up to the hard one elsewhere).
fn more_descriptors() {
    let me = std::process::id().to_string();
    let ok = Command::new("prlimit")
        .args(["--pid", &me, "--nofile=16384:16384"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("prlimit")
            .args(["--pid", &me, "--nofile=unlimited:"])
            .status();
    }
}

/// Sends `raw` and returns the status code of the reply, `None` when the
/// server closed (or reset) the connection without one.
fn send_raw(port: u16, raw: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    // The server may stop reading and answer early; a failed write is fine.
    let _ = s.write_all(raw);
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    std::str::from_utf8(&head[..got])
        .ok()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}

/// `PUT /api/config` with `body`, as the admin (API token).
fn put_config(d: &Daemon, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "PUT /api/config HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        d.token,
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Reads until the server closes or resets the connection: true, or until
/// the read timeout: false.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn assert_alive(d: &mut Daemon) {
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon exited: {:?}",
        d.child.try_wait()
    );
    let r = d.get("/api/status").expect("status after the attack");
    assert_eq!(r.status, 200);
}

fn assert_no_panic(log: &PathBuf) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked") && !text.contains("memory allocation"),
        "the daemon printed:\n{text}"
    );
}

#[test]
fn huge_declared_bodies_are_refused_and_the_box_stays_up() {
    let (mut d, log) = daemon("hostile-length");
    for (path, len) in [
        ("/", "1000000000000000"),
        ("/hls/index.m3u8", "30000000000"),
        ("/api/config", "18446744073709551615"),
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
        let status = send_raw(d.port, raw.as_bytes());
        // 413, or 400/431 where the length does not even parse as a size.
        assert!(
            matches!(status, Some(400 | 413 | 431) | None),
            "{path}: {status:?}"
        );
    }
    // A PUT that really sends more than 64 KiB.
    let body = vec![b'x'; 200 * 1024];
    assert_eq!(send_raw(d.port, &put_config(&d, &body)), Some(413));
    assert_alive(&mut d);
    assert_no_panic(&log);
}

#[test]
fn half_open_connections_are_closed_and_cost_little() {
    more_descriptors();
    let (mut d, log) = daemon("hostile-halfopen");
    std::thread::sleep(Duration::from_secs(1));
    let (threads0, rss0) = (threads(&d), rss_kb(&d));
    // 2000 connections: half send half a request, half nothing at all.
    let t0 = Instant::now();
    let mut conns: Vec<TcpStream> = (0..2000)
        .filter_map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).ok()?;
            if i % 2 == 0 {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            }
            Some(s)
        })
        .collect();
    assert!(
        conns.len() >= 1900,
        "only {} connections opened",
        conns.len()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (threads1, rss1) = (threads(&d), rss_kb(&d));
    // Every one is closed by the server: reads end (EOF or reset).
    for s in &mut conns {
        let left = CLOSED_WITHIN
            .saturating_sub(t0.elapsed())
            .max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        assert!(
            closed_by_peer(s),
            "a connection was still open after {:?}",
            t0.elapsed()
        );
    }
    let took = t0.elapsed();
    eprintln!(
        "2000 half-open connections: all closed by the server within {took:.1?}; \
         threads {threads0} → {threads1}, RSS {} → {} kB",
        rss0, rss1
    );
    assert!(
        threads1 <= threads0 + 8,
        "threads grew {threads0} → {threads1}"
    );
    assert!(rss1 < rss0 + 20 * 1024, "RSS grew {rss0} → {rss1} kB");
    drop(conns);
    assert_alive(&mut d);
    assert_no_panic(&log);
}

#[test]
fn running_out_of_descriptors_leaves_the_listener_alive() {
    more_descriptors();
    let (mut d, log) = daemon("hostile-emfile");
    // The daemon gets only 128 descriptors from now on: connections run
    // it out of them long before its own connection limit.
    let pid = d.child.id().to_string();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=128:128"])
        .status()
        .expect("prlimit (util-linux)");
    assert!(limited.success());
    let conns: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", d.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    drop(conns);
    // Once the connections are gone the page answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if d.get("/").is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the listener did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        printed.contains("HTTP accept failed"),
        "descriptors never ran out (the test did not test anything):\n{printed}"
    );
    assert_alive(&mut d);
    assert_no_panic(&log);
}

#[test]
fn two_thousand_resets_cause_no_panic() {
    more_descriptors();
    let (mut d, log) = daemon("hostile-reset");
    for _ in 0..2000 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", d.port)) else {
            continue;
        };
        let _ = s.write_all(b"GET /hls/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n");
        // Linger 0: close sends RST instead of FIN.
        let sock = socket2::Socket::from(s);
        let _ = sock.set_linger(Some(Duration::ZERO));
        drop(sock);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_alive(&mut d);
    assert_no_panic(&log);
}

#[test]
fn oversized_heads_are_431_and_memory_stays_flat() {
    let (mut d, log) = daemon("hostile-heads");
    std::thread::sleep(Duration::from_secs(1));
    let rss0 = rss_kb(&d);
    let port = d.port;
    // Four 50 MB header lines at once.
    let big: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
                raw.resize(raw.len() + 50 * 1024 * 1024, b'a');
                raw.extend_from_slice(b"\r\n\r\n");
                send_raw(port, &raw)
            })
        })
        .collect();
    for t in big {
        let s = t.join().unwrap();
        assert!(matches!(s, Some(431) | None), "{s:?}");
    }
    // 100 000 headers.
    let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100_000 {
        raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let s = send_raw(port, &raw);
    assert!(matches!(s, Some(431) | None), "{s:?}");
    // A 1 MB request line.
    let mut raw = b"GET /".to_vec();
    raw.resize(raw.len() + 1024 * 1024, b'a');
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let s = send_raw(port, &raw);
    assert!(matches!(s, Some(414 | 431) | None), "{s:?}");
    // A header just over the limit is 431, not a closed connection.
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(send_raw(port, raw.as_bytes()), Some(431));
    let rss1 = rss_kb(&d);
    eprintln!("oversized heads: RSS {rss0} → {rss1} kB");
    assert!(rss1 < rss0 + 5 * 1024, "RSS grew {rss0} → {rss1} kB");
    assert_alive(&mut d);
    assert_no_panic(&log);
}

#[test]
fn big_bodies_on_keep_alive_do_not_grow_memory() {
    let (mut d, log) = daemon("hostile-bodies");
    std::thread::sleep(Duration::from_secs(1));
    let rss0 = rss_kb(&d);
    let body = vec![b'{'; 10 * 1024 * 1024];
    for _ in 0..5 {
        let s = send_raw(d.port, &put_config(&d, &body));
        assert!(matches!(s, Some(413) | None), "{s:?}");
    }
    let rss1 = rss_kb(&d);
    eprintln!("five 10 MB bodies: RSS {rss0} → {rss1} kB");
    assert!(rss1 < rss0 + 5 * 1024, "RSS grew {rss0} → {rss1} kB");
    assert_alive(&mut d);
    assert_no_panic(&log);
}

#[test]
fn garbage_and_slow_drips_are_closed_and_the_box_stays_up() {
    let (mut d, log) = daemon("hostile-garbage");
    // Binary garbage, a broken request line, a TLS hello on the HTTP port.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    for raw in [
        noise.as_slice(),
        b"GET\r\n\r\n".as_slice(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".as_slice(),
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".as_slice(),
    ] {
        let s = send_raw(d.port, raw);
        assert!(matches!(s, Some(400..=505) | None), "{s:?}");
    }
    // A head dripped one byte every 400 ms never completes: the server
    // closes it once the head timeout (10 s) has passed.
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let t0 = Instant::now();
    let mut closed = false;
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
    {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
        if t0.elapsed() > CLOSED_WITHIN {
            break;
        }
    }
    if !closed {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        closed = closed_by_peer(&mut s);
    }
    assert!(
        closed,
        "a dripped head was still open after {:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < CLOSED_WITHIN,
        "closed only after {:?}",
        t0.elapsed()
    );
    eprintln!("dripped head closed after {:.1?}", t0.elapsed());
    assert_alive(&mut d);
    assert_no_panic(&log);
}
