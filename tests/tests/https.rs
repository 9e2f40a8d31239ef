//! HTTPS from the release binary: the self-signed certificate made on first
//! start, then one the admin uploads, each checked by OpenSSL (the
//! certificate served, ALPN h2), ffprobe (the stream over HTTPS) and
//! headless Chromium trusting exactly that key (the page, hls.js playing
//! LL-HLS over HTTP/2, the API); `https.only` redirects plain HTTP.

use roomcast_e2e::{browser_dir, run_with_timeout, temp_dir, Daemon};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// base64 SHA-256 of a certificate's public key (Chromium's SPKI pin).
fn spki_sha256(cert_pem: &Path) -> String {
    sh(&format!(
        "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert_pem.display()
    ))
}

/// What OpenSSL sees on the port: the certificate's SHA-256 (`AB:CD:…`)
/// and the ALPN protocol chosen when offering h2.
fn served(port: u16) -> (String, String) {
    let s_client = sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} -alpn h2,http/1.1 -showcerts </dev/null 2>/dev/null"
    ));
    let alpn = s_client
        .lines()
        .find_map(|l| l.strip_prefix("ALPN protocol: "))
        .unwrap_or("")
        .to_string();
    let fp = sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    ));
    let fp = fp.rsplit('=').next().unwrap_or("").to_string();
    (fp, alpn)
}

fn chromium(base: &str, spki: &str, token: &str, label: &str) -> String {
    let (status, stdout, stderr) = run_with_timeout(
        Command::new("node")
            .arg("https.mjs")
            .arg(base)
            .env("SPKI_SHA256", spki)
            .env("ROOMCAST_TOKEN", token)
            .env("LABEL", label)
            .current_dir(browser_dir()),
        Duration::from_secs(90),
    );
    print!("{stdout}");
    eprint!("{stderr}");
    assert_eq!(status, Some(0), "tests/browser/https.mjs failed: {label}");
    stdout
}

#[test]
fn self_signed_then_uploaded_certificate_in_openssl_ffprobe_and_chromium() {
    let d = Daemon::start(
        "https",
        &[
            "--https",
            "127.0.0.1:0",
            "--size",
            "640x360",
            "--fps",
            "25",
            "--gop",
            "25",
            "--no-mdns",
        ],
    );
    let https = d.status()["https"].clone();
    let port = https["port"].as_u64().expect("https port") as u16;
    let fp = https["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(https["self_signed"], true, "{https}");
    let base = format!("https://127.0.0.1:{port}");

    // 1. The self-signed certificate, as OpenSSL sees it.
    let (served_fp, alpn) = served(port);
    assert_eq!(served_fp, fp, "the served certificate is the one in status");
    assert_eq!(alpn, "h2");
    // ffprobe reads the stream over HTTPS.
    d.wait_for("/hls/ts/r0/index.m3u8", Duration::from_secs(20), |r| {
        r.status == 200 && r.text().contains(".ts")
    });
    let probe = sh(&format!(
        "ffprobe -v error -show_entries stream=codec_name -of csv=p=0 {base}/hls/ts/index.m3u8"
    ));
    assert!(probe.contains("h264") && probe.contains("aac"), "{probe}");
    // Chromium trusting this key only.
    let cert = d.data_dir.join("tls/cert.pem");
    let out = chromium(&base, &spki_sha256(&cert), &d.token, "self-signed");
    assert!(out.contains(&format!("FINGERPRINT {fp}")), "{out}");

    // 2. An uploaded certificate (a private CA's, for 127.0.0.1).
    let dir = temp_dir("https-ca");
    sh(&format!(
        "cd {dir} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=roomcast-test-ca 2>/dev/null \
         && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout box.key -out box.csr -subj /CN=127.0.0.1 2>/dev/null \
         && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf \
         && openssl x509 -req -in box.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out box.pem 2>/dev/null \
         && cat box.pem ca.pem > chain.pem",
        dir = dir.display()
    ));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    // A key that is not the certificate's is refused and changes nothing.
    let wrong = serde_json::json!({ "cert": read("chain.pem"), "key": read("ca.key") });
    let r = d.put_json("/api/tls", &wrong.to_string()).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("does not belong"), "{}", r.text());
    assert_eq!(served(port).0, fp);
    let good = serde_json::json!({ "cert": read("chain.pem"), "key": read("box.key") });
    let r = d.put_json("/api/tls", &good.to_string()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let leaf_fp = sh(&format!(
        "openssl x509 -in {} -noout -fingerprint -sha256",
        dir.join("box.pem").display()
    ));
    let leaf_fp = leaf_fp.rsplit('=').next().unwrap().to_string();
    assert_eq!(d.status()["https"]["fingerprint"], leaf_fp.as_str());
    assert_eq!(d.status()["https"]["self_signed"], false);
    // OpenSSL verifies it against the private CA, no restart needed.
    let verify = sh(&format!(
        "openssl s_client -connect 127.0.0.1:{port} -CAfile {} -verify_return_error </dev/null 2>&1 | grep 'Verify return code'",
        dir.join("ca.pem").display()
    ));
    assert!(verify.contains("0 (ok)"), "{verify}");
    assert_eq!(served(port).0, leaf_fp);
    let out = chromium(
        &base,
        &spki_sha256(&dir.join("box.pem")),
        &d.token,
        "uploaded",
    );
    assert!(out.contains(&format!("FINGERPRINT {leaf_fp}")), "{out}");

    // 3. HTTPS only: plain HTTP is redirected.
    let r = d
        .put_json("/api/config", r#"{"https":{"only":true}}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.get("/hls/index.m3u8").unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("Location"),
        Some(format!("https://127.0.0.1:{port}/hls/index.m3u8").as_str())
    );
    let _ = std::fs::remove_dir_all(dir);
}
