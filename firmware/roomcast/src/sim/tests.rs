//! Every rule the fakes enforce, each with a test that fails if it is broken.
//! All timing runs on a `SimClock`: waits jump time instead of sleeping.

use super::*;
use crate::base::clock::{Clock, SimClock};
use crate::base::frame::I420Frame;
use crate::source::pattern::Pattern;
use crate::v4l2::{cid, flags, Backend, Dequeued, EncoderCmd, Format, FormatDesc, FourCc};
use crate::v4l2::{FrameSizes, Intervals, Queue, EPIPE};
use openh264::formats::YUVSource;
use roomcast_media::h264::{split_annexb, NalType, Sps};
use std::time::Duration;

/// 2024-05-06 12:34:56.789 UTC.
const WALL: u64 = 1_714_998_896_789;
/// Due time of frame k at 30 fps from t0 = 0: floor(k * 10^9 / 30).
fn due30(k: u64) -> u64 {
    k * 1_000_000_000 / 30
}
const SEC: Duration = Duration::from_secs(1);

fn sim() -> Arc<SimClock> {
    Arc::new(SimClock::new(WALL))
}

fn errno<T>(r: DevResult<T>) -> i32 {
    match r {
        Ok(_) => panic!("the call should fail"),
        Err(e) => e.errno,
    }
}

fn nal_types(au: &[u8]) -> Vec<NalType> {
    split_annexb(au).filter_map(NalType::of).collect()
}

fn camera(spec: CameraSpec) -> (Arc<SimClock>, FakeCamera) {
    let clock = sim();
    let cam = FakeCamera::new(spec, clock.clone());
    (clock, cam)
}

/// `S_FMT` of a request that must succeed: what the driver made of it.
fn set_fmt(dev: &mut dyn Device, q: Queue, fourcc: FourCc, w: u32, h: u32) -> Format {
    dev.set_format(q, &Format::request(fourcc, w, h)).unwrap()
}

/// Sets `fmt`, allocates `n` buffers, queues them all and streams.
fn start(cam: &mut FakeCamera, fourcc: FourCc, w: u32, h: u32, n: u32) -> Format {
    let fmt = set_fmt(cam, Queue::Capture, fourcc, w, h);
    assert_eq!((fmt.fourcc, fmt.width, fmt.height), (fourcc, w, h));
    let got = cam.request_buffers(Queue::Capture, n).unwrap();
    for i in 0..got {
        cam.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
    }
    cam.stream_on(Queue::Capture).unwrap();
    fmt
}

/// Waits for and dequeues one buffer, returning it and a copy of its bytes.
fn next(dev: &mut dyn Device) -> (Dequeued, Vec<u8>) {
    assert!(
        dev.wait(Queue::Capture, SEC).unwrap(),
        "no frame within 1 s"
    );
    let d = dev.dequeue_buffer(Queue::Capture).unwrap();
    let data = dev.buffer(Queue::Capture, d.index).unwrap()[..d.bytesused as usize].to_vec();
    (d, data)
}

/// A camera with one YUYV, one NV12 and one YU12 mode at 320x240 and
/// three rates, for the layouts and `S_PARM`.
fn small_spec() -> CameraSpec {
    let ivs = vec![
        Interval::from_fps(30),
        Interval::from_fps(15),
        Interval::from_fps(5),
    ];
    CameraSpec {
        driver: "fake".into(),
        card: "Small".into(),
        bus_info: "usb-1".into(),
        modes: vec![
            (FourCc::YUYV, 320, 240, ivs.clone()),
            (FourCc::NV12, 320, 240, ivs.clone()),
            (FourCc::YU12, 320, 240, ivs),
        ],
        controls: Vec::new(),
    }
}

// ---------------------------------------------------------------- camera

#[test]
fn typical_uvc_enumerates_its_modes_and_controls() {
    let (_, cam) = camera(CameraSpec::typical_uvc());
    let caps = cam.caps().unwrap();
    assert_eq!(
        (caps.driver.as_str(), caps.card.as_str()),
        ("uvcvideo", "Fake UVC Camera")
    );
    assert!(caps.video_capture && caps.streaming && !caps.m2m && !caps.mplane);
    let fmts: Vec<(FourCc, bool)> = cam
        .enum_formats(Queue::Capture)
        .unwrap()
        .into_iter()
        .map(|d: FormatDesc| (d.fourcc, d.compressed))
        .collect();
    assert_eq!(
        fmts,
        [
            (FourCc::YUYV, false),
            (FourCc::MJPG, true),
            (FourCc::H264, true)
        ]
    );
    assert_eq!(
        cam.enum_frame_sizes(FourCc::YUYV).unwrap(),
        FrameSizes::Discrete(vec![(640, 480), (1280, 720)])
    );
    assert_eq!(
        cam.enum_frame_intervals(FourCc::YUYV, 1280, 720).unwrap(),
        Intervals::Discrete(vec![Interval::from_fps(10)])
    );
    assert_eq!(
        cam.enum_frame_intervals(FourCc::H264, 1920, 1080).unwrap(),
        Intervals::Discrete(vec![Interval::from_fps(30)])
    );
    assert_eq!(errno(cam.enum_frame_sizes(FourCc::NV12)), EINVAL);
    assert_eq!(
        errno(cam.enum_frame_intervals(FourCc::YUYV, 800, 600)),
        EINVAL
    );
    let ids: Vec<u32> = cam.controls().unwrap().iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            cid::BRIGHTNESS,
            cid::AUTO_WHITE_BALANCE,
            cid::POWER_LINE_FREQUENCY,
            cid::EXPOSURE_AUTO,
            cid::MPEG_VIDEO_FORCE_KEY_FRAME
        ]
    );
    assert_eq!(cam.control(cid::BRIGHTNESS).unwrap(), 0);
    assert_eq!(cam.control(cid::AUTO_WHITE_BALANCE).unwrap(), 1);
    assert_eq!(cam.control(cid::POWER_LINE_FREQUENCY).unwrap(), 1);
    assert_eq!(cam.control(cid::EXPOSURE_AUTO).unwrap(), 3);
    // Power-on format: the first mode.
    let f = cam.format(Queue::Capture).unwrap();
    assert_eq!(
        (f.fourcc, f.width, f.height, f.bytesperline),
        (FourCc::YUYV, 640, 480, 1280)
    );
}

#[test]
fn sim_uvc_has_no_mjpeg_but_360p_and_720p_h264() {
    let spec = CameraSpec::sim_uvc();
    assert!(spec.modes.iter().all(|m| m.0 != FourCc::MJPG));
    for (f, w, h) in [
        (FourCc::YUYV, 640, 480),
        (FourCc::YUYV, 640, 360),
        (FourCc::YUYV, 1280, 720),
        (FourCc::H264, 1920, 1080),
        (FourCc::H264, 1280, 720),
    ] {
        assert!(spec.intervals(f, w, h).is_some(), "{f} {w}x{h}");
    }
    assert_eq!(
        spec.intervals(FourCc::H264, 1280, 720).unwrap(),
        [Interval::from_fps(30)]
    );
}

#[test]
fn s_fmt_picks_nearest_size_substitutes_unknown_formats_and_fills_strides() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    let f = set_fmt(&mut cam, Queue::Capture, FourCc::YUYV, 1000, 700);
    assert_eq!(
        (f.width, f.height, f.bytesperline, f.sizeimage),
        (1280, 720, 2560, 2560 * 720)
    );
    assert_eq!(cam.format(Queue::Capture).unwrap(), f);
    // An unknown fourcc is not an error: the driver substitutes its first.
    let f = set_fmt(&mut cam, Queue::Capture, FourCc(*b"ABCD"), 640, 480);
    assert_eq!((f.fourcc, f.width, f.height), (FourCc::YUYV, 640, 480));
    let f = set_fmt(&mut cam, Queue::Capture, FourCc::MJPG, 640, 480);
    assert_eq!(
        (f.fourcc, f.width, f.height, f.bytesperline),
        (FourCc::MJPG, 1920, 1080, 0)
    );
    assert!(f.sizeimage > 0);
    let (_, mut small) = camera(small_spec());
    let f = set_fmt(&mut small, Queue::Capture, FourCc::NV12, 300, 200);
    assert_eq!(
        (f.width, f.bytesperline, f.sizeimage),
        (320, 320, 320 * 240 * 3 / 2)
    );
    let f = set_fmt(&mut small, Queue::Capture, FourCc::YU12, 320, 240);
    assert_eq!((f.bytesperline, f.sizeimage), (320, 320 * 240 * 3 / 2));
}

