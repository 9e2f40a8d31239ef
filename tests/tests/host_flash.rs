//! `roomcast-host flash IMAGE DEVICE` against a loop device (a file standing
//! in for an SD card, attached with losetup) and a plain file: the write is
//! verified by read-back, a device holding a mounted filesystem is refused
//! and left untouched, and so is a partition.
//!
//! Loop devices and mounting need root; where `losetup --find` fails (no
//! loop support in the kernel) the loop parts are skipped with a note and
//! only the plain-file target is tested.

use roomcast_e2e::host_bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn flash(image: &Path, device: &Path) -> Output {
    Command::new(host_bin())
        .arg("flash")
        .arg(image)
        .arg(device)
        .output()
        .expect("run roomcast-host flash")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Everything a test set up, undone when dropped (unmount, detach, delete).
struct Scratch {
    dir: PathBuf,
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("roomcast-flash-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch {
            dir,
            loops: vec![],
            mounts: vec![],
        }
    }

    /// A new loop device over a fresh `mib` MiB file, or None without loop
    /// support.
    fn loop_device(&mut self, name: &str, mib: u64, partscan: bool) -> Option<PathBuf> {
        let backing = self.dir.join(name);
        let f = std::fs::File::create(&backing).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        let mut args = vec!["--find", "--show"];
        if partscan {
            args.push("--partscan");
        }
        let b = backing.to_str().unwrap().to_string();
        args.push(&b);
        let dev = sh("losetup", &args)?;
        self.loops.push(dev.clone());
        Some(PathBuf::from(dev))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        for l in &self.loops {
            let _ = Command::new("losetup").args(["-d", l]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 12 MiB "image": data at both ends, zeros between.
fn make_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut data = vec![0u8; 12 << 20];
    let mut x: u32 = 0x1234_5678;
    for (i, b) in data.iter_mut().enumerate() {
        if !((1 << 20)..(11 << 20)).contains(&i) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    let p = dir.join("test.img");
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

fn read_prefix(dev: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut v = vec![0u8; n];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}

#[test]
fn flash_to_a_plain_file_verifies() {
    let s = Scratch::new("file");
    let (img, data) = make_image(&s.dir);
    let card = s.dir.join("card.bin");
    std::fs::write(&card, vec![0xffu8; 1 << 20]).unwrap();
    let o = flash(&img, &card);
    eprintln!("{}", text(&o));
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verified: 12582912 bytes, SHA-256"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("verifying"));
    assert_eq!(std::fs::read(&card).unwrap(), data);
    // The image onto itself, and a missing image: refused, exit 1.
    let o = flash(&img, &img);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the image itself"));
    let o = flash(&s.dir.join("missing.img"), &card);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn flash_to_a_loop_device_verifies_and_mounted_is_refused() {
    let mut s = Scratch::new("loop");
    let (img, data) = make_image(&s.dir);
    let Some(card) = s.loop_device("card", 16, false) else {
        eprintln!(
            "NOTE: losetup --find failed (no loop devices here); only the plain-file test ran"
        );
        return;
    };
    let o = flash(&img, &card);
    eprintln!("{}", text(&o));
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("verified: 12582912 bytes"), "{out}");
    assert!(
        out.contains("O_DIRECT"),
        "read-back must bypass the page cache: {out}"
    );
    assert_eq!(read_prefix(&card, data.len()), data);

    // Too small: a 8 MiB card for a 12 MiB image.
    let small = s.loop_device("small", 8, false).unwrap();
    let o = flash(&img, &small);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the image needs"),
        "{}",
        text(&o)
    );

    // A card with a mounted filesystem: refused, and still mounted and whole.
    let busy = s.loop_device("busy", 16, false).unwrap();
    let busy_s = busy.to_str().unwrap();
    assert!(
        sh("mkfs.ext4", &["-q", "-F", busy_s]).is_some(),
        "mkfs.ext4 {busy_s}"
    );
    let mnt = s.dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if sh("mount", &[busy_s, mnt.to_str().unwrap()]).is_none() {
        eprintln!(
            "NOTE: cannot mount here; the mounted-device refusal is covered by unit tests only"
        );
        return;
    }
    s.mounts.push(mnt.clone());
    std::fs::write(mnt.join("keep.txt"), b"still here").unwrap();
    let before = read_prefix(&busy, 1 << 20);
    let o = flash(&img, &busy);
    eprintln!("{}", text(&o));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing to write"), "{err}");
    assert!(
        err.contains(&format!("{busy_s} on {}", mnt.display())),
        "{err}"
    );
    assert_eq!(
        read_prefix(&busy, 1 << 20),
        before,
        "the mounted device was written"
    );
    assert_eq!(std::fs::read(mnt.join("keep.txt")).unwrap(), b"still here");
}

#[test]
fn flash_to_a_partition_is_refused() {
    let mut s = Scratch::new("part");
    let (img, _) = make_image(&s.dir);
    let Some(disk) = s.loop_device("disk", 32, true) else {
        eprintln!("NOTE: no loop devices; skipped");
        return;
    };
    let disk_s = disk.to_str().unwrap().to_string();
    let mut sfdisk = match Command::new("sfdisk")
        .args(["--quiet", &disk_s])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => {
            eprintln!("NOTE: sfdisk missing (apt install fdisk); skipped");
            return;
        }
    };
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, type=83\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    // Where the loop driver does not scan partitions itself, partx adds them.
    let _ = sh("partx", &["-a", &disk_s]);
    // The kernel lists the partition in sysfs; without udev there may be
    // no /dev node for it, so the test makes one.
    let name = format!("{}p1", disk.file_name().unwrap().to_string_lossy());
    let sys_dev = PathBuf::from(format!("/sys/class/block/{name}/dev"));
    for _ in 0..50 {
        if sys_dev.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let Ok(majmin) = std::fs::read_to_string(&sys_dev) else {
        eprintln!("NOTE: {name} did not appear (no partition scanning here); skipped");
        return;
    };
    let mut part = PathBuf::from(format!("/dev/{name}"));
    if !part.exists() {
        let (maj, min) = majmin.trim().split_once(':').unwrap();
        part = s.dir.join(&name);
        assert!(
            sh("mknod", &[part.to_str().unwrap(), "b", maj, min]).is_some(),
            "mknod {}",
            part.display()
        );
    }
    let o = flash(&img, &part);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("partition") && err.contains("give the whole card"),
        "{err}"
    );
}
