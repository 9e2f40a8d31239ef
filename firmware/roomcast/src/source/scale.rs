//! I420 scaling for the rendition ladder: the encoder thread scales the top
//! picture down once per lower rung and frame (1080p → 720p and 360p on a
//! Raspberry Pi), so this must cost a few ms at most.
//!
//! Each plane is scaled on its own (chroma at half size), centre-aligned as
//! swscale does it: output pixel `i` covers the source interval
//! `[i * src / dst, (i + 1) * src / dst]`. Shrinking (any ratio, and 1:1)
//! averages the area: each source pixel is weighted by how much of it that
//! interval covers, which is what keeps slide text readable at 2x or 3x and
//! what swscale's `flags=area` computes. Growing interpolates bilinearly.
//! The weights are the exact overlaps, quantised to 14 bits per axis and
//! made to sum to exactly 1, so a flat picture stays flat, and being
//! non-negative they never leave the range of their inputs (limited-range
//! video stays limited range, nothing needs clamping).
//!
//! The filter is separable and runs vertical first, one output row at a
//! time: source rows → one u16 row (the value × 128, rounded) → output row.
//! Vertical first because the vertical pass reads whole rows and vectorises
//! perfectly, and shrinking leaves fewer rows for the horizontal pass, which
//! has to pick its inputs per output pixel.
//!
//! As in [`super::convert`] the kernels are plain safe loops over slices with
//! fixed-point integer weights, written so that LLVM vectorises them for NEON
//! and SSE2:
//! * exact 2:1 both ways (720p → 360p, and the chroma of it) is a 2x2 box,
//!   `(a + b + c + d + 2) >> 2`, bit-identical to the general filter;
//! * small exact ratios `P:Q` (2:1, 3:1, 4:1, 3:2, 4:3, 1:1) take the
//!   horizontal pass in groups of `P` inputs → `Q` outputs with each output's
//!   taps known at compile time (interleaved loads: `ld2`/`ld3` on NEON);
//! * anything else (1280 → 854, growing) gathers per output pixel, with the
//!   tap count a compile-time constant up to 4.
//!
//! Every fast path computes exactly what the general filter does (a test
//! checks it against a plain reference).

use crate::base::frame::I420Frame;

/// Fixed-point weights: 14 bits, each output's weights sum to `ONE`.
const BITS: u32 = 14;
const ONE: u32 = 1 << BITS;
/// The intermediate row holds the value × 2^MID (≤ 255 × 128, fits u16).
const MID: u32 = 7;
/// Vertical pass: u8 × weight → value × 2^MID, rounded.
const V_SHIFT: u32 = BITS - MID;
/// Horizontal pass: (value × 2^MID) × weight → value, rounded.
const H_SHIFT: u32 = BITS + MID;

/// Scales `src` into `dst` (dst.width/height already set and data sized,
/// both even); any ratio down (and up, for completeness), area-averaging
/// when shrinking by 2x or more so text on slides stays readable.
///
/// Builds the weights on every call; the pipeline keeps a [`Scaler`].
pub fn scale_i420(src: &I420Frame, dst: &mut I420Frame) {
    Scaler::new(src.width, src.height, dst.width, dst.height).run(src, dst);
}

/// A reusable scaler that precomputes per-column/row weights for one size
/// pair (the pipeline keeps one per rung).
pub struct Scaler {
    src_w: usize,
    src_h: usize,
    dst_w: usize,
    dst_h: usize,
    luma: PlaneScaler,
    chroma: PlaneScaler,
    /// One vertically filtered source row (value × 2^MID).
    row: Vec<u16>,
}