#[test]
fn s_fmt_keeps_the_nearest_interval_of_the_new_size() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    // 720p only does 10 fps: S_FMT alone switches the rate.
    start(&mut cam, FourCc::YUYV, 1280, 720, 2);
    assert_eq!(next(&mut cam).0.timestamp_ns, 100_000_000);
    cam.stream_off(Queue::Capture).unwrap();
    assert_eq!(
        cam.set_interval(Queue::Capture, Interval::from_fps(30))
            .unwrap(),
        Interval::from_fps(10)
    );
}

#[test]
fn s_parm_picks_the_nearest_interval_and_is_busy_while_streaming() {
    let (clock, mut cam) = camera(small_spec());
    let mut set = |fps_num: u32, den: u32| {
        cam.set_interval(Queue::Capture, Interval { num: fps_num, den })
            .unwrap()
    };
    assert_eq!(set(1, 24), Interval::from_fps(30));
    assert_eq!(set(1, 12), Interval::from_fps(15));
    assert_eq!(set(1, 1), Interval::from_fps(5));
    assert_eq!(
        set(0, 0),
        Interval::from_fps(30),
        "zero asks for the default"
    );
    assert_eq!(set(1, 14), Interval::from_fps(15));
    assert_eq!(
        errno(cam.set_interval(Queue::Output, Interval::from_fps(30))),
        EINVAL
    );
    start(&mut cam, FourCc::YUYV, 320, 240, 2);
    assert_eq!(
        errno(cam.set_interval(Queue::Capture, Interval::from_fps(30))),
        EBUSY
    );
    // Frames now come every 1/15 s.
    let (d, _) = next(&mut cam);
    assert_eq!(d.timestamp_ns, 66_666_666);
    assert_eq!(clock.monotonic_ns(), 66_666_666);
}

#[test]
fn s_fmt_and_reqbufs_are_busy_while_buffers_are_allocated() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    assert_eq!(cam.request_buffers(Queue::Capture, 4).unwrap(), 4);
    let want = Format::request(FourCc::YUYV, 1280, 720);
    assert_eq!(errno(cam.set_format(Queue::Capture, &want)), EBUSY);
    assert_eq!(errno(cam.request_buffers(Queue::Capture, 3)), EBUSY);
    assert_eq!(cam.request_buffers(Queue::Capture, 0).unwrap(), 0);
    cam.set_format(Queue::Capture, &want).unwrap();
    assert_eq!(cam.request_buffers(Queue::Capture, 3).unwrap(), 3);
    assert_eq!(cam.buffer(Queue::Capture, 0).unwrap().len(), 2560 * 720);
    cam.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    cam.stream_on(Queue::Capture).unwrap();
    assert_eq!(errno(cam.request_buffers(Queue::Capture, 0)), EBUSY);
    assert_eq!(errno(cam.request_buffers(Queue::Capture, 4)), EBUSY);
    cam.stream_off(Queue::Capture).unwrap();
    assert_eq!(cam.request_buffers(Queue::Capture, 0).unwrap(), 0);
}

#[test]
fn reqbufs_grants_between_2_and_32() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    assert_eq!(cam.request_buffers(Queue::Capture, 1).unwrap(), 2);
    cam.request_buffers(Queue::Capture, 0).unwrap();
    assert_eq!(cam.request_buffers(Queue::Capture, 100).unwrap(), 32);
    cam.request_buffers(Queue::Capture, 0).unwrap();
    assert_eq!(errno(cam.buffer(Queue::Capture, 0)), EINVAL, "freed");
}

#[test]
fn qbuf_rejects_bad_indices_and_buffers_the_driver_holds() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    assert_eq!(
        errno(cam.queue_buffer(Queue::Capture, 0, 0, 0)),
        EINVAL,
        "no buffers"
    );
    cam.request_buffers(Queue::Capture, 2).unwrap();
    assert_eq!(errno(cam.queue_buffer(Queue::Capture, 2, 0, 0)), EINVAL);
    assert_eq!(errno(cam.buffer(Queue::Capture, 2)), EINVAL);
    cam.buffer_mut(Queue::Capture, 0).unwrap()[0] = 7;
    cam.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    assert_eq!(
        errno(cam.queue_buffer(Queue::Capture, 0, 0, 0)),
        EINVAL,
        "twice"
    );
    assert_eq!(errno(cam.buffer_mut(Queue::Capture, 0)), EINVAL, "queued");
    cam.stream_on(Queue::Capture).unwrap();
    assert!(cam.wait(Queue::Capture, SEC).unwrap());
    // Filled but not dequeued: still the driver's.
    assert_eq!(errno(cam.queue_buffer(Queue::Capture, 0, 0, 0)), EINVAL);
    assert_eq!(errno(cam.buffer_mut(Queue::Capture, 0)), EINVAL);
    let d = cam.dequeue_buffer(Queue::Capture).unwrap();
    assert_eq!(d.index, 0);
    cam.buffer_mut(Queue::Capture, 0).unwrap();
    cam.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
}

#[test]
fn streamon_needs_buffers_and_dqbuf_and_poll_need_streaming() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    assert_eq!(errno(cam.stream_on(Queue::Capture)), EINVAL);
    cam.request_buffers(Queue::Capture, 2).unwrap();
    cam.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), EINVAL);
    assert_eq!(errno(cam.wait(Queue::Capture, SEC)), EINVAL);
    cam.stream_on(Queue::Capture).unwrap();
    cam.stream_on(Queue::Capture).unwrap(); // a second STREAMON is harmless
    assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), EAGAIN);
}

#[test]
fn frames_are_due_on_the_interval_grid_with_monotonic_timestamps() {
    let (clock, mut cam) = camera(CameraSpec::typical_uvc());
    clock.advance(Duration::from_millis(5));
    let t0 = clock.monotonic_ns();
    start(&mut cam, FourCc::YUYV, 640, 480, 4);
    assert_eq!(
        errno(cam.dequeue_buffer(Queue::Capture)),
        EAGAIN,
        "nothing at t0"
    );
    for k in 1..=3u64 {
        let (d, data) = next(&mut cam);
        // The wait slept exactly until the frame was due.
        assert_eq!(clock.monotonic_ns(), t0 + due30(k));
        assert_eq!(cam.now_ns(), clock.monotonic_ns());
        assert_eq!(d.timestamp_ns, t0 + due30(k));
        assert_eq!(d.sequence, k as u32 - 1);
        assert_eq!(d.index, k as u32 - 1, "oldest queued buffer first");
        assert_eq!(d.bytesused, 640 * 480 * 2);
        assert_eq!(data.len(), 640 * 480 * 2);
        assert_eq!(
            d.flags & (flags::DONE | flags::TIMESTAMP_MONOTONIC),
            flags::DONE | flags::TIMESTAMP_MONOTONIC
        );
        assert_eq!(d.flags & (flags::ERROR | flags::KEYFRAME), 0);
        assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), EAGAIN);
        cam.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    }
    // Several frames due at once come out in order, without waiting.
    clock.advance(Duration::from_millis(70));
    let seqs: Vec<u32> = (0..2)
        .map(|_| cam.dequeue_buffer(Queue::Capture).unwrap().sequence)
        .collect();
    assert_eq!(seqs, [3, 4]);
    for k in 6..=7 {
        assert_eq!(next(&mut cam).0.timestamp_ns, t0 + due30(k));
    }
    // No buffer queued: a wait times out after exactly its timeout. returns false after exactly its timeout.
    let before = clock.monotonic_ns();
    assert!(!cam
        .wait(Queue::Capture, Duration::from_millis(250))
        .unwrap());
    assert_eq!(clock.monotonic_ns(), before + 250_000_000);
}

/// The YUYV bytes of a pattern frame, packed here independently.
fn yuyv_of(pic: &I420Frame) -> Vec<u8> {
    let (w, h) = (pic.width, pic.height);
    let (y, u, v) = pic.planes();
    let mut out = Vec::with_capacity(w * h * 2);
    for row in 0..h {
        for x in (0..w).step_by(2) {
            let c = (row / 2) * (w / 2) + x / 2;
            out.extend_from_slice(&[y[row * w + x], u[c], y[row * w + x + 1], v[c]]);
        }
    }
    out
}

