//! Fake V4L2 devices that keep the kernel's rules, so capture and encoder
//! code is tested on machines without cameras or codec drivers and does not
//! surprise real hardware later.
//!
//! * [`FakeCamera`]: a UVC-like camera. Frame `k` (k = 1, 2, …) is due at
//!   `STREAMON + k·interval`; frames are produced lazily when the application
//!   dequeues, queues or waits (no threads), so with a
//!   [`SimClock`](crate::base::clock::SimClock) tests jump through time instantly.
//! * [`FakeEncoder`]: a stateful memory-to-memory H.264 encoder shaped like
//!   the Raspberry Pi's bcm2835-codec, following the kernel's
//!   dev-encoder.rst state machine (drain, stop, reset), with real openh264
//!   output.
//! * [`SimBackend`]: device nodes described by files in a directory, for the
//!   daemon's simulator and hot-plug tests.
//! * [`FakeHandle`]: the test's side of one physical device — unplug, stall,
//!   inject errors, read counters — shared by every open of it.

mod backend;
mod camera;
mod encoder;
mod media;
#[cfg(test)]
pub(crate) mod tests;

pub use backend::SimBackend;
pub use camera::{CameraSpec, FakeCamera, JpegFn};
pub use encoder::FakeEncoder;

use crate::base::clock::SharedClock;
use crate::v4l2::Backend;

/// Environment variable naming a directory of simulated devices (see
/// [`SimBackend`]): for tests and demos on machines without cameras.
pub const SIM_ENV: &str = "ROOMCAST_V4L2_SIM";

/// The device backend the daemon uses: real `/dev/video*` nodes, or the
/// simulator when `ROOMCAST_V4L2_SIM` names a directory.
pub fn backend(clock: SharedClock) -> Arc<dyn Backend> {
    match std::env::var_os(SIM_ENV) {
        Some(dir) if !dir.is_empty() => Arc::new(SimBackend::new(dir.into(), clock)),
        _ => crate::v4l2::real_backend(),
    }
}
use crate::v4l2::{cid, ControlInfo, ControlKind, DevError, DevResult, Device, Interval, EINVAL};
use crate::v4l2::{EAGAIN, EBUSY, ENODEV, ENOENT};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// `ERANGE`: a control value outside the control's range.
pub const ERANGE: i32 = 34;
/// `ENOTTY`: the device does not implement that ioctl.
pub const ENOTTY: i32 = 25;
/// `EACCES`: reading a write-only control (a button).
pub const EACCES: i32 = 13;
/// `V4L2_BUF_FLAG_PFRAME`: an encoder's non-key frame.
pub const FLAG_PFRAME: u32 = 0x0000_0010;
/// `V4L2_BUF_FLAG_TIMESTAMP_COPY`: an M2M device copied the `Output` timestamp.
pub const FLAG_TIMESTAMP_COPY: u32 = 0x0000_4000;

/// Most buffers a queue grants (`VIDEO_MAX_FRAME`).
const MAX_BUFFERS: u32 = 32;
/// How often (clock time) a simulated node's files are looked at.
const WATCH_EVERY_NS: u64 = 100_000_000;

/// The test's side of one physical fake device, shared by every open of it
/// (`Arc` inside; clone freely).
#[derive(Clone)]
pub struct FakeHandle {
    shared: Arc<Mutex<Shared>>,
    clock: SharedClock,
}

impl std::fmt::Debug for FakeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sh = self.lock();
        f.debug_struct("FakeHandle")
            .field("camera", &matches!(sh.node, Node::Camera(_)))
            .field("plugged", &sh.plugged)
            .field("stalled", &sh.stalled_now())
            .field("delivered", &sh.delivered)
            .field("dropped", &sh.dropped)
            .finish_non_exhaustive()
    }
}

/// State of the physical device: what survives closing a file handle.
struct Shared {
    plugged: bool,
    /// Bumped on every unplug: opens from an older generation are dead for
    /// good, as a real file handle is after its device went away.
    generation: u64,
    /// Stall periods `[start, end)` in clock ns; `end == u64::MAX` while
    /// still stalled. Kept so lazily produced frames know whether they were
    /// due during a stall.
    stalls: Vec<(u64, u64)>,
    pending_errors: u32,
    delivered: u64,
    dropped: u64,
    next_open_id: u64,
    watch: Option<Watch>,
    node: Node,
}

