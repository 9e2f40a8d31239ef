//! AAC-LC encoding of the sound track.
//!
//! Encoder: the `syom` crate (0.9). Licence check (for the SD image, which
//! must carry no non-free code): syom is MIT-licensed (`LICENSE`, copyright
//! Evgeny Khodzitsky); its `NOTICE` states the AAC-LC engine is original code
//! written from ISO/IEC 14496-3 / 13818-7 (tables are the standard's
//! numbers), not derived from FDK-AAC or another encoder; it has no
//! dependencies and no C code. AAC patents are a property of the format, as
//! for any AAC encoder. ffmpeg is used by the tests only, as an instrument.
//!
//! The encoder is causal with a priming delay of one frame: the access unit
//! returned for input frame `n` decodes to input frame `n - 1` (the first
//! one decodes to silence), so its timestamp is that of frame `n - 1`.

use super::sync::OUT_RATE;

/// Samples per AAC-LC frame.
pub const FRAME: usize = 1024;

/// An AAC-LC encoder: 1024 planar samples per channel in, one raw access
/// unit (no ADTS header) out.
pub struct AacEncoder {
    enc: syom::Encoder,
    channels: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("AAC encoder: {0}")]
pub struct AacError(String);

impl AacEncoder {
    /// 48 kHz AAC-LC, `channels` 1 or 2, `bitrate_kbps` (ABR).
    pub fn new(channels: usize, bitrate_kbps: u32) -> Result<Self, AacError> {
        let opts = syom::EncodeOptions::raw().with_bitrate_bps(bitrate_kbps.saturating_mul(1000));
        let enc =
            syom::Encoder::new(OUT_RATE, channels, &opts).map_err(|e| AacError(e.to_string()))?;
        Ok(AacEncoder { enc, channels })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The AudioSpecificConfig the stream carries.
    pub fn asc(&self) -> &[u8] {
        self.enc.asc()
    }

    /// Encodes one frame: `planes[c]` holds [`FRAME`] samples in -1..=1
    /// (clipped here). Returns the raw access unit.
    pub fn encode(&mut self, planes: &[Vec<f32>]) -> Result<Vec<u8>, AacError> {
        let mut clipped: [[f32; FRAME]; 2] = [[0.0; FRAME]; 2];
        for (c, dst) in clipped.iter_mut().enumerate().take(self.channels) {
            let src = planes.get(c).or(planes.first()).map_or(&[][..], |p| &p[..]);
            for (d, s) in dst.iter_mut().zip(src) {
                *d = if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
            }
        }
        let refs: Vec<&[f32]> = clipped[..self.channels].iter().map(|p| &p[..]).collect();
        let mut au = Vec::new();
        let res = self.enc.feed(&refs, |f| {
            au.extend_from_slice(f.payload);
            Ok(())
        });
        if let Err(e) = res {
            // A failed encoder stays failed: start over.
            let _ = self.enc.reset();
            return Err(AacError(e.to_string()));
        }
        Ok(au)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::fake::tone_at;

    /// `secs` of the test tone starting at a whole second, stereo frames.
    fn tone_frames(n: usize) -> Vec<Vec<Vec<f32>>> {
        (0..n)
            .map(|f| {
                let p: Vec<f32> = (0..FRAME)
                    .map(|i| tone_at(((f * FRAME + i) as f64) * 1e9 / 48_000.0) as f32)
                    .collect();
                vec![p.clone(), p]
            })
            .collect()
    }

    #[test]
    fn one_second_of_tone_is_47_sane_frames_and_decodes_with_ffmpeg() {
        let mut enc = AacEncoder::new(2, 128).unwrap();
        assert_eq!(enc.asc(), &[0x11, 0x90]);
        let frames = tone_frames(47);
        let aus: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap()).collect();
        assert_eq!(aus.len(), 47);
        let total: usize = aus.iter().map(Vec::len).sum();
        eprintln!(
            "47 frames, {total} bytes, sizes {:?}",
            aus.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for au in &aus {
            assert!(!au.is_empty() && au.len() < 1536, "{}", au.len());
            assert_ne!(&au[..2], &[0xff, 0xf1], "raw, not ADTS");
        }
        // About 128 kbit/s: 16 kB a second give or take (silence is cheap).
        assert!(total > 2_000 && total < 24_000, "{total}");

        let asc = roomcast_media::aac::AudioSpecificConfig::lc(48_000, 2).unwrap();
        let mut adts = Vec::new();
        for au in &aus {
            asc.write_adts(au, &mut adts).unwrap();
        }
        let Some(pcm) = ffmpeg_decode(&adts) else {
            eprintln!("ffmpeg not installed: decode check skipped");
            return;
        };
        // Decoded sample m is input sample m - 1024 (priming).
        let left: Vec<f32> = pcm.chunks(2).map(|f| f[0]).collect();
        assert!(left.len() >= 46 * 1024, "{}", left.len());
        let onset = left.iter().position(|x| x.abs() > 0.1).unwrap() as f64;
        let onset_ms = (onset - 1024.0) / 48.0;
        let end = left.iter().rposition(|x| x.abs() > 0.1).unwrap() as f64;
        let end_ms = (end - 1024.0) / 48.0;
        eprintln!("decoded beep from {onset_ms:.2} ms to {end_ms:.2} ms");
        assert!(onset_ms.abs() < 5.0, "{onset_ms}");
        assert!((end_ms - 100.0).abs() < 5.0, "{end_ms}");
        // It is a 1 kHz tone: zero crossings in the middle 50 ms.
        let mid = &left[1024 + 48 * 25..1024 + 48 * 75];
        let crossings = mid
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((95..=105).contains(&crossings), "{crossings}");
        let peak = mid.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 0.05, "{peak}");
        // Silence after the beep stays quiet.
        let rest = &left[1024 + 48 * 150..];
        assert!(rest.iter().all(|x| x.abs() < 0.01));
    }

    /// Decodes ADTS with ffmpeg into interleaved f32 (None without ffmpeg).
    fn ffmpeg_decode(adts: &[u8]) -> Option<Vec<f32>> {
        let dir = std::env::temp_dir();
        let src = dir.join(format!("roomcast-aac-{}.aac", std::process::id()));
        let dst = dir.join(format!("roomcast-aac-{}.f32", std::process::id()));
        std::fs::write(&src, adts).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(&src)
            .args(["-f", "f32le", "-ac", "2", "-ar", "48000"])
            .arg(&dst)
            .output();
        let res = match out {
            Err(_) => None,
            Ok(o) => {
                assert!(
                    o.status.success(),
                    "ffmpeg: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let bytes = std::fs::read(&dst).unwrap();
                Some(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }
        };
        std::fs::remove_file(&src).ok();
        std::fs::remove_file(&dst).ok();
        res
    }

    #[test]
    fn encoder_speed() {
        let frames = tone_frames(47 * 10);
        let noise: Vec<Vec<Vec<f32>>> = frames
            .iter()
            .enumerate()
            .map(|(n, f)| {
                f.iter()
                    .map(|p| {
                        p.iter()
                            .enumerate()
                            .map(|(i, x)| {
                                x + 0.1 * (((n * 7919 + i * 104729) % 1000) as f32 / 1000.0 - 0.5)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut enc = AacEncoder::new(2, 128).unwrap();
        let t = std::time::Instant::now();
        for f in &noise {
            enc.encode(f).unwrap();
        }
        let ms_per_s = t.elapsed().as_secs_f64() * 1e3 / (noise.len() as f64 * 1024.0 / 48_000.0);
        eprintln!("AAC-LC stereo 128 kbit/s: {ms_per_s:.1} ms of CPU per second of audio");
        assert!(ms_per_s < 500.0);
    }
}
