//! Turns periods of captured samples, each stamped with the monotonic time
//! ALSA reports for it, into one continuous 48 kHz stream anchored on the
//! monotonic clock. Sans-IO: samples and timestamps in, samples out.
//!
//! * **Anchor.** Output sample `j` is, by definition, the sound at monotonic
//!   time `anchor + j / 48000 s`; the anchor is the first sample's true time
//!   (period timestamp minus delay and period length), rounded up to a whole
//!   millisecond so 90 kHz timestamps come out exact.
//! * **Drift.** A card's crystal is off by tens to hundreds of ppm. Each
//!   period gives a point (input frame index, monotonic time); a least-squares
//!   line over the last 30 s of points is the card's measured rate. The
//!   input is resampled (linear interpolation) with a ratio = measured rate
//!   (feed-forward) corrected by a slow PI loop on the timeline error (where
//!   the input position is against where the fitted line says it should be
//!   for the current output time), so the output never drifts away from true
//!   time, for hours.
//! * **Gaps.** Without a device, [`Aligner::fill_silence_until`] extends the
//!   same timeline with silence paced by the clock; when a device comes back
//!   (or after an overrun) its input is re-anchored on the running output
//!   timeline and faded in: the output sample counter, hence the PTS, never
//!   jumps.

use std::collections::VecDeque;

/// Largest capture delay believed (frames beyond it are a driver's error).
const MAX_DELAY_S: u64 = 2;
/// Input may start at most this far (s) ahead of the output timeline.
const MAX_LEAD_S: f64 = 1.0;

/// The output sample rate.
pub const OUT_RATE: u32 = 48_000;
const NS_PER_OUT: f64 = 1e9 / OUT_RATE as f64;
/// Output samples between two updates of the resampling ratio (10 ms).
const BLOCK: usize = 480;
/// Time constant of the timeline loop, s.
const TAU_S: f64 = 4.0;
/// Integral time, s (4 τ: critically damped).
const TI_S: f64 = 4.0 * TAU_S;
/// The rate is measured (not assumed nominal) once the points span this.
const FIT_MIN_SPAN_NS: f64 = 2e9;
/// At most one fit point per this many ns.
const FIT_POINT_NS: f64 = 100e6;
/// Points kept (30 s at one per 100 ms).
const FIT_POINTS: usize = 300;
/// The ratio stays within this of nominal (2000 ppm).
const MAX_DEVIATION: f64 = 0.002;
/// A timestamp this far off the fitted line means the device restarted or
/// lied: re-anchor.
const REANCHOR_NS: f64 = 100e6;
/// Fade-in after (re)anchoring, output samples (10 ms).
const FADE: u32 = 480;
/// Silence is produced up to this long before "now": about what live input
/// lags by, so a device appearing finds the timeline where its samples are.
pub const SILENCE_LAG_NS: u64 = 20_000_000;

/// What the aligner measures, for status.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SyncStats {
    /// Input is live (a device feeds it).
    pub live: bool,
    /// The device's measured rate error, ppm (0 until measured).
    pub drift_ppm: f64,
    /// Input samples per output sample.
    pub ratio: f64,
    /// Input position minus where it should be, in ns.
    pub error_ns: f64,
}

/// One input run: from (re)anchoring to a device loss or overrun.
struct Input {
    /// Nominal device rate, Hz.
    rate: f64,
    /// Planar samples from absolute input index `buf_start`.
    buf: Vec<VecDeque<f32>>,
    buf_start: u64,
    /// Input frames received.
    total: u64,
    /// Absolute input index (fractional) of the next output sample.
    pos: f64,
    ratio: f64,
    integral: f64,
    /// Fit points (ns since `origin_ns`, input index at that time).
    origin_ns: f64,
    points: VecDeque<(f64, f64)>,
    slope: f64,
    intercept: f64,
    measured: bool,
    faded: u32,
    since_control: usize,
}

impl Input {
    fn nominal_slope(&self) -> f64 {
        self.rate / 1e9
    }

