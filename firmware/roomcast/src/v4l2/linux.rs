//! Real V4L2 device nodes through the `v4l` crate.
//!
//! The crate's safe API opens the node and enumerates frame sizes and
//! intervals; everything it models only for single-planar capture (formats,
//! buffers, streaming, parameters) goes through its raw layer
//! (`v4l::v4l2::ioctl`, `mmap`, the bindgen structs in `v4l::v4l_sys`),
//! because the Pi's codec and most SoC encoders speak the multi-planar API.
//! Every format we use keeps its data in one memory plane, so `_MPLANE`
//! queues are driven with plane 0 only.
//!
//! The only file of the workspace allowed `unsafe`: the ioctls, `mmap`,
//! `poll` and `clock_gettime`. Each unsafe block says why it holds.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use v4l::v4l2::{self as raw, vidioc};
use v4l::v4l_sys as sys;
use v4l::video::Capture as _;

use super::{
    Backend, Caps, ControlInfo, ControlKind, Dequeued, DevError, DevResult, Device, EncoderCmd,
    Format, FormatDesc, FourCc, FrameSizes, Interval, Intervals, Queue, EBUSY, EINVAL, EIO,
};

/// Lists `video<N>` nodes in a directory and opens them.
#[derive(Clone, Debug)]
pub struct LinuxBackend {
    dir: PathBuf,
}

impl LinuxBackend {
    /// The real device nodes in `/dev`.
    pub fn new() -> Self {
        Self::with_dir("/dev")
    }

    /// Nodes in another directory, so listing is testable without devices.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        LinuxBackend { dir: dir.into() }
    }
}

impl Default for LinuxBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for LinuxBackend {
    /// `video<N>` entries, by N (video2 before video10); an unreadable
    /// directory lists nothing.
    fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut nodes: Vec<(u32, String)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let number = video_number(name.to_str()?)?;
                Some((number, self.dir.join(&name).to_string_lossy().into_owned()))
            })
            .collect();
        nodes.sort();
        nodes.into_iter().map(|(_, path)| path).collect()
    }

    fn open(&self, path: &str) -> DevResult<Box<dyn Device>> {
        Ok(Box::new(LinuxDevice::open(path)?))
    }
}

/// N of a `video<N>` name (digits only, as the kernel names them).
fn video_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("video")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One open node. Buffers are `V4L2_MEMORY_MMAP`, mapped right after
/// `VIDIOC_REQBUFS` and unmapped before the next one and on drop.
pub struct LinuxDevice {
    // Declared before `dev` so the mappings are gone before the fd closes.
    queues: [QueueState; 2],
    dev: v4l::Device,
    fd: RawFd,
    /// Use the `*_MPLANE` buffer types (decided once, from QUERYCAP).
    mplane: bool,
}

/// What the application side knows about one queue.
#[derive(Default)]
struct QueueState {
    buffers: Vec<Mapping>,
    /// Per buffer: handed to the driver and not dequeued since.
    queued: Vec<bool>,
    streaming: bool,
}

impl LinuxDevice {
    /// Opens `path` `O_RDWR | O_NONBLOCK` and checks it answers
    /// `VIDIOC_QUERYCAP` (any other file fails with `ENOTTY`).
    pub fn open(path: impl AsRef<Path>) -> DevResult<Self> {
        let dev = v4l::Device::with_path(path).map_err(|e| io_err("open", &e))?;
        let fd = dev.handle().fd();
        set_cloexec(fd);
        let mut cap = zeroed::<sys::v4l2_capability>();
        querycap(fd, &mut cap)?;
        Ok(LinuxDevice {
            queues: Default::default(),
            dev,
            fd,
            mplane: caps_from(&cap).mplane,
        })
    }

    fn buf_type(&self, queue: Queue) -> u32 {
        match (queue, self.mplane) {
            (Queue::Capture, false) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE,
            (Queue::Capture, true) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
            (Queue::Output, false) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT,
            (Queue::Output, true) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE,
        }
    }

    fn state(&self, queue: Queue) -> &QueueState {
        &self.queues[queue_index(queue)]
    }

    fn state_mut(&mut self, queue: Queue) -> &mut QueueState {
        &mut self.queues[queue_index(queue)]
    }

    /// `VIDIOC_QUERYBUF` for buffer `index` and maps its (single) plane.
    fn map_buffer(&self, queue: Queue, index: u32) -> DevResult<Mapping> {
        let mut b = RawBuffer::new(self.buf_type(queue), index);
        b.ioctl(
            self.fd,
            self.mplane,
            vidioc::VIDIOC_QUERYBUF,
            "VIDIOC_QUERYBUF",
        )?;
        let (len, offset) = if self.mplane {
            // Two-plane formats (NV12M) need one mapping per plane; the
            // trait's buffers are one slice each.
            if b.buf.length != 1 {
                return Err(DevError::new("VIDIOC_QUERYBUF", EINVAL));
            }
            // SAFETY: the union holds plain integers, so every bit pattern
            // is valid; for MMAP buffers the kernel fills `mem_offset`.
            (b.planes[0].length, unsafe { b.planes[0].m.mem_offset })
        } else {
            // SAFETY: as above; the kernel fills `offset` for MMAP buffers.
            (b.buf.length, unsafe { b.buf.m.offset })
        };
        Mapping::new(self.fd, len as usize, offset)
    }

