//! One framework for every output kind (RTMP, SRT, the recorder, and the
//! kinds to come): what each kind writes is its protocol; starting,
//! restarting what changed, stopping, status and metrics are written here
//! once.
//!
//! * **A kind** implements [`OutputKind`]: which outputs the configuration
//!   asks for ([`OutputKind::wanted`]), how one runs on its own thread
//!   ([`OutputKind::run`], given a [`Ctx`]: its bus queue, its status, a stop
//!   flag and the clock), and how its status reads ([`OutputKind::common`],
//!   [`OutputKind::extra_json`], [`OutputKind::write_metrics`]).
//! * **A [`Manager`]** per kind makes the running outputs match the
//!   configuration: an output whose settings are unchanged keeps running
//!   untouched (its connection, its counters); the others stop or start.
//!   Every running output has its own bounded bus queue, so a slow or dead
//!   one never holds up capture or another output.
//! * **[`Outputs`]** holds one manager per kind; adding a kind is one module
//!   and one line in `sink::outputs`. Its status is one JSON shape for every
//!   kind ([`Common`] plus the kind's own fields), in configuration order.
//! * **Retrying** follows [`crate::base::backoff`], one policy for all.

use crate::base::bus::{FrameBus, SinkQueue};
use crate::base::clock::SharedClock;
use crate::base::frame::SharedFrame;
use crate::base::lock;
use crate::base::stats::{output_label, write_family};
use crate::config::url::OutputUrl;
use crate::config::{Output, ValidConfig};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an output is doing, as `/api/status` shows it. Each kind uses the
/// states that fit it; the words mean the same for every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Configured but `enabled = false`.
    Disabled,
    /// The recorder while recording is off.
    Idle,
    /// Opening a connection (TCP, TLS, an SRT handshake).
    Connecting,
    /// Protocol set-up after connecting (RTMP connect, publish).
    Handshaking,
    /// Waiting for receivers to connect (SRT listener).
    Listening,
    /// On air: an RTMP server accepts the stream.
    Publishing,
    /// On air: at least one SRT receiver gets the stream.
    Sending,
    /// On air: frames are written to a file.
    Recording,
    /// Waiting to retry after a failure.
    Backoff,
    /// Waiting to retry after the peer refused the stream.
    Rejected,
    /// Failing (full disk, unwritable directory); retried.
    Error,
    /// Removed from the configuration, or could not start; the thread ends.
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Disabled => "disabled",
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Handshaking => "handshaking",
            State::Listening => "listening",
            State::Publishing => "publishing",
            State::Sending => "sending",
            State::Recording => "recording",
            State::Backoff => "backoff",
            State::Rejected => "rejected",
            State::Error => "error",
            State::Stopped => "stopped",
        }
    }

    /// The stream leaves the box through this output (the tally is "live").
    pub fn is_live(self) -> bool {
        matches!(self, State::Publishing | State::Sending)
    }
}

/// The figures every output has, with the same meaning for every kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub state: State,
    /// The peer of the current or last connection.
    pub peer: Option<String>,
    /// Bytes handed to the network or written to disk.
    pub bytes_sent: u64,
    /// Bits per second over the last second or so; 0 when not sending.
    pub send_rate_bps: f64,
    /// Frames sent (to at least one receiver).
    pub frames_sent: u64,
    /// Connection attempts after the first (or receivers after the first).
    pub reconnects: u64,
    /// Why the last attempt failed or was refused.
    pub last_error: Option<String>,
}

impl Common {
    pub fn new(state: State) -> Self {
        Common {
            state,
            peer: None,
            bytes_sent: 0,
            send_rate_bps: 0.0,
            frames_sent: 0,
            reconnects: 0,
            last_error: None,
        }
    }
}

/// One output the configuration asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted<S> {
    /// Position in the configuration's `outputs`; `None` for outputs
    /// configured elsewhere (the recorder's `[record]`).
    pub order: Option<usize>,
    /// How it is shown: the URL with its secrets masked, or a directory.
    pub label: String,
    pub enabled: bool,
    /// The ladder rendition it takes (0: the top one).
    pub rendition: u8,
    pub settings: S,
}

