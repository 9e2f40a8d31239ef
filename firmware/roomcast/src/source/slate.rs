//! The "no signal" slate: what viewers and upstream servers get while the
//! camera is missing, so players and connections stay up and a person sees
//! why. Drawn with the test pattern's font, cheap enough to run at full rate.

use super::pattern::{glyph, Planes, ADVANCE, GLYPH_H, Y_BLACK};
use crate::base::frame::I420Frame;

/// Dark grey, so the slate is not mistaken for a black (dead) picture.
const Y_BACKGROUND: u8 = 48;
/// Characters of the reason line shown; longer reasons are cut.
const REASON_MAX: usize = 48;

/// Draws the slate: "NO SIGNAL", the reason, and the UTC time (so a viewer
/// sees the stream is alive), centred.
pub fn draw(out: &mut I420Frame, width: usize, height: usize, reason: &str, wall_unix_ms: u64) {
    if out.width != width || out.height != height || out.data.len() != width * height * 3 / 2 {
        *out = I420Frame::new(width, height);
    }
    let mut p = Planes::of(out);
    p.fill_rect(0, 0, width, height, Y_BACKGROUND);
    let ms = wall_unix_ms % 86_400_000;
    let clock = format!(
        "{:02}:{:02}:{:02}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60
    );
    let reason: String = reason
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .take(REASON_MAX)
        .collect();
    let big = (height / 60).max(1);
    let small = (big / 2).max(1);
    let lines: [(&str, usize); 3] = [("NO SIGNAL", big), (&reason, small), (&clock, small)];
    let total: usize = lines.iter().map(|(_, s)| (GLYPH_H + 3) * s).sum();
    let mut y = height.saturating_sub(total) / 2;
    for (text, scale) in lines {
        // Shrink a line that would not fit the width.
        let mut s = scale;
        while s > 1 && text.len() * ADVANCE * s > width {
            s -= 1;
        }
        let w = (text.len() * ADVANCE).saturating_sub(1) * s;
        let x = width.saturating_sub(w) / 2;
        p.fill_rect(
            x.saturating_sub(s),
            y.saturating_sub(s),
            x + w + s,
            y + GLYPH_H * s + s,
            Y_BLACK,
        );
        for (i, c) in text.bytes().enumerate() {
            p.draw_glyph(glyph(c), x + i * ADVANCE * s, y, s);
        }
        y += (GLYPH_H + 3) * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pattern::Y_WHITE;

    #[test]
    fn slate_is_drawn_at_the_asked_size_with_text() {
        let mut f = I420Frame::new(2, 2);
        draw(
            &mut f,
            640,
            360,
            "camera unplugged (/dev/video0)",
            3_723_000,
        );
        assert_eq!((f.width, f.height), (640, 360));
        let (y, u, v) = f.planes();
        // Mostly background, some white text, neutral chroma everywhere.
        let white = y.iter().filter(|&&p| p == Y_WHITE).count();
        let bg = y.iter().filter(|&&p| p == Y_BACKGROUND).count();
        assert!(white > 500, "{white}");
        assert!(bg > y.len() / 2, "{bg}");
        assert!(u.iter().chain(v).all(|&c| c == 128));
        // Different reasons give different pictures.
        let mut g = I420Frame::new(640, 360);
        draw(&mut g, 640, 360, "no picture for 2 s", 3_723_000);
        assert_ne!(f.data, g.data);
        // Tiny pictures do not panic.
        draw(&mut g, 16, 16, "x", 0);
    }
}
