//! Real sound cards through ALSA (the `alsa` crate over libasound; building
//! needs `libasound2-dev` for the target).
//!
//! Capture is S16_LE interleaved at 48 kHz, the channels asked for or the
//! nearest the device has (a mono microphone), periods of about 10 ms, a
//! buffer of about 25 periods. Timestamps: software params enable
//! `tstamp_mode` with type MONOTONIC, so `snd_pcm_status` returns `htstamp`
//! (CLOCK_MONOTONIC of the last position update) together with `delay` taken
//! at the same position: a consistent pair. The daemon's clock is
//! CLOCK_MONOTONIC from another origin; the offset between the two is
//! learned as the smallest `our_now - htstamp` seen right after a status
//! call (jitter only ever adds), so no `unsafe` clock call is needed.

use super::pcm::{AudioDeviceInfo, Pcm, PcmBackend, PcmError, PeriodStamp};
use crate::base::clock::SharedClock;
use alsa::pcm::{Access, Format, Frames, HwParams, TstampType, PCM};
use alsa::{Direction, ValueOr};

/// Rates `/api/devices` reports a device accepts (tested among these).
const RATES: [u32; 6] = [8_000, 16_000, 32_000, 44_100, 48_000, 96_000];
/// About 10 ms at 48 kHz. ALSA's `Frames` is a C long (i32 on 32-bit
/// boards, i64 on 64-bit ones), so this is a u16 that converts into either.
const PERIOD_FRAMES: u16 = 480;
/// 250 ms of buffer: reads happen every period, so the buffer adds no
/// latency, and a busy box (an encoder restart, a slow SD card) may stall
/// the reader that long without an overrun.
const PERIODS: u32 = 25;

/// The ALSA backend.
pub struct AlsaBackend {
    clock: SharedClock,
}

impl AlsaBackend {
    pub fn new(clock: SharedClock) -> Self {
        AlsaBackend { clock }
    }
}

fn map_err(e: alsa::Error) -> PcmError {
    match e.errno() {
        libc::ENODEV | libc::ENXIO | libc::ESHUTDOWN => PcmError::Gone,
        libc::ENOENT => PcmError::NotFound,
        libc::EBUSY => PcmError::Busy,
        libc::EPIPE => PcmError::Xrun,
        _ => PcmError::Other(e.to_string()),
    }
}

/// What a capture device accepts, by opening it non-blocking and testing
/// hardware parameters (`snd_pcm_hw_params_test_*`). `None` if it cannot be
/// opened (busy devices are left out of the list).
fn probe(name: &str) -> Option<(Vec<u32>, Vec<u32>)> {
    let pcm = PCM::new(name, Direction::Capture, true).ok()?;
    let hwp = HwParams::any(&pcm).ok()?;
    hwp.set_access(Access::RWInterleaved).ok()?;
    hwp.set_format(Format::s16()).ok()?;
    let rates = RATES
        .iter()
        .copied()
        .filter(|&r| hwp.test_rate(r).is_ok())
        .collect();
    let channels = (1..=8).filter(|&c| hwp.test_channels(c).is_ok()).collect();
    Some((rates, channels))
}

impl PcmBackend for AlsaBackend {
    /// Hardware devices first (`hw:CARD=ID,DEV=N` for every capture device
    /// of every card, as `auto` picks the first entry), then the capture PCMs
    /// from ALSA's hints (`default`, `sysdefault:`, `dsnoop:`, …).
    fn list(&self) -> Vec<AudioDeviceInfo> {
        let mut out: Vec<AudioDeviceInfo> = Vec::new();
        for card in alsa::card::Iter::new().filter_map(Result::ok) {
            let Ok(ctl) = alsa::Ctl::from_card(&card, false) else {
                continue;
            };
            let Ok(info) = ctl.card_info() else {
                continue;
            };
            let id = info.get_id().unwrap_or("").to_string();
            let card_name = info.get_name().unwrap_or("").to_string();
            for dev in alsa::ctl::DeviceIter::new(&ctl) {
                let Ok(pi) = ctl.pcm_info(dev as u32, 0, Direction::Capture) else {
                    continue;
                };
                let name = format!("hw:CARD={id},DEV={dev}");
                // A device we (or someone) hold open cannot be probed: it is
                // still listed, without its ranges.
                let (rates, channels) = probe(&name).unwrap_or_default();
                out.push(AudioDeviceInfo {
                    description: format!("{card_name}: {}", pi.get_name().unwrap_or("")),
                    name,
                    rates,
                    channels,
                });
            }
        }
        if let Ok(hints) = alsa::device_name::HintIter::new_str(None, "pcm") {
            for h in hints {
                let Some(name) = h.name else { continue };
                if h.direction == Some(Direction::Playback)
                    || name == "null"
                    || out.iter().any(|d| d.name == name)
                {
                    continue;
                }
                let Some((rates, channels)) = probe(&name) else {
                    continue;
                };
                out.push(AudioDeviceInfo {
                    description: h.desc.unwrap_or_default().replace('\n', " "),
                    name,
                    rates,
                    channels,
                });
            }
        }
        out
    }