    /// Why `poll` reported an error instead of readiness.
    fn poll_error(&self, queue: Queue) -> DevError {
        let mut cap = zeroed::<sys::v4l2_capability>();
        if let Err(e) = querycap(self.fd, &mut cap) {
            // ENODEV once the device is unregistered (unplugged).
            return DevError::new("poll", e.errno);
        }
        if !self.state(queue).streaming {
            return DevError::new("poll", EINVAL);
        }
        // Streaming but nothing to wait for: a queue error, or (M2M) no
        // buffer queued on either side.
        DevError::new("poll", EIO)
    }
}

fn queue_index(queue: Queue) -> usize {
    match queue {
        Queue::Capture => 0,
        Queue::Output => 1,
    }
}

impl Device for LinuxDevice {
    fn caps(&self) -> DevResult<Caps> {
        let mut cap = zeroed::<sys::v4l2_capability>();
        querycap(self.fd, &mut cap)?;
        Ok(caps_from(&cap))
    }

    /// `EINVAL` on the first index (a queue the device lacks) is an empty
    /// list.
    fn enum_formats(&self, queue: Queue) -> DevResult<Vec<FormatDesc>> {
        let mut out = Vec::new();
        for index in 0.. {
            let mut d = zeroed::<sys::v4l2_fmtdesc>();
            d.index = index;
            d.type_ = self.buf_type(queue);
            match enum_fmt(self.fd, &mut d) {
                Ok(()) => out.push(FormatDesc {
                    fourcc: FourCc::from_u32(d.pixelformat),
                    description: c_string(&d.description),
                    compressed: d.flags & sys::V4L2_FMT_FLAG_COMPRESSED != 0,
                }),
                Err(e) if e.errno == EINVAL => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn enum_frame_sizes(&self, fourcc: FourCc) -> DevResult<FrameSizes> {
        let sizes = self
            .dev
            .enum_framesizes(v4l::FourCC::from(fourcc.to_u32()))
            .map_err(|e| io_err("VIDIOC_ENUM_FRAMESIZES", &e))?;
        let mut discrete = Vec::new();
        for size in sizes {
            match size.size {
                v4l::framesize::FrameSizeEnum::Discrete(d) => discrete.push((d.width, d.height)),
                // Stepwise and continuous come alone, as index 0.
                v4l::framesize::FrameSizeEnum::Stepwise(s) => {
                    let continuous =
                        size.typ == sys::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_CONTINUOUS;
                    let step = if continuous {
                        (1, 1)
                    } else {
                        (s.step_width.max(1), s.step_height.max(1))
                    };
                    return Ok(FrameSizes::Stepwise {
                        min: (s.min_width, s.min_height),
                        max: (s.max_width, s.max_height),
                        step,
                    });
                }
            }
        }
        Ok(FrameSizes::Discrete(discrete))
    }

    fn enum_frame_intervals(
        &self,
        fourcc: FourCc,
        width: u32,
        height: u32,
    ) -> DevResult<Intervals> {
        let intervals = self
            .dev
            .enum_frameintervals(v4l::FourCC::from(fourcc.to_u32()), width, height)
            .map_err(|e| io_err("VIDIOC_ENUM_FRAMEINTERVALS", &e))?;
        let fract = |f: v4l::Fraction| Interval {
            num: f.numerator,
            den: f.denominator,
        };
        let mut discrete = Vec::new();
        for interval in intervals {
            match interval.interval {
                v4l::frameinterval::FrameIntervalEnum::Discrete(f) => discrete.push(fract(f)),
                v4l::frameinterval::FrameIntervalEnum::Stepwise(s) => {
                    return Ok(Intervals::Stepwise {
                        min: fract(s.min),
                        max: fract(s.max),
                        step: fract(s.step),
                    });
                }
            }
        }
        Ok(Intervals::Discrete(discrete))
    }

    fn format(&self, queue: Queue) -> DevResult<Format> {
        let mut f = zeroed::<sys::v4l2_format>();
        f.type_ = self.buf_type(queue);
        g_fmt(self.fd, &mut f)?;
        format_from(&f, self.mplane, "VIDIOC_G_FMT")
    }

    /// Asks for progressive frames on `Output` (what we feed an encoder) and
    /// lets the driver pick the field order on `Capture`. A format the
    /// driver turns into several memory planes is refused with `EINVAL`.
    fn set_format(&mut self, queue: Queue, want: &Format) -> DevResult<Format> {
        let mut f = zeroed::<sys::v4l2_format>();
        f.type_ = self.buf_type(queue);
        let field = match queue {
            Queue::Capture => sys::v4l2_field_V4L2_FIELD_ANY,
            Queue::Output => sys::v4l2_field_V4L2_FIELD_NONE,
        };
        if self.mplane {
            let mut pix = zeroed::<sys::v4l2_pix_format_mplane>();
            pix.width = want.width;
            pix.height = want.height;
            pix.pixelformat = want.fourcc.to_u32();
            pix.field = field;
            pix.num_planes = 1;
            pix.plane_fmt[0].bytesperline = want.bytesperline;
            pix.plane_fmt[0].sizeimage = want.sizeimage;
            f.fmt.pix_mp = pix;
        } else {
            let mut pix = zeroed::<sys::v4l2_pix_format>();
            pix.width = want.width;
            pix.height = want.height;
            pix.pixelformat = want.fourcc.to_u32();
            pix.field = field;
            pix.bytesperline = want.bytesperline;
            // Only meaningful for compressed formats (an encoder's
            // `Capture` buffer size); the driver computes it for raw ones.
            pix.sizeimage = want.sizeimage;
            f.fmt.pix = pix;
        }
        s_fmt(self.fd, &mut f)?;
        format_from(&f, self.mplane, "VIDIOC_S_FMT")
    }

    /// On an encoder, the `Output` interval is also the coded frame rate
    /// (dev-encoder.rst). A driver that answers with a zero fraction cannot
    /// set one: `EINVAL`.
    fn set_interval(&mut self, queue: Queue, want: Interval) -> DevResult<Interval> {
        let mut p = zeroed::<sys::v4l2_streamparm>();
        p.type_ = self.buf_type(queue);
        let tpf = sys::v4l2_fract {
            numerator: want.num,
            denominator: want.den,
        };
        match queue {
            Queue::Capture => p.parm.capture.timeperframe = tpf,
            Queue::Output => p.parm.output.timeperframe = tpf,
        }
        s_parm(self.fd, &mut p)?;
        // SAFETY: both union members are plain integers (any bit pattern
        // is valid); the kernel filled the one matching `type_`.
        let got = unsafe {
            match queue {
                Queue::Capture => p.parm.capture.timeperframe,
                Queue::Output => p.parm.output.timeperframe,
            }
        };
        if got.numerator == 0 || got.denominator == 0 {
            return Err(DevError::new("VIDIOC_S_PARM", EINVAL));
        }
        Ok(Interval {
            num: got.numerator,
            den: got.denominator,
        })
    }

    /// Walks `VIDIOC_QUERYCTRL` with `V4L2_CTRL_FLAG_NEXT_CTRL`. Disabled
    /// controls, class headings and types `VIDIOC_G_CTRL` cannot read
    /// (64-bit, string, bitmask, compound) are left out.
    fn controls(&self) -> DevResult<Vec<ControlInfo>> {
        let mut out = Vec::new();
        let mut last = 0u32;
        loop {
            let mut q = zeroed::<sys::v4l2_queryctrl>();
            q.id = last | sys::V4L2_CTRL_FLAG_NEXT_CTRL;
            match queryctrl(self.fd, &mut q) {
                Ok(()) => {}
                // The end of the list (or no controls at all).
                Err(e) if e.errno == EINVAL => break,
                Err(e) => return Err(e),
            }
            // The kernel returns ids in increasing order; anything else
            // would loop forever.
            if q.id <= last {
                break;
            }
            last = q.id;
            if q.flags & sys::V4L2_CTRL_FLAG_DISABLED != 0 {
                continue;
            }
            let kind = match q.type_ {
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER => ControlKind::Integer,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_BOOLEAN => ControlKind::Boolean,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_BUTTON => ControlKind::Button,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU
                | sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU => {
                    ControlKind::Menu(self.menu_items(&q))
                }
                _ => continue,
            };
            out.push(ControlInfo {
                id: q.id,
                name: c_string(&q.name),
                kind,
                min: q.minimum.into(),
                max: q.maximum.into(),
                step: u64::try_from(q.step).unwrap_or(0),
                default: q.default_value.into(),
            });
        }
        Ok(out)
    }

    fn control(&self, id: u32) -> DevResult<i64> {
        let mut c = sys::v4l2_control { id, value: 0 };
        g_ctrl(self.fd, &mut c)?;
        Ok(c.value.into())
    }

    /// `VIDIOC_S_CTRL` carries 32 bits; a wider value is `ERANGE` here.
    fn set_control(&mut self, id: u32, value: i64) -> DevResult<()> {
        let value =
            i32::try_from(value).map_err(|_| DevError::new("VIDIOC_S_CTRL", libc::ERANGE))?;
        let mut c = sys::v4l2_control { id, value };
        s_ctrl(self.fd, &mut c)
    }

    /// Unmaps the old buffers first (older kernels refuse to free mapped
    /// ones); if mapping a new one fails, all are freed again.
    fn request_buffers(&mut self, queue: Queue, count: u32) -> DevResult<u32> {
        if self.state(queue).streaming {
            return Err(DevError::new("VIDIOC_REQBUFS", EBUSY));
        }
        let state = self.state_mut(queue);
        state.buffers.clear();
        state.queued.clear();
        let buf_type = self.buf_type(queue);
        let mut r = zeroed::<sys::v4l2_requestbuffers>();
        r.count = count;
        r.type_ = buf_type;
        r.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        reqbufs(self.fd, &mut r)?;
        let mut buffers = Vec::with_capacity(r.count as usize);
        for index in 0..r.count {
            match self.map_buffer(queue, index) {
                Ok(m) => buffers.push(m),
                Err(e) => {
                    drop(buffers);
                    let mut free = zeroed::<sys::v4l2_requestbuffers>();
                    free.type_ = buf_type;
                    free.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
                    let _ = reqbufs(self.fd, &mut free);
                    return Err(e);
                }
            }
        }
        let state = self.state_mut(queue);
        state.queued = vec![false; buffers.len()];
        state.buffers = buffers;
        Ok(r.count)
    }

    fn buffer(&self, queue: Queue, index: u32) -> DevResult<&[u8]> {
        self.state(queue)
            .buffers
            .get(index as usize)
            .map(Mapping::as_slice)
            .ok_or(DevError::new("buffer", EINVAL))
    }

    /// `EBUSY` while the driver owns the buffer (queued).
    fn buffer_mut(&mut self, queue: Queue, index: u32) -> DevResult<&mut [u8]> {
        let state = self.state_mut(queue);
        let i = index as usize;
        if i >= state.buffers.len() {
            return Err(DevError::new("buffer", EINVAL));
        }
        if state.queued[i] {
            return Err(DevError::new("buffer", EBUSY));
        }
        Ok(state.buffers[i].as_mut_slice())
    }

    /// The timestamp travels as a `timeval`: microseconds, so an encoder
    /// hands back `timestamp_ns` rounded down to a whole microsecond.
    fn queue_buffer(
        &mut self,
        queue: Queue,
        index: u32,
        bytesused: u32,
        timestamp_ns: u64,
    ) -> DevResult<()> {
        let state = self.state(queue);
        match state.queued.get(index as usize) {
            Some(false) => {}
            // Out of range, or already the driver's.
            _ => return Err(DevError::new("VIDIOC_QBUF", EINVAL)),
        }
        let mut b = RawBuffer::new(self.buf_type(queue), index);
        if queue == Queue::Output {
            b.buf.field = sys::v4l2_field_V4L2_FIELD_NONE;
            b.buf.timestamp = ns_to_timeval(timestamp_ns);
            if self.mplane {
                b.planes[0].bytesused = bytesused;
            } else {
                b.buf.bytesused = bytesused;
            }
        }
        b.ioctl(self.fd, self.mplane, vidioc::VIDIOC_QBUF, "VIDIOC_QBUF")?;
        self.state_mut(queue).queued[index as usize] = true;
        Ok(())
    }

    /// A `Capture` payload the driver placed at a `data_offset` inside the
    /// plane is moved to the start of the buffer, so `buffer()[..bytesused]`
    /// is always the data.
    fn dequeue_buffer(&mut self, queue: Queue) -> DevResult<Dequeued> {
        let mut b = RawBuffer::new(self.buf_type(queue), 0);
        b.ioctl(self.fd, self.mplane, vidioc::VIDIOC_DQBUF, "VIDIOC_DQBUF")?;
        let index = b.buf.index;
        let (mut bytesused, data_offset) = if self.mplane {
            (b.planes[0].bytesused, b.planes[0].data_offset)
        } else {
            (b.buf.bytesused, 0)
        };
        let state = self.state_mut(queue);
        if let Some(queued) = state.queued.get_mut(index as usize) {
            *queued = false;
        }
        if let Some(m) = state.buffers.get_mut(index as usize) {
            let len = m.len as u32;
            bytesused = bytesused.min(len);
            if queue == Queue::Capture && data_offset > 0 {
                let start = data_offset.min(bytesused);
                m.as_mut_slice()
                    .copy_within(start as usize..bytesused as usize, 0);
                bytesused -= start;
            }
        }
        Ok(Dequeued {
            index,
            bytesused,
            flags: b.buf.flags,
            timestamp_ns: timeval_to_ns(&b.buf.timestamp),
            sequence: b.buf.sequence,
        })
    }

    fn stream_on(&mut self, queue: Queue) -> DevResult<()> {
        let mut t = self.buf_type(queue) as c_int;
        streamon(self.fd, &mut t)?;
        self.state_mut(queue).streaming = true;
        Ok(())
    }

    fn stream_off(&mut self, queue: Queue) -> DevResult<()> {
        let mut t = self.buf_type(queue) as c_int;
        streamoff(self.fd, &mut t)?;
        let state = self.state_mut(queue);
        state.streaming = false;
        state.queued.iter_mut().for_each(|q| *q = false);
        Ok(())
    }

    /// `POLLIN` for `Capture`, `POLLOUT` for `Output`. When the kernel
    /// answers `POLLERR` instead, QUERYCAP tells an unplugged device
    /// (`ENODEV`) from a queue that is not streaming (`EINVAL`) or has
    /// nothing to wait for (`EIO`); returning an error rather than `true`
    /// keeps a wait/dequeue loop from spinning.
    fn wait(&self, queue: Queue, timeout: Duration) -> DevResult<bool> {
        let events = match queue {
            Queue::Capture => libc::POLLIN | libc::POLLRDNORM,
            Queue::Output => libc::POLLOUT | libc::POLLWRNORM,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Rounded up, so a sub-millisecond timeout still waits.
            let ms = left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int;
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd, and we pass 1 as its count.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let errno = last_errno();
                if errno == libc::EINTR {
                    continue;
                }
                return Err(DevError::new("poll", errno));
            }
            if n == 0 {
                return Ok(false);
            }
            if pfd.revents & events != 0 {
                return Ok(true);
            }
            if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(self.poll_error(queue));
            }
        }
    }

    fn encoder_command(&mut self, cmd: EncoderCmd) -> DevResult<()> {
        let mut c = zeroed::<sys::v4l2_encoder_cmd>();
        c.cmd = match cmd {
            EncoderCmd::Stop => sys::V4L2_ENC_CMD_STOP,
            EncoderCmd::Start => sys::V4L2_ENC_CMD_START,
        };
        encoder_cmd(self.fd, &mut c)
    }

    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }
}

