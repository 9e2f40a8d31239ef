//! A fake stateful memory-to-memory H.264 encoder shaped like the Pi's
//! bcm2835-codec, following the kernel's dev-encoder.rst: the coded format
//! is set on `Capture` first (which resets `Output`), encoding runs while
//! both queues stream, `V4L2_ENC_CMD_STOP` drains to a `LAST` buffer, then
//! `DQBUF(Capture)` fails with `EPIPE` until `START` or a `Capture` restart.

use super::media::{raw_sizeimage, split_headers, unpack, H264Stream};
use super::{check_control, control, force_key_frame_control, land_payload, menu, nanos};
use super::{
    read_control, BufQueue, FakeHandle, Filled, Shared, ENOTTY, FLAG_PFRAME, FLAG_TIMESTAMP_COPY,
    WATCH_EVERY_NS,
};
use crate::base::clock::SharedClock;
use crate::base::frame::I420Frame;
use crate::encoder::EncoderSettings;
use crate::v4l2::{cid, flags, Caps, ControlInfo, ControlKind, Dequeued, DevError, DevResult};
use crate::v4l2::{Device, EncoderCmd, Format, FormatDesc, FourCc, FrameSizes, Interval};
use crate::v4l2::{Intervals, Queue, EBUSY, EINVAL, EPIPE};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

/// The `Output` format after open and after every `Capture` `S_FMT`.
const DEFAULT_SIZE: (u32, u32) = (1280, 720);
const MIN_SIZE: u32 = 32;
const MAX_SIZE: u32 = 1920;
const DEFAULT_CODED_SIZE: u32 = 512 * 1024;
const MIN_CODED_SIZE: u32 = 4096;
const MAX_CODED_SIZE: u32 = 16 << 20;
/// Frame rates `S_PARM` accepts.
const FPS_RANGE: (u32, u32) = (1, 120);

/// Controls that shape the stream's headers, so the driver refuses them
/// while a queue streams (as the control framework does for grabbed ones).
const FIXED_WHILE_STREAMING: [u32; 4] = [
    cid::MPEG_VIDEO_H264_PROFILE,
    cid::MPEG_VIDEO_H264_LEVEL,
    cid::MPEG_VIDEO_HEADER_MODE,
    cid::MPEG_VIDEO_REPEAT_SEQ_HEADER,
];

fn encoder_controls() -> Vec<ControlInfo> {
    let levels = [
        "1", "1b", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "3.1", "3.2", "4", "4.1", "4.2",
    ];
    let levels: Vec<(i64, &str)> = levels
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64, *n))
        .collect();
    vec![
        control(
            cid::MPEG_VIDEO_BITRATE_MODE,
            "Video Bitrate Mode",
            menu(&[(0, "Variable Bitrate"), (1, "Constant Bitrate")]),
            0,
            1,
            0,
        ),
        ControlInfo {
            step: 25_000,
            ..control(
                cid::MPEG_VIDEO_BITRATE,
                "Video Bitrate",
                ControlKind::Integer,
                25_000,
                25_000_000,
                10_000_000,
            )
        },
        control(
            cid::MPEG_VIDEO_H264_I_PERIOD,
            "H264 I-Frame Period",
            ControlKind::Integer,
            0,
            i64::from(i32::MAX),
            60,
        ),
        // The menu the Pi offers; the fake always encodes Constrained
        // Baseline (openh264), whatever is chosen.
        control(
            cid::MPEG_VIDEO_H264_PROFILE,
            "H264 Profile",
            menu(&[
                (0, "Baseline"),
                (1, "Constrained Baseline"),
                (2, "Main"),
                (4, "High"),
            ]),
            0,
            4,
            4,
        ),
        control(
            cid::MPEG_VIDEO_H264_LEVEL,
            "H264 Level",
            menu(&levels),
            0,
            13,
            11,
        ),
        control(
            cid::MPEG_VIDEO_REPEAT_SEQ_HEADER,
            "Repeat Sequence Header",
            ControlKind::Boolean,
            0,
            1,
            0,
        ),
        control(
            cid::MPEG_VIDEO_HEADER_MODE,
            "Sequence Header Mode",
            menu(&[(0, "Separate Buffer"), (1, "Joined With 1st Frame")]),
            0,
            1,
            1,
        ),
        force_key_frame_control(),
    ]
}

