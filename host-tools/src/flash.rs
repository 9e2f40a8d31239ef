//! `roomcast-host flash IMAGE DEVICE`: writes an SD image to a card, then
//! reads it back and compares SHA-256 checksums.
//!
//! Before writing anything it refuses a target that
//! * is, or is a partition of, a disk holding a mounted filesystem or
//!   active swap (`/proc/self/mountinfo`, `/proc/swaps`), or one used by
//!   device-mapper/MD (`holders/` in sysfs);
//! * is the disk the host's `/` lives on (followed through device-mapper
//!   `slaves/`, so LVM and LUKS roots count);
//! * is a partition rather than a whole disk, is smaller than the image, or
//!   is the image itself.
//!
//! Block devices are opened with `O_EXCL`, which Linux refuses for a device
//! that is mounted (a second line of defence against a race). A regular
//! file stands in for a card in tests; it is written sparse. Read-back uses
//! `O_DIRECT` where the target supports it, so the checksum is of what
//! reached the device, not of the page cache.
//!
//! After a good write it prints the box's one-time setup code, read from
//! the image's boot partition (`roomcast-setup-code.txt`, found through the
//! MBR and read with mtools' `mtype`, as `image build` wrote it), so the
//! installer has what the box's web page asks for on first start.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes per write/read.
const CHUNK: usize = 4 << 20;
/// Alignment for `O_DIRECT` buffers.
const ALIGN: usize = 4096;

/// Why flashing was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("cannot read the image {path}: {source}")]
    Image { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Device { path: PathBuf, source: io::Error },
    #[error("refusing to write {device}: it holds mounted filesystems or swap ({what}); unmount them first (umount), and check it is the card")]
    Mounted { device: PathBuf, what: String },
    #[error("refusing to write {device}: it is the host's root disk ({what})")]
    RootDisk { device: PathBuf, what: String },
    #[error("refusing to write {device}: it is in use by {holders} (device-mapper, RAID or LVM)")]
    Held { device: PathBuf, holders: String },
    #[error("refusing to write {device}: it is partition {partition} of {disk}; give the whole card, e.g. /dev/{disk}")]
    Partition {
        device: PathBuf,
        partition: String,
        disk: String,
    },
    #[error("refusing to write {device}: it is neither a block device nor a regular file")]
    NotADisk { device: PathBuf },
    #[error("refusing to write {device}: it is the image itself")]
    SameFile { device: PathBuf },
    #[error("{device} holds {have} bytes, the image needs {need}")]
    TooSmall {
        device: PathBuf,
        have: u64,
        need: u64,
    },
    #[error("verification failed: the image's SHA-256 is {want} but {device} reads back {got}")]
    Mismatch {
        device: PathBuf,
        want: String,
        got: String,
    },
}

/// A mounted filesystem, as `/proc/self/mountinfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `st_dev` of the filesystem (major, minor).
    pub dev: (u32, u32),
    pub mount_point: String,
    pub fstype: String,
    /// The mount source, e.g. `/dev/sdb1`.
    pub source: String,
}

/// Parses `/proc/self/mountinfo` (proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            let r: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                mount_point: unescape(f.get(4)?),
                fstype: r.first()?.to_string(),
                source: unescape(r.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Active swap devices from `/proc/swaps` (first column, header skipped).
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(unescape))
        .collect()
}

/// Linux `dev_t` → (major, minor), glibc's encoding.
pub fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// A whole disk and its partitions as sysfs describes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disk {
    /// Kernel name, e.g. `sdb`, `mmcblk0`, `loop3`.
    pub name: String,
    pub dev: (u32, u32),
    /// (name, dev) of each partition.
    pub partitions: Vec<(String, (u32, u32))>,
    /// Names of the devices stacked on the disk or its partitions.
    pub holders: Vec<String>,
    /// Size in bytes.
    pub size: u64,
}

impl Disk {
    /// Every device number of the disk and its partitions.
    pub fn devs(&self) -> HashSet<(u32, u32)> {
        std::iter::once(self.dev)
            .chain(self.partitions.iter().map(|p| p.1))
            .collect()
    }

