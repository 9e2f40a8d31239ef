//! Video4Linux2: cameras (capture) and stateful memory-to-memory encoders.
//!
//! Everything above the kernel talks to a [`Device`], a small trait at the
//! level of the V4L2 ioctls (`VIDIOC_S_FMT`, `VIDIOC_QBUF`, …) with the
//! kernel's rules spelled out in each method's doc. Two implementations:
//!
//! * [`linux`]: real device nodes through the `v4l` crate (MMAP streaming);
//! * [`fake`]: a device that follows the same documented state machine —
//!   format negotiation, buffer ownership, `EAGAIN`, `ENODEV` on unplug,
//!   monotonic timestamps, the encoder's drain — so capture and M2M code is
//!   tested on machines without cameras (CI has no V4L2 drivers at all).
//!
//! A [`Backend`] lists and opens device nodes, so hot-plug is a question the
//! supervisor asks the backend, not a udev dependency.

#[cfg(target_os = "linux")]
pub mod linux;
pub mod mode;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Real `/dev/video*` nodes (none outside Linux); `crate::sim::backend`
/// picks the simulator instead when asked to.
#[cfg(target_os = "linux")]
pub fn real_backend() -> Arc<dyn Backend> {
    Arc::new(linux::LinuxBackend::new())
}

#[cfg(not(target_os = "linux"))]
pub fn real_backend() -> Arc<dyn Backend> {
    no_devices()
}

/// A backend without devices: V4L2 outside Linux, and tests that must not
/// see the machine's cameras.
pub fn no_devices() -> Arc<dyn Backend> {
    struct NoDevices;
    impl Backend for NoDevices {
        fn list(&self) -> Vec<String> {
            Vec::new()
        }
        fn open(&self, _path: &str) -> DevResult<Box<dyn Device>> {
            Err(DevError::new("open", ENODEV))
        }
    }
    Arc::new(NoDevices)
}

/// Whether `dev` is an M2M device producing H.264 from a raw format we feed.
pub fn is_h264_encoder(dev: &dyn Device) -> bool {
    let m2m = dev.caps().is_ok_and(|c| c.m2m && c.streaming);
    let has = |q, f: &[FourCc]| {
        dev.enum_formats(q)
            .is_ok_and(|fs| fs.iter().any(|d| f.contains(&d.fourcc)))
    };
    m2m && has(Queue::Capture, &[FourCc::H264]) && has(Queue::Output, &[FourCc::YU12, FourCc::NV12])
}

/// Describes every camera and encoder `backend` has, for `/api/devices`.
/// Devices that cannot be opened or are neither are left out.
pub fn describe(backend: &dyn Backend) -> Vec<DeviceInfo> {
    backend
        .list()
        .into_iter()
        .filter_map(|path| {
            let dev = backend.open(&path).ok()?;
            let caps = dev.caps().ok()?;
            let (kind, modes, encoder_inputs) = if caps.video_capture && !caps.m2m {
                ("camera", mode::list_modes(dev.as_ref()).ok()?, Vec::new())
            } else if is_h264_encoder(dev.as_ref()) {
                let inputs = dev.enum_formats(Queue::Output).ok()?;
                (
                    "encoder",
                    Vec::new(),
                    inputs.iter().map(|f| f.fourcc.to_string()).collect(),
                )
            } else {
                return None;
            };
            Some(DeviceInfo {
                path,
                driver: caps.driver,
                card: caps.card,
                bus_info: caps.bus_info,
                kind,
                modes,
                encoder_inputs,
            })
        })
        .collect()
}

/// A V4L2 pixel format code (`v4l2_fourcc`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    /// Packed 4:2:2, Y0 U Y1 V (`V4L2_PIX_FMT_YUYV`): what UVC cameras send raw.
    pub const YUYV: FourCc = FourCc(*b"YUYV");
    /// Y plane then interleaved UV at half resolution (`V4L2_PIX_FMT_NV12`).
    pub const NV12: FourCc = FourCc(*b"NV12");
    /// Planar I420 (`V4L2_PIX_FMT_YUV420`); what openh264 takes.
    pub const YU12: FourCc = FourCc(*b"YU12");
    /// Motion JPEG (`V4L2_PIX_FMT_MJPEG`).
    pub const MJPG: FourCc = FourCc(*b"MJPG");
    /// H.264 Annex-B with start codes (`V4L2_PIX_FMT_H264`).
    pub const H264: FourCc = FourCc(*b"H264");

    /// The kernel's little-endian u32 form.
    pub fn to_u32(self) -> u32 {
        u32::from_le_bytes(self.0)
    }

    pub fn from_u32(v: u32) -> Self {
        FourCc(v.to_le_bytes())
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which buffer queue. A camera has only `Capture`; a memory-to-memory
/// encoder takes raw pictures on `Output` and gives H.264 on `Capture`
/// (the kernel names queues from the application's point of view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    Capture,
    Output,
}