impl LinuxDevice {
    /// `VIDIOC_QUERYMENU` for each index in range; indexes the driver
    /// skips (`EINVAL`) are left out. Integer menus are named by value.
    fn menu_items(&self, q: &sys::v4l2_queryctrl) -> Vec<(i64, String)> {
        let integer = q.type_ == sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU;
        let first = q.minimum.max(0) as u32;
        // Menus are short; a bogus range must not mean billions of ioctls.
        let last = (q.maximum.max(0) as u32).min(first.saturating_add(255));
        let mut items = Vec::new();
        for index in first..=last {
            let mut m = zeroed::<sys::v4l2_querymenu>();
            m.id = q.id;
            m.index = index;
            if querymenu(self.fd, &mut m).is_err() {
                continue;
            }
            let name = if integer {
                // SAFETY: both union members are plain data (any bit pattern
                // is valid); integer menus fill `value`.
                unsafe { m.__bindgen_anon_1.value }.to_string()
            } else {
                // SAFETY: as above; plain menus fill `name`.
                c_string(&unsafe { m.__bindgen_anon_1.name })
            };
            items.push((i64::from(index), name));
        }
        items
    }
}

/// `QUERYCAP` reduced to [`Caps`]; the node's own `device_caps` when the
/// driver reports them (every kernel since 3.3), else the whole device's.
fn caps_from(cap: &sys::v4l2_capability) -> Caps {
    let bits = if cap.capabilities & sys::V4L2_CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    };
    let has = |flag: u32| bits & flag != 0;
    let single = has(sys::V4L2_CAP_VIDEO_CAPTURE)
        || has(sys::V4L2_CAP_VIDEO_OUTPUT)
        || has(sys::V4L2_CAP_VIDEO_M2M);
    let multi = has(sys::V4L2_CAP_VIDEO_CAPTURE_MPLANE)
        || has(sys::V4L2_CAP_VIDEO_OUTPUT_MPLANE)
        || has(sys::V4L2_CAP_VIDEO_M2M_MPLANE);
    Caps {
        driver: c_string(&cap.driver),
        card: c_string(&cap.card),
        bus_info: c_string(&cap.bus_info),
        video_capture: has(sys::V4L2_CAP_VIDEO_CAPTURE) || has(sys::V4L2_CAP_VIDEO_CAPTURE_MPLANE),
        m2m: has(sys::V4L2_CAP_VIDEO_M2M) || has(sys::V4L2_CAP_VIDEO_M2M_MPLANE),
        streaming: has(sys::V4L2_CAP_STREAMING),
        // A node offering both APIs is driven single-planar.
        mplane: multi && !single,
    }
}

