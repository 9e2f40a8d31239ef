//! The rendition ladder: lower renditions encoded from the same captured
//! picture next to the top one (`[video]`), so a player on a weak link
//! switches down instead of stalling. Kept apart from the rest of the
//! configuration because board profiles use [`Rung`] too.

use serde::{Deserialize, Serialize};

/// One lower rendition: its picture size and bitrate. Frame rate and GOP
/// are the top rendition's (keyframes must fall on the same pictures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// Lower renditions at most (four in all): each is a whole encoder instance.
pub const MAX_RUNGS: usize = 3;

/// The ladder's whole encoding work (every rendition's macroblocks per
/// second) may be at most this many times the top rendition's alone. 1.75
/// admits 720p + 480p + 360p or 1080p + 720p; a Pi 4 encodes 720p30 plus
/// 360p30 in software with room to spare, and the hardware encoder's one
/// 1080p30 budget holds 720p30 + 360p30.
pub const BUDGET_TIMES_TOP: f64 = 1.75;

/// The automatic ladder (`ladder` left out): one 360-line rung when the top
/// rendition is taller than 480 lines (what a phone on a weak Wi-Fi link
/// can hold), at 800 kbit/s or half the top's bitrate, whichever is lower;
/// nothing for smaller pictures, which are already cheap to watch.
pub fn automatic(top_w: u32, top_h: u32, top_kbps: u32) -> Vec<Rung> {
    if top_h <= 480 {
        return Vec::new();
    }
    let height = 360;
    let width = ((u64::from(top_w) * 360 / u64::from(top_h)) as u32 + 1) & !1;
    vec![Rung {
        width: width.max(16),
        height,
        bitrate_kbps: 800.min(top_kbps / 2).max(64),
    }]
}

/// Macroblocks in one picture (H.264 codes 16x16 blocks).
fn macroblocks(w: u32, h: u32) -> u64 {
    u64::from(w.div_ceil(16)) * u64::from(h.div_ceil(16))
}

/// Why a ladder cannot run, with the field to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderError {
    pub field: String,
    pub reason: String,
}

/// Checks an explicit ladder against the top rendition: at most
/// [`MAX_RUNGS`], each even-sized, strictly smaller than the one above it
/// (so the list is largest first and no rung upscales), a bitrate between
/// 64 kbit/s and the top's, and the whole within [`BUDGET_TIMES_TOP`].
pub fn check(rungs: &[Rung], top_w: u32, top_h: u32, top_kbps: u32) -> Result<(), LadderError> {
    let err = |field: String, reason: String| Err(LadderError { field, reason });
    if rungs.len() > MAX_RUNGS {
        return err(
            "ladder".into(),
            format!(
                "at most {MAX_RUNGS} lower renditions (each is one more encoder; got {})",
                rungs.len()
            ),
        );
    }
    let (mut above_w, mut above_h, mut above_name) = (top_w, top_h, "video".to_string());
    let mut work = macroblocks(top_w, top_h);
    for (i, r) in rungs.iter().enumerate() {
        for (name, v) in [("width", r.width), ("height", r.height)] {
            if !(16..=3840).contains(&v) || v % 2 != 0 {
                return err(
                    format!("ladder[{i}].{name}"),
                    format!("must be an even number between 16 and 3840 (got {v})"),
                );
            }
        }
        if r.width > above_w || r.height > above_h || (r.width, r.height) == (above_w, above_h) {
            let field = if r.width > above_w { "width" } else { "height" };
            return err(
                format!("ladder[{i}].{field}"),
                format!(
                    "{}x{} must be smaller than {above_name} ({above_w}x{above_h}): rungs go largest first and never above the source",
                    r.width, r.height
                ),
            );
        }
        if !(64..=top_kbps).contains(&r.bitrate_kbps) {
            return err(
                format!("ladder[{i}].bitrate_kbps"),
                format!(
                    "must be between 64 and the top rendition's {top_kbps} kbit/s (got {})",
                    r.bitrate_kbps
                ),
            );
        }
        work += macroblocks(r.width, r.height);
        (above_w, above_h, above_name) = (r.width, r.height, format!("ladder[{i}]"));
    }
    let top = macroblocks(top_w, top_h) as f64;
    if work as f64 > top * BUDGET_TIMES_TOP {
        return err(
            "ladder".into(),
            format!(
                "more than the encoder can run: the renditions together are {:.2} times the top one's work, at most {BUDGET_TIMES_TOP} (drop a rung or make them smaller)",
                work as f64 / top
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(width: u32, height: u32, bitrate_kbps: u32) -> Rung {
        Rung {
            width,
            height,
            bitrate_kbps,
        }
    }

    #[test]
    fn automatic_adds_360p_only_above_480_lines() {
        assert_eq!(automatic(1280, 720, 2500), vec![rung(640, 360, 800)]);
        assert_eq!(automatic(1920, 1080, 4500), vec![rung(640, 360, 800)]);
        assert_eq!(automatic(1280, 720, 1000), vec![rung(640, 360, 500)]);
        // 4:3 keeps its shape, rounded to even.
        assert_eq!(automatic(1024, 768, 2500), vec![rung(480, 360, 800)]);
        assert!(automatic(854, 480, 1500).is_empty());
        assert!(automatic(320, 240, 500).is_empty());
    }

    #[test]
    fn good_ladders_pass() {
        check(&[], 1280, 720, 2500).unwrap();
        check(&[rung(640, 360, 800)], 1280, 720, 2500).unwrap();
        check(
            &[rung(854, 480, 1200), rung(640, 360, 800)],
            1280,
            720,
            2500,
        )
        .unwrap();
        check(&[rung(1280, 720, 2500)], 1920, 1080, 4500).unwrap();
    }

    #[test]
    fn bad_ladders_name_the_field() {
        let field = |r: &[Rung]| check(r, 1280, 720, 2500).unwrap_err().field;
        assert_eq!(field(&[rung(1920, 1080, 800)]), "ladder[0].width");
        assert_eq!(field(&[rung(1280, 720, 800)]), "ladder[0].height");
        assert_eq!(
            field(&[rung(640, 360, 800), rung(854, 480, 700)]),
            "ladder[1].width"
        );
        assert_eq!(field(&[rung(641, 360, 800)]), "ladder[0].width");
        assert_eq!(field(&[rung(640, 360, 9000)]), "ladder[0].bitrate_kbps");
        assert_eq!(
            field(&[
                rung(640, 360, 800),
                rung(480, 270, 400),
                rung(320, 180, 200),
                rung(160, 90, 100)
            ]),
            "ladder"
        );
        // Two big rungs: 1 + 0.76 + 0.57 times the top's work.
        let e = check(
            &[rung(1108, 624, 2000), rung(960, 540, 1500)],
            1280,
            720,
            2500,
        )
        .unwrap_err();
        assert_eq!(e.field, "ladder");
        assert!(
            e.reason.contains("more than the encoder can run"),
            "{}",
            e.reason
        );
    }
}