/// The entries of the configuration's `outputs` that `pick` takes (it
/// returns their settings), shown by their masked URL.
pub fn wanted_outputs<S>(
    cfg: &ValidConfig,
    pick: impl Fn(&OutputUrl, &Output) -> Option<S>,
) -> Vec<Wanted<S>> {
    cfg.outputs()
        .filter_map(|(order, o, url)| {
            pick(url, o).map(|settings| Wanted {
                order: Some(order),
                label: url.masked(),
                enabled: o.enabled,
                rendition: o.rendition,
                settings,
            })
        })
        .collect()
}

/// What an output's thread gets: its queue, its status, the stop flag and
/// the clock.
pub struct Ctx<St> {
    pub queue: Arc<SinkQueue>,
    pub status: Arc<Mutex<St>>,
    stop: Arc<AtomicBool>,
    pub clock: SharedClock,
}

impl<St> Ctx<St> {
    /// The output was removed or changed: end soon.
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Changes the status under its lock.
    pub fn set<R>(&self, f: impl FnOnce(&mut St) -> R) -> R {
        f(&mut lock(&self.status))
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.monotonic_ns()
    }

    /// Waits until `until_ns` (monotonic) or until stopped, discarding
    /// frames (counted as this output's drops): they would be stale by the
    /// time a connection is up.
    pub fn idle_until(&self, until_ns: u64) {
        while !self.stopped() {
            let now = self.now_ns();
            if now >= until_ns {
                return;
            }
            let wait = Duration::from_nanos(until_ns - now).min(Duration::from_millis(200));
            let _ = self.queue.discard_timeout(wait);
        }
    }

    /// Drops what queued up (during a handshake, say) and asks the encoder
    /// for a keyframe, so a new connection starts at once, not a GOP later.
    pub fn restart_at_keyframe(&self) {
        while self.queue.discard_timeout(Duration::ZERO).is_some() {}
        self.queue.request_keyframe();
    }

    /// The next frame, waiting at most `timeout`.
    pub fn pop(&self, timeout: Duration) -> Option<SharedFrame> {
        self.queue.pop_timeout(timeout)
    }
}

/// One kind of output. See the module documentation.
pub trait OutputKind: Send + Sync + 'static {
    /// What one output runs with; a change restarts it.
    type Settings: Clone + PartialEq + Send + 'static;
    /// Its status, written by its thread.
    type Status: Clone + Send + 'static;
    /// `kind` in the status, the threads' name.
    const KIND: &'static str;
    /// Frames an output may fall behind before the bus drops to the next
    /// keyframe.
    const QUEUE_FRAMES: usize;
    /// How long stopping waits for the thread (the recorder finishes its
    /// file); zero: the thread notices the stop flag and ends by itself.
    const STOP_WAIT: Duration = Duration::ZERO;

    /// Its bus queue's name in `/api/status` `sinks`.
    fn queue_name(label: &str) -> String {
        format!("{} {label}", Self::KIND)
    }

    /// The outputs of this kind `cfg` asks for.
    fn wanted(&self, cfg: &ValidConfig) -> Vec<Wanted<Self::Settings>>;
    /// The status of an output in `state` without a thread (disabled, or
    /// one that could not start, with the reason).
    fn idle_status(&self, settings: &Self::Settings, state: State) -> Self::Status;
    /// The status a new output in `state` writes to; a fresh one unless
    /// the kind keeps totals across restarts (the recorder).
    fn status_cell(&self, settings: &Self::Settings, state: State) -> Arc<Mutex<Self::Status>> {
        Arc::new(Mutex::new(self.idle_status(settings, state)))
    }
    /// Runs one output until `ctx.stopped()` (or its queue closes).
    fn run(&self, settings: Self::Settings, ctx: Ctx<Self::Status>);
    /// The figures every kind has.
    fn common(status: &Self::Status) -> Common;
    /// Records why an output could not start.
    fn set_error(status: &mut Self::Status, error: String);
    /// The kind's own status fields, added to the common ones.
    fn extra_json(_status: &Self::Status, _out: &mut Map<String, Value>) {}
    /// The kind's own Prometheus families, one row per output:
    /// `(label, status)`.
    fn write_metrics(_rows: &[(String, Self::Status)], _out: &mut String) {}
}