/// The `Output` format the driver sets for a request: YU12 unless NV12,
/// size clamped to the stepwise range, lines padded to 32 bytes.
fn output_format(want: &Format) -> Format {
    let fourcc = match want.fourcc {
        FourCc::NV12 => FourCc::NV12,
        _ => FourCc::YU12,
    };
    let fit = |v: u32| (v.clamp(MIN_SIZE, MAX_SIZE) + 1) & !1;
    let (width, height) = (
        fit(want.width).min(MAX_SIZE),
        fit(want.height).min(MAX_SIZE),
    );
    let bytesperline = width.next_multiple_of(32);
    Format {
        fourcc,
        width,
        height,
        bytesperline,
        sizeimage: raw_sizeimage(fourcc, bytesperline, height).unwrap_or(0),
    }
}

fn coded_format(out: &Format, sizeimage: u32) -> Format {
    Format {
        fourcc: FourCc::H264,
        width: out.width,
        height: out.height,
        bytesperline: 0,
        sizeimage,
    }
}

/// Where the encoder is in dev-encoder.rst's state machine. Initialization
/// and Reset are `Encoding` with a queue not streaming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Encoding,
    /// `STOP` issued; this many `Output` buffers queued before it remain.
    Draining(usize),
    /// Everything is encoded; the `LAST` chunk waits for a `Capture` buffer.
    Finishing,
    /// The `LAST` buffer is done, not yet dequeued.
    LastDone,
    /// The `LAST` buffer was dequeued: `DQBUF(Capture)` gives `EPIPE`, new
    /// `Output` buffers wait for `START` or a restart.
    Stopped,
}

impl Phase {
    fn draining(self) -> bool {
        matches!(
            self,
            Phase::Draining(_) | Phase::Finishing | Phase::LastDone
        )
    }
}

/// Encoded bytes waiting for a `Capture` buffer.
struct Chunk {
    data: Vec<u8>,
    flags: u32,
    timestamp_ns: u64,
    last: bool,
}

/// A fake M2M encoder (one open instance; each open is independent, as
/// for any M2M device).
pub struct FakeEncoder {
    handle: FakeHandle,
    generation: u64,
    out_mem: Vec<Vec<u8>>,
    cap_mem: Vec<Vec<u8>>,
    st: RefCell<EncState>,
}

struct EncState {
    out_fmt: Format,
    cap_fmt: Format,
    interval: Interval,
    controls: Vec<ControlInfo>,
    values: Vec<i64>,
    out: BufQueue,
    cap: BufQueue,
    /// Length of the allocated `Capture` buffers.
    cap_len: usize,
    phase: Phase,
    stream: H264Stream,
    pending: VecDeque<Chunk>,
    pic: I420Frame,
    spare: Vec<Vec<u8>>,
}

impl EncState {
    fn value(&self, id: u32) -> i64 {
        self.controls
            .iter()
            .position(|c| c.id == id)
            .map_or(0, |i| self.values[i])
    }

    /// Ends the drain: the last pending chunk carries `LAST`, or an empty
    /// one does if nothing is pending.
    fn finish_drain(&mut self) {
        match self.pending.back_mut() {
            Some(c) => c.last = true,
            None => self.pending.push_back(Chunk {
                data: Vec::new(),
                flags: 0,
                timestamp_ns: 0,
                last: true,
            }),
        }
        self.phase = Phase::Finishing;
    }

    /// Does all the work possible now: fills `Capture` buffers from pending
    /// chunks, and encodes queued `Output` buffers in order while a
    /// `Capture` buffer is there to take the result.
    fn pump(&mut self, sh: &mut Shared, out_mem: &[Vec<u8>]) {
        // Pending chunks only need Capture streaming (a drain cut short by
        // STREAMOFF(Output) still ends with its LAST buffer); encoding
        // needs both queues.
        if !self.cap.streaming || sh.stalled_now() {
            return;
        }
        loop {
            if self.cap.has_queued() {
                if let Some(chunk) = self.pending.pop_front() {
                    self.deliver(chunk, sh);
                    continue;
                }
            }
            // A drain stops encoding once the buffers queued before STOP are
            // done (Draining then turns into Finishing).
            let may_encode = matches!(self.phase, Phase::Encoding | Phase::Draining(_));
            if may_encode && self.out.streaming && self.out.has_queued() && self.cap.has_queued() {
                self.encode_one(out_mem);
                continue;
            }
            break;
        }
    }

