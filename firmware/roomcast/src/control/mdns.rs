//! mDNS / DNS-SD announcement (RFC 6762, RFC 6763), so `roomcast-host
//! discover` and any Bonjour/Avahi browser find the box on the LAN.
//!
//! Two services are announced for the HTTP port: `_roomcast._tcp` (what
//! `roomcast-host discover` browses for) and `_http._tcp` (so ordinary
//! browsers' and phones' service lists show the web page). Both carry TXT
//! `name` (the box's name: its host name, `roomcast-XXXX` on an SD image),
//! `version`, `state` (`idle`, `live` or `error`, the status LED's tally) and
//! `path=/`. The host name `NAME.local` resolves to the box's address too.
//!
//! One thread (`mdns`) re-reads the configuration every [`POLL`]: `mdns =
//! false` (or `--no-mdns`) withdraws the announcement (goodbye packets),
//! `true` brings it back, and a changed state is announced again. The
//! [`mdns_sd`] daemon (its own thread and sockets) is only created when the
//! announcement is on.
//!
//! Which interfaces: the ones the web server listens on. `--http
//! 127.0.0.1:PORT` announces 127.0.0.1 on loopback only (tests, and a box
//! behind a reverse proxy); `0.0.0.0` every non-loopback interface with its
//! current addresses; a specific address only that address.

use crate::control::app::App;
use crate::control::gpio::{Tally, TallyWatch};
use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The service types announced, in DNS-SD form.
pub const SERVICE_TYPES: [&str; 2] = ["_roomcast._tcp.local.", "_http._tcp.local."];
/// The web server's default port: instance names carry any other port.
pub const DEFAULT_PORT: u16 = 8080;
/// How often the thread re-checks the configuration and the state.
const POLL: Duration = Duration::from_secs(2);

/// Why the announcement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("cannot start mDNS: {0}")]
    Start(String),
    #[error("cannot announce {service}: {reason}")]
    Register { service: String, reason: String },
}

/// What is announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The box's name (TXT `name`), normally its host name.
    pub name: String,
    /// DNS-SD instance name: `name`, plus `-PORT` when the port is not 8080
    /// (several daemons on one machine stay distinct).
    pub instance: String,
    /// `NAME.local.`
    pub host: String,
    pub port: u16,
    /// `None`: every address of the interfaces announced on.
    pub addr: Option<IpAddr>,
    pub version: String,
    pub state: String,
    /// HTTPS port and certificate fingerprint (TXT `https`, `sha256`), so
    /// an installer can tell it is their box before trusting it.
    pub https: Option<(u16, String)>,
}

impl Announcement {
    /// The announcement for a web server listening on `http`.
    pub fn new(name: &str, http: SocketAddr, state: &str) -> Announcement {
        let name = dns_label(name);
        let port = http.port();
        let instance = if port == DEFAULT_PORT {
            name.clone()
        } else {
            format!("{name}-{port}")
        };
        Announcement {
            host: format!("{name}.local."),
            instance,
            name,
            port,
            addr: (!http.ip().is_unspecified()).then_some(http.ip()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state: state.to_string(),
            https: None,
        }
    }

    /// TXT record key/value pairs.
    pub fn txt(&self) -> Vec<(&'static str, String)> {
        let mut txt = vec![
            ("name", self.name.clone()),
            ("version", self.version.clone()),
            ("state", self.state.clone()),
            ("path", "/".to_string()),
        ];
        if let Some((port, fingerprint)) = &self.https {
            txt.push(("https", port.to_string()));
            txt.push(("sha256", fingerprint.clone()));
        }
        txt
    }

    fn service_info(&self, service: &str) -> Result<ServiceInfo, MdnsError> {
        let err = |e: mdns_sd::Error| MdnsError::Register {
            service: service.to_string(),
            reason: e.to_string(),
        };
        let txt = self.txt();
        match self.addr {
            Some(ip) => {
                ServiceInfo::new(service, &self.instance, &self.host, ip, self.port, &txt[..])
            }
            None => ServiceInfo::new(
                service,
                &self.instance,
                &self.host,
                &[] as &[IpAddr],
                self.port,
                &txt[..],
            )
            .map(ServiceInfo::enable_addr_auto),
        }
        .map_err(err)
    }
}

/// A host name made safe as one DNS label: letters, digits and `-`, at most
/// 63 bytes; `roomcast` when nothing is left.
pub fn dns_label(name: &str) -> String {
    let mut s: String = name
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while s.ends_with('-') {
        s.pop();
    }
    while s.starts_with('-') {
        s.remove(0);
    }
    if s.is_empty() {
        "roomcast".to_string()
    } else {
        s
    }
}

/// The kernel's host name (`roomcast-XXXX` on an SD image).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "roomcast".to_string())
}

/// The word for a tally state in TXT `state`.
pub fn state_word(t: Tally) -> &'static str {
    match t {
        Tally::Idle => "idle",
        Tally::Live => "live",
        Tally::Error => "error",
    }
}

/// A running announcement.
struct Announcer {
    daemon: ServiceDaemon,
    current: Option<Announcement>,
}

