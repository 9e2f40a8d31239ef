//! A V4L2 camera that survives being unplugged, stalling or failing.
//!
//! While the camera works its frames go out with their kernel timestamps
//! mapped onto our clock. When it disappears (`ENODEV`), stops delivering
//! for [`STALL`], or errors, it is closed and reopened with backoff; in the
//! meantime the source paces a "no signal" slate ([`super::slate`]) at the
//! configured rate, so encoders, HLS viewers and upstream servers never see
//! the stream stop. State and reason are published for status and the page.

use super::{slate, Next, PassthroughFrame, Source};
use crate::base::clock::SharedClock;
use crate::base::frame::{I420Frame, RawFrame};
use crate::source::capture::{Camera, CaptureError, Captured, Controls};
use crate::v4l2::mode::Want;
use crate::v4l2::Backend;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// No frame for this long and the camera counts as stalled.
pub const STALL: Duration = Duration::from_secs(2);
/// How long one `next` call may block, so stop requests are seen quickly.
const POLL: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Short, because reopening a missing node is cheap and users wait.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a camera may take to send its first frame at start before
/// the slate shows.
const STARTUP_GRACE: Duration = Duration::from_millis(500);
/// One 90 kHz tick, rounded up: the least step that keeps PTS increasing.
const TICK_NS: u64 = 11_112;

/// What status and the web page show about the camera.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CameraStatus {
    pub device: String,
    /// `"live"`, `"no signal"`.
    pub state: &'static str,
    /// Why there is no signal (empty while live).
    pub reason: String,
    /// The camera's name (`VIDIOC_QUERYCAP` card).
    pub card: String,
    /// Negotiated mode, e.g. `"YUYV 640x480@30"`.
    pub mode: String,
    pub frames: u64,
    /// Frames the driver dropped or flagged corrupt.
    pub dropped: u64,
    /// Buffers that could not be decoded.
    pub bad: u64,
    /// Times the camera was (re)opened.
    pub opens: u64,
    /// Slate frames sent while the camera was missing.
    pub slate_frames: u64,
    /// Controls that could not be set.
    pub warnings: Vec<String>,
}

/// Controls the web page may change while streaming.
#[derive(Default)]
pub struct LiveControls {
    inner: Mutex<(u64, Controls)>,
}

impl LiveControls {
    pub fn new(c: Controls) -> Self {
        LiveControls {
            inner: Mutex::new((0, c)),
        }
    }
    pub fn set(&self, c: Controls) {
        let mut g = crate::base::lock(&self.inner);
        if g.1 != c {
            *g = (g.0 + 1, c);
        }
    }
    fn get(&self) -> (u64, Controls) {
        crate::base::lock(&self.inner).clone()
    }
}

pub struct CameraSource {
    backend: Arc<dyn Backend>,
    path: String,
    want: Want,
    controls: Arc<LiveControls>,
    applied: u64,
    clock: SharedClock,
    camera: Option<Camera>,
    status: Arc<Mutex<CameraStatus>>,
    keyframe: Arc<AtomicBool>,
    retry_at_ns: u64,
    backoff: Duration,
    last_frame_ns: u64,
    last_out_ns: Option<u64>,
    slate_next_ns: u64,
    slate_size: (usize, usize),
    /// Decimation: a camera faster than the configured rate (30 fps camera,
    /// 25 fps stream) has frames taken only when this is due.
    next_due_ns: Option<u64>,
    /// A frame arrived since the camera was opened; until then the slate
    /// keeps running (a stalled camera opens fine but sends nothing).
    live: bool,
}

impl CameraSource {
    /// `want` is the configured size and rate (the slate uses them too);
    /// `keyframe` is set by the pipeline when a pass-through receiver needs
    /// an IDR.
    pub fn new(
        backend: Arc<dyn Backend>,
        path: &str,
        want: Want,
        controls: Arc<LiveControls>,
        clock: SharedClock,
        status: Arc<Mutex<CameraStatus>>,
        keyframe: Arc<AtomicBool>,
    ) -> Self {
        *crate::base::lock(&status) = CameraStatus {
            device: path.into(),
            state: "no signal",
            reason: "opening".into(),
            ..CameraStatus::default()
        };
        let now = clock.monotonic_ns();
        CameraSource {
            backend,
            path: path.into(),
            want,
            controls,
            applied: 0,
            clock,
            camera: None,
            status,
            keyframe,
            retry_at_ns: now,
            backoff: BACKOFF_MIN,
            last_frame_ns: now,
            last_out_ns: None,
            // A working camera's first frame beats the first slate.
            slate_next_ns: now + STARTUP_GRACE.as_nanos() as u64,
            slate_size: (want.width as usize, want.height as usize),
            next_due_ns: None,
            live: false,
        }
    }