    fn deliver(&mut self, chunk: Chunk, sh: &mut Shared) {
        let Some((index, _)) = self.cap.take_queued() else {
            return;
        };
        let mut fl = flags::DONE | FLAG_TIMESTAMP_COPY | chunk.flags;
        let mut data = chunk.data;
        if data.len() > self.cap_len {
            // Too small a buffer: returned with ERROR, the frame is lost.
            data.clear();
            fl |= flags::ERROR;
        }
        if !data.is_empty() {
            sh.delivered += 1;
            if sh.pending_errors > 0 {
                sh.pending_errors -= 1;
                fl |= flags::ERROR;
            }
        }
        if chunk.last {
            fl |= flags::LAST;
            self.phase = Phase::LastDone;
        }
        let sequence = self.cap.next_sequence();
        self.cap.push_done(Filled {
            index,
            bytesused: data.len() as u32,
            flags: fl,
            timestamp_ns: chunk.timestamp_ns,
            sequence,
            payload: Some(data),
        });
    }

    fn encode_one(&mut self, out_mem: &[Vec<u8>]) {
        let Some((index, (bytesused, ts))) = self.out.take_queued() else {
            return;
        };
        let sequence = self.out.next_sequence();
        let mut out_flags = flags::DONE | FLAG_TIMESTAMP_COPY;
        if bytesused < self.out_fmt.sizeimage {
            // Less than a whole picture: nothing to encode.
            out_flags |= flags::ERROR;
        } else {
            let data = &out_mem[index as usize][..bytesused as usize];
            unpack(data, &self.out_fmt, &mut self.pic);
            let settings = EncoderSettings {
                width: self.out_fmt.width,
                height: self.out_fmt.height,
                fps: self.interval.fps().max(1),
                bitrate_kbps: (self.value(cid::MPEG_VIDEO_BITRATE) / 1000).max(1) as u32,
                gop: 0,
                threads: 1,
            };
            let i_period = self.value(cid::MPEG_VIDEO_H264_I_PERIOD) as u32;
            let repeat = self.value(cid::MPEG_VIDEO_REPEAT_SEQ_HEADER) != 0;
            let separate = self.value(cid::MPEG_VIDEO_HEADER_MODE) == 0;
            let chunk = |data, flags| Chunk {
                data,
                flags,
                timestamp_ns: ts,
                last: false,
            };
            match self.stream.encode(&self.pic, settings, i_period, repeat) {
                Ok(p) => {
                    let kind = if p.keyframe {
                        flags::KEYFRAME
                    } else {
                        FLAG_PFRAME
                    };
                    let (headers, rest) = split_headers(&p.data);
                    if separate && !headers.is_empty() {
                        self.pending.push_back(chunk(headers, 0));
                        self.pending.push_back(chunk(rest, kind));
                    } else {
                        self.pending.push_back(chunk(p.data, kind));
                    }
                }
                Err(_) => self.pending.push_back(chunk(Vec::new(), flags::ERROR)),
            }
        }
        self.out.push_done(Filled {
            index,
            bytesused,
            flags: out_flags,
            timestamp_ns: ts,
            sequence,
            payload: None,
        });
        if let Phase::Draining(left) = self.phase {
            if left <= 1 {
                self.finish_drain();
            } else {
                self.phase = Phase::Draining(left - 1);
            }
        }
    }

    fn queue_mut(&mut self, queue: Queue) -> &mut BufQueue {
        match queue {
            Queue::Output => &mut self.out,
            Queue::Capture => &mut self.cap,
        }
    }
}

impl FakeEncoder {
    /// A plugged-in encoder with its own new [`FakeHandle`].
    pub fn new(clock: SharedClock) -> Self {
        Self::open(&FakeHandle::new_encoder(clock)).expect("a new encoder is plugged in")
    }

    /// Opens a new instance on the encoder behind `handle` (`ENOENT` while
    /// unplugged, `EINVAL` if it is a camera).
    pub fn open(handle: &FakeHandle) -> DevResult<Self> {
        if handle.is_camera() {
            return Err(DevError::new("open", EINVAL));
        }
        let (generation, _) = handle.attach("open")?;
        let controls = encoder_controls();
        let out_fmt = output_format(&Format::request(
            FourCc::YU12,
            DEFAULT_SIZE.0,
            DEFAULT_SIZE.1,
        ));
        Ok(FakeEncoder {
            handle: handle.clone(),
            generation,
            out_mem: Vec::new(),
            cap_mem: Vec::new(),
            st: RefCell::new(EncState {
                out_fmt,
                cap_fmt: coded_format(&out_fmt, DEFAULT_CODED_SIZE),
                interval: Interval::from_fps(30),
                values: controls.iter().map(|c| c.default).collect(),
                controls,
                out: BufQueue::default(),
                cap: BufQueue::default(),
                cap_len: 0,
                phase: Phase::Encoding,
                stream: H264Stream::new(),
                pending: VecDeque::new(),
                pic: I420Frame::new(2, 2),
                spare: Vec::new(),
            }),
        })
    }

