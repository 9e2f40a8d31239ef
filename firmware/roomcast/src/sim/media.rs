//! Picture plumbing for the fakes: I420 to and from the V4L2 raw layouts
//! (with the driver's `bytesperline`), and an openh264 stream with the
//! IDR cadence and header rules a hardware encoder has.
//!
//! Deliberately small and separate from `crate::source::convert` (the fast camera
//! converters), so the fakes check that code instead of sharing its bugs.

use crate::base::frame::I420Frame;
use crate::encoder::openh264::OpenH264;
use crate::encoder::{EncodedPicture, EncoderSettings, VideoEncoder};
use crate::v4l2::{Format, FourCc};
use roomcast_media::h264::{split_annexb, NalType};

/// Whether the fakes can lay out `fourcc` from I420 (and back).
pub(super) fn is_raw(fourcc: FourCc) -> bool {
    matches!(fourcc, FourCc::YUYV | FourCc::NV12 | FourCc::YU12)
}

/// Bytes a raw picture takes with lines `bpl` bytes apart; `None` for
/// compressed formats.
pub(super) fn raw_sizeimage(fourcc: FourCc, bpl: u32, height: u32) -> Option<u32> {
    let (bpl, h) = (u64::from(bpl), u64::from(height));
    let n = match fourcc {
        FourCc::YUYV => bpl * h,
        // Y, then U and V at half width and height (YU12) or one
        // interleaved UV plane with the same stride as Y (NV12).
        FourCc::YU12 => bpl * h + 2 * (bpl / 2) * h.div_ceil(2),
        FourCc::NV12 => bpl * h + bpl * h.div_ceil(2),
        _ => return None,
    };
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Writes `pic` into `out` laid out as `fmt` (YUYV, NV12 or YU12).
/// `out` must hold `fmt.sizeimage` bytes; padding bytes are left alone.
pub(super) fn pack(pic: &I420Frame, fmt: &Format, out: &mut [u8]) {
    let (w, h, bpl) = (pic.width, pic.height, fmt.bytesperline as usize);
    let cw = w / 2;
    let (yp, up, vp) = pic.planes();
    match fmt.fourcc {
        FourCc::YUYV => {
            for row in 0..h {
                let line = &mut out[row * bpl..row * bpl + 2 * w];
                let ys = &yp[row * w..(row + 1) * w];
                let us = &up[(row / 2) * cw..(row / 2 + 1) * cw];
                let vs = &vp[(row / 2) * cw..(row / 2 + 1) * cw];
                for (x, px) in line.chunks_exact_mut(4).enumerate() {
                    px.copy_from_slice(&[ys[2 * x], us[x], ys[2 * x + 1], vs[x]]);
                }
            }
        }
        FourCc::NV12 => {
            copy_plane(yp, w, h, out, bpl);
            let uv = &mut out[bpl * h..];
            for row in 0..h / 2 {
                let line = &mut uv[row * bpl..row * bpl + 2 * cw];
                for (x, px) in line.chunks_exact_mut(2).enumerate() {
                    px.copy_from_slice(&[up[row * cw + x], vp[row * cw + x]]);
                }
            }
        }
        FourCc::YU12 => {
            copy_plane(yp, w, h, out, bpl);
            let cbpl = bpl / 2;
            let (u_out, v_out) = out[bpl * h..].split_at_mut(cbpl * h.div_ceil(2));
            copy_plane(up, cw, h / 2, u_out, cbpl);
            copy_plane(vp, cw, h / 2, v_out, cbpl);
        }
        _ => {}
    }
}

/// Reads a YU12 or NV12 picture laid out as `fmt` into `pic` (resized to
/// the format's size).
pub(super) fn unpack(data: &[u8], fmt: &Format, pic: &mut I420Frame) {
    let (w, h, bpl) = (
        fmt.width as usize,
        fmt.height as usize,
        fmt.bytesperline as usize,
    );
    if (pic.width, pic.height) != (w, h) {
        *pic = I420Frame::new(w, h);
    }
    let cw = w / 2;
    let (yp, up, vp) = pic.planes_mut();
    for row in 0..h {
        yp[row * w..(row + 1) * w].copy_from_slice(&data[row * bpl..row * bpl + w]);
    }
    let chroma = &data[bpl * h..];
    match fmt.fourcc {
        FourCc::NV12 => {
            for row in 0..h / 2 {
                let line = &chroma[row * bpl..row * bpl + 2 * cw];
                for (x, px) in line.chunks_exact(2).enumerate() {
                    up[row * cw + x] = px[0];
                    vp[row * cw + x] = px[1];
                }
            }
        }
        _ => {
            let cbpl = bpl / 2;
            let (us, vs) = chroma.split_at(cbpl * h.div_ceil(2));
            for row in 0..h / 2 {
                up[row * cw..(row + 1) * cw].copy_from_slice(&us[row * cbpl..row * cbpl + cw]);
                vp[row * cw..(row + 1) * cw].copy_from_slice(&vs[row * cbpl..row * cbpl + cw]);
            }
        }
    }
}

fn copy_plane(src: &[u8], w: usize, h: usize, dst: &mut [u8], stride: usize) {
    for row in 0..h {
        dst[row * stride..row * stride + w].copy_from_slice(&src[row * w..(row + 1) * w]);
    }
}

/// One H.264 stream from openh264 with the encoder decisions made here, as
/// a hardware encoder makes them: an IDR every `i_period` pictures (0: only
/// the first), on request, and SPS/PPS either before every IDR or only the
/// first. New rate settings take effect at the next IDR (the encoder is
/// reopened there, which makes that IDR).
pub(super) struct H264Stream {
    enc: Option<OpenH264>,
    opened: Option<EncoderSettings>,
    since_idr: u64,
    force: bool,
    headers_sent: bool,
}

impl H264Stream {
    pub(super) fn new() -> Self {
        H264Stream {
            enc: None,
            opened: None,
            since_idr: 0,
            force: false,
            headers_sent: false,
        }
    }

    /// The next picture will be an IDR.
    pub(super) fn force_keyframe(&mut self) {
        self.force = true;
    }

    /// Starts an independent stream: the next picture is an IDR with SPS/PPS.
    pub(super) fn reset(&mut self) {
        *self = Self::new();
    }

    pub(super) fn encode(
        &mut self,
        pic: &I420Frame,
        settings: EncoderSettings,
        i_period: u32,
        repeat_headers: bool,
    ) -> Result<EncodedPicture, String> {
        // openh264 makes no IDRs of its own (gop 0): the cadence is ours.
        let settings = EncoderSettings {
            gop: 0,
            threads: 1,
            ..settings
        };
        let due = self.force
            || self.enc.is_none()
            || (i_period > 0 && self.since_idr >= u64::from(i_period));
        let resized = self
            .opened
            .is_some_and(|o| (o.width, o.height) != (settings.width, settings.height));
        // New settings are applied by reopening, which makes an IDR: only
        // when one is due anyway (or the size changed).
        let reopen = resized || (due && self.opened != Some(settings));
        let enc = match &mut self.enc {
            Some(enc) if !reopen => {
                if due {
                    enc.request_keyframe();
                }
                enc
            }
            slot => {
                self.opened = Some(settings);
                slot.insert(OpenH264::open(settings).map_err(|e| e.to_string())?)
            }
        };
        let mut out = enc
            .encode(pic)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "encoder skipped the picture".to_owned())?;
        self.force = false;
        self.since_idr = if out.keyframe { 1 } else { self.since_idr + 1 };
        if out.keyframe && !repeat_headers {
            if self.headers_sent {
                out.data = split_headers(&out.data).1;
            }
            self.headers_sent = true;
        }
        Ok(out)
    }
}

/// Splits an access unit into (SPS/PPS, everything else), each Annex-B.
pub(super) fn split_headers(au: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut headers, mut rest) = (Vec::new(), Vec::with_capacity(au.len()));
    for nal in split_annexb(au) {
        let to = match NalType::of(nal) {
            Some(NalType::Sps | NalType::Pps) => &mut headers,
            _ => &mut rest,
        };
        to.extend_from_slice(&[0, 0, 0, 1]);
        to.extend_from_slice(nal);
    }
    (headers, rest)
}