    fn frame_ns(&self) -> u64 {
        1_000_000_000 / u64::from(self.want.fps.max(1))
    }

    fn try_open(&mut self, now: u64) {
        let (generation, controls) = self.controls.get();
        match Camera::open(self.backend.as_ref(), &self.path, self.want, &controls) {
            Ok(cam) => {
                self.applied = generation;
                self.last_frame_ns = now;
                self.live = false;
                // "live" once the first picture arrives; until then the
                // reason the camera went away stays on the slate.
                let mut s = crate::base::lock(&self.status);
                if s.reason == "opening" {
                    s.reason = format!("waiting for the first picture from {}", self.path);
                }
                s.card.clone_from(&cam.card);
                let m = cam.mode;
                s.mode = format!(
                    "{} {}x{}@{}",
                    m.fourcc,
                    m.width,
                    m.height,
                    (m.interval.fps_f64() * 100.0).round() / 100.0
                );
                s.warnings.clone_from(&cam.warnings);
                s.opens += 1;
                self.camera = Some(cam);
            }
            Err(e) => self.no_signal(reason(&e)),
        }
    }

    /// Closes the camera (if open), shows `why` on the slate and schedules
    /// the next attempt with backoff; a frame resets the backoff.
    fn no_signal(&mut self, why: String) {
        if let Some(cam) = self.camera.take() {
            // The slate keeps the camera's size so players need not adapt.
            self.slate_size = (cam.mode.width as usize, cam.mode.height as usize);
            let mut s = crate::base::lock(&self.status);
            s.dropped += cam.dropped;
            s.bad += cam.bad;
        }
        let now = self.clock.monotonic_ns();
        self.retry_at_ns = now + self.backoff.as_nanos() as u64;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if self.live {
            self.slate_next_ns = now;
        }
        self.live = false;
        let mut s = crate::base::lock(&self.status);
        s.state = "no signal";
        s.reason = why;
    }

    /// Whether a camera frame at `at` (camera interval `cam_ns`) keeps the
    /// stream at the configured rate. Pass-through cannot drop frames (they
    /// reference each other), so it is never asked.
    fn due(&mut self, at: u64, cam_ns: u64) -> bool {
        let step = self.frame_ns();
        if cam_ns >= step {
            return true;
        }
        let due = match self.next_due_ns {
            // Resynchronise after a gap (reopen, stall) instead of bursting.
            Some(d) if at + step >= d && at < d + step => d,
            _ => at,
        };
        if at + cam_ns / 2 < due {
            return false;
        }
        self.next_due_ns = Some(due + step);
        true
    }

    /// Strictly increasing capture times, whatever the camera stamps.
    fn stamp(&mut self, ns: u64) -> u64 {
        let ns = match self.last_out_ns {
            Some(last) if ns <= last => last + TICK_NS,
            _ => ns,
        };
        self.last_out_ns = Some(ns);
        ns
    }

