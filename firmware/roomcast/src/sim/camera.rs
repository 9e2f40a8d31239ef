//! A fake UVC-style camera: one `Capture` queue, frames on the interval
//! grid from `STREAMON`, produced lazily, with uvcvideo's negotiation rules.

use super::media::{is_raw, pack, raw_sizeimage, H264Stream};
use super::{
    check_control, control, force_key_frame_control, land_payload, menu, nanos, read_control,
    stall_end, unstalled, WATCH_EVERY_NS,
};
use super::{BufQueue, FakeHandle, Filled, Grid, Node, Shared, ENOTTY};
use crate::base::clock::{Clock, SharedClock};
use crate::base::frame::I420Frame;
use crate::encoder::EncoderSettings;
use crate::source::pattern::Pattern;
use crate::v4l2::{cid, flags, Caps, ControlInfo, ControlKind, Dequeued, DevError, DevResult};
use crate::v4l2::{Device, EncoderCmd, Format, FormatDesc, FourCc, FrameSizes, Interval};
use crate::v4l2::{Intervals, Queue, EBUSY, EINVAL};
use std::cell::RefCell;
use std::sync::MutexGuard;
use std::time::Duration;

/// Makes a JPEG of a picture, for a fake MJPEG camera (tests bring one;
/// the daemon's simulator has none and offers no MJPEG).
pub type JpegFn = Box<dyn FnMut(&I420Frame) -> Vec<u8> + Send>;

/// What a fake camera offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraSpec {
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// (format, width, height, frame intervals), in the driver's order; the
    /// first is the power-on format, an interval list's first its default.
    pub modes: Vec<(FourCc, u32, u32, Vec<Interval>)>,
    pub controls: Vec<ControlInfo>,
}

impl CameraSpec {
    /// A typical UVC webcam: YUYV 640x480@30 and 1280x720@10 (USB 2 cannot
    /// carry more raw), MJPEG and H.264 1920x1080@30, and the usual
    /// image controls.
    pub fn typical_uvc() -> Self {
        let at = |fps| vec![Interval::from_fps(fps)];
        CameraSpec {
            driver: "uvcvideo".to_owned(),
            card: "Fake UVC Camera".to_owned(),
            bus_info: "usb-0000:01:00.0-1.2".to_owned(),
            modes: vec![
                (FourCc::YUYV, 640, 480, at(30)),
                (FourCc::YUYV, 1280, 720, at(10)),
                (FourCc::MJPG, 1920, 1080, at(30)),
                (FourCc::H264, 1920, 1080, at(30)),
            ],
            controls: vec![
                control(
                    cid::BRIGHTNESS,
                    "Brightness",
                    ControlKind::Integer,
                    -64,
                    64,
                    0,
                ),
                control(
                    cid::AUTO_WHITE_BALANCE,
                    "White Balance, Automatic",
                    ControlKind::Boolean,
                    0,
                    1,
                    1,
                ),
                control(
                    cid::POWER_LINE_FREQUENCY,
                    "Power Line Frequency",
                    menu(&[(0, "Disabled"), (1, "50 Hz"), (2, "60 Hz")]),
                    0,
                    2,
                    1,
                ),
                // uvcvideo reports the menu's span with gaps for modes the
                // camera lacks: 0 and 2 are in range but not items.
                control(
                    cid::EXPOSURE_AUTO,
                    "Auto Exposure",
                    menu(&[(1, "Manual Mode"), (3, "Aperture Priority Mode")]),
                    1,
                    3,
                    3,
                ),
                force_key_frame_control(),
            ],
        }
    }

    /// [`typical_uvc`](Self::typical_uvc) without MJPEG (the simulator
    /// cannot make JPEGs), plus YUYV 640x360@30 and H.264 1280x720@30.
    pub fn sim_uvc() -> Self {
        let mut spec = Self::typical_uvc();
        spec.modes.retain(|m| m.0 != FourCc::MJPG);
        spec.modes
            .insert(1, (FourCc::YUYV, 640, 360, vec![Interval::from_fps(30)]));
        spec.modes
            .push((FourCc::H264, 1280, 720, vec![Interval::from_fps(30)]));
        spec
    }

    pub(super) fn formats(&self) -> Vec<FourCc> {
        let mut out: Vec<FourCc> = Vec::new();
        for m in &self.modes {
            if !out.contains(&m.0) {
                out.push(m.0);
            }
        }
        out
    }