/// The single-plane view of a `G_FMT`/`S_FMT` answer; `EINVAL` for a format
/// split over several memory planes.
fn format_from(f: &sys::v4l2_format, mplane: bool, op: &'static str) -> DevResult<Format> {
    if mplane {
        // SAFETY: the union's members are plain integers (any bit pattern is
        // valid); for an `_MPLANE` type the kernel filled `pix_mp`.
        let pix = unsafe { f.fmt.pix_mp };
        if pix.num_planes != 1 {
            return Err(DevError::new(op, EINVAL));
        }
        Ok(Format {
            fourcc: FourCc::from_u32(pix.pixelformat),
            width: pix.width,
            height: pix.height,
            bytesperline: pix.plane_fmt[0].bytesperline,
            sizeimage: pix.plane_fmt[0].sizeimage,
        })
    } else {
        // SAFETY: as above; for a single-planar video type it is `pix`.
        let pix = unsafe { f.fmt.pix };
        Ok(Format {
            fourcc: FourCc::from_u32(pix.pixelformat),
            width: pix.width,
            height: pix.height,
            bytesperline: pix.bytesperline,
            sizeimage: pix.sizeimage,
        })
    }
}

/// A `v4l2_buffer` with room for the most planes the kernel handles, so
/// `QUERYBUF`/`QBUF`/`DQBUF` work on any `_MPLANE` queue; we use plane 0.
struct RawBuffer {
    buf: sys::v4l2_buffer,
    planes: [sys::v4l2_plane; sys::VIDEO_MAX_PLANES as usize],
}

