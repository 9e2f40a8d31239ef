//! One MPEG-TS program: H.264 video and, when audio is on, AAC-LC audio
//! (ADTS in PES, stream type 0x0F, PID [`AUDIO_PID`]). What HLS segments,
//! SRT and recordings carry; each of them owns one.

use crate::base::frame::{AudioFormat, EncodedFrame, Track};
use roomcast_media::aac::AudioSpecificConfig;
use roomcast_media::ts::{TsConfig, TsMuxer};

/// The audio elementary stream's PID (video keeps TsConfig's default).
pub use roomcast_media::ts::DEFAULT_AUDIO_PID as AUDIO_PID;

pub struct ProgramMuxer {
    muxer: TsMuxer,
    audio: Option<AudioSpecificConfig>,
    /// A video keyframe went out (with PAT/PMT in front of it): audio
    /// before it would reach a receiver that cannot know its PID yet.
    started: bool,
}

impl ProgramMuxer {
    pub fn new(audio: Option<AudioFormat>) -> Self {
        let audio = audio.and_then(|a| AudioSpecificConfig::lc(a.sample_rate, a.channels).ok());
        ProgramMuxer {
            muxer: Self::muxer(audio.is_some()),
            audio,
            started: false,
        }
    }

    fn muxer(audio: bool) -> TsMuxer {
        if audio {
            TsMuxer::with_audio(TsConfig::default(), AUDIO_PID)
        } else {
            TsMuxer::new(TsConfig::default())
        }
    }

    /// A fresh program (continuity counters from zero), e.g. for a new
    /// receiver or after the encoder restarted.
    pub fn reset(&mut self) {
        self.muxer = Self::muxer(self.audio.is_some());
        self.started = false;
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Writes one bus frame; audio before the first video keyframe, and
    /// audio when the program has none, is left out.
    pub fn write(&mut self, f: &EncodedFrame, out: &mut Vec<u8>) {
        match f.track {
            Track::Video => {
                self.started |= f.keyframe;
                self.muxer
                    .write_video(f.pts, f.dts, f.keyframe, &f.data, out);
            }
            Track::Audio => {
                if let (true, Some(asc)) = (self.started, &self.audio) {
                    // Only a frame over 8 KiB fails; AAC-LC frames at 320
                    // kbit/s are under 1 KiB, so nothing is lost here.
                    let _ = self.muxer.write_aac(f.pts, asc, &f.data, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_media::time::Ticks90k;

    fn frame(track: Track, keyframe: bool, pts: u64) -> EncodedFrame {
        EncodedFrame {
            capture_ns: 0,
            wall_ms: 0,
            pts: Ticks90k(pts),
            dts: Ticks90k(pts),
            duration: Ticks90k(1920),
            keyframe,
            data: vec![0, 0, 0, 1, 0x65, 0x88, 0x84],
            epoch: 0,
            width: 16,
            height: 16,
            rendition: 0,
            track,
        }
    }

    fn pids(ts: &[u8]) -> Vec<u16> {
        ts.chunks(188)
            .map(|p| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]))
            .collect()
    }

    #[test]
    fn audio_waits_for_the_first_keyframe_and_has_its_own_pid() {
        let fmt = AudioFormat {
            sample_rate: 48_000,
            channels: 2,
            bitrate_kbps: 128,
        };
        let mut m = ProgramMuxer::new(Some(fmt));
        let mut out = Vec::new();
        m.write(&frame(Track::Audio, false, 0), &mut out);
        assert!(out.is_empty(), "audio before any table");
        m.write(&frame(Track::Video, true, 0), &mut out);
        let before = out.len();
        m.write(&frame(Track::Audio, false, 1920), &mut out);
        assert_eq!(pids(&out[before..]), vec![AUDIO_PID]);
        // The ADTS header is in the PES payload: 0xFFF sync after the PES header.
        let pes = &out[before + 4..before + 188];
        let at = pes
            .windows(2)
            .position(|w| w == [0xff, 0xf1])
            .expect("ADTS sync");
        assert_eq!(&pes[at..at + 2], &[0xff, 0xf1]);
        m.reset();
        let mut again = Vec::new();
        m.write(&frame(Track::Audio, false, 3840), &mut again);
        assert!(again.is_empty(), "reset waits for a keyframe again");
    }

    #[test]
    fn without_audio_audio_frames_are_ignored() {
        let mut m = ProgramMuxer::new(None);
        let mut out = Vec::new();
        m.write(&frame(Track::Video, true, 0), &mut out);
        let n = out.len();
        m.write(&frame(Track::Audio, false, 1920), &mut out);
        assert_eq!(out.len(), n);
        assert!(!m.has_audio());
    }
}