    fn add_point(&mut self, t_ns: f64, idx: f64) {
        let t = t_ns - self.origin_ns;
        if self
            .points
            .back()
            .is_some_and(|&(last, _)| t - last < FIT_POINT_NS)
        {
            return;
        }
        self.points.push_back((t, idx));
        if self.points.len() > FIT_POINTS {
            self.points.pop_front();
        }
        let n = self.points.len() as f64;
        let (mt, mi) = self
            .points
            .iter()
            .fold((0.0, 0.0), |(a, b), &(t, i)| (a + t / n, b + i / n));
        let span =
            self.points.back().map_or(0.0, |p| p.0) - self.points.front().map_or(0.0, |p| p.0);
        let slope = if span >= FIT_MIN_SPAN_NS {
            let (mut sti, mut stt) = (0.0, 0.0);
            for &(t, i) in &self.points {
                sti += (t - mt) * (i - mi);
                stt += (t - mt) * (t - mt);
            }
            self.measured = true;
            sti / stt
        } else {
            self.nominal_slope()
        };
        // A nonsense slope (clock jump) falls back to nominal.
        self.slope = if (slope / self.nominal_slope() - 1.0).abs() < 0.01 {
            slope
        } else {
            self.nominal_slope()
        };
        self.intercept = mi - self.slope * mt;
    }

    /// Input index the fit places at monotonic time `t_ns`.
    fn index_at(&self, t_ns: f64) -> f64 {
        self.intercept + self.slope * (t_ns - self.origin_ns)
    }
}

/// The aligner: see the module doc.
pub struct Aligner {
    channels: usize,
    anchor_ns: Option<u64>,
    /// Output samples produced (index of the next one).
    produced: u64,
    /// Index of `fifo[*][0]`.
    taken: u64,
    fifo: Vec<VecDeque<f32>>,
    input: Option<Input>,
    /// Test switch: resample at the nominal ratio, no correction.
    unity: bool,
    last: SyncStats,
}

impl Aligner {
    pub fn new(channels: usize) -> Self {
        let channels = channels.clamp(1, 2);
        Aligner {
            channels,
            anchor_ns: None,
            produced: 0,
            taken: 0,
            fifo: vec![VecDeque::new(); channels],
            input: None,
            unity: false,
            last: SyncStats {
                ratio: 1.0,
                ..SyncStats::default()
            },
        }
    }

    /// Turns the drift correction off (ratio = nominal): for tests that show
    /// what happens without it.
    pub fn set_uncorrected(&mut self, on: bool) {
        self.unity = on;
    }

    /// Monotonic time of output sample 0, once known.
    pub fn anchor_ns(&self) -> Option<u64> {
        self.anchor_ns
    }

    /// Monotonic time (ns) of output sample `idx`.
    pub fn output_time_ns(&self, idx: u64) -> f64 {
        self.anchor_ns.unwrap_or(0) as f64 + idx as f64 * NS_PER_OUT
    }

    /// Output samples produced so far (index of the next).
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Absolute input index (in the current input run, 0 = its first frame)
    /// the next output sample will be taken from.
    pub fn input_position(&self) -> Option<f64> {
        self.input.as_ref().map(|i| i.pos)
    }

    pub fn stats(&self) -> SyncStats {
        SyncStats {
            live: self.input.is_some(),
            ..self.last
        }
    }

    /// The device is gone or overran: drop the input run (the next period
    /// re-anchors).
    pub fn input_lost(&mut self) {
        self.input = None;
    }

    /// Takes one period: `samples` interleaved with `in_channels`, captured
    /// at nominal `rate`, stamped as ALSA stamps it (see
    /// [`super::pcm::PeriodStamp`]).
    pub fn push(
        &mut self,
        samples: &[i16],
        in_channels: usize,
        rate: u32,
        tstamp_ns: u64,
        delay: u64,
    ) {
        let in_channels = in_channels.max(1);
        let frames = samples.len() / in_channels;
        if frames == 0 {
            return;
        }
        let rate_f = f64::from(rate.max(1));
        // A driver may report nonsense; it must cost sync, never memory.
        let delay = delay.min(u64::from(rate.max(1)) * MAX_DELAY_S);
        let t_first = tstamp_ns as f64 - (delay + frames as u64) as f64 * 1e9 / rate_f;
        if let Some(inp) = &self.input {
            let expect = inp.index_at(tstamp_ns as f64);
            let actual = (inp.total + frames as u64 + delay) as f64;
            if inp.rate != rate_f || ((actual - expect) / inp.slope).abs() > REANCHOR_NS {
                self.input = None;
            }
        }
        if self.input.is_none() {
            self.start_input(t_first, rate_f);
        }
        let ch = self.channels;
        let inp = self.input.as_mut().expect("input just started");
        for f in samples.chunks_exact(in_channels) {
            let l = f32::from(f[0]) / 32768.0;
            let r = f32::from(f[in_channels.min(2) - 1]) / 32768.0;
            if ch == 1 {
                inp.buf[0].push_back(if in_channels == 1 { l } else { 0.5 * (l + r) });
            } else {
                inp.buf[0].push_back(l);
                inp.buf[1].push_back(r);
            }
        }
        inp.total += frames as u64;
        inp.add_point(tstamp_ns as f64, (inp.total + delay) as f64);
        self.produce();
    }