impl RawBuffer {
    fn new(buf_type: u32, index: u32) -> Self {
        let mut b = RawBuffer {
            buf: zeroed(),
            planes: [zeroed(); sys::VIDEO_MAX_PLANES as usize],
        };
        b.buf.type_ = buf_type;
        b.buf.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        b.buf.index = index;
        b
    }

    /// `request` is one of `VIDIOC_QUERYBUF`, `VIDIOC_QBUF`, `VIDIOC_DQBUF`.
    fn ioctl(
        &mut self,
        fd: RawFd,
        mplane: bool,
        request: vidioc::_IOC_TYPE,
        op: &'static str,
    ) -> DevResult<()> {
        if mplane {
            // Set here, right before the call, so the pointer is to where
            // `planes` is now.
            self.buf.m.planes = self.planes.as_mut_ptr();
            self.buf.length = sys::VIDEO_MAX_PLANES;
        }
        // SAFETY: `request` takes a `v4l2_buffer` (its code is built from
        // this struct's size); `buf` is valid and exclusively borrowed. For
        // `_MPLANE` types the kernel also reads and writes `m.planes`, which
        // points to `self.planes`, exactly `length` entries that stay put
        // for the call. Single-planar MMAP buffers carry no pointer.
        unsafe { raw::ioctl(fd, request, ptr::addr_of_mut!(self.buf).cast()) }
            .map_err(|e| io_err(op, &e))
    }
}

/// One buffer's `mmap`ed memory, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to this value alone (nothing else holds the
// address), and memory mapped from a V4L2 node may be used from any thread.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize, offset: u32) -> DevResult<Self> {
        if len == 0 {
            return Err(DevError::new("mmap", EINVAL));
        }
        // SAFETY: a fresh shared mapping at an address the kernel picks
        // (null hint), so no existing memory is affected; `offset` is the
        // cookie QUERYBUF gave for this buffer.
        let addr = unsafe {
            raw::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        }
        .map_err(|e| io_err("mmap", &e))?;
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or(DevError::new("mmap", EINVAL))?;
        Ok(Mapping { ptr, len })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes until drop,
        // and the borrow of `self` keeps it alive for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, writable too, and `&mut self` makes the slice
        // the only Rust reference into the mapping.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, unmapped once;
        // no slice into it can outlive `self`.
        let _ = unsafe { raw::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Kernel structs for which all-zero bytes are a valid value: the state
/// the V4L2 API asks for before an application fills in fields.
///
/// # Safety
/// Only for types made of integers, arrays, unions of those and raw
/// pointers (null is fine).
unsafe trait Zeroable: Sized {}

macro_rules! zeroable {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: a bindgen C struct of integers, arrays, unions and raw
        // pointers only.
        unsafe impl Zeroable for $t {}
    )*};
}

