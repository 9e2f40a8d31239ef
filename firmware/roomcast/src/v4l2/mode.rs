//! What a device can do, and which of its modes to use.
//!
//! The choice is made in one pure function, [`choose`], so the rule is
//! written down once and tested against the modes real cameras list:
//!
//! 1. Formats: for pass-through only H.264; otherwise raw NV12, YUYV, YU12
//!    (no decoding) and then MJPEG (decoded in software, costs CPU).
//! 2. Frame rate before size: a mode that reaches the configured rate beats
//!    one that has the configured size but not the rate (a meeting needs
//!    motion more than pixels). 29.97 counts as 30.
//! 3. Size: the configured size exactly; else the largest below it (the
//!    encoder's cost grows with pixels, and the box has no scaler); else the
//!    smallest above it.
//! 4. Format preference as in 1 (NV12 > YUYV > YU12 > MJPEG).
//! 5. The lowest rate that still reaches the target (no frames to throw
//!    away); if none reaches it, the highest.

use super::{DevResult, Device, FourCc, FrameSizes, Interval, Intervals, Mode, Queue};

/// What the configuration asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// The camera's own H.264 goes out unchanged.
    pub passthrough: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    #[error("the camera offers no H.264 mode, so pass-through cannot work (use encoder \"auto\")")]
    NoH264,
    #[error("the camera offers no format roomcast can read (it lists {0})")]
    NoUsableFormat(String),
}

/// Raw formats we convert cheaply, best first; MJPEG after them.
const PREFERENCE: [FourCc; 4] = [FourCc::NV12, FourCc::YUYV, FourCc::YU12, FourCc::MJPG];

fn format_rank(f: FourCc, passthrough: bool) -> Option<usize> {
    if passthrough {
        return (f == FourCc::H264).then_some(0);
    }
    PREFERENCE.iter().position(|p| *p == f)
}

fn reaches(i: &Interval, fps: u32) -> bool {
    // 29.97 (1001/30000) reaches 30; 25 does not.
    i.fps_f64() >= f64::from(fps) * 0.99
}

/// Picks the mode per the rule in the module doc.
pub fn choose(modes: &[Mode], want: Want) -> Result<Mode, NegotiateError> {
    let usable: Vec<&Mode> = modes
        .iter()
        .filter(|m| format_rank(m.fourcc, want.passthrough).is_some())
        .collect();
    if usable.is_empty() {
        if want.passthrough {
            return Err(NegotiateError::NoH264);
        }
        let mut names: Vec<String> = modes.iter().map(|m| m.fourcc.to_string()).collect();
        names.dedup();
        return Err(NegotiateError::NoUsableFormat(if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        }));
    }
    let want_area = u64::from(want.width) * u64::from(want.height);
    let key = |m: &Mode| {
        let fast = reaches(&m.interval, want.fps);
        let area = u64::from(m.width) * u64::from(m.height);
        let exact = m.width == want.width && m.height == want.height;
        // Lower is better in every component.
        let size_class = if exact {
            0
        } else if area <= want_area {
            1
        } else {
            2
        };
        let size_order = match size_class {
            1 => u64::MAX - area, // largest below first
            2 => area,            // smallest above first
            _ => 0,
        };
        // Among fast modes the slowest; among slow ones the fastest. In
        // thousandths of a frame per second so 29.97 and 30 differ.
        let milli_fps = (m.interval.fps_f64() * 1000.0) as u64;
        let rate_order = if fast {
            milli_fps
        } else {
            u64::MAX - milli_fps
        };
        (
            !fast,
            size_class,
            size_order,
            format_rank(m.fourcc, want.passthrough).unwrap_or(usize::MAX),
            rate_order,
        )
    };
    let best = usable
        .into_iter()
        .min_by_key(|m| key(m))
        .expect("usable is not empty");
    Ok(*best)
}

/// Sizes tried inside a stepwise/continuous range: the ones people ask for.
const COMMON_SIZES: [(u32, u32); 8] = [
    (640, 360),
    (640, 480),
    (800, 600),
    (1024, 576),
    (1280, 720),
    (1280, 960),
    (1600, 900),
    (1920, 1080),
];
const COMMON_FPS: [u32; 5] = [60, 50, 30, 25, 15];

fn in_step(v: u32, min: u32, max: u32, step: u32) -> bool {
    v >= min && v <= max && (step <= 1 || (v - min).is_multiple_of(step))
}

