//! Test-pattern pictures for the test source, drawn straight into I420.
//!
//! The static part (colour bars over a luma ramp) is rendered once in
//! [`Pattern::new`]; each frame is then one memcpy plus a few small row fills,
//! cheap enough for 1080p30 on a Raspberry Pi. The moving parts are chosen so
//! that both a person and a test can see the stream advance: a sweeping box,
//! a once-a-second white flash band (for measuring A/V sync and latency), and
//! a frame counter with the UTC wall-clock time in a 5x7 bitmap font.

use crate::base::frame::I420Frame;

/// Limited-range (BT.601) luma of white and black, and neutral chroma.
pub(super) const Y_WHITE: u8 = 235;
pub(super) const Y_BLACK: u8 = 16;
const UV_GREY: u8 = 128;

/// 75% colour bars as (Y, U, V), BT.601 limited range: white, yellow, cyan,
/// green, magenta, red, blue — the order every video person recognises.
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
];

/// Glyph width and height in font pixels; each row's bit 4 is the leftmost.
const GLYPH_W: usize = 5;
pub(super) const GLYPH_H: usize = 7;
/// Horizontal advance per character in font pixels (one column of spacing).
pub(super) const ADVANCE: usize = GLYPH_W + 1;

/// Digits for the overlay, upper-case letters and a little punctuation for
/// the "no signal" slate ([`super::slate`]); lower case is drawn as upper.
const FONT: [(u8, [u8; GLYPH_H]); 48] = [
    (b'0', [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E]),
    (b'1', [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    (b'2', [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F]),
    (b'3', [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E]),
    (b'4', [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02]),
    (b'5', [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E]),
    (b'6', [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E]),
    (b'7', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08]),
    (b'8', [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E]),
    (b'9', [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C]),
    (b':', [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00]),
    (b'.', [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C]),
    (b'#', [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A]),
    (b'A', [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11]),
    (b'B', [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E]),
    (b'C', [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E]),
    (b'D', [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E]),
    (b'E', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F]),
    (b'F', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10]),
    (b'G', [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F]),
    (b'H', [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11]),
    (b'I', [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    (b'J', [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C]),
    (b'K', [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11]),
    (b'L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F]),
    (b'M', [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11]),
    (b'N', [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11]),
    (b'O', [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    (b'P', [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10]),
    (b'Q', [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D]),
    (b'R', [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11]),
    (b'S', [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E]),
    (b'T', [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    (b'U', [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    (b'V', [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04]),
    (b'W', [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A]),
    (b'X', [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11]),
    (b'Y', [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04]),
    (b'Z', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F]),
    (b'/', [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10]),
    (b'-', [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00]),
    (b'(', [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02]),
    (b')', [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08]),
    (b',', [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08]),
    (b'!', [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04]),
    (b'=', [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00]),
    (b'_', [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F]),
    (b' ', [0x00; GLYPH_H]),
];

/// Overlay text is fixed-width ("#000123 HH:MM:SS.mmm") so its layout never
/// moves and it can be formatted without allocating.
const TEXT_LEN: usize = 20;

pub(super) fn glyph(c: u8) -> &'static [u8; GLYPH_H] {
    let c = c.to_ascii_uppercase();
    FONT.iter()
        .find(|(ch, _)| *ch == c)
        .map_or(&FONT[FONT.len() - 1].1, |(_, g)| g)
}

/// Where everything goes for one picture size; shared by drawing and tests so
/// they cannot disagree.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Rows `0..bars_h` hold colour bars, the rest the luma ramp (even, so
    /// chroma rows split cleanly).
    bars_h: usize,
    /// The flash band covers rows `0..flash_h` across the full width.
    flash_h: usize,
    /// Side of the moving box and the row of its top edge.
    box_size: usize,
    box_y: usize,
    /// Pixels the box moves per frame.
    box_step: usize,
    /// Font pixel size in picture pixels, and the top-left of the first glyph.
    scale: usize,
    text_x: usize,
    text_y: usize,
}

impl Layout {
    fn new(width: usize, height: usize) -> Self {
        let bars_h = (height * 2 / 3) & !1;
        let flash_h = (height / 8).max(2) & !1;
        let box_size = (height / 6).max(2) & !1;
        // Centre the box in the bars below the flash band, so flashes and
        // the box never hide each other.
        let box_y = (flash_h + bars_h.saturating_sub(flash_h + box_size) / 2) & !1;
        // About two seconds per sweep at 30 fps, whatever the width.
        let box_step = (width / 60).max(2) & !1;
        // A character cell (glyph plus one row of spacing) of about height/12,
        // but never wider than the picture allows for the whole line.
        let by_height = (height + 48) / 96;
        let by_width = width / (TEXT_LEN * ADVANCE + 1);
        let scale = by_height.min(by_width).max(1);
        let text_w = (TEXT_LEN * ADVANCE - 1) * scale;
        let text_h = GLYPH_H * scale;
        let text_x = width.saturating_sub(text_w) / 2;
        let text_y = bars_h + height.saturating_sub(bars_h).saturating_sub(text_h) / 2;
        Layout {
            bars_h,
            flash_h,
            box_size,
            box_y,
            box_step,
            scale,
            text_x,
            text_y,
        }
    }

    /// Box left edge for frame `n`: a triangle wave so it bounces back and
    /// forth instead of jumping, kept even for clean chroma.
    fn box_x(&self, n: u64, width: usize) -> usize {
        let travel = width.saturating_sub(self.box_size) as u64;
        if travel == 0 {
            return 0;
        }
        let pos = n.wrapping_mul(self.box_step as u64) % (2 * travel);
        let x = if pos > travel { 2 * travel - pos } else { pos };
        (x as usize) & !1
    }
}

/// Draws frame number `n` of the pattern: what a person and a test see advance.
pub struct Pattern {
    layout: Layout,
    /// Static colour bars and ramp, copied whole into every frame.
    background: I420Frame,
}

impl Pattern {
    /// Renders the static background once for this picture size.
    pub fn new(width: usize, height: usize) -> Self {
        let layout = Layout::new(width, height);
        let mut background = I420Frame::new(width, height);
        let (cw, ch) = (width / 2, height / 2);
        let bar_of = |x: usize| BARS[(x * BARS.len() / width.max(1)).min(BARS.len() - 1)];

        let bars_y: Vec<u8> = (0..width).map(|x| bar_of(x).0).collect();
        let ramp_y: Vec<u8> = (0..width)
            .map(|x| {
                let span = usize::from(Y_WHITE - Y_BLACK);
                (usize::from(Y_BLACK) + x * span / (width - 1).max(1)) as u8
            })
            .collect();
        let bars_u: Vec<u8> = (0..cw).map(|cx| bar_of(2 * cx).1).collect();
        let bars_v: Vec<u8> = (0..cw).map(|cx| bar_of(2 * cx).2).collect();

        let (yp, up, vp) = background.planes_mut();
        if width > 0 {
            for (row, line) in yp.chunks_exact_mut(width).enumerate() {
                let src = if row < layout.bars_h {
                    &bars_y
                } else {
                    &ramp_y
                };
                line.copy_from_slice(src);
            }
        }
        if cw > 0 {
            // The ramp is grey, which I420Frame::new already left in place.
            let bar_rows = (layout.bars_h / 2).min(ch);
            for line in up.chunks_exact_mut(cw).take(bar_rows) {
                line.copy_from_slice(&bars_u);
            }
            for line in vp.chunks_exact_mut(cw).take(bar_rows) {
                line.copy_from_slice(&bars_v);
            }
        }
        Pattern { layout, background }
    }

    /// Writes frame `n` into `out` (same size): copies the background, then draws
    /// - a moving white box that sweeps left-right (position from n),
    /// - a full-white "flash" band (a strip across the picture) on the first frame of every second (n % fps == 0), so sync can later be measured,
    /// - a text line in the lower part: frame counter "#000123" (low six digits of `n`) and wall-clock time "HH:MM:SS.mmm" (UTC, from `wall_unix_ms`).
    ///
    /// If `out` has another size it is resized to this pattern's rather than
    /// panicking; its buffer is reused, so steady-state drawing never allocates.
    pub fn draw(&self, n: u64, fps: u32, wall_unix_ms: u64, out: &mut I420Frame) {
        let (w, h) = (self.background.width, self.background.height);
        let l = &self.layout;
        out.width = w;
        out.height = h;
        out.data.clear();
        out.data.extend_from_slice(&self.background.data);
        let (yp, up, vp) = out.planes_mut();
        let mut planes = Planes {
            y: yp,
            u: up,
            v: vp,
            w,
            h,
        };

        let bx = l.box_x(n, w);
        planes.fill_rect(bx, l.box_y, bx + l.box_size, l.box_y + l.box_size, Y_WHITE);

        if n.is_multiple_of(u64::from(fps.max(1))) {
            planes.fill_rect(0, 0, w, l.flash_h, Y_WHITE);
        }

        let text = format_text(n, wall_unix_ms);
        let s = l.scale;
        // A black plate behind the text keeps it readable over the ramp.
        planes.fill_rect(
            l.text_x.saturating_sub(s),
            l.text_y.saturating_sub(s),
            l.text_x + (TEXT_LEN * ADVANCE - 1) * s + s,
            l.text_y + GLYPH_H * s + s,
            Y_BLACK,
        );
        for (i, &c) in text.iter().enumerate() {
            planes.draw_glyph(glyph(c), l.text_x + i * ADVANCE * s, l.text_y, s);
        }
    }
}

/// "#NNNNNN HH:MM:SS.mmm": the counter wraps at a million frames (over nine
/// hours at 30 fps) to keep the width fixed; the clock tells laps apart.
fn format_text(n: u64, wall_unix_ms: u64) -> [u8; TEXT_LEN] {
    let mut t = *b"#000000 00:00:00.000";
    let mut put = |end: usize, digits: usize, mut v: u64| {
        for slot in t[end - digits..end].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    let ms = wall_unix_ms % 86_400_000;
    put(7, 6, n % 1_000_000);
    put(10, 2, ms / 3_600_000);
    put(13, 2, ms / 60_000 % 60);
    put(16, 2, ms / 1000 % 60);
    put(20, 3, ms % 1000);
    t
}

/// Borrowed planes with clipped drawing primitives.
pub(super) struct Planes<'a> {
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
    w: usize,
    h: usize,
}

impl<'a> Planes<'a> {
    pub(super) fn of(frame: &'a mut I420Frame) -> Self {
        let (w, h) = (frame.width, frame.height);
        let (y, u, v) = frame.planes_mut();
        Planes { y, u, v, w, h }
    }

    /// Fills `[x0, x1) x [y0, y1)` with luma `luma` and neutral chroma,
    /// clipped to the picture. Chroma covers every 2x2 block the rectangle
    /// touches, so grey/white shapes get no coloured fringe from the bars.
    pub(super) fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, luma: u8) {
        let (x1, y1) = (x1.min(self.w), y1.min(self.h));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for row in y0..y1 {
            self.y[row * self.w + x0..row * self.w + x1].fill(luma);
        }
        let (cw, ch) = (self.w / 2, self.h / 2);
        let (cx0, cx1) = (x0 / 2, x1.div_ceil(2).min(cw));
        let (cy0, cy1) = (y0 / 2, y1.div_ceil(2).min(ch));
        if cx0 >= cx1 {
            return;
        }
        for row in cy0..cy1 {
            self.u[row * cw + cx0..row * cw + cx1].fill(UV_GREY);
            self.v[row * cw + cx0..row * cw + cx1].fill(UV_GREY);
        }
    }

    /// Draws one glyph in white luma with top-left `(x, y)`, each font pixel a
    /// `scale`-sized square. Chroma is left alone: the text plate is grey.
    /// Runs of set bits become single row fills.
    pub(super) fn draw_glyph(&mut self, g: &[u8; GLYPH_H], x: usize, y: usize, scale: usize) {
        for (r, &bits) in g.iter().enumerate() {
            let mut col = 0;
            while col < GLYPH_W {
                if bits & (0x10 >> col) == 0 {
                    col += 1;
                    continue;
                }
                let start = col;
                while col < GLYPH_W && bits & (0x10 >> col) != 0 {
                    col += 1;
                }
                let x0 = x + start * scale;
                let y0 = y + r * scale;
                self.fill_luma(x0, y0, x + col * scale, y0 + scale, Y_WHITE);
            }
        }
    }

    fn fill_luma(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, luma: u8) {
        let (x1, y1) = (x1.min(self.w), y1.min(self.h));
        if x0 >= x1 {
            return;
        }
        for row in y0..y1 {
            self.y[row * self.w + x0..row * self.w + x1].fill(luma);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Length of the "#000123" counter at the start of the text.
    const COUNTER_LEN: usize = 7;

    /// 2024-05-06 12:34:56.789 UTC.
    const WALL: u64 = 1_714_998_896_789;

    fn render(w: usize, h: usize, n: u64, fps: u32, wall: u64) -> I420Frame {
        let mut out = I420Frame::new(w, h);
        Pattern::new(w, h).draw(n, fps, wall, &mut out);
        out
    }

    /// Reads the text line back by sampling the centre of every font pixel
    /// and matching each cell against the glyph table exactly.
    fn ocr(frame: &I420Frame, chars: usize) -> String {
        let l = Layout::new(frame.width, frame.height);
        let (y, _, _) = frame.planes();
        let s = l.scale;
        (0..chars)
            .map(|i| {
                let mut cell = [0u8; GLYPH_H];
                for (r, bits) in cell.iter_mut().enumerate() {
                    for c in 0..GLYPH_W {
                        let px = l.text_x + i * ADVANCE * s + c * s + s / 2;
                        let py = l.text_y + r * s + s / 2;
                        if y[py * frame.width + px] > 128 {
                            *bits |= 0x10 >> c;
                        }
                    }
                }
                FONT.iter()
                    .find(|(_, g)| *g == cell)
                    .map_or('?', |(ch, _)| *ch as char)
            })
            .collect()
    }

    #[test]
    fn frame_sizes() {
        for (w, h) in [(16, 16), (320, 240), (640, 360), (1920, 1080)] {
            let f = I420Frame::new(w, h);
            assert_eq!(f.data.len(), w * h * 3 / 2);
            let (y, u, v) = f.planes();
            assert_eq!((y.len(), u.len(), v.len()), (w * h, w * h / 4, w * h / 4));
            assert!(y.iter().all(|&p| p == 16) && u.iter().chain(v).all(|&p| p == 128));
            let out = render(w, h, 5, 30, WALL);
            assert_eq!(
                (out.width, out.height, out.data.len()),
                (w, h, w * h * 3 / 2)
            );
        }
    }

    #[test]
    fn draw_resizes_mismatched_output() {
        let mut out = I420Frame::new(16, 16);
        Pattern::new(64, 48).draw(3, 30, WALL, &mut out);
        assert_eq!(
            (out.width, out.height, out.data.len()),
            (64, 48, 64 * 48 * 3 / 2)
        );
    }

    #[test]
    fn different_frames_differ() {
        assert_ne!(
            render(320, 240, 1, 30, WALL).data,
            render(320, 240, 2, 30, WALL).data
        );
    }

    #[test]
    fn deterministic() {
        assert_eq!(
            render(320, 240, 77, 30, WALL).data,
            render(320, 240, 77, 30, WALL).data
        );
    }

    #[test]
    fn counter_region_changes() {
        let (w, h) = (320, 240);
        let l = Layout::new(w, h);
        let region = |f: &I420Frame| -> Vec<u8> {
            let (y, _, _) = f.planes();
            let x1 = l.text_x + COUNTER_LEN * ADVANCE * l.scale;
            (l.text_y..l.text_y + GLYPH_H * l.scale)
                .flat_map(|r| y[r * w + l.text_x..r * w + x1].to_vec())
                .collect()
        };
        let (a, b) = (render(w, h, 1, 30, WALL), render(w, h, 2, 30, WALL));
        assert_ne!(region(&a), region(&b));
    }

    #[test]
    fn flash_band_only_on_first_frame_of_second() {
        let (w, h) = (320, 240);
        let band = |f: &I420Frame| -> u8 {
            let (y, _, _) = f.planes();
            *y[..w * Layout::new(w, h).flash_h].iter().min().unwrap()
        };
        for n in [0, 30, 60] {
            assert!(
                band(&render(w, h, n, 30, WALL)) >= 230,
                "frame {n} should flash"
            );
        }
        for n in [1, 15, 29, 31] {
            assert!(
                band(&render(w, h, n, 30, WALL)) < 100,
                "frame {n} should not flash"
            );
        }
        // fps 0 must not divide by zero.
        render(w, h, 7, 0, WALL);
    }

    #[test]
    fn tiny_and_odd_sizes_do_not_panic() {
        for (w, h) in [
            (16, 16),
            (18, 10),
            (2, 2),
            (0, 0),
            (17, 15),
            (4000, 16),
            (16, 3000),
        ] {
            let p = Pattern::new(w, h);
            let mut out = I420Frame::new(w, h);
            for n in (0..200).chain([u64::MAX - 1, u64::MAX]) {
                p.draw(n, 30, WALL.wrapping_mul(n), &mut out);
            }
        }
    }

    #[test]
    fn glyphs_are_distinct() {
        for (i, a) in FONT.iter().enumerate() {
            for b in &FONT[i + 1..] {
                assert_ne!(a.1, b.1, "{} and {}", a.0 as char, b.0 as char);
            }
        }
    }

    #[test]
    fn text_reads_back() {
        let f = render(640, 360, 123, 30, WALL);
        assert_eq!(ocr(&f, COUNTER_LEN), "#000123");
        assert_eq!(ocr(&f, TEXT_LEN), "#000123 12:34:56.789");
        // Readable at the smallest size we care about, even on a flash frame.
        assert_eq!(
            ocr(&render(320, 240, 30, 30, 0), TEXT_LEN),
            "#000030 00:00:00.000"
        );
        assert_eq!(
            ocr(&render(1920, 1080, 999_999, 30, WALL), TEXT_LEN),
            "#999999 12:34:56.789"
        );
    }

    #[test]
    fn text_scales_with_height() {
        for (w, h) in [(320, 240), (640, 360), (1280, 720), (1920, 1080)] {
            let cell = (GLYPH_H + 1) * Layout::new(w, h).scale;
            assert!(
                cell * 12 <= h * 3 / 2 && cell * 12 >= h * 2 / 3,
                "{w}x{h}: cell {cell}"
            );
        }
    }
}
