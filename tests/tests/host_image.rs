//! `roomcast-host image build --board rpi4`: the SD image, checked from
//! outside without mounting it (sfdisk, mtools, debugfs), and booted under
//! `qemu-system-aarch64 -M virt` with its own Debian arm64 kernel until the
//! web page answers through a forwarded port.
//!
//! Both are long (the image build runs Debian's maintainer scripts under
//! qemu-user), so they run only when asked:
//!
//! * `ROOMCAST_IMAGE_TEST=1`: build the image (needs root, mmdebstrap,
//!   qemu-user-static, fdisk, dosfstools, mtools, e2fsprogs, and the aarch64
//!   binary from `tests/cross.sh aarch64`) and check it from outside.
//!   `ROOMCAST_IMAGE=FILE` checks an image built before instead.
//! * `ROOMCAST_BOOT_TEST=1` as well: boot it (needs qemu-system-arm).
//!
//! The image and its timing are printed (`--nocapture`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn host_bin() -> PathBuf {
    std::env::var_os("ROOMCAST_HOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release").join("roomcast-host"))
}

fn aarch64_bin() -> PathBuf {
    std::env::var_os("ROOMCAST_AARCH64_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("cross/aarch64-unknown-linux-gnu/release/roomcast"))
}

fn enabled(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs a host tool; panics with its output when it fails.
fn tool(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (apt install fdisk mtools e2fsprogs)"));
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The image under test: built once per test process (or given).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Some(p) = std::env::var_os("ROOMCAST_IMAGE") {
            return PathBuf::from(p);
        }
        let dir = target_dir().join("image-test");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("roomcast-rpi4.img");
        let bin = aarch64_bin();
        assert!(
            bin.exists(),
            "{} is missing: run tests/cross.sh aarch64 first",
            bin.display()
        );
        let t = Instant::now();
        let status = Command::new(host_bin())
            .args(["image", "build", "--board", "rpi4", "--out"])
            .arg(&out)
            .arg("--binary")
            .arg(&bin)
            .status()
            .expect("run roomcast-host image build");
        assert!(status.success(), "image build failed: {status}");
        let md = std::fs::metadata(&out).unwrap();
        use std::os::unix::fs::MetadataExt;
        eprintln!(
            "image build: {:.0} s; {} is {} MiB ({} MiB allocated, sparse)",
            t.elapsed().as_secs_f64(),
            out.display(),
            md.len() / MIB,
            md.blocks() * 512 / MIB
        );
        out
    })
}

