//! What travels between pipeline stages.

use roomcast_media::time::Ticks90k;
use std::sync::Arc;

/// Limited-range (BT.601) black, and neutral chroma.
const Y_BLACK: u8 = 16;
const UV_GREY: u8 = 128;

/// One I420 picture: Y plane width*height, U and V planes (width/2)*(height/2); width and height even.
#[derive(Clone, Debug)]
pub struct I420Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl I420Frame {
    /// A black picture (Y=16, U=V=128), so an undrawn frame is not green.
    pub fn new(width: usize, height: usize) -> Self {
        let luma = width * height;
        let chroma = (width / 2) * (height / 2);
        let mut data = vec![UV_GREY; luma + 2 * chroma];
        data[..luma].fill(Y_BLACK);
        I420Frame {
            width,
            height,
            data,
        }
    }

    /// The Y, U and V planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let (luma, chroma) = self.plane_sizes();
        let (y, rest) = self.data.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        (y, u, &v[..chroma])
    }

    /// The Y, U and V planes, writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (luma, chroma) = self.plane_sizes();
        let (y, rest) = self.data.split_at_mut(luma);
        let (u, v) = rest.split_at_mut(chroma);
        (y, u, &mut v[..chroma])
    }

    fn plane_sizes(&self) -> (usize, usize) {
        (
            self.width * self.height,
            (self.width / 2) * (self.height / 2),
        )
    }
}

/// A raw picture from a source, stamped at capture.
#[derive(Debug)]
pub struct RawFrame {
    pub picture: I420Frame,
    /// Monotonic capture time; carried unchanged into every output.
    pub capture_ns: u64,
    /// Wall-clock time at capture, for EXT-X-PROGRAM-DATE-TIME.
    pub wall_ms: u64,
    /// Nominal frame duration (1/fps).
    pub duration_ns: u64,
}

/// One encoded access unit on the frame bus.
#[derive(Debug)]
pub struct EncodedFrame {
    /// Monotonic capture time of the picture this frame encodes.
    pub capture_ns: u64,
    pub wall_ms: u64,
    pub pts: Ticks90k,
    pub dts: Ticks90k,
    pub duration: Ticks90k,
    /// An IDR picture, with SPS and PPS in front of it.
    pub keyframe: bool,
    /// Annex-B bytes (start codes included).
    pub data: Vec<u8>,
    /// Which encoder instance made it; a change means the stream restarted
    /// (new settings), so packagers mark a discontinuity.
    pub epoch: u32,
    pub width: u32,
    pub height: u32,
    /// The ladder rung a video frame belongs to (0 = the top rendition,
    /// the configured `[video]`); 0 for audio, which every rendition shares.
    pub rendition: u8,
    /// Video (H.264 access unit) or audio (one raw AAC-LC frame of 1024
    /// samples, no ADTS header; `keyframe` false, size 0x0).
    pub track: Track,
}

/// Which elementary stream a bus frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// The audio every output carries when audio is on: AAC-LC at this rate and
/// channel count (the same for the whole run of the sinks; a change
/// restarts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub sample_rate: u32,
    pub channels: u8,
    pub bitrate_kbps: u32,
}

impl AudioFormat {
    /// Samples per AAC-LC frame.
    pub const FRAME_SAMPLES: u32 = 1024;

    /// The AudioSpecificConfig (ISO 14496-3 §1.6.2.1) for FLV, fMP4 `esds`.
    pub fn asc(&self) -> [u8; 2] {
        roomcast_media::aac::AudioSpecificConfig::lc(self.sample_rate, self.channels)
            .map(|c| c.to_bytes())
            .unwrap_or([0x11, 0x90])
    }
}

impl EncodedFrame {
    pub fn is_video(&self) -> bool {
        self.track == Track::Video
    }

    pub fn is_audio(&self) -> bool {
        self.track == Track::Audio
    }
}

pub type SharedFrame = Arc<EncodedFrame>;