    pub(super) fn intervals(&self, fourcc: FourCc, w: u32, h: u32) -> Option<&[Interval]> {
        self.modes
            .iter()
            .find(|m| (m.0, m.1, m.2) == (fourcc, w, h))
            .map(|m| m.3.as_slice())
    }
}

/// The format a camera reports for a mode: no padding, as uvcvideo.
fn camera_format(fourcc: FourCc, width: u32, height: u32) -> Format {
    let bpl = match fourcc {
        FourCc::YUYV => width * 2,
        f if is_raw(f) => width,
        _ => 0,
    };
    let sizeimage = raw_sizeimage(fourcc, bpl, height).unwrap_or(width * height * 2);
    Format {
        fourcc,
        width,
        height,
        bytesperline: bpl,
        sizeimage,
    }
}

/// The supported interval closest in time per frame to `want`; the
/// default (first) one for a zero fraction.
fn nearest_interval(list: &[Interval], want: Interval) -> Interval {
    let secs = |i: &Interval| f64::from(i.num) / f64::from(i.den.max(1));
    if want.num == 0 || want.den == 0 {
        return list.first().copied().unwrap_or(want);
    }
    let w = secs(&want);
    list.iter()
        .copied()
        .min_by(|a, b| (secs(a) - w).abs().total_cmp(&(secs(b) - w).abs()))
        .unwrap_or(want)
}

/// The camera's half of [`Shared`]: what all opens see alike.
pub(super) struct CamShared {
    spec: CameraSpec,
    jpeg: Option<JpegFn>,
    /// Control values, parallel to `spec.controls`.
    values: Vec<i64>,
    fmt: Format,
    interval: Interval,
    /// The open that holds buffers, as (generation, open id): vb2 lets one
    /// file handle own the queue, the others get `EBUSY`.
    owner: Option<(u64, u64)>,
    force_key: bool,
}

impl CamShared {
    pub(super) fn new(spec: CameraSpec) -> Self {
        let (fourcc, w, h, ivs) = spec
            .modes
            .first()
            .cloned()
            .expect("a camera spec needs at least one mode");
        CamShared {
            values: spec.controls.iter().map(|c| c.default).collect(),
            fmt: camera_format(fourcc, w, h),
            interval: ivs.first().copied().unwrap_or(Interval::from_fps(30)),
            spec,
            jpeg: None,
            owner: None,
            force_key: false,
        }
    }

    pub(super) fn value(&self, id: u32) -> Option<i64> {
        let i = self.spec.controls.iter().position(|c| c.id == id)?;
        (!matches!(self.spec.controls[i].kind, ControlKind::Button)).then(|| self.values[i])
    }

    /// Whether an open other than (`generation`, `id`) holds the buffers.
    fn owned_by_other(&self, generation: u64, id: u64) -> bool {
        self.owner.is_some_and(|o| o.0 == generation && o.1 != id)
    }
}

fn cam(sh: &mut Shared) -> &mut CamShared {
    match &mut sh.node {
        Node::Camera(c) => c,
        Node::Encoder => unreachable!("camera handles are made with a camera node"),
    }
}

/// A fake camera (one open file handle of it).
pub struct FakeCamera {
    handle: FakeHandle,
    generation: u64,
    id: u64,
    /// The buffers' memory, outside the `RefCell` so `buffer()` can lend it.
    mem: Vec<Vec<u8>>,
    st: RefCell<Stream>,
}

/// Per-open streaming state; behind a `RefCell` because `wait(&self)`
/// catches up on due frames too.
struct Stream {
    q: BufQueue,
    /// Set while streaming.
    grid: Option<Grid>,
    /// The next frame index to consider (frame 1 is due one interval after
    /// `STREAMON`).
    next_k: u64,
    producer: Option<Producer>,
    spare: Vec<Vec<u8>>,
}

/// Draws and encodes frames for the streaming format.
struct Producer {
    fmt: Format,
    fps: u32,
    pattern: Pattern,
    pic: I420Frame,
    h264: Option<H264Stream>,
}

impl Producer {
    fn new(fmt: Format, interval: Interval) -> Self {
        let (w, h) = (fmt.width as usize, fmt.height as usize);
        Producer {
            fmt,
            fps: interval.fps().max(1),
            pattern: Pattern::new(w, h),
            pic: I420Frame::new(w, h),
            h264: (fmt.fourcc == FourCc::H264).then(H264Stream::new),
        }
    }