/// `VIDIOC_QUERYCAP`, reduced to what we decide on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// `V4L2_CAP_VIDEO_CAPTURE(_MPLANE)`: a camera.
    pub video_capture: bool,
    /// `V4L2_CAP_VIDEO_M2M(_MPLANE)`: a memory-to-memory device (codec).
    pub m2m: bool,
    /// `V4L2_CAP_STREAMING`: MMAP/DMABUF streaming I/O.
    pub streaming: bool,
    /// The device uses the multi-planar API (`*_MPLANE`).
    pub mplane: bool,
}

/// `VIDIOC_ENUM_FMT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatDesc {
    pub fourcc: FourCc,
    pub description: String,
    /// `V4L2_FMT_FLAG_COMPRESSED`.
    pub compressed: bool,
}

/// `VIDIOC_ENUM_FRAMESIZES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSizes {
    Discrete(Vec<(u32, u32)>),
    /// Continuous sizes are `Stepwise` with steps of 1.
    Stepwise {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

/// Seconds per frame as a fraction (`struct v4l2_fract`), e.g. 1/30.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub num: u32,
    pub den: u32,
}

impl Interval {
    pub fn from_fps(fps: u32) -> Self {
        Interval { num: 1, den: fps }
    }

    /// Frames per second, rounded down; 0 for a degenerate fraction.
    pub fn fps(&self) -> u32 {
        self.den.checked_div(self.num).unwrap_or(0)
    }

    /// Frames per second exactly, for comparisons (29.97 < 30).
    pub fn fps_f64(&self) -> f64 {
        if self.num == 0 {
            0.0
        } else {
            f64::from(self.den) / f64::from(self.num)
        }
    }
}

/// `VIDIOC_ENUM_FRAMEINTERVALS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intervals {
    Discrete(Vec<Interval>),
    Stepwise {
        min: Interval,
        max: Interval,
        step: Interval,
    },
}

/// One queue's format (`VIDIOC_G_FMT`/`S_FMT`), single-plane view: every
/// format we use keeps all its planes in one buffer, also on `_MPLANE`
/// drivers (NV12, not NV12M).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub fourcc: FourCc,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane; the driver may pad it.
    pub bytesperline: u32,
    /// Bytes a buffer must hold.
    pub sizeimage: u32,
}

impl Format {
    /// A request: the driver fills in the strides and sizes.
    pub fn request(fourcc: FourCc, width: u32, height: u32) -> Self {
        Format {
            fourcc,
            width,
            height,
            bytesperline: 0,
            sizeimage: 0,
        }
    }
}

/// `v4l2_buffer.flags` bits we look at.
pub mod flags {
    pub const MAPPED: u32 = 0x0000_0001;
    pub const QUEUED: u32 = 0x0000_0002;
    pub const DONE: u32 = 0x0000_0004;
    pub const KEYFRAME: u32 = 0x0000_0008;
    /// The data may be corrupt (dropped USB packets); the buffer still
    /// comes back and must be requeued.
    pub const ERROR: u32 = 0x0000_0040;
    pub const TIMESTAMP_MONOTONIC: u32 = 0x0000_2000;
    /// The last buffer of an encoder drain (`V4L2_BUF_FLAG_LAST`).
    pub const LAST: u32 = 0x0010_0000;
}

/// A buffer handed back by `VIDIOC_DQBUF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dequeued {
    pub index: u32,
    pub bytesused: u32,
    pub flags: u32,
    /// CLOCK_MONOTONIC nanoseconds (see [`Device::now_ns`]): the moment the
    /// first byte was captured; an encoder copies it from the `Output`
    /// buffer the picture came in.
    pub timestamp_ns: u64,
    /// Frame counter; a gap means the driver dropped frames.
    pub sequence: u32,
}

/// `VIDIOC_ENCODER_CMD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderCmd {
    /// `V4L2_ENC_CMD_STOP`: drain — encode what is queued, mark the last
    /// `Capture` buffer `LAST`, then `DQBUF` on `Capture` fails with `EPIPE`.
    Stop,
    /// `V4L2_ENC_CMD_START`: resume after a drain.
    Start,
}