#[test]
fn yuyv_frames_carry_the_test_pattern() {
    let (clock, mut cam) = camera(CameraSpec::typical_uvc());
    start(&mut cam, FourCc::YUYV, 640, 480, 2);
    let pattern = Pattern::new(640, 480);
    let mut pic = I420Frame::new(640, 480);
    for n in 0..2u64 {
        let (d, data) = next(&mut cam);
        assert_eq!(u64::from(d.sequence), n);
        // Frame 0 flashes white across the top; frame 1 shows the first
        // colour bar (75% white) there.
        let top_left: [u8; 4] = if n == 0 {
            [235, 128, 235, 128]
        } else {
            [180, 128, 180, 128]
        };
        assert_eq!(data[..4], top_left, "frame {n}");
        // Yellow bar (162, 44, 142) at x = 100 on row 0 of frame 1.
        if n == 1 {
            assert_eq!(data[200..204], [162, 44, 162, 142]);
        }
        pattern.draw(n, 30, clock.wall_unix_ms(), &mut pic);
        assert!(data == yuyv_of(&pic), "frame {n} is not the pattern");
        cam.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    }
}

#[test]
fn nv12_and_yu12_frames_have_their_planes_where_the_format_says() {
    for fourcc in [FourCc::NV12, FourCc::YU12] {
        let (_, mut cam) = camera(small_spec());
        let fmt = start(&mut cam, fourcc, 320, 240, 2);
        let _ = next(&mut cam);
        let (d, data) = next(&mut cam);
        assert_eq!(d.sequence, 1);
        assert_eq!(data.len(), fmt.sizeimage as usize);
        let bpl = fmt.bytesperline as usize;
        // x = 60 on row 0: yellow bar, Y 162, U 44, V 142 (chroma x 30).
        assert_eq!(data[60], 162, "{fourcc}");
        let base = bpl * 240;
        let (u, v) = match fourcc {
            FourCc::NV12 => (data[base + 60], data[base + 61]),
            _ => (data[base + 30], data[base + (bpl / 2) * 120 + 30]),
        };
        assert_eq!((u, v), (44, 142), "{fourcc}");
    }
}

#[test]
fn frames_due_without_a_queued_buffer_are_dropped_leaving_a_sequence_gap() {
    let (clock, mut cam) = camera(CameraSpec::typical_uvc());
    let h = cam.handle();
    start(&mut cam, FourCc::YUYV, 640, 480, 2);
    clock.advance(Duration::from_nanos(due30(5)));
    let a = cam.dequeue_buffer(Queue::Capture).unwrap();
    let b = cam.dequeue_buffer(Queue::Capture).unwrap();
    assert_eq!((a.sequence, b.sequence), (0, 1));
    assert_eq!((a.timestamp_ns, b.timestamp_ns), (due30(1), due30(2)));
    assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), EAGAIN);
    assert_eq!((h.frames_delivered(), h.frames_dropped()), (2, 3));
    cam.queue_buffer(Queue::Capture, a.index, 0, 0).unwrap();
    let (c, _) = next(&mut cam);
    // Frames 3, 4 and 5 went nowhere: sequence jumps from 1 to 5.
    assert_eq!((c.sequence, c.timestamp_ns), (5, due30(6)));
    // A long absence drops many frames and costs nothing.
    clock.advance(Duration::from_secs(3600));
    cam.queue_buffer(Queue::Capture, b.index, 0, 0).unwrap();
    cam.queue_buffer(Queue::Capture, c.index, 0, 0).unwrap();
    let (d, _) = next(&mut cam);
    assert_eq!(u64::from(d.sequence), 3600 * 30 + 6);
    assert_eq!(h.frames_dropped(), 3 + 3600 * 30);
}

#[test]
fn streamoff_returns_every_buffer_to_the_application() {
    let (clock, mut cam) = camera(CameraSpec::typical_uvc());
    start(&mut cam, FourCc::YUYV, 640, 480, 4);
    clock.advance(Duration::from_millis(40)); // one buffer filled
    assert!(cam.wait(Queue::Capture, Duration::ZERO).unwrap());
    cam.stream_off(Queue::Capture).unwrap();
    assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), EINVAL);
    for i in 0..4 {
        cam.buffer_mut(Queue::Capture, i).unwrap();
        cam.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
    }
    // Streaming again starts a new grid and sequence.
    let t0 = clock.monotonic_ns();
    cam.stream_on(Queue::Capture).unwrap();
    let (d, _) = next(&mut cam);
    assert_eq!((d.sequence, d.timestamp_ns), (0, t0 + due30(1)));
}

#[test]
fn controls_check_ids_ranges_steps_and_menu_items() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    let h = cam.handle();
    assert_eq!(errno(cam.set_control(0x0098_0999, 1)), EINVAL);
    assert_eq!(errno(cam.control(0x0098_0999)), EINVAL);
    assert_eq!(errno(cam.set_control(cid::BRIGHTNESS, 65)), ERANGE);
    assert_eq!(errno(cam.set_control(cid::BRIGHTNESS, -65)), ERANGE);
    cam.set_control(cid::BRIGHTNESS, -12).unwrap();
    assert_eq!(cam.control(cid::BRIGHTNESS).unwrap(), -12);
    assert_eq!(h.control(cid::BRIGHTNESS), Some(-12));
    assert_eq!(errno(cam.set_control(cid::AUTO_WHITE_BALANCE, 2)), ERANGE);
    cam.set_control(cid::AUTO_WHITE_BALANCE, 0).unwrap();
    assert_eq!(errno(cam.set_control(cid::POWER_LINE_FREQUENCY, 3)), ERANGE);
    cam.set_control(cid::POWER_LINE_FREQUENCY, 2).unwrap();
    // Exposure menu 1..=3 has no item 2: in range but not offered.
    assert_eq!(errno(cam.set_control(cid::EXPOSURE_AUTO, 2)), EINVAL);
    assert_eq!(errno(cam.set_control(cid::EXPOSURE_AUTO, 0)), ERANGE);
    cam.set_control(cid::EXPOSURE_AUTO, 1).unwrap();
    // A button is write-only.
    assert_eq!(errno(cam.control(cid::MPEG_VIDEO_FORCE_KEY_FRAME)), EACCES);
    cam.set_control(cid::MPEG_VIDEO_FORCE_KEY_FRAME, 1).unwrap();
    // Values belong to the device: another open sees them.
    let other = FakeCamera::open(&h).unwrap();
    assert_eq!(other.control(cid::EXPOSURE_AUTO).unwrap(), 1);
    assert_eq!(h.control(cid::POWER_LINE_FREQUENCY), Some(2));
}

#[test]
fn integer_controls_round_to_their_step() {
    let spec = CameraSpec {
        controls: vec![ControlInfo {
            id: cid::BRIGHTNESS,
            name: "Brightness".into(),
            kind: ControlKind::Integer,
            min: 0,
            max: 255,
            step: 10,
            default: 0,
        }],
        ..small_spec()
    };
    let (_, mut cam) = camera(spec);
    cam.set_control(cid::BRIGHTNESS, 34).unwrap();
    assert_eq!(cam.control(cid::BRIGHTNESS).unwrap(), 30);
    cam.set_control(cid::BRIGHTNESS, 255).unwrap();
    assert_eq!(cam.control(cid::BRIGHTNESS).unwrap(), 255);
}

#[test]
fn a_camera_has_no_output_queue_and_no_encoder_commands() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    let q = Queue::Output;
    assert_eq!(errno(cam.enum_formats(q)), EINVAL);
    assert_eq!(errno(cam.format(q)), EINVAL);
    assert_eq!(
        errno(cam.set_format(q, &Format::request(FourCc::YUYV, 640, 480))),
        EINVAL
    );
    assert_eq!(errno(cam.request_buffers(q, 2)), EINVAL);
    assert_eq!(errno(cam.queue_buffer(q, 0, 0, 0)), EINVAL);
    assert_eq!(errno(cam.stream_on(q)), EINVAL);
    assert_eq!(errno(cam.dequeue_buffer(q)), EINVAL);
    assert_eq!(errno(cam.wait(q, SEC)), EINVAL);
    assert_eq!(errno(cam.encoder_command(EncoderCmd::Stop)), ENOTTY);
    assert_eq!(errno(cam.encoder_command(EncoderCmd::Start)), ENOTTY);
}