    /// The test's side of this encoder.
    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }
}

impl std::fmt::Debug for FakeEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.st.borrow();
        f.debug_struct("FakeEncoder")
            .field("generation", &self.generation)
            .field("output", &st.out_fmt)
            .field("capture", &st.cap_fmt)
            .field("phase", &st.phase)
            .finish_non_exhaustive()
    }
}

impl Device for FakeEncoder {
    fn caps(&self) -> DevResult<Caps> {
        drop(self.handle.live(self.generation, "VIDIOC_QUERYCAP")?);
        Ok(Caps {
            driver: "bcm2835-codec".to_owned(),
            card: "bcm2835-codec-encode".to_owned(),
            bus_info: "platform:bcm2835-codec".to_owned(),
            video_capture: false,
            m2m: true,
            streaming: true,
            mplane: true,
        })
    }

    fn enum_formats(&self, queue: Queue) -> DevResult<Vec<FormatDesc>> {
        drop(self.handle.live(self.generation, "VIDIOC_ENUM_FMT")?);
        let desc = |fourcc, description: &str, compressed| FormatDesc {
            fourcc,
            description: description.to_owned(),
            compressed,
        };
        Ok(match queue {
            Queue::Capture => vec![desc(FourCc::H264, "H.264", true)],
            Queue::Output => vec![
                desc(FourCc::YU12, "Planar YUV 4:2:0", false),
                desc(FourCc::NV12, "Y/UV 4:2:0", false),
            ],
        })
    }

    fn enum_frame_sizes(&self, fourcc: FourCc) -> DevResult<FrameSizes> {
        const OP: &str = "VIDIOC_ENUM_FRAMESIZES";
        drop(self.handle.live(self.generation, OP)?);
        match fourcc {
            FourCc::YU12 | FourCc::NV12 | FourCc::H264 => Ok(FrameSizes::Stepwise {
                min: (MIN_SIZE, MIN_SIZE),
                max: (MAX_SIZE, MAX_SIZE),
                step: (2, 2),
            }),
            _ => Err(DevError::new(OP, EINVAL)),
        }
    }

    /// The Pi's encoder does not implement it (the doc makes it optional).
    fn enum_frame_intervals(&self, _: FourCc, _: u32, _: u32) -> DevResult<Intervals> {
        const OP: &str = "VIDIOC_ENUM_FRAMEINTERVALS";
        drop(self.handle.live(self.generation, OP)?);
        Err(DevError::new(OP, ENOTTY))
    }

    fn format(&self, queue: Queue) -> DevResult<Format> {
        drop(self.handle.live(self.generation, "VIDIOC_G_FMT")?);
        let st = self.st.borrow();
        Ok(match queue {
            Queue::Output => st.out_fmt,
            Queue::Capture => st.cap_fmt,
        })
    }

    fn set_format(&mut self, queue: Queue, want: &Format) -> DevResult<Format> {
        const OP: &str = "VIDIOC_S_FMT";
        drop(self.handle.live(self.generation, OP)?);
        let st = self.st.get_mut();
        match queue {
            Queue::Capture => {
                // The coded format governs the raw one: no change while
                // either queue has buffers.
                if st.out.count() > 0 || st.cap.count() > 0 {
                    return Err(DevError::new(OP, EBUSY));
                }
                let size = match want.sizeimage {
                    0 => DEFAULT_CODED_SIZE,
                    s => s.clamp(MIN_CODED_SIZE, MAX_CODED_SIZE),
                };
                // "Changing the CAPTURE format may change the OUTPUT
                // format": here it always goes back to the default.
                st.out_fmt = output_format(&Format::request(
                    FourCc::YU12,
                    DEFAULT_SIZE.0,
                    DEFAULT_SIZE.1,
                ));
                st.cap_fmt = coded_format(&st.out_fmt, size);
                Ok(st.cap_fmt)
            }
            Queue::Output => {
                if st.out.count() > 0 || st.cap.streaming {
                    return Err(DevError::new(OP, EBUSY));
                }
                st.out_fmt = output_format(want);
                st.cap_fmt = coded_format(&st.out_fmt, st.cap_fmt.sizeimage);
                Ok(st.out_fmt)
            }
        }
    }