/// One configured output and, when it runs, its thread.
struct Running<K: OutputKind> {
    wanted: Wanted<K::Settings>,
    status: Arc<Mutex<K::Status>>,
    stop: Arc<AtomicBool>,
    queue: Option<Arc<SinkQueue>>,
    thread: Option<JoinHandle<()>>,
}

/// Runs the outputs of one kind.
pub struct Manager<K: OutputKind> {
    kind: Arc<K>,
    bus: Arc<FrameBus>,
    clock: SharedClock,
    running: Mutex<Vec<Running<K>>>,
}

impl<K: OutputKind> Manager<K> {
    pub fn new(kind: K, bus: Arc<FrameBus>, clock: SharedClock) -> Self {
        Manager {
            kind: Arc::new(kind),
            bus,
            clock,
            running: Mutex::new(Vec::new()),
        }
    }

    /// A manager for [`Outputs`].
    pub fn boxed(kind: K, bus: &Arc<FrameBus>, clock: &SharedClock) -> Box<dyn AnyManager> {
        Box::new(Manager::new(kind, bus.clone(), clock.clone()))
    }

    pub fn kind(&self) -> &K {
        &self.kind
    }

    /// Makes the running outputs match `cfg`: unchanged ones keep running
    /// untouched; the others stop or start.
    pub fn apply(&self, cfg: &ValidConfig) {
        let mut running = lock(&self.running);
        let mut old = std::mem::take(&mut *running);
        let wanted = self.kind.wanted(cfg);
        // Same settings: keep it (its position may have moved).
        let kept: Vec<Option<Running<K>>> = wanted
            .iter()
            .map(|w| {
                old.iter()
                    .position(|r| {
                        r.wanted.settings == w.settings
                            && r.wanted.enabled == w.enabled
                            && r.wanted.label == w.label
                            && r.wanted.rendition == w.rendition
                    })
                    .map(|i| old.remove(i))
            })
            .collect();
        // The old ones stop before new ones start (a recorder finishes its
        // file before the next one prunes the directory).
        for r in old {
            self.stop(r);
        }
        for (w, k) in wanted.into_iter().zip(kept) {
            running.push(match k {
                Some(mut r) => {
                    r.wanted.order = w.order;
                    r
                }
                None => self.start(w),
            });
        }
    }

    /// Stops every output (at shutdown).
    pub fn stop_all(&self) {
        for r in std::mem::take(&mut *lock(&self.running)) {
            self.stop(r);
        }
    }

    fn stop(&self, mut r: Running<K>) {
        r.stop.store(true, Relaxed);
        if let Some(q) = &r.queue {
            // A closed queue also wakes a thread waiting for frames.
            self.bus.unsubscribe(q);
        }
        let Some(t) = r.thread.take() else { return };
        let deadline = Instant::now() + K::STOP_WAIT;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }

    fn start(&self, wanted: Wanted<K::Settings>) -> Running<K> {
        let state = if wanted.enabled {
            State::Connecting
        } else {
            State::Disabled
        };
        let status = self.kind.status_cell(&wanted.settings, state);
        let stop = Arc::new(AtomicBool::new(false));
        if !wanted.enabled {
            return Running {
                wanted,
                status,
                stop,
                queue: None,
                thread: None,
            };
        }
        let name = K::queue_name(&wanted.label);
        let queue = self
            .bus
            .subscribe_rendition(&name, K::QUEUE_FRAMES, wanted.rendition);
        let ctx = Ctx {
            queue: queue.clone(),
            status: status.clone(),
            stop: stop.clone(),
            clock: self.clock.clone(),
        };
        let kind = self.kind.clone();
        let settings = wanted.settings.clone();
        let thread = std::thread::Builder::new()
            .name(K::KIND.into())
            .spawn(move || kind.run(settings, ctx));
        match thread {
            Ok(t) => Running {
                wanted,
                status,
                stop,
                queue: Some(queue),
                thread: Some(t),
            },
            Err(e) => {
                self.bus.unsubscribe(&queue);
                let mut st = self.kind.idle_status(&wanted.settings, State::Stopped);
                K::set_error(&mut st, format!("cannot start a thread: {e}"));
                Running {
                    wanted,
                    status: Arc::new(Mutex::new(st)),
                    stop,
                    queue: None,
                    thread: None,
                }
            }
        }
    }