    fn start_input(&mut self, t_first: f64, rate: f64) {
        let anchor = *self
            .anchor_ns
            .get_or_insert_with(|| (t_first.max(0.0) as u64).div_ceil(1_000_000) * 1_000_000);
        let t_out = anchor as f64 + self.produced as f64 * NS_PER_OUT;
        let mut inp = Input {
            rate,
            buf: vec![VecDeque::new(); self.channels],
            buf_start: 0,
            total: 0,
            pos: {
                // Input stamped more than MAX_LEAD_S ahead of the output
                // timeline (a bad timestamp) starts now instead of after
                // that much silence.
                let pos = (t_out - t_first) * rate / 1e9;
                if pos.is_finite() && pos > -MAX_LEAD_S * rate {
                    pos
                } else {
                    0.0
                }
            },
            ratio: rate / f64::from(OUT_RATE),
            integral: 0.0,
            origin_ns: t_first,
            points: VecDeque::new(),
            slope: rate / 1e9,
            intercept: 0.0,
            measured: false,
            faded: 0,
            since_control: 0,
        };
        inp.add_point(t_first, 0.0);
        self.input = Some(inp);
    }

    /// Resamples whatever input is there into the output.
    fn produce(&mut self) {
        let Some(anchor) = self.anchor_ns else {
            return;
        };
        let unity = self.unity;
        let ch = self.channels;
        let Some(inp) = self.input.as_mut() else {
            return;
        };
        loop {
            if inp.pos >= 0.0 && inp.pos.floor() as u64 + 1 >= inp.total {
                break;
            }
            if inp.pos < 0.0 {
                for c in 0..ch {
                    self.fifo[c].push_back(0.0);
                }
            } else {
                let i = inp.pos.floor() as u64;
                let frac = (inp.pos - i as f64) as f32;
                let k = (i - inp.buf_start) as usize;
                let gain = if inp.faded < FADE {
                    inp.faded += 1;
                    inp.faded as f32 / FADE as f32
                } else {
                    1.0
                };
                for c in 0..ch {
                    let a = inp.buf[c][k];
                    let b = inp.buf[c][k + 1];
                    self.fifo[c].push_back((a + (b - a) * frac) * gain);
                }
            }
            self.produced += 1;
            inp.pos += inp.ratio;
            inp.since_control += 1;
            if inp.since_control >= BLOCK {
                inp.since_control = 0;
                let t_out = anchor as f64 + self.produced as f64 * NS_PER_OUT;
                let e = inp.pos - inp.index_at(t_out);
                let nominal = inp.rate / f64::from(OUT_RATE);
                if unity {
                    inp.ratio = nominal;
                } else {
                    inp.integral += e * BLOCK as f64 / f64::from(OUT_RATE);
                    let k = TAU_S * f64::from(OUT_RATE);
                    let ff = inp.slope * 1e9 / f64::from(OUT_RATE);
                    inp.ratio = (ff - e / k - inp.integral / (k * TI_S)).clamp(
                        nominal * (1.0 - MAX_DEVIATION),
                        nominal * (1.0 + MAX_DEVIATION),
                    );
                }
                self.last = SyncStats {
                    live: true,
                    drift_ppm: if inp.measured {
                        (inp.slope / inp.nominal_slope() - 1.0) * 1e6
                    } else {
                        0.0
                    },
                    ratio: inp.ratio / nominal,
                    error_ns: e / inp.slope,
                };
            }
        }
        // Keep from the sample before the next position on.
        let keep_from = (inp.pos.max(0.0).floor() as u64).saturating_sub(1);
        while inp.buf_start < keep_from && !inp.buf[0].is_empty() {
            for b in &mut inp.buf {
                b.pop_front();
            }
            inp.buf_start += 1;
        }
    }