/// Every mode of `dev`'s capture queue (stepwise ranges reduced to common
/// sizes and rates), for `/api/devices` and for [`choose`].
pub fn list_modes(dev: &dyn Device) -> DevResult<Vec<Mode>> {
    let mut out = Vec::new();
    for desc in dev.enum_formats(Queue::Capture)? {
        let sizes = match dev.enum_frame_sizes(desc.fourcc)? {
            FrameSizes::Discrete(s) => s,
            FrameSizes::Stepwise { min, max, step } => {
                let mut s: Vec<(u32, u32)> = COMMON_SIZES
                    .iter()
                    .copied()
                    .filter(|&(w, h)| {
                        in_step(w, min.0, max.0, step.0) && in_step(h, min.1, max.1, step.1)
                    })
                    .collect();
                if !s.contains(&max) {
                    s.push(max);
                }
                s
            }
        };
        for (w, h) in sizes {
            let intervals = match dev.enum_frame_intervals(desc.fourcc, w, h)? {
                Intervals::Discrete(i) => i,
                Intervals::Stepwise { min, max, .. } => {
                    // min is the shortest interval, i.e. the highest rate.
                    let (lo, hi) = (max.fps_f64(), min.fps_f64());
                    let mut i: Vec<Interval> = COMMON_FPS
                        .iter()
                        .map(|&f| Interval::from_fps(f))
                        .filter(|i| i.fps_f64() >= lo && i.fps_f64() <= hi)
                        .collect();
                    if !i.contains(&min) {
                        i.insert(0, min);
                    }
                    i
                }
            };
            for interval in intervals {
                out.push(Mode {
                    fourcc: desc.fourcc,
                    width: w,
                    height: h,
                    interval,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(f: FourCc, w: u32, h: u32, fps: u32) -> Mode {
        Mode {
            fourcc: f,
            width: w,
            height: h,
            interval: Interval::from_fps(fps),
        }
    }

    /// The "typical UVC camera".
    fn uvc() -> Vec<Mode> {
        vec![
            m(FourCc::YUYV, 640, 480, 30),
            m(FourCc::YUYV, 1280, 720, 10),
            m(FourCc::MJPG, 1920, 1080, 30),
            m(FourCc::H264, 1920, 1080, 30),
        ]
    }

    fn want(width: u32, height: u32, fps: u32, passthrough: bool) -> Want {
        Want {
            width,
            height,
            fps,
            passthrough,
        }
    }

    /// What [`uvc`] gives for (width, height, fps, pass-through).
    fn uvc_choices() -> [(u32, u32, u32, bool, Mode); 6] {
        [
            // Exact raw mode.
            (640, 480, 30, false, m(FourCc::YUYV, 640, 480, 30)),
            // 1080p30 only in MJPEG (H.264 is not decoded).
            (1920, 1080, 30, false, m(FourCc::MJPG, 1920, 1080, 30)),
            // 720p30: YUYV 720p only does 10 fps, so rate wins over size and
            // the largest size below 720p that does 30 fps is taken.
            (1280, 720, 30, false, m(FourCc::YUYV, 640, 480, 30)),
            // Asking for 10 fps makes the exact size reachable.
            (1280, 720, 10, false, m(FourCc::YUYV, 1280, 720, 10)),
            // Pass-through takes the camera's H.264.
            (1920, 1080, 30, true, m(FourCc::H264, 1920, 1080, 30)),
            (1280, 720, 30, true, m(FourCc::H264, 1920, 1080, 30)),
        ]
    }

    #[test]
    fn typical_uvc_camera() {
        let c = uvc();
        for (w, h, fps, pass, expect) in uvc_choices() {
            assert_eq!(choose(&c, want(w, h, fps, pass)), Ok(expect));
        }
    }

    #[test]
    fn the_fake_uvc_camera_lists_its_modes_and_the_same_choices_follow() {
        use crate::base::clock::SimClock;
        use crate::sim::{CameraSpec, FakeHandle};
        let h = FakeHandle::new_camera(
            CameraSpec::typical_uvc(),
            std::sync::Arc::new(SimClock::new(0)),
        );
        let dev = h.open().unwrap();
        let listed = list_modes(dev.as_ref()).unwrap();
        for mode in uvc() {
            assert!(listed.contains(&mode), "{mode:?} not in {listed:?}");
        }
        assert_eq!(listed.len(), 4, "{listed:?}");
        for (w, h, fps, pass, expect) in uvc_choices() {
            assert_eq!(choose(&listed, want(w, h, fps, pass)), Ok(expect));
        }
    }

    #[test]
    fn format_preference_and_rates() {
        let ntsc = Mode {
            interval: Interval {
                num: 1001,
                den: 30000,
            },
            ..m(FourCc::YUYV, 1280, 720, 0)
        };
        // (modes, wanted size at 30 fps, choice)
        for (modes, (w, h), expect) in [
            (
                vec![
                    m(FourCc::MJPG, 1280, 720, 30),
                    m(FourCc::YUYV, 1280, 720, 30),
                    m(FourCc::NV12, 1280, 720, 60),
                    m(FourCc::NV12, 1280, 720, 30),
                ],
                (1280, 720),
                m(FourCc::NV12, 1280, 720, 30),
            ),
            // 29.97 reaches 30.
            (
                vec![ntsc, m(FourCc::YUYV, 1280, 720, 25)],
                (1280, 720),
                ntsc,
            ),
            // Nothing reaches the rate: the fastest at the best size.
            (
                vec![
                    m(FourCc::YUYV, 1280, 720, 5),
                    m(FourCc::YUYV, 1280, 720, 10),
                ],
                (1280, 720),
                m(FourCc::YUYV, 1280, 720, 10),
            ),
            // Only bigger sizes: the smallest of them.
            (
                vec![
                    m(FourCc::YUYV, 1920, 1080, 30),
                    m(FourCc::YUYV, 1280, 960, 30),
                ],
                (640, 480),
                m(FourCc::YUYV, 1280, 960, 30),
            ),
        ] {
            let got = choose(&modes, want(w, h, 30, false));
            assert_eq!(got, Ok(expect), "{modes:?}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let raw_only = vec![m(FourCc::YUYV, 640, 480, 30)];
        assert_eq!(
            choose(&raw_only, want(640, 480, 30, true)),
            Err(NegotiateError::NoH264)
        );
        let odd = vec![m(FourCc(*b"GREY"), 640, 480, 30)];
        let e = choose(&odd, want(640, 480, 30, false)).unwrap_err();
        assert!(e.to_string().contains("GREY"), "{e}");
    }
}