enum Node {
    Camera(Box<camera::CamShared>),
    Encoder,
}

/// The files that stand for a [`SimBackend`] node.
struct Watch {
    node: PathBuf,
    stall: PathBuf,
    last_check: Option<u64>,
}

impl Shared {
    fn new(node: Node) -> Self {
        Shared {
            plugged: true,
            generation: 0,
            stalls: Vec::new(),
            pending_errors: 0,
            delivered: 0,
            dropped: 0,
            next_open_id: 0,
            watch: None,
            node,
        }
    }

    fn unplug(&mut self) {
        if self.plugged {
            self.plugged = false;
            self.generation += 1;
        }
    }

    fn stalled_now(&self) -> bool {
        self.stalls.last().is_some_and(|s| s.1 == u64::MAX)
    }

    fn set_stalled_at(&mut self, now: u64, stalled: bool) {
        match (self.stalled_now(), stalled) {
            (false, true) => {
                // Old periods only matter to frames not yet produced; a
                // bound keeps a flapping stall file from growing this.
                if self.stalls.len() >= 1024 {
                    self.stalls.remove(0);
                }
                self.stalls.push((now, u64::MAX));
            }
            (true, false) => {
                if let Some(last) = self.stalls.last_mut() {
                    last.1 = now.max(last.0);
                }
            }
            _ => {}
        }
    }

    /// Looks at a simulated node's files, at most every [`WATCH_EVERY_NS`].
    fn poll_watch(&mut self, now: u64) {
        let Some(w) = &mut self.watch else { return };
        if w.last_check
            .is_some_and(|t| now < t.saturating_add(WATCH_EVERY_NS))
        {
            return;
        }
        w.last_check = Some(now);
        let (present, stalled) = (w.node.exists(), w.stall.exists());
        if !present {
            self.unplug();
        }
        self.set_stalled_at(now, stalled);
    }
}

impl FakeHandle {
    fn with_node(clock: SharedClock, node: Node) -> Self {
        FakeHandle {
            shared: Arc::new(Mutex::new(Shared::new(node))),
            clock,
        }
    }

    /// A plugged-in encoder device (see [`FakeEncoder::open`]).
    pub fn new_encoder(clock: SharedClock) -> Self {
        Self::with_node(clock, Node::Encoder)
    }

