//! One open camera: negotiate its mode, set its controls, stream MMAP
//! buffers and turn each into an I420 picture (or, for pass-through, the
//! camera's own H.264). Reopening after unplug or stall is the caller's job
//! ([`crate::source::camera`]); this type only reports what went wrong.

use crate::base::frame::I420Frame;
use crate::source::convert::{self, ConvertError, MjpegDecoder};
use crate::v4l2::mode::{self, NegotiateError, Want};
use crate::v4l2::{cid, flags, Backend, DevError, Device, Format, FourCc, Mode, Queue};
use std::time::Duration;

/// Buffers asked of the driver: enough that the app can hold one while the
/// driver fills the others at 30 fps without dropping.
const BUFFERS: u32 = 4;

/// Camera settings a user can change (applied at open and live); part of
/// the configuration.
pub use crate::config::CameraControls as Controls;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: DevError },
    #[error("{path} is not a camera (driver {driver:?})")]
    NotACamera { path: String, driver: String },
    #[error("{path}: {source}")]
    Negotiate {
        path: String,
        source: NegotiateError,
    },
    #[error("camera unplugged")]
    Gone,
    #[error("camera error: {0}")]
    Device(DevError),
}

impl From<DevError> for CaptureError {
    fn from(e: DevError) -> Self {
        if e.is_gone() {
            CaptureError::Gone
        } else {
            CaptureError::Device(e)
        }
    }
}

/// What one dequeued buffer became.
#[derive(Debug)]
pub enum Captured {
    /// Converted into the caller's picture.
    Picture,
    /// The camera's H.264 access unit (pass-through).
    H264 { data: Vec<u8>, keyframe: bool },
}

/// A frame, with the device's timestamp.
#[derive(Debug)]
pub struct Frame {
    pub what: Captured,
    /// CLOCK_MONOTONIC ns (the device's clock, see [`Device::now_ns`]).
    pub timestamp_ns: u64,
}

/// An open, streaming camera.
pub struct Camera {
    dev: Box<dyn Device>,
    pub path: String,
    pub card: String,
    pub mode: Mode,
    format: Format,
    mjpeg: Option<MjpegDecoder>,
    last_sequence: Option<u32>,
    /// Frames the driver dropped (sequence gaps) or flagged corrupt.
    pub dropped: u64,
    /// Buffers that could not be converted (truncated, bad JPEG).
    pub bad: u64,
    /// Control problems at open (unsupported, out of range), for status.
    pub warnings: Vec<String>,
}

impl Camera {
    /// Opens `path`, picks the mode for `want` ([`mode::choose`]), applies
    /// `controls` and starts streaming.
    pub fn open(
        backend: &dyn Backend,
        path: &str,
        want: Want,
        controls: &Controls,
    ) -> Result<Camera, CaptureError> {
        let open_err = |source| CaptureError::Open {
            path: path.to_string(),
            source,
        };
        let mut dev = backend.open(path).map_err(open_err)?;
        let caps = dev.caps().map_err(open_err)?;
        if !caps.video_capture || !caps.streaming {
            return Err(CaptureError::NotACamera {
                path: path.into(),
                driver: caps.driver,
            });
        }
        let modes = mode::list_modes(dev.as_ref())?;
        let chosen = mode::choose(&modes, want).map_err(|source| CaptureError::Negotiate {
            path: path.into(),
            source,
        })?;
        let format = dev.set_format(
            Queue::Capture,
            &Format::request(chosen.fourcc, chosen.width, chosen.height),
        )?;
        // Drivers may adjust; what they set is what we read.
        let interval = dev.set_interval(Queue::Capture, chosen.interval)?;
        let mode = Mode {
            fourcc: format.fourcc,
            width: format.width,
            height: format.height,
            interval,
        };
        let mut cam = Camera {
            dev,
            path: path.into(),
            card: caps.card,
            mode,
            format,
            mjpeg: (format.fourcc == FourCc::MJPG).then(MjpegDecoder::new),
            last_sequence: None,
            dropped: 0,
            bad: 0,
            warnings: Vec::new(),
        };
        cam.warnings = cam.apply_controls(controls);
        let n = cam.dev.request_buffers(Queue::Capture, BUFFERS)?;
        for i in 0..n {
            cam.dev.queue_buffer(Queue::Capture, i, 0, 0)?;
        }
        cam.dev.stream_on(Queue::Capture)?;
        Ok(cam)
    }

