//! The board's hardware H.264 encoder through the kernel's V4L2
//! "Memory-to-Memory Stateful Video Encoder Interface" (the Pi's
//! bcm2835-codec at /dev/video11, Rockchip/Allwinner encoders likewise).
//!
//! Sequence, as the interface prescribes: coded format on `CAPTURE` first,
//! then the raw format on `OUTPUT` (the driver may align the stride), frame
//! rate by `S_PARM` on `OUTPUT`, codec controls, buffers on both queues, all
//! `CAPTURE` buffers queued, stream on. Each picture goes into a free
//! `OUTPUT` buffer with its timestamp; the driver copies that timestamp to
//! the `CAPTURE` buffer that carries the H.264, which is how we pair them.
//! Closing drains with `V4L2_ENC_CMD_STOP` until the buffer flagged `LAST`.
//!
//! Pictures are copied into the driver's buffers; importing the camera's
//! buffers by DMABUF would save that copy but needs the camera and encoder
//! formats to match, and is not done yet.

use super::{EncodeError, EncodedPicture, EncoderSettings, VideoEncoder};
use crate::base::frame::I420Frame;
use crate::v4l2::{cid, flags, Backend, DevError, Device, Format, FourCc, Interval, Queue};
use roomcast_media::h264::{split_annexb, NalType};
use std::time::Duration;

/// Buffers per queue: the encoder works on one while we fill another.
const BUFFERS: u32 = 4;
/// A hardware encoder answers in milliseconds; much longer means it hung.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Room for one coded picture: generous for 1080p at high bitrates.
const CODED_BUFFER: u32 = 1 << 20;

/// The first device that is a memory-to-memory encoder with H.264 out.
pub fn find(backend: &dyn Backend) -> Option<String> {
    backend.list().into_iter().find(|path| {
        backend
            .open(path)
            .is_ok_and(|dev| is_h264_encoder(dev.as_ref()))
    })
}

pub use crate::v4l2::is_h264_encoder;

pub struct M2mEncoder {
    dev: Box<dyn Device>,
    name: String,
    input: Format,
    free_inputs: Vec<u32>,
    /// `CAPTURE` buffers the driver granted.
    coded_buffers: u32,
    settings: EncoderSettings,
    /// Timestamps we stamp pictures with, one frame apart, to pair outputs.
    next_ts: u64,
    frame_ns: u64,
    /// SPS/PPS from a header-only buffer, put in front of IDRs that lack them.
    headers: Vec<u8>,
    want_keyframe: bool,
    /// After [`M2mEncoder::drain`] until [`M2mEncoder::restart`].
    drained: bool,
}

fn open_err(path: &str, what: &str, e: DevError) -> EncodeError {
    EncodeError::Open(format!("{path}: {what}: {e}"))
}

impl M2mEncoder {
    pub fn open(
        backend: &dyn Backend,
        path: &str,
        settings: EncoderSettings,
    ) -> Result<Self, EncodeError> {
        let mut dev = backend.open(path).map_err(|e| open_err(path, "open", e))?;
        if !is_h264_encoder(dev.as_ref()) {
            return Err(EncodeError::Open(format!(
                "{path} is not a V4L2 H.264 encoder"
            )));
        }
        let card = dev.caps().map(|c| c.card).unwrap_or_default();
        let (w, h) = (settings.width, settings.height);
        let mut coded = Format::request(FourCc::H264, w, h);
        coded.sizeimage = CODED_BUFFER;
        dev.set_format(Queue::Capture, &coded)
            .map_err(|e| open_err(path, "set H.264 format", e))?;
        // I420 needs no conversion; NV12 is what most SoC encoders take.
        let inputs = dev
            .enum_formats(Queue::Output)
            .map_err(|e| open_err(path, "list input formats", e))?;
        let fourcc = [FourCc::YU12, FourCc::NV12]
            .into_iter()
            .find(|f| inputs.iter().any(|d| d.fourcc == *f))
            .unwrap_or(FourCc::YU12);
        let input = dev
            .set_format(Queue::Output, &Format::request(fourcc, w, h))
            .map_err(|e| open_err(path, "set input format", e))?;
        if (input.width, input.height) != (w, h) || input.fourcc != fourcc {
            return Err(EncodeError::Open(format!(
                "{path} cannot encode {w}x{h} (it offers {}x{} {})",
                input.width, input.height, input.fourcc
            )));
        }
        dev.set_interval(Queue::Output, Interval::from_fps(settings.fps))
            .map_err(|e| open_err(path, "set frame rate", e))?;
        dev.set_control(
            cid::MPEG_VIDEO_BITRATE,
            i64::from(settings.bitrate_kbps) * 1000,
        )
        .map_err(|e| open_err(path, "set bitrate", e))?;
        dev.set_control(cid::MPEG_VIDEO_H264_I_PERIOD, i64::from(settings.gop))
            .map_err(|e| open_err(path, "set keyframe interval", e))?;
        // Optional on some drivers: what they lack they do their own way,
        // and the output is checked (SPS/PPS before IDRs) regardless.
        for (id, value) in [
            (cid::MPEG_VIDEO_BITRATE_MODE, cid::BITRATE_MODE_CBR),
            (
                cid::MPEG_VIDEO_H264_PROFILE,
                cid::H264_PROFILE_CONSTRAINED_BASELINE,
            ),
            (cid::MPEG_VIDEO_REPEAT_SEQ_HEADER, 1),
            (cid::MPEG_VIDEO_HEADER_MODE, 1),
        ] {
            let _ = dev.set_control(id, value);
        }
        let n_in = dev
            .request_buffers(Queue::Output, BUFFERS)
            .map_err(|e| open_err(path, "allocate input buffers", e))?;
        let n_out = dev
            .request_buffers(Queue::Capture, BUFFERS)
            .map_err(|e| open_err(path, "allocate output buffers", e))?;
        for i in 0..n_out {
            dev.queue_buffer(Queue::Capture, i, 0, 0)
                .map_err(|e| open_err(path, "queue output buffer", e))?;
        }
        dev.stream_on(Queue::Output)
            .and_then(|()| dev.stream_on(Queue::Capture))
            .map_err(|e| open_err(path, "start streaming", e))?;
        Ok(M2mEncoder {
            dev,
            name: format!("v4l2m2m:{path} ({card})"),
            input,
            free_inputs: (0..n_in).rev().collect(),
            coded_buffers: n_out,
            settings,
            next_ts: 1_000_000_000,
            frame_ns: 1_000_000_000 / u64::from(settings.fps.max(1)),
            headers: Vec::new(),
            want_keyframe: false,
            drained: false,
        })
    }