#[test]
fn unplug_gives_enodev_everywhere_and_the_old_handle_stays_dead() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    let h = cam.handle();
    start(&mut cam, FourCc::YUYV, 640, 480, 2);
    h.unplug();
    assert!(!h.is_plugged());
    assert_eq!(errno(cam.caps()), ENODEV);
    assert_eq!(errno(cam.enum_formats(Queue::Capture)), ENODEV);
    assert_eq!(errno(cam.format(Queue::Capture)), ENODEV);
    assert_eq!(errno(cam.control(cid::BRIGHTNESS)), ENODEV);
    assert_eq!(errno(cam.set_control(cid::BRIGHTNESS, 1)), ENODEV);
    assert_eq!(errno(cam.wait(Queue::Capture, SEC)), ENODEV);
    assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), ENODEV);
    assert_eq!(errno(cam.queue_buffer(Queue::Capture, 0, 0, 0)), ENODEV);
    assert_eq!(errno(cam.buffer(Queue::Capture, 0)), ENODEV);
    assert_eq!(errno(cam.stream_off(Queue::Capture)), ENODEV);
    assert_eq!(errno(cam.request_buffers(Queue::Capture, 0)), ENODEV);
    assert_eq!(errno(cam.encoder_command(EncoderCmd::Stop)), ENODEV);
    assert!(errno(FakeCamera::open(&h)) == ENOENT);
    h.replug();
    assert_eq!(errno(cam.caps()), ENODEV, "a handle from before stays dead");
    let mut again = FakeCamera::open(&h).unwrap();
    assert_eq!(again.caps().unwrap().driver, "uvcvideo");
    // The dead handle's buffers do not block the new one.
    start(&mut again, FourCc::YUYV, 640, 480, 2);
    let (d, _) = next(&mut again);
    assert_eq!(d.sequence, 0);
}

#[test]
fn only_one_open_may_own_the_buffers() {
    let (_, mut a) = camera(CameraSpec::typical_uvc());
    let mut b = FakeCamera::open(&a.handle()).unwrap();
    a.request_buffers(Queue::Capture, 2).unwrap();
    assert_eq!(errno(b.request_buffers(Queue::Capture, 2)), EBUSY);
    let want = Format::request(FourCc::YUYV, 1280, 720);
    assert_eq!(errno(b.set_format(Queue::Capture, &want)), EBUSY);
    // Probing still works, and sees the owner's format.
    assert_eq!(b.format(Queue::Capture).unwrap().width, 640);
    drop(a); // close() releases the queue
    b.set_format(Queue::Capture, &want).unwrap();
    assert_eq!(b.request_buffers(Queue::Capture, 2).unwrap(), 2);
}

#[test]
fn a_stalled_camera_delivers_nothing_and_resumes_without_a_gap() {
    let (clock, mut cam) = camera(CameraSpec::typical_uvc());
    let h = cam.handle();
    start(&mut cam, FourCc::YUYV, 640, 480, 4);
    let (first, _) = next(&mut cam);
    h.set_stalled(true);
    assert!(h.is_stalled());
    assert!(!cam.wait(Queue::Capture, SEC).unwrap());
    assert_eq!(errno(cam.dequeue_buffer(Queue::Capture)), EAGAIN);
    let resumed_at = clock.monotonic_ns();
    h.set_stalled(false);
    let (d, _) = next(&mut cam);
    assert_eq!(
        d.sequence,
        first.sequence + 1,
        "stalled frames never existed"
    );
    assert!(d.timestamp_ns > resumed_at && d.timestamp_ns <= resumed_at + due30(1));
    assert_eq!(h.frames_dropped(), 0);
    // Frames due during a stall that ended before anyone looked are not
    // delivered late either.
    h.set_stalled(true);
    clock.advance(Duration::from_millis(500));
    h.set_stalled(false);
    let after = clock.monotonic_ns();
    let (e, _) = next(&mut cam);
    assert!(e.timestamp_ns >= after);
    assert_eq!(e.sequence, d.sequence + 1);
}

#[test]
fn injected_errors_flag_the_next_frames() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    cam.handle().inject_errors(2);
    start(&mut cam, FourCc::YUYV, 640, 480, 4);
    let errs: Vec<bool> = (0..3)
        .map(|_| {
            let (d, _) = next(&mut cam);
            cam.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
            d.flags & flags::ERROR != 0
        })
        .collect();
    assert_eq!(errs, [true, true, false]);
}

#[test]
fn h264_camera_sends_an_idr_with_sps_pps_every_30_frames() {
    let (_, mut cam) = camera(CameraSpec::sim_uvc());
    let fmt = start(&mut cam, FourCc::H264, 1280, 720, 4);
    assert_eq!(fmt.bytesperline, 0);
    let mut dec = openh264::decoder::Decoder::new().unwrap();
    for n in 0..31 {
        let (d, data) = next(&mut cam);
        assert_eq!(d.sequence, n);
        let types = nal_types(&data);
        let key = n % 30 == 0;
        assert_eq!(d.flags & flags::KEYFRAME != 0, key, "frame {n}");
        if key {
            assert_eq!(
                &types[..3],
                &[NalType::Sps, NalType::Pps, NalType::Idr],
                "frame {n}"
            );
            let sps = Sps::parse(split_annexb(&data).next().unwrap()).unwrap();
            assert_eq!((sps.width, sps.height), (1280, 720));
        } else {
            assert!(!types.contains(&NalType::Idr) && !types.contains(&NalType::Sps));
        }
        if n < 2 {
            let pic = dec.decode(&data).unwrap().expect("a picture");
            assert_eq!(pic.dimensions(), (1280, 720));
        }
        cam.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    }
}

#[test]
fn force_key_frame_makes_the_next_camera_frame_an_idr() {
    let (_, mut cam) = camera(CameraSpec::sim_uvc());
    start(&mut cam, FourCc::H264, 1280, 720, 4);
    for n in 0..5 {
        let (d, _) = next(&mut cam);
        assert_eq!(d.flags & flags::KEYFRAME != 0, n == 0);
        cam.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    }
    cam.set_control(cid::MPEG_VIDEO_FORCE_KEY_FRAME, 1).unwrap();
    let (d, data) = next(&mut cam);
    assert_eq!(d.sequence, 5);
    assert!(d.flags & flags::KEYFRAME != 0);
    assert_eq!(
        &nal_types(&data)[..3],
        &[NalType::Sps, NalType::Pps, NalType::Idr]
    );
    cam.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    let (d, _) = next(&mut cam);
    assert_eq!(d.flags & flags::KEYFRAME, 0, "only one");
}

