//! Helpers shared by the end-to-end tests: find the release binary, start it
//! on a free port with a private data directory, and talk HTTP to it.
//!
//! The tests drive the binary built by `cargo build --release` (the test
//! script builds it first); `ROOMCAST_BIN` points elsewhere if needed.

pub mod edge;
pub mod lipsync;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the `roomcast` binary under test.
pub fn roomcast_bin() -> PathBuf {
    release_bin("roomcast", "ROOMCAST_BIN")
}

/// Path of the `roomcast-host` binary under test.
pub fn host_bin() -> PathBuf {
    release_bin("roomcast-host", "ROOMCAST_HOST_BIN")
}

/// `target/release/NAME` (or `$ENV_VAR`), which must exist.
fn release_bin(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release --workspace --bins` first (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "roomcast-e2e-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(free_port())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    /// An API token provisioned in the data directory before start; `get`
    /// and `put_json` send it, so tests reach the admin API.
    pub token: String,
}

/// An `env` entry of [`Daemon::start_with_env`] naming a file for the
/// daemon's stderr.
pub const STDERR_TO: &str = "ROOMCAST_E2E_STDERR";

/// The API token tests provision (the daemon reads `DATA_DIR/api-tokens`).
pub const TEST_TOKEN: &str = "e2e-test-token-0123456789abcdef";

impl Daemon {
    /// Starts `roomcast --http 127.0.0.1:PORT --data-dir DIR` plus `args`,
    /// and waits until `/api/status` answers.
    pub fn start(tag: &str, args: &[&str]) -> Daemon {
        Self::start_with_env(tag, args, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. the V4L2
    /// simulator's directory).
    pub fn start_with_env(tag: &str, args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        Self::start_with_config(tag, args, env, None)
    }

    /// [`Daemon::start_with_env`] with `config` (TOML) written to
    /// `DATA_DIR/config.toml` first, for settings without a flag (`[audio]`).
    pub fn start_with_config(
        tag: &str,
        args: &[&str],
        env: &[(&str, &Path)],
        config: Option<&str>,
    ) -> Daemon {
        // HTTPS on a port of its own (the default 8443 would be shared by
        // every daemon the tests run at once), unless the test says where.
        let mut all: Vec<&str> = args.to_vec();
        if !args.contains(&"--https") {
            all.extend(["--https", "127.0.0.1:0"]);
        }
        Self::start_bin(&roomcast_bin(), tag, &all, env, config)
    }

    /// [`Daemon::start_with_config`] of another build of the daemon (the
    /// benches compare two).
    pub fn start_bin(
        bin: &Path,
        tag: &str,
        args: &[&str],
        env: &[(&str, &Path)],
        config: Option<&str>,
    ) -> Daemon {
        let port = free_port();
        let data_dir = temp_dir(tag);
        std::fs::write(data_dir.join("api-tokens"), format!("{TEST_TOKEN}\n"))
            .expect("write api-tokens");
        if let Some(toml) = config {
            std::fs::write(data_dir.join("config.toml"), toml).expect("write config.toml");
        }
        // `ROOMCAST_E2E_STDERR=FILE` in `env` sends the daemon's stderr
        // there (tests that read what it printed) instead of the test's.
        let stderr = match env.iter().find(|(k, _)| *k == STDERR_TO) {
            Some((_, file)) => Stdio::from(std::fs::File::create(file).expect("create log")),
            None => Stdio::inherit(),
        };
        let child = Command::new(bin)
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .envs(env.iter().copied().filter(|(k, _)| *k != STDERR_TO))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn roomcast");
        let mut d = Daemon {
            child,
            port,
            data_dir,
            token: TEST_TOKEN.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = d.child.try_wait().expect("try_wait") {
                panic!("roomcast exited early with {status}");
            }
            if let Ok(r) = d.get("/api/status") {
                if r.status == 200 {
                    return d;
                }
            }
            assert!(
                Instant::now() < deadline,
                "roomcast did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET with the test's API token.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        http_with(
            self.port,
            "GET",
            path,
            None,
            &[("Authorization", &format!("Bearer {}", self.token))],
        )
    }

    /// PUT JSON with the test's API token.
    pub fn put_json(&self, path: &str, body: &str) -> std::io::Result<Response> {
        http_with(
            self.port,
            "PUT",
            path,
            Some(body),
            &[("Authorization", &format!("Bearer {}", self.token))],
        )
    }

    /// `/api/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        let r = self.get("/api/status").expect("GET /api/status");
        serde_json::from_slice(&r.body).expect("status JSON")
    }

    /// Output `i` of `/api/status` (RTMP and SRT destinations, config order).
    pub fn output(&self, i: usize) -> serde_json::Value {
        self.status()["outputs"][i].clone()
    }

    /// Polls output `i` until `pred` holds; panics with the last status after
    /// `timeout`.
    pub fn wait_output(
        &self,
        i: usize,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.output(i);
            if pred(&o) {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "output {i} not as expected after {timeout:?}: {o}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `path` until it answers 200 and `pred` accepts the body.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&Response) -> bool,
    ) -> Response {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.get(path) {
                if r.status == 200 && pred(&r) {
                    return r;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {path}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An HTTP/1.1 response, body read to the end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Minimal HTTP/1.1 client (Connection: close), enough for tests; keeps the
/// tests free of an HTTP client dependency tree.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Response> {
    http_with(port, method, path, body, &[])
}

/// [`http`] with extra request headers.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// True when `cmd` can be run (the test script installs the peers; a test
/// run by hand on a bare machine says what is missing instead of failing
/// obscurely).
pub fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs `cmd` to its end or until `timeout` (then kills it: exit code None),
/// returning its exit code, stdout and stderr.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (is Node.js installed? tests/run.sh installs it)");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = err.join().unwrap_or_default();
    if code.is_none() {
        stderr.push_str(&format!(
            "\nnode play.mjs was killed after {} s\n",
            timeout.as_secs()
        ));
    }
    (code, out.join().unwrap_or_default(), stderr)
}

/// `tests/browser`, ready to run: Chromium and node present, the pinned
/// playwright-core installed. Fails with what to do when something is missing.
pub fn browser_dir() -> PathBuf {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} is missing: run tests/run.sh (it installs Debian's chromium), or set CHROMIUM=/path/to/chromium",
        chromium.display()
    );
    assert!(
        have("node"),
        "node is missing: run tests/run.sh (it installs Node.js and npm)"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`npm ci` in {} failed: is npm installed (tests/run.sh installs it)?",
            dir.display()
        );
    }
    dir
}

