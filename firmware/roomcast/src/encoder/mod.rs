//! Encoders behind one small trait, so the pipeline does not care whether
//! pictures are compressed in software (openh264) or, later, by the board's
//! V4L2 memory-to-memory encoder.

pub mod openh264;

use crate::frame::I420Frame;

/// Settings an encoder is opened with (already validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Keyframe (IDR) interval in frames.
    pub gop: u32,
    /// 0 = the encoder's choice.
    pub threads: u32,
}

/// One compressed picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPicture {
    /// Annex-B access unit; SPS and PPS precede every IDR.
    pub data: Vec<u8>,
    pub keyframe: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoder could not be opened: {0}")]
    Open(String),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("picture is {got_w}x{got_h}, encoder was opened for {want_w}x{want_h}")]
    WrongSize {
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
}

/// A video encoder. Pictures go in display order; with no B-frames (all our
/// profiles are constrained baseline) decode order is the same.
pub trait VideoEncoder: Send {
    /// Short name for status, e.g. `openh264`.
    fn kind(&self) -> &'static str;
    /// Encodes one picture. `None` when the encoder chose to emit nothing.
    fn encode(&mut self, picture: &I420Frame) -> Result<Option<EncodedPicture>, EncodeError>;
    /// The next picture will be an IDR (a receiver joined or recovered).
    fn request_keyframe(&mut self);
}

/// Opens the encoder named in the configuration (`auto` = openh264 until
/// hardware encoders arrive).
pub fn open(kind: &str, settings: EncoderSettings) -> Result<Box<dyn VideoEncoder>, EncodeError> {
    match kind {
        "auto" | "openh264" => Ok(Box::new(openh264::OpenH264::open(settings)?)),
        other => Err(EncodeError::Open(format!("unknown encoder {other:?}"))),
    }
}