/// JPEG of an I420 picture with the `jpeg-encoder` crate (4:4:4 input).
pub(crate) fn jpeg_of(pic: &I420Frame) -> Vec<u8> {
    let (w, h) = (pic.width, pic.height);
    let (y, u, v) = pic.planes();
    let mut ycbcr = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for x in 0..w {
            let c = (row / 2) * (w / 2) + x / 2;
            ycbcr.extend_from_slice(&[y[row * w + x], u[c], v[c]]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 80)
        .encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
        .unwrap();
    out
}

#[test]
fn mjpeg_streams_only_with_a_jpeg_encoder() {
    let (_, mut cam) = camera(CameraSpec::typical_uvc());
    set_fmt(&mut cam, Queue::Capture, FourCc::MJPG, 1920, 1080);
    cam.request_buffers(Queue::Capture, 2).unwrap();
    assert_eq!(errno(cam.stream_on(Queue::Capture)), EINVAL);
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let mut cam = cam.with_mjpeg(move |pic| {
        seen.lock().unwrap().push((pic.width, pic.height));
        jpeg_of(pic)
    });
    cam.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    cam.stream_on(Queue::Capture).unwrap();
    let (d, data) = next(&mut cam);
    assert_eq!(&data[..2], &[0xFF, 0xD8], "SOI");
    assert_eq!(&data[data.len() - 2..], &[0xFF, 0xD9], "EOI");
    assert_eq!(d.bytesused as usize, data.len());
    assert_eq!(d.flags & flags::ERROR, 0);
    assert_eq!(*sizes.lock().unwrap(), [(1920, 1080)]);
}

// ---------------------------------------------------------------- encoder

/// The raw bytes of `pic` as `fmt` lays them out, packed here independently.
fn raw_of(pic: &I420Frame, fmt: &Format) -> Vec<u8> {
    let (w, h, bpl) = (pic.width, pic.height, fmt.bytesperline as usize);
    let (y, u, v) = pic.planes();
    let mut out = vec![0u8; fmt.sizeimage as usize];
    for row in 0..h {
        out[row * bpl..row * bpl + w].copy_from_slice(&y[row * w..(row + 1) * w]);
    }
    let base = bpl * h;
    for row in 0..h / 2 {
        for x in 0..w / 2 {
            let (cu, cv) = (u[row * (w / 2) + x], v[row * (w / 2) + x]);
            if fmt.fourcc == FourCc::NV12 {
                out[base + row * bpl + 2 * x] = cu;
                out[base + row * bpl + 2 * x + 1] = cv;
            } else {
                let cbpl = bpl / 2;
                out[base + row * cbpl + x] = cu;
                out[base + cbpl * (h / 2) + row * cbpl + x] = cv;
            }
        }
    }
    out
}

struct Enc {
    clock: Arc<SimClock>,
    enc: FakeEncoder,
    fmt: Format,
    pattern: Pattern,
    pic: I420Frame,
    frame: u64,
}

impl Enc {
    /// Negotiated in the documented order (coded format first), `nout`
    /// and `ncap` buffers, `Capture` buffers queued, both queues streaming.
    fn new(fourcc: FourCc, w: u32, h: u32, nout: u32, ncap: u32) -> Self {
        let clock = sim();
        let mut enc = FakeEncoder::new(clock.clone());
        set_fmt(&mut enc, Queue::Capture, FourCc::H264, 0, 0);
        let fmt = set_fmt(&mut enc, Queue::Output, fourcc, w, h);
        enc.set_interval(Queue::Output, Interval::from_fps(30))
            .unwrap();
        assert_eq!(enc.request_buffers(Queue::Output, nout).unwrap(), nout);
        assert_eq!(enc.request_buffers(Queue::Capture, ncap).unwrap(), ncap);
        for i in 0..ncap {
            enc.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
        }
        enc.stream_on(Queue::Output).unwrap();
        enc.stream_on(Queue::Capture).unwrap();
        Enc {
            clock,
            enc,
            fmt,
            pattern: Pattern::new(w as usize, h as usize),
            pic: I420Frame::new(w as usize, h as usize),
            frame: 0,
        }
    }

    /// Draws the next pattern frame into `Output` buffer `index` and queues
    /// it with timestamp `ts`.
    fn put(&mut self, index: u32, ts: u64) {
        self.pattern.draw(self.frame, 30, WALL, &mut self.pic);
        self.frame += 1;
        let raw = raw_of(&self.pic, &self.fmt);
        self.enc.buffer_mut(Queue::Output, index).unwrap()[..raw.len()].copy_from_slice(&raw);
        self.enc
            .queue_buffer(Queue::Output, index, raw.len() as u32, ts)
            .unwrap();
    }

    /// One picture through: queue, dequeue its `Capture` buffer (requeued)
    /// and its `Output` buffer.
    fn roundtrip(&mut self, ts: u64) -> (Dequeued, Vec<u8>) {
        self.put(0, ts);
        let got = next(&mut self.enc);
        self.enc
            .queue_buffer(Queue::Capture, got.0.index, 0, 0)
            .unwrap();
        let out = self.enc.dequeue_buffer(Queue::Output).unwrap();
        assert_eq!((out.index, out.timestamp_ns), (0, ts));
        got
    }

    fn set(&mut self, id: u32, v: i64) {
        self.enc.set_control(id, v).unwrap();
    }
}

#[test]
fn encoder_looks_like_the_pis_bcm2835_codec() {
    let enc = FakeEncoder::new(sim());
    let caps = enc.caps().unwrap();
    assert_eq!(
        (caps.driver.as_str(), caps.card.as_str()),
        ("bcm2835-codec", "bcm2835-codec-encode")
    );
    assert!(caps.m2m && caps.mplane && caps.streaming && !caps.video_capture);
    let f = |q| -> Vec<FourCc> {
        enc.enum_formats(q)
            .unwrap()
            .iter()
            .map(|d| d.fourcc)
            .collect()
    };
    assert_eq!(f(Queue::Capture), [FourCc::H264]);
    assert_eq!(f(Queue::Output), [FourCc::YU12, FourCc::NV12]);
    let stepwise = FrameSizes::Stepwise {
        min: (32, 32),
        max: (1920, 1920),
        step: (2, 2),
    };
    assert_eq!(enc.enum_frame_sizes(FourCc::NV12).unwrap(), stepwise);
    assert_eq!(errno(enc.enum_frame_sizes(FourCc::YUYV)), EINVAL);
    assert_eq!(
        errno(enc.enum_frame_intervals(FourCc::YU12, 640, 480)),
        ENOTTY
    );
    assert_eq!(enc.format(Queue::Capture).unwrap().sizeimage, 512 * 1024);
}

#[test]
fn encoder_streamon_needs_buffers_and_dqbuf_and_poll_need_streaming() {
    let mut enc = FakeEncoder::new(sim());
    for q in [Queue::Output, Queue::Capture] {
        assert_eq!(errno(enc.stream_on(q)), EINVAL, "{q:?}");
        enc.request_buffers(q, 2).unwrap();
        assert_eq!(errno(enc.dequeue_buffer(q)), EINVAL, "{q:?}");
        assert_eq!(errno(enc.wait(q, SEC)), EINVAL, "{q:?}");
        enc.stream_on(q).unwrap();
        assert_eq!(errno(enc.dequeue_buffer(q)), EAGAIN, "{q:?}");
        assert_eq!(errno(enc.request_buffers(q, 0)), EBUSY, "{q:?}");
    }
}

#[test]
fn output_format_is_clamped_even_and_padded_to_32_bytes() {
    let mut enc = FakeEncoder::new(sim());
    let f = set_fmt(&mut enc, Queue::Output, FourCc::NV12, 642, 360);
    assert_eq!(
        (f.fourcc, f.width, f.height, f.bytesperline),
        (FourCc::NV12, 642, 360, 672)
    );
    assert_eq!(f.sizeimage, 672 * 360 * 3 / 2);
    let c = enc.format(Queue::Capture).unwrap();
    assert_eq!(
        (c.fourcc, c.width, c.height, c.bytesperline),
        (FourCc::H264, 642, 360, 0)
    );
    let f = set_fmt(&mut enc, Queue::Output, FourCc::YUYV, 10, 5000);
    assert_eq!(
        (f.fourcc, f.width, f.height, f.bytesperline),
        (FourCc::YU12, 32, 1920, 32)
    );
    let f = set_fmt(&mut enc, Queue::Output, FourCc::YU12, 641, 479);
    assert_eq!((f.width, f.height), (642, 480));
}

#[test]
fn setting_the_coded_format_resets_the_raw_format() {
    let mut enc = FakeEncoder::new(sim());
    set_fmt(&mut enc, Queue::Output, FourCc::NV12, 640, 480);
    let c = enc
        .set_format(
            Queue::Capture,
            &Format {
                sizeimage: 100,
                ..Format::request(FourCc::MJPG, 0, 0)
            },
        )
        .unwrap();
    assert_eq!(
        (c.fourcc, c.sizeimage),
        (FourCc::H264, 4096),
        "H.264 only; clamped size"
    );
    let o = enc.format(Queue::Output).unwrap();
    assert_eq!(
        (o.fourcc, o.width, o.height),
        (FourCc::YU12, 1280, 720),
        "OUTPUT was reset"
    );
    assert_eq!((c.width, c.height), (1280, 720));
    let c = set_fmt(&mut enc, Queue::Capture, FourCc::H264, 0, 0);
    assert_eq!(c.sizeimage, 512 * 1024);
    // No coded-format change while either queue has buffers.
    enc.request_buffers(Queue::Output, 2).unwrap();
    let h264 = Format::request(FourCc::H264, 0, 0);
    assert_eq!(errno(enc.set_format(Queue::Capture, &h264)), EBUSY);
    assert_eq!(
        errno(enc.set_format(Queue::Output, &Format::request(FourCc::YU12, 64, 64))),
        EBUSY
    );
    enc.request_buffers(Queue::Output, 0).unwrap();
    enc.request_buffers(Queue::Capture, 2).unwrap();
    assert_eq!(errno(enc.set_format(Queue::Capture, &h264)), EBUSY);
    assert_eq!(errno(enc.request_buffers(Queue::Capture, 2)), EBUSY);
}

#[test]
fn encoder_s_parm_sets_the_rate_on_output_only() {
    let mut enc = FakeEncoder::new(sim());
    let iv = |num, den| Interval { num, den };
    assert_eq!(
        enc.set_interval(Queue::Output, iv(1001, 30000)).unwrap(),
        iv(1001, 30000)
    );
    assert_eq!(
        enc.set_interval(Queue::Output, iv(1, 1000)).unwrap(),
        iv(1, 120)
    );
    assert_eq!(enc.set_interval(Queue::Output, iv(5, 1)).unwrap(), iv(1, 1));
    assert_eq!(
        enc.set_interval(Queue::Output, iv(0, 0)).unwrap(),
        iv(1, 30)
    );
    assert_eq!(errno(enc.set_interval(Queue::Capture, iv(1, 30))), EINVAL);
}

#[test]
fn encoder_controls_have_ranges_and_header_controls_are_fixed_while_streaming() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 2);
    let enc = &mut e.enc;
    let ids: Vec<u32> = enc.controls().unwrap().iter().map(|c| c.id).collect();
    for id in [
        cid::MPEG_VIDEO_BITRATE,
        cid::MPEG_VIDEO_BITRATE_MODE,
        cid::MPEG_VIDEO_H264_I_PERIOD,
        cid::MPEG_VIDEO_H264_PROFILE,
        cid::MPEG_VIDEO_H264_LEVEL,
        cid::MPEG_VIDEO_REPEAT_SEQ_HEADER,
        cid::MPEG_VIDEO_HEADER_MODE,
        cid::MPEG_VIDEO_FORCE_KEY_FRAME,
    ] {
        assert!(ids.contains(&id), "{id:#x}");
    }
    assert_eq!(errno(enc.set_control(cid::MPEG_VIDEO_BITRATE, 10)), ERANGE);
    enc.set_control(cid::MPEG_VIDEO_BITRATE, 1_010_000).unwrap();
    assert_eq!(
        enc.control(cid::MPEG_VIDEO_BITRATE).unwrap(),
        1_000_000,
        "step 25000"
    );
    enc.set_control(cid::MPEG_VIDEO_BITRATE_MODE, cid::BITRATE_MODE_CBR)
        .unwrap();
    assert_eq!(
        errno(enc.set_control(cid::MPEG_VIDEO_H264_I_PERIOD, -1)),
        ERANGE
    );
    assert_eq!(
        errno(enc.set_control(cid::MPEG_VIDEO_H264_LEVEL, 14)),
        ERANGE
    );
    assert_eq!(errno(enc.control(cid::MPEG_VIDEO_FORCE_KEY_FRAME)), EACCES);
    assert_eq!(errno(enc.set_control(0x0099_0000, 0)), EINVAL);
    // Streaming: the headers' shape cannot change.
    let profile = cid::H264_PROFILE_CONSTRAINED_BASELINE;
    assert_eq!(
        errno(enc.set_control(cid::MPEG_VIDEO_H264_PROFILE, profile)),
        EBUSY
    );
    assert_eq!(
        errno(enc.set_control(cid::MPEG_VIDEO_REPEAT_SEQ_HEADER, 1)),
        EBUSY
    );
    enc.stream_off(Queue::Output).unwrap();
    enc.stream_off(Queue::Capture).unwrap();
    assert_eq!(
        errno(enc.set_control(cid::MPEG_VIDEO_H264_PROFILE, 3)),
        EINVAL,
        "no item 3"
    );
    enc.set_control(cid::MPEG_VIDEO_H264_PROFILE, profile)
        .unwrap();
    enc.set_control(cid::MPEG_VIDEO_H264_LEVEL, 12).unwrap();
    enc.set_control(cid::MPEG_VIDEO_REPEAT_SEQ_HEADER, 1)
        .unwrap();
    assert_eq!(enc.control(cid::MPEG_VIDEO_REPEAT_SEQ_HEADER).unwrap(), 1);
    // Each open is its own instance with its own controls.
    let other = FakeEncoder::open(&enc.handle()).unwrap();
    assert_eq!(other.control(cid::MPEG_VIDEO_REPEAT_SEQ_HEADER).unwrap(), 0);
}

