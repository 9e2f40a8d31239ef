//! `flash` refuses the disk this machine's `/` lives on. Only the checks run
//! (`inspect` + `check_target`); nothing is opened for writing.

use roomcast_host::flash::{check_target, inspect, parse_mountinfo, FlashError, HostState};
use std::path::Path;

#[test]
fn the_hosts_root_disk_is_refused() {
    let mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let Some(root) = mounts.iter().rev().find(|m| m.mount_point == "/") else {
        eprintln!("NOTE: no / in mountinfo; skipped");
        return;
    };
    let source = Path::new(&root.source);
    if !root.source.starts_with("/dev/") || !source.exists() {
        eprintln!(
            "NOTE: / is on {:?} (not a block device here); skipped",
            root.source
        );
        return;
    }
    let host = HostState::read();
    assert!(
        !host.root_disks.is_empty(),
        "the root disk was not found: {host:?}"
    );
    // The partition itself (e.g. /dev/sda1) is refused as a partition or as
    // mounted; the whole disk as the root disk.
    let disk = Path::new("/dev").join(&host.root_disks[0].name);
    let target = inspect(&disk).expect("inspect the root disk");
    let e = check_target(&disk, &target, &host).unwrap_err();
    assert!(matches!(e, FlashError::RootDisk { .. }), "{e}");
    eprintln!("{e}");
    match inspect(source) {
        Err(e) => assert!(matches!(e, FlashError::Partition { .. }), "{e}"),
        Ok(t) => {
            let e = check_target(source, &t, &host).unwrap_err();
            assert!(
                matches!(e, FlashError::RootDisk { .. } | FlashError::Mounted { .. }),
                "{e}"
            );
        }
    }
}
