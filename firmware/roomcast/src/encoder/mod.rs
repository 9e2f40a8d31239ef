//! Encoders behind one small trait, so the pipeline does not care whether
//! pictures are compressed in software (openh264) or by the board's V4L2
//! memory-to-memory encoder ([`m2m`]). Pass-through (the camera's own H.264)
//! needs no encoder except for the "no signal" slate.

pub mod m2m;
pub mod openh264;

use crate::base::frame::I420Frame;
use crate::config::EncoderSetting;
use crate::v4l2::Backend;

/// Settings an encoder is opened with: the validated `[video]` table.
pub type EncoderSettings = crate::config::Video;

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
    /// Name for status, e.g. `openh264` or `v4l2m2m:/dev/video11 (bcm2835-codec-encode)`.
    fn name(&self) -> String;
    /// Encodes one picture. `None` when the encoder chose to emit nothing.
    fn encode(&mut self, picture: &I420Frame) -> Result<Option<EncodedPicture>, EncodeError>;
    /// The next picture will be an IDR (a receiver joined or recovered).
    fn request_keyframe(&mut self);
}

/// Which encoder a configuration means, once `auto` is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncoderChoice {
    OpenH264,
    /// A V4L2 stateful encoder at this device node.
    M2m(String),
    /// The camera's own H.264.
    Passthrough,
}

/// Resolves the configured name: `auto` is the board's hardware encoder
/// when one is present (the first M2M device with H.264 output), else
/// openh264.
pub fn resolve(setting: &EncoderSetting, backend: &dyn Backend) -> EncoderChoice {
    match setting {
        EncoderSetting::Passthrough => EncoderChoice::Passthrough,
        EncoderSetting::OpenH264 => EncoderChoice::OpenH264,
        EncoderSetting::M2m(path) => EncoderChoice::M2m(path.clone()),
        EncoderSetting::Auto => {
            m2m::find(backend).map_or(EncoderChoice::OpenH264, EncoderChoice::M2m)
        }
    }
}

impl EncoderChoice {
    /// Opens it. Pass-through opens openh264, which encodes the slate while
    /// the camera is missing.
    pub fn open(
        &self,
        settings: EncoderSettings,
        backend: &dyn Backend,
    ) -> Result<Box<dyn VideoEncoder>, EncodeError> {
        match self {
            EncoderChoice::OpenH264 | EncoderChoice::Passthrough => {
                Ok(Box::new(openh264::OpenH264::open(settings)?))
            }
            EncoderChoice::M2m(path) => {
                Ok(Box::new(m2m::M2mEncoder::open(backend, path, settings)?))
            }
        }
    }
}
