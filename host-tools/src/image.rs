//! `roomcast-host image build`: a bootable SD image made only from Debian
//! packages, without mounting anything and without loop devices.
//!
//! 1. `mmdebstrap --architectures=arm64` builds the root filesystem into a
//!    directory from Debian bookworm: systemd, the kernel
//!    (`linux-image-arm64`), the Raspberry Pi boot firmware
//!    (`raspi-firmware`) and the board profile's `[image] packages`. Maintainer
//!    scripts run through qemu-user-static's binfmt handler. Downloaded
//!    `.deb`s are kept in the cache directory between builds.
//! 2. Our files go in (the binary, `boards/files/*`: systemd units, udev
//!    rule, defaults; fstab, network, journald settings), the `roomcast`
//!    user and the `gpio` group are created, units enabled by symlink.
//! 3. Three filesystems are made from directories, no mount needed:
//!    `mkfs.vfat` + `mcopy` for the boot partition (firmware, kernel, initrd,
//!    device trees, `config.txt`, `cmdline.txt`, and the one-time setup code
//!    in `roomcast-setup-code.txt`), `mkfs.ext4 -d` for the
//!    read-only root, an empty ext4 for `/var/lib/roomcast`, the only
//!    writable partition (grown to the card on first boot).
//! 4. `sfdisk` writes the MBR partition table into the image file and the
//!    three filesystems are copied in place (sparse).
//!
//! The setup code is what claims the box: its web page sets the first admin
//! password only with it. The daemon adopts the boot partition's code on
//! first start; the build prints it at the end, and `flash` reads it back
//! from the image and prints it too.
//!
//! The root filesystem is mounted read-only on the box; `/tmp`, `/var/tmp`,
//! `/var/log` (volatile journal) and `/var/lib/systemd` are tmpfs. The
//! daemon's configuration lives on the data partition and is written
//! atomically by the daemon.

use crate::cli::ImageArgs;
use roomcast_media::setup_code;
/// The setup code's file on the boot partition, where the daemon looks for
/// it on first start.
pub use roomcast_media::setup_code::FILE_NAME as SETUP_CODE_FILE;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Debian release the image is built from.
pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Partition labels (the box's fstab and cmdline find them by label).
pub const BOOT_LABEL: &str = "RC_BOOT";
pub const ROOT_LABEL: &str = "RC_ROOT";
pub const DATA_LABEL: &str = "RC_DATA";
/// Sizes in MiB.
pub const ALIGN_MIB: u64 = 4;
pub const BOOT_MIB: u64 = 256;
pub const DATA_MIB: u64 = 64;
const MIB: u64 = 1 << 20;

/// Packages every image has, on top of the board's `[image] packages`.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "systemd-timesyncd",
    "systemd-resolved",
    "linux-image-arm64",
    "raspi-firmware",
    "initramfs-tools",
    "e2fsprogs",
    "fdisk",
    "kmod",
    "iproute2",
    "ca-certificates",
    // The daemon links libasound for sound capture.
    "libasound2",
];

/// Board profiles, built in (the same files the daemon uses).
const PROFILES: &[(&str, &str)] = &[
    ("pi4", include_str!("../../boards/pi4.toml")),
    ("cm4", include_str!("../../boards/cm4.toml")),
    ("pi-zero-2w", include_str!("../../boards/pi-zero-2w.toml")),
    ("pi5", include_str!("../../boards/pi5.toml")),
    (
        "generic-aarch64-uvc",
        include_str!("../../boards/generic-aarch64-uvc.toml"),
    ),
];

/// A file the image puts on the box: (path in the root, contents, mode).
pub const BOX_FILES: &[(&str, &str, u32)] = &[
    (
        "lib/systemd/system/roomcast.service",
        include_str!("../../boards/files/roomcast.service"),
        0o644,
    ),
    (
        "etc/default/roomcast",
        include_str!("../../boards/files/roomcast.default"),
        0o644,
    ),
    (
        "etc/udev/rules.d/60-roomcast-gpio.rules",
        include_str!("../../boards/files/roomcast-gpio.rules"),
        0o644,
    ),
    (
        "lib/systemd/system/roomcast-hostname.service",
        include_str!("../../boards/files/roomcast-hostname.service"),
        0o644,
    ),
    (
        "usr/lib/roomcast/roomcast-hostname",
        include_str!("../../boards/files/roomcast-hostname"),
        0o755,
    ),
    (
        "lib/systemd/system/roomcast-grow-data.service",
        include_str!("../../boards/files/roomcast-grow-data.service"),
        0o644,
    ),
    (
        "usr/lib/roomcast/roomcast-grow-data",
        include_str!("../../boards/files/roomcast-grow-data"),
        0o755,
    ),
    ("etc/fstab", FSTAB, 0o644),
    ("etc/hostname", "roomcast\n", 0o644),
    (
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    ),
    (
        "etc/systemd/network/10-roomcast-wired.network",
        WIRED_NETWORK,
        0o644,
    ),
    (
        "etc/systemd/journald.conf.d/roomcast.conf",
        "# Read-only root: the journal stays in RAM.\n[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
        0o644,
    ),
    (
        "etc/systemd/resolved.conf.d/roomcast.conf",
        "# roomcast announces itself by mDNS (its own responder, port 5353).\n[Resolve]\nMulticastDNS=no\nLLMNR=no\n",
        0o644,
    ),
    (
        "etc/systemd/system/systemd-networkd-wait-online.service.d/roomcast.conf",
        "# Start roomcast 20 s after boot at the latest, cable or not.\n[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=20\n",
        0o644,
    ),
    (
        "etc/initramfs-tools/conf.d/roomcast",
        "# The root is ext4, found by label at boot (the fsck hook cannot resolve\n# the label while the image is built).\nFSTYPE=ext4\n",
        0o644,
    ),
    ("etc/roomcast-image", "", 0o644),
];