    /// Without a device: extends the timeline with silence up to
    /// `now_ns - SILENCE_LAG_NS`. Does nothing while input is live.
    pub fn fill_silence_until(&mut self, now_ns: u64) {
        if self.input.is_some() {
            return;
        }
        let until = now_ns.saturating_sub(SILENCE_LAG_NS);
        let anchor = *self
            .anchor_ns
            .get_or_insert_with(|| until.div_ceil(1_000_000) * 1_000_000);
        self.last.live = false;
        while anchor as f64 + self.produced as f64 * NS_PER_OUT < until as f64 {
            for c in 0..self.channels {
                self.fifo[c].push_back(0.0);
            }
            self.produced += 1;
        }
    }

    /// Output samples ready to take.
    pub fn available(&self) -> usize {
        self.fifo[0].len()
    }

    /// Takes `n` output samples per channel into `out` (planar), if there
    /// are that many; returns the output index of the first.
    pub fn pop(&mut self, n: usize, out: &mut [Vec<f32>]) -> Option<u64> {
        if self.available() < n {
            return None;
        }
        for (c, o) in out.iter_mut().enumerate().take(self.channels) {
            o.clear();
            o.extend(self.fifo[c].drain(..n));
        }
        let first = self.taken;
        self.taken += n as u64;
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::fake::{Content, FakeParams, FakePcm, Plug};
    use crate::audio::pcm::Pcm;
    use crate::base::clock::{Clock, SimClock};
    use std::sync::Arc;
    use std::time::Duration;

    struct Run {
        /// Worst |timeline error| after the first 5 s, ms.
        worst_ms: f64,
        /// Timeline error at the end, ms.
        final_ms: f64,
        /// Beep onsets (ms after the whole second) in the first and last 10 s.
        onsets_start: Vec<f64>,
        onsets_end: Vec<f64>,
        drift_ppm: f64,
    }

    /// Feeds `secs` of a fake card at `ppm` through an aligner.
    fn run(ppm: f64, secs: u64, uncorrected: bool) -> Run {
        let c = Arc::new(SimClock::new(0));
        c.advance(Duration::from_millis(3_337));
        let params = FakeParams {
            ppm,
            channels: 1,
            content: Content::Tone,
        };
        let mut pcm = FakePcm::with_plug(c.clone(), params, &Plug::new());
        let mut al = Aligner::new(1);
        al.set_uncorrected(uncorrected);
        let mut buf = Vec::new();
        let mut out = vec![Vec::new()];
        let start = c.monotonic_ns();
        let end = start + secs * 1_000_000_000;
        let (mut worst, mut fin) = (0.0f64, 0.0);
        let mut onsets = Vec::new();
        let mut armed_for = 0u64; // the whole second whose beep we wait for
        while c.monotonic_ns() < end {
            let st = pcm.read(&mut buf).unwrap();
            al.push(&buf, 1, 48_000, st.tstamp_ns, st.delay);
            let pos = al.input_position().unwrap();
            let err_ms = (pcm.frame_time_ns(0) + pos / (48_000.0 * (1.0 + ppm / 1e6)) * 1e9
                - al.output_time_ns(al.produced()))
                / 1e6;
            if c.monotonic_ns() > start + 5_000_000_000 {
                worst = worst.max(err_ms.abs());
            }
            fin = err_ms;
            while let Some(first) = al.pop(480, &mut out) {
                for (k, &x) in out[0].iter().enumerate() {
                    let t = al.output_time_ns(first + k as u64);
                    let second = ((t + 200e6) / 1e9).floor() as u64;
                    if second > armed_for && x.abs() > 0.1 {
                        armed_for = second;
                        onsets.push((second, (t - second as f64 * 1e9) / 1e6));
                    }
                }
            }
        }
        let first_s = onsets.first().map_or(0, |o| o.0);
        let last_s = onsets.last().map_or(0, |o| o.0);
        Run {
            worst_ms: worst,
            final_ms: fin,
            onsets_start: onsets
                .iter()
                .filter(|o| o.0 < first_s + 10)
                .map(|o| o.1)
                .collect(),
            onsets_end: onsets
                .iter()
                .filter(|o| o.0 + 10 > last_s)
                .map(|o| o.1)
                .collect(),
            drift_ppm: al.stats().drift_ppm,
        }
    }

    fn check(ppm: f64) {
        let r = run(ppm, 600, false);
        eprintln!(
            "{ppm:+} ppm: worst {:.3} ms, final {:.3} ms, measured {:.1} ppm, onsets start {:?} end {:?}",
            r.worst_ms, r.final_ms, r.drift_ppm, r.onsets_start, r.onsets_end
        );
        assert!(r.worst_ms < 5.0, "worst timeline error {} ms", r.worst_ms);
        assert!((r.drift_ppm - ppm).abs() < 2.0, "measured {}", r.drift_ppm);
        assert_eq!(r.onsets_start.len(), 10, "{:?}", r.onsets_start);
        assert_eq!(r.onsets_end.len(), 10, "{:?}", r.onsets_end);
        for o in r.onsets_start.iter().chain(&r.onsets_end) {
            assert!(o.abs() < 5.0, "beep onset {o} ms off");
        }
    }

    /// Pops every ready block of 1024 samples, checking that each follows
    /// on from `next` (no gap, no overlap), and hands it to `each` with its
    /// first output index.
    fn drain(
        al: &mut Aligner,
        out: &mut [Vec<f32>],
        next: &mut u64,
        mut each: impl FnMut(&Aligner, u64, &[Vec<f32>]),
    ) {
        while let Some(first) = al.pop(1024, out) {
            assert_eq!(first, *next, "no gap, no overlap");
            *next += 1024;
            each(al, first, out);
        }
    }

    /// Adds to `onsets` the output times of beeps starting in `block`
    /// (output index `first` on), at most one every 0.5 s.
    fn note_onsets(al: &Aligner, first: u64, block: &[f32], onsets: &mut Vec<f64>) {
        for (k, x) in block.iter().enumerate() {
            let t = al.output_time_ns(first + k as u64);
            if x.abs() > 0.1 && onsets.last().is_none_or(|&o: &f64| t - o > 5e8) {
                onsets.push(t);
            }
        }
    }

    /// Every beep (the fake card beeps on the whole second) starts within
    /// 2 ms of its second.
    fn assert_on_the_second(onsets: &[f64]) {
        for t in onsets {
            let off = (t - (t / 1e9).round() * 1e9) / 1e6;
            assert!(off.abs() < 2.0, "onset {off} ms off the second");
        }
    }

    #[test]
    fn ten_minutes_at_plus_100_ppm_stay_aligned() {
        check(100.0);
    }

    #[test]
    fn ten_minutes_at_minus_100_ppm_stay_aligned() {
        check(-100.0);
    }

    #[test]
    fn ten_minutes_at_500_ppm_stay_aligned() {
        check(500.0);
        check(-500.0);
    }

    #[test]
    fn without_correction_100_ppm_drifts_60_ms() {
        let r = run(100.0, 600, true);
        eprintln!(
            "uncorrected: final {:.3} ms, onsets end {:?}",
            r.final_ms, r.onsets_end
        );
        // The card's 100 ppm fast clock: its samples are 60 ms "early" after
        // 10 minutes at the nominal ratio.
        assert!((r.final_ms.abs() - 60.0).abs() < 2.0, "{}", r.final_ms);
        assert!(
            r.onsets_end.iter().all(|o| o.abs() > 40.0),
            "{:?}",
            r.onsets_end
        );
    }

    #[test]
    fn overrun_reanchors_without_a_gap() {
        let c = Arc::new(SimClock::new(0));
        c.advance(Duration::from_millis(2_500));
        let params = FakeParams {
            ppm: 250.0,
            channels: 2,
            content: Content::Tone,
        };
        let mut pcm = FakePcm::with_plug(c.clone(), params, &Plug::new());
        let mut al = Aligner::new(2);
        let mut buf = Vec::new();
        let mut out = vec![Vec::new(), Vec::new()];
        let mut next_idx = 0;
        let mut onsets = Vec::new();
        let mut xruns = 0;
        while c.monotonic_ns() < 40_000_000_000 {
            if c.monotonic_ns() / 10_000_000 == 2_000 {
                // The reader stalls 400 ms at 20 s: more than the buffer.
                c.advance(Duration::from_millis(400));
            }
            if c.monotonic_ns() / 10_000_000 == 3_000 {
                // 200 ms at 30 s: the buffer absorbs it, no overrun.
                c.advance(Duration::from_millis(200));
            }
            match pcm.read(&mut buf) {
                Ok(st) => al.push(&buf, 2, 48_000, st.tstamp_ns, st.delay),
                Err(e) => {
                    assert_eq!(e, crate::audio::pcm::PcmError::Xrun);
                    xruns += 1;
                    al.input_lost();
                }
            }
            drain(&mut al, &mut out, &mut next_idx, |al, first, out| {
                note_onsets(al, first, &out[0], &mut onsets)
            });
        }
        assert_eq!(xruns, 1);
        assert!(onsets.len() >= 36, "{}", onsets.len());
        assert_on_the_second(&onsets);
    }

    #[test]
    fn nonsense_timestamps_cost_sync_not_memory() {
        let mut al = Aligner::new(2);
        let period = vec![100i16; 480 * 2];
        let mut out = vec![Vec::new(), Vec::new()];
        let mut next = 0;
        let stamps = [
            1_000_000_000u64,
            1_010_000_000,
            4_600_000_000_000, // an hour ahead
            0,                 // back to zero
            u64::MAX / 2,
            1_030_000_000,
        ];
        for (i, &t) in stamps.iter().enumerate() {
            let delay = if i == 3 { u64::MAX } else { 0 };
            al.push(&period, 2, 48_000, t, delay);
            assert!(
                al.available() < 48_000 * 2,
                "after stamp {t}: {}",
                al.available()
            );
            drain(&mut al, &mut out, &mut next, |_, _, _| {});
        }
    }

    #[test]
    fn silence_then_device_keeps_the_timeline() {
        let c = Arc::new(SimClock::new(0));
        c.advance(Duration::from_millis(10_000));
        let mut al = Aligner::new(2);
        let mut out = vec![Vec::new(), Vec::new()];
        let mut next_idx = 0u64;
        // 1.5 s of silence paced by the clock.
        for _ in 0..150 {
            c.advance(Duration::from_millis(10));
            al.fill_silence_until(c.monotonic_ns());
            drain(&mut al, &mut out, &mut next_idx, |_, _, out| {
                assert!(out[0].iter().all(|&x| x == 0.0))
            });
        }
        assert_eq!(al.anchor_ns(), Some(9_990_000_000));
        assert!(!al.stats().live);
        // A mono card at -300 ppm appears.
        let params = FakeParams {
            ppm: -300.0,
            channels: 1,
            content: Content::Tone,
        };
        let mut pcm = FakePcm::with_plug(c.clone(), params, &Plug::new());
        let mut buf = Vec::new();
        let mut onsets = Vec::new();
        for _ in 0..1000 {
            let st = pcm.read(&mut buf).unwrap();
            al.push(&buf, 1, 48_000, st.tstamp_ns, st.delay);
            drain(&mut al, &mut out, &mut next_idx, |al, first, out| {
                assert_eq!(out[0], out[1], "mono copied to both sides");
                note_onsets(al, first, &out[0], &mut onsets);
            });
        }
        assert!(al.stats().live);
        assert!(onsets.len() >= 9, "{onsets:?}");
        assert_on_the_second(&onsets);
        // Unplug: the timeline goes on in silence, no jump.
        al.input_lost();
        for _ in 0..100 {
            c.advance(Duration::from_millis(10));
            al.fill_silence_until(c.monotonic_ns());
            drain(&mut al, &mut out, &mut next_idx, |_, _, _| {});
        }
        let lag = c.monotonic_ns() as f64 - al.output_time_ns(al.produced());
        assert!((lag - SILENCE_LAG_NS as f64).abs() < NS_PER_OUT, "{lag}");
    }
}