    /// Frame number `seq` into `out`; returns flags to add.
    fn frame(&mut self, seq: u32, wall_ms: u64, cs: &mut CamShared, out: &mut Vec<u8>) -> u32 {
        self.pattern
            .draw(u64::from(seq), self.fps, wall_ms, &mut self.pic);
        out.clear();
        match (self.fmt.fourcc, &mut self.h264) {
            (f, _) if is_raw(f) => {
                out.resize(self.fmt.sizeimage as usize, 0);
                pack(&self.pic, &self.fmt, out);
                0
            }
            (_, Some(h264)) => {
                if std::mem::take(&mut cs.force_key) {
                    h264.force_keyframe();
                }
                let (w, h) = (self.fmt.width, self.fmt.height);
                let settings = EncoderSettings {
                    width: w,
                    height: h,
                    fps: self.fps,
                    bitrate_kbps: (u64::from(w) * u64::from(h) * u64::from(self.fps) / 20_000)
                        .clamp(200, 20_000) as u32,
                    gop: 30,
                    threads: 1,
                };
                match h264.encode(&self.pic, settings, 30, true) {
                    Ok(p) => {
                        *out = p.data;
                        if p.keyframe {
                            flags::KEYFRAME
                        } else {
                            0
                        }
                    }
                    Err(_) => flags::ERROR,
                }
            }
            _ => match cs.jpeg.as_mut() {
                Some(jpeg) => {
                    *out = jpeg(&self.pic);
                    0
                }
                None => flags::ERROR,
            },
        }
    }
}

impl Stream {
    /// Fills queued buffers with every frame due by now, in order; frames
    /// due with no buffer queued are dropped (the sequence still counts
    /// them), frames due during a stall never happened.
    fn pump(&mut self, sh: &mut Shared, clock: &dyn Clock) {
        let Some(grid) = self.grid else { return };
        let now = clock.monotonic_ns();
        let last = grid.last_due_by(now);
        let mut k = self.next_k;
        while k <= last {
            let due = grid.due(k);
            if let Some(end) = stall_end(&sh.stalls, due) {
                k = grid.first_due_from(end).clamp(k + 1, last + 1);
                continue;
            }
            let Some((index, _)) = self.q.take_queued() else {
                let n = unstalled(&grid, &sh.stalls, k, last);
                sh.dropped += n;
                self.q.sequence = self.q.sequence.wrapping_add(n as u32);
                k = last + 1;
                break;
            };
            let seq = self.q.next_sequence();
            let wall = clock.wall_unix_ms().saturating_sub((now - due) / 1_000_000);
            let mut payload = self.spare.pop().unwrap_or_default();
            let length = self.producer.as_ref().map_or(0, |p| p.fmt.sizeimage) as usize;
            let mut fl = flags::DONE | flags::TIMESTAMP_MONOTONIC;
            if let Some(p) = &mut self.producer {
                fl |= p.frame(seq, wall, cam(sh), &mut payload);
            }
            if payload.len() > length {
                payload.truncate(length);
                fl |= flags::ERROR;
            }
            if sh.pending_errors > 0 {
                sh.pending_errors -= 1;
                fl |= flags::ERROR;
            }
            sh.delivered += 1;
            self.q.push_done(Filled {
                index,
                bytesused: payload.len() as u32,
                flags: fl,
                timestamp_ns: due,
                sequence: seq,
                payload: Some(payload),
            });
            k += 1;
        }
        self.next_k = k;
    }
}

impl FakeHandle {
    /// [`live`](Self::live) for an ioctl that changes the camera for every
    /// open: `EBUSY` if `busy` (the caller's own queue is in the way) or if
    /// an open other than (`generation`, `id`) holds the buffers.
    fn live_exclusive(
        &self,
        generation: u64,
        id: u64,
        busy: bool,
        op: &'static str,
    ) -> DevResult<MutexGuard<'_, Shared>> {
        let mut sh = self.live(generation, op)?;
        if busy || cam(&mut sh).owned_by_other(generation, id) {
            return Err(DevError::new(op, EBUSY));
        }
        Ok(sh)
    }
}

fn capture_only(queue: Queue, op: &'static str) -> DevResult<()> {
    match queue {
        Queue::Capture => Ok(()),
        Queue::Output => Err(DevError::new(op, EINVAL)),
    }
}