/// An EXT-X-PROGRAM-DATE-TIME value (`2026-11-25T10:00:00.123Z`) as Unix
/// milliseconds.
pub fn parse_pdt_ms(t: &str) -> Option<f64> {
    let (date, time) = t.trim().trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut tt = time.split(':');
    let (hh, mm): (i64, i64) = (tt.next()?.parse().ok()?, tt.next()?.parse().ok()?);
    let ss: f64 = tt.next()?.parse().ok()?;
    // Days from civil (proleptic Gregorian), as in the media crate.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss) * 1000.0)
}

/// `ffprobe -of json ARGS FILE`, asserting that it succeeds.
pub fn ffprobe_json(args: &[&str], file: &Path) -> serde_json::Value {
    assert!(
        have("ffprobe"),
        "ffprobe is missing: run tests/run.sh, which installs ffmpeg"
    );
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// Segment URIs of a media playlist, in order.
pub fn segment_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The streams of a TS file as ffprobe reports them: (codec_type,
/// codec_name) in stream order, e.g. `[("video", "h264"), ("audio", "aac")]`.
pub fn stream_kinds(file: &Path) -> Vec<(String, String)> {
    let v = ffprobe_json(&["-show_entries", "stream=codec_type,codec_name"], file);
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["codec_type"].as_str().unwrap_or("").to_string(),
                        s["codec_name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The first audio stream of `file` (codec_name, codec_tag, sample_rate,
/// channels, and the number of decoded frames), as ffprobe JSON; `Null`
/// when there is none.
pub fn audio_stream(file: &Path) -> serde_json::Value {
    let v = ffprobe_json(
        &[
            "-select_streams",
            "a:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,codec_tag,sample_rate,channels,nb_read_frames",
        ],
        file,
    );
    v["streams"][0].clone()
}

/// Asserts that `file` has an AAC-LC track at 48 kHz with `channels` that
/// decodes to at least one frame; `what` names the file in the message.
pub fn assert_aac(file: &Path, channels: u64, what: &str) {
    let a = audio_stream(file);
    assert_eq!(a["codec_name"], "aac", "{what}: no AAC audio stream: {a}");
    assert_eq!(a["sample_rate"], "48000", "{what}: {a}");
    assert_eq!(a["channels"].as_u64(), Some(channels), "{what}: {a}");
    let frames: u64 = a["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(frames > 0, "{what}: the audio stream has no frames: {a}");
}

/// The elementary streams the PMT of an MPEG-TS file lists: (stream_type,
/// PID) in order (ISO/IEC 13818-1 2.4.4). Reads the first PAT and the first
/// complete PMT section that fits in one packet (as the daemon writes it).
pub fn pmt_streams(ts: &[u8]) -> Vec<(u8, u16)> {
    let payload = |p: &[u8]| -> Option<Vec<u8>> {
        // Payload-unit start: the section follows a pointer field.
        if p[0] != 0x47 || p[1] & 0x40 == 0 {
            return None;
        }
        let afc = (p[3] >> 4) & 3;
        let mut i = 4;
        if afc & 2 != 0 {
            i += 1 + usize::from(p[4]);
        }
        if afc & 1 == 0 || i >= 188 {
            return None;
        }
        let pointer = usize::from(p[i]);
        p.get(i + 1 + pointer..).map(<[u8]>::to_vec)
    };
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let packets: Vec<&[u8]> = ts.chunks_exact(188).collect();
    let Some(pmt_pid) = packets.iter().filter(|p| pid(p) == 0).find_map(|p| {
        let s = payload(p)?;
        // table_id 0, then the first program's (number, PID) at 8..12.
        (s.first() == Some(&0) && s.len() >= 12)
            .then(|| (u16::from(s[10] & 0x1f) << 8) | u16::from(s[11]))
    }) else {
        return Vec::new();
    };
    let Some(s) = packets
        .iter()
        .filter(|p| pid(p) == pmt_pid)
        .find_map(|p| payload(p).filter(|s| s.first() == Some(&2)))
    else {
        return Vec::new();
    };
    let section_len = (usize::from(s[1] & 0x0f) << 8) | usize::from(s[2]);
    let end = (3 + section_len).saturating_sub(4).min(s.len());
    let info_len = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
    let mut i = 12 + info_len;
    let mut out = Vec::new();
    while i + 5 <= end {
        let es_pid = (u16::from(s[i + 1] & 0x1f) << 8) | u16::from(s[i + 2]);
        out.push((s[i], es_pid));
        let es_info = (usize::from(s[i + 3] & 0x0f) << 8) | usize::from(s[i + 4]);
        i += 5 + es_info;
    }
    out
}

/// Copies the MPEG-TS in `src` up to its last PAT (which stands in front of
/// the last keyframe) into `dst`: a receiver killed mid-stream leaves a cut
/// GOP at the end, and this leaves only whole ones to decode.
pub fn whole_gops(src: &Path, dst: &Path) {
    let ts = std::fs::read(src).expect("read the received stream");
    let last_pat = ts
        .chunks_exact(188)
        .rposition(|p| p[0] == 0x47 && p[1] & 0x1f == 0 && p[2] == 0)
        .expect("the stream has a PAT");
    std::fs::write(dst, &ts[..last_pat * 188]).expect("write the whole GOPs");
}