/// Kinds of controls (`VIDIOC_QUERYCTRL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlKind {
    Integer,
    Boolean,
    /// `VIDIOC_QUERYMENU` items as (value, name).
    Menu(Vec<(i64, String)>),
    Button,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlInfo {
    pub id: u32,
    pub name: String,
    pub kind: ControlKind,
    pub min: i64,
    pub max: i64,
    pub step: u64,
    pub default: i64,
}

/// Control ids (`linux/v4l2-controls.h`).
pub mod cid {
    pub const BRIGHTNESS: u32 = 0x0098_0900;
    pub const AUTO_WHITE_BALANCE: u32 = 0x0098_090c;
    /// Menu: 0 disabled, 1 50 Hz, 2 60 Hz, 3 auto.
    pub const POWER_LINE_FREQUENCY: u32 = 0x0098_0918;
    /// Menu: 0 auto, 1 manual, 2 shutter priority, 3 aperture priority.
    pub const EXPOSURE_AUTO: u32 = 0x009a_0901;
    pub const MPEG_VIDEO_BITRATE_MODE: u32 = 0x0099_09ce;
    pub const MPEG_VIDEO_BITRATE: u32 = 0x0099_09cf;
    /// Menu: 0 separate buffer, 1 joined with the first frame.
    pub const MPEG_VIDEO_HEADER_MODE: u32 = 0x0099_09d8;
    pub const MPEG_VIDEO_REPEAT_SEQ_HEADER: u32 = 0x0099_09e2;
    pub const MPEG_VIDEO_FORCE_KEY_FRAME: u32 = 0x0099_09e5;
    pub const MPEG_VIDEO_H264_I_PERIOD: u32 = 0x0099_0a66;
    pub const MPEG_VIDEO_H264_LEVEL: u32 = 0x0099_0a67;
    pub const MPEG_VIDEO_H264_PROFILE: u32 = 0x0099_0a6b;
    /// `V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE`.
    pub const H264_PROFILE_CONSTRAINED_BASELINE: i64 = 1;
    /// `V4L2_MPEG_VIDEO_BITRATE_MODE_CBR`.
    pub const BITRATE_MODE_CBR: i64 = 1;
}

/// An ioctl that failed, with the kernel's errno.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {}", std::io::Error::from_raw_os_error(*.errno))]
pub struct DevError {
    /// The ioctl or call, e.g. `"VIDIOC_DQBUF"`.
    pub op: &'static str,
    pub errno: i32,
}

pub const EAGAIN: i32 = 11;
pub const EINVAL: i32 = 22;
pub const EBUSY: i32 = 16;
pub const ENODEV: i32 = 19;
pub const ENOENT: i32 = 2;
pub const EPIPE: i32 = 32;
pub const EIO: i32 = 5;

impl DevError {
    pub fn new(op: &'static str, errno: i32) -> Self {
        DevError { op, errno }
    }
    /// Nothing ready yet (non-blocking `DQBUF`).
    pub fn is_again(&self) -> bool {
        self.errno == EAGAIN
    }
    /// The device is gone (unplugged); close it.
    pub fn is_gone(&self) -> bool {
        self.errno == ENODEV || self.errno == ENOENT
    }
    /// `DQBUF` after the last buffer of a drain.
    pub fn is_drained(&self) -> bool {
        self.errno == EPIPE
    }
}

pub type DevResult<T> = Result<T, DevError>;