/// `/etc/fstab`: read-only root, writable data partition, RAM for the rest.
pub const FSTAB: &str = "\
# roomcast SD image: the root filesystem is read-only; the daemon's data
# (configuration, password, tokens) is on its own partition.
LABEL=RC_ROOT  /                  ext4   ro,noatime,errors=remount-ro            0 1
LABEL=RC_BOOT  /boot/firmware     vfat   ro,noatime,nofail,umask=0022            0 0
LABEL=RC_DATA  /var/lib/roomcast  ext4   rw,noatime,nosuid,nodev,commit=5        0 2
tmpfs          /tmp               tmpfs  mode=1777,nosuid,nodev,size=64M         0 0
tmpfs          /var/tmp           tmpfs  mode=1777,nosuid,nodev,size=16M         0 0
tmpfs          /var/log           tmpfs  mode=0755,nosuid,nodev,size=32M         0 0
tmpfs          /var/lib/systemd   tmpfs  mode=0755,nosuid,nodev,size=8M          0 0
";

/// DHCP on any wired interface; the client id is the MAC, so the box keeps
/// its lease although its machine id is new every boot (read-only root).
pub const WIRED_NETWORK: &str = "\
[Match]
Name=eth* en*

[Network]
DHCP=yes
IPv6AcceptRA=yes

[DHCPv4]
ClientIdentifier=mac
";

/// Units enabled in the image: (unit, target whose `.wants` links it).
pub const ENABLE: &[(&str, &str)] = &[
    ("roomcast.service", "multi-user.target"),
    ("roomcast-grow-data.service", "multi-user.target"),
    ("roomcast-hostname.service", "sysinit.target"),
    ("systemd-networkd.service", "multi-user.target"),
    (
        "systemd-networkd-wait-online.service",
        "network-online.target",
    ),
    ("systemd-resolved.service", "multi-user.target"),
    ("systemd-timesyncd.service", "sysinit.target"),
];

/// Units masked: first-boot prompts (every boot looks like the first with a
/// read-only /etc/machine-id), and what a read-only root cannot do.
pub const MASK: &[&str] = &[
    "systemd-firstboot.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "ssh.service",
];

/// update-initramfs, and where it waits while packages are installed.
const UPDATE_INITRAMFS: &str = "/usr/sbin/update-initramfs";
const DIVERTED: &str = "/usr/sbin/update-initramfs.roomcast";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("missing host tools: {0}; on Debian: apt-get install {1}")]
    MissingTools(String, String),
    #[error("image build needs root (mmdebstrap, chroot and file ownership in the image); run it with sudo")]
    NotRoot,
    #[error("this host cannot run arm64 programs: no qemu-aarch64 binfmt handler in /proc/sys/fs/binfmt_misc; apt-get install qemu-user-static binfmt-support (and mount binfmt_misc: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)")]
    NoBinfmt,
    #[error("the roomcast binary {path}: {reason}")]
    Binary { path: PathBuf, reason: String },
    #[error("board {0}")]
    Board(String),
    #[error("{step} failed ({status}): {detail}")]
    Step {
        step: String,
        status: String,
        detail: String,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// The parts of a board profile the image needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub name: String,
    pub rust_target: String,
    pub packages: Vec<String>,
    pub config_txt: Vec<String>,
}

impl Board {
    /// The built-in profile `name` (`pi4`, `cm4`, `pi-zero-2w`).
    pub fn load(name: &str) -> Result<Board, ImageError> {
        let text = PROFILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| ImageError::Board(format!("{name:?} has no profile in boards/")))?;
        let t: toml::Table = toml::from_str(text)
            .map_err(|e| ImageError::Board(format!("{name}: bad profile: {e}")))?;
        let strings = |table: &str, key: &str| -> Vec<String> {
            t.get(table)
                .and_then(|v| v.get(key))
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let rust_target = t
            .get("build")
            .and_then(|b| b.get("rust_target"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let board = Board {
            name: name.to_string(),
            rust_target,
            packages: strings("image", "packages"),
            config_txt: strings("image", "config_txt"),
        };
        match name {
            "pi5" => Err(ImageError::Board(
                "pi5: Debian bookworm's kernel (6.1) does not boot a Raspberry Pi 5; build for pi4, cm4 or pi-zero-2w".into(),
            )),
            "generic-aarch64-uvc" => Err(ImageError::Board(
                "generic-aarch64-uvc: no SD image (each board boots differently); install the .deb-less binary and boards/files/ by hand".into(),
            )),
            _ if board.rust_target != "aarch64-unknown-linux-gnu" => Err(ImageError::Board(format!(
                "{name}: images are arm64 only, the profile says {}",
                board.rust_target
            ))),
            _ => Ok(board),
        }
    }
}

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub board: Board,
    pub out: PathBuf,
    pub binary: PathBuf,
    pub cache: PathBuf,
    pub work: PathBuf,
    pub mirror: String,
}

/// The binary `tests/cross.sh aarch64` builds, from the workspace root.
pub const DEFAULT_BINARY: &str = "target/cross/aarch64-unknown-linux-gnu/release/roomcast";
pub const DEFAULT_CACHE: &str = "/var/cache/roomcast-image";

impl BuildOptions {
    pub fn from_args(a: &ImageArgs) -> Result<BuildOptions, ImageError> {
        let board = Board::load(&a.board)?;
        let binary = match &a.binary {
            Some(b) => b.clone(),
            None => default_binary(),
        };
        let out = a.out.clone();
        let work = a.work.clone().unwrap_or_else(|| {
            let parent = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let stem = out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            parent.join(format!(".{stem}.work"))
        });
        Ok(BuildOptions {
            board,
            out,
            binary,
            cache: a
                .cache
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE)),
            work,
            mirror: a.mirror.clone().unwrap_or_else(|| MIRROR.to_string()),
        })
    }
}

