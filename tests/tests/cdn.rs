//! The box behind the README's caching proxy (Debian's nginx, the exact
//! configuration the README shows, read from it): 200 LL-HLS clients for
//! 30 s, hls.js in Chromium plus 199 scripted ones doing blocking reloads and
//! part downloads. Every client plays; the box sees about one request per
//! part and rendition (nginx's log says which requests went upstream);
//! latency through the proxy stays under 2 s.

use roomcast_e2e::edge::follow;
use roomcast_e2e::{browser_dir, free_port, run_with_timeout, temp_dir, Daemon};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const SECONDS: u64 = 30;

/// Two renditions, small enough for two cores with Chromium and nginx.
const CONFIG: &str = r#"
[video]
width = 640
height = 360
fps = 30
bitrate_kbps = 1000
gop = 30

[[ladder]]
width = 320
height = 180
bitrate_kbps = 300
"#;

/// The nginx block of the README's "A large audience" section.
fn readme_config() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let after = readme
        .split_once("<!-- cdn-nginx")
        .expect("the README has the cdn-nginx marker")
        .1;
    let block = after
        .split_once("```nginx\n")
        .expect("an nginx block after the marker")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx running the README's configuration in front of `box_port`, with
/// its paths moved into a directory of its own and an access log that
/// says, per request, whether it went upstream.
fn nginx(box_port: u16) -> Nginx {
    assert!(
        Path::new("/usr/sbin/nginx").exists(),
        "nginx is missing: run tests/run.sh, which installs it"
    );
    let dir = temp_dir("cdn-nginx");
    // Workers may run as nobody: let them write their cache and temp files.
    let _ = Command::new("chmod").arg("0777").arg(&dir).status();
    let port = free_port();
    let site = readme_config()
        .replace("BOX:8080", &format!("127.0.0.1:{box_port}"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace(
            "/var/cache/nginx/roomcast",
            &dir.join("cache").display().to_string(),
        );
    assert!(site.contains(&format!("127.0.0.1:{box_port}")), "{site}");
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format upstream '$upstream_cache_status $upstream_status $request_uri';
    access_log {d}/access.log upstream;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{site}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, dir, port }
}

#[test]
fn two_hundred_clients_through_the_readme_nginx_cost_the_box_one_request_per_part() {
    let d = Daemon::start_with_config("cdn", &["--no-mdns"], &[], Some(CONFIG));
    d.wait_for("/hls/r1/index.m3u8", Duration::from_secs(20), |r| {
        r.status == 200 && r.text().contains("#EXT-X-PART:")
    });
    let proxy = nginx(d.port);
    let port = proxy.port;

    // hls.js through the proxy: the page, the multivariant playlist, every
    // part and reload come from nginx.
    let browser = std::thread::spawn({
        let base = format!("http://127.0.0.1:{port}");
        move || {
            let mut cmd = Command::new("node");
            cmd.args([
                "latency.mjs",
                &base,
                "/hls/index.m3u8",
                &SECONDS.to_string(),
                "2",
            ]);
            run_with_timeout(
                cmd.current_dir(browser_dir()),
                Duration::from_secs(SECONDS + 90),
            )
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..CLIENTS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || follow(port, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(SECONDS));
    stop.store(true, Ordering::Relaxed);

    let mut ages = Vec::new();
    let mut least = u32::MAX;
    for c in clients {
        let (a, parts, errors) = c.join().unwrap();
        assert!(
            errors.is_empty(),
            "a scripted client saw errors: {errors:?}"
        );
        least = least.min(parts);
        ages.extend(a);
    }
    // 30 s of 267 ms parts is ~112; every client kept up with the edge.
    assert!(least >= 60, "a scripted client fetched only {least} parts");
    ages.sort_by(f64::total_cmp);
    let p50 = ages[ages.len() / 2];
    let p99 = ages[ages.len() * 99 / 100];
    println!(
        "{} scripted clients through nginx: {} playlists, age p50 {p50:.0} ms, p99 {p99:.0} ms; fewest parts {least}",
        CLIENTS - 1,
        ages.len()
    );
    assert!(
        p99 < 2000.0,
        "playlist age p99 {p99:.0} ms through the proxy"
    );

    let (code, out, err) = browser.join().unwrap();
    println!("{out}");
    eprint!("{err}");
    assert_eq!(code, Some(0), "hls.js through nginx failed (output above)");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["advanced"].as_f64().unwrap() >= SECONDS as f64 * 0.9,
        "{v}"
    );

    // What reached the box: nginx logs each request with its cache status;
    // MISS, EXPIRED, BYPASS and an empty status went upstream.
    let log = std::fs::read_to_string(proxy.dir.join("access.log")).unwrap();
    let mut served = 0usize;
    let mut upstream: BTreeMap<String, usize> = BTreeMap::new();
    let mut part_requests: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        let mut f = line.splitn(3, ' ');
        let (cache, _status, uri) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let is_part = uri.starts_with("/hls/r") && uri.contains("/part");
        if is_part {
            *part_requests.entry(uri.to_string()).or_default() += 1;
        }
        served += 1;
        if !matches!(cache, "HIT" | "UPDATING" | "STALE" | "REVALIDATED")
            && uri.starts_with("/hls/r")
        {
            *upstream.entry(uri.to_string()).or_default() += 1;
        }
    }
    let parts: Vec<(&String, &usize)> = upstream
        .iter()
        .filter(|(u, _)| u.contains("/part"))
        .collect();
    let part_fetches: usize = parts.iter().map(|(_, n)| **n).sum();
    let most = parts.iter().map(|(_, n)| **n).max().unwrap_or(0);
    let viewers_per_part =
        part_requests.values().sum::<usize>() as f64 / part_requests.len().max(1) as f64;
    let per_part = part_fetches as f64 / parts.len().max(1) as f64;
    println!(
        "nginx served {served} requests; {} distinct parts, {viewers_per_part:.0} requests each at the proxy, {per_part:.2} each at the box (most {most})",
        parts.len()
    );
    assert!(
        parts.len() >= 100,
        "only {} parts went through",
        parts.len()
    );
    assert!(viewers_per_part >= 50.0, "the clients did not share parts");
    assert!(
        per_part <= 1.2,
        "the box saw {per_part:.2} requests per part"
    );
    assert!(most <= 3, "one part reached the box {most} times");
    // Blocking reloads collapse too: far fewer reached the box than clients made.
    let reloads: usize = upstream
        .iter()
        .filter(|(u, _)| u.contains("_HLS_msn="))
        .map(|(_, n)| *n)
        .sum();
    let distinct = upstream.keys().filter(|u| u.contains("_HLS_msn=")).count();
    println!("blocking reloads at the box: {reloads} for {distinct} distinct ones");
    assert!(
        reloads as f64 <= distinct as f64 * 1.5,
        "{reloads} blocking reloads reached the box for {distinct} distinct ones"
    );
    let s = d.status();
    assert!(s["llhls"]["parts"].as_u64().unwrap() > 0);
}
