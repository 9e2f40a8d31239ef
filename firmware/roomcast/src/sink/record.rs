//! The recorder sink: writes the stream as MPEG-TS files into a directory
//! (SD card or USB stick), one file per `segment_minutes`.
//!
//! * **Never stalls capture.** Like every sink it has its own bounded bus
//!   queue and thread; a slow card fills the queue and the bus drops to the
//!   next keyframe, counted per sink. Nothing here is called by the encoder.
//! * **Files.** A file starts at a keyframe (PAT/PMT first, the same
//!   `TsMuxer` as HLS), is named after the wall-clock time of its first
//!   frame (`roomcast-20261125T041500Z.ts`, UTC) and is written as
//!   `NAME.ts.part`; it is fsynced and renamed when closed, so a power cut
//!   leaves a `.part`, never a file that looks complete. A file is closed at
//!   the first keyframe after `segment_minutes` of media time, when the
//!   encoder restarts (new settings may change the picture size), when
//!   recording stops, and at half of `keep_mb` (so the limit always leaves
//!   room for the file being written and the one before it).
//! * **Space.** At most `keep_mb` of recordings: the oldest files (finished,
//!   or `.part` left by a power cut) are deleted first. Only names this
//!   module writes (`roomcast-*.ts`, `roomcast-*.ts.part`) are ever touched.
//! * **Failures.** A full disk or an unwritable directory stops writing (a
//!   file cut short is truncated to its last whole frame and finished), is
//!   reported in the status, and is retried every [`RETRY_NS`] at the next
//!   keyframe.
//!
//! Rotation follows the frames' own timestamps, and the retry timer the
//! clock passed in, so the logic is tested with `SimClock` and no sleeping.

use super::output::{Common, Ctx, OutputKind, State, Wanted};
use crate::base::bus::SinkQueue;
use crate::base::clock::SharedClock;
use crate::base::frame::EncodedFrame;
use crate::base::lock;
use crate::base::stats::write_family;
use crate::config::ValidConfig;
use crate::sink::tsmux::ProgramMuxer;
use roomcast_media::time::Ticks90k;
use serde_json::{json, Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long after a failure the recorder tries again.
pub const RETRY_NS: u64 = 3_000_000_000;
/// File names this module writes start with this.
const PREFIX: &str = "roomcast-";
/// Suffix of a file being written.
const PART: &str = ".part";
/// How long a settings change waits for the old recorder to close its file.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Subdirectory of the data directory used when `record.dir` is empty.
pub const DEFAULT_SUBDIR: &str = "recordings";

/// What the recorder needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    pub dir: PathBuf,
    /// Media time after which the next keyframe starts a new file.
    pub segment: Ticks90k,
    /// Recordings kept in the directory, in bytes.
    pub keep_bytes: u64,
    /// The program's audio track (another one restarts the recorder).
    pub audio: Option<crate::base::frame::AudioFormat>,
}

impl RecordSettings {
    /// The settings of an enabled `[record]` table; `None` when disabled.
    pub fn from_config(cfg: &ValidConfig, data_dir: &Path) -> Option<Self> {
        cfg.get()
            .record
            .enabled
            .then(|| RecordSettings::of(cfg, data_dir))
    }

    /// The settings `[record]` describes, enabled or not.
    pub fn of(cfg: &ValidConfig, data_dir: &Path) -> Self {
        let r = &cfg.get().record;
        RecordSettings {
            dir: if r.dir.is_empty() {
                data_dir.join(DEFAULT_SUBDIR)
            } else {
                PathBuf::from(&r.dir)
            },
            segment: Ticks90k::from_millis(u64::from(r.segment_minutes) * 60_000),
            keep_bytes: u64::from(r.keep_mb) * 1024 * 1024,
            audio: cfg.audio_format(),
        }
    }
}