/// `DEFAULT_BINARY` under the current directory or, when run from inside
/// the workspace, under its root.
fn default_binary() -> PathBuf {
    let here = PathBuf::from(DEFAULT_BINARY);
    if here.exists() {
        return here;
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEFAULT_BINARY);
    if ws.exists() {
        return ws;
    }
    here
}

/// Where each partition goes, in bytes from the start of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub boot: (u64, u64),
    pub root: (u64, u64),
    pub data: (u64, u64),
    pub total: u64,
}

/// Partitions after a 4 MiB gap, each a multiple of 4 MiB.
pub fn layout(boot: u64, root: u64, data: u64) -> Layout {
    let a = ALIGN_MIB * MIB;
    let up = |n: u64| n.div_ceil(a) * a;
    let boot = (a, up(boot));
    let root = (boot.0 + boot.1, up(root));
    let data = (root.0 + root.1, up(data));
    Layout {
        boot,
        root,
        data,
        total: data.0 + data.1,
    }
}

/// The `sfdisk` script for `l`: MBR, FAT32 (LBA) boot partition, two Linux
/// partitions.
pub fn sfdisk_script(l: &Layout, disk_id: u32) -> String {
    let s = |x: u64| x / 512;
    format!(
        "label: dos\nlabel-id: 0x{disk_id:08x}\nunit: sectors\n\n\
         start={}, size={}, type=c, bootable\n\
         start={}, size={}, type=83\n\
         start={}, size={}, type=83\n",
        s(l.boot.0),
        s(l.boot.1),
        s(l.root.0),
        s(l.root.1),
        s(l.data.0),
        s(l.data.1)
    )
}