    fn read_camera(&mut self, mut picture: I420Frame, now: u64) -> Next {
        let Some(cam) = self.camera.as_mut() else {
            return Next::Idle(picture);
        };
        let (generation, controls) = self.controls.get();
        if generation != self.applied {
            self.applied = generation;
            let w = cam.apply_controls(&controls);
            crate::base::lock(&self.status).warnings = w;
        }
        if self.keyframe.swap(false, Relaxed) {
            cam.request_keyframe();
        }
        let mut wait = Duration::from_nanos(
            (self.last_frame_ns + STALL.as_nanos() as u64).saturating_sub(now),
        )
        .min(POLL);
        if !self.live {
            // Keep the slate's pace while waiting for the first picture.
            wait = wait.min(Duration::from_nanos(
                self.slate_next_ns.saturating_sub(now).max(1_000_000),
            ));
        }
        match cam.next(wait, &mut picture) {
            Ok(Some(frame)) => {
                let now = self.clock.monotonic_ns();
                self.last_frame_ns = now;
                self.live = true;
                self.backoff = BACKOFF_MIN;
                // Age the kernel's timestamp on its own clock, then apply
                // the age to ours (both monotonic, different origins).
                let age = cam.now_ns().saturating_sub(frame.timestamp_ns);
                let mode = cam.mode;
                let wall_ms = self.clock.wall_unix_ms() - age / 1_000_000;
                let duration_ns = if mode.interval.den == 0 {
                    self.frame_ns()
                } else {
                    u64::from(mode.interval.num) * 1_000_000_000 / u64::from(mode.interval.den)
                };
                {
                    let mut s = crate::base::lock(&self.status);
                    s.frames += 1;
                    if s.state != "live" {
                        s.state = "live";
                        s.reason.clear();
                    }
                }
                let at = now.saturating_sub(age);
                if !matches!(frame.what, Captured::H264 { .. }) && !self.due(at, duration_ns) {
                    return Next::Idle(picture);
                }
                let duration_ns = duration_ns.max(self.frame_ns());
                let capture_ns = self.stamp(at);
                match frame.what {
                    Captured::Picture => Next::Picture(RawFrame {
                        picture,
                        capture_ns,
                        wall_ms,
                        duration_ns,
                    }),
                    Captured::H264 { data, keyframe } => Next::Encoded {
                        frame: PassthroughFrame {
                            data,
                            keyframe,
                            capture_ns,
                            wall_ms,
                            duration_ns,
                            width: mode.width,
                            height: mode.height,
                        },
                        picture,
                    },
                }
            }
            Ok(None) => {
                let now = self.clock.monotonic_ns();
                if now.saturating_sub(self.last_frame_ns) >= STALL.as_nanos() as u64 {
                    self.no_signal(format!(
                        "no picture from {} for {} s",
                        self.path,
                        STALL.as_secs()
                    ));
                }
                if self.live {
                    Next::Idle(picture)
                } else {
                    self.slate(picture)
                }
            }
            Err(e) => {
                self.no_signal(reason(&e));
                self.slate(picture)
            }
        }
    }

    fn slate(&mut self, mut picture: I420Frame) -> Next {
        let now = self.clock.monotonic_ns();
        if now < self.slate_next_ns {
            let until = self
                .slate_next_ns
                .min(self.retry_at_ns.max(now))
                .min(now + POLL.as_nanos() as u64);
            self.clock.sleep_until(until);
            if self.clock.monotonic_ns() < self.slate_next_ns {
                return Next::Idle(picture);
            }
        }
        let due = self.slate_next_ns;
        let frame_ns = self.frame_ns();
        // Far behind (suspended): restart the pace instead of bursting.
        self.slate_next_ns = if self.clock.monotonic_ns() > due + 1_000_000_000 {
            self.clock.monotonic_ns() + frame_ns
        } else {
            due + frame_ns
        };
        let wall_ms = self.clock.wall_unix_ms();
        let reason = {
            let mut s = crate::base::lock(&self.status);
            s.slate_frames += 1;
            s.reason.clone()
        };
        let (w, h) = self.slate_size;
        slate::draw(&mut picture, w, h, &reason, wall_ms);
        let capture_ns = self.stamp(due);
        Next::Picture(RawFrame {
            picture,
            capture_ns,
            wall_ms,
            duration_ns: frame_ns,
        })
    }
}

fn reason(e: &CaptureError) -> String {
    match e {
        CaptureError::Gone => "camera unplugged".into(),
        CaptureError::Open { path, source } if source.is_gone() => {
            format!("camera unplugged: nothing at {path}")
        }
        other => other.to_string(),
    }
}