impl Scaler {
    pub fn new(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Self {
        Scaler {
            src_w,
            src_h,
            dst_w,
            dst_h,
            luma: PlaneScaler::new(src_w, src_h, dst_w, dst_h),
            chroma: PlaneScaler::new(src_w / 2, src_h / 2, dst_w / 2, dst_h / 2),
            row: vec![0; src_w],
        }
    }

    /// Scales `src` into `dst`. Pictures of other sizes than the scaler was
    /// made for are still scaled right: it rebuilds itself for them (the
    /// pipeline rebuilds its scalers itself when the camera's size changes).
    /// `dst.data` is resized if it does not fit `dst`'s size.
    pub fn run(&mut self, src: &I420Frame, dst: &mut I420Frame) {
        if (src.width, src.height, dst.width, dst.height)
            != (self.src_w, self.src_h, self.dst_w, self.dst_h)
        {
            *self = Scaler::new(src.width, src.height, dst.width, dst.height);
        }
        let need = |w: usize, h: usize| w * h + 2 * (w / 2) * (h / 2);
        assert!(
            src.data.len() >= need(src.width, src.height),
            "I420 source of {} bytes is too short for {}x{}",
            src.data.len(),
            src.width,
            src.height
        );
        let len = need(dst.width, dst.height);
        if dst.data.len() != len {
            dst.data.resize(len, 0);
        }
        let (sy, su, sv) = src.planes();
        let (dy, du, dv) = dst.planes_mut();
        self.luma.run(sy, dy, &mut self.row);
        self.chroma.run(su, du, &mut self.row);
        self.chroma.run(sv, dv, &mut self.row);
    }
}

/// One plane's two axes.
struct PlaneScaler {
    h: Axis,
    v: Axis,
}

impl PlaneScaler {
    fn new(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Self {
        PlaneScaler {
            h: Axis::new(src_w, dst_w),
            v: Axis::new(src_h, dst_h),
        }
    }

    fn run(&self, src: &[u8], dst: &mut [u8], row: &mut [u16]) {
        let (sw, dw) = (self.h.src, self.h.dst);
        if sw == 0 || dw == 0 || self.v.src == 0 || self.v.dst == 0 {
            return;
        }
        if self.h.period == Some((2, 1)) && self.v.period == Some((2, 1)) {
            let pairs = src.chunks_exact(2 * sw);
            for (pair, out) in pairs.zip(dst.chunks_exact_mut(dw)) {
                let (a, b) = pair.split_at(sw);
                box_2x2(a, b, out);
            }
            return;
        }
        let row = &mut row[..sw];
        let taps = self.v.taps;
        let starts = self.v.start.iter();
        let weights = self.v.weights.chunks_exact(taps);
        for ((out, &start), w) in dst.chunks_exact_mut(dw).zip(starts).zip(weights) {
            let rows = &src[start * sw..(start + taps) * sw];
            vertical(rows, sw, w, row);
            self.h.horizontal(row, out);
        }
    }
}

/// The filter along one axis: output `i` is the weighted sum of the `taps`
/// inputs from `start[i]`, with weights `weights[i * taps..][..taps]`.
struct Axis {
    src: usize,
    dst: usize,
    taps: usize,
    start: Vec<usize>,
    weights: Vec<u16>,
    /// `Some((P, Q))` when the filter repeats every `P` inputs / `Q` outputs
    /// with each output's taps inside its group (see [`Axis::periodic`]) and
    /// a kernel exists for that ratio.
    period: Option<(usize, usize)>,
    /// For `period`: phase `j`'s weights over its group's `P` inputs,
    /// `phases[j * P..][..P]`.
    phases: Vec<u16>,
}

impl Axis {
    fn new(src: usize, dst: usize) -> Self {
        let mut axis = Axis {
            src,
            dst,
            taps: 1,
            start: Vec::with_capacity(dst),
            weights: Vec::new(),
            period: None,
            phases: Vec::new(),
        };
        if src == 0 || dst == 0 {
            return axis;
        }
        // Each output's inputs as (first index, raw integer weights).
        let raw: Vec<(usize, Vec<u64>)> = (0..dst).map(|i| raw_weights(src, dst, i)).collect();
        let taps = raw.iter().map(|(_, w)| w.len()).max().unwrap_or(1);
        axis.taps = taps;
        axis.weights = Vec::with_capacity(dst * taps);
        for (first, w) in &raw {
            // Padded with zero weights to `taps`, kept inside the input.
            let start = (*first).min(src - taps);
            let at = first - start;
            let mut padded = vec![0; taps];
            padded[at..at + w.len()].copy_from_slice(&quantise(w));
            axis.start.push(start);
            axis.weights.extend_from_slice(&padded);
        }
        axis.periodic();
        axis
    }