/// (start, size) in bytes of the image's partitions, from `sfdisk --json`.
fn partitions(img: &Path) -> (serde_json::Value, Vec<(u64, u64)>) {
    let j: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", img.to_str().unwrap()])).unwrap();
    let parts = j["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect();
    (j, parts)
}

/// `debugfs -R CMD` on the ext4 filesystem at `offset` in the image.
fn debugfs(img: &Path, offset: u64, cmd: &str) -> String {
    let dev = format!("{}?offset={offset}", img.display());
    let o = Command::new("debugfs")
        .args(["-R", cmd, &dev])
        .output()
        .expect("run debugfs (apt install e2fsprogs)");
    // debugfs prints its banner on stderr and exits 0 even for a missing
    // file; callers check the text.
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The setup code on the image's boot partition, read the way `roomcast-host
/// flash` reads it (mtools' `mtype` at the first partition's offset): the
/// first line that is not a `#` comment.
fn setup_code(img: &Path) -> String {
    let (_, parts) = partitions(img);
    let fat = format!("{}@@{}", img.display(), parts[0].0);
    let text = tool("mtype", &["-i", &fat, "::roomcast-setup-code.txt"]);
    let code = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no setup code in roomcast-setup-code.txt:\n{text}"))
        .to_string();
    let groups: Vec<&str> = code.split('-').collect();
    assert!(
        groups.len() == 4
            && groups.iter().all(|g| g.len() == 4
                && g.bytes()
                    .all(|b| b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ".contains(&b))),
        "not a setup code: {code:?}"
    );
    code
}

fn debugfs_cat(img: &Path, offset: u64, path: &str) -> String {
    let out = debugfs(img, offset, &format!("cat {path}"));
    out.lines()
        .filter(|l| !l.starts_with("debugfs "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn image_build_and_outside_checks() {
    if !enabled("ROOMCAST_IMAGE_TEST") && std::env::var_os("ROOMCAST_IMAGE").is_none() {
        eprintln!(
            "skipped: set ROOMCAST_IMAGE_TEST=1 to build the SD image (about 10 minutes, root)"
        );
        return;
    }
    let img = image();
    let size = std::fs::metadata(img).unwrap().len();
    eprintln!("checking {} ({} MiB)", img.display(), size / MIB);

    // Partition table: MBR, FAT32 boot (bootable), two Linux partitions, in
    // order, 4 MiB aligned, inside the file.
    let (j, parts) = partitions(img);
    let t = &j["partitiontable"];
    assert_eq!(t["label"], "dos", "{j}");
    let p = t["partitions"].as_array().unwrap();
    assert_eq!(p.len(), 3, "{j}");
    assert_eq!(p[0]["type"], "c", "{j}");
    assert_eq!(p[0]["bootable"], true, "{j}");
    assert_eq!(
        (p[1]["type"].as_str(), p[2]["type"].as_str()),
        (Some("83"), Some("83"))
    );
    for w in parts.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "overlap: {parts:?}");
    }
    for (start, len) in &parts {
        assert_eq!(start % (4 * MIB), 0, "{parts:?}");
        assert_eq!(len % (4 * MIB), 0, "{parts:?}");
    }
    assert!(parts[2].0 + parts[2].1 <= size);
    let (boot, rootp, data) = (parts[0].0, parts[1].0, parts[2].0);

    // Boot partition (mtools straight from the image at its offset).
    let fat = format!("{}@@{boot}", img.display());
    let listing = tool("mdir", &["-b", "-i", &fat, "::"]);
    for f in [
        "bootcode.bin",
        "start4.elf",
        "fixup4.dat",
        "config.txt",
        "cmdline.txt",
        "vmlinuz",
        "initrd.img",
        "bcm2711-rpi-4-b.dtb",
        "bcm2711-rpi-cm4-io.dtb",
        "bcm2837-rpi-zero-2-w.dtb",
        "roomcast-setup-code.txt",
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.trim_start_matches("::/").eq_ignore_ascii_case(f)),
            "{f} missing from the boot partition:\n{listing}"
        );
    }
    eprintln!("setup code on the boot partition: {}", setup_code(img));
    let config = tool("mtype", &["-i", &fat, "::config.txt"]);
    for l in [
        "arm_64bit=1",
        "kernel=vmlinuz",
        "initramfs initrd.img followkernel",
        "gpu_mem=128",
    ] {
        assert!(
            config.lines().any(|x| x.trim() == l),
            "config.txt lacks {l}:\n{config}"
        );
    }
    let cmdline = tool("mtype", &["-i", &fat, "::cmdline.txt"]);
    assert!(
        cmdline.contains("root=LABEL=RC_ROOT") && cmdline.contains(" ro "),
        "{cmdline}"
    );
    assert_eq!(
        cmdline.trim().lines().count(),
        1,
        "cmdline.txt must be one line"
    );
    let fat_info = tool("minfo", &["-i", &fat, "::"]);
    assert!(fat_info.contains("RC_BOOT"), "{fat_info}");

    // Root filesystem (debugfs at the partition's offset).
    let sb = debugfs(img, rootp, "stats");
    assert!(sb.contains("Filesystem volume name:   RC_ROOT"), "{sb}");
    let stat = debugfs(img, rootp, "stat /usr/bin/roomcast");
    assert!(stat.contains("Mode:  0755"), "{stat}");
    let bin = std::fs::read(aarch64_bin()).ok();
    std::fs::create_dir_all(target_dir().join("image-test")).unwrap();
    let dumped = target_dir().join("image-test/roomcast.from-image");
    let _ = std::fs::remove_file(&dumped);
    debugfs(
        img,
        rootp,
        &format!("dump /usr/bin/roomcast {}", dumped.display()),
    );
    let from_image = std::fs::read(&dumped).expect("dump /usr/bin/roomcast");
    assert_eq!(&from_image[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([from_image[18], from_image[19]]),
        183,
        "not aarch64"
    );
    if std::env::var_os("ROOMCAST_IMAGE").is_none() {
        assert!(
            bin.as_deref() == Some(&from_image[..]),
            "the image's binary is not the one built"
        );
    }
    let unit = debugfs_cat(img, rootp, "/lib/systemd/system/roomcast.service");
    for l in [
        "Type=notify",
        "WatchdogSec=30s",
        "SupplementaryGroups=video gpio",
        "ExecStart=/usr/bin/roomcast --data-dir /var/lib/roomcast $ROOMCAST_ARGS",
        "StateDirectory=roomcast",
    ] {
        assert!(
            unit.lines().any(|x| x.trim() == l),
            "unit lacks {l}:\n{unit}"
        );
    }
    let wants = debugfs(
        img,
        rootp,
        "stat /etc/systemd/system/multi-user.target.wants/roomcast.service",
    );
    assert!(
        wants.contains("Type: symlink") && wants.contains("/lib/systemd/system/roomcast.service"),
        "{wants}"
    );
    for (link, target) in [
        (
            "/etc/systemd/system/multi-user.target.wants/roomcast-grow-data.service",
            "roomcast-grow-data.service",
        ),
        (
            "/etc/systemd/system/sysinit.target.wants/roomcast-hostname.service",
            "roomcast-hostname.service",
        ),
        ("/etc/systemd/system/systemd-firstboot.service", "/dev/null"),
    ] {
        let s = debugfs(img, rootp, &format!("stat {link}"));
        assert!(
            s.contains("Type: symlink") && s.contains(target),
            "{link}: {s}"
        );
    }
    let fstab = debugfs_cat(img, rootp, "/etc/fstab");
    assert!(
        fstab
            .lines()
            .any(|l| l.starts_with("LABEL=RC_ROOT") && l.contains(" ro,")),
        "{fstab}"
    );
    assert!(
        fstab.contains("LABEL=RC_DATA  /var/lib/roomcast  ext4   rw"),
        "{fstab}"
    );
    let passwd = debugfs_cat(img, rootp, "/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("roomcast:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );
    let group = debugfs_cat(img, rootp, "/etc/group");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("gpio:") && l.ends_with("roomcast")),
        "{group}"
    );
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("video:") && l.contains("roomcast")),
        "{group}"
    );
    let rule = debugfs_cat(img, rootp, "/etc/udev/rules.d/60-roomcast-gpio.rules");
    assert!(rule.contains("GROUP=\"gpio\""), "{rule}");
    let hostname_script = debugfs_cat(img, rootp, "/usr/lib/roomcast/roomcast-hostname");
    assert!(
        hostname_script.contains("serial-number"),
        "{hostname_script}"
    );
    // SSH: no server in the image.
    let sshd = debugfs(img, rootp, "stat /usr/sbin/sshd");
    assert!(
        sshd.contains("File not found"),
        "sshd is in the image: {sshd}"
    );
    assert_eq!(debugfs_cat(img, rootp, "/etc/machine-id").trim(), "");
    let kernels = debugfs(img, rootp, "ls /boot");
    assert!(
        kernels.contains("vmlinuz-") && kernels.contains("initrd.img-"),
        "{kernels}"
    );

    // Data partition: its own ext4, labelled, empty, small until first boot.
    let dsb = debugfs(img, data, "stats");
    assert!(dsb.contains("Filesystem volume name:   RC_DATA"), "{dsb}");
    assert!(parts[2].1 <= 128 * MIB, "{parts:?}");
    eprintln!(
        "partitions (MiB): boot {} at {}, root {} at {}, data {} at {}; image {} MiB",
        parts[0].1 / MIB,
        boot / MIB,
        parts[1].1 / MIB,
        rootp / MIB,
        parts[2].1 / MIB,
        data / MIB,
        size / MIB
    );
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn image_boots_under_qemu_and_serves_the_page() {
    if !enabled("ROOMCAST_BOOT_TEST") {
        eprintln!("skipped: set ROOMCAST_BOOT_TEST=1 (and ROOMCAST_IMAGE_TEST=1 or ROOMCAST_IMAGE=FILE) to boot the image under qemu-system-aarch64");
        return;
    }
    let img = image();
    let work = target_dir().join("image-test/boot");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // A copy, 512 MiB larger, as if written to a bigger card: the data
    // partition must grow to fill it on first boot.
    let disk = work.join("disk.img");
    tool(
        "cp",
        &[
            "--sparse=always",
            img.to_str().unwrap(),
            disk.to_str().unwrap(),
        ],
    );
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.set_len(f.metadata().unwrap().len() + 512 * MIB).unwrap();
    drop(f);
    // The kernel and initramfs from the image's boot partition.
    let (_, parts) = partitions(&disk);
    let fat = format!("{}@@{}", disk.display(), parts[0].0);
    for f in ["vmlinuz", "initrd.img"] {
        tool(
            "mcopy",
            &[
                "-n",
                "-i",
                &fat,
                &format!("::{f}"),
                work.join(f).to_str().unwrap(),
            ],
        );
    }
    let port = free_port();
    let console = work.join("console.log");
    let cmd_line = "console=ttyAMA0 root=LABEL=RC_ROOT rootfstype=ext4 ro rootwait net.ifnames=0";
    let mut qemu = Command::new("qemu-system-aarch64");
    qemu.args([
        "-M",
        "virt",
        "-cpu",
        "cortex-a72",
        "-smp",
        "2",
        "-m",
        "1024",
        "-nographic",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(work.join("vmlinuz"))
    .arg("-initrd")
    .arg(work.join("initrd.img"))
    .args(["-append", cmd_line])
    .arg("-drive")
    .arg(format!("file={},format=raw,if=virtio", disk.display()))
    .args([
        "-netdev",
        &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:8080"),
    ])
    .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .args(["-monitor", "none"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    eprintln!("{qemu:?}");
    let mut child = qemu
        .spawn()
        .expect("run qemu-system-aarch64 (apt install qemu-system-arm)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let t = Instant::now();
    let deadline = t + Duration::from_secs(
        std::env::var("ROOMCAST_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(900),
    );
    let mut page = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "qemu exited ({status}); console:\n{}",
                std::fs::read_to_string(&console).unwrap_or_default()
            );
        }
        if let Ok(r) = roomcast_e2e::http(port, "GET", "/", None) {
            if r.status == 200 && r.text().to_lowercase().contains("<html") {
                page = Some(r);
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let answered = t.elapsed().as_secs_f64();
    let mut child = Kill(child);
    // Give the console a moment for the last lines, then read it.
    std::thread::sleep(Duration::from_secs(3));
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let page = page.unwrap_or_else(|| {
        panic!("the web page did not answer through 127.0.0.1:{port} in time; console:\n{log}")
    });
    eprintln!(
        "web page answered {answered:.0} s after qemu started ({} bytes)",
        page.body.len()
    );
    let session = roomcast_e2e::http(port, "GET", "/api/session", None).unwrap();
    eprintln!("/api/session: {}", session.text());
    assert!(
        session.text().contains("\"setup_needed\":true"),
        "{}",
        session.text()
    );
    // First visit: without the setup code the password is refused; with the
    // code from the image's boot partition (which the daemon adopted) it is
    // set (written to the data partition). Then watch the daemon outlive
    // WatchdogSec=30s: systemd would kill and restart it (uptime back to 0)
    // if the WATCHDOG=1 pings did not arrive.
    let code = setup_code(&disk);
    let refused = roomcast_e2e::http(
        port,
        "POST",
        "/api/setup",
        Some("{\"password\":\"boot-test-password\"}"),
    )
    .unwrap();
    assert_eq!(refused.status, 401, "{}", refused.text());
    let setup = roomcast_e2e::http(
        port,
        "POST",
        "/api/setup",
        Some(&format!(
            "{{\"password\":\"boot-test-password\",\"setup_code\":\"{code}\"}}"
        )),
    )
    .unwrap();
    assert_eq!(setup.status, 200, "{}", setup.text());
    let cookie = setup
        .header("Set-Cookie")
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_string();
    let status = |child: &mut Kill| -> serde_json::Value {
        assert!(child.0.try_wait().unwrap().is_none(), "qemu exited");
        let r = roomcast_e2e::http_with(port, "GET", "/api/status", None, &[("Cookie", &cookie)])
            .expect("GET /api/status");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    let mut up = 0.0;
    let wd = Instant::now();
    while up < 45.0 && wd.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(5));
        let s = status(&mut child);
        let now = s["uptime_s"].as_f64().unwrap_or(0.0);
        assert!(
            now >= up,
            "the daemon restarted (uptime {up} -> {now}): watchdog?"
        );
        up = now;
    }
    let s = status(&mut child);
    eprintln!(
        "daemon uptime {:.0} s (> WatchdogSec=30s, no restart); board {}; frames encoded {}",
        up, s["board"], s["frames"]["encoded"]
    );
    assert!(up >= 45.0, "uptime only {up} s");
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let interesting: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("roomcast")
                || l.contains("FAILED")
                || l.contains("Reached target")
                || l.contains("Linux version")
                || l.contains("EXT4-fs (vda")
        })
        .collect();
    eprintln!("--- console excerpt ---\n{}\n---", interesting.join("\n"));
    assert!(
        log.contains("roomcast-hostname: this box is roomcast-"),
        "no hostname line:\n{log}"
    );
    // The journal reaches the console only when systemd forwards it; when
    // it does, the daemon said it adopted the installer's code.
    if log.contains("roomcast: setup code") {
        assert!(
            log.contains(&code),
            "the daemon printed another code:\n{log}"
        );
    }
    assert!(
        log.contains("roomcast-grow-data:") && log.contains("grew from"),
        "data partition did not grow:\n{log}"
    );
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("FAILED")).collect();
    assert!(failed.is_empty(), "units failed:\n{}", failed.join("\n"));
}
