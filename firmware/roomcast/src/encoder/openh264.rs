//! Software H.264 with Cisco's openh264, built from source by the `openh264`
//! crate (with its x86 assembly: `build.rs` refuses to build without nasm).
//!
//! Output is constrained baseline (no B-frames, so PTS = DTS), one slice per
//! picture, an IDR every `gop` frames with SPS/PPS in front, rate control in
//! bitrate mode with frame skipping off so every captured picture becomes a
//! frame (segments then hold exactly the configured frame count).

use super::{EncodeError, EncodedPicture, EncoderSettings, VideoEncoder};
use crate::base::frame::I420Frame;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;
use roomcast_media::h264::{split_annexb, NalType};

pub struct OpenH264 {
    enc: Encoder,
    settings: EncoderSettings,
    /// Last SPS+PPS seen (Annex-B), put in front of an IDR that lacks them.
    parameter_sets: Vec<u8>,
}

impl OpenH264 {
    pub fn open(settings: EncoderSettings) -> Result<Self, EncodeError> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(
                settings.bitrate_kbps.saturating_mul(1000),
            ))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(false)
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .intra_frame_period(IntraFramePeriod::from_num_frames(settings.gop))
            // Extra I-frames at scene cuts would break the fixed segment grid.
            .scene_change_detect(false)
            .num_threads(u16::try_from(settings.threads).unwrap_or(0));
        let enc = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncodeError::Open(e.to_string()))?;
        Ok(OpenH264 {
            enc,
            settings,
            parameter_sets: Vec::new(),
        })
    }
}

impl VideoEncoder for OpenH264 {
    fn name(&self) -> String {
        "openh264".into()
    }

    fn encode(&mut self, picture: &I420Frame) -> Result<Option<EncodedPicture>, EncodeError> {
        let (w, h) = (picture.width, picture.height);
        if (w as u32, h as u32) != (self.settings.width, self.settings.height) {
            return Err(EncodeError::WrongSize {
                got_w: w as u32,
                got_h: h as u32,
                want_w: self.settings.width,
                want_h: self.settings.height,
            });
        }
        let (y, u, v) = picture.planes();
        let yuv = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let bs = self
            .enc
            .encode(&yuv)
            .map_err(|e| EncodeError::Encode(e.to_string()))?;
        let keyframe = match bs.frame_type() {
            FrameType::IDR => true,
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            _ => false,
        };
        let mut data = Vec::with_capacity(64 * 1024);
        bs.write_vec(&mut data);
        if data.is_empty() {
            return Ok(None);
        }
        if keyframe {
            ensure_parameter_sets(&mut data, &mut self.parameter_sets);
        }
        Ok(Some(EncodedPicture { data, keyframe }))
    }

    fn request_keyframe(&mut self) {
        self.enc.force_intra_frame();
    }
}

/// Remembers the SPS/PPS of `au` if it has them, else puts the remembered
/// ones in front, so every keyframe can start a stream on its own.
fn ensure_parameter_sets(au: &mut Vec<u8>, remembered: &mut Vec<u8>) {
    let mut sets = Vec::new();
    for nal in split_annexb(au) {
        if matches!(NalType::of(nal), Some(NalType::Sps | NalType::Pps)) {
            sets.extend_from_slice(&[0, 0, 0, 1]);
            sets.extend_from_slice(nal);
        }
    }
    if !sets.is_empty() {
        *remembered = sets;
    } else if !remembered.is_empty() {
        au.splice(0..0, remembered.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pattern::Pattern;
    use roomcast_media::h264::Sps;

    fn settings(w: u32, h: u32) -> EncoderSettings {
        EncoderSettings {
            width: w,
            height: h,
            fps: 30,
            bitrate_kbps: 500,
            gop: 10,
            threads: 1,
        }
    }

    #[test]
    fn idr_every_gop_with_sps_pps_and_constrained_baseline() {
        let mut enc = OpenH264::open(settings(320, 240)).unwrap();
        let pattern = Pattern::new(320, 240);
        let mut pic = I420Frame::new(320, 240);
        let mut keys = Vec::new();
        for n in 0..25 {
            pattern.draw(n, 30, 0, &mut pic);
            let out = enc.encode(&pic).unwrap().expect("no frame skipping");
            let types: Vec<_> = split_annexb(&out.data).filter_map(NalType::of).collect();
            if out.keyframe {
                keys.push(n);
                assert_eq!(&types[..2], &[NalType::Sps, NalType::Pps], "frame {n}");
                assert!(types.contains(&NalType::Idr));
                let sps = split_annexb(&out.data).next().unwrap();
                let sps = Sps::parse(sps).unwrap();
                assert_eq!((sps.width, sps.height), (320, 240));
                assert_eq!(sps.profile_name(), "Constrained Baseline");
            } else {
                assert!(!types.contains(&NalType::Idr), "frame {n}");
            }
        }
        assert_eq!(keys, vec![0, 10, 20]);
    }

    #[test]
    fn keyframe_on_request() {
        let mut enc = OpenH264::open(settings(64, 64)).unwrap();
        let pic = I420Frame::new(64, 64);
        assert!(enc.encode(&pic).unwrap().unwrap().keyframe);
        assert!(!enc.encode(&pic).unwrap().unwrap().keyframe);
        enc.request_keyframe();
        assert!(enc.encode(&pic).unwrap().unwrap().keyframe);
    }

    #[test]
    fn wrong_size_is_an_error_not_a_crash() {
        let mut enc = OpenH264::open(settings(64, 64)).unwrap();
        let e = enc.encode(&I420Frame::new(32, 32)).unwrap_err();
        assert!(matches!(e, EncodeError::WrongSize { .. }));
    }

    #[test]
    fn missing_parameter_sets_are_restored() {
        let mut remembered = Vec::new();
        let mut first = vec![
            0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3,
        ];
        ensure_parameter_sets(&mut first, &mut remembered);
        assert_eq!(remembered, first[..12].to_vec());
        let mut second = vec![0, 0, 0, 1, 0x65, 4];
        ensure_parameter_sets(&mut second, &mut remembered);
        assert_eq!(second, [&first[..12], &[0, 0, 0, 1, 0x65, 4][..]].concat());
    }

    /// The crate silently drops its assembly when nasm is missing at build
    /// time and then runs about 3x slower; build.rs refuses to build without
    /// nasm, and this proves the SIMD kernels really are linked in: the SSE2
    /// ones, and the AVX2 ones that .cargo/config.toml turns on.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn openh264_assembly_is_linked_in() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let has = |needle: &[u8]| exe.windows(needle.len()).any(|w| w == needle);
        // Hand-written kernels from codec/common/x86/satd_sad.asm.
        assert!(
            has(b"WelsSampleSad16x16_sse2"),
            "openh264 was built without its x86 assembly (is nasm installed?)"
        );
        assert!(
            has(b"WelsSampleSatd16x16_avx2"),
            "openh264 was built without HAVE_AVX2 (see [env] in .cargo/config.toml)"
        );
    }
}