    /// Each output's status object, in the order of [`Self::apply`]'s
    /// configuration.
    pub fn status_json(&self) -> Vec<Value> {
        self.rows()
            .iter()
            .map(|(w, s, d)| status_object::<K>(w, s, *d))
            .collect()
    }

    /// The kind's own Prometheus families for its outputs.
    pub fn write_metrics(&self, out: &mut String) {
        let rows: Vec<(String, K::Status)> = self
            .rows()
            .into_iter()
            .map(|(w, s, _)| (output_label(&w.label), s))
            .collect();
        K::write_metrics(&rows, out);
    }

    /// A snapshot of every output: `(wanted, status, frames dropped)`.
    fn rows(&self) -> Vec<(Wanted<K::Settings>, K::Status, u64)> {
        lock(&self.running)
            .iter()
            .map(|r| {
                let dropped = r.queue.as_ref().map_or(0, |q| q.stats().dropped);
                (r.wanted.clone(), lock(&r.status).clone(), dropped)
            })
            .collect()
    }
}

/// The status object of one output: the common fields, then the kind's.
fn status_object<K: OutputKind>(w: &Wanted<K::Settings>, s: &K::Status, dropped: u64) -> Value {
    let c = K::common(s);
    let mut v = json!({
        "kind": K::KIND,
        "url": w.label,
        "enabled": w.enabled,
        "rendition": w.rendition,
        "state": c.state.as_str(),
        "peer": c.peer,
        "bytes_sent": c.bytes_sent,
        "send_rate_kbps": (c.send_rate_bps / 100.0).round() / 10.0,
        "frames_sent": c.frames_sent,
        "reconnects": c.reconnects,
        "dropped": dropped,
        "last_error": c.last_error,
    });
    if let Value::Object(m) = &mut v {
        K::extra_json(s, m);
    }
    v
}

/// One output's status, whatever its kind.
pub struct Row {
    /// Position in the configuration's `outputs`, if it is one of them.
    pub order: Option<usize>,
    /// `{output="…"}`, the Prometheus label.
    pub label: String,
    /// The status object: the common fields, then the kind's.
    pub json: Value,
    pub common: Common,
    /// Frames its queue dropped.
    pub dropped: u64,
}

/// What [`Outputs`] needs of a manager, whatever its kind.
pub trait AnyManager: Send + Sync {
    fn apply(&self, cfg: &ValidConfig);
    fn stop_all(&self);
    fn status(&self) -> Vec<Row>;
    fn write_metrics(&self, out: &mut String);
}

impl<K: OutputKind> AnyManager for Manager<K> {
    fn apply(&self, cfg: &ValidConfig) {
        Manager::apply(self, cfg)
    }

    fn stop_all(&self) {
        Manager::stop_all(self)
    }

    fn status(&self) -> Vec<Row> {
        self.rows()
            .iter()
            .map(|(w, s, d)| Row {
                order: w.order,
                label: output_label(&w.label),
                json: status_object::<K>(w, s, *d),
                common: K::common(s),
                dropped: *d,
            })
            .collect()
    }

    fn write_metrics(&self, out: &mut String) {
        Manager::write_metrics(self, out)
    }
}

/// Every output of the daemon, one manager per kind.
pub struct Outputs {
    managers: Vec<Box<dyn AnyManager>>,
}

impl Outputs {
    /// One manager per kind (see `sink::outputs`, where kinds are listed).
    pub fn new(managers: Vec<Box<dyn AnyManager>>) -> Self {
        Outputs { managers }
    }

    /// Makes every kind's running outputs match `cfg`.
    pub fn apply(&self, cfg: &ValidConfig) {
        for m in &self.managers {
            m.apply(cfg);
        }
    }

    /// Stops every output (SIGTERM): recordings are finished first.
    pub fn stop_all(&self) {
        for m in self.managers.iter().rev() {
            m.stop_all();
        }
    }