    /// `S_PARM` on `Output` sets the frame rate the stream is coded for;
    /// `Capture` has no separate coded rate (`EINVAL`).
    fn set_interval(&mut self, queue: Queue, want: Interval) -> DevResult<Interval> {
        const OP: &str = "VIDIOC_S_PARM";
        drop(self.handle.live(self.generation, OP)?);
        if queue == Queue::Capture {
            return Err(DevError::new(OP, EINVAL));
        }
        let iv = if want.num == 0 || want.den == 0 {
            Interval::from_fps(30)
        } else if want.fps_f64() > f64::from(FPS_RANGE.1) {
            Interval::from_fps(FPS_RANGE.1)
        } else if want.fps_f64() < f64::from(FPS_RANGE.0) {
            Interval::from_fps(FPS_RANGE.0)
        } else {
            want
        };
        self.st.get_mut().interval = iv;
        Ok(iv)
    }

    fn controls(&self) -> DevResult<Vec<ControlInfo>> {
        drop(self.handle.live(self.generation, "VIDIOC_QUERYCTRL")?);
        Ok(self.st.borrow().controls.clone())
    }

    fn control(&self, id: u32) -> DevResult<i64> {
        drop(self.handle.live(self.generation, "VIDIOC_G_CTRL")?);
        let st = self.st.borrow();
        read_control(&st.controls, &st.values, id)
    }

    fn set_control(&mut self, id: u32, value: i64) -> DevResult<()> {
        const OP: &str = "VIDIOC_S_CTRL";
        let mut sh = self.handle.live(self.generation, OP)?;
        let st = self.st.get_mut();
        st.pump(&mut sh, &self.out_mem);
        let (i, v) = check_control(&st.controls, id, value)?;
        if FIXED_WHILE_STREAMING.contains(&id) && (st.out.streaming || st.cap.streaming) {
            return Err(DevError::new(OP, EBUSY));
        }
        st.values[i] = v;
        if id == cid::MPEG_VIDEO_FORCE_KEY_FRAME {
            st.stream.force_keyframe();
        }
        Ok(())
    }

    fn request_buffers(&mut self, queue: Queue, count: u32) -> DevResult<u32> {
        const OP: &str = "VIDIOC_REQBUFS";
        drop(self.handle.live(self.generation, OP)?);
        let st = self.st.get_mut();
        let n = st.queue_mut(queue).request(OP, count, 1)?;
        let (mem, len) = match queue {
            Queue::Output => (&mut self.out_mem, st.out_fmt.sizeimage as usize),
            Queue::Capture => {
                st.cap_len = st.cap_fmt.sizeimage as usize;
                (&mut self.cap_mem, st.cap_len)
            }
        };
        *mem = (0..n).map(|_| vec![0; len]).collect();
        Ok(n)
    }

    fn buffer(&self, queue: Queue, index: u32) -> DevResult<&[u8]> {
        const OP: &str = "buffer";
        drop(self.handle.live(self.generation, OP)?);
        let mem = match queue {
            Queue::Output => &self.out_mem,
            Queue::Capture => &self.cap_mem,
        };
        mem.get(index as usize)
            .map(Vec::as_slice)
            .ok_or(DevError::new(OP, EINVAL))
    }

    fn buffer_mut(&mut self, queue: Queue, index: u32) -> DevResult<&mut [u8]> {
        const OP: &str = "buffer_mut";
        drop(self.handle.live(self.generation, OP)?);
        self.st.get_mut().queue_mut(queue).owned_by_app(OP, index)?;
        let mem = match queue {
            Queue::Output => &mut self.out_mem,
            Queue::Capture => &mut self.cap_mem,
        };
        Ok(&mut mem[index as usize])
    }

    fn queue_buffer(&mut self, queue: Queue, index: u32, bytesused: u32, ts: u64) -> DevResult<()> {
        const OP: &str = "VIDIOC_QBUF";
        drop(self.handle.live(self.generation, OP)?);
        let st = self.st.get_mut();
        match queue {
            Queue::Output => {
                let len = self.out_mem.get(index as usize).map_or(0, Vec::len) as u32;
                if bytesused > len {
                    return Err(DevError::new(OP, EINVAL));
                }
                // vb2 reads 0 as "the whole buffer" (deprecated, but done).
                let used = if bytesused == 0 { len } else { bytesused };
                st.out.queue(OP, index, used, ts)
            }
            Queue::Capture => st.cap.queue(OP, index, 0, 0),
        }
    }