/// Why a recording could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot use the directory {}: {}", .0.display(), why(.1))]
    Dir(PathBuf, #[source] io::Error),
    #[error("cannot create {}: {}", .0.display(), why(.1))]
    Create(PathBuf, #[source] io::Error),
    #[error("cannot write {}: {}", .0.display(), why(.1))]
    Write(PathBuf, #[source] io::Error),
    #[error("cannot finish {}: {}", .0.display(), why(.1))]
    Finish(PathBuf, #[source] io::Error),
    #[error("cannot delete the old recording {}: {}", .0.display(), why(.1))]
    Prune(PathBuf, #[source] io::Error),
}

/// An I/O error in the words an admin needs: full and read-only disks are
/// the usual causes on a box.
fn why(e: &io::Error) -> String {
    // errno values shared by Linux and the BSDs.
    const ENOSPC: i32 = 28;
    const EROFS: i32 = 30;
    match e.raw_os_error() {
        Some(ENOSPC) => format!("the disk is full ({e})"),
        Some(EROFS) => format!("the disk is read-only ({e})"),
        _ if e.kind() == io::ErrorKind::PermissionDenied => {
            format!("not writable by roomcast ({e})")
        }
        _ => e.to_string(),
    }
}

/// Where the recorder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordState {
    /// Recording is off, or waiting for the first keyframe.
    #[default]
    Idle,
    Recording,
    /// Writing failed; see `last_error`. Retried every few seconds.
    Error,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Idle => "idle",
            RecordState::Recording => "recording",
            RecordState::Error => "error",
        }
    }
}

/// The recorder's state for `/api/status` and `/metrics`. Totals survive
/// settings changes (one status for the daemon's life).
#[derive(Debug, Clone, Default)]
pub struct RecordStatus {
    pub enabled: bool,
    pub state: RecordState,
    pub dir: Option<PathBuf>,
    /// Final name of the file being written (on disk with `.part` until closed).
    pub file: Option<String>,
    pub file_bytes: u64,
    /// Recordings in the directory besides the current file, and their size.
    pub files_kept: u64,
    pub kept_bytes: u64,
    pub bytes_written: u64,
    pub files_written: u64,
    /// Frames written (video; audio rides along).
    pub frames_written: u64,
    pub files_pruned: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// A recording kept in the directory.
#[derive(Debug, Clone)]
struct Kept {
    path: PathBuf,
    bytes: u64,
}

/// The file being written.
struct Current {
    /// `NAME.ts.part` on disk.
    part: PathBuf,
    /// `NAME.ts`, what it becomes when closed.
    name: String,
    file: File,
    /// Bytes of whole frames written.
    bytes: u64,
    first_dts: Ticks90k,
    epoch: u32,
    muxer: ProgramMuxer,
}

/// Turns frames into files. All of the recorder's decisions live here; the
/// sink thread only feeds it.
pub struct Recorder {
    settings: RecordSettings,
    clock: SharedClock,
    status: Arc<Mutex<RecordStatus>>,
    current: Option<Current>,
    /// Oldest first; does not include the current file.
    kept: Vec<Kept>,
    /// After a failure no file is opened before this time.
    retry_at_ns: Option<u64>,
    buf: Vec<u8>,
}

impl Recorder {
    pub fn new(
        settings: RecordSettings,
        clock: SharedClock,
        status: Arc<Mutex<RecordStatus>>,
    ) -> Self {
        {
            let mut st = lock(&status);
            st.enabled = true;
            st.state = RecordState::Idle;
            st.dir = Some(settings.dir.clone());
            st.file = None;
            st.file_bytes = 0;
            st.last_error = None;
        }
        Recorder {
            settings,
            clock,
            status,
            current: None,
            kept: Vec::new(),
            retry_at_ns: None,
            buf: Vec::with_capacity(256 * 1024),
        }
    }

    /// Takes the next frame from the bus.
    pub fn push(&mut self, f: &EncodedFrame) {
        if f.is_audio() {
            // Into the file being written; files start and end at video.
            if let Err(e) = self.write(f) {
                self.cut_short();
                self.failed(e);
            }
            return;
        }
        if let Some(c) = &self.current {
            let restarted = c.epoch != f.epoch;
            let long_enough = f.dts.saturating_sub(c.first_dts) >= self.settings.segment;
            let big = c.bytes >= self.settings.keep_bytes / 2;
            if restarted || f.keyframe && (long_enough || big) {
                self.close();
            }
        }
        if self.current.is_none() {
            if !f.keyframe {
                return; // a file starts decodable, at a keyframe
            }
            let now = self.clock.monotonic_ns();
            if self.retry_at_ns.is_some_and(|t| now < t) {
                return;
            }
            if let Err(e) = self.open(f) {
                self.failed(e);
                return;
            }
        }
        if let Err(e) = self.write(f) {
            self.cut_short();
            self.failed(e);
            return;
        }
        if let Err(e) = self.prune() {
            self.note_error(e);
        }
    }

    /// Closes the file being written (recording stops or settings change).
    pub fn finish(&mut self) {
        self.close();
        lock(&self.status).state = RecordState::Idle;
    }

    fn open(&mut self, f: &EncodedFrame) -> Result<(), RecordError> {
        let dir = &self.settings.dir;
        std::fs::create_dir_all(dir).map_err(|e| RecordError::Dir(dir.clone(), e))?;
        self.kept = scan(dir).map_err(|e| RecordError::Dir(dir.clone(), e))?;
        let stem = file_stem(f.wall_ms);
        let mut last_err = None;
        for n in 1..=100u32 {
            let name = if n == 1 {
                format!("{stem}.ts")
            } else {
                format!("{stem}-{n}.ts")
            };
            let part = dir.join(format!("{name}{PART}"));
            if dir.join(&name).exists() {
                continue;
            }
            match OpenOptions::new().write(true).create_new(true).open(&part) {
                Ok(file) => {
                    self.current = Some(Current {
                        part,
                        name: name.clone(),
                        file,
                        bytes: 0,
                        first_dts: f.dts,
                        epoch: f.epoch,
                        muxer: ProgramMuxer::new(self.settings.audio),
                    });
                    self.retry_at_ns = None;
                    let mut st = lock(&self.status);
                    st.state = RecordState::Recording;
                    st.file = Some(name);
                    st.file_bytes = 0;
                    st.last_error = None;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    last_err = Some(RecordError::Create(part, e));
                    break;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| {
            RecordError::Create(
                dir.join(format!("{stem}.ts")),
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "100 files of that second exist",
                ),
            )
        }))
    }

    fn write(&mut self, f: &EncodedFrame) -> Result<(), RecordError> {
        let Some(c) = &mut self.current else {
            return Ok(());
        };
        self.buf.clear();
        c.muxer.write(f, &mut self.buf);
        c.file
            .write_all(&self.buf)
            .map_err(|e| RecordError::Write(c.part.clone(), e))?;
        c.bytes += self.buf.len() as u64;
        let mut st = lock(&self.status);
        st.file_bytes = c.bytes;
        st.bytes_written += self.buf.len() as u64;
        st.frames_written += u64::from(!f.is_audio());
        Ok(())
    }

    /// After a failed write: drops the partial frame and finishes what was
    /// written (a shorter file that ends cleanly), or leaves the `.part`.
    fn cut_short(&mut self) {
        let truncated = self
            .current
            .as_ref()
            .is_some_and(|c| c.file.set_len(c.bytes).is_ok());
        if truncated {
            self.close();
        } else {
            self.current = None;
        }
    }

    /// fsync, rename `NAME.ts.part` → `NAME.ts`, fsync the directory. An
    /// empty file is removed instead.
    fn close(&mut self) {
        let Some(c) = self.current.take() else {
            return;
        };
        {
            let mut st = lock(&self.status);
            st.file = None;
            st.file_bytes = 0;
            if st.state == RecordState::Recording {
                st.state = RecordState::Idle;
            }
        }
        if c.bytes == 0 {
            drop(c.file);
            let _ = std::fs::remove_file(&c.part);
            return;
        }
        let done = self.settings.dir.join(&c.name);
        let result = c
            .file
            .sync_all()
            .and_then(|()| std::fs::rename(&c.part, &done))
            .map_err(|e| RecordError::Finish(c.part.clone(), e));
        match result {
            Ok(()) => {
                // The rename is durable once the directory is on disk.
                if let Ok(d) = File::open(&self.settings.dir) {
                    let _ = d.sync_all();
                }
                self.kept.push(Kept {
                    path: done,
                    bytes: c.bytes,
                });
                lock(&self.status).files_written += 1;
            }
            // The .part stays (and is pruned like any old recording).
            Err(e) => self.failed(e),
        }
        self.update_kept();
    }

    /// Deletes the oldest recordings while they and the current file hold
    /// more than `keep_bytes`.
    fn prune(&mut self) -> Result<(), RecordError> {
        let current = self.current.as_ref().map_or(0, |c| c.bytes);
        let mut result = Ok(());
        while self.kept.iter().map(|k| k.bytes).sum::<u64>() + current > self.settings.keep_bytes
            && !self.kept.is_empty()
        {
            let oldest = self.kept.remove(0);
            match std::fs::remove_file(&oldest.path) {
                Ok(()) => lock(&self.status).files_pruned += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => result = Err(RecordError::Prune(oldest.path, e)),
            }
        }
        self.update_kept();
        result
    }

    fn update_kept(&self) {
        let mut st = lock(&self.status);
        st.files_kept = self.kept.len() as u64;
        st.kept_bytes = self.kept.iter().map(|k| k.bytes).sum();
    }

    /// Stops writing until the retry time and says why.
    fn failed(&mut self, e: RecordError) {
        self.current = None;
        self.retry_at_ns = Some(self.clock.monotonic_ns() + RETRY_NS);
        let mut st = lock(&self.status);
        st.state = RecordState::Error;
        st.file = None;
        st.file_bytes = 0;
        st.errors += 1;
        st.last_error = Some(e.to_string());
    }

    /// A problem that does not stop the recording (an old file that could
    /// not be deleted).
    fn note_error(&self, e: RecordError) {
        let mut st = lock(&self.status);
        st.errors += 1;
        st.last_error = Some(e.to_string());
    }
}

/// `roomcast-20261125T041500Z` for the Unix time `wall_ms` (UTC).
fn file_stem(wall_ms: u64) -> String {
    // "2026-11-25T04:15:00.000Z" → "20261125T041500Z"
    let t = roomcast_media::hls::format_program_date_time(wall_ms);
    let digits: String = t
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{PREFIX}{digits}Z")
}

/// The recordings in `dir` (finished and `.part`), oldest first: by
/// modification time, then name.
fn scan(dir: &Path) -> io::Result<Vec<Kept>> {
    let mut found: Vec<(SystemTime, String, Kept)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours =
            name.starts_with(PREFIX) && (name.ends_with(".ts") || name.ends_with(".ts.part"));
        let Ok(meta) = entry.metadata() else { continue };
        if !ours || !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let kept = Kept {
            path: entry.path(),
            bytes: meta.len(),
        };
        found.push((mtime, name, kept));
    }
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(found.into_iter().map(|(_, _, k)| k).collect())
}

/// The recorder thread: runs until its queue is closed, then closes the file.
pub fn run_sink(queue: Arc<SinkQueue>, mut recorder: Recorder) {
    // Start now rather than up to a GOP later.
    queue.request_keyframe();
    queue.run_until_closed(|f| recorder.push(&f));
    recorder.finish();
}

/// The recorder as an output kind: one output, configured by `[record]`,
/// started, stopped or restarted when those settings change, without
/// touching the pipeline.
pub struct Record {
    data_dir: PathBuf,
    /// One status for the daemon's life, so totals survive settings changes.
    status: Arc<Mutex<RecordStatus>>,
}

impl Record {
    pub fn new(data_dir: &Path) -> Self {
        Record {
            data_dir: data_dir.to_path_buf(),
            status: Arc::default(),
        }
    }
}

impl OutputKind for Record {
    type Settings = RecordSettings;
    type Status = RecordStatus;
    const KIND: &'static str = "record";
    /// 10 s at 30 fps: an SD card can pause for a second or more while it
    /// erases.
    const QUEUE_FRAMES: usize = 300;
    /// The file being written is finished (fsynced and renamed) before a
    /// new recorder starts or the daemon exits, so the next recorder never
    /// prunes a file still being written.
    const STOP_WAIT: Duration = STOP_WAIT;

    /// There is one recorder: its queue is just `record`.
    fn queue_name(_: &str) -> String {
        Self::KIND.into()
    }

    fn wanted(&self, cfg: &ValidConfig) -> Vec<Wanted<RecordSettings>> {
        let settings = RecordSettings::of(cfg, &self.data_dir);
        vec![Wanted {
            order: None,
            label: settings.dir.display().to_string(),
            enabled: cfg.get().record.enabled,
            rendition: cfg.get().record.rendition,
            settings,
        }]
    }

    fn idle_status(&self, _: &RecordSettings, _: State) -> RecordStatus {
        lock(&self.status).clone()
    }

    fn status_cell(&self, _: &RecordSettings, state: State) -> Arc<Mutex<RecordStatus>> {
        if state == State::Disabled {
            let mut st = lock(&self.status);
            (st.enabled, st.state, st.file, st.file_bytes) = (false, RecordState::Idle, None, 0);
        }
        self.status.clone()
    }

    fn run(&self, settings: RecordSettings, ctx: Ctx<RecordStatus>) {
        let recorder = Recorder::new(settings, ctx.clock.clone(), ctx.status.clone());
        run_sink(ctx.queue.clone(), recorder);
    }

    fn common(s: &RecordStatus) -> Common {
        Common {
            state: match s.state {
                RecordState::Idle => State::Idle,
                RecordState::Recording => State::Recording,
                RecordState::Error => State::Error,
            },
            peer: None,
            bytes_sent: s.bytes_written,
            send_rate_bps: 0.0,
            frames_sent: s.frames_written,
            reconnects: 0,
            last_error: s.last_error.clone(),
        }
    }

    fn set_error(s: &mut RecordStatus, error: String) {
        s.state = RecordState::Error;
        s.last_error = Some(error);
    }

    fn extra_json(s: &RecordStatus, out: &mut Map<String, Value>) {
        let extra = json!({
            "dir": s.dir.as_ref().map(|d| d.display().to_string()),
            "file": s.file,
            "file_bytes": s.file_bytes,
            "files_kept": s.files_kept,
            "kept_bytes": s.kept_bytes,
            "bytes_written": s.bytes_written,
            "files_written": s.files_written,
            "files_pruned": s.files_pruned,
            "errors": s.errors,
        });
        if let Value::Object(m) = extra {
            out.extend(m);
        }
        out.insert("enabled".into(), Value::Bool(s.enabled));
    }

    fn write_metrics(rows: &[(String, RecordStatus)], out: &mut String) {
        let Some((_, s)) = rows.first() else { return };
        #[rustfmt::skip]
        let rows: [(&str, &str, &str, f64); 7] = [
            ("roomcast_record_recording", "gauge", "1 while a recording file is being written.", f64::from(u8::from(s.state == RecordState::Recording))),
            ("roomcast_record_bytes_written_total", "counter", "MPEG-TS bytes written to recordings.", s.bytes_written as f64),
            ("roomcast_record_files_written_total", "counter", "Recording files finished (fsynced and renamed).", s.files_written as f64),
            ("roomcast_record_files_pruned_total", "counter", "Old recordings deleted to stay within keep_mb.", s.files_pruned as f64),
            ("roomcast_record_errors_total", "counter", "Recording failures (full disk, unwritable directory).", s.errors as f64),
            ("roomcast_record_files_kept", "gauge", "Recordings in the directory besides the one being written.", s.files_kept as f64),
            ("roomcast_record_kept_bytes", "gauge", "Bytes of those recordings.", s.kept_bytes as f64),
        ];
        for (name, kind, help, v) in rows {
            write_family(out, (name, kind, help), [(String::new(), v)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::SimClock;

    /// 2026-11-25T04:15:00Z.
    const T0_MS: u64 = 1_795_580_100_000;
    const FPS: u64 = 25;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("roomcast-rec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Frame `n` of a 25 fps stream with a keyframe every `gop` frames and
    /// `size` bytes of picture.
    fn frame(n: u64, gop: u64, size: usize, epoch: u32) -> EncodedFrame {
        let key = n.is_multiple_of(gop);
        let mut data = vec![0, 0, 0, 1, if key { 0x65 } else { 0x41 }];
        data.resize(size.max(5), 0x88);
        EncodedFrame {
            capture_ns: n * 40_000_000,
            wall_ms: T0_MS + n * 1000 / FPS,
            pts: Ticks90k(n * 3600),
            dts: Ticks90k(n * 3600),
            duration: Ticks90k(3600),
            keyframe: key,
            data,
            epoch,
            width: 16,
            height: 16,
            rendition: 0,
            track: crate::base::frame::Track::Video,
        }
    }

    fn recorder(d: &Path, segment_s: u64, keep_bytes: u64) -> (Recorder, Arc<SimClock>) {
        let clock = Arc::new(SimClock::new(T0_MS));
        let settings = RecordSettings {
            dir: d.to_path_buf(),
            segment: Ticks90k(segment_s * Ticks90k::HZ),
            keep_bytes,
            audio: None,
        };
        let r = Recorder::new(settings, clock.clone(), Arc::default());
        (r, clock)
    }

    /// Pushes frames `range` (see [`frame`]) into `r`.
    fn push_all(r: &mut Recorder, range: std::ops::Range<u64>, gop: u64, bytes: usize, epoch: u32) {
        for n in range {
            r.push(&frame(n, gop, bytes, epoch));
        }
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Decoded (PTS of every PES start) from a TS file, and its PAT count.
    fn pes_pts(bytes: &[u8]) -> (Vec<u64>, usize) {
        let (mut pts, mut pats) = (Vec::new(), 0);
        for p in bytes.chunks(188) {
            assert_eq!((p.len(), p[0]), (188, 0x47));
            let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            let start = p[1] & 0x40 != 0;
            let mut i = 4;
            if p[3] & 0x20 != 0 {
                i += 1 + usize::from(p[4]);
            }
            if pid == 0 && start {
                pats += 1;
            }
            if pid == 0x100 && start && p[i..i + 3] == [0, 0, 1] {
                let h = &p[i + 9..i + 14];
                let v = (u64::from(h[0] >> 1) & 7) << 30
                    | u64::from(h[1]) << 22
                    | u64::from(h[2] >> 1) << 15
                    | u64::from(h[3]) << 7
                    | u64::from(h[4] >> 1);
                pts.push(v);
            }
        }
        (pts, pats)
    }

    #[test]
    fn files_rotate_at_the_first_keyframe_after_the_segment_and_are_renamed() {
        let d = dir("rotate");
        let (mut r, _clock) = recorder(&d, 60, 1 << 40);
        // Starts at a keyframe: frames before the first one are not written.
        r.push(&frame(39, 40, 200, 0));
        assert!(names(&d).is_empty());
        // 70 s at 25 fps, GOP 40 (1.6 s). The file starts at frame 40
        // (1.6 s); 60 s later is frame 1540, and the next keyframe is
        // frame 1560 (62.4 s).
        push_all(&mut r, 40..1559, 40, 200, 0);
        // Still one file, being written as .part.
        assert_eq!(names(&d), ["roomcast-20261125T041501Z.ts.part"]);
        push_all(&mut r, 1559..1750, 40, 200, 0);
        assert_eq!(
            names(&d),
            [
                "roomcast-20261125T041501Z.ts",
                "roomcast-20261125T041602Z.ts.part"
            ]
        );
        let first = std::fs::read(d.join("roomcast-20261125T041501Z.ts")).unwrap();
        let (pts, pats) = pes_pts(&first);
        // Frames 40..=1559, continuous, PAT/PMT at every keyframe.
        assert_eq!(pts.len(), 1520);
        assert_eq!(pts[0], 40 * 3600);
        assert!(pts.windows(2).all(|w| w[1] == w[0] + 3600));
        assert_eq!(pats, 1520 / 40);
        let st = lock(&r.status).clone();
        assert_eq!(st.state, RecordState::Recording);
        assert_eq!(st.file.as_deref(), Some("roomcast-20261125T041602Z.ts"));
        assert_eq!((st.files_written, st.files_kept), (1, 1));
        assert_eq!(st.kept_bytes, first.len() as u64);
        // Stopping finishes the second file too.
        r.finish();
        assert_eq!(
            names(&d),
            [
                "roomcast-20261125T041501Z.ts",
                "roomcast-20261125T041602Z.ts"
            ]
        );
        let second = std::fs::read(d.join("roomcast-20261125T041602Z.ts")).unwrap();
        assert_eq!(pes_pts(&second).0.len(), 1750 - 1560);
        assert_eq!(lock(&r.status).state, RecordState::Idle);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_encoder_restart_starts_a_new_file_at_its_first_keyframe() {
        let d = dir("epoch");
        let (mut r, _clock) = recorder(&d, 600, 1 << 40);
        push_all(&mut r, 0..30, 25, 100, 0);
        // New epoch, same second on the wall clock: a suffixed name.
        for n in 1010..1040 {
            let mut f = frame(n, 25, 100, 1);
            f.wall_ms = T0_MS + 900;
            r.push(&f);
        }
        r.finish();
        assert_eq!(
            names(&d),
            [
                "roomcast-20261125T041500Z-2.ts",
                "roomcast-20261125T041500Z.ts"
            ]
        );
        let second = std::fs::read(d.join("roomcast-20261125T041500Z-2.ts")).unwrap();
        // Frames 1010..1014 came before the new epoch's first keyframe.
        assert_eq!(pes_pts(&second).0.first(), Some(&(1025 * 3600)));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn keep_limit_deletes_the_oldest_recordings_first() {
        let d = dir("prune");
        // Someone else's file and a .part left by a power cut.
        std::fs::write(d.join("notes.txt"), vec![0u8; 50_000]).unwrap();
        let stale = d.join("roomcast-20261124T000000Z.ts.part");
        std::fs::write(&stale, vec![0u8; 10_000]).unwrap();
        let old = SystemTime::now() - Duration::from_secs(86_400);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // 2 s files of 50 frames × ~1.1 kB ≈ 57 kB each; keep 200 kB.
        let (mut r, _clock) = recorder(&d, 2, 200_000);
        push_all(&mut r, 0..50 * 8, 25, 1000, 0);
        let files = names(&d);
        // The stale .part went first, then the oldest finished files.
        assert!(!files.contains(&"roomcast-20261124T000000Z.ts.part".to_string()));
        assert!(files.contains(&"notes.txt".to_string()), "{files:?}");
        assert_eq!(
            files,
            [
                "notes.txt",
                "roomcast-20261125T041510Z.ts",
                "roomcast-20261125T041512Z.ts",
                "roomcast-20261125T041514Z.ts.part",
            ]
        );
        let st = lock(&r.status).clone();
        let on_disk: u64 = files
            .iter()
            .filter(|f| f.starts_with(PREFIX))
            .map(|f| std::fs::metadata(d.join(f)).unwrap().len())
            .sum();
        assert!(on_disk <= 200_000, "{on_disk}");
        assert_eq!(st.files_kept, 2);
        assert_eq!(st.files_pruned, 6); // the .part and 5 finished files
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn unwritable_directory_is_an_error_then_recovers() {
        let d = dir("unwritable");
        // A file where the directory should be: fails even for root.
        let blocker = d.join("usb");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let (mut r, clock) = recorder(&blocker.join("rec"), 600, 1 << 40);
        r.push(&frame(0, 25, 100, 0));
        let st = lock(&r.status).clone();
        assert_eq!(st.state, RecordState::Error);
        assert!(
            st.last_error
                .as_deref()
                .is_some_and(|e| e.contains("cannot use the directory")),
            "{:?}",
            st.last_error
        );
        // Fixed, but the next attempt waits for the retry time.
        std::fs::remove_file(&blocker).unwrap();
        clock.advance(Duration::from_secs(1));
        r.push(&frame(25, 25, 100, 0));
        assert_eq!(lock(&r.status).state, RecordState::Error);
        assert!(!blocker.exists());
        clock.advance(Duration::from_secs(2));
        r.push(&frame(50, 25, 100, 0));
        let st = lock(&r.status).clone();
        assert_eq!(st.state, RecordState::Recording);
        assert_eq!(st.last_error, None);
        assert_eq!(st.errors, 1);
        assert_eq!(
            names(&blocker.join("rec")),
            ["roomcast-20261125T041502Z.ts.part"]
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_stops_writing_at_a_whole_frame_then_retries() {
        // /dev/full answers every write with ENOSPC: stand in for a full
        // card by pointing the current file at it.
        let d = dir("full");
        let (mut r, clock) = recorder(&d, 600, 1 << 40);
        push_all(&mut r, 0..10, 25, 100, 0);
        let good = lock(&r.status).file_bytes;
        let real = std::mem::replace(
            &mut r.current.as_mut().unwrap().file,
            File::options().write(true).open("/dev/full").unwrap(),
        );
        r.push(&frame(10, 25, 100, 0));
        let st = lock(&r.status).clone();
        assert_eq!(st.state, RecordState::Error);
        assert!(
            st.last_error
                .as_deref()
                .unwrap()
                .contains("the disk is full"),
            "{:?}",
            st.last_error
        );
        // /dev/full cannot be truncated, so that file stays a .part; a real
        // file is cut back to its whole frames.
        drop(real);
        assert_eq!(names(&d), ["roomcast-20261125T041500Z.ts.part"]);
        assert_eq!(
            std::fs::metadata(d.join("roomcast-20261125T041500Z.ts.part"))
                .unwrap()
                .len(),
            good
        );
        // Writing resumes at a keyframe after the retry time.
        clock.advance(Duration::from_secs(3));
        r.push(&frame(25, 25, 100, 0));
        assert_eq!(lock(&r.status).state, RecordState::Recording);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn file_names_are_utc_start_times() {
        assert_eq!(file_stem(T0_MS + 59_999), "roomcast-20261125T041559Z");
        assert_eq!(file_stem(0), "roomcast-19700101T000000Z");
    }
}