/// The Raspberry Pi firmware's `config.txt`.
pub fn config_txt(board: &Board, kernel: &str, initrd: &str) -> String {
    let mut s = format!(
        "# roomcast SD image for {}, written by roomcast-host image build.\n\
         # The firmware loads Debian's arm64 kernel and initramfs.\n\
         [all]\n\
         arm_64bit=1\n\
         enable_uart=1\n\
         upstream_kernel=1\n\
         kernel={kernel}\n\
         initramfs {initrd} followkernel\n\
         disable_overscan=1\n\
         # Debian's kernel has the CM4 device tree for the IO board only.\n\
         [cm4]\n\
         device_tree=bcm2711-rpi-cm4-io.dtb\n\
         [all]\n\
         # From boards/{}.toml [image] config_txt:\n",
        board.name, board.name
    );
    for l in &board.config_txt {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The kernel command line (`cmdline.txt`).
pub fn cmdline_txt() -> String {
    format!(
        "console=tty0 console=ttyS1,115200 root=LABEL={ROOT_LABEL} rootfstype=ext4 ro fsck.repair=yes rootwait net.ifnames=0\n"
    )
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Report {
    pub image: PathBuf,
    pub size: u64,
    /// Bytes actually allocated (the file is sparse).
    pub allocated: u64,
    pub seconds: f64,
    pub layout: Layout,
    /// The one-time setup code on the boot partition.
    pub setup_code: String,
}

/// Host tools and the Debian packages that have them.
pub const HOST_TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("sfdisk", "fdisk"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("mkfs.ext4", "e2fsprogs"),
    ("chroot", "coreutils"),
];

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The tools from [`HOST_TOOLS`] that are missing, and their packages.
pub fn missing_tools(have: impl Fn(&str) -> bool) -> Option<(String, String)> {
    let missing: Vec<&(&str, &str)> = HOST_TOOLS.iter().filter(|(t, _)| !have(t)).collect();
    if missing.is_empty() {
        return None;
    }
    let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    Some((tools.join(", "), pkgs.join(" ")))
}

/// Checks the binary is an aarch64 Linux ELF executable.
pub fn check_binary(path: &Path) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::Binary {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 20];
    let mut f = fs::File::open(path).map_err(|e| {
        bad(format!(
            "{e}; build it first: tests/cross.sh aarch64 (or pass --binary PATH)"
        ))
    })?;
    f.read_exact(&mut head)
        .map_err(|_| bad("too short to be a program".into()))?;
    if &head[..4] != b"\x7fELF" {
        return Err(bad("not an ELF program".into()));
    }
    // ELFCLASS64, little-endian, e_machine EM_AARCH64 (183).
    if head[4] != 2 || head[5] != 1 || u16::from_le_bytes([head[18], head[19]]) != 183 {
        return Err(bad(
            "not an aarch64 (arm64) program; build it with tests/cross.sh aarch64".into(),
        ));
    }
    Ok(())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn binfmt_ok() -> bool {
    if std::env::consts::ARCH == "aarch64" {
        return true;
    }
    fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .map(|s| s.lines().next() == Some("enabled"))
        .unwrap_or(false)
}

/// Runs `cmd`, its output appended to `log`; on failure the last lines of
/// the log are the error's detail.
fn run(step: &str, cmd: &mut Command, log: &Path) -> Result<(), ImageError> {
    let logf = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("open {}", log.display())))?;
    let errf = logf
        .try_clone()
        .map_err(io_err(format!("open {}", log.display())))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(errf)
        .status()
        .map_err(io_err(format!("run {step}")))?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(6).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(ImageError::Step {
        step: step.to_string(),
        status: status.to_string(),
        detail: format!("{} (full log: {})", tail.join(" | "), log.display()),
    })
}

/// Runs `cmd` with `input` on stdin.
fn run_with_input(
    step: &str,
    cmd: &mut Command,
    input: &str,
    log: &Path,
) -> Result<(), ImageError> {
    let logf = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("open {}", log.display())))?;
    let errf = logf
        .try_clone()
        .map_err(io_err(format!("open {}", log.display())))?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(logf)
        .stderr(errf)
        .spawn()
        .map_err(io_err(format!("run {step}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(io_err(format!("write to {step}")))?;
    }
    let status = child.wait().map_err(io_err(format!("wait for {step}")))?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    Err(ImageError::Step {
        step: step.to_string(),
        status: status.to_string(),
        detail: text.lines().rev().take(4).collect::<Vec<_>>().join(" | "),
    })
}

/// Bytes used by a directory tree (`du`, in 1 KiB blocks).
fn du_bytes(dir: &Path) -> Result<u64, ImageError> {
    let out = Command::new("du")
        .arg("-s")
        .arg("-k")
        .arg("-x")
        .arg(dir)
        .output()
        .map_err(io_err("run du"))?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| k * 1024)
        .ok_or_else(|| ImageError::Step {
            step: "du".into(),
            status: out.status.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
}

/// Prints a step's name, runs it and prints how long it took.
fn timed<T>(
    out: &mut dyn Write,
    name: &str,
    f: impl FnOnce() -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let _ = writeln!(out, "== {name}");
    let _ = out.flush();
    let t = Instant::now();
    let r = f()?;
    let _ = writeln!(out, "   {:.1} s", t.elapsed().as_secs_f64());
    Ok(r)
}

fn write_file(root: &Path, rel: &str, contents: &[u8], mode: u32) -> Result<(), ImageError> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
    }
    // A symlink (e.g. a Debian default) is replaced, not followed.
    let _ = fs::remove_file(&p);
    fs::write(&p, contents).map_err(io_err(format!("write {}", p.display())))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("chmod {}", p.display())))
}

fn link(root: &Path, rel: &str, target: &str) -> Result<(), ImageError> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
    }
    let _ = fs::remove_file(&p);
    symlink(target, &p).map_err(io_err(format!("link {}", p.display())))
}

/// The newest `PREFIX*` file name in `dir` (e.g. `vmlinuz-6.1.0-26-arm64`).
fn newest(dir: &Path, prefix: &str) -> Option<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && !n.ends_with(".new") && !n.ends_with(".bak"))
        .collect();
    v.sort();
    v.pop()
}

/// Copies `src` into the image file at `offset`, skipping zero blocks so
/// the image stays sparse.
fn copy_into(src: &Path, dst: &mut fs::File, offset: u64) -> Result<(), ImageError> {
    let mut f = fs::File::open(src).map_err(io_err(format!("open {}", src.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = offset;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = f
                .read(&mut buf[n..])
                .map_err(io_err(format!("read {}", src.display())))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(pos))
                .and_then(|_| dst.write_all(&buf[..n]))
                .map_err(io_err("write the image"))?;
        }
        pos += n as u64;
    }
    Ok(())
}

/// A fresh setup code (format in `roomcast_media::setup_code`) from the
/// kernel's random source (`/dev/urandom`).
pub fn new_setup_code() -> io::Result<String> {
    let mut b = [0u8; setup_code::LEN];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(setup_code::from_random(&b))
}

pub use setup_code::{file_text as setup_code_file, parse_file as parse_setup_code};

/// A random 32-bit MBR disk identifier.
fn disk_id() -> u32 {
    let mut b = [0u8; 4];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(0x5eed);
        b = t.to_le_bytes();
    }
    u32::from_le_bytes(b)
}

