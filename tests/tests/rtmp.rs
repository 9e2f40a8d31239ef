//! RTMP and RTMPS push against real peers: nginx with Debian's
//! libnginx-mod-rtmp as the ingest, stunnel4 as the TLS terminator in front
//! of it, ffprobe/ffmpeg reading back what the server got. Every peer runs
//! on 127.0.0.1 on free ports with its configuration in a temp dir, and
//! every wait is bounded.

use roomcast_e2e::{free_port, have, temp_dir, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where Debian's libnginx-mod-rtmp puts the module.
const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

fn need_peers() {
    assert!(
        Path::new(RTMP_MODULE).exists() && Path::new("/usr/sbin/nginx").exists(),
        "nginx with libnginx-mod-rtmp is missing: run tests/run.sh, which installs it"
    );
    assert!(
        have("ffprobe"),
        "ffprobe is missing: run tests/run.sh, which installs ffmpeg"
    );
}

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("wait")
}

/// nginx with the RTMP module, application `live`, in its own directory.
struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// `on_publish`: port of an HTTP server nginx asks before accepting a
    /// publisher (2xx allows, anything else refuses).
    fn start(on_publish: Option<u16>) -> Nginx {
        need_peers();
        let dir = temp_dir("nginx");
        let port = free_port();
        let hook = on_publish
            .map(|p| format!("on_publish http://127.0.0.1:{p}/publish;"))
            .unwrap_or_default();
        // No `user` directive and every path in `dir`, so this runs as root
        // or as anyone. wait_key: players start at a keyframe.
        let conf = format!(
            "load_module {RTMP_MODULE};
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            wait_key on;
            {hook}
        }}
    }}
}}
",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let mut n = Nginx {
            child: None,
            dir,
            port,
        };
        n.up();
        n
    }

    fn up(&mut self) {
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        self.child = Some(child);
        wait_listening(self.port, "nginx");
    }

    /// Stops nginx the way an admin would (SIGTERM to the master, which
    /// takes its worker down with it) and waits until it is gone.
    fn down(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        // The worker exits right after the master; wait for the port.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed when dropped (stunnel).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn publishing(o: &Value) -> bool {
    o["state"] == "publishing" && o["frames_sent"].as_u64().unwrap_or(0) > 0
}

/// ffprobe's view of the live stream at `url`: (codec, width, height,
/// frame rate) of its video stream.
fn probe(url: &str) -> (String, u64, u64, String) {
    let v = probe_streams(url);
    let s = by_type(&v, "video");
    (
        s["codec_name"].as_str().unwrap_or_default().to_string(),
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
        s["r_frame_rate"].as_str().unwrap_or_default().to_string(),
    )
}

/// Every stream ffprobe finds in the live stream at `url`, as JSON.
fn probe_streams(url: &str) -> Value {
    let out = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-of", "json", "-show_entries"])
            .arg("stream=codec_type,codec_name,width,height,r_frame_rate,sample_rate,channels")
            .arg(url),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "ffprobe {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// The first stream of `codec_type` in ffprobe JSON (`Null` if none).
fn by_type<'a>(v: &'a Value, codec_type: &str) -> &'a Value {
    v["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["codec_type"] == codec_type))
        .unwrap_or(&Value::Null)
}

const PICTURE: [&str; 6] = ["--size", "320x240", "--fps", "30", "--gop", "30"];

fn daemon(tag: &str, extra: &[&str]) -> Daemon {
    let mut args: Vec<&str> = PICTURE.to_vec();
    args.extend_from_slice(extra);
    Daemon::start(tag, &args)
}