    /// The outputs configured in `outputs`, in configuration order, then
    /// the ones configured elsewhere (the recorder).
    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self.managers.iter().flat_map(|m| m.status()).collect();
        rows.sort_by_key(|r| r.order.unwrap_or(usize::MAX));
        rows
    }

    /// The status objects of the outputs configured in `outputs`, in
    /// configuration order, and of the ones configured elsewhere.
    pub fn status_json(&self) -> (Vec<Value>, Vec<Value>) {
        let (ordered, others): (Vec<Row>, Vec<Row>) =
            self.rows().into_iter().partition(|r| r.order.is_some());
        let json = |rows: Vec<Row>| rows.into_iter().map(|r| r.json).collect();
        (json(ordered), json(others))
    }

    /// Prometheus lines of every output (text format 0.0.4): the families
    /// every kind shares, then each kind's own.
    pub fn write_metrics(&self, out: &mut String) {
        let rows: Vec<Row> = self
            .rows()
            .into_iter()
            .filter(|r| r.order.is_some())
            .collect();
        let common: Vec<(String, Common)> = rows
            .iter()
            .map(|r| (r.label.clone(), r.common.clone()))
            .collect();
        write_common_families(out, "roomcast_output", "an upstream output", &common);
        #[rustfmt::skip]
        write_family(out, ("roomcast_output_dropped_frames_total", "counter", "Frames an output's queue dropped (it fell behind or waited to reconnect)."), rows.iter().map(|r| (r.label.clone(), r.dropped as f64)));
        #[rustfmt::skip]
        write_family(out, ("roomcast_output_publishing", "gauge", "1 while an output is on air (publishing or sending)."), rows.iter().map(|r| (r.label.clone(), f64::from(u8::from(r.common.state.is_live())))));
        for m in &self.managers {
            m.write_metrics(out);
        }
    }
}

/// The families of the figures every output has, named `PREFIX_…`, one
/// sample per `(label, figures)`.
pub fn write_common_families(
    out: &mut String,
    prefix: &str,
    what: &str,
    rows: &[(String, Common)],
) {
    type Figure = (&'static str, &'static str, &'static str, fn(&Common) -> f64);
    #[rustfmt::skip]
    let figures: [Figure; 4] = [
        ("bytes_sent_total", "counter", "Bytes sent to", |c| c.bytes_sent as f64),
        ("frames_sent_total", "counter", "Frames sent to", |c| c.frames_sent as f64),
        ("reconnects_total", "counter", "Connection attempts after the first (or receivers accepted after the first) of", |c| c.reconnects as f64),
        ("send_rate_bits_per_second", "gauge", "Measured send rate of", |c| c.send_rate_bps),
    ];
    for (name, kind, help, f) in figures {
        let (name, help) = (format!("{prefix}_{name}"), format!("{help} {what}."));
        write_family(
            out,
            (&name, kind, &help),
            rows.iter().map(|(l, c)| (l.clone(), f(c))),
        );
    }
}

/// A manager of `kind` on a fresh bus with the real clock, for the output
/// kinds' tests.
#[cfg(test)]
pub(crate) fn test_manager<K: OutputKind>(kind: K) -> (Arc<FrameBus>, Manager<K>) {
    let bus = Arc::new(FrameBus::new());
    let clock: SharedClock = Arc::new(crate::base::clock::RealClock::new());
    (bus.clone(), Manager::new(kind, bus, clock))
}

/// A configuration with these outputs (URL, enabled), with or without the
/// sound track, for the output kinds' tests.
#[cfg(test)]
pub(crate) fn config_with_outputs(outputs: &[(&str, bool)], audio: bool) -> ValidConfig {
    let mut c = crate::config::Config {
        outputs: outputs
            .iter()
            .map(|(u, e)| crate::config::Output {
                url: u.to_string(),
                enabled: *e,
                ca_file: None,
                rendition: 0,
            })
            .collect(),
        ..Default::default()
    };
    if !audio {
        c.audio.source = "none".into();
    }
    c.validate().unwrap()
}

impl Drop for Outputs {
    fn drop(&mut self) {
        self.stop_all();
    }
}