impl FakeCamera {
    /// A plugged-in camera with its own new [`FakeHandle`].
    ///
    /// # Panics
    /// If `spec` has no modes.
    pub fn new(spec: CameraSpec, clock: SharedClock) -> Self {
        let handle = FakeHandle::new_camera(spec, clock);
        Self::open(&handle).expect("a new camera is plugged in")
    }

    /// Gives the camera an MJPEG encoder (shared by all its opens); without
    /// one, streaming MJPEG fails at `STREAMON`.
    pub fn with_mjpeg(self, jpeg: impl FnMut(&I420Frame) -> Vec<u8> + Send + 'static) -> Self {
        cam(&mut self.handle.lock()).jpeg = Some(Box::new(jpeg));
        self
    }

    /// Opens the camera behind `handle` again (`ENOENT` while unplugged,
    /// `EINVAL` if it is not a camera).
    pub fn open(handle: &FakeHandle) -> DevResult<Self> {
        if !handle.is_camera() {
            return Err(DevError::new("open", EINVAL));
        }
        let (generation, id) = handle.attach("open")?;
        Ok(FakeCamera {
            handle: handle.clone(),
            generation,
            id,
            mem: Vec::new(),
            st: RefCell::new(Stream {
                q: BufQueue::default(),
                grid: None,
                next_k: 1,
                producer: None,
                spare: Vec::new(),
            }),
        })
    }

    /// The test's side of this camera.
    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }
}

impl std::fmt::Debug for FakeCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCamera")
            .field("generation", &self.generation)
            .field("id", &self.id)
            .field("buffers", &self.mem.len())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeCamera {
    fn drop(&mut self) {
        let mut sh = self.handle.lock();
        let c = cam(&mut sh);
        if c.owner == Some((self.generation, self.id)) {
            c.owner = None;
        }
    }
}

impl Device for FakeCamera {
    fn caps(&self) -> DevResult<Caps> {
        let mut sh = self.handle.live(self.generation, "VIDIOC_QUERYCAP")?;
        let spec = &cam(&mut sh).spec;
        Ok(Caps {
            driver: spec.driver.clone(),
            card: spec.card.clone(),
            bus_info: spec.bus_info.clone(),
            video_capture: true,
            m2m: false,
            streaming: true,
            mplane: false,
        })
    }

    fn enum_formats(&self, queue: Queue) -> DevResult<Vec<FormatDesc>> {
        const OP: &str = "VIDIOC_ENUM_FMT";
        capture_only(queue, OP)?;
        let mut sh = self.handle.live(self.generation, OP)?;
        Ok(cam(&mut sh)
            .spec
            .formats()
            .into_iter()
            .map(|f| FormatDesc {
                fourcc: f,
                description: match f {
                    FourCc::YUYV => "YUYV 4:2:2",
                    FourCc::NV12 => "Y/UV 4:2:0",
                    FourCc::YU12 => "Planar YUV 4:2:0",
                    FourCc::MJPG => "Motion-JPEG",
                    FourCc::H264 => "H.264",
                    _ => "Unknown",
                }
                .to_owned(),
                compressed: !is_raw(f),
            })
            .collect())
    }

    fn enum_frame_sizes(&self, fourcc: FourCc) -> DevResult<FrameSizes> {
        const OP: &str = "VIDIOC_ENUM_FRAMESIZES";
        let mut sh = self.handle.live(self.generation, OP)?;
        let mut sizes = Vec::new();
        for m in cam(&mut sh).spec.modes.iter().filter(|m| m.0 == fourcc) {
            if !sizes.contains(&(m.1, m.2)) {
                sizes.push((m.1, m.2));
            }
        }
        if sizes.is_empty() {
            return Err(DevError::new(OP, EINVAL));
        }
        Ok(FrameSizes::Discrete(sizes))
    }

    fn enum_frame_intervals(
        &self,
        fourcc: FourCc,
        width: u32,
        height: u32,
    ) -> DevResult<Intervals> {
        const OP: &str = "VIDIOC_ENUM_FRAMEINTERVALS";
        let mut sh = self.handle.live(self.generation, OP)?;
        cam(&mut sh)
            .spec
            .intervals(fourcc, width, height)
            .map(|l| Intervals::Discrete(l.to_vec()))
            .ok_or(DevError::new(OP, EINVAL))
    }