/// One open V4L2 device node, at the level of its ioctls. Buffers are
/// always `V4L2_MEMORY_MMAP`. The rules below are the kernel's, and the fake
/// enforces them so code that passes against it does not surprise a driver.
pub trait Device: Send {
    /// `VIDIOC_QUERYCAP`.
    fn caps(&self) -> DevResult<Caps>;
    /// `VIDIOC_ENUM_FMT` on `queue`.
    fn enum_formats(&self, queue: Queue) -> DevResult<Vec<FormatDesc>>;
    /// `VIDIOC_ENUM_FRAMESIZES` (`EINVAL` for a format the device lacks).
    fn enum_frame_sizes(&self, fourcc: FourCc) -> DevResult<FrameSizes>;
    /// `VIDIOC_ENUM_FRAMEINTERVALS` for one size (`EINVAL` if unsupported).
    fn enum_frame_intervals(&self, fourcc: FourCc, width: u32, height: u32)
        -> DevResult<Intervals>;
    /// `VIDIOC_G_FMT`.
    fn format(&self, queue: Queue) -> DevResult<Format>;
    /// `VIDIOC_S_FMT`: the driver adjusts what it cannot do (nearest size,
    /// its own stride) and returns what it set; `EBUSY` while the queue has
    /// buffers allocated.
    fn set_format(&mut self, queue: Queue, want: &Format) -> DevResult<Format>;
    /// `VIDIOC_S_PARM` time-per-frame; returns the interval the driver chose.
    fn set_interval(&mut self, queue: Queue, want: Interval) -> DevResult<Interval>;
    /// `VIDIOC_QUERYCTRL` + `VIDIOC_QUERYMENU` for every control.
    fn controls(&self) -> DevResult<Vec<ControlInfo>>;
    /// `VIDIOC_G_CTRL`.
    fn control(&self, id: u32) -> DevResult<i64>;
    /// `VIDIOC_S_CTRL` (`EINVAL` for an unknown id, `ERANGE` out of range).
    fn set_control(&mut self, id: u32, value: i64) -> DevResult<()>;
    /// `VIDIOC_REQBUFS` with MMAP memory; returns how many buffers the
    /// driver allocated (may differ from `count`). `count == 0` frees them;
    /// `EBUSY` while streaming.
    fn request_buffers(&mut self, queue: Queue, count: u32) -> DevResult<u32>;
    /// The mapped memory of buffer `index` (`length` bytes).
    fn buffer(&self, queue: Queue, index: u32) -> DevResult<&[u8]>;
    /// The mapped memory of buffer `index`, to fill an `Output` buffer.
    /// Only while the application owns it (not queued).
    fn buffer_mut(&mut self, queue: Queue, index: u32) -> DevResult<&mut [u8]>;
    /// `VIDIOC_QBUF`: hands buffer `index` to the driver. For `Output`
    /// buffers `bytesused` and `timestamp_ns` say what is in it. `EINVAL` if
    /// `index` is out of range or already queued.
    fn queue_buffer(
        &mut self,
        queue: Queue,
        index: u32,
        bytesused: u32,
        timestamp_ns: u64,
    ) -> DevResult<()>;
    /// `VIDIOC_DQBUF`, non-blocking (the node is opened `O_NONBLOCK`):
    /// `EAGAIN` when nothing is ready, `EINVAL` when not streaming, `EPIPE`
    /// after a drain's last buffer, `ENODEV` once unplugged.
    fn dequeue_buffer(&mut self, queue: Queue) -> DevResult<Dequeued>;
    /// `VIDIOC_STREAMON`.
    fn stream_on(&mut self, queue: Queue) -> DevResult<()>;
    /// `VIDIOC_STREAMOFF`: every buffer returns to the application
    /// unprocessed (dequeued state); a drain in progress is cancelled.
    fn stream_off(&mut self, queue: Queue) -> DevResult<()>;
    /// `poll()`: waits up to `timeout` until a buffer can be dequeued from
    /// `queue`. `Ok(false)` on timeout; an unplugged device returns `ENODEV`.
    fn wait(&self, queue: Queue, timeout: Duration) -> DevResult<bool>;
    /// `VIDIOC_ENCODER_CMD`; `EBUSY` for a second `Stop` while draining.
    fn encoder_command(&mut self, cmd: EncoderCmd) -> DevResult<()>;
    /// Now on the clock buffers are stamped with (CLOCK_MONOTONIC), so a
    /// caller can tell how old a buffer is.
    fn now_ns(&self) -> u64;
}

/// Lists and opens device nodes.
pub trait Backend: Send + Sync {
    /// The video device nodes present now (e.g. `/dev/video0`), sorted.
    fn list(&self) -> Vec<String>;
    /// Opens one, non-blocking (`ENOENT`/`ENODEV` if absent).
    fn open(&self, path: &str) -> DevResult<Box<dyn Device>>;
}

/// Everything a user needs to pick a source or an encoder: one entry of
/// `/api/devices`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    pub path: String,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// `"camera"` or `"encoder"` (an M2M device with H.264 on `Capture`);
    /// other devices (decoders, metadata nodes) are not listed.
    pub kind: &'static str,
    /// Camera modes; empty for encoders.
    pub modes: Vec<Mode>,
    /// Raw formats an encoder takes on its `Output` queue.
    pub encoder_inputs: Vec<String>,
}

/// One capture mode: a format at one size and frame rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mode {
    #[serde(serialize_with = "ser_fourcc")]
    pub fourcc: FourCc,
    pub width: u32,
    pub height: u32,
    pub interval: Interval,
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Interval", 3)?;
        st.serialize_field("num", &self.num)?;
        st.serialize_field("den", &self.den)?;
        st.serialize_field("fps", &self.fps_f64())?;
        st.end()
    }
}

fn ser_fourcc<S: serde::Serializer>(f: &FourCc, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(f.as_str())
}
