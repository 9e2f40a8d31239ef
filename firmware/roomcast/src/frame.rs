//! What travels between pipeline stages.

use roomcast_media::time::Ticks90k;
use std::sync::Arc;

pub use crate::source::pattern::I420Frame;

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
}

pub type SharedFrame = Arc<EncodedFrame>;