#[test]
fn output_qbuf_checks_bytesused_and_ownership() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 2);
    let len = e.fmt.sizeimage;
    assert_eq!(
        errno(e.enc.queue_buffer(Queue::Output, 0, len + 1, 0)),
        EINVAL
    );
    assert_eq!(errno(e.enc.queue_buffer(Queue::Output, 2, len, 0)), EINVAL);
    e.enc.queue_buffer(Queue::Output, 0, len, 0).unwrap();
    assert_eq!(errno(e.enc.queue_buffer(Queue::Output, 0, len, 0)), EINVAL);
    assert_eq!(errno(e.enc.buffer_mut(Queue::Output, 0)), EINVAL);
    // A short picture is not encoded: the Output buffer comes back in error.
    e.enc.queue_buffer(Queue::Output, 1, len / 2, 7).unwrap();
    assert!(e.enc.wait(Queue::Capture, SEC).unwrap());
    let first = e.enc.dequeue_buffer(Queue::Output).unwrap();
    assert_eq!((first.index, first.flags & flags::ERROR), (0, 0));
    let short = e.enc.dequeue_buffer(Queue::Output).unwrap();
    assert_eq!((short.index, short.timestamp_ns), (1, 7));
    assert_ne!(short.flags & flags::ERROR, 0);
    e.enc.dequeue_buffer(Queue::Capture).unwrap();
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EAGAIN);
}

/// Decodes one access unit (with its SPS/PPS) into I420 planes.
fn decode(dec: &mut openh264::decoder::Decoder, au: &[u8]) -> I420Frame {
    let yuv = dec.decode(au).unwrap().expect("a picture");
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let mut pic = I420Frame::new(w, h);
    let (py, pu, pv) = pic.planes_mut();
    for row in 0..h {
        py[row * w..(row + 1) * w].copy_from_slice(&yuv.y()[row * sy..row * sy + w]);
    }
    for row in 0..h / 2 {
        pu[row * w / 2..(row + 1) * w / 2].copy_from_slice(&yuv.u()[row * su..row * su + w / 2]);
        pv[row * w / 2..(row + 1) * w / 2].copy_from_slice(&yuv.v()[row * sv..row * sv + w / 2]);
    }
    pic
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

#[test]
fn encoder_makes_decodable_h264_of_yu12_and_nv12_input() {
    for fourcc in [FourCc::YU12, FourCc::NV12] {
        // 320 is not a multiple of 32 bytes of chroma: padding matters.
        let mut e = Enc::new(fourcc, 336, 240, 2, 2);
        assert_eq!(e.fmt.bytesperline, 352);
        let mut dec = openh264::decoder::Decoder::new().unwrap();
        for n in 0..3 {
            let (d, data) = e.roundtrip(1000 + n);
            let types = nal_types(&data);
            if n == 0 {
                assert_eq!(&types[..3], &[NalType::Sps, NalType::Pps, NalType::Idr]);
                assert_ne!(d.flags & flags::KEYFRAME, 0);
                let sps = Sps::parse(split_annexb(&data).next().unwrap()).unwrap();
                assert_eq!((sps.width, sps.height), (336, 240));
            } else {
                assert_eq!(types, [NalType::Slice], "one P slice");
                assert_ne!(d.flags & FLAG_PFRAME, 0);
            }
            let got = decode(&mut dec, &data);
            let (gy, gu, gv) = got.planes();
            let (wy, wu, wv) = e.pic.planes();
            // Real pictures of the input: a swapped or misaligned plane
            // would be off by tens.
            assert!(mean_abs_diff(gy, wy) < 4.0, "{fourcc} Y frame {n}");
            assert!(mean_abs_diff(gu, wu) < 4.0, "{fourcc} U frame {n}");
            assert!(mean_abs_diff(gv, wv) < 4.0, "{fourcc} V frame {n}");
        }
    }
}

#[test]
fn encoder_copies_output_timestamps_and_keeps_order() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 4, 4);
    let h = e.enc.handle();
    for (i, ts) in [(0, 111), (1, 222), (2, 333)] {
        e.put(i, ts);
    }
    let caps: Vec<(u64, u32)> = (0..3)
        .map(|_| {
            let (d, _) = next(&mut e.enc);
            assert_eq!(d.flags & FLAG_TIMESTAMP_COPY, FLAG_TIMESTAMP_COPY);
            (d.timestamp_ns, d.sequence)
        })
        .collect();
    assert_eq!(caps, [(111, 0), (222, 1), (333, 2)]);
    let outs: Vec<(u32, u64, u32)> = (0..3)
        .map(|_| {
            let d = e.enc.dequeue_buffer(Queue::Output).unwrap();
            assert_eq!(d.bytesused, e.fmt.sizeimage);
            (d.index, d.timestamp_ns, d.sequence)
        })
        .collect();
    assert_eq!(outs, [(0, 111, 0), (1, 222, 1), (2, 333, 2)]);
    assert_eq!(h.frames_delivered(), 3);
}