impl Source for CameraSource {
    fn kind(&self) -> &'static str {
        "v4l2"
    }

    fn next(&mut self, picture: I420Frame) -> Next {
        let now = self.clock.monotonic_ns();
        if self.camera.is_none() && now >= self.retry_at_ns {
            self.try_open(now);
        }
        if self.camera.is_some() {
            self.read_camera(picture, now)
        } else {
            self.slate(picture)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::{Clock, SimClock};
    use crate::sim::OneNode;
    use crate::sim::{CameraSpec, FakeHandle};
    use crate::v4l2::cid;

    /// A source reading a typical UVC camera at `/dev/video0`.
    fn source(want: Want, controls: Controls) -> (FakeHandle, CameraSource, Arc<SimClock>) {
        let clock = Arc::new(SimClock::new(1_000));
        let handle = FakeHandle::new_camera(CameraSpec::typical_uvc(), clock.clone());
        let src = CameraSource::new(
            Arc::new(OneNode(handle.clone(), "/dev/video0")),
            "/dev/video0",
            want,
            Arc::new(LiveControls::new(controls)),
            clock.clone(),
            Arc::default(),
            Arc::default(),
        );
        (handle, src, clock)
    }

    fn want(width: u32, height: u32, fps: u32) -> Want {
        Want {
            width,
            height,
            fps,
            passthrough: false,
        }
    }

    /// Calls `next` until it yields something other than `Idle`.
    fn next(src: &mut CameraSource, buf: I420Frame) -> Next {
        let mut buf = buf;
        for _ in 0..1000 {
            match src.next(buf) {
                Next::Idle(b) => buf = b,
                other => return other,
            }
        }
        panic!("the source produced nothing");
    }

    /// The next picture (after any `Idle`s); anything else fails the test.
    fn picture(src: &mut CameraSource, buf: I420Frame) -> RawFrame {
        match next(src, buf) {
            Next::Picture(raw) => raw,
            _ => panic!("expected a picture"),
        }
    }

    fn status(src: &CameraSource) -> CameraStatus {
        crate::base::lock(&src.status).clone()
    }

    #[test]
    fn negotiates_applies_controls_and_delivers_stamped_pictures() {
        let controls = Controls {
            power_line_hz: 60,
            brightness: Some(10),
            ..Controls::default()
        };
        let (handle, mut src, _clock) = source(want(640, 480, 30), controls);
        let mut last = 0;
        let mut buf = I420Frame::new(0, 0);
        for _ in 0..10 {
            let raw = picture(&mut src, buf);
            assert_eq!((raw.picture.width, raw.picture.height), (640, 480));
            assert!(raw.capture_ns > last);
            if last != 0 {
                // 30 fps from the camera's own timestamps.
                let d = raw.capture_ns - last;
                assert!((33_333_333..=33_333_334).contains(&d), "{d}");
            }
            last = raw.capture_ns;
            buf = raw.picture;
        }
        let s = status(&src);
        assert_eq!((s.state, s.mode.as_str()), ("live", "YUYV 640x480@30"));
        assert_eq!(handle.control(cid::POWER_LINE_FREQUENCY), Some(2));
        assert_eq!(handle.control(cid::BRIGHTNESS), Some(10));
        // Live change of a control: no reopen.
        src.controls.set(Controls {
            brightness: Some(-5),
            ..Controls::default()
        });
        let _ = next(&mut src, I420Frame::new(0, 0));
        assert_eq!(handle.control(cid::BRIGHTNESS), Some(-5));
        assert_eq!(handle.control(cid::POWER_LINE_FREQUENCY), Some(1));
        assert_eq!(status(&src).opens, 1);
    }

    #[test]
    fn unplug_gives_the_slate_at_the_configured_rate_and_replug_resumes() {
        let (handle, mut src, clock) = source(want(640, 480, 30), Controls::default());
        let first = picture(&mut src, I420Frame::new(0, 0));
        handle.unplug();
        let unplugged_at = clock.monotonic_ns();
        let mut stamps = vec![first.capture_ns];
        let mut buf = first.picture;
        // Two seconds of slate at exactly 30 fps, at the camera's size.
        while clock.monotonic_ns() < unplugged_at + 2_000_000_000 {
            let raw = picture(&mut src, buf);
            assert_eq!((raw.picture.width, raw.picture.height), (640, 480));
            stamps.push(raw.capture_ns);
            buf = raw.picture;
        }
        let s = status(&src);
        assert_eq!(s.state, "no signal");
        assert!(s.reason.contains("unplugged"), "{}", s.reason);
        assert!((58..=62).contains(&s.slate_frames), "{}", s.slate_frames);
        assert!(stamps.windows(2).all(|w| w[1] > w[0]), "{stamps:?}");
        // Back: within the backoff (at most 2 s) camera frames flow again.
        handle.replug();
        let back_at = clock.monotonic_ns();
        while status(&src).state != "live" {
            buf = picture(&mut src, buf).picture;
            assert!(
                clock.monotonic_ns() < back_at + 3_000_000_000,
                "camera did not come back"
            );
        }
        assert_eq!(status(&src).opens, 2);
    }

    #[test]
    fn a_stalled_camera_is_noticed_after_two_seconds() {
        let (handle, mut src, clock) = source(want(640, 480, 30), Controls::default());
        let _ = next(&mut src, I420Frame::new(0, 0));
        handle.set_stalled(true);
        let t = clock.monotonic_ns();
        let mut buf = I420Frame::new(0, 0);
        while status(&src).state == "live" {
            match src.next(buf) {
                Next::Idle(b) => buf = b,
                Next::Picture(r) => buf = r.picture,
                Next::Encoded { picture, .. } => buf = picture,
            }
        }
        let waited = clock.monotonic_ns() - t;
        assert!(
            (1_900_000_000..=2_200_000_000).contains(&waited),
            "{waited}"
        );
        assert!(status(&src).reason.contains("no picture"));
        handle.set_stalled(false);
        while status(&src).state != "live" {
            buf = picture(&mut src, buf).picture;
        }
    }

    /// The typical UVC camera with MJPEG frames (made by jpeg-encoder).
    struct MjpegCamera(FakeHandle);
    impl crate::v4l2::Backend for MjpegCamera {
        fn list(&self) -> Vec<String> {
            vec!["/dev/video0".into()]
        }
        fn open(&self, _: &str) -> crate::v4l2::DevResult<Box<dyn crate::v4l2::Device>> {
            let cam = crate::sim::FakeCamera::open(&self.0)?;
            Ok(Box::new(cam.with_mjpeg(crate::sim::tests::jpeg_of)))
        }
    }

    #[test]
    fn an_mjpeg_mode_is_decoded_to_i420() {
        let clock = Arc::new(SimClock::new(1_000));
        let handle = FakeHandle::new_camera(CameraSpec::typical_uvc(), clock.clone());
        let mut src = CameraSource::new(
            Arc::new(MjpegCamera(handle.clone())),
            "/dev/video0",
            want(1920, 1080, 30),
            Arc::new(LiveControls::new(Controls::default())),
            clock,
            Arc::default(),
            Arc::default(),
        );
        let raw = picture(&mut src, I420Frame::new(0, 0));
        assert_eq!(status(&src).mode, "MJPG 1920x1080@30");
        assert_eq!((raw.picture.width, raw.picture.height), (1920, 1080));
        // The pattern came through the JPEG: the first colour bar (luma
        // 180, below the moving box) arrives as 171, because the decoder
        // maps JPEG's full range to video range (16 + 180 * 219 / 255).
        let (y, _, _) = raw.picture.planes();
        let bar = y[1920 * 600 + 100];
        assert!((167..=175).contains(&bar), "{bar}");
        assert_eq!(status(&src).bad, 0);
    }

    #[test]
    fn a_faster_camera_is_decimated_to_the_configured_rate() {
        // 30 fps camera, 15 fps stream: every other frame.
        let (_h, mut src, _clock) = source(want(640, 480, 15), Controls::default());
        let mut stamps = Vec::new();
        let mut buf = I420Frame::new(0, 0);
        for _ in 0..31 {
            let raw = picture(&mut src, buf);
            stamps.push(raw.capture_ns);
            buf = raw.picture;
        }
        let span = stamps[30] - stamps[0];
        assert_eq!(span, 2_000_000_000, "30 frames at 15 fps: {stamps:?}");
    }

    #[test]
    fn passthrough_forwards_camera_h264() {
        let w = Want {
            passthrough: true,
            ..want(1920, 1080, 30)
        };
        let (_h, mut src, _clock) = source(w, Controls::default());
        let Next::Encoded { frame, .. } = next(&mut src, I420Frame::new(0, 0)) else {
            panic!("expected H.264")
        };
        assert!(frame.keyframe && (frame.width, frame.height) == (1920, 1080));
        assert!(roomcast_media::h264::contains_idr(&frame.data));
        // A keyframe request reaches the camera.
        src.keyframe.store(true, Relaxed);
        let mut keys = 0;
        for _ in 0..5 {
            if let Next::Encoded { frame, .. } = next(&mut src, I420Frame::new(0, 0)) {
                keys += usize::from(frame.keyframe);
            }
        }
        assert_eq!(keys, 1, "the requested IDR (GOP is 30)");
    }
}
