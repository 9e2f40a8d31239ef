//! Device nodes simulated by files, for the daemon's simulator
//! (`ROOMCAST_V4L2_SIM=DIR`) and hot-plug tests: `DIR/videoN` holding `uvc`
//! or `m2m` is `/dev/videoN`; `DIR/videoN.stall` stalls it; deleting
//! `DIR/videoN` unplugs it.

use super::{CameraSpec, FakeHandle};
use crate::base::clock::SharedClock;
use crate::v4l2::{Backend, DevError, DevResult, Device, ENODEV, ENOENT};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// A [`Backend`] whose nodes are files in a directory. A node keeps its
/// [`FakeHandle`] (controls, counters) across opens while its file stays.
pub struct SimBackend {
    dir: PathBuf,
    clock: SharedClock,
    nodes: Mutex<BTreeMap<u32, FakeHandle>>,
}

impl std::fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBackend")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// `N` of `videoN` (digits only).
fn node_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("video")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl SimBackend {
    /// Nodes come from `dir`; a missing directory simply has none.
    pub fn new(dir: PathBuf, clock: SharedClock) -> Self {
        SimBackend {
            dir,
            clock,
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The handle of a node opened before (to unplug it or read counters
    /// in tests).
    pub fn handle(&self, path: &str) -> Option<FakeHandle> {
        let n = node_number(path.strip_prefix("/dev/")?)?;
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n)
            .cloned()
    }
}

impl Backend for SimBackend {
    fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut nums: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .filter_map(|e| node_number(e.file_name().to_str()?))
            .collect();
        nums.sort_unstable();
        nums.into_iter().map(|n| format!("/dev/video{n}")).collect()
    }

    fn open(&self, path: &str) -> DevResult<Box<dyn Device>> {
        const OP: &str = "open";
        let n = path
            .strip_prefix("/dev/")
            .and_then(node_number)
            .ok_or(DevError::new(OP, ENOENT))?;
        let file = self.dir.join(format!("video{n}"));
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(content) = std::fs::read_to_string(&file) else {
            if let Some(h) = nodes.get(&n) {
                h.unplug();
            }
            return Err(DevError::new(OP, ENOENT));
        };
        let camera = match content.trim() {
            "uvc" => true,
            "m2m" => false,
            _ => return Err(DevError::new(OP, ENODEV)),
        };
        let handle = match nodes.get(&n) {
            Some(h) if h.is_camera() == camera => {
                // The file came back after a deletion: plugged in again.
                h.replug();
                h.clone()
            }
            old => {
                if let Some(h) = old {
                    h.unplug();
                }
                let h = if camera {
                    FakeHandle::new_camera(CameraSpec::sim_uvc(), self.clock.clone())
                } else {
                    FakeHandle::new_encoder(self.clock.clone())
                };
                h.set_watch(file, self.dir.join(format!("video{n}.stall")));
                nodes.insert(n, h.clone());
                h
            }
        };
        handle.open()
    }
}