#[test]
fn encoding_waits_for_a_capture_buffer() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 2);
    e.put(0, 1);
    e.put(1, 2);
    let a = next(&mut e.enc).0;
    let b = next(&mut e.enc).0;
    e.put_back_output();
    // Both Capture buffers are with the application: nothing more encodes.
    e.put(0, 3);
    assert!(!e
        .enc
        .wait(Queue::Capture, Duration::from_millis(100))
        .unwrap());
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Output)), EAGAIN);
    e.enc.queue_buffer(Queue::Capture, a.index, 0, 0).unwrap();
    let c = next(&mut e.enc).0;
    assert_eq!((b.timestamp_ns, c.timestamp_ns), (2, 3));
    assert_eq!(e.enc.dequeue_buffer(Queue::Output).unwrap().timestamp_ns, 3);
}

impl Enc {
    /// Dequeues every finished `Output` buffer.
    fn put_back_output(&mut self) {
        while self.enc.dequeue_buffer(Queue::Output).is_ok() {}
    }
}

#[test]
fn i_period_and_force_key_frame_decide_the_idrs() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 1, 2);
    e.set(cid::MPEG_VIDEO_H264_I_PERIOD, 4);
    let keys: Vec<u64> = (0..9)
        .filter(|&n| e.roundtrip(n).0.flags & flags::KEYFRAME != 0)
        .collect();
    assert_eq!(keys, [0, 4, 8]);
    e.set(cid::MPEG_VIDEO_H264_I_PERIOD, 0); // only on request now
    e.set(cid::MPEG_VIDEO_FORCE_KEY_FRAME, 1);
    let keys: Vec<u64> = (0..12)
        .filter(|&n| {
            if n == 6 {
                e.set(cid::MPEG_VIDEO_FORCE_KEY_FRAME, 1);
            }
            let (d, data) = e.roundtrip(n);
            let key = d.flags & flags::KEYFRAME != 0;
            assert_eq!(key, nal_types(&data).contains(&NalType::Idr));
            key
        })
        .collect();
    assert_eq!(keys, [0, 6]);
}

#[test]
fn without_repeat_seq_header_sps_pps_come_only_before_the_first_idr() {
    for repeat in [0, 1] {
        let mut e = Enc::new(FourCc::YU12, 64, 64, 1, 2);
        e.enc.stream_off(Queue::Capture).unwrap();
        e.enc.stream_off(Queue::Output).unwrap();
        e.set(cid::MPEG_VIDEO_REPEAT_SEQ_HEADER, repeat);
        e.set(cid::MPEG_VIDEO_H264_I_PERIOD, 3);
        for i in 0..2 {
            e.enc.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
        }
        e.enc.stream_on(Queue::Capture).unwrap();
        e.enc.stream_on(Queue::Output).unwrap();
        let with_sps: Vec<u64> = (0..7)
            .filter(|&n| {
                let (d, data) = e.roundtrip(n);
                let types = nal_types(&data);
                assert_eq!(d.flags & flags::KEYFRAME != 0, n % 3 == 0, "frame {n}");
                types.contains(&NalType::Sps)
            })
            .collect();
        let want: &[u64] = if repeat == 1 { &[0, 3, 6] } else { &[0] };
        assert_eq!(with_sps, want, "repeat {repeat}");
    }
}

#[test]
fn separate_header_mode_puts_sps_pps_in_a_buffer_of_their_own() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 1, 2);
    e.enc.stream_off(Queue::Capture).unwrap();
    e.enc.stream_off(Queue::Output).unwrap();
    e.set(cid::MPEG_VIDEO_HEADER_MODE, 0);
    for i in 0..2 {
        e.enc.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
    }
    e.enc.stream_on(Queue::Capture).unwrap();
    e.enc.stream_on(Queue::Output).unwrap();
    e.put(0, 42);
    let (hd, headers) = next(&mut e.enc);
    let (fd, frame) = next(&mut e.enc);
    assert_eq!(nal_types(&headers), [NalType::Sps, NalType::Pps]);
    assert_eq!(hd.flags & flags::KEYFRAME, 0);
    assert_eq!(nal_types(&frame), [NalType::Idr]);
    assert_ne!(fd.flags & flags::KEYFRAME, 0);
    assert_eq!((hd.timestamp_ns, fd.timestamp_ns), (42, 42));
}

#[test]
fn too_small_a_capture_buffer_comes_back_with_error() {
    let clock = sim();
    let mut enc = FakeEncoder::new(clock);
    enc.set_format(
        Queue::Capture,
        &Format {
            sizeimage: 4096,
            ..Format::request(FourCc::H264, 0, 0)
        },
    )
    .unwrap();
    let fmt = set_fmt(&mut enc, Queue::Output, FourCc::YU12, 640, 480);
    enc.request_buffers(Queue::Output, 1).unwrap();
    enc.request_buffers(Queue::Capture, 1).unwrap();
    assert_eq!(enc.buffer(Queue::Capture, 0).unwrap().len(), 4096);
    let mut pic = I420Frame::new(640, 480);
    Pattern::new(640, 480).draw(0, 30, WALL, &mut pic);
    let raw = raw_of(&pic, &fmt);
    enc.buffer_mut(Queue::Output, 0)
        .unwrap()
        .copy_from_slice(&raw);
    enc.queue_buffer(Queue::Output, 0, fmt.sizeimage, 5)
        .unwrap();
    enc.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    enc.stream_on(Queue::Output).unwrap();
    enc.stream_on(Queue::Capture).unwrap();
    let (d, _) = next(&mut enc);
    assert_ne!(d.flags & flags::ERROR, 0);
    assert_eq!(d.bytesused, 0);
}

#[test]
fn drain_marks_the_last_buffer_then_epipe_until_start() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 4, 4);
    e.put(0, 10);
    e.put(1, 20);
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    assert_eq!(errno(e.enc.encoder_command(EncoderCmd::Stop)), EBUSY);
    assert_eq!(errno(e.enc.encoder_command(EncoderCmd::Start)), EBUSY);
    e.put(2, 30); // after STOP: waits
    let (a, _) = next(&mut e.enc);
    let (b, data) = next(&mut e.enc);
    assert_eq!((a.timestamp_ns, a.flags & flags::LAST), (10, 0));
    assert_eq!((b.timestamp_ns, b.flags & flags::LAST), (20, flags::LAST));
    assert!(!data.is_empty(), "LAST rides on the final frame");
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EPIPE);
    assert!(
        e.enc.wait(Queue::Capture, SEC).unwrap(),
        "poll says readable"
    );
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EPIPE);
    let outs: Vec<u64> = (0..2)
        .map(|_| e.enc.dequeue_buffer(Queue::Output).unwrap().timestamp_ns)
        .collect();
    assert_eq!(outs, [10, 20]);
    assert_eq!(
        errno(e.enc.dequeue_buffer(Queue::Output)),
        EAGAIN,
        "30 waits"
    );
    e.enc.encoder_command(EncoderCmd::Stop).unwrap(); // already stopped: no-op
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EPIPE);
    e.enc.queue_buffer(Queue::Capture, a.index, 0, 0).unwrap();
    e.enc.queue_buffer(Queue::Capture, b.index, 0, 0).unwrap();
    e.enc.encoder_command(EncoderCmd::Start).unwrap();
    let (c, data) = next(&mut e.enc);
    assert_eq!((c.timestamp_ns, c.flags & flags::LAST), (30, 0));
    // START keeps the encoder's state: the stream just continues.
    assert_eq!(nal_types(&data), [NalType::Slice]);
    assert_eq!(
        e.enc.dequeue_buffer(Queue::Output).unwrap().timestamp_ns,
        30
    );
}

#[test]
fn drain_with_nothing_pending_returns_an_empty_last_buffer() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 2);
    e.roundtrip(1);
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    let (d, _) = next(&mut e.enc);
    assert_eq!((d.bytesused, d.flags & flags::LAST), (0, flags::LAST));
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EPIPE);
    // With no Capture buffer queued when the drain ends, the next one
    // queued comes back empty with LAST.
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 1);
    e.put(0, 1);
    let (d, _) = next(&mut e.enc);
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    assert!(!e
        .enc
        .wait(Queue::Capture, Duration::from_millis(50))
        .unwrap());
    e.enc.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    let (d, _) = next(&mut e.enc);
    assert_eq!((d.bytesused, d.flags & flags::LAST), (0, flags::LAST));
}