    fn open(&self, name: &str, rate: u32, channels: u32) -> Result<Box<dyn Pcm>, PcmError> {
        let pcm = PCM::new(name, Direction::Capture, false).map_err(map_err)?;
        let (rate, channels, period) = {
            let hwp = HwParams::any(&pcm).map_err(map_err)?;
            hwp.set_access(Access::RWInterleaved).map_err(map_err)?;
            hwp.set_format(Format::s16()).map_err(map_err)?;
            let channels = hwp.set_channels_near(channels).map_err(map_err)?;
            let rate = hwp.set_rate_near(rate, ValueOr::Nearest).map_err(map_err)?;
            let period = hwp
                .set_period_size_near(Frames::from(PERIOD_FRAMES), ValueOr::Nearest)
                .map_err(map_err)?;
            hwp.set_periods_near(PERIODS, ValueOr::Nearest)
                .map_err(map_err)?;
            pcm.hw_params(&hwp).map_err(map_err)?;
            (rate, channels, period)
        };
        {
            let swp = pcm.sw_params_current().map_err(map_err)?;
            swp.set_tstamp_mode(true).map_err(map_err)?;
            swp.set_tstamp_type(TstampType::Monotonic)
                .map_err(map_err)?;
            swp.set_avail_min(period).map_err(map_err)?;
            pcm.sw_params(&swp).map_err(map_err)?;
        }
        pcm.start().map_err(map_err)?;
        Ok(Box::new(AlsaPcm {
            pcm,
            clock: self.clock.clone(),
            rate,
            channels,
            period: usize::try_from(period).unwrap_or(480).max(1),
            offset_ns: None,
        }))
    }
}

/// An open ALSA capture stream.
pub struct AlsaPcm {
    pcm: PCM,
    clock: SharedClock,
    rate: u32,
    channels: u32,
    period: usize,
    /// Our clock minus CLOCK_MONOTONIC (the smallest seen).
    offset_ns: Option<i64>,
}

impl AlsaPcm {
    /// `snd_pcm_recover` for an overrun: prepare and start again.
    fn restart(&self) -> Result<(), PcmError> {
        self.pcm.prepare().map_err(map_err)?;
        self.pcm.start().map_err(map_err)
    }
}

impl Pcm for AlsaPcm {
    fn channels(&self) -> u32 {
        self.channels
    }
    fn rate(&self) -> u32 {
        self.rate
    }
    fn period_frames(&self) -> usize {
        self.period
    }

    fn read(&mut self, buf: &mut Vec<i16>) -> Result<PeriodStamp, PcmError> {
        let ch = self.channels as usize;
        buf.resize(self.period * ch, 0);
        let io = self.pcm.io_i16().map_err(map_err)?;
        let mut got = 0;
        let period_ms = (self.period as u64 * 1000 / u64::from(self.rate.max(1))) as u32;
        while got < self.period {
            // Wait at most a little over a period: a device that stops
            // delivering without an error is treated as gone.
            match self.pcm.wait(Some(period_ms * 2 + 20)) {
                Ok(true) => {}
                Ok(false) => return Err(PcmError::Gone),
                Err(e) => {
                    let e = map_err(e);
                    if e == PcmError::Xrun {
                        self.restart()?;
                    }
                    return Err(e);
                }
            }
            match io.readi(&mut buf[got * ch..]) {
                Ok(n) => got += n,
                Err(e) if e.errno() == libc::EAGAIN => {}
                Err(e) => {
                    let err = map_err(e);
                    match err {
                        PcmError::Xrun => self.restart()?,
                        PcmError::Other(_) if e.errno() == libc::ESTRPIPE => {
                            // Suspended (system sleep): recover as ALSA says.
                            self.pcm.try_recover(e, true).map_err(map_err)?;
                            return Err(PcmError::Xrun);
                        }
                        _ => {}
                    }
                    return Err(err);
                }
            }
        }
        let status = self.pcm.status().map_err(map_err)?;
        let now = self.clock.monotonic_ns() as i64;
        let ts = status.get_htstamp();
        // time_t is 32 bits on some 32-bit ABIs, 64 here.
        #[allow(clippy::useless_conversion)]
        let kernel_ns = i64::from(ts.tv_sec) * 1_000_000_000 + i64::from(ts.tv_nsec);
        let delay = u64::try_from(status.get_delay()).unwrap_or(0);
        let tstamp_ns = if kernel_ns > 0 {
            let off = self
                .offset_ns
                .map_or(now - kernel_ns, |o| o.min(now - kernel_ns));
            self.offset_ns = Some(off);
            u64::try_from(kernel_ns + off).unwrap_or(0).min(now as u64)
        } else {
            // No timestamp from the driver: now is the best we have.
            now as u64
        };
        Ok(PeriodStamp {
            frames: self.period,
            tstamp_ns,
            delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::RealClock;
    use std::sync::Arc;

    /// Needs a real capture device: `cargo test --release -p roomcast --lib
    /// audio::alsa -- --ignored` (ROOMCAST_ALSA_TEST names it; `default`).
    #[test]
    #[ignore]
    fn real_device_captures_with_monotonic_timestamps() {
        let clock: SharedClock = Arc::new(RealClock::new());
        let b = AlsaBackend::new(clock.clone());
        for d in b.list() {
            eprintln!("{d:?}");
        }
        let name = std::env::var("ROOMCAST_ALSA_TEST").unwrap_or_else(|_| "default".into());
        let mut pcm = b.open(&name, 48_000, 2).expect("open");
        eprintln!(
            "{name}: {} Hz, {} ch, {} frames/period",
            pcm.rate(),
            pcm.channels(),
            pcm.period_frames()
        );
        let mut buf = Vec::new();
        let mut first = None;
        let mut frames = 0u64;
        for _ in 0..300 {
            let st = pcm.read(&mut buf).expect("read");
            let now = clock.monotonic_ns();
            assert!(
                st.tstamp_ns <= now && now - st.tstamp_ns < 100_000_000,
                "{st:?} now {now}"
            );
            frames += st.frames as u64;
            first.get_or_insert((st.tstamp_ns, frames + st.delay));
            let (t0, f0) = first.unwrap();
            if st.tstamp_ns > t0 + 1_000_000_000 {
                let rate = (frames + st.delay - f0) as f64 * 1e9 / (st.tstamp_ns - t0) as f64;
                eprintln!("measured {rate:.1} Hz");
            }
        }
    }
}