    fn format(&self, queue: Queue) -> DevResult<Format> {
        const OP: &str = "VIDIOC_G_FMT";
        capture_only(queue, OP)?;
        let mut sh = self.handle.live(self.generation, OP)?;
        Ok(cam(&mut sh).fmt)
    }

    fn set_format(&mut self, queue: Queue, want: &Format) -> DevResult<Format> {
        const OP: &str = "VIDIOC_S_FMT";
        capture_only(queue, OP)?;
        let busy = self.st.get_mut().q.count() > 0;
        let mut sh = self
            .handle
            .live_exclusive(self.generation, self.id, busy, OP)?;
        let c = cam(&mut sh);
        let formats = c.spec.formats();
        let fourcc = if formats.contains(&want.fourcc) {
            want.fourcc
        } else {
            formats[0]
        };
        // uvcvideo's distance: the area the two rectangles do not share.
        let (w, h) = (u64::from(want.width), u64::from(want.height));
        let dist = |m: &&(FourCc, u32, u32, Vec<Interval>)| {
            let (mw, mh) = (u64::from(m.1), u64::from(m.2));
            w * h + mw * mh - 2 * w.min(mw) * h.min(mh)
        };
        let mode = c
            .spec
            .modes
            .iter()
            .filter(|m| m.0 == fourcc)
            .min_by_key(dist)
            .ok_or(DevError::new(OP, EINVAL))?;
        let fmt = camera_format(fourcc, mode.1, mode.2);
        c.interval = nearest_interval(&mode.3, c.interval);
        c.fmt = fmt;
        Ok(fmt)
    }

    fn set_interval(&mut self, queue: Queue, want: Interval) -> DevResult<Interval> {
        const OP: &str = "VIDIOC_S_PARM";
        capture_only(queue, OP)?;
        // uvcvideo refuses while streaming (the rate is part of the USB
        // bandwidth negotiated at STREAMON).
        let busy = self.st.get_mut().q.streaming;
        let mut sh = self
            .handle
            .live_exclusive(self.generation, self.id, busy, OP)?;
        let c = cam(&mut sh);
        let list = c
            .spec
            .intervals(c.fmt.fourcc, c.fmt.width, c.fmt.height)
            .ok_or(DevError::new(OP, EINVAL))?;
        let iv = nearest_interval(list, want);
        c.interval = iv;
        Ok(iv)
    }

    fn controls(&self) -> DevResult<Vec<ControlInfo>> {
        let mut sh = self.handle.live(self.generation, "VIDIOC_QUERYCTRL")?;
        Ok(cam(&mut sh).spec.controls.clone())
    }

    fn control(&self, id: u32) -> DevResult<i64> {
        let mut sh = self.handle.live(self.generation, "VIDIOC_G_CTRL")?;
        let c = cam(&mut sh);
        read_control(&c.spec.controls, &c.values, id)
    }

    fn set_control(&mut self, id: u32, value: i64) -> DevResult<()> {
        let mut sh = self.handle.live(self.generation, "VIDIOC_S_CTRL")?;
        // Frames due before this call are made with the old settings.
        self.st.get_mut().pump(&mut sh, &*self.handle.clock);
        let c = cam(&mut sh);
        let (i, v) = check_control(&c.spec.controls, id, value)?;
        c.values[i] = v;
        if id == cid::MPEG_VIDEO_FORCE_KEY_FRAME {
            c.force_key = true;
        }
        Ok(())
    }

    fn request_buffers(&mut self, queue: Queue, count: u32) -> DevResult<u32> {
        const OP: &str = "VIDIOC_REQBUFS";
        capture_only(queue, OP)?;
        let mut sh = self
            .handle
            .live_exclusive(self.generation, self.id, false, OP)?;
        let c = cam(&mut sh);
        let n = self.st.get_mut().q.request(OP, count, 2)?;
        let len = c.fmt.sizeimage as usize;
        self.mem = (0..n).map(|_| vec![0; len]).collect();
        c.owner = (n > 0).then_some((self.generation, self.id));
        Ok(n)
    }

    fn buffer(&self, queue: Queue, index: u32) -> DevResult<&[u8]> {
        const OP: &str = "buffer";
        capture_only(queue, OP)?;
        drop(self.handle.live(self.generation, OP)?);
        self.mem
            .get(index as usize)
            .map(Vec::as_slice)
            .ok_or(DevError::new(OP, EINVAL))
    }

