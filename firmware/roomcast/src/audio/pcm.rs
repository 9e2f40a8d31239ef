//! The capture device at the level of ALSA's PCM API: a [`PcmBackend`]
//! lists and opens capture devices, a [`Pcm`] hands out one period of
//! interleaved S16 frames at a time with the monotonic timestamp ALSA
//! reports for it (`snd_pcm_status`: `htstamp` + `delay`, tstamp type
//! MONOTONIC). Real cards are in [`super::alsa`], fakes in [`super::fake`].

use serde::Serialize;

/// A capture device as `/api/devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudioDeviceInfo {
    /// What `audio.source = "alsa:NAME"` takes.
    pub name: String,
    pub description: String,
    /// Sample rates the device accepts among the common ones.
    pub rates: Vec<u32>,
    /// Channel counts it accepts (1..=8 tested).
    pub channels: Vec<u32>,
}

/// Why a device cannot be opened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcmError {
    /// The device went away (`ENODEV`, unplugged): every later read fails too.
    #[error("device gone (unplugged)")]
    Gone,
    /// The capture buffer overflowed (`EPIPE`) and the stream was restarted
    /// (`snd_pcm_prepare` + start): samples were lost, the next read goes on
    /// from a new start.
    #[error("overrun: samples lost")]
    Xrun,
    /// Someone else holds the device (`EBUSY`).
    #[error("device busy")]
    Busy,
    /// No such device (`ENOENT`).
    #[error("no such device")]
    NotFound,
    #[error("{0}")]
    Other(String),
}

/// One period as read from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodStamp {
    /// Frames read into the buffer (interleaved: `frames * channels` samples).
    pub frames: usize,
    /// Monotonic time (the [`crate::base::clock::Clock`]'s ns) at which `delay`
    /// was measured.
    pub tstamp_ns: u64,
    /// ALSA's delay after the read: the distance from the end of this period
    /// to the frame being captured at `tstamp_ns`. So the period's first
    /// frame was captured `delay + frames` frames before `tstamp_ns`.
    pub delay: u64,
}

/// An open capture stream: S16 interleaved, started on open.
pub trait Pcm: Send {
    /// Channels the device delivers (may differ from what was asked: a mono
    /// microphone).
    fn channels(&self) -> u32;
    /// Sample rate actually negotiated (nominal, per the device).
    fn rate(&self) -> u32;
    /// Frames per period.
    fn period_frames(&self) -> usize;
    /// Blocks (at most about one period) until a period is captured, copies
    /// it into `buf` (`period_frames * channels` samples, resized as
    /// needed) and stamps it.
    fn read(&mut self, buf: &mut Vec<i16>) -> Result<PeriodStamp, PcmError>;
}

/// Lists and opens capture devices.
pub trait PcmBackend: Send + Sync {
    fn list(&self) -> Vec<AudioDeviceInfo>;
    /// Opens `name` for capture at `rate` with `channels` (or the nearest
    /// the device has) and starts it.
    fn open(&self, name: &str, rate: u32, channels: u32) -> Result<Box<dyn Pcm>, PcmError>;
}

/// A backend without devices (tests that must not touch the machine's
/// sound cards, and systems without ALSA).
pub struct NoDevices;

impl PcmBackend for NoDevices {
    fn list(&self) -> Vec<AudioDeviceInfo> {
        Vec::new()
    }
    fn open(&self, _: &str, _: u32, _: u32) -> Result<Box<dyn Pcm>, PcmError> {
        Err(PcmError::NotFound)
    }
}