    fn dequeue_buffer(&mut self, queue: Queue) -> DevResult<Dequeued> {
        const OP: &str = "VIDIOC_DQBUF";
        let mut sh = self.handle.live(self.generation, OP)?;
        let st = self.st.get_mut();
        if !st.queue_mut(queue).streaming {
            return Err(DevError::new(OP, EINVAL));
        }
        if queue == Queue::Capture && st.phase == Phase::Stopped {
            return Err(DevError::new(OP, EPIPE));
        }
        st.pump(&mut sh, &self.out_mem);
        let mut f = st.queue_mut(queue).dequeue(OP)?;
        if queue == Queue::Capture {
            if f.flags & flags::LAST != 0 {
                st.phase = Phase::Stopped;
            }
            land_payload(&mut self.cap_mem, &mut f, &mut st.spare);
        }
        Ok(f.dequeued())
    }

    fn stream_on(&mut self, queue: Queue) -> DevResult<()> {
        const OP: &str = "VIDIOC_STREAMON";
        drop(self.handle.live(self.generation, OP)?);
        let st = self.st.get_mut();
        if st.queue_mut(queue).stream_on(OP)? && st.phase == Phase::Stopped {
            // Stopped -> Encoding: an Output restart resumes; a Capture
            // restart follows a reset (see stream_off).
            st.phase = Phase::Encoding;
        }
        Ok(())
    }

    fn stream_off(&mut self, queue: Queue) -> DevResult<()> {
        const OP: &str = "VIDIOC_STREAMOFF";
        drop(self.handle.live(self.generation, OP)?);
        let st = self.st.get_mut();
        match queue {
            Queue::Output => {
                st.out.stream_off();
                // A drain in progress completes at once: the next Capture
                // buffer comes back empty with LAST.
                if let Phase::Draining(_) = st.phase {
                    st.pending.push_back(Chunk {
                        data: Vec::new(),
                        flags: 0,
                        timestamp_ns: 0,
                        last: true,
                    });
                    st.phase = Phase::Finishing;
                }
            }
            Queue::Capture => {
                // Reset: the drain (if any) is cancelled and the next
                // picture starts an independent stream.
                st.cap.stream_off();
                st.pending.clear();
                st.stream.reset();
                st.phase = Phase::Encoding;
            }
        }
        Ok(())
    }

    fn wait(&self, queue: Queue, timeout: Duration) -> DevResult<bool> {
        const OP: &str = "poll";
        let clock = &*self.handle.clock;
        let deadline = clock.monotonic_ns().saturating_add(nanos(timeout));
        loop {
            {
                let mut sh = self.handle.live(self.generation, OP)?;
                let mut st = self.st.borrow_mut();
                if !st.queue_mut(queue).streaming {
                    return Err(DevError::new(OP, EINVAL));
                }
                // After the LAST buffer poll() says readable, and DQBUF
                // then reports EPIPE.
                if queue == Queue::Capture && st.phase == Phase::Stopped {
                    return Ok(true);
                }
                st.pump(&mut sh, &self.out_mem);
                if st.queue_mut(queue).has_done() {
                    return Ok(true);
                }
            }
            // Nothing changes without the application's calls except an
            // unplug or an un-stall: look again now and then.
            let now = clock.monotonic_ns();
            if now >= deadline {
                return Ok(false);
            }
            clock.sleep_until(deadline.min(now.saturating_add(WATCH_EVERY_NS)));
        }
    }

    fn encoder_command(&mut self, cmd: EncoderCmd) -> DevResult<()> {
        const OP: &str = "VIDIOC_ENCODER_CMD";
        drop(self.handle.live(self.generation, OP)?);
        // No catching up first: what is still queued on Output is what the
        // drain covers (work is lazy, as on hardware it is asynchronous).
        let st = self.st.get_mut();
        if st.phase.draining() {
            return Err(DevError::new(OP, EBUSY));
        }
        // Only a streaming encoder drains; otherwise STOP succeeds and does
        // nothing, for compatibility.
        let streaming = st.out.streaming && st.cap.streaming;
        match (cmd, st.phase) {
            (EncoderCmd::Stop, Phase::Encoding) if streaming => match st.out.queued.len() {
                0 => st.finish_drain(),
                n => st.phase = Phase::Draining(n),
            },
            (EncoderCmd::Start, Phase::Stopped) => st.phase = Phase::Encoding,
            _ => {}
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        self.handle.clock.monotonic_ns()
    }
}