    /// Finds a ratio `P:Q` with a kernel for which the filter is periodic:
    /// output `k * Q + j` uses only inputs `k * P + lo_j .. k * P + hi_j`
    /// (the area filter's support for phase `j`), with the same weights for
    /// every `k`. Shrinking by an exact small ratio always is; this checks
    /// the actual weights rather than trusting that.
    fn periodic(&mut self) {
        let g = gcd(self.src, self.dst);
        let (p, q) = (self.src / g, self.dst / g);
        if !KERNELS.contains(&(p, q)) {
            return;
        }
        let mut phases = vec![0u16; q * p];
        let mut dense = vec![0u16; p];
        for i in 0..self.dst {
            let (k, j) = (i / q, i % q);
            let (lo, hi) = support(p, q, j);
            dense.fill(0);
            let w = &self.weights[i * self.taps..][..self.taps];
            for (t, &w) in w.iter().enumerate().filter(|&(_, &w)| w != 0) {
                let x = self.start[i] + t;
                if x < k * p + lo || x >= k * p + hi {
                    return;
                }
                dense[x - k * p] = w;
            }
            let phase = &mut phases[j * p..][..p];
            if k == 0 {
                phase.copy_from_slice(&dense);
            } else if *phase != *dense {
                return;
            }
        }
        self.period = Some((p, q));
        self.phases = phases;
    }