impl Announcer {
    fn new(http: SocketAddr) -> Result<Announcer, MdnsError> {
        let daemon = ServiceDaemon::new().map_err(|e| MdnsError::Start(e.to_string()))?;
        let ip = http.ip();
        let select = if ip.is_loopback() {
            daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(IfKind::LoopbackV4))
                .and_then(|()| daemon.enable_interface(IfKind::LoopbackV6))
        } else if ip.is_unspecified() {
            daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
        } else {
            daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(IfKind::Addr(ip)))
        };
        select.map_err(|e| MdnsError::Start(e.to_string()))?;
        Ok(Announcer {
            daemon,
            current: None,
        })
    }

    fn announce(&mut self, a: &Announcement) -> Result<(), MdnsError> {
        if self.current.as_ref() == Some(a) {
            return Ok(());
        }
        for service in SERVICE_TYPES {
            // Registering the same full name again updates it and
            // re-announces it.
            self.daemon
                .register(a.service_info(service)?)
                .map_err(|e| MdnsError::Register {
                    service: service.to_string(),
                    reason: e.to_string(),
                })?;
        }
        self.current = Some(a.clone());
        Ok(())
    }

    fn withdraw(&mut self) {
        if let Some(a) = self.current.take() {
            for service in SERVICE_TYPES {
                let full = format!("{}.{service}", a.instance);
                if let Ok(done) = self.daemon.unregister(&full) {
                    let _ = done.recv_timeout(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Starts the `mdns` thread for a web server listening on `http`. It
/// announces while the configuration's `mdns` is true.
pub fn start(app: Arc<App>, http: SocketAddr) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("mdns".into())
        .spawn(move || run(app, http));
    match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("roomcast: mDNS off: cannot start its thread: {e}");
            None
        }
    }
}

fn run(app: Arc<App>, http: SocketAddr) {
    let now_ms = |app: &App| app.clock.monotonic_ns() / 1_000_000;
    // Not `status_json`: its CPU figure is measured between calls.
    let encoded = |app: &App| app.stats.encoded.load(std::sync::atomic::Ordering::Relaxed);
    let mut watch = TallyWatch::new(encoded(&app), now_ms(&app));
    let mut announcer: Option<Announcer> = None;
    let mut last_error = String::new();
    loop {
        let enabled = app
            .config
            .lock()
            .map(|c| c.get().mdns)
            .unwrap_or_else(|p| p.into_inner().get().mdns);
        if enabled {
            let outputs = app.outputs.status_json().0;
            let states = outputs.iter().filter_map(|o| o["state"].as_str());
            let tally = watch.update(now_ms(&app), encoded(&app), states);
            let mut a = Announcement::new(&host_name(), http, state_word(tally));
            let https_port = app.https_port.load(std::sync::atomic::Ordering::Relaxed);
            a.https = app
                .tls
                .as_ref()
                .filter(|_| https_port != 0)
                .map(|t| (https_port, t.info().fingerprint));
            let result = match announcer.as_mut() {
                Some(an) => an.announce(&a),
                None => Announcer::new(http).and_then(|mut an| {
                    if let Err(e) = an.announce(&a) {
                        // Stop its thread before trying again later.
                        let _ = an.daemon.shutdown();
                        return Err(e);
                    }
                    eprintln!(
                        "roomcast: mDNS: announcing {:?} ({}) on port {}",
                        a.instance,
                        SERVICE_TYPES.join(", "),
                        a.port
                    );
                    announcer = Some(an);
                    Ok(())
                }),
            };
            match result {
                Ok(()) => last_error.clear(),
                Err(e) => {
                    let msg = e.to_string();
                    if msg != last_error {
                        eprintln!("roomcast: mDNS: {msg}; retrying");
                        last_error = msg;
                    }
                }
            }
        } else if let Some(mut an) = announcer.take() {
            an.withdraw();
            let _ = an.daemon.shutdown();
            eprintln!("roomcast: mDNS: announcement withdrawn (mdns = false)");
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(dns_label("roomcast-1a2b"), "roomcast-1a2b");
        assert_eq!(dns_label("Room_Cast.example.org"), "room-cast");
        assert_eq!(dns_label("--"), "roomcast");
        assert_eq!(dns_label(""), "roomcast");
        assert_eq!(dns_label(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn announcement_for_default_and_other_ports() {
        let a = Announcement::new("roomcast-1a2b", "0.0.0.0:8080".parse().unwrap(), "idle");
        assert_eq!(a.instance, "roomcast-1a2b");
        assert_eq!(a.host, "roomcast-1a2b.local.");
        assert_eq!(a.addr, None);
        let b = Announcement::new("box", "127.0.0.1:18080".parse().unwrap(), "live");
        assert_eq!(b.instance, "box-18080");
        assert_eq!(b.addr, Some("127.0.0.1".parse().unwrap()));
        let txt = b.txt();
        assert!(txt.contains(&("state", "live".to_string())));
        assert!(txt.contains(&("version", env!("CARGO_PKG_VERSION").to_string())));
        assert!(
            !txt.iter().any(|(k, _)| *k == "sha256"),
            "no HTTPS, no fingerprint"
        );
        let mut b = b.clone();
        b.https = Some((8443, "AB:CD".into()));
        let txt = b.txt();
        assert!(txt.contains(&("https", "8443".to_string())));
        assert!(txt.contains(&("sha256", "AB:CD".to_string())));
        for service in SERVICE_TYPES {
            let info = b.service_info(service).unwrap();
            assert_eq!(info.get_fullname(), format!("box-18080.{service}"));
            assert_eq!(info.get_property_val_str("name"), Some("box"));
        }
    }
}