    /// A free `OUTPUT` buffer: reclaims the ones the driver has finished.
    fn free_input(&mut self) -> Result<u32, EncodeError> {
        loop {
            match self.dev.dequeue_buffer(Queue::Output) {
                Ok(b) => self.free_inputs.push(b.index),
                Err(e) if e.is_again() => break,
                Err(e) => return Err(EncodeError::Encode(e.to_string())),
            }
        }
        if let Some(i) = self.free_inputs.pop() {
            return Ok(i);
        }
        let ready = self
            .dev
            .wait(Queue::Output, TIMEOUT)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        if !ready {
            return Err(EncodeError::Encode(
                "hardware encoder returned no input buffer in 1 s".into(),
            ));
        }
        self.dev
            .dequeue_buffer(Queue::Output)
            .map(|b| b.index)
            .map_err(|e| EncodeError::Encode(e.to_string()))
    }

    /// Copies `p` into `dst` in the driver's layout (stride = bytesperline).
    fn fill(input: &Format, p: &I420Frame, dst: &mut [u8]) -> Result<u32, EncodeError> {
        let (w, h) = (p.width, p.height);
        let stride = (input.bytesperline as usize).max(w);
        let (cw, ch) = (w / 2, h / 2);
        let need = match input.fourcc {
            FourCc::NV12 => stride * h + stride * ch,
            _ => stride * h + 2 * (stride / 2) * ch,
        };
        if dst.len() < need {
            return Err(EncodeError::Encode(format!(
                "input buffer holds {} bytes, picture needs {need}",
                dst.len()
            )));
        }
        let (y, u, v) = p.planes();
        let (dy, rest) = dst.split_at_mut(stride * h);
        for (d, s) in dy.chunks_mut(stride).zip(y.chunks_exact(w)) {
            d[..w].copy_from_slice(s);
        }
        if input.fourcc == FourCc::NV12 {
            for (row, d) in rest.chunks_mut(stride).take(ch).enumerate() {
                let (su, sv) = (&u[row * cw..][..cw], &v[row * cw..][..cw]);
                for (pair, (a, b)) in d[..2 * cw].chunks_exact_mut(2).zip(su.iter().zip(sv)) {
                    pair[0] = *a;
                    pair[1] = *b;
                }
            }
        } else {
            let cs = stride / 2;
            let (du, dv) = rest.split_at_mut(cs * ch);
            for (d, s) in du.chunks_mut(cs).zip(u.chunks_exact(cw)) {
                d[..cw].copy_from_slice(s);
            }
            for (d, s) in dv.chunks_mut(cs).zip(v.chunks_exact(cw)) {
                d[..cw].copy_from_slice(s);
            }
        }
        Ok(need as u32)
    }

