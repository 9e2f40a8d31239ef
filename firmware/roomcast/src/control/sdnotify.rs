//! systemd's notification protocol (`sd_notify(3)`), written by hand: one
//! datagram to the Unix socket in `$NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace). Outside systemd the variable is unset and nothing
//! is sent.
//!
//! The box's unit is `Type=notify` with `WatchdogSec=`: the daemon sends
//! `READY=1` once HTTP is serving, then `WATCHDOG=1` every half of
//! `$WATCHDOG_USEC` from the `watchdog` thread, each time after taking the
//! daemon's main locks (configuration, outputs). A deadlocked daemon stops
//! pinging and systemd restarts it.

use crate::control::app::App;
use crate::control::http::server::HttpServer;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) to systemd. `Ok(false)` when not run by
/// systemd (no `NOTIFY_SOCKET`).
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    send(&path.to_string_lossy(), state)?;
    Ok(true)
}

#[cfg(target_os = "linux")]
fn send(path: &str, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send(_path: &str, _state: &str) -> io::Result<()> {
    Ok(())
}

/// How often to ping: half of `$WATCHDOG_USEC` when the watchdog is on and
/// meant for this process (`$WATCHDOG_PID`, when set, is ours).
pub fn watchdog_interval() -> Option<Duration> {
    interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// Whether a counter keeps moving: how long since it last changed.
struct Progress {
    value: u64,
    since_ns: u64,
}

impl Progress {
    fn new(now_ns: u64) -> Self {
        Progress {
            value: 0,
            since_ns: now_ns,
        }
    }

    /// Takes the counter's value at `now_ns`; returns how long it has not moved.
    fn update(&mut self, now_ns: u64, value: u64) -> Duration {
        if value != self.value {
            (self.value, self.since_ns) = (value, now_ns);
        }
        Duration::from_nanos(now_ns.saturating_sub(self.since_ns))
    }
}

/// The daemon is healthy when frames keep coming and HTTP accepts.
fn health(frames_still: Duration, accepting: bool) -> Result<(), String> {
    if !accepting {
        return Err(format!(
            "the HTTP server has not accepted for {} s",
            DEAF_AFTER.as_secs()
        ));
    }
    if frames_still > STUCK_AFTER {
        return Err(format!("no frame encoded for {} s", frames_still.as_secs()));
    }
    Ok(())
}

fn interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// The pipeline counts as stuck when no frame was encoded for this long
/// (the camera's slate keeps frames coming while a camera is away; an
/// encoder restart takes well under a second).
const STUCK_AFTER: Duration = Duration::from_secs(10);
/// The HTTP server counts as dead when its accept loop has not gone round
/// for this long (it does every 500 ms when idle).
const DEAF_AFTER: Duration = Duration::from_secs(5);

/// Tells systemd the daemon is ready and, when the unit has a watchdog,
/// starts the `watchdog` thread that pings it while the daemon is healthy:
/// the main locks can be taken, the HTTP server accepts connections and
/// the pipeline produces frames. A dead listener or a stuck encoder stops
/// the pings, and systemd restarts the box's service.
pub fn start(app: Arc<App>, http: Arc<HttpServer>) -> Option<std::thread::JoinHandle<()>> {
    match notify("READY=1") {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => eprintln!("roomcast: cannot tell systemd we are ready: {e}"),
    }
    let every = watchdog_interval()?;
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut frames = Progress::new(app.clock.monotonic_ns());
            loop {
                // The configuration and the outputs' status take the
                // daemon's main locks: a deadlock blocks here and the pings
                // stop. (Not `status_json`: its CPU figure is measured
                // between calls.)
                drop(app.config.lock());
                let _ = app.outputs.status_json().0;
                let now = app.clock.monotonic_ns();
                let encoded = app.stats.encoded.load(std::sync::atomic::Ordering::Relaxed);
                match health(frames.update(now, encoded), http.accepting(now, DEAF_AFTER)) {
                    Ok(()) => {
                        if let Err(e) = notify("WATCHDOG=1") {
                            eprintln!("roomcast: watchdog ping failed: {e}");
                        }
                    }
                    Err(why) => eprintln!("roomcast: not pinging the watchdog: {why}"),
                }
                std::thread::sleep(every);
            }
        });
    match spawned {
        Ok(t) => {
            eprintln!(
                "roomcast: systemd watchdog on, pinging every {:.1} s",
                every.as_secs_f64()
            );
            Some(t)
        }
        Err(e) => {
            eprintln!("roomcast: cannot start the watchdog thread: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_while_frames_come_and_http_accepts() {
        let s = 1_000_000_000;
        let mut p = Progress::new(0);
        assert_eq!(p.update(5 * s, 0), Duration::from_secs(5));
        assert!(health(p.update(5 * s, 0), true).is_ok());
        assert_eq!(p.update(6 * s, 30), Duration::ZERO);
        let still = p.update(17 * s, 30);
        assert!(health(still, true)
            .unwrap_err()
            .contains("no frame encoded for 11 s"));
        assert!(health(p.update(18 * s, 31), true).is_ok());
        assert!(health(Duration::ZERO, false).unwrap_err().contains("HTTP"));
    }

    #[test]
    fn watchdog_interval_is_half_and_for_us_only() {
        assert_eq!(
            interval_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval_from(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(interval_from(None, None, 7), None);
        assert_eq!(interval_from(Some("0"), None, 7), None);
        assert_eq!(interval_from(Some("x"), None, 7), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_one_datagram_to_a_path_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = std::env::temp_dir().join(format!("roomcast-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