    /// One vertically filtered row (value × 2^MID) to one output row.
    fn horizontal(&self, src: &[u16], dst: &mut [u8]) {
        let ph = &self.phases;
        match self.period {
            Some((1, 1)) => poly::<1, 1>(src, dst, ph),
            Some((2, 1)) => poly::<2, 1>(src, dst, ph),
            Some((3, 1)) => poly::<3, 1>(src, dst, ph),
            Some((4, 1)) => poly::<4, 1>(src, dst, ph),
            Some((3, 2)) => poly::<3, 2>(src, dst, ph),
            Some((4, 3)) => poly::<4, 3>(src, dst, ph),
            _ => match self.taps {
                1 => gather::<1>(src, dst, &self.start, &self.weights),
                2 => gather::<2>(src, dst, &self.start, &self.weights),
                3 => gather::<3>(src, dst, &self.start, &self.weights),
                4 => gather::<4>(src, dst, &self.start, &self.weights),
                _ => gather_any(src, dst, self.taps, &self.start, &self.weights),
            },
        }
    }
}

/// The ratios `P:Q` (inputs:outputs, lowest terms) with a horizontal
/// kernel; [`Axis::horizontal`] must match one arm per entry.
const KERNELS: [(usize, usize); 6] = [(1, 1), (2, 1), (3, 1), (4, 1), (3, 2), (4, 3)];

/// The inputs (relative to its group) that area-averaging output phase `j`
/// of a `P:Q` shrink covers: `floor(j P / Q) .. ceil((j + 1) P / Q)`.
const fn support(p: usize, q: usize, j: usize) -> (usize, usize) {
    (j * p / q, ((j + 1) * p).div_ceil(q))
}

/// Output `i`'s first input and raw integer weights (not all zero).
///
/// Shrinking or 1:1: in units of 1/(src·dst) of the source, output `i`
/// covers `[i·src, (i+1)·src]` and input `x` covers `[x·dst, (x+1)·dst]`;
/// the weight is their overlap. Growing: bilinear between the two inputs
/// around the output's centre `(i + ½)·src/dst − ½`, held at the edges.
fn raw_weights(src: usize, dst: usize, i: usize) -> (usize, Vec<u64>) {
    let (s, d, i) = (src as u64, dst as u64, i as u64);
    if dst <= src {
        let (lo, hi) = (i * s, (i + 1) * s);
        let (first, end) = (lo / d, hi.div_ceil(d));
        let w = (first..end)
            .map(|x| hi.min((x + 1) * d) - lo.max(x * d))
            .collect();
        return (first as usize, w);
    }
    // Centre in units of 1/(2·dst): (2i + 1)·src − dst, clamped at 0.
    let den = 2 * d;
    let pos = ((2 * i + 1) * s).saturating_sub(d);
    let (x, frac) = (pos / den, pos % den);
    if frac == 0 || x + 1 >= s {
        return ((x.min(s - 1)) as usize, vec![1]);
    }
    (x as usize, vec![den - frac, frac])
}

/// Raw weights to 14-bit weights summing to exactly `ONE`: rounded, the
/// rounding error given to the largest (so flat input stays exactly flat).
fn quantise(raw: &[u64]) -> Vec<u16> {
    let total: u64 = raw.iter().sum();
    let mut w: Vec<u16> = raw
        .iter()
        .map(|&r| ((r * u64::from(ONE) + total / 2) / total) as u16)
        .collect();
    let sum: i64 = w.iter().map(|&w| i64::from(w)).sum();
    let big = (0..w.len()).max_by_key(|&k| raw[k]).unwrap_or(0);
    w[big] = (i64::from(w[big]) + i64::from(ONE) - sum) as u16;
    w
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The first and second byte of a 2-byte chunk, through one u16 load (the
/// form LLVM's vectoriser handles best; see `convert.rs`).
#[inline(always)]
fn word(pair: &[u8]) -> u16 {
    u16::from_le_bytes(pair.try_into().unwrap_or_default())
}

/// Exact 2:1 both ways: each output is the rounded mean of a 2x2 block of
/// rows `a` and `b`. The same result as the general filter (weights ½, ½
/// are exact in 14 bits), at a fraction of the cost.
#[inline(never)] // a standalone loop vectorises better than one inlined
fn box_2x2(a: &[u8], b: &[u8], out: &mut [u8]) {
    let pairs = a.chunks_exact(2).zip(b.chunks_exact(2));
    for (o, (p, q)) in out.iter_mut().zip(pairs) {
        let (p, q) = (word(p), word(q));
        let sum = (p & 0xFF) + (p >> 8) + (q & 0xFF) + (q >> 8);
        *o = ((sum + 2) >> 2) as u8;
    }
}

/// Vertical pass: `w.len()` consecutive rows of `width` bytes (`rows`) to
/// one row of value × 2^MID.
fn vertical(rows: &[u8], width: usize, w: &[u16], out: &mut [u16]) {
    let row = |t: usize| &rows[t * width..(t + 1) * width];
    match *w {
        [w0] => vertical_n([row(0)], [w0], out),
        [w0, w1] => vertical_n([row(0), row(1)], [w0, w1], out),
        [w0, w1, w2] => vertical_n([row(0), row(1), row(2)], [w0, w1, w2], out),
        [w0, w1, w2, w3] => {
            vertical_n([row(0), row(1), row(2), row(3)], [w0, w1, w2, w3], out);
        }
        _ => vertical_any(rows, width, w, out),
    }
}

/// `T` rows at once, one pass over the output.
#[inline(never)] // see box_2x2
fn vertical_n<const T: usize>(rows: [&[u8]; T], w: [u16; T], out: &mut [u16]) {
    let n = out.len();
    let rows = rows.map(|r| &r[..n]);
    for (x, o) in out.iter_mut().enumerate() {
        let mut acc = 1 << (V_SHIFT - 1);
        for t in 0..T {
            acc += u32::from(w[t]) * u32::from(rows[t][x]);
        }
        *o = (acc >> V_SHIFT) as u16;
    }
}

/// Any number of rows, accumulated tap by tap in blocks that stay in L1.
#[inline(never)]
fn vertical_any(rows: &[u8], width: usize, w: &[u16], out: &mut [u16]) {
    const BLOCK: usize = 256;
    let mut acc = [0u32; BLOCK];
    for (b, out) in out.chunks_mut(BLOCK).enumerate() {
        let acc = &mut acc[..out.len()];
        acc.fill(1 << (V_SHIFT - 1));
        for (t, &w) in w.iter().enumerate() {
            let row = &rows[t * width + b * BLOCK..][..out.len()];
            for (a, &s) in acc.iter_mut().zip(row) {
                *a += u32::from(w) * u32::from(s);
            }
        }
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o = (a >> V_SHIFT) as u16;
        }
    }
}

/// Horizontal pass for an exact `P:Q` ratio: each group of `P` inputs gives
/// `Q` outputs, output `j` of a group summing only its support (constant
/// here, so the zero weights cost nothing), `w` being [`Axis::phases`].
#[inline(never)] // see box_2x2
fn poly<const P: usize, const Q: usize>(src: &[u16], dst: &mut [u8], w: &[u16]) {
    let mut phase = [[0u32; P]; Q];
    for (ph, w) in phase.iter_mut().zip(w.chunks_exact(P)) {
        for (p, &w) in ph.iter_mut().zip(w) {
            *p = u32::from(w);
        }
    }
    for (s, d) in src.chunks_exact(P).zip(dst.chunks_exact_mut(Q)) {
        for j in 0..Q {
            let (lo, hi) = support(P, Q, j);
            let mut acc = 1 << (H_SHIFT - 1);
            for t in lo..hi {
                acc += phase[j][t] * u32::from(s[t]);
            }
            d[j] = (acc >> H_SHIFT) as u8;
        }
    }
}

/// Horizontal pass, any filter with `T` taps: per output, its `T` inputs
/// from `start`.
#[inline(never)] // see box_2x2
fn gather<const T: usize>(src: &[u16], dst: &mut [u8], start: &[usize], w: &[u16]) {
    for ((d, &s), w) in dst.iter_mut().zip(start).zip(w.chunks_exact(T)) {
        let p = &src[s..s + T];
        let mut acc = 1 << (H_SHIFT - 1);
        for t in 0..T {
            acc += u32::from(w[t]) * u32::from(p[t]);
        }
        *d = (acc >> H_SHIFT) as u8;
    }
}

/// [`gather`] for any tap count (shrinking by more than about 3x at an
/// inexact ratio).
fn gather_any(src: &[u16], dst: &mut [u8], taps: usize, start: &[usize], w: &[u16]) {
    for ((d, &s), w) in dst.iter_mut().zip(start).zip(w.chunks_exact(taps)) {
        let p = &src[s..s + taps];
        let acc = p.iter().zip(w).fold(1 << (H_SHIFT - 1), |acc, (&x, &w)| {
            acc + u32::from(w) * u32::from(x)
        });
        *d = (acc >> H_SHIFT) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (source, destination) sizes: the ladder's ratios, odd chroma, 1:1 and
    /// growing.
    const SIZES: [(usize, usize, usize, usize); 10] = [
        (1280, 720, 640, 360),
        (1920, 1080, 1280, 720),
        (1920, 1080, 640, 360),
        (1280, 720, 854, 480),
        (640, 480, 320, 240),
        (1280, 720, 1280, 720),
        (854, 480, 640, 360),
        (1708, 960, 854, 480),
        (640, 360, 1280, 720),
        (854, 480, 1920, 1080),
    ];

    fn flat(w: usize, h: usize, y: u8, u: u8, v: u8) -> I420Frame {
        let mut f = I420Frame::new(w, h);
        let (yp, up, vp) = f.planes_mut();
        yp.fill(y);
        up.fill(u);
        vp.fill(v);
        f
    }

    fn scaled(src: &I420Frame, w: usize, h: usize) -> I420Frame {
        let mut dst = I420Frame::new(w, h);
        scale_i420(src, &mut dst);
        dst
    }

    /// A picture of pseudo-random pixels (xorshift), in limited range.
    fn noise(w: usize, h: usize, mut seed: u32) -> I420Frame {
        let mut f = I420Frame::new(w, h);
        for p in &mut f.data {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *p = 16 + (seed % 220) as u8;
        }
        f
    }

    fn assert_flat(f: &I420Frame, y: u8, u: u8, v: u8, what: &str) {
        let (yp, up, vp) = f.planes();
        assert!(yp.iter().all(|&p| p == y), "{what}: luma not all {y}");
        assert!(up.iter().all(|&p| p == u), "{what}: U not all {u}");
        assert!(vp.iter().all(|&p| p == v), "{what}: V not all {v}");
    }

    #[test]
    fn flat_pictures_stay_flat_exactly() {
        // Whole pictures at every size pair, a few values each.
        let values = [(16, 0, 255), (17, 128, 128), (81, 16, 240), (235, 255, 1)];
        for &(sw, sh, dw, dh) in &SIZES {
            let mut scaler = Scaler::new(sw, sh, dw, dh);
            let mut dst = I420Frame::new(dw, dh);
            for &(y, u, v) in &values {
                scaler.run(&flat(sw, sh, y, u, v), &mut dst);
                assert_flat(&dst, y, u, v, &format!("{sw}x{sh} -> {dw}x{dh}"));
            }
        }
        // Every value, through each axis's filter on its own (a flat
        // picture stays flat iff each axis's weights sum to one).
        for &(sw, sh, dw, dh) in &SIZES {
            let strips = [
                (sw, 4, dw, 2),
                (4, sh, 2, dh),
                (sw, 2, dw, 2),
                (2, sh, 2, dh),
            ];
            for (sw, sh, dw, dh) in strips {
                let mut scaler = Scaler::new(sw, sh, dw, dh);
                let mut dst = I420Frame::new(dw, dh);
                for y in 16..=235u8 {
                    let (u, v) = (y.wrapping_mul(7), 255 - y);
                    scaler.run(&flat(sw, sh, y, u, v), &mut dst);
                    assert_flat(&dst, y, u, v, &format!("{sw}x{sh} -> {dw}x{dh}"));
                }
                for u in (0..=255).chain([0, 255]) {
                    scaler.run(&flat(sw, sh, 16, u, !u), &mut dst);
                    assert_flat(&dst, 16, u, !u, &format!("{sw}x{sh} -> {dw}x{dh}"));
                }
            }
        }
    }

    #[test]
    fn a_horizontal_gradient_stays_monotonic_and_keeps_its_mean() {
        for &(sw, sh, dw, dh) in &SIZES {
            let mut src = I420Frame::new(sw, sh);
            let (yp, up, vp) = src.planes_mut();
            let ramp = |x: usize, w: usize, lo: i64, hi: i64| {
                (lo + x as i64 * (hi - lo) / (w as i64 - 1)) as u8
            };
            for row in yp.chunks_exact_mut(sw) {
                for (x, p) in row.iter_mut().enumerate() {
                    *p = ramp(x, sw, 16, 235);
                }
            }
            for (u, v) in up.chunks_exact_mut(sw / 2).zip(vp.chunks_exact_mut(sw / 2)) {
                for (x, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
                    *u = ramp(x, sw / 2, 16, 240);
                    *v = ramp(x, sw / 2, 240, 16);
                }
            }
            let dst = scaled(&src, dw, dh);
            let what = format!("{sw}x{sh} -> {dw}x{dh}");
            let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
            let (sp, dp) = (src.planes(), dst.planes());
            let planes = [
                (sp.0, dp.0, sw, dw, true),
                (sp.1, dp.1, sw / 2, dw / 2, true),
                (sp.2, dp.2, sw / 2, dw / 2, false),
            ];
            for (s, d, sw, dw, rising) in planes {
                for row in d.chunks_exact(dw) {
                    let ok = row
                        .windows(2)
                        .all(|p| if rising { p[0] <= p[1] } else { p[0] >= p[1] });
                    assert!(ok, "{what}: not monotonic: {row:?}");
                    assert_eq!(row, &d[..dw], "{what}: rows differ");
                }
                let (ms, md) = (mean(&s[..sw]), mean(&d[..dw]));
                assert!((ms - md).abs() <= 1.0, "{what}: mean {ms} became {md}");
            }
        }
    }

    #[test]
    fn a_two_to_one_box_on_a_checkerboard_gives_the_exact_mean() {
        for (sw, sh) in [(1280, 720), (640, 480), (1708, 960), (4, 4)] {
            for (a, b) in [(16, 235), (16, 17), (100, 201), (0, 255), (255, 254)] {
                let mut src = I420Frame::new(sw, sh);
                let (yp, up, vp) = src.planes_mut();
                for (plane, w) in [(yp, sw), (up, sw / 2), (vp, sw / 2)] {
                    for (i, p) in plane.iter_mut().enumerate() {
                        *p = if (i / w + i % w) % 2 == 0 { a } else { b };
                    }
                }
                let dst = scaled(&src, sw / 2, sh / 2);
                let mean = (u16::from(a) + u16::from(b)).div_ceil(2) as u8;
                assert_flat(&dst, mean, mean, mean, &format!("{sw}x{sh} {a}/{b}"));
            }
            // Any 2x2 block: the sum of four, plus 2, over 4.
            let src = noise(sw, sh, 7);
            let dst = scaled(&src, sw / 2, sh / 2);
            let (s, d) = (src.planes().0, dst.planes().0);
            for (i, &o) in d.iter().enumerate() {
                let (x, y) = (2 * (i % (sw / 2)), 2 * (i / (sw / 2)));
                let px = |x: usize, y: usize| u16::from(s[y * sw + x]);
                let sum = px(x, y) + px(x + 1, y) + px(x, y + 1) + px(x + 1, y + 1);
                assert_eq!(u16::from(o), (sum + 2) / 4, "{sw}x{sh} at {x},{y}");
            }
        }
    }

    /// The filter as a plain double loop over the axes' weights, with the
    /// same fixed-point steps: what every fast path must reproduce exactly.
    fn plain(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
        let (h, v) = (Axis::new(sw, dw), Axis::new(sh, dh));
        let mut out = Vec::new();
        for y in 0..dh {
            let mid: Vec<u32> = (0..sw)
                .map(|x| {
                    let s: u32 = (0..v.taps)
                        .map(|t| {
                            let w = u32::from(v.weights[y * v.taps + t]);
                            w * u32::from(src[(v.start[y] + t) * sw + x])
                        })
                        .sum();
                    (s + (1 << (V_SHIFT - 1))) >> V_SHIFT
                })
                .collect();
            out.extend((0..dw).map(|x| {
                let s: u32 = (0..h.taps)
                    .map(|t| u32::from(h.weights[x * h.taps + t]) * mid[h.start[x] + t])
                    .sum();
                ((s + (1 << (H_SHIFT - 1))) >> H_SHIFT) as u8
            }));
        }
        out
    }

    #[test]
    fn fast_paths_match_the_plain_filter() {
        // The kernels these sizes are meant to take.
        let periods = |sw, dw| Axis::new(sw, dw).period;
        assert_eq!(periods(1280, 640), Some((2, 1)));
        assert_eq!(periods(1920, 1280), Some((3, 2)));
        assert_eq!(periods(960, 320), Some((3, 1)));
        assert_eq!(periods(1280, 960), Some((4, 3)));
        assert_eq!(periods(1920, 480), Some((4, 1)));
        assert_eq!(periods(720, 720), Some((1, 1)));
        assert_eq!(periods(1280, 854), None);
        assert_eq!(periods(640, 1280), None);
        let more = [
            (1920, 1080, 480, 270),
            (1280, 720, 960, 540),
            (1920, 1080, 320, 180),
            (1280, 720, 426, 240),
            (64, 48, 10, 6),
        ];
        for &(sw, sh, dw, dh) in SIZES.iter().chain(&more) {
            let src = noise(sw, sh, (sw * dh) as u32);
            let dst = scaled(&src, dw, dh);
            let (s, d) = (src.planes(), dst.planes());
            let what = format!("{sw}x{sh} -> {dw}x{dh}");
            assert!(d.0 == plain(s.0, sw, sh, dw, dh), "{what}: luma");
            let (sw, sh, dw, dh) = (sw / 2, sh / 2, dw / 2, dh / 2);
            assert!(d.1 == plain(s.1, sw, sh, dw, dh), "{what}: U");
            assert!(d.2 == plain(s.2, sw, sh, dw, dh), "{what}: V");
        }
    }

    /// Independent floating-point weights: area overlap when shrinking,
    /// bilinear (edges held) when growing.
    fn exact_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f64)>> {
        let r = src as f64 / dst as f64;
        (0..dst)
            .map(|i| {
                if dst <= src {
                    let (lo, hi) = (i as f64 * r, (i + 1) as f64 * r);
                    (0..src)
                        .map(|x| (x, (hi.min(x as f64 + 1.0) - lo.max(x as f64)).max(0.0) / r))
                        .filter(|&(_, w)| w > 0.0)
                        .collect()
                } else {
                    let c = ((i as f64 + 0.5) * r - 0.5).clamp(0.0, (src - 1) as f64);
                    let x = c.floor() as usize;
                    let f = c - x as f64;
                    vec![(x, 1.0 - f), ((x + 1).min(src - 1), f)]
                }
            })
            .collect()
    }

    #[test]
    fn within_one_of_the_exact_average() {
        let mut worst = 0;
        for &(sw, sh, dw, dh) in &[
            (1280, 720, 854, 480),
            (1920, 1080, 1280, 720),
            (384, 216, 128, 72),
            (640, 360, 1280, 720),
            (100, 60, 38, 22),
        ] {
            let src = noise(sw, sh, 99);
            let dst = scaled(&src, dw, dh);
            let (hx, vy) = (exact_weights(sw, dw), exact_weights(sh, dh));
            let (s, d) = (src.planes().0, dst.planes().0);
            for (y, vw) in vy.iter().enumerate() {
                for (x, hw) in hx.iter().enumerate() {
                    let mut v = 0.0;
                    for &(sy, wy) in vw {
                        for &(sx, wx) in hw {
                            v += wy * wx * f64::from(s[sy * sw + sx]);
                        }
                    }
                    let diff = (f64::from(d[y * dw + x]) - v).abs();
                    assert!(
                        diff < 1.0,
                        "{sw}x{sh} -> {dw}x{dh} at {x},{y}: {} vs {v}",
                        d[y * dw + x]
                    );
                    worst = worst.max(d[y * dw + x].abs_diff(v.round() as u8));
                }
            }
        }
        assert!(worst <= 1);
    }

    #[test]
    fn odd_chroma_sizes_work() {
        // 854x480: chroma 427x240, both as destination and as source.
        let src = noise(1280, 720, 3);
        let dst = scaled(&src, 854, 480);
        assert_eq!(dst.data.len(), 854 * 480 + 2 * 427 * 240);
        let back = scaled(&dst, 640, 360);
        assert_eq!(back.data.len(), 640 * 360 + 2 * 320 * 180);
        for f in [&dst, &back] {
            assert!(f.data.iter().all(|&p| (16..=235).contains(&p)));
        }
        // Chroma 427 -> 213 and 213 -> 427 too.
        let src = flat(854, 480, 50, 60, 70);
        assert_flat(&scaled(&src, 426, 240), 50, 60, 70, "854 -> 426");
        assert_flat(
            &scaled(&flat(426, 240, 50, 60, 70), 854, 480),
            50,
            60,
            70,
            "426 -> 854",
        );
    }

    #[test]
    fn growing_works() {
        let src = noise(640, 360, 11);
        let dst = scaled(&src, 1280, 720);
        assert!(dst.data.iter().all(|&p| (16..=235).contains(&p)));
        // Tiny and extreme: one chroma sample to many, many to one.
        assert_flat(
            &scaled(&flat(2, 2, 30, 40, 50), 64, 36),
            30,
            40,
            50,
            "2x2 -> 64x36",
        );
        assert_flat(
            &scaled(&flat(64, 36, 30, 40, 50), 2, 2),
            30,
            40,
            50,
            "64x36 -> 2x2",
        );
        // Growing 2x by bilinear: the outputs around each input lie between
        // its neighbours; a step stays a (softened) step.
        let mut step = flat(8, 2, 16, 128, 128);
        step.planes_mut()
            .0
            .chunks_exact_mut(8)
            .for_each(|r| r[4..].fill(235));
        let big = scaled(&step, 16, 4);
        assert_eq!(
            &big.planes().0[..16],
            &[16, 16, 16, 16, 16, 16, 16, 71, 180, 235, 235, 235, 235, 235, 235, 235]
        );
    }

    #[test]
    fn the_scaler_is_reusable_and_follows_a_size_change() {
        let a = noise(1280, 720, 5);
        let b = noise(1920, 1080, 6);
        let mut scaler = Scaler::new(1280, 720, 640, 360);
        let mut dst = I420Frame::new(640, 360);
        scaler.run(&a, &mut dst);
        assert_eq!(dst.data, scaled(&a, 640, 360).data);
        scaler.run(&b, &mut dst);
        assert_eq!(dst.data, scaled(&b, 640, 360).data);
        // A destination buffer of the wrong length is resized.
        let mut short = I420Frame {
            width: 320,
            height: 180,
            data: Vec::new(),
        };
        scaler.run(&a, &mut short);
        assert_eq!(short.data, scaled(&a, 320, 180).data);
    }
}