#[test]
fn push_to_nginx_is_read_back_as_configured_h264() {
    let nginx = Nginx::start(None);
    let key = "roomcast_e2e_key_0123456789";
    let d = daemon("rtmp-push", &["--rtmp", &nginx.url(key)]);
    let o = d.wait_output(0, Duration::from_secs(15), publishing);
    assert_eq!(o["peer"], format!("127.0.0.1:{}", nginx.port));
    // The key never shows in status.
    assert!(!o.to_string().contains("0123456789"), "{o}");
    // One read of what nginx relays: the picture as configured, and the
    // sound (issue 10) as 48 kHz stereo AAC.
    let v = probe_streams(&nginx.url(key));
    let s = by_type(&v, "video");
    assert_eq!(
        (
            s["codec_name"].as_str(),
            s["width"].as_u64(),
            s["height"].as_u64(),
            s["r_frame_rate"].as_str()
        ),
        (Some("h264"), Some(320), Some(240), Some("30/1")),
        "{v}"
    );
    let a = by_type(&v, "audio");
    assert_eq!(
        (
            a["codec_name"].as_str(),
            a["sample_rate"].as_str(),
            a["channels"].as_u64()
        ),
        (Some("aac"), Some("48000"), Some(2)),
        "{v}"
    );
    // Lip sync survives FLV and nginx: 6 s pulled back, measured.
    let dir = temp_dir("rtmp-sync");
    let pulled = dir.join("pulled.mkv");
    let out = run_bounded(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i", &nginx.url(key)])
            .args(["-t", "6", "-c", "copy", "-y"])
            .arg(&pulled),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    roomcast_e2e::lipsync::assert_in_sync(&pulled, "RTMP via nginx-rtmp");
    let _ = std::fs::remove_dir_all(dir);
    let o = d.output(0);
    assert!(o["bytes_sent"].as_u64().unwrap() > 10_000, "{o}");
    assert!(o["send_rate_kbps"].as_f64().unwrap() > 0.0, "{o}");
    assert_eq!(o["reconnects"], 0, "{o}");
    let metrics = d.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("roomcast_output_publishing{output=\"rtmp://127.0.0.1:"),
        "{metrics}"
    );

    // Adding an output through the API (the first sent back masked, as GET
    // shows it) starts only the new one: no encoder restart, no reconnect.
    let masked = o["url"].as_str().unwrap().to_string();
    let body = serde_json::json!({"outputs": [{"url": masked}, {"url": nginx.url("second_key")}]});
    let r = d.put_json("/api/config", &body.to_string()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    d.wait_output(1, Duration::from_secs(15), publishing);
    let o = d.output(0);
    assert!(publishing(&o) && o["reconnects"] == 0, "{o}");
    let status: Value = serde_json::from_slice(&d.get("/api/status").unwrap().body).unwrap();
    assert_eq!(status["encoder"]["restarts"], 0, "{status}");
    let cfg = d.get("/api/config").unwrap().text();
    assert!(
        !cfg.contains("0123456789") && !cfg.contains("second_key"),
        "{cfg}"
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with
/// openssl; returns (ca.pem, server.pem, server.key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ossl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    ossl(
        &[
            &["req", "-x509", "-nodes", "-days", "2"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=roomcast test CA",
            ],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    ossl(
        &[
            &["req", "-nodes"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn rtmps_through_stunnel_with_private_ca_and_refused_without_it() {
    let nginx = Nginx::start(None);
    assert!(
        have("openssl") && Path::new("/usr/bin/stunnel4").exists(),
        "openssl or stunnel4 is missing: run tests/run.sh, which installs them"
    );
    let dir = temp_dir("stunnel");
    let (ca, cert, key) = make_certs(&dir);
    let tls_port = free_port();
    std::fs::write(
        dir.join("stunnel.conf"),
        format!(
            "foreground = yes\npid =\n[rtmps]\naccept = 127.0.0.1:{tls_port}\n\
             connect = 127.0.0.1:{}\ncert = {}\nkey = {}\n",
            nginx.port,
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let _stunnel = Killed(
        Command::new("/usr/bin/stunnel4")
            .arg(dir.join("stunnel.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stunnel4"),
    );
    wait_listening(tls_port, "stunnel");

    // With the CA: published over TLS, read back from nginx's plain port.
    let config = dir.join("roomcast.toml");
    std::fs::write(
        &config,
        format!(
            "[[outputs]]\nurl = \"rtmps://127.0.0.1:{tls_port}/live/tls_key_0123456789\"\n\
             ca_file = \"{}\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let d = daemon("rtmps-ca", &["--config", config.to_str().unwrap()]);
    d.wait_output(0, Duration::from_secs(15), publishing);
    assert_eq!(
        probe(&nginx.url("tls_key_0123456789")),
        ("h264".to_string(), 320, 240, "30/1".to_string())
    );

    // Without it: a certificate error in status, nothing sent.
    let url = format!("rtmps://127.0.0.1:{tls_port}/live/no_ca_key");
    let d2 = daemon("rtmps-no-ca", &["--rtmp", &url]);
    let o = d2.wait_output(0, Duration::from_secs(10), |o| {
        o["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate"))
    });
    let err = o["last_error"].as_str().unwrap();
    assert!(
        err.contains("UnknownIssuer") && err.contains("ca_file"),
        "{err}"
    );
    assert_ne!(o["state"], "publishing");
    assert_eq!(o["bytes_sent"], 0, "{o}");
    assert_eq!(o["frames_sent"], 0, "{o}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn publishing_resumes_after_nginx_restarts_and_pull_decodes_cleanly() {
    assert!(have("ffmpeg"), "ffmpeg is missing: run tests/run.sh");
    let mut nginx = Nginx::start(None);
    let key = "restart_key";
    let d = daemon("rtmp-restart", &["--rtmp", &nginx.url(key)]);
    d.wait_output(0, Duration::from_secs(15), publishing);
    for round in 1..=3 {
        nginx.down();
        let o = d.wait_output(0, Duration::from_secs(10), |o| o["state"] != "publishing");
        // Down long enough for a couple of failed attempts.
        std::thread::sleep(Duration::from_millis(1500));
        let sent = d.output(0)["frames_sent"].as_u64().unwrap();
        nginx.up();
        let back = Instant::now();
        let o2 = d.wait_output(0, Duration::from_secs(10), |o| {
            o["state"] == "publishing" && o["frames_sent"].as_u64().unwrap() > sent
        });
        let took = back.elapsed();
        eprintln!("round {round}: publishing again {took:?} after nginx returned");
        assert!(
            took < Duration::from_secs(3),
            "round {round}: {took:?} to resume; before: {o}, after: {o2}"
        );
        assert!(o2["reconnects"].as_u64().unwrap() >= round, "{o2}");
        // Keep publishing a little before the next outage.
        std::thread::sleep(Duration::from_millis(1000));
    }
    let out = run_bounded(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(nginx.url(key))
            .args(["-t", "3", "-f", "null", "-"]),
        Duration::from_secs(20),
    );
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg pull after the restarts: {:?}\n{errors}",
        out.status
    );
}

/// Ten outages of nginx, short and long (long enough for the backoff to
/// reach its cap): every time the output is publishing again within 3 s
/// of nginx coming back. While it waits, the frames it cannot send count
/// as its own drops, never the stream's.
#[test]
fn ten_nginx_restarts_each_back_within_three_seconds() {
    let mut nginx = Nginx::start(None);
    let d = daemon("rtmp-ten", &["--rtmp", &nginx.url("ten_key")]);
    d.wait_output(0, Duration::from_secs(15), publishing);
    let outages_ms = [300, 700, 1200, 2000, 3000, 4500, 6000, 800, 5000, 1500];
    let mut took = Vec::new();
    for (round, down_ms) in outages_ms.iter().enumerate() {
        nginx.down();
        d.wait_output(0, Duration::from_secs(10), |o| o["state"] != "publishing");
        std::thread::sleep(Duration::from_millis(*down_ms));
        let sent = d.output(0)["frames_sent"].as_u64().unwrap();
        nginx.up();
        let back = Instant::now();
        let o = d.wait_output(0, Duration::from_secs(10), |o| {
            o["state"] == "publishing" && o["frames_sent"].as_u64().unwrap() > sent
        });
        let t = back.elapsed();
        assert!(
            t < Duration::from_secs(3),
            "round {}: {t:?} to resume after {down_ms} ms down: {o}",
            round + 1
        );
        took.push(t.as_millis());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("10 nginx restarts: publishing again after {took:?} ms");
    let s = d.status();
    assert!(s["outputs"][0]["dropped"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["frames"]["dropped"], 0, "the stream's own drops: {s}");
}

/// A tiny HTTP server for nginx's on_publish: 403 for stream name `bad`,
/// 200 otherwise. Counts the requests.
fn publish_hook() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // nginx sends a small form body; read until it is all here.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            h.fetch_add(1, Ordering::SeqCst);
            let text = String::from_utf8_lossy(&req);
            let status = if text.contains("name=bad&") || text.ends_with("name=bad") {
                "403 Forbidden"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.0 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, hits)
}

#[test]
fn rejected_publish_shows_in_status_and_retries_with_backoff() {
    let (hook_port, hits) = publish_hook();
    let nginx = Nginx::start(Some(hook_port));
    let d = daemon(
        "rtmp-reject",
        &["--rtmp", &nginx.url("bad"), "--rtmp", &nginx.url("good")],
    );
    // The good key is let through by the same hook.
    d.wait_output(1, Duration::from_secs(15), publishing);
    let o = d.wait_output(0, Duration::from_secs(15), |o| o["state"] == "rejected");
    let err = o["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("refused the stream"), "{o}");
    // Count attempts over 5 s: backoff 0.25, 0.5, 1, 2, 4 s allows a handful;
    // a tight loop would make hundreds.
    let (r0, h0) = (
        o["reconnects"].as_u64().unwrap(),
        hits.load(Ordering::SeqCst),
    );
    std::thread::sleep(Duration::from_secs(5));
    let o = d.output(0);
    let (r1, h1) = (
        o["reconnects"].as_u64().unwrap(),
        hits.load(Ordering::SeqCst),
    );
    eprintln!(
        "over 5 s: {} reconnects, {} on_publish calls",
        r1 - r0,
        h1 - h0
    );
    assert!(
        (1..=5).contains(&(r1 - r0)),
        "{} reconnects in 5 s: {o}",
        r1 - r0
    );
    assert!(h1 - h0 <= 6, "{} on_publish calls in 5 s", h1 - h0);
    assert_eq!(o["frames_sent"], 0, "{o}");
    // The refused output never disturbed the good one.
    let good = d.output(1);
    assert!(publishing(&good) && good["reconnects"] == 0, "{good}");
}