    /// Every `/dev` name of the disk and its partitions.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.name.clone())
            .chain(self.partitions.iter().map(|p| p.0.clone()))
            .collect()
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The sysfs directory of block device (major, minor).
fn sys_block(sys: &Path, dev: (u32, u32)) -> Option<PathBuf> {
    std::fs::canonicalize(sys.join(format!("dev/block/{}:{}", dev.0, dev.1))).ok()
}

fn dir_names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Reads the disk at sysfs directory `dir` (a whole disk).
fn read_disk(dir: &Path) -> Option<Disk> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let dev = parse_dev(&read_trim(&dir.join("dev"))?)?;
    let size = read_trim(&dir.join("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        * 512;
    let mut partitions = Vec::new();
    let mut holders = dir_names(&dir.join("holders"));
    for child in dir_names(dir) {
        let p = dir.join(&child);
        if p.join("partition").exists() {
            if let Some(d) = read_trim(&p.join("dev")).as_deref().and_then(parse_dev) {
                partitions.push((child.clone(), d));
            }
            holders.extend(dir_names(&p.join("holders")));
        }
    }
    Some(Disk {
        name,
        dev,
        partitions,
        holders,
        size,
    })
}

/// The whole disks under device `dev`: itself (or its disk, for a
/// partition) and, for device-mapper/MD devices, the disks below them.
fn disks_below(sys: &Path, dev: (u32, u32), depth: u32, out: &mut Vec<Disk>) {
    let Some(dir) = sys_block(sys, dev) else {
        return;
    };
    let disk_dir = if dir.join("partition").exists() {
        match dir.parent() {
            Some(p) => p.to_path_buf(),
            None => return,
        }
    } else {
        dir.clone()
    };
    let slaves = dir_names(&disk_dir.join("slaves"));
    if slaves.is_empty() || depth > 8 {
        if let Some(d) = read_disk(&disk_dir) {
            if !out.iter().any(|o| o.dev == d.dev) {
                out.push(d);
            }
        }
        return;
    }
    for s in slaves {
        if let Some(d) = read_trim(&disk_dir.join("slaves").join(&s).join("dev"))
            .as_deref()
            .and_then(parse_dev)
        {
            disks_below(sys, d, depth + 1, out);
        }
    }
}

/// What the target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A whole block device.
    Disk(Disk),
    /// A regular file standing in for a card.
    File { size: u64 },
}

/// What the host has mounted and in use, for [`check_target`].
#[derive(Debug, Clone, Default)]
pub struct HostState {
    pub mounts: Vec<Mount>,
    pub swaps: Vec<String>,
    /// Disks under `/` (after device-mapper), for [`FlashError::RootDisk`].
    pub root_disks: Vec<Disk>,
}

impl HostState {
    /// Reads `/proc` and `/sys`.
    pub fn read() -> HostState {
        let mounts =
            parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        let swaps = parse_swaps(&std::fs::read_to_string("/proc/swaps").unwrap_or_default());
        let mut root_disks = Vec::new();
        if let Some(root) = mounts.iter().rev().find(|m| m.mount_point == "/") {
            disks_below(Path::new("/sys"), root.dev, 0, &mut root_disks);
            // btrfs and others report an anonymous st_dev; the source names
            // the device.
            if root_disks.is_empty() {
                if let Ok(md) = std::fs::metadata(&root.source) {
                    disks_below(
                        Path::new("/sys"),
                        major_minor(md.rdev()),
                        0,
                        &mut root_disks,
                    );
                }
            }
        }
        HostState {
            mounts,
            swaps,
            root_disks,
        }
    }
}

/// Inspects `device` (following symlinks such as `/dev/disk/by-id/…`).
pub fn inspect(device: &Path) -> Result<Target, FlashError> {
    let dev_err = |source| FlashError::Device {
        path: device.to_path_buf(),
        source,
    };
    let md = std::fs::metadata(device).map_err(dev_err)?;
    if md.file_type().is_file() {
        return Ok(Target::File { size: md.len() });
    }
    if !md.file_type().is_block_device() {
        return Err(FlashError::NotADisk {
            device: device.to_path_buf(),
        });
    }
    let dev = major_minor(md.rdev());
    let sys = Path::new("/sys");
    let not_found = || {
        dev_err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("block device {}:{} is not in /sys/dev/block", dev.0, dev.1),
        ))
    };
    let dir = sys_block(sys, dev).ok_or_else(not_found)?;
    if dir.join("partition").exists() {
        let disk = dir
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(FlashError::Partition {
            device: device.to_path_buf(),
            partition: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            disk,
        });
    }
    read_disk(&dir).map(Target::Disk).ok_or_else(not_found)
}