#[test]
fn capture_restart_after_a_drain_begins_an_independent_stream() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 1, 2);
    for n in 0..3 {
        e.roundtrip(n);
    }
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    let (d, _) = next(&mut e.enc);
    assert_ne!(d.flags & flags::LAST, 0);
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EPIPE);
    e.enc.stream_off(Queue::Capture).unwrap();
    e.enc.stream_on(Queue::Capture).unwrap();
    for i in 0..2 {
        e.enc.queue_buffer(Queue::Capture, i, 0, 0).unwrap();
    }
    let (d, data) = e.roundtrip(99);
    assert_eq!(d.sequence, 0, "Capture sequence restarts");
    assert_ne!(d.flags & flags::KEYFRAME, 0);
    assert_eq!(
        &nal_types(&data)[..3],
        &[NalType::Sps, NalType::Pps, NalType::Idr]
    );
}

#[test]
fn capture_streamoff_cancels_a_drain() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 2);
    e.enc.stream_off(Queue::Capture).unwrap();
    e.put(0, 1);
    e.enc.stream_on(Queue::Capture).unwrap();
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    // Capture has no buffers queued; the drain is still going.
    assert_eq!(errno(e.enc.encoder_command(EncoderCmd::Stop)), EBUSY);
    e.enc.stream_off(Queue::Capture).unwrap();
    e.enc.encoder_command(EncoderCmd::Start).unwrap(); // not draining any more
    e.enc.stream_on(Queue::Capture).unwrap();
    e.enc.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    let (d, _) = next(&mut e.enc);
    assert_eq!((d.timestamp_ns, d.flags & flags::LAST), (1, 0));
}

#[test]
fn output_streamoff_during_a_drain_finishes_it_with_an_empty_last_buffer() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 2, 1);
    let (first, _) = e.roundtrip(1);
    e.enc
        .dequeue_buffer(Queue::Capture)
        .expect_err("requeued, not done");
    // Keep the only Capture buffer so nothing encodes, then drain.
    let taken = {
        e.put(0, 2);
        let (d, _) = next(&mut e.enc);
        assert_eq!(d.index, first.index);
        d
    };
    e.put_back_output();
    e.put(0, 3);
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    e.enc.stream_off(Queue::Output).unwrap();
    e.enc
        .queue_buffer(Queue::Capture, taken.index, 0, 0)
        .unwrap();
    let (d, _) = next(&mut e.enc);
    assert_eq!((d.bytesused, d.flags & flags::LAST), (0, flags::LAST));
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), EPIPE);
    // Restarting Output resumes.
    e.enc.stream_on(Queue::Output).unwrap();
    e.enc.queue_buffer(Queue::Capture, d.index, 0, 0).unwrap();
    let (d, _) = e.roundtrip(4);
    assert_eq!(d.timestamp_ns, 4);
}

#[test]
fn stop_on_an_encoder_that_is_not_streaming_does_not_drain() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 1, 2);
    e.enc.stream_off(Queue::Output).unwrap();
    e.enc.encoder_command(EncoderCmd::Stop).unwrap();
    e.enc.encoder_command(EncoderCmd::Stop).unwrap(); // not draining: no EBUSY
    e.enc.stream_on(Queue::Output).unwrap();
    let (d, _) = e.roundtrip(5);
    assert_eq!(d.flags & flags::LAST, 0);
}

#[test]
fn encoder_unplug_and_stall() {
    let mut e = Enc::new(FourCc::YU12, 64, 64, 1, 2);
    let h = e.enc.handle();
    h.set_stalled(true);
    e.put(0, 1);
    assert!(!e
        .enc
        .wait(Queue::Capture, Duration::from_millis(300))
        .unwrap());
    assert_eq!(e.clock.monotonic_ns(), 300_000_000);
    h.set_stalled(false);
    assert!(e.enc.wait(Queue::Capture, SEC).unwrap());
    h.unplug();
    assert_eq!(errno(e.enc.dequeue_buffer(Queue::Capture)), ENODEV);
    assert_eq!(errno(e.enc.wait(Queue::Capture, SEC)), ENODEV);
    assert_eq!(errno(e.enc.caps()), ENODEV);
    assert_eq!(errno(e.enc.encoder_command(EncoderCmd::Stop)), ENODEV);
    assert_eq!(errno(FakeEncoder::open(&h)), ENOENT);
    h.replug();
    assert_eq!(errno(e.enc.caps()), ENODEV);
    assert!(FakeEncoder::open(&h).unwrap().caps().unwrap().m2m);
}

// ---------------------------------------------------------------- backend

/// A fresh directory for one test's nodes.
fn sim_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roomcast-v4l2-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn sim_backend_lists_nodes_sorted_and_opens_them_by_content() {
    let dir = sim_dir("list");
    let backend = SimBackend::new(dir.clone(), sim());
    assert!(backend.list().is_empty());
    for (name, content) in [
        ("video10", "m2m\n"),
        ("video2", " uvc "),
        ("video0", "uvc"),
        ("video2.stall", ""),
        ("videoX", "uvc"),
        ("video3", "gpu"),
    ] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    std::fs::create_dir(dir.join("video7")).unwrap();
    assert_eq!(
        backend.list(),
        ["/dev/video0", "/dev/video2", "/dev/video3", "/dev/video10"]
    );
    let cam = backend.open("/dev/video0").unwrap();
    let caps = cam.caps().unwrap();
    assert!(caps.video_capture && !caps.m2m);
    let fmts: Vec<FourCc> = cam
        .enum_formats(Queue::Capture)
        .unwrap()
        .iter()
        .map(|d| d.fourcc)
        .collect();
    assert_eq!(fmts, [FourCc::YUYV, FourCc::H264], "sim_uvc: no MJPEG");
    assert!(backend.open("/dev/video10").unwrap().caps().unwrap().m2m);
    assert_eq!(errno(backend.open("/dev/video5")), ENOENT);
    assert_eq!(errno(backend.open("/dev/videoX")), ENOENT);
    assert_eq!(errno(backend.open("/dev/video3")), ENODEV);
    let none = SimBackend::new(dir.join("missing"), sim());
    assert!(none.list().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sim_backend_stalls_and_unplugs_by_files() {
    let dir = sim_dir("plug");
    let clock = sim();
    let backend = SimBackend::new(dir.clone(), clock.clone());
    std::fs::write(dir.join("video1"), "uvc").unwrap();
    std::fs::write(dir.join("video1.stall"), "").unwrap();
    let mut cam = backend.open("/dev/video1").unwrap();
    cam.request_buffers(Queue::Capture, 2).unwrap();
    cam.queue_buffer(Queue::Capture, 0, 0, 0).unwrap();
    cam.stream_on(Queue::Capture).unwrap();
    assert!(
        !cam.wait(Queue::Capture, SEC).unwrap(),
        "stalled by its file"
    );
    std::fs::remove_file(dir.join("video1.stall")).unwrap();
    assert!(cam.wait(Queue::Capture, SEC).unwrap());
    let d = cam.dequeue_buffer(Queue::Capture).unwrap();
    assert_eq!(d.sequence, 0);
    // Controls persist across opens of the same node.
    cam.set_control(cid::BRIGHTNESS, 5).unwrap();
    assert_eq!(
        backend
            .open("/dev/video1")
            .unwrap()
            .control(cid::BRIGHTNESS)
            .unwrap(),
        5
    );
    // Deleting the file unplugs it within 100 ms of clock time.
    std::fs::remove_file(dir.join("video1")).unwrap();
    assert_eq!(errno(cam.wait(Queue::Capture, SEC)), ENODEV);
    assert!(clock.monotonic_ns() - d.timestamp_ns <= 200_000_000);
    assert!(backend.list().is_empty());
    assert_eq!(errno(backend.open("/dev/video1")), ENOENT);
    std::fs::write(dir.join("video1"), "uvc").unwrap();
    assert_eq!(errno(cam.caps()), ENODEV, "the old handle stays dead");
    let again = backend.open("/dev/video1").unwrap();
    assert_eq!(again.caps().unwrap().card, "Fake UVC Camera");
    assert!(backend.handle("/dev/video1").unwrap().is_plugged());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- helpers

#[test]
fn grid_arithmetic_is_exact_for_fractional_intervals() {
    let g = Grid::new(
        1_000,
        Interval {
            num: 1001,
            den: 30_000,
        },
    );
    for k in [0u64, 1, 2, 29, 30, 1_000_000] {
        let t = g.due(k);
        assert_eq!(g.last_due_by(t), k);
        assert_eq!(g.first_due_from(t), k);
        assert_eq!(g.last_due_by(t - 1), k.saturating_sub(1));
        assert_eq!(g.first_due_from(t + 1), k + 1);
    }
    let stalls = [(g.due(3), g.due(5)), (g.due(8) - 1, u64::MAX)];
    // Frames 1..=10: 3, 4 and 8.. are stalled.
    assert_eq!(unstalled(&g, &stalls, 1, 10), 5);
}