    fn buffer_mut(&mut self, queue: Queue, index: u32) -> DevResult<&mut [u8]> {
        const OP: &str = "buffer_mut";
        capture_only(queue, OP)?;
        drop(self.handle.live(self.generation, OP)?);
        self.st.get_mut().q.owned_by_app(OP, index)?;
        Ok(&mut self.mem[index as usize])
    }

    fn queue_buffer(
        &mut self,
        queue: Queue,
        index: u32,
        _bytesused: u32,
        _ts: u64,
    ) -> DevResult<()> {
        const OP: &str = "VIDIOC_QBUF";
        capture_only(queue, OP)?;
        let mut sh = self.handle.live(self.generation, OP)?;
        let st = self.st.get_mut();
        // Frames due before this buffer was queued cannot land in it.
        st.pump(&mut sh, &*self.handle.clock);
        st.q.queue(OP, index, 0, 0)
    }

    fn dequeue_buffer(&mut self, queue: Queue) -> DevResult<Dequeued> {
        const OP: &str = "VIDIOC_DQBUF";
        capture_only(queue, OP)?;
        let mut sh = self.handle.live(self.generation, OP)?;
        let st = self.st.get_mut();
        if !st.q.streaming {
            return Err(DevError::new(OP, EINVAL));
        }
        st.pump(&mut sh, &*self.handle.clock);
        let mut f = st.q.dequeue(OP)?;
        land_payload(&mut self.mem, &mut f, &mut st.spare);
        Ok(f.dequeued())
    }

    fn stream_on(&mut self, queue: Queue) -> DevResult<()> {
        const OP: &str = "VIDIOC_STREAMON";
        capture_only(queue, OP)?;
        let mut sh = self.handle.live(self.generation, OP)?;
        let c = cam(&mut sh);
        let st = self.st.get_mut();
        if st.q.count() == 0 {
            return Err(DevError::new(OP, EINVAL));
        }
        if st.q.streaming {
            return Ok(());
        }
        if c.fmt.fourcc == FourCc::MJPG && c.jpeg.is_none() {
            return Err(DevError::new(OP, EINVAL));
        }
        st.q.stream_on(OP)?;
        st.producer = Some(Producer::new(c.fmt, c.interval));
        st.grid = Some(Grid::new(self.handle.clock.monotonic_ns(), c.interval));
        st.next_k = 1;
        Ok(())
    }

    fn stream_off(&mut self, queue: Queue) -> DevResult<()> {
        const OP: &str = "VIDIOC_STREAMOFF";
        capture_only(queue, OP)?;
        drop(self.handle.live(self.generation, OP)?);
        let st = self.st.get_mut();
        st.q.stream_off();
        st.grid = None;
        st.producer = None;
        Ok(())
    }

    fn wait(&self, queue: Queue, timeout: Duration) -> DevResult<bool> {
        const OP: &str = "poll";
        capture_only(queue, OP)?;
        let clock = &*self.handle.clock;
        let deadline = clock.monotonic_ns().saturating_add(nanos(timeout));
        loop {
            let next = {
                let mut sh = self.handle.live(self.generation, OP)?;
                let mut st = self.st.borrow_mut();
                if !st.q.streaming {
                    // poll() on a queue that is not streaming: POLLERR.
                    return Err(DevError::new(OP, EINVAL));
                }
                st.pump(&mut sh, clock);
                if st.q.has_done() {
                    return Ok(true);
                }
                let now = clock.monotonic_ns();
                if now >= deadline {
                    return Ok(false);
                }
                // Wake for the next frame, the deadline, or a look at
                // unplug/stall, whichever is first.
                let mut next = deadline.min(now.saturating_add(WATCH_EVERY_NS));
                if let (true, Some(g)) = (st.q.has_queued(), st.grid) {
                    next = next.min(g.due(st.next_k));
                }
                next.max(now + 1)
            };
            clock.sleep_until(next);
        }
    }

    fn encoder_command(&mut self, _cmd: EncoderCmd) -> DevResult<()> {
        const OP: &str = "VIDIOC_ENCODER_CMD";
        drop(self.handle.live(self.generation, OP)?);
        Err(DevError::new(OP, ENOTTY))
    }

    fn now_ns(&self) -> u64 {
        self.handle.clock.monotonic_ns()
    }
}
