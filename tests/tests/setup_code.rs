//! The first-start claim against the release binary: the first admin
//! password is set only with the one-time setup code. The daemon prints it
//! on its console and keeps it in `DATA_DIR/setup-code`; it adopts the
//! installer's code from the SD image's boot partition
//! (`ROOMCAST_BOOT_SETUP_CODE` points at a stand-in file here); the code is
//! deleted once used; `roomcast --reset-password` issues a fresh one.

use roomcast_e2e::{http, http_with, roomcast_bin, temp_dir, Daemon, Response, STDERR_TO};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BOOT_ENV: &str = "ROOMCAST_BOOT_SETUP_CODE";
const PRINTED: &str = "roomcast: setup code for the first admin password: ";
const ARGS: &[&str] = &["--size", "320x240", "--fps", "10"];

/// The codes printed on the console, in order.
fn printed_codes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(PRINTED))
        .map(|c| c.trim().to_string())
        .collect()
}

fn setup(d: &Daemon, password: &str, code: Option<&str>) -> Response {
    let body = match code {
        Some(c) => format!("{{\"password\":\"{password}\",\"setup_code\":\"{c}\"}}"),
        None => format!("{{\"password\":\"{password}\"}}"),
    };
    http(d.port, "POST", "/api/setup", Some(&body)).expect("POST /api/setup")
}

fn session(d: &Daemon) -> serde_json::Value {
    let r = http(d.port, "GET", "/api/session", None).expect("GET /api/session");
    serde_json::from_slice(&r.body).expect("session JSON")
}

fn stored_code(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("setup-code"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn first_start_without_the_setup_code_is_refused() {
    let dir = temp_dir("setup-code-log");
    let log = dir.join("stderr.log");
    let no_boot_partition = dir.join("no-boot-partition.txt");
    let d = Daemon::start_with_env(
        "setup-code",
        ARGS,
        &[(STDERR_TO, &log), (BOOT_ENV, &no_boot_partition)],
    );
    // Printed on the console, the same as the data directory's copy.
    let printed = printed_codes(&std::fs::read_to_string(&log).unwrap());
    let code = stored_code(&d.data_dir).expect("DATA_DIR/setup-code");
    assert_eq!(printed, std::slice::from_ref(&code), "console: {printed:?}");
    eprintln!("printed: {PRINTED}{code}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.data_dir.join("setup-code"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let s = session(&d);
    assert_eq!(s["setup_needed"], true, "{s}");
    assert_eq!(s["setup_code_needed"], true, "{s}");

    // Without the code: refused, saying where the code is.
    let r = setup(&d, "correct-horse-battery", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("setup code") && r.text().contains("roomcast-host flash"),
        "{}",
        r.text()
    );
    eprintln!("without the code: {} {}", r.status, r.text());
    // Wrong codes: refused, then slowed down (even the right one must wait).
    let wrong = if code.starts_with('2') {
        "3333-3333-3333-3333"
    } else {
        "2222-2222-2222-2222"
    };
    // Three are free (as with wrong passwords), then each try must wait.
    for _ in 0..3 {
        let r = setup(&d, "correct-horse-battery", Some(wrong));
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.text().contains("wrong setup code"), "{}", r.text());
    }
    let r = setup(&d, "correct-horse-battery", Some(&code));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    eprintln!("wrong codes: 401 401 401, then {} ({})", r.status, r.text());
    // Nothing was set: the API is still closed, setup still needed.
    assert_eq!(
        http(d.port, "GET", "/api/status", None).unwrap().status,
        401
    );
    assert_eq!(session(&d)["setup_needed"], true);

    // With the code (after the wait): set, logged in, code gone.
    std::thread::sleep(Duration::from_millis(1100));
    let r = setup(&d, "correct-horse-battery", Some(&code));
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("Set-Cookie")
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_string();
    let status = http_with(d.port, "GET", "/api/status", None, &[("Cookie", &cookie)]).unwrap();
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(
        !d.data_dir.join("setup-code").exists(),
        "the code is deleted once the password is set"
    );
    let s = session(&d);
    assert_eq!(s["setup_needed"], false, "{s}");
    assert_eq!(s["setup_code_needed"], false, "{s}");
    // Used up: it sets nothing again.
    let r = setup(&d, "another-password", Some(&code));
    assert_eq!(r.status, 400, "{}", r.text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_installers_code_is_adopted_and_reset_password_issues_a_new_one() {
    let dir = temp_dir("setup-code-boot");
    let log = dir.join("stderr.log");
    // As `roomcast-host image build` writes it to the boot partition.
    let boot = dir.join("roomcast-setup-code.txt");
    std::fs::write(
        &boot,
        "# roomcast setup code\n#\n# (comments for whoever opens the card)\nABCD-EFGH-JKLM-NP23\n",
    )
    .unwrap();
    let d = Daemon::start_with_env(
        "setup-code-boot",
        ARGS,
        &[(STDERR_TO, &log), (BOOT_ENV, &boot)],
    );
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        console.contains(&format!("setup code taken from {}", boot.display())),
        "{console}"
    );
    assert_eq!(printed_codes(&console), ["ABCD-EFGH-JKLM-NP23"]);
    assert_eq!(
        stored_code(&d.data_dir).as_deref(),
        Some("ABCD-EFGH-JKLM-NP23")
    );
    // Typed loosely, as people do.
    let r = setup(&d, "correct-horse-battery", Some("abcd efgh jklm np23"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stored_code(&d.data_dir), None);

    // `roomcast --reset-password` on the running box's data directory:
    // password gone, a fresh code printed and in effect at once.
    let out = Command::new(roomcast_bin())
        .arg("--reset-password")
        .arg("--data-dir")
        .arg(&d.data_dir)
        .env(BOOT_ENV, &boot)
        .output()
        .expect("run roomcast --reset-password");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    let fresh = printed_codes(&said);
    assert_eq!(fresh.len(), 1, "{said}");
    let fresh = fresh[0].clone();
    eprintln!("--reset-password: {said}");
    assert_ne!(fresh, "ABCD-EFGH-JKLM-NP23");
    assert_eq!(stored_code(&d.data_dir), Some(fresh.clone()));
    assert_eq!(session(&d)["setup_code_needed"], true);
    let r = setup(&d, "a-new-password", None);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = setup(&d, "a-new-password", Some("ABCD-EFGH-JKLM-NP23"));
    assert_eq!(
        r.status,
        401,
        "the installer's code is used up: {}",
        r.text()
    );
    let r = setup(&d, "a-new-password", Some(&fresh));
    assert_eq!(r.status, 200, "{}", r.text());
    let _ = std::fs::remove_dir_all(&dir);
}