zeroable!(
    sys::v4l2_capability,
    sys::v4l2_fmtdesc,
    sys::v4l2_format,
    sys::v4l2_pix_format,
    sys::v4l2_pix_format_mplane,
    sys::v4l2_requestbuffers,
    sys::v4l2_buffer,
    sys::v4l2_plane,
    sys::v4l2_streamparm,
    sys::v4l2_queryctrl,
    sys::v4l2_querymenu,
    sys::v4l2_encoder_cmd,
);

fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` promises all-zero bytes are a valid `T`.
    unsafe { mem::zeroed() }
}

/// One safe function per ioctl, tying each request code to its argument
/// type. `v4l2_buffer` is not here: for `_MPLANE` types it carries a
/// pointer the kernel follows (see [`RawBuffer::ioctl`]).
macro_rules! ioctls {
    ($($name:ident($req:ident, $ty:ty);)*) => {$(
        fn $name(fd: RawFd, arg: &mut $ty) -> DevResult<()> {
            // SAFETY: `arg` is a valid, exclusively borrowed `$ty`, the type
            // `$req`'s code was built from, so the kernel copies exactly its
            // size in and out. None of these holds a pointer the kernel
            // follows for the video buffer types this file sets.
            unsafe { raw::ioctl(fd, vidioc::$req, (arg as *mut $ty).cast()) }
                .map_err(|e| io_err(stringify!($req), &e))
        }
    )*};
}

ioctls! {
    querycap(VIDIOC_QUERYCAP, sys::v4l2_capability);
    enum_fmt(VIDIOC_ENUM_FMT, sys::v4l2_fmtdesc);
    g_fmt(VIDIOC_G_FMT, sys::v4l2_format);
    s_fmt(VIDIOC_S_FMT, sys::v4l2_format);
    reqbufs(VIDIOC_REQBUFS, sys::v4l2_requestbuffers);
    streamon(VIDIOC_STREAMON, c_int);
    streamoff(VIDIOC_STREAMOFF, c_int);
    s_parm(VIDIOC_S_PARM, sys::v4l2_streamparm);
    g_ctrl(VIDIOC_G_CTRL, sys::v4l2_control);
    s_ctrl(VIDIOC_S_CTRL, sys::v4l2_control);
    queryctrl(VIDIOC_QUERYCTRL, sys::v4l2_queryctrl);
    querymenu(VIDIOC_QUERYMENU, sys::v4l2_querymenu);
    encoder_cmd(VIDIOC_ENCODER_CMD, sys::v4l2_encoder_cmd);
}

/// The `v4l` crate opens without `O_CLOEXEC`; a child process must not keep
/// a camera busy. Best effort.
fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on an fd we own only changes its close-on-exec flag.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock V4L2 stamps buffers with.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

fn timeval_to_ns(tv: &sys::timeval) -> u64 {
    let sec = u64::try_from(tv.tv_sec).unwrap_or(0);
    let usec = u64::try_from(tv.tv_usec).unwrap_or(0);
    sec.saturating_mul(1_000_000_000)
        .saturating_add(usec.saturating_mul(1_000))
}

fn ns_to_timeval(ns: u64) -> sys::timeval {
    sys::timeval {
        tv_sec: (ns / 1_000_000_000) as _,
        tv_usec: ((ns % 1_000_000_000) / 1_000) as _,
    }
}

/// A fixed-size, NUL-padded kernel string; bytes that are not UTF-8 (a
/// name cut mid-character) become U+FFFD instead of failing.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn io_err(op: &'static str, e: &io::Error) -> DevError {
    DevError::new(op, e.raw_os_error().unwrap_or(EIO))
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(EIO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4l2::{flags, ENOENT};

    /// A fresh empty directory under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "roomcast-v4l2-{tag}-{}-{}",
            std::process::id(),
            monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lists_video_nodes_in_numeric_order() {
        let dir = temp_dir("list");
        for name in [
            "video0", "video10", "video2", "other", "video", "videox", "video1a",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let listed = LinuxBackend::with_dir(&dir).list();
        let want: Vec<String> = ["video0", "video2", "video10"]
            .iter()
            .map(|n| dir.join(n).to_string_lossy().into_owned())
            .collect();
        assert_eq!(listed, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_directory_lists_nothing() {
        let dir = temp_dir("gone");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(LinuxBackend::with_dir(&dir).list().is_empty());
    }

    #[test]
    fn opening_a_missing_node_is_enoent() {
        let dir = temp_dir("missing");
        let path = dir.join("video7");
        let err = LinuxBackend::with_dir(&dir)
            .open(path.to_str().unwrap())
            .err()
            .expect("opening a missing node must fail");
        assert_eq!(err, DevError::new("open", ENOENT));
        assert!(err.is_gone());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_v4l2_fails_querycap_cleanly() {
        // qemu-user answers ioctls it cannot translate with ENOSYS.
        let not_v4l2 = |e: &DevError| {
            e.op == "VIDIOC_QUERYCAP" && (e.errno == libc::ENOTTY || e.errno == libc::ENOSYS)
        };
        let err = LinuxDevice::open("/dev/null")
            .err()
            .expect("/dev/null is no V4L2 device");
        assert!(not_v4l2(&err), "{err:?}");
        assert!(err.to_string().starts_with("VIDIOC_QUERYCAP: "), "{err}");

        // A plain file named like a node, as a test directory holds.
        let dir = temp_dir("plain");
        let path = dir.join("video0");
        std::fs::write(&path, b"not a camera").unwrap();
        let backend = LinuxBackend::with_dir(&dir);
        let listed = backend.list();
        assert_eq!(listed.len(), 1);
        let err = backend.open(&listed[0]).err().expect("a plain file");
        assert!(not_v4l2(&err), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn video_numbers_are_digits_only() {
        assert_eq!(video_number("video0"), Some(0));
        assert_eq!(video_number("video31"), Some(31));
        for name in ["video", "video+1", "video-1", "videox", "vbi0", "video1 "] {
            assert_eq!(video_number(name), None, "{name}");
        }
    }

    /// The bindgen structs must have the kernel's layout, or every ioctl
    /// code (built from their sizes) is wrong. Sizes and codes for 64-bit
    /// Linux, from `linux/videodev2.h`.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn struct_sizes_and_ioctl_codes_match_the_kernel_abi() {
        assert_eq!(mem::size_of::<sys::v4l2_capability>(), 104);
        assert_eq!(mem::size_of::<sys::v4l2_format>(), 208);
        assert_eq!(mem::size_of::<sys::v4l2_buffer>(), 88);
        assert_eq!(mem::size_of::<sys::v4l2_plane>(), 64);
        assert_eq!(mem::size_of::<sys::v4l2_requestbuffers>(), 20);
        assert_eq!(mem::size_of::<sys::v4l2_streamparm>(), 204);
        assert_eq!(mem::size_of::<sys::v4l2_queryctrl>(), 68);
        assert_eq!(mem::size_of::<sys::v4l2_querymenu>(), 44);
        assert_eq!(mem::size_of::<sys::v4l2_encoder_cmd>(), 40);
        assert_eq!(vidioc::VIDIOC_QUERYCAP as u32, 0x8068_5600);
        assert_eq!(vidioc::VIDIOC_S_FMT as u32, 0xc0d0_5605);
        assert_eq!(vidioc::VIDIOC_REQBUFS as u32, 0xc014_5608);
        assert_eq!(vidioc::VIDIOC_QBUF as u32, 0xc058_560f);
        assert_eq!(vidioc::VIDIOC_DQBUF as u32, 0xc058_5611);
        assert_eq!(vidioc::VIDIOC_STREAMON as u32, 0x4004_5612);
        assert_eq!(vidioc::VIDIOC_S_PARM as u32, 0xc0cc_5616);
        assert_eq!(vidioc::VIDIOC_QUERYCTRL as u32, 0xc044_5624);
        assert_eq!(vidioc::VIDIOC_ENCODER_CMD as u32, 0xc028_564d);
    }

    #[test]
    fn buffer_flags_match_the_kernel() {
        assert_eq!(flags::KEYFRAME, sys::V4L2_BUF_FLAG_KEYFRAME);
        assert_eq!(flags::ERROR, sys::V4L2_BUF_FLAG_ERROR);
        assert_eq!(flags::LAST, sys::V4L2_BUF_FLAG_LAST);
        assert_eq!(
            flags::TIMESTAMP_MONOTONIC,
            sys::V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC
        );
    }

    #[test]
    fn timestamps_travel_as_microseconds() {
        let ns = 1_234_567_891_234_567;
        let tv = ns_to_timeval(ns);
        assert_eq!(tv.tv_sec, 1_234_567);
        assert_eq!(tv.tv_usec, 891_234);
        assert_eq!(timeval_to_ns(&tv), 1_234_567_891_234_000);
        assert_eq!(timeval_to_ns(&ns_to_timeval(0)), 0);
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_ns();
        assert!(a > 0 && b >= a + 1_000_000, "{a} {b}");
    }

    #[test]
    fn kernel_strings_stop_at_nul_and_survive_bad_utf8() {
        assert_eq!(c_string(b"uvcvideo\0\0\0"), "uvcvideo");
        assert_eq!(c_string(b"full"), "full");
        // "é" cut after its first byte, as a 32-byte card name can be.
        assert_eq!(c_string(b"Cam\xc3\0"), "Cam\u{fffd}");
    }

    /// MANUAL, on a machine with a camera at /dev/video0 (skips otherwise):
    /// `cargo test --release -p roomcast --lib v4l2::linux -- --ignored --nocapture`.
    /// Enumerates, sets a format, streams 10 frames and checks their
    /// timestamps against the monotonic clock.
    #[test]
    #[ignore = "needs a V4L2 camera at /dev/video0"]
    fn real_camera_streams_ten_frames() {
        let backend = LinuxBackend::new();
        if !backend.list().iter().any(|p| p == "/dev/video0") {
            eprintln!("no /dev/video0: skipped");
            return;
        }
        let mut dev = backend.open("/dev/video0").expect("open /dev/video0");
        let caps = dev.caps().unwrap();
        eprintln!("{caps:?}");
        assert!(
            caps.video_capture && caps.streaming,
            "not a streaming camera"
        );

        let formats = dev.enum_formats(Queue::Capture).unwrap();
        eprintln!("formats: {formats:?}");
        let preferred = [FourCc::YUYV, FourCc::NV12, FourCc::MJPG, FourCc::YU12];
        let fourcc = preferred
            .into_iter()
            .find(|f| formats.iter().any(|d| d.fourcc == *f))
            .unwrap_or(formats[0].fourcc);
        let sizes = dev.enum_frame_sizes(fourcc).unwrap();
        eprintln!("{fourcc} sizes: {sizes:?}");
        let (w, h) = match &sizes {
            FrameSizes::Discrete(list) => {
                *list.iter().find(|s| **s == (640, 480)).unwrap_or(&list[0])
            }
            FrameSizes::Stepwise { min, max, .. } => {
                (640.clamp(min.0, max.0), 480.clamp(min.1, max.1))
            }
        };
        eprintln!("intervals: {:?}", dev.enum_frame_intervals(fourcc, w, h));
        for c in dev.controls().unwrap() {
            eprintln!("control {c:?} = {:?}", dev.control(c.id));
        }

        let got = dev
            .set_format(Queue::Capture, &Format::request(fourcc, w, h))
            .unwrap();
        eprintln!("format: {got:?}");
        assert_eq!(got, dev.format(Queue::Capture).unwrap());
        assert!(got.sizeimage > 0);
        eprintln!(
            "interval: {:?}",
            dev.set_interval(Queue::Capture, Interval::from_fps(30))
        );

        let n = dev.request_buffers(Queue::Capture, 4).unwrap();
        assert!(n >= 1);
        for i in 0..n {
            assert!(dev.buffer(Queue::Capture, i).unwrap().len() >= got.sizeimage as usize);
            dev.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
        }
        assert_eq!(
            dev.buffer_mut(Queue::Capture, 0).err(),
            Some(DevError::new("buffer", EBUSY))
        );
        dev.stream_on(Queue::Capture).unwrap();
        let mut last_ts = 0;
        let mut last_seq = None;
        for _ in 0..10 {
            assert!(
                dev.wait(Queue::Capture, Duration::from_secs(5)).unwrap(),
                "no frame in 5 s"
            );
            let d = dev.dequeue_buffer(Queue::Capture).unwrap();
            let now = dev.now_ns();
            eprintln!("{d:?}, {} µs old", (now - d.timestamp_ns) / 1000);
            assert!(d.bytesused > 0);
            assert!(d.timestamp_ns > last_ts && d.timestamp_ns <= now);
            assert!(
                now - d.timestamp_ns < 1_000_000_000,
                "timestamp not CLOCK_MONOTONIC"
            );
            if let Some(s) = last_seq {
                assert!(d.sequence > s);
            }
            last_ts = d.timestamp_ns;
            last_seq = Some(d.sequence);
            assert!(
                !dev.buffer(Queue::Capture, d.index).unwrap()[..d.bytesused as usize].is_empty()
            );
            dev.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
        }
        assert_eq!(
            dev.request_buffers(Queue::Capture, 0).err(),
            Some(DevError::new("VIDIOC_REQBUFS", EBUSY))
        );
        dev.stream_off(Queue::Capture).unwrap();
        assert_eq!(dev.request_buffers(Queue::Capture, 0).unwrap(), 0);
    }

    /// MANUAL, on a Pi (bcm2835-codec encoder at /dev/video11; skips
    /// otherwise): `cargo test --release -p roomcast --lib v4l2::linux --
    /// --ignored --nocapture`. Encodes a few grey pictures through the
    /// multi-planar M2M path and drains.
    #[test]
    #[ignore = "needs a V4L2 M2M H.264 encoder at /dev/video11"]
    fn real_encoder_encodes_and_drains() {
        let Ok(mut dev) = LinuxDevice::open("/dev/video11") else {
            eprintln!("no /dev/video11: skipped");
            return;
        };
        let caps = dev.caps().unwrap();
        eprintln!("{caps:?}");
        assert!(caps.m2m);
        let coded = dev
            .set_format(Queue::Capture, &Format::request(FourCc::H264, 640, 480))
            .unwrap();
        assert_eq!(coded.fourcc, FourCc::H264);
        eprintln!("raw inputs: {:?}", dev.enum_formats(Queue::Output).unwrap());
        let raw = dev
            .set_format(Queue::Output, &Format::request(FourCc::YU12, 640, 480))
            .unwrap();
        eprintln!("coded {coded:?}, raw {raw:?}");
        eprintln!(
            "interval: {:?}",
            dev.set_interval(Queue::Output, Interval::from_fps(30))
        );
        let outs = dev.request_buffers(Queue::Output, 4).unwrap();
        let caps_n = dev.request_buffers(Queue::Capture, 4).unwrap();
        for i in 0..caps_n {
            dev.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
        }
        dev.stream_on(Queue::Output).unwrap();
        dev.stream_on(Queue::Capture).unwrap();
        let t0 = dev.now_ns();
        for i in 0..outs {
            dev.buffer_mut(Queue::Output, i).unwrap().fill(0x80);
            dev.queue_buffer(
                Queue::Output,
                i,
                raw.sizeimage,
                t0 + u64::from(i) * 33_333_000,
            )
            .unwrap();
        }
        dev.encoder_command(EncoderCmd::Stop).unwrap();
        let mut frames = 0;
        loop {
            if !dev.wait(Queue::Capture, Duration::from_secs(5)).unwrap() {
                panic!("encoder produced nothing in 5 s");
            }
            match dev.dequeue_buffer(Queue::Capture) {
                Ok(d) => {
                    eprintln!("{d:?}");
                    let data =
                        &dev.buffer(Queue::Capture, d.index).unwrap()[..d.bytesused as usize];
                    if d.bytesused > 0 {
                        assert!(data.starts_with(&[0, 0, 0, 1]) || data.starts_with(&[0, 0, 1]));
                        assert!(d.timestamp_ns >= t0 / 1000 * 1000);
                        frames += 1;
                    }
                    if d.flags & flags::LAST != 0 {
                        break;
                    }
                    dev.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
                }
                Err(e) if e.is_drained() => break,
                Err(e) if e.is_again() => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(frames > 0);
        dev.stream_off(Queue::Capture).unwrap();
        dev.stream_off(Queue::Output).unwrap();
    }
}