/// Builds the image (see the module documentation). Progress goes to `out`.
pub fn build(o: &BuildOptions, out: &mut dyn Write) -> Result<Report, ImageError> {
    let t0 = Instant::now();
    // --- preflight: everything that can be checked before minutes of work.
    if let Some((tools, pkgs)) = missing_tools(|t| which(t).is_some()) {
        return Err(ImageError::MissingTools(tools, pkgs));
    }
    if !is_root() {
        return Err(ImageError::NotRoot);
    }
    if !binfmt_ok() {
        return Err(ImageError::NoBinfmt);
    }
    check_binary(&o.binary)?;
    let setup_code = new_setup_code().map_err(io_err("read /dev/urandom for the setup code"))?;
    let work = &o.work;
    let rootfs = work.join("rootfs");
    let bootfs = work.join("bootfs");
    let log = work.join("build.log");
    // ROOMCAST_IMAGE_REUSE_ROOTFS=1 (development): keep the root filesystem
    // a previous run left in the work directory and skip mmdebstrap.
    let reuse = std::env::var_os("ROOMCAST_IMAGE_REUSE_ROOTFS").is_some() && rootfs.is_dir();
    if !reuse {
        for d in [&rootfs, &bootfs] {
            if d.exists() {
                fs::remove_dir_all(d).map_err(io_err(format!("clean {}", d.display())))?;
            }
        }
    }
    fs::create_dir_all(work).map_err(io_err(format!("create {}", work.display())))?;
    let _ = fs::remove_file(&log);
    let debs = o.cache.join("debs");
    fs::create_dir_all(&debs).map_err(io_err(format!("create {}", debs.display())))?;
    let _ = writeln!(
        out,
        "building {} for {} from Debian {SUITE} (arm64); log: {}",
        o.out.display(),
        o.board.name,
        log.display()
    );

    // --- 1. root filesystem from Debian packages.
    let mut packages: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    for p in &o.board.packages {
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }
    if reuse {
        let _ = writeln!(
            out,
            "== reusing {} (ROOMCAST_IMAGE_REUSE_ROOTFS)",
            rootfs.display()
        );
    }
    let mmdebstrap = || {
        let security = if o.mirror == MIRROR {
            SECURITY_MIRROR.to_string()
        } else {
            format!("{}-security", o.mirror.trim_end_matches('/'))
        };
        let comps = "main non-free-firmware";
        let mut cmd = Command::new("mmdebstrap");
        cmd.arg("--mode=root")
            .arg("--architectures=arm64")
            .arg("--variant=apt")
            .arg(format!("--include={}", packages.join(",")))
            .arg("--dpkgopt=force-unsafe-io")
            .arg("--dpkgopt=path-exclude=/usr/share/man/*")
            .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
            .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
            .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
            .arg("--aptopt=Acquire::Languages \"none\"")
            .arg("--aptopt=APT::Install-Recommends \"false\"")
            // The kernel and initramfs-tools would each build the initramfs
            // under qemu (minutes each): a dummy update-initramfs until
            // everything is installed, then one real run (customize).
            .arg(format!(
                "--essential-hook=chroot \"$1\" dpkg-divert --quiet --local --rename --divert {DIVERTED} --add {UPDATE_INITRAMFS} && ln -sf /bin/true \"$1\"{UPDATE_INITRAMFS}"
            ))
            // Keep the .debs between builds: copy them in before apt
            // downloads, and the new ones out before mmdebstrap cleans up
            // (keeping the essential ones too, as mmdebstrap(1) shows).
            .arg("--skip=essential/unlink")
            .arg("--skip=download/empty")
            .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives")
            .arg(format!(
                "--setup-hook=sync-in {} /var/cache/apt/archives",
                debs.display()
            ))
            .arg(format!(
                "--customize-hook=sync-out /var/cache/apt/archives {}",
                debs.display()
            ))
            .arg(SUITE)
            .arg(&rootfs)
            .arg(format!("deb {} {SUITE} {comps}", o.mirror))
            .arg(format!("deb {} {SUITE}-updates {comps}", o.mirror))
            .arg(format!("deb {security} {SUITE}-security {comps}"));
        run("mmdebstrap", &mut cmd, &log)
    };
    if !reuse {
        timed(
            out,
            "mmdebstrap: Debian packages into a directory",
            mmdebstrap,
        )?;
    }

    // --- 2. our files, user, units.
    let (kernel, initrd) = timed(out, "roomcast files, user, units", || {
        customize(o, &rootfs, &log)
    })?;

    // --- 3. boot partition contents.
    timed(
        out,
        "boot files: firmware, kernel, initrd, device trees",
        || boot_files(o, &rootfs, &bootfs, &kernel, &initrd, &setup_code),
    )?;

    // --- 4. filesystems from directories, and the disk.
    let root_img = work.join("root.ext4");
    let boot_img = work.join("boot.vfat");
    let data_img = work.join("data.ext4");
    let root_used = du_bytes(&rootfs)?;
    // Room for ext4's metadata and a little slack (the root is read-only).
    let root_size =
        (root_used + root_used / 5 + 64 * MIB).div_ceil(ALIGN_MIB * MIB) * ALIGN_MIB * MIB;
    let l = layout(BOOT_MIB * MIB, root_size, DATA_MIB * MIB);
    timed(
        out,
        "filesystems: vfat (mcopy), ext4 (mkfs.ext4 -d)",
        || {
            for p in [&root_img, &boot_img, &data_img] {
                let _ = fs::remove_file(p);
            }
            run(
                "mkfs.vfat",
                Command::new("mkfs.vfat")
                    .args(["-F", "32", "-n", BOOT_LABEL, "-C"])
                    .arg(&boot_img)
                    .arg((l.boot.1 / 1024).to_string()),
                &log,
            )?;
            let mut entries: Vec<PathBuf> = fs::read_dir(&bootfs)
                .map_err(io_err(format!("read {}", bootfs.display())))?
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            let mut mcopy = Command::new("mcopy");
            mcopy
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-s")
                .arg("-p")
                .arg("-i")
                .arg(&boot_img);
            mcopy.args(&entries).arg("::");
            run("mcopy", &mut mcopy, &log)?;
            for (img, label, size, dir) in [
                (&root_img, ROOT_LABEL, l.root.1, Some(&rootfs)),
                (&data_img, DATA_LABEL, l.data.1, None),
            ] {
                let mut cmd = Command::new("mkfs.ext4");
                cmd.args(["-q", "-F", "-L", label, "-m", "0", "-E", "root_owner=0:0"]);
                if let Some(d) = dir {
                    cmd.arg("-d").arg(d);
                }
                cmd.arg(img).arg(format!("{}k", size / 1024));
                run("mkfs.ext4", &mut cmd, &log)?;
            }
            Ok(())
        },
    )?;

    let tmp = o.out.with_extension("img.partial");
    timed(
        out,
        "disk: sfdisk partition table, partitions copied in",
        || {
            let _ = fs::remove_file(&tmp);
            let mut f =
                fs::File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
            f.set_len(l.total)
                .map_err(io_err(format!("size {}", tmp.display())))?;
            run_with_input(
                "sfdisk",
                Command::new("sfdisk")
                    .arg("--quiet")
                    .arg("--no-reread")
                    .arg("--no-tell-kernel")
                    .arg(&tmp),
                &sfdisk_script(&l, disk_id()),
                &log,
            )?;
            copy_into(&boot_img, &mut f, l.boot.0)?;
            copy_into(&root_img, &mut f, l.root.0)?;
            copy_into(&data_img, &mut f, l.data.0)?;
            f.sync_all().map_err(io_err("sync the image"))?;
            fs::rename(&tmp, &o.out).map_err(io_err(format!("rename to {}", o.out.display())))
        },
    )?;
    for p in [&root_img, &boot_img, &data_img] {
        let _ = fs::remove_file(p);
    }
    // The root filesystem tree is hundreds of MB; keep it only for
    // ROOMCAST_IMAGE_REUSE_ROOTFS (development).
    if std::env::var_os("ROOMCAST_IMAGE_REUSE_ROOTFS").is_none() {
        let _ = fs::remove_dir_all(&rootfs);
        let _ = fs::remove_dir_all(&bootfs);
        let _ = fs::remove_file(&log);
        // Only when empty: a --work directory may hold other things.
        let _ = fs::remove_dir(work);
    }
    let md = fs::metadata(&o.out).map_err(io_err(format!("stat {}", o.out.display())))?;
    use std::os::unix::fs::MetadataExt;
    let _ = writeln!(
        out,
        "partitions: boot {} MiB (vfat {BOOT_LABEL}), root {} MiB (ext4 {ROOT_LABEL}, {} MiB used), data {} MiB (ext4 {DATA_LABEL}, grows on first boot)",
        l.boot.1 / MIB,
        l.root.1 / MIB,
        root_used / MIB,
        l.data.1 / MIB
    );
    let _ = writeln!(
        out,
        "setup code for the first admin password: {setup_code} (also in {SETUP_CODE_FILE} on the boot partition; the box's web page asks for it on first start)"
    );
    Ok(Report {
        image: o.out.clone(),
        size: md.len(),
        allocated: md.blocks() * 512,
        seconds: t0.elapsed().as_secs_f64(),
        layout: l,
        setup_code,
    })
}