    /// A plugged-in camera (see [`FakeCamera::open`]).
    ///
    /// # Panics
    /// If `spec` has no modes: a camera without one cannot have a format.
    pub fn new_camera(spec: CameraSpec, clock: SharedClock) -> Self {
        Self::with_node(clock, Node::Camera(Box::new(camera::CamShared::new(spec))))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the node again, as whatever device it is (`ENOENT` while
    /// unplugged).
    pub fn open(&self) -> DevResult<Box<dyn Device>> {
        if self.is_camera() {
            Ok(Box::new(FakeCamera::open(self)?))
        } else {
            Ok(Box::new(FakeEncoder::open(self)?))
        }
    }

    pub fn is_camera(&self) -> bool {
        matches!(self.lock().node, Node::Camera(_))
    }

    /// Pulls the cable: every open handle fails with `ENODEV` from now on,
    /// even after [`replug`](Self::replug).
    pub fn unplug(&self) {
        self.lock().unplug();
    }

    /// Plugs it back in: new opens work, old ones stay dead.
    pub fn replug(&self) {
        self.lock().plugged = true;
    }

    pub fn is_plugged(&self) -> bool {
        self.lock().plugged
    }

    /// A stalled camera delivers no frames (and an encoder encodes nothing)
    /// until un-stalled; frames due meanwhile never existed, so the
    /// sequence shows no gap for them.
    pub fn set_stalled(&self, stalled: bool) {
        let now = self.clock.monotonic_ns();
        self.lock().set_stalled_at(now, stalled);
    }

    pub fn is_stalled(&self) -> bool {
        self.lock().stalled_now()
    }

    /// The next `n` frames delivered come back with `flags::ERROR`.
    pub fn inject_errors(&self, n: u32) {
        let mut sh = self.lock();
        sh.pending_errors = sh.pending_errors.saturating_add(n);
    }

    /// Frames written into buffers (camera) or encoded `Capture` buffers
    /// with data (encoder), over all opens.
    pub fn frames_delivered(&self) -> u64 {
        self.lock().delivered
    }

    /// Frames a camera captured while no buffer was queued.
    pub fn frames_dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// A camera control's current value (`None` for unknown ids, buttons
    /// and encoders, whose controls belong to each open instance).
    pub fn control(&self, id: u32) -> Option<i64> {
        match &self.lock().node {
            Node::Camera(c) => c.value(id),
            Node::Encoder => None,
        }
    }

    /// Registers a new open: its generation and id (`ENOENT` if unplugged).
    fn attach(&self, op: &'static str) -> DevResult<(u64, u64)> {
        let mut sh = self.lock();
        if !sh.plugged {
            return Err(DevError::new(op, ENOENT));
        }
        sh.next_open_id += 1;
        Ok((sh.generation, sh.next_open_id))
    }

    /// The shared state, if the open from `generation` is still alive.
    fn live(&self, generation: u64, op: &'static str) -> DevResult<MutexGuard<'_, Shared>> {
        let mut sh = self.lock();
        sh.poll_watch(self.clock.monotonic_ns());
        if !sh.plugged || sh.generation != generation {
            return Err(DevError::new(op, ENODEV));
        }
        Ok(sh)
    }

    fn set_watch(&self, node: PathBuf, stall: PathBuf) {
        let mut sh = self.lock();
        sh.watch = Some(Watch {
            node,
            stall,
            last_check: None,
        });
        let now = self.clock.monotonic_ns();
        sh.poll_watch(now);
    }
}

/// Where a buffer is: with the application, queued to the driver, or filled
/// and waiting for `DQBUF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BufState {
    App,
    Queued,
    Done,
}

/// A buffer the driver finished, waiting for `DQBUF`. `payload` is what goes
/// into its memory then (`None`: memory unchanged, e.g. an `Output` buffer).
struct Filled {
    index: u32,
    bytesused: u32,
    flags: u32,
    timestamp_ns: u64,
    sequence: u32,
    payload: Option<Vec<u8>>,
}

impl Filled {
    /// What `VIDIOC_DQBUF` reports of it.
    fn dequeued(&self) -> crate::v4l2::Dequeued {
        crate::v4l2::Dequeued {
            index: self.index,
            bytesused: self.bytesused,
            flags: self.flags,
            timestamp_ns: self.timestamp_ns,
            sequence: self.sequence,
        }
    }
}

/// One vb2 queue's bookkeeping: buffer ownership, FIFO order, streaming.
#[derive(Default)]
struct BufQueue {
    states: Vec<BufState>,
    /// `bytesused` and timestamp given at `QBUF` (what `Output` buffers hold).
    meta: Vec<(u32, u64)>,
    queued: VecDeque<u32>,
    done: VecDeque<Filled>,
    streaming: bool,
    sequence: u32,
}

impl BufQueue {
    fn count(&self) -> u32 {
        self.states.len() as u32
    }

    /// `VIDIOC_REQBUFS`: grants `min..=MAX_BUFFERS`; `count == 0` frees.
    fn request(&mut self, op: &'static str, count: u32, min: u32) -> DevResult<u32> {
        if self.streaming || (count > 0 && !self.states.is_empty()) {
            return Err(DevError::new(op, EBUSY));
        }
        *self = BufQueue::default();
        if count == 0 {
            return Ok(0);
        }
        let n = count.clamp(min, MAX_BUFFERS);
        self.states = vec![BufState::App; n as usize];
        self.meta = vec![(0, 0); n as usize];
        Ok(n)
    }

    fn queue(&mut self, op: &'static str, index: u32, bytesused: u32, ts: u64) -> DevResult<()> {
        match self.states.get_mut(index as usize) {
            Some(s @ BufState::App) => *s = BufState::Queued,
            _ => return Err(DevError::new(op, EINVAL)),
        }
        self.meta[index as usize] = (bytesused, ts);
        self.queued.push_back(index);
        Ok(())
    }

    /// `EINVAL` unless buffer `index` exists and the application owns it.
    fn owned_by_app(&self, op: &'static str, index: u32) -> DevResult<()> {
        match self.states.get(index as usize) {
            Some(BufState::App) => Ok(()),
            _ => Err(DevError::new(op, EINVAL)),
        }
    }

    /// `VIDIOC_STREAMON`; `Ok(false)` if it already streamed.
    fn stream_on(&mut self, op: &'static str) -> DevResult<bool> {
        if self.states.is_empty() {
            return Err(DevError::new(op, EINVAL));
        }
        if self.streaming {
            return Ok(false);
        }
        self.streaming = true;
        self.sequence = 0;
        Ok(true)
    }

    /// `VIDIOC_STREAMOFF`: every buffer back to the application.
    fn stream_off(&mut self) {
        self.streaming = false;
        self.queued.clear();
        self.done.clear();
        self.states.fill(BufState::App);
    }

    fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    fn has_done(&self) -> bool {
        !self.done.is_empty()
    }

    /// The oldest queued buffer, for the driver to fill, with its `QBUF`
    /// bytesused and timestamp.
    fn take_queued(&mut self) -> Option<(u32, (u32, u64))> {
        let index = self.queued.pop_front()?;
        Some((index, self.meta[index as usize]))
    }

    fn next_sequence(&mut self) -> u32 {
        let s = self.sequence;
        self.sequence = s.wrapping_add(1);
        s
    }

    fn push_done(&mut self, f: Filled) {
        self.states[f.index as usize] = BufState::Done;
        self.done.push_back(f);
    }

    /// `VIDIOC_DQBUF` bookkeeping: `EINVAL` when not streaming, `EAGAIN`
    /// when nothing is done.
    fn dequeue(&mut self, op: &'static str) -> DevResult<Filled> {
        if !self.streaming {
            return Err(DevError::new(op, EINVAL));
        }
        let f = self.done.pop_front().ok_or(DevError::new(op, EAGAIN))?;
        self.states[f.index as usize] = BufState::App;
        Ok(f)
    }
}

/// Puts a dequeued buffer's payload into its memory; a full-size payload
/// is swapped in rather than copied and the old memory kept for reuse.
fn land_payload(mem: &mut [Vec<u8>], f: &mut Filled, spare: &mut Vec<Vec<u8>>) {
    let (Some(mut payload), Some(buf)) = (f.payload.take(), mem.get_mut(f.index as usize)) else {
        return;
    };
    if payload.len() == buf.len() {
        std::mem::swap(buf, &mut payload);
    } else {
        let n = payload.len().min(buf.len());
        buf[..n].copy_from_slice(&payload[..n]);
    }
    if spare.len() < 4 {
        spare.push(payload);
    }
}

/// A `VIDIOC_QUERYCTRL` answer with step 1 (0 for a button); a control
/// with a coarser step sets it afterwards (`ControlInfo { step, ..control() }`).
fn control(
    id: u32,
    name: &str,
    kind: ControlKind,
    min: i64,
    max: i64,
    default: i64,
) -> ControlInfo {
    let step = u64::from(!matches!(kind, ControlKind::Button));
    ControlInfo {
        id,
        name: name.to_owned(),
        kind,
        min,
        max,
        step,
        default,
    }
}

/// A menu control's kind from its (value, name) items.
fn menu(items: &[(i64, &str)]) -> ControlKind {
    ControlKind::Menu(items.iter().map(|(v, n)| (*v, (*n).to_owned())).collect())
}

/// `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`, which H.264 UVC cameras and
/// encoders offer.
fn force_key_frame_control() -> ControlInfo {
    control(
        cid::MPEG_VIDEO_FORCE_KEY_FRAME,
        "Force Key Frame",
        ControlKind::Button,
        0,
        0,
        0,
    )
}

/// Where control `id` is in `controls`; `EINVAL` (reported as `op`) if absent.
fn control_index(controls: &[ControlInfo], id: u32, op: &'static str) -> DevResult<usize> {
    controls
        .iter()
        .position(|c| c.id == id)
        .ok_or(DevError::new(op, EINVAL))
}

/// `VIDIOC_G_CTRL` as the control framework answers it from `values`
/// (parallel to `controls`): `EINVAL` for an unknown id, `EACCES` for a
/// button.
fn read_control(controls: &[ControlInfo], values: &[i64], id: u32) -> DevResult<i64> {
    const OP: &str = "VIDIOC_G_CTRL";
    let i = control_index(controls, id, OP)?;
    if controls[i].kind == ControlKind::Button {
        return Err(DevError::new(OP, EACCES));
    }
    Ok(values[i])
}

/// `VIDIOC_S_CTRL` validation as the control framework does it: where
/// control `id` is in `controls` and the value to store, or the errno.
fn check_control(controls: &[ControlInfo], id: u32, value: i64) -> DevResult<(usize, i64)> {
    const OP: &str = "VIDIOC_S_CTRL";
    let i = control_index(controls, id, OP)?;
    let v = stored_value(&controls[i], value).map_err(|e| DevError::new(OP, e))?;
    Ok((i, v))
}

/// The value a control stores when set to `value`, or the errno.
fn stored_value(info: &ControlInfo, value: i64) -> Result<i64, i32> {
    match &info.kind {
        ControlKind::Button => Ok(0),
        _ if value < info.min || value > info.max => Err(ERANGE),
        ControlKind::Menu(items) => {
            if items.iter().any(|(v, _)| *v == value) {
                Ok(value)
            } else {
                Err(EINVAL)
            }
        }
        ControlKind::Integer | ControlKind::Boolean => {
            let step = i128::from(info.step.max(1));
            let off = i128::from(value) - i128::from(info.min);
            let rounded = i128::from(info.min) + (off + step / 2) / step * step;
            Ok(rounded.min(i128::from(info.max)) as i64)
        }
    }
}

/// Frame due times from `STREAMON`: frame `k` at `t0 + k·num/den` seconds,
/// exact for fractional intervals such as 1/30.
#[derive(Clone, Copy, Debug)]
struct Grid {
    t0: u64,
    /// Interval numerator in ns (num·10⁹) and denominator.
    num_ns: u128,
    den: u128,
}

impl Grid {
    fn new(t0: u64, iv: Interval) -> Self {
        Grid {
            t0,
            num_ns: u128::from(iv.num.max(1)) * 1_000_000_000,
            den: u128::from(iv.den.max(1)),
        }
    }

    fn due(&self, k: u64) -> u64 {
        let off = u128::from(k) * self.num_ns / self.den;
        self.t0
            .saturating_add(u64::try_from(off).unwrap_or(u64::MAX))
    }

    /// The largest `k` with `due(k) <= t`.
    fn last_due_by(&self, t: u64) -> u64 {
        let Some(d) = t.checked_sub(self.t0) else {
            return 0;
        };
        let k = ((u128::from(d) + 1) * self.den - 1) / self.num_ns;
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// The smallest `k` with `due(k) >= t`.
    fn first_due_from(&self, t: u64) -> u64 {
        let Some(d) = t.checked_sub(self.t0) else {
            return 0;
        };
        let k = (u128::from(d) * self.den).div_ceil(self.num_ns);
        u64::try_from(k).unwrap_or(u64::MAX)
    }
}

/// End of the stall period containing `t`, if any.
fn stall_end(stalls: &[(u64, u64)], t: u64) -> Option<u64> {
    stalls
        .iter()
        .find(|(s, e)| *s <= t && t < *e)
        .map(|(_, e)| *e)
}

/// How many frames in `first..=last` were due outside every stall.
fn unstalled(grid: &Grid, stalls: &[(u64, u64)], first: u64, last: u64) -> u64 {
    if first > last {
        return 0;
    }
    let mut n = last - first + 1;
    for &(s, e) in stalls {
        let lo = grid.first_due_from(s).max(first);
        let hi = grid.first_due_from(e).min(last.saturating_add(1));
        n -= hi.saturating_sub(lo).min(n);
    }
    n
}

/// Nanoseconds of a `Duration`, saturating.
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A backend with one fake node, for unit tests of code above the trait.
#[cfg(test)]
pub(crate) struct OneNode(pub FakeHandle, pub &'static str);

#[cfg(test)]
impl crate::v4l2::Backend for OneNode {
    fn list(&self) -> Vec<String> {
        if self.0.is_plugged() {
            vec![self.1.into()]
        } else {
            Vec::new()
        }
    }
    fn open(&self, path: &str) -> crate::v4l2::DevResult<Box<dyn Device>> {
        if path != self.1 {
            return Err(DevError::new("open", ENOENT));
        }
        self.0.open()
    }
}