    /// Sets the user's controls where the camera has them; returns what
    /// could not be set (a camera without a control is not an error).
    pub fn apply_controls(&mut self, c: &Controls) -> Vec<String> {
        let have: Vec<_> = self.dev.controls().unwrap_or_default();
        let mut warnings = Vec::new();
        let mut set = |id: u32, value: i64, what: &str| {
            let Some(info) = have.iter().find(|i| i.id == id) else {
                return;
            };
            let value = match &info.kind {
                crate::v4l2::ControlKind::Menu(items)
                    if !items.iter().any(|(v, _)| *v == value) =>
                {
                    // Exposure "auto" is aperture priority on UVC cameras.
                    match items
                        .iter()
                        .find(|(v, _)| *v == 3 && id == cid::EXPOSURE_AUTO)
                    {
                        Some((v, _)) => *v,
                        None => {
                            warnings.push(format!("{what}: the camera does not offer {value}"));
                            return;
                        }
                    }
                }
                _ => value,
            };
            if value < info.min || value > info.max {
                warnings.push(format!(
                    "{what} {value} is outside the camera's {}..{}",
                    info.min, info.max
                ));
                return;
            }
            if let Err(e) = self.dev.set_control(id, value) {
                warnings.push(format!("{what}: {e}"));
            }
        };
        let plf = match c.power_line_hz {
            50 => 1,
            60 => 2,
            _ => 0,
        };
        set(cid::POWER_LINE_FREQUENCY, plf, "power line frequency");
        set(
            cid::EXPOSURE_AUTO,
            if c.auto_exposure { 0 } else { 1 },
            "auto exposure",
        );
        set(
            cid::AUTO_WHITE_BALANCE,
            i64::from(c.auto_white_balance),
            "auto white balance",
        );
        if let Some(b) = c.brightness {
            set(cid::BRIGHTNESS, i64::from(b), "brightness");
        }
        warnings
    }

    /// Asks a pass-through camera for an IDR (where the driver offers it).
    pub fn request_keyframe(&mut self) {
        let _ = self.dev.set_control(cid::MPEG_VIDEO_FORCE_KEY_FRAME, 1);
    }

    /// The device's clock, to age timestamps.
    pub fn now_ns(&self) -> u64 {
        self.dev.now_ns()
    }

    /// Waits up to `timeout` for a frame. `Ok(None)`: nothing arrived in
    /// time (the caller decides when that becomes a stall). Corrupt or
    /// unconvertible buffers are counted, requeued and skipped.
    pub fn next(
        &mut self,
        timeout: Duration,
        picture: &mut I420Frame,
    ) -> Result<Option<Frame>, CaptureError> {
        if !self.dev.wait(Queue::Capture, timeout)? {
            return Ok(None);
        }
        let buf = match self.dev.dequeue_buffer(Queue::Capture) {
            Ok(b) => b,
            Err(e) if e.is_again() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Some(last) = self.last_sequence {
            self.dropped += u64::from(buf.sequence.wrapping_sub(last).saturating_sub(1));
        }
        self.last_sequence = Some(buf.sequence);
        let result = if buf.flags & flags::ERROR != 0 {
            self.dropped += 1;
            None
        } else {
            let data = self.dev.buffer(Queue::Capture, buf.index)?;
            let data = &data[..(buf.bytesused as usize).min(data.len())];
            match convert_into(&self.format, &mut self.mjpeg, data, picture) {
                Ok(what) => Some(Frame {
                    what,
                    timestamp_ns: buf.timestamp_ns,
                }),
                Err(_) => {
                    self.bad += 1;
                    None
                }
            }
        };
        self.dev.queue_buffer(Queue::Capture, buf.index, 0, 0)?;
        Ok(result)
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        // Errors here mean the device is already gone; nothing to undo.
        let _ = self.dev.stream_off(Queue::Capture);
        let _ = self.dev.request_buffers(Queue::Capture, 0);
    }
}

/// Turns one buffer of `format` into `picture` (or H.264 bytes).
fn convert_into(
    format: &Format,
    mjpeg: &mut Option<MjpegDecoder>,
    data: &[u8],
    picture: &mut I420Frame,
) -> Result<Captured, String> {
    let e = |e: ConvertError| e.to_string();
    let (w, h, stride) = (
        format.width as usize,
        format.height as usize,
        format.bytesperline as usize,
    );
    match format.fourcc {
        FourCc::H264 => {
            return Ok(Captured::H264 {
                data: data.to_vec(),
                keyframe: roomcast_media::h264::contains_idr(data),
            });
        }
        FourCc::YUYV => convert::yuyv_to_i420(data, stride, w, h, picture).map_err(e)?,
        FourCc::NV12 => convert::nv12_to_i420(data, stride, w, h, picture).map_err(e)?,
        FourCc::YU12 => convert::i420_to_i420(data, stride, w, h, picture).map_err(e)?,
        FourCc::MJPG => mjpeg
            .get_or_insert_with(MjpegDecoder::new)
            .decode(data, picture)
            .map_err(e)?,
        // Negotiation only picks the formats above.
        other => return Err(format!("cannot read {other} frames")),
    }
    Ok(Captured::Picture)
}