/// Step 2: files, user, units. Returns the kernel and initrd file names in
/// `/boot`.
fn customize(o: &BuildOptions, root: &Path, log: &Path) -> Result<(String, String), ImageError> {
    let bin = fs::read(&o.binary).map_err(io_err(format!("read {}", o.binary.display())))?;
    write_file(root, "usr/bin/roomcast", &bin, 0o755)?;
    for (rel, text, mode) in BOX_FILES {
        write_file(root, rel, text.as_bytes(), *mode)?;
    }
    let stamp = format!(
        "board={}\nsuite={SUITE}\nbuilt_by=roomcast-host {}\n",
        o.board.name,
        env!("CARGO_PKG_VERSION")
    );
    write_file(root, "etc/roomcast-image", stamp.as_bytes(), 0o644)?;
    // The user and groups, with the image's own tools (through qemu).
    let chroot = |args: &[&str]| -> Result<(), ImageError> {
        run(
            &format!("chroot {}", args.join(" ")),
            Command::new("chroot").arg(root).args(args),
            log,
        )
    };
    let group = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    if !group.lines().any(|l| l.starts_with("gpio:")) {
        chroot(&["/usr/sbin/groupadd", "--system", "gpio"])?;
    }
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("roomcast:")) {
        chroot(&[
            "/usr/sbin/useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/var/lib/roomcast",
            "--shell",
            "/usr/sbin/nologin",
            "--groups",
            "video,gpio",
            "roomcast",
        ])?;
    }
    for (unit, target) in ENABLE {
        let dir = "lib/systemd/system";
        if !root.join(dir).join(unit).exists() {
            return Err(ImageError::Step {
                step: format!("enable {unit}"),
                status: "missing".into(),
                detail: format!("/{dir}/{unit} is not in the image"),
            });
        }
        link(
            root,
            &format!("etc/systemd/system/{target}.wants/{unit}"),
            &format!("/{dir}/{unit}"),
        )?;
    }
    for unit in MASK {
        link(root, &format!("etc/systemd/system/{unit}"), "/dev/null")?;
    }
    // Read-only root: an empty machine-id makes systemd use a fresh one in
    // RAM each boot; resolv.conf points at resolved's stub.
    write_file(root, "etc/machine-id", b"", 0o444)?;
    let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
    link(
        root,
        "etc/resolv.conf",
        "../run/systemd/resolve/stub-resolv.conf",
    )?;
    // Mount points of the other partitions and tmpfs.
    for d in [
        "boot/firmware",
        "var/lib/roomcast",
        "var/lib/systemd",
        "var/log",
        "var/tmp",
        "tmp",
    ] {
        fs::create_dir_all(root.join(d)).map_err(io_err(format!("create /{d}")))?;
    }
    // No SSH server is installed; no password logins: root stays locked.
    let boot = root.join("boot");
    let kernel = newest(&boot, "vmlinuz-").ok_or_else(|| ImageError::Step {
        step: "kernel".into(),
        status: "missing".into(),
        detail: "no /boot/vmlinuz-* in the image (linux-image-arm64)".into(),
    })?;
    // The one initramfs build (see the essential hook), now that fstab and
    // everything else is in place.
    let version = kernel.trim_start_matches("vmlinuz-").to_string();
    let dummy = root.join(UPDATE_INITRAMFS.trim_start_matches('/'));
    if fs::symlink_metadata(&dummy).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&dummy).map_err(io_err(format!("remove {}", dummy.display())))?;
        chroot(&[
            "dpkg-divert",
            "--quiet",
            "--local",
            "--rename",
            "--remove",
            UPDATE_INITRAMFS,
        ])?;
        for stale in fs::read_dir(&boot).map_err(io_err("read /boot"))?.flatten() {
            if stale
                .file_name()
                .to_string_lossy()
                .starts_with("initrd.img-")
            {
                let _ = fs::remove_file(stale.path());
            }
        }
    }
    if newest(&boot, "initrd.img-").is_none() {
        // INITRAMFS_TOOLS_KERNEL_HOOK: raspi-firmware's hook leaves
        // /boot/firmware alone (boot_files fills the boot partition).
        run(
            "update-initramfs (under qemu)",
            Command::new("chroot")
                .arg(root)
                .args(["update-initramfs", "-c", "-k", &version])
                .env("INITRAMFS_TOOLS_KERNEL_HOOK", "1"),
            log,
        )?;
    }
    let initrd = newest(&boot, "initrd.img-").ok_or_else(|| ImageError::Step {
        step: "initramfs".into(),
        status: "missing".into(),
        detail: "no /boot/initrd.img-* in the image (initramfs-tools)".into(),
    })?;
    Ok((kernel, initrd))
}

