//! `roomcast-host discover`: finds boxes on the LAN by mDNS/DNS-SD. Every
//! box announces `_roomcast._tcp` with TXT `name`, `version` and `state`
//! (see the daemon's `mdns.rs`); this browses for it for a few seconds and
//! lists what answered.

use mdns_sd::{ServiceDaemon, ServiceEvent};
use serde_json::json;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The service type boxes announce.
pub const SERVICE: &str = "_roomcast._tcp.local.";

/// Why browsing failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot start mDNS (UDP port 5353, multicast 224.0.0.251): {0}")]
    Start(String),
}

/// One box that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// TXT `name` (the box's host name), else the instance name.
    pub name: String,
    /// DNS-SD instance name, e.g. `roomcast-1a2b`.
    pub instance: String,
    /// `NAME.local.`
    pub host: String,
    pub port: u16,
    /// IPv4 first, then IPv6, each sorted.
    pub addrs: Vec<IpAddr>,
    pub version: String,
    pub state: String,
    /// HTTPS port and the SHA-256 fingerprint of the box's certificate
    /// (TXT `https`, `sha256`), when it serves HTTPS.
    pub https: Option<(u16, String)>,
}

impl Found {
    /// The web page's URL at the first address.
    pub fn url(&self) -> String {
        match self.addrs.first() {
            Some(IpAddr::V6(a)) => format!("http://[{a}]:{}/", self.port),
            Some(a) => format!("http://{a}:{}/", self.port),
            None => format!("http://{}:{}/", self.host.trim_end_matches('.'), self.port),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "instance": self.instance,
            "host": self.host,
            "port": self.port,
            "addresses": self.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "url": self.url(),
            "version": self.version,
            "state": self.state,
            "https_port": self.https.as_ref().map(|h| h.0),
            "sha256": self.https.as_ref().map(|h| h.1.clone()),
        })
    }
}

/// The instance label of a full service name (`NAME._roomcast._tcp.local.`).
fn instance_of(fullname: &str) -> String {
    fullname
        .strip_suffix(SERVICE)
        .map(|s| s.trim_end_matches('.'))
        .unwrap_or(fullname)
        .to_string()
}

/// Browses for `wait` and returns every box that answered, sorted by name.
pub fn discover(wait: Duration) -> Result<Vec<Found>, DiscoverError> {
    let daemon = ServiceDaemon::new().map_err(|e| DiscoverError::Start(e.to_string()))?;
    let events = daemon
        .browse(SERVICE)
        .map_err(|e| DiscoverError::Start(e.to_string()))?;
    let deadline = Instant::now() + wait;
    let mut found: Vec<Found> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                let txt = |k: &str| s.get_property_val_str(k).unwrap_or("").to_string();
                let mut addrs: Vec<IpAddr> =
                    s.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                addrs.sort_by_key(|a| (a.is_ipv6(), *a));
                addrs.dedup();
                let instance = instance_of(&s.fullname);
                let name = match txt("name") {
                    n if n.is_empty() => instance.clone(),
                    n => n,
                };
                let f = Found {
                    name,
                    instance,
                    host: s.host.clone(),
                    port: s.port,
                    addrs,
                    version: txt("version"),
                    state: txt("state"),
                    https: txt("https").parse().ok().map(|port| (port, txt("sha256"))),
                };
                match found.iter_mut().find(|o| o.instance == f.instance) {
                    Some(o) => *o = f,
                    None => found.push(f),
                }
            }
            Ok(ServiceEvent::ServiceRemoved(_, full)) => {
                let gone = instance_of(&full);
                found.retain(|f| f.instance != gone);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE);
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    found.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
    Ok(found)
}

/// The table `discover` prints.
pub fn table(found: &[Found]) -> String {
    let head = ["NAME", "ADDRESS", "VERSION", "STATE", "HTTPS SHA-256"].map(String::from);
    let rows: Vec<[String; 5]> = found
        .iter()
        .map(|f| {
            // The first 8 bytes, enough to recognise the box's certificate
            // (`--json` has the whole fingerprint).
            let fp = f.https.as_ref().map_or(String::new(), |(port, fp)| {
                format!("{port} {}…", fp.get(..23).unwrap_or(fp))
            });
            [
                f.name.clone(),
                f.url(),
                f.version.clone(),
                f.state.clone(),
                fp,
            ]
        })
        .collect();
    let mut w = [0usize; 5];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .zip(w)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn box_(name: &str, ip: &str, port: u16) -> Found {
        Found {
            name: name.into(),
            instance: name.into(),
            host: format!("{name}.local."),
            port,
            addrs: vec![ip.parse().unwrap()],
            version: "0.1.0".into(),
            state: "idle".into(),
            https: None,
        }
    }

    #[test]
    fn instance_names_and_urls() {
        assert_eq!(
            instance_of("roomcast-1a2b._roomcast._tcp.local."),
            "roomcast-1a2b"
        );
        assert_eq!(box_("a", "10.0.0.2", 8080).url(), "http://10.0.0.2:8080/");
        assert_eq!(box_("a", "fe80::1", 80).url(), "http://[fe80::1]:80/");
    }

    #[test]
    fn table_lines_up() {
        let t = table(&[
            box_("roomcast-1a2b", "192.168.1.20", 8080),
            box_("b", "10.0.0.3", 8080),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME           ADDRESS"), "{t}");
        assert!(
            lines[1].contains("http://192.168.1.20:8080/  0.1.0    idle"),
            "{t}"
        );
        let j = box_("b", "10.0.0.3", 8080).to_json();
        assert_eq!(j["url"], "http://10.0.0.3:8080/");
        assert_eq!(j["state"], "idle");
        assert_eq!(j["sha256"], serde_json::Value::Null);
        // A box with HTTPS shows its port and the start of its fingerprint.
        let fp = "2D:D3:EE:08:83:3C:B8:4D:A0:78:D3:1E:1D:E5:69:A8:31:17:67:88:A5:AC:FD:37:1A:55:9B:5E:21:1B:4D:C4";
        let mut c = box_("c", "10.0.0.4", 8080);
        c.https = Some((8443, fp.to_string()));
        let t = table(&[c.clone()]);
        assert!(t.contains("HTTPS SHA-256"), "{t}");
        assert!(t.contains("idle   8443 2D:D3:EE:08:83:3C:B8:4D…"), "{t}");
        assert_eq!(c.to_json()["sha256"], fp);
        assert_eq!(c.to_json()["https_port"], 8443);
    }
}