/// Refuses what must not be written (see the module documentation).
pub fn check_target(device: &Path, target: &Target, host: &HostState) -> Result<(), FlashError> {
    let Target::Disk(disk) = target else {
        return Ok(());
    };
    let device = device.to_path_buf();
    if let Some(r) = host.root_disks.iter().find(|r| r.dev == disk.dev) {
        return Err(FlashError::RootDisk {
            device,
            what: format!("/ is on /dev/{}", r.name),
        });
    }
    let devs = disk.devs();
    let names: Vec<String> = disk.names().iter().map(|n| format!("/dev/{n}")).collect();
    let mut what: Vec<String> = host
        .mounts
        .iter()
        .filter(|m| devs.contains(&m.dev) || names.contains(&m.source))
        .map(|m| format!("{} on {}", m.source, m.mount_point))
        .collect();
    what.extend(
        host.swaps
            .iter()
            .filter(|s| names.contains(s))
            .map(|s| format!("swap {s}")),
    );
    if !what.is_empty() {
        what.dedup();
        return Err(FlashError::Mounted {
            device,
            what: what.join(", "),
        });
    }
    if !disk.holders.is_empty() {
        return Err(FlashError::Held {
            device,
            holders: disk.holders.join(", "),
        });
    }
    Ok(())
}

/// What a flash did.
#[derive(Debug, Clone)]
pub struct FlashReport {
    pub bytes: u64,
    pub sha256: String,
    pub write_s: f64,
    pub verify_s: f64,
    /// Whether read-back bypassed the page cache.
    pub direct: bool,
    /// The setup code on the image's boot partition.
    pub setup_code: ImageSetupCode,
}

/// What an image's boot partition says about the box's setup code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSetupCode {
    Found(String),
    /// A FAT boot partition without `roomcast-setup-code.txt`: an image made
    /// before setup codes.
    Absent,
    /// It could not be read, and why.
    Unknown(String),
}

impl ImageSetupCode {
    /// The line `flash` prints about it.
    pub fn message(&self) -> String {
        let file = crate::image::SETUP_CODE_FILE;
        match self {
            ImageSetupCode::Found(code) => format!(
                "setup code for the first admin password: {code} (also in {file} on the card's boot partition; the box's web page asks for it on first start)"
            ),
            ImageSetupCode::Absent => format!(
                "this image has no setup code ({file} is not on its boot partition): it was built before setup codes; a box that asks for one prints it in its log (journalctl -u roomcast)"
            ),
            ImageSetupCode::Unknown(why) => format!(
                "cannot read the setup code from the image ({why}); it is in {file} on the card's boot partition, and the box prints it in its log"
            ),
        }
    }
}

/// Byte offset of the first FAT partition in an MBR sector (the image's
/// boot partition), if the sector is an MBR with one.
pub fn boot_partition_offset(mbr: &[u8]) -> Option<u64> {
    if mbr.len() < 512 || mbr[510..512] != [0x55, 0xaa] {
        return None;
    }
    mbr[446..510].chunks(16).find_map(|e| {
        // FAT12, FAT16 (<32M, >32M, LBA), FAT32 (CHS, LBA).
        let fat = matches!(e[4], 0x01 | 0x04 | 0x06 | 0x0e | 0x0b | 0x0c);
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        (fat && start > 0).then(|| u64::from(start) * 512)
    })
}

/// The setup code `roomcast-host image build` left on `image`'s boot
/// partition: `mtype -i IMAGE@@OFFSET ::roomcast-setup-code.txt`.
pub fn image_setup_code(image: &Path) -> ImageSetupCode {
    let mut mbr = [0u8; 512];
    if let Err(e) = File::open(image).and_then(|mut f| f.read_exact(&mut mbr)) {
        return ImageSetupCode::Unknown(format!("cannot read its partition table: {e}"));
    }
    let Some(offset) = boot_partition_offset(&mbr) else {
        return ImageSetupCode::Unknown("no FAT boot partition in its MBR".into());
    };
    let file = crate::image::SETUP_CODE_FILE;
    let out = std::process::Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{offset}", image.display()))
        .arg(format!("::{file}"))
        .output();
    match out {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ImageSetupCode::Unknown("mtype not found; on Debian: apt-get install mtools".into())
        }
        Err(e) => ImageSetupCode::Unknown(format!("mtype: {e}")),
        Ok(o) if o.status.success() => {
            match crate::image::parse_setup_code(&String::from_utf8_lossy(&o.stdout)) {
                Some(code) => ImageSetupCode::Found(code),
                None => ImageSetupCode::Unknown(format!("{file} holds no setup code")),
            }
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            if err.contains("not found") {
                ImageSetupCode::Absent
            } else {
                ImageSetupCode::Unknown(format!("mtype: {err}"))
            }
        }
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Progress on a terminal line: `\r` updates, at most twice a second.
struct Progress<'a> {
    out: &'a mut dyn Write,
    what: &'static str,
    total: u64,
    start: Instant,
    last: Instant,
}