    /// Takes one coded buffer off `CAPTURE` (waiting up to the timeout) and
    /// requeues it. `None` after a drain's last buffer.
    fn take_coded(&mut self) -> Result<Option<(Vec<u8>, u32, u64)>, EncodeError> {
        let err = |e: DevError| EncodeError::Encode(e.to_string());
        let buf = match self.dev.dequeue_buffer(Queue::Capture) {
            Ok(b) => b,
            Err(e) if e.is_again() => {
                if !self.dev.wait(Queue::Capture, TIMEOUT).map_err(err)? {
                    return Err(EncodeError::Encode(
                        "hardware encoder produced nothing in 1 s".into(),
                    ));
                }
                match self.dev.dequeue_buffer(Queue::Capture) {
                    Ok(b) => b,
                    Err(e) if e.is_drained() => return Ok(None),
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) if e.is_drained() => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let data = self.dev.buffer(Queue::Capture, buf.index).map_err(err)?;
        let data = data[..(buf.bytesused as usize).min(data.len())].to_vec();
        if buf.flags & flags::LAST == 0 {
            self.dev
                .queue_buffer(Queue::Capture, buf.index, 0, 0)
                .map_err(err)?;
        }
        Ok(Some((data, buf.flags, buf.timestamp_ns)))
    }

    /// Ends the stream: encodes what is queued and returns it, leaving the
    /// encoder drained (`V4L2_ENC_CMD_STOP` until the `LAST` buffer).
    pub fn drain(&mut self) -> Result<Vec<EncodedPicture>, EncodeError> {
        self.dev
            .encoder_command(crate::v4l2::EncoderCmd::Stop)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        self.drained = true;
        let mut out = Vec::new();
        // Bounded: a driver that never sets LAST must not hang shutdown.
        for _ in 0..=self.coded_buffers + BUFFERS {
            match self.take_coded()? {
                Some((data, fl, _)) => {
                    if !data.is_empty() {
                        out.push(self.finish(data, fl));
                    }
                    if fl & flags::LAST != 0 {
                        break;
                    }
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Resumes after [`M2mEncoder::drain`] (`V4L2_ENC_CMD_START`), with the
    /// drained `LAST` buffer back in the driver's hands.
    pub fn restart(&mut self) -> Result<(), EncodeError> {
        let err = |e: DevError| EncodeError::Encode(e.to_string());
        self.dev
            .encoder_command(crate::v4l2::EncoderCmd::Start)
            .map_err(err)?;
        // The LAST buffer was kept; return every CAPTURE buffer we hold by
        // restarting the queue, which the interface also allows.
        self.dev.stream_off(Queue::Capture).map_err(err)?;
        for i in 0..self.coded_buffers {
            self.dev
                .queue_buffer(Queue::Capture, i, 0, 0)
                .map_err(err)?;
        }
        self.dev.stream_on(Queue::Capture).map_err(err)?;
        self.drained = false;
        Ok(())
    }

    /// Makes the access unit self-contained: SPS/PPS in front of IDRs.
    fn finish(&mut self, data: Vec<u8>, fl: u32) -> EncodedPicture {
        let keyframe = fl & flags::KEYFRAME != 0 || roomcast_media::h264::contains_idr(&data);
        let has_sps = split_annexb(&data).any(|n| NalType::of(n) == Some(NalType::Sps));
        let data = if keyframe && !has_sps && !self.headers.is_empty() {
            let mut d = self.headers.clone();
            d.extend_from_slice(&data);
            d
        } else {
            data
        };
        EncodedPicture { data, keyframe }
    }
}

impl VideoEncoder for M2mEncoder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn encode(&mut self, picture: &I420Frame) -> Result<Option<EncodedPicture>, EncodeError> {
        let s = &self.settings;
        if (picture.width as u32, picture.height as u32) != (s.width, s.height) {
            return Err(EncodeError::WrongSize {
                got_w: picture.width as u32,
                got_h: picture.height as u32,
                want_w: s.width,
                want_h: s.height,
            });
        }
        if self.drained {
            return Err(EncodeError::Encode(
                "hardware encoder is drained; it must be restarted".into(),
            ));
        }
        if std::mem::take(&mut self.want_keyframe) {
            let _ = self.dev.set_control(cid::MPEG_VIDEO_FORCE_KEY_FRAME, 1);
        }
        let index = self.free_input()?;
        let input = self.input;
        let dst = self
            .dev
            .buffer_mut(Queue::Output, index)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        let used = Self::fill(&input, picture, dst)?;
        let ts = self.next_ts;
        self.next_ts += self.frame_ns;
        self.dev
            .queue_buffer(Queue::Output, index, used, ts)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        // Header-only buffers (SPS/PPS alone) are kept and the picture's
        // own buffer follows; older pictures' timestamps are not ours.
        loop {
            let Some((data, fl, got_ts)) = self.take_coded()? else {
                return Err(EncodeError::Encode(
                    "hardware encoder is drained; it must be restarted".into(),
                ));
            };
            let vcl = split_annexb(&data).any(|n| NalType::of(n).is_some_and(|t| t.is_vcl()));
            if !vcl {
                self.headers = data;
                continue;
            }
            if got_ts != ts {
                // A stale picture from before a keyframe request or error:
                // skip it, ours follows.
                continue;
            }
            return Ok(Some(self.finish(data, fl)));
        }
    }

    fn request_keyframe(&mut self) {
        self.want_keyframe = true;
    }
}

impl Drop for M2mEncoder {
    fn drop(&mut self) {
        // Best effort: a removed device simply fails these.
        if !self.drained {
            let _ = self.drain();
        }
        let _ = self.dev.stream_off(Queue::Output);
        let _ = self.dev.stream_off(Queue::Capture);
        let _ = self.dev.request_buffers(Queue::Output, 0);
        let _ = self.dev.request_buffers(Queue::Capture, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::SimClock;
    use crate::sim::{CameraSpec, FakeHandle};
    use crate::source::pattern::Pattern;
    use std::sync::Arc;

    use crate::sim::OneNode;

    #[allow(non_snake_case)]
    fn One(h: FakeHandle) -> OneNode {
        OneNode(h, "/dev/video11")
    }

    fn settings() -> EncoderSettings {
        EncoderSettings {
            width: 320,
            height: 240,
            fps: 30,
            bitrate_kbps: 500,
            gop: 10,
            threads: 1,
        }
    }

    fn encoder() -> (OneNode, M2mEncoder) {
        let clock = Arc::new(SimClock::new(0));
        let b = One(FakeHandle::new_encoder(clock));
        let e = M2mEncoder::open(&b, "/dev/video11", settings()).unwrap();
        (b, e)
    }

    fn nal_types(data: &[u8]) -> Vec<NalType> {
        split_annexb(data).filter_map(NalType::of).collect()
    }

    fn picture(n: u64) -> I420Frame {
        let mut p = I420Frame::new(320, 240);
        Pattern::new(320, 240).draw(n, 30, 0, &mut p);
        p
    }

    #[test]
    fn auto_finds_the_encoder_and_not_a_camera() {
        let clock = Arc::new(SimClock::new(0));
        assert_eq!(
            find(&One(FakeHandle::new_encoder(clock.clone()))),
            Some("/dev/video11".into())
        );
        let cam = One(FakeHandle::new_camera(CameraSpec::typical_uvc(), clock));
        assert_eq!(find(&cam), None);
        let e = M2mEncoder::open(&cam, "/dev/video11", settings())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a V4L2 H.264 encoder"), "{e}");
    }

    #[test]
    fn pictures_come_out_as_h264_with_idr_every_gop_and_headers_in_front() {
        let (_b, mut e) = encoder();
        assert!(
            e.name().starts_with("v4l2m2m:/dev/video11 ("),
            "{}",
            e.name()
        );
        for n in 0..25 {
            let out = e
                .encode(&picture(n))
                .unwrap()
                .expect("one picture out per picture in");
            let types = nal_types(&out.data);
            assert_eq!(out.keyframe, n % 10 == 0, "frame {n}: {types:?}");
            if out.keyframe {
                assert!(
                    types.contains(&NalType::Sps) && types.contains(&NalType::Pps),
                    "{types:?}"
                );
                assert!(types.contains(&NalType::Idr));
            } else {
                assert!(types.contains(&NalType::Slice), "{types:?}");
            }
        }
        // A keyframe request makes the next picture an IDR.
        e.request_keyframe();
        assert!(e.encode(&picture(25)).unwrap().unwrap().keyframe);
        assert!(!e.encode(&picture(26)).unwrap().unwrap().keyframe);
        // The wrong size is refused, not sent to the hardware.
        assert!(matches!(
            e.encode(&I420Frame::new(64, 64)),
            Err(EncodeError::WrongSize { .. })
        ));
    }

    #[test]
    fn drain_ends_the_stream_and_restart_resumes_it() {
        let (_b, mut e) = encoder();
        for n in 0..3 {
            e.encode(&picture(n)).unwrap().unwrap();
        }
        // Everything was already collected; the drain ends cleanly.
        let rest = e.drain().unwrap();
        assert!(rest.iter().all(|p| !p.data.is_empty()));
        // Drained: nothing more comes out until restarted.
        let err = e.encode(&picture(3)).unwrap_err();
        assert!(err.to_string().contains("drained"), "{err}");
        e.restart().unwrap();
        e.request_keyframe();
        let mut got_key = false;
        for n in 5..10 {
            if let Some(p) = e.encode(&picture(n)).unwrap() {
                got_key |= p.keyframe;
            }
        }
        assert!(got_key, "encoding resumed after restart");
    }
}