/// Step 3: the boot partition's files into `bootfs`: raspi-firmware's
/// blobs, the kernel, the initrd, the Pi device trees, config.txt,
/// cmdline.txt and the setup code. `/boot/firmware` in the root stays an
/// empty mount point.
fn boot_files(
    o: &BuildOptions,
    root: &Path,
    bootfs: &Path,
    kernel: &str,
    initrd: &str,
    setup_code: &str,
) -> Result<(), ImageError> {
    let fw = root.join("boot/firmware");
    fs::create_dir_all(bootfs).map_err(io_err(format!("create {}", bootfs.display())))?;
    for e in fs::read_dir(&fw)
        .map_err(io_err(format!("read {}", fw.display())))?
        .flatten()
    {
        let dst = bootfs.join(e.file_name());
        fs::rename(e.path(), &dst).map_err(io_err(format!("move {}", e.path().display())))?;
    }
    if !bootfs.join("start4.elf").exists() || !bootfs.join("bootcode.bin").exists() {
        return Err(ImageError::Step {
            step: "boot files".into(),
            status: "missing".into(),
            detail: "raspi-firmware left no start4.elf/bootcode.bin in /boot/firmware".into(),
        });
    }
    let copy = |src: PathBuf, name: &str| -> Result<(), ImageError> {
        fs::copy(&src, bootfs.join(name))
            .map(|_| ())
            .map_err(io_err(format!("copy {}", src.display())))
    };
    // Our own names, whatever raspi-firmware's hooks chose; its copies go.
    for stale in [kernel, initrd] {
        let _ = fs::remove_file(bootfs.join(stale));
    }
    copy(root.join("boot").join(kernel), "vmlinuz")?;
    copy(root.join("boot").join(initrd), "initrd.img")?;
    let version = kernel.trim_start_matches("vmlinuz-");
    let dtbs = root
        .join("usr/lib")
        .join(format!("linux-image-{version}"))
        .join("broadcom");
    let mut n = 0;
    for e in fs::read_dir(&dtbs)
        .map_err(io_err(format!("read {}", dtbs.display())))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        // bcm2711 (Pi 4, 400, CM4), bcm2837 (Pi 3, Zero 2 W): upstream names,
        // which the firmware looks for with upstream_kernel=1.
        if name.starts_with("bcm2") && name.ends_with(".dtb") {
            copy(e.path(), &name)?;
            n += 1;
        }
    }
    if n == 0 {
        return Err(ImageError::Step {
            step: "device trees".into(),
            status: "missing".into(),
            detail: format!("no bcm2*.dtb in {}", dtbs.display()),
        });
    }
    write_file(
        bootfs,
        "config.txt",
        config_txt(&o.board, "vmlinuz", "initrd.img").as_bytes(),
        0o644,
    )?;
    write_file(bootfs, "cmdline.txt", cmdline_txt().as_bytes(), 0o644)?;
    write_file(
        bootfs,
        SETUP_CODE_FILE,
        setup_code_file(setup_code).as_bytes(),
        0o644,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_load_and_pi5_is_refused() {
        let b = Board::load("pi4").unwrap();
        assert_eq!(b.rust_target, "aarch64-unknown-linux-gnu");
        assert!(b.packages.contains(&"gpiod".to_string()));
        assert!(b.config_txt.contains(&"gpu_mem=128".to_string()));
        assert!(Board::load("cm4").is_ok());
        assert!(Board::load("pi-zero-2w").is_ok());
        assert!(Board::load("pi5")
            .unwrap_err()
            .to_string()
            .contains("does not boot"));
        assert!(Board::load("pi3").is_err());
    }

    #[test]
    fn layout_is_aligned_and_ordered() {
        let l = layout(256 * MIB, 700 * MIB + 1, 64 * MIB);
        assert_eq!(l.boot, (4 * MIB, 256 * MIB));
        assert_eq!(l.root, (260 * MIB, 704 * MIB));
        assert_eq!(l.data, (964 * MIB, 64 * MIB));
        assert_eq!(l.total, 1028 * MIB);
        let s = sfdisk_script(&l, 0x1234abcd);
        assert!(s.contains("label-id: 0x1234abcd"));
        assert!(s.contains("start=8192, size=524288, type=c, bootable"));
        assert!(s.contains("start=532480, size=1441792, type=83"));
        assert!(s.contains("start=1974272, size=131072, type=83"));
    }

    #[test]
    fn boot_config_names_kernel_and_board_lines() {
        let b = Board::load("pi4").unwrap();
        let c = config_txt(&b, "vmlinuz", "initrd.img");
        assert!(c.contains("arm_64bit=1\n"));
        assert!(c.contains("kernel=vmlinuz\n"));
        assert!(c.contains("initramfs initrd.img followkernel\n"));
        assert!(c.ends_with("gpu_mem=128\n"));
        assert!(cmdline_txt().contains("root=LABEL=RC_ROOT"));
        assert!(cmdline_txt().contains(" ro "));
    }

    #[test]
    fn fstab_and_units_fit_together() {
        assert!(FSTAB.contains("LABEL=RC_DATA  /var/lib/roomcast"));
        assert!(FSTAB
            .lines()
            .any(|l| l.starts_with("LABEL=RC_ROOT") && l.contains(" ro,")));
        let service = BOX_FILES
            .iter()
            .find(|(p, _, _)| p.ends_with("/roomcast.service"))
            .unwrap()
            .1;
        assert!(service.contains("WatchdogSec="));
        assert!(service.contains("Type=notify"));
        assert!(service.contains("SupplementaryGroups=video gpio"));
        assert!(ENABLE.iter().any(|(u, _)| *u == "roomcast.service"));
        assert!(MASK.contains(&"ssh.service"));
    }

    #[test]
    fn setup_codes_are_random_typable_and_their_file_reads_back() {
        let a = new_setup_code().unwrap();
        assert_ne!(a, new_setup_code().unwrap());
        assert_eq!(a.len(), 19, "{a}");
        for (i, c) in a.bytes().enumerate() {
            if i % 5 == 4 {
                assert_eq!(c, b'-', "{a}");
            } else {
                assert!(
                    setup_code::ALPHABET.contains(&c) && !b"01IO".contains(&c),
                    "{a}"
                );
            }
        }
        let file = setup_code_file(&a);
        assert!(file.starts_with("# roomcast setup code\n"), "{file}");
        assert!(file.ends_with(&format!("\n{a}\n")), "{file}");
        assert_eq!(parse_setup_code(&file), Some(a.clone()));
        // As someone may save it on another OS: CRLF, a BOM, lower case.
        let edited = format!("\u{feff}{}", file.replace('\n', "\r\n").to_lowercase());
        assert_eq!(parse_setup_code(&edited), Some(a));
        for bad in [
            "",
            "# comments only\n",
            "ABCD-EFGH-JKLM-NP2\n",
            "ABCD-EFGH-JKLM-NP20\n",
        ] {
            assert_eq!(parse_setup_code(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_setup_code("abcd efgh jklm np23"),
            Some("ABCD-EFGH-JKLM-NP23".into())
        );
    }

    #[test]
    fn missing_tools_name_their_packages() {
        let m = missing_tools(|t| t != "mcopy" && t != "mmd" && t != "sfdisk").unwrap();
        assert_eq!(m.0, "sfdisk, mcopy, mmd");
        assert_eq!(m.1, "fdisk mtools");
        assert!(missing_tools(|_| true).is_none());
    }

    #[test]
    fn binary_must_be_aarch64() {
        let dir = std::env::temp_dir().join(format!("rc-image-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bin");
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0".to_vec();
        fs::write(&p, &elf).unwrap();
        assert!(check_binary(&p).is_ok());
        elf[18] = 0x3e; // x86-64
        fs::write(&p, &elf).unwrap();
        assert!(check_binary(&p)
            .unwrap_err()
            .to_string()
            .contains("not an aarch64"));
        let e = check_binary(&dir.join("none")).unwrap_err().to_string();
        assert!(e.contains("tests/cross.sh aarch64"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