impl<'a> Progress<'a> {
    fn new(out: &'a mut dyn Write, what: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Progress {
            out,
            what,
            total,
            start: now,
            last: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
        }
    }

    fn show(&mut self, done: u64, last: bool) {
        if !last && self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let _ = write!(
            self.out,
            "\r{}: {:>6} / {} MiB ({pct:5.1} %), {:.1} MB/s",
            self.what,
            done >> 20,
            self.total >> 20,
            done as f64 / secs / 1e6
        );
        if last {
            let _ = writeln!(self.out, ", {secs:.1} s");
        }
        let _ = self.out.flush();
    }
}

/// Writes `image` to `device` and verifies it. `progress` gets the progress
/// lines (stderr in the binary).
pub fn flash(
    image: &Path,
    device: &Path,
    progress: &mut dyn Write,
) -> Result<FlashReport, FlashError> {
    let img_err = |source| FlashError::Image {
        path: image.to_path_buf(),
        source,
    };
    let dev_err = |source| FlashError::Device {
        path: device.to_path_buf(),
        source,
    };
    let img_md = std::fs::metadata(image).map_err(img_err)?;
    if !img_md.is_file() {
        return Err(img_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let target = inspect(device)?;
    if let Ok(md) = std::fs::metadata(device) {
        if md.dev() == img_md.dev() && md.ino() == img_md.ino() {
            return Err(FlashError::SameFile {
                device: device.to_path_buf(),
            });
        }
    }
    check_target(device, &target, &HostState::read())?;
    let need = img_md.len();
    if let Target::Disk(d) = &target {
        if d.size < need {
            return Err(FlashError::TooSmall {
                device: device.to_path_buf(),
                have: d.size,
                need,
            });
        }
    }
    let is_file = matches!(target, Target::File { .. });
    let mut src = File::open(image).map_err(img_err)?;
    let mut dst = if is_file {
        OpenOptions::new().write(true).open(device)
    } else {
        // O_EXCL on a block device: EBUSY when the kernel has it mounted.
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_EXCL)
            .open(device)
    }
    .map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            FlashError::Mounted {
                device: device.to_path_buf(),
                what: "the kernel reports it busy (O_EXCL)".into(),
            }
        } else {
            dev_err(e)
        }
    })?;
    if is_file {
        // A stand-in file becomes exactly the image, holes where it is zero.
        dst.set_len(0).map_err(dev_err)?;
    }

    // Write, hashing what is read from the image.
    let t0 = Instant::now();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut p = Progress::new(progress, "writing", need);
    loop {
        let n = read_full(&mut src, &mut buf).map_err(img_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if is_file && buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64)).map_err(dev_err)?;
        } else {
            dst.write_all(&buf[..n]).map_err(dev_err)?;
        }
        done += n as u64;
        p.show(done, false);
    }
    if is_file {
        dst.set_len(done).map_err(dev_err)?;
    }
    dst.sync_all().map_err(dev_err)?;
    p.show(done, true);
    drop(dst);
    let write_s = t0.elapsed().as_secs_f64();
    let want = hex(&hasher.finalize());

    // Read back exactly the image's length.
    let t1 = Instant::now();
    let (mut back, direct) = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(device)
    {
        Ok(f) => (f, true),
        Err(_) => (File::open(device).map_err(dev_err)?, false),
    };
    let mut hasher = Sha256::new();
    let mut raw = vec![0u8; CHUNK + ALIGN];
    let off = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
    let mut left = done;
    let mut p = Progress::new(progress, "verifying", done);
    let mut direct_ok = direct;
    while left > 0 {
        let aligned = &mut raw[off..off + CHUNK];
        let n = match read_full(&mut back, aligned) {
            Ok(n) => n,
            // Some filesystems refuse O_DIRECT reads: start over buffered.
            Err(e) if direct_ok && e.raw_os_error() == Some(libc::EINVAL) && left == done => {
                direct_ok = false;
                back = File::open(device).map_err(dev_err)?;
                continue;
            }
            Err(e) => return Err(dev_err(e)),
        };
        if n == 0 {
            return Err(FlashError::Mismatch {
                device: device.to_path_buf(),
                want,
                got: format!("(only {} of {done} bytes)", done - left),
            });
        }
        let take = (n as u64).min(left) as usize;
        hasher.update(&aligned[..take]);
        left -= take as u64;
        p.show(done - left, false);
    }
    p.show(done, true);
    let got = hex(&hasher.finalize());
    if got != want {
        return Err(FlashError::Mismatch {
            device: device.to_path_buf(),
            want,
            got,
        });
    }
    // What the installer needs next: the code the box's page asks for.
    let setup_code = image_setup_code(image);
    let _ = writeln!(progress, "{}", setup_code.message());
    Ok(FlashReport {
        bytes: done,
        sha256: want,
        write_s,
        verify_s: t1.elapsed().as_secs_f64(),
        direct: direct_ok,
        setup_code,
    })
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
25 22 0:22 / /proc rw - proc proc rw
40 22 8:17 / /media/my\\040card rw,nosuid shared:20 - vfat /dev/sdb1 rw,fmask=0022
41 22 7:0 / /mnt/loop rw - ext4 /dev/loop0 rw
garbage line
";

    #[test]
    fn mountinfo_parses_and_unescapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].dev, (254, 1));
        assert_eq!(m[0].mount_point, "/");
        assert_eq!(m[2].mount_point, "/media/my card");
        assert_eq!(m[2].source, "/dev/sdb1");
        assert_eq!(m[2].fstype, "vfat");
    }

    #[test]
    fn dev_t_decodes() {
        assert_eq!(major_minor(0x0811), (8, 17));
        assert_eq!(major_minor(0x0700), (7, 0));
        // Large minor numbers (loop devices past 255).
        let dev: u64 = (0x100 << 12) | (7 << 8) | 0x05;
        assert_eq!(major_minor(dev), (7, 0x105));
    }

    fn disk(name: &str, dev: (u32, u32), parts: &[(&str, (u32, u32))]) -> Disk {
        Disk {
            name: name.into(),
            dev,
            partitions: parts.iter().map(|(n, d)| (n.to_string(), *d)).collect(),
            holders: vec![],
            size: 1 << 30,
        }
    }

    #[test]
    fn mounted_root_held_and_free_disks() {
        let host = HostState {
            mounts: parse_mountinfo(MOUNTINFO),
            swaps: parse_swaps("Filename Type Size Used Priority\n/dev/sdc2 partition 1 0 -2\n"),
            root_disks: vec![disk("vda", (254, 0), &[("vda1", (254, 1))])],
        };
        let p = Path::new("/dev/x");
        let sdb = Target::Disk(disk("sdb", (8, 16), &[("sdb1", (8, 17))]));
        let e = check_target(p, &sdb, &host).unwrap_err().to_string();
        assert!(e.contains("/dev/sdb1 on /media/my card"), "{e}");
        let vda = Target::Disk(disk("vda", (254, 0), &[("vda1", (254, 1))]));
        let e = check_target(p, &vda, &host).unwrap_err().to_string();
        assert!(e.contains("root disk"), "{e}");
        let sdc = Target::Disk(disk("sdc", (8, 32), &[("sdc2", (8, 34))]));
        let e = check_target(p, &sdc, &host).unwrap_err().to_string();
        assert!(e.contains("swap /dev/sdc2"), "{e}");
        let mut held = disk("sdd", (8, 48), &[]);
        held.holders = vec!["dm-3".into()];
        let e = check_target(p, &Target::Disk(held), &host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dm-3"), "{e}");
        let free = Target::Disk(disk("sde", (8, 64), &[("sde1", (8, 65))]));
        assert!(check_target(p, &free, &host).is_ok());
        assert!(check_target(p, &Target::File { size: 0 }, &host).is_ok());
    }

    #[test]
    fn flash_to_a_file_round_trips_sparse() {
        let dir = std::env::temp_dir().join(format!("rc-flash-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("a.img");
        let mut data = vec![0u8; 9 << 20];
        data[..4].copy_from_slice(b"boot");
        data[(9 << 20) - 3..].copy_from_slice(b"end");
        std::fs::write(&img, &data).unwrap();
        let card = dir.join("card");
        std::fs::write(&card, b"old contents, longer than nothing").unwrap();
        let mut log = Vec::new();
        let r = flash(&img, &card, &mut log).unwrap();
        assert_eq!(r.bytes, 9 << 20);
        assert_eq!(std::fs::read(&card).unwrap(), data);
        assert!(String::from_utf8_lossy(&log).contains("verifying"));
        let e = flash(&img, &img, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, FlashError::SameFile { .. }), "{e}");
        let e = flash(&dir.join("missing"), &card, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("cannot read the image"), "{e}");
        // Not a roomcast image: flash says it could not find a setup code.
        assert!(matches!(r.setup_code, ImageSetupCode::Unknown(_)));
        assert!(String::from_utf8_lossy(&log).contains("cannot read the setup code"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An MBR with one FAT32 (LBA) partition at `start_lba`.
    fn mbr(start_lba: u32) -> Vec<u8> {
        let mut m = vec![0u8; 512];
        let e = &mut m[446..462];
        e[0] = 0x80;
        e[4] = 0x0c;
        e[8..12].copy_from_slice(&start_lba.to_le_bytes());
        e[12..16].copy_from_slice(&4096u32.to_le_bytes());
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    #[test]
    fn the_boot_partition_is_found_in_the_mbr() {
        assert_eq!(boot_partition_offset(&mbr(8192)), Some(4 << 20));
        let mut linux_first = mbr(8192);
        linux_first.copy_within(446..462, 462);
        linux_first[446..462].fill(0);
        linux_first[446 + 4] = 0x83;
        linux_first[446 + 8] = 1;
        assert_eq!(boot_partition_offset(&linux_first), Some(4 << 20));
        let mut unsigned = mbr(8192);
        unsigned[511] = 0;
        assert_eq!(boot_partition_offset(&unsigned), None);
        let mut no_fat = mbr(8192);
        no_fat[446 + 4] = 0x83;
        assert_eq!(boot_partition_offset(&no_fat), None);
        assert_eq!(boot_partition_offset(&[0u8; 100]), None);
    }

    /// Runs a tool; false when it is not installed.
    fn tool(cmd: &str, args: &[&str]) -> bool {
        match std::process::Command::new(cmd)
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(args)
            .output()
        {
            Ok(o) => {
                assert!(o.status.success(), "{cmd} {args:?}: {o:?}");
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => panic!("{cmd}: {e}"),
        }
    }

    #[test]
    fn flash_prints_the_setup_code_from_the_images_boot_partition() {
        // A small image laid out like `image build`'s: MBR, FAT boot
        // partition at 1 MiB with the code file (mkfs.vfat and mcopy work
        // on files, no root needed).
        let dir = std::env::temp_dir().join(format!("rc-flash-code-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fat = dir.join("boot.vfat");
        let fat_s = fat.to_str().unwrap();
        assert!(
            tool("mkfs.vfat", &["-C", fat_s, "4096"]),
            "mkfs.vfat failed or is missing (tests/run.sh installs dosfstools and mtools)"
        );
        let build = |with_code: Option<&str>| -> PathBuf {
            let img = dir.join(format!("{}.img", with_code.is_some()));
            let mut data = mbr(2048);
            data.resize(1 << 20, 0);
            data.extend(std::fs::read(&fat).unwrap());
            std::fs::write(&img, data).unwrap();
            if let Some(code) = with_code {
                let txt = dir.join(crate::image::SETUP_CODE_FILE);
                std::fs::write(&txt, crate::image::setup_code_file(code)).unwrap();
                let at = format!("{}@@{}", img.display(), 1 << 20);
                assert!(tool("mcopy", &["-i", &at, txt.to_str().unwrap(), "::"]));
            }
            img
        };
        let code = crate::image::new_setup_code().unwrap();
        let img = build(Some(&code));
        let older = build(None);
        if !tool("mtype", &["--version"]) {
            eprintln!("skipped: mtype missing (apt-get install mtools)");
            return;
        }
        assert_eq!(image_setup_code(&img), ImageSetupCode::Found(code.clone()));
        assert_eq!(image_setup_code(&older), ImageSetupCode::Absent);
        let card = dir.join("card");
        std::fs::write(&card, b"").unwrap();
        let mut log = Vec::new();
        let r = flash(&img, &card, &mut log).unwrap();
        assert_eq!(r.setup_code, ImageSetupCode::Found(code.clone()));
        let log = String::from_utf8_lossy(&log);
        let line = format!("setup code for the first admin password: {code} ");
        assert!(log.contains(&line), "{log}");
        let mut log = Vec::new();
        flash(&older, &card, &mut log).unwrap();
        assert!(String::from_utf8_lossy(&log).contains("this image has no setup code"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
