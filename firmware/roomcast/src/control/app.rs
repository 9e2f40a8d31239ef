//! The running daemon's shared state: configuration, pipeline, sinks and
//! counters, and the operations the HTTP API performs on them.

use crate::base::bus::FrameBus;
use crate::base::clock::SharedClock;
use crate::base::lock;
use crate::base::stats::Stats;
use crate::config::url::{mask_url, OutputUrl};
use crate::config::{self, Config, ConfigError, FieldError, Output, ValidConfig};
use crate::encoder::EncodeError;
use crate::pipeline::Pipeline;
use crate::sink::served::Renditions;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub struct App {
    pub clock: SharedClock,
    pub stats: Arc<Stats>,
    pub bus: Arc<FrameBus>,
    pub pipeline: Pipeline,
    /// Every output (RTMP, SRT, the recorder), one thread and bus queue each.
    pub outputs: crate::sink::output::Outputs,
    /// The packagers the box serves (HLS TS and LL-HLS), per rendition.
    pub renditions: Renditions,
    /// The configuration in effect: the stored file plus command-line
    /// overrides (until an API change replaces them) and command-line
    /// outputs (`run_outputs`, kept by every change).
    pub config: Mutex<ValidConfig>,
    pub config_path: PathBuf,
    /// Admin password, sessions and API tokens.
    pub auth: crate::control::auth::Auth,
    pub started_ns: u64,
    /// Responses by status class (index = status / 100).
    pub http_responses: [AtomicU64; 6],
    /// The HTTPS certificate, when HTTPS is on.
    pub tls: Option<Arc<crate::control::tls::CertStore>>,
    /// The port HTTPS listens on (0: off), set once it does.
    pub https_port: std::sync::atomic::AtomicU16,
}

/// Why a configuration change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The body does not have the configuration's shape (unknown key, wrong type).
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Save(#[from] ConfigError),
    #[error(transparent)]
    Encoder(#[from] EncodeError),
}

impl App {
    /// An app whose pipeline has not started, with no devices and no HTTPS:
    /// for tests of the routes and operations, without sockets.
    pub fn idle(
        clock: SharedClock,
        cfg: ValidConfig,
        data_dir: &std::path::Path,
        config_path: PathBuf,
    ) -> App {
        let bus = Arc::new(FrameBus::new());
        let stats = Arc::new(Stats::default());
        let (renditions, _replies) = Renditions::start(bus.clone(), clock.clone(), &cfg);
        App {
            started_ns: clock.monotonic_ns(),
            pipeline: Pipeline::new(
                clock.clone(),
                bus.clone(),
                stats.clone(),
                crate::v4l2::no_devices(),
            ),
            outputs: crate::sink::outputs(&bus, &clock, data_dir),
            renditions,
            clock,
            stats,
            bus,
            config: Mutex::new(cfg),
            config_path,
            auth: crate::control::auth::Auth::new(data_dir),
            http_responses: Default::default(),
            tls: None,
            https_port: Default::default(),
        }
    }

    /// The configuration as the API shows it (see [`shown`]).
    pub fn config_json(&self) -> Value {
        shown(&lock(&self.config))
    }

    /// Applies a change: `patch`, a JSON object, is merged over the current
    /// configuration key by key (so a client sends only what it changes; a
    /// list such as `outputs` is replaced whole), checked, saved, and then
    /// the pipeline restarts if the picture or encoder settings changed.
    /// Any error, a body of the wrong shape first ([`config::check_shape`]),
    /// leaves the stored file and the running stream as they were.
    /// Command-line outputs keep running and stay out of the file.
    pub fn put_config(&self, patch: Value) -> Result<(), ApplyError> {
        let mut current = lock(&self.config);
        let patch = prepared(patch, &current)?;
        let valid = patched(current.get(), patch.clone())?;
        if valid == *current {
            return Ok(());
        }
        // The file gets the patch applied to what it holds, not to what runs:
        // command-line overrides are for one run and never written back.
        let stored = config::load(&self.config_path)?;
        let before = std::fs::read(&self.config_path).ok();
        let to_save = patched(stored.get(), patch.clone())?;
        config::save_named(&self.config_path, &to_save, &patch)?;
        self.renditions.apply(&valid);
        if let Err(e) = self.apply_pipeline(&current, &valid) {
            // Put the old file back, byte for byte, so the box boots into
            // what it did.
            let _ = match &before {
                Some(bytes) => config::restore(&self.config_path, bytes),
                None => std::fs::remove_file(&self.config_path).map_err(|source| {
                    config::ConfigError::Write {
                        path: self.config_path.clone(),
                        source,
                    }
                }),
            };
            self.renditions.apply(&current);
            return Err(e.into());
        }
        *current = valid;
        self.outputs.apply(&current);
        Ok(())
    }

    /// The stored configuration as a TOML file for download; stream keys and
    /// passphrases masked unless `secrets` (a masked file imports back
    /// without losing them, as long as the outputs are unchanged).
    pub fn export_config(&self, secrets: bool) -> Result<String, ApplyError> {
        let mut cfg = config::load(&self.config_path)?.get().clone();
        if !secrets {
            for o in &mut cfg.outputs {
                o.url = mask_url(&o.url);
            }
        }
        toml::to_string_pretty(&cfg).map_err(|e| ApplyError::Shape(e.to_string()))
    }

    /// Replaces the whole configuration with an exported file's contents:
    /// parsed strictly (tables as tables: [`config::check_shape`]), checked,
    /// saved and applied like a PUT. A masked secret is put back only for
    /// the current output it names, else the import is refused.
    pub fn import_config(&self, text: &str) -> Result<(), ApplyError> {
        let shape = |e: toml::de::Error| ApplyError::Shape(e.message().to_string());
        let raw: toml::Table = toml::from_str(text).map_err(shape)?;
        config::check_shape(&serde_json::to_value(raw).unwrap_or_default())?;
        let cfg: Config = toml::from_str(text).map_err(shape)?;
        // Every key is present (the outputs list too, empty or not), so
        // the merge is a replacement.
        let patch = serde_json::to_value(&cfg).map_err(|e| ApplyError::Shape(e.to_string()))?;
        self.put_config(patch)
    }

    /// Restarts the pipeline unless only the outputs or the recorder changed
    /// (a new stream key or a recording must not interrupt HLS or the other
    /// outputs). Camera controls are applied live, also without a restart.
    fn apply_pipeline(&self, old: &ValidConfig, new: &ValidConfig) -> Result<(), EncodeError> {
        let (mut a, mut b) = (old.get().clone(), new.get().clone());
        (a.outputs, b.outputs) = (Vec::new(), Vec::new());
        (a.run_outputs, b.run_outputs) = (Vec::new(), Vec::new());
        (a.camera, b.camera) = (Default::default(), Default::default());
        (a.record, b.record) = (Default::default(), Default::default());
        // The mDNS thread follows `mdns` by itself.
        (a.mdns, b.mdns) = (false, false);
        // HTTPS is the server's business (port at start, `only` per request).
        (a.https, b.https) = (Default::default(), Default::default());
        // Gain and mute change the running sound stage.
        (a.audio.gain_db, b.audio.gain_db, a.audio.mute, b.audio.mute) = (0, 0, false, false);
        if a == b {
            self.pipeline.set_controls(new);
            return Ok(());
        }
        // Another sound source with the same track (not to or from "none"):
        // only the sound stage restarts; video and viewers go on.
        let (sa, sb) = (a.audio.source.clone(), b.audio.source.clone());
        (a.audio.source, b.audio.source) = (String::new(), String::new());
        if a == b && sa != "none" && sb != "none" {
            self.pipeline.set_controls(new);
            return Ok(());
        }
        self.pipeline.apply(new)
    }

    /// A clean stop (SIGTERM from systemd, Ctrl-C): the recording is
    /// finished, upstream connections are closed, capture stops.
    pub fn shutdown(&self) {
        self.outputs.stop_all();
        self.pipeline.stop();
    }

    fn uptime_s(&self) -> f64 {
        (self.clock.monotonic_ns().saturating_sub(self.started_ns)) as f64 / 1e9
    }

    /// The `https` object of `/api/status` and `GET /api/tls`.
    pub fn https_json(&self) -> Value {
        let info = self.tls.as_ref().map(|t| t.info());
        let port = self.https_port.load(Relaxed);
        json!({
            "port": (port != 0).then_some(port),
            "only": lock(&self.config).get().https.only,
            "fingerprint": info.as_ref().map(|i| i.fingerprint.clone()),
            "self_signed": info.map(|i| i.self_signed),
        })
    }

    pub fn status_json(&self) -> Value {
        let (outputs, others) = self.outputs.status_json();
        let s = &self.stats;
        let cur = lock(&s.current).clone();
        let rates = s.rates(self.clock.monotonic_ns());
        let sinks: Vec<Value> = self
            .bus
            .sinks()
            .iter()
            .map(|q| {
                let st = q.stats();
                let mut v = json!({
                    "name": q.name(),
                    "state": if q.is_closed() { "stopped" } else { "running" },
                    "queued": st.queued,
                    "dropped": st.dropped,
                    "delivered": st.delivered,
                });
                if let Some(r) = self.renditions.get(usize::from(q.rendition())) {
                    if q.name().starts_with("hls") {
                        v["segments"] = json!(r.hls.total_segments());
                    } else if q.name().starts_with("llhls") {
                        v["parts"] = json!(r.ll.parts_published());
                    }
                }
                v
            })
            .collect();
        // The stream's own drops: capture, and the packagers the box serves
        // (HLS, LL-HLS). Each output counts its own in `outputs[i].dropped`.
        let sink_dropped: u64 = self
            .bus
            .sinks()
            .iter()
            .filter(|q| q.name().starts_with("hls") || q.name().starts_with("llhls"))
            .map(|q| q.stats().dropped)
            .sum();
        let top = self.renditions.top();
        let (p50, p99) = top.ll.part_latency_ms().unzip();
        let (d50, d99) = top.ll.delivery_ms().unzip();
        let renditions: Vec<Value> = self
            .renditions
            .all()
            .iter()
            .map(|r| {
                let bw = r.hls.bandwidth();
                json!({
                    "width": r.spec.width, "height": r.spec.height,
                    "bitrate_kbps": r.spec.bitrate_kbps,
                    "measured_peak_kbps": bw.map(|b| b.0 / 1000),
                    "measured_average_kbps": bw.map(|b| b.1 / 1000),
                    "codecs": r.ll.codecs(),
                    "segments": r.hls.total_segments(),
                    "parts": r.ll.parts_published(),
                })
            })
            .collect();
        let health = crate::control::system::read(self.clock.monotonic_ns());
        json!({
            "renditions": renditions,
            "llhls": {
                "parts": top.ll.parts_published(),
                "waiting_requests": top.ll.waiting(),
                "part_latency_ms": { "p50": p50.map(round1), "p99": p99.map(round1) },
                "delivery_ms": { "p50": d50.map(round1), "p99": d99.map(round1) },
            },
            "version": env!("CARGO_PKG_VERSION"),
            "board": crate::config::board::current().status_json(),
            "uptime_s": round1(self.uptime_s()),
            "system": { "cpu_percent": health.cpu_percent, "load1": health.load1, "soc_temp_c": health.soc_temp_c },
            "source": { "kind": cur.source, "width": cur.width, "height": cur.height, "fps": cur.fps,
                        "camera": (cur.source == "v4l2").then(|| lock(&self.pipeline.camera).clone()) },
            "audio": self.pipeline.audio_status_json(),
            "encoder": { "kind": cur.encoder, "restarts": s.encoder_restarts.load(Relaxed),
                         "errors": s.encode_errors.load(Relaxed),
                         "bitrate_kbps": lock(&self.config).get().video.bitrate_kbps },
            "frames": {
                "captured": s.captured.load(Relaxed),
                "encoded": s.encoded.load(Relaxed),
                "dropped": s.capture_dropped.load(Relaxed) + sink_dropped,
                "dropped_at_capture": s.capture_dropped.load(Relaxed),
            },
            "measured": { "fps": round1(rates.fps), "bitrate_kbps": round1(rates.bitrate_bps / 1000.0) },
            "sinks": sinks,
            "outputs": outputs,
            "recording": others.into_iter().find(|o| o["kind"] == "record"),
            "https": self.https_json(),
        })
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn metrics_text(&self) -> String {
        let s = &self.stats;
        let rates = s.rates(self.clock.monotonic_ns());
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            crate::base::stats::write_family(&mut out, (name, kind, help), samples.iter().cloned());
        };
        // Process-wide metrics without labels: (name, type, help, value).
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed) as f64;
        #[rustfmt::skip]
        let plain: [(&str, &str, &str, f64); 9] = [
            ("roomcast_uptime_seconds", "gauge", "Seconds since the daemon started.", self.uptime_s()),
            ("roomcast_frames_captured_total", "counter", "Pictures produced by the source.", load(&s.captured)),
            ("roomcast_frames_encoded_total", "counter", "Pictures encoded.", load(&s.encoded)),
            ("roomcast_frames_dropped_capture_total", "counter", "Pictures dropped because the encoder was busy.", load(&s.capture_dropped)),
            ("roomcast_encoded_bytes_total", "counter", "Bytes of encoded video.", load(&s.encoded_bytes)),
            ("roomcast_encoder_restarts_total", "counter", "Encoder restarts (settings changes).", load(&s.encoder_restarts)),
            ("roomcast_encode_errors_total", "counter", "Pictures the encoder failed on.", load(&s.encode_errors)),
            ("roomcast_fps", "gauge", "Measured encoded frames per second.", rates.fps),
            ("roomcast_bitrate_bits_per_second", "gauge", "Measured encoded bitrate.", rates.bitrate_bps),
        ];
        for (name, kind, help, value) in plain {
            metric(name, kind, help, &[(String::new(), value)]);
        }
        // Sound, while there is an audio track.
        let a = self.pipeline.audio_status_json();
        if a["state"] != "off" {
            let num = |k: &str| a[k].as_f64().unwrap_or(0.0);
            let audio = [
                (
                    "roomcast_audio_frames_total",
                    "counter",
                    "AAC frames made.",
                    num("frames"),
                ),
                (
                    "roomcast_audio_xruns_total",
                    "counter",
                    "Sound card overruns.",
                    num("xruns"),
                ),
                (
                    "roomcast_audio_device_opens_total",
                    "counter",
                    "Sound card (re)opens.",
                    num("opens"),
                ),
                (
                    "roomcast_audio_live",
                    "gauge",
                    "1 while sound comes from a card or the tone, 0 on silence.",
                    if a["state"] == "silence" { 0.0 } else { 1.0 },
                ),
                (
                    "roomcast_audio_drift_ppm",
                    "gauge",
                    "The sound card's measured clock error.",
                    num("drift_ppm"),
                ),
            ];
            for (name, kind, help, value) in audio {
                metric(name, kind, help, &[(String::new(), value)]);
            }
        }
        let sinks = self.bus.sinks();
        let per_sink = |f: &dyn Fn(&crate::base::bus::QueueStats) -> u64| -> Vec<(String, f64)> {
            sinks
                .iter()
                .map(|q| (format!("{{sink=\"{}\"}}", q.name()), f(&q.stats()) as f64))
                .collect()
        };
        metric(
            "roomcast_sink_dropped_frames_total",
            "counter",
            "Frames a sink dropped because its queue was full.",
            &per_sink(&|q| q.dropped),
        );
        metric(
            "roomcast_sink_queued_frames",
            "gauge",
            "Frames waiting in a sink's queue.",
            &per_sink(&|q| q.queued as u64),
        );
        metric(
            "roomcast_hls_segments_total",
            "counter",
            "HLS segments published.",
            &self
                .renditions
                .all()
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        format!("{{rendition=\"{i}\"}}"),
                        r.hls.total_segments() as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let classes: Vec<(String, f64)> = (1..6)
            .map(|c| {
                (
                    format!("{{code=\"{c}xx\"}}"),
                    self.http_responses[c].load(Relaxed) as f64,
                )
            })
            .collect();
        metric(
            "roomcast_http_responses_total",
            "counter",
            "HTTP responses by status class.",
            &classes,
        );
        self.outputs.write_metrics(&mut out);
        out
    }
}

/// The configuration as the API shows it: every setting, `outputs` (the
/// configured ones) and `run_outputs` (the command line's, for this run
/// only, never saved), with the secrets in their URLs masked. A masked URL
/// sent back unchanged keeps its secret ([`unmask_outputs`]).
fn shown(cfg: &ValidConfig) -> Value {
    let masked = |o: &Output| {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        v["url"] = Value::String(mask_url(&o.url));
        v
    };
    let mut v = serde_json::to_value(cfg.get()).unwrap_or(Value::Null);
    v["outputs"] = cfg.get().outputs.iter().map(masked).collect();
    v["run_outputs"] = cfg.run_only_outputs().map(masked).collect();
    v
}

/// `patch` made ready to merge: of the configuration's shape (else 400 with
/// the field), `run_outputs` either left out or sent back as shown (it is
/// the command line's; then dropped), and the masked secrets in `outputs`
/// put back from the current outputs they name.
fn prepared(mut patch: Value, current: &ValidConfig) -> Result<Value, ApplyError> {
    config::check_shape(&patch)?;
    let run = patch.as_object_mut().and_then(|p| p.remove("run_outputs"));
    if run.is_some_and(|run| run != shown(current)["run_outputs"]) {
        return Err(FieldError {
            field: "run_outputs".into(),
            reason: "outputs given on the command line (--rtmp, --srt) run for this run only and cannot be changed here; send them back as shown or leave them out (to keep one for good, add it to outputs)".into(),
        }
        .into());
    }
    if let Some(list) = patch.get_mut("outputs").and_then(Value::as_array_mut) {
        let c = current.get();
        let known: Vec<&Output> = c.outputs.iter().chain(&c.run_outputs).collect();
        unmask_outputs(list, &known)?;
    }
    Ok(patch)
}

/// Puts the real secret back into each entry of `outputs` (a PUT's or an
/// import's) whose URL still shows it masked, from the one `known` output
/// that URL names: the same destination and options, and the mask of that
/// output's secret ([`OutputUrl::is_shown_as`]). Position plays no part,
/// except between outputs to the same destination whose secrets show the
/// same mask (keys under 12 characters all show `****`): then the entry
/// takes the secret of the output in its own place. A masked secret that
/// names no known output (another host, say, or a file from another box)
/// is refused on `outputs[i].url`: it must be typed again, never sent to a
/// new destination or stored as the mask.
fn unmask_outputs(outputs: &mut [Value], known: &[&Output]) -> Result<(), FieldError> {
    let known: Vec<(&str, OutputUrl)> = known
        .iter()
        .filter_map(|o| Some((o.url.as_str(), OutputUrl::parse(&o.url).ok()?)))
        .collect();
    for (i, entry) in outputs.iter_mut().enumerate() {
        // A URL that does not parse is left for validation to name.
        let Some(sent) = entry
            .get("url")
            .and_then(Value::as_str)
            .and_then(|u| OutputUrl::parse_sent(u).ok())
        else {
            continue;
        };
        if !sent.has_masked_secret() {
            continue;
        }
        let mut named: Vec<&str> = known
            .iter()
            .filter(|(_, k)| k.is_shown_as(&sent))
            .map(|(url, _)| *url)
            .collect();
        named.sort_unstable();
        named.dedup();
        let real = match named[..] {
            [url] => Some(url),
            [] => None,
            _ => known
                .get(i)
                .map(|(url, _)| *url)
                .filter(|url| named.contains(url)),
        };
        let Some(real) = real else {
            return Err(FieldError {
                field: format!("outputs[{i}].url"),
                reason: sent.retype_reason(),
            });
        };
        entry["url"] = Value::String(real.to_string());
    }
    Ok(())
}

/// `base` with `patch` merged in (see [`merge`]), checked. The command
/// line's outputs stay as they are in `base`.
fn patched(base: &Config, patch: Value) -> Result<ValidConfig, ApplyError> {
    let mut merged = serde_json::to_value(base).unwrap_or(Value::Null);
    merge(&mut merged, patch);
    let mut cfg: Config =
        serde_json::from_value(merged).map_err(|e| ApplyError::Shape(e.to_string()))?;
    cfg.run_outputs = base.run_outputs.clone();
    Ok(cfg.validate()?)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// JSON merge patch (RFC 7396) without deletion: objects merge key by key,
/// anything else replaces. [`config::check_shape`] has made sure a table is
/// only ever merged with an object.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::SimClock;
    use std::path::Path;

    const KEY: &str = "rtmp://127.0.0.1:9/live/storedkey0000abcd";
    const CLI: &str = "rtmp://127.0.0.1:9/live/keykeykeykey1234";
    const SRT: &str = "srt://127.0.0.1:9000?latency=200&passphrase=correct-horse-7";

    fn out(url: &str) -> Output {
        // Disabled: nothing connects while the tests run.
        Output {
            url: url.into(),
            enabled: false,
            ca_file: None,
            rendition: 0,
        }
    }

    /// An app whose pipeline never starts, in a fresh data directory with
    /// `stored` saved as its config.toml and `cli` as command-line outputs.
    fn app(tag: &str, stored: &[&str], cli: &[&str]) -> (App, PathBuf) {
        let dir = std::env::temp_dir().join(format!("roomcast-app-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Config::default();
        c.audio.source = "none".into();
        c.video.bitrate_kbps = 900;
        c.outputs = stored.iter().map(|u| out(u)).collect();
        let path = dir.join(config::CONFIG_FILE);
        config::save(&path, &c.clone().validate().unwrap()).unwrap();
        c.run_outputs = cli.iter().map(|u| out(u)).collect();
        let cfg = c.validate().unwrap();
        let clock: SharedClock = Arc::new(SimClock::new(1_795_580_100_000));
        let app = App::idle(clock, cfg, &dir, path);
        (app, dir)
    }

    fn file(app: &App) -> Vec<u8> {
        std::fs::read(&app.config_path).unwrap()
    }

    fn running_urls(app: &App) -> Vec<String> {
        lock(&app.config)
            .outputs()
            .map(|(_, o, _)| o.url.clone())
            .collect()
    }

    /// The field of a refusal that names one.
    fn field_of(r: Result<(), ApplyError>) -> String {
        match r {
            Err(ApplyError::Field(f)) => f.field,
            other => panic!("expected a refusal naming a field, got {other:?}"),
        }
    }

    #[test]
    fn bad_shapes_are_refused_with_their_field_and_nothing_is_saved() {
        let (app, dir) = app("shape", &[KEY], &[CLI]);
        let before = file(&app);
        let shown_before = app.config_json();
        for (body, name) in [
            (json!([]), "body"),
            (json!("x"), "body"),
            (json!(null), "body"),
            (json!(5), "body"),
            (json!({"video": [640, 360]}), "video"),
            (json!({"audio": []}), "audio"),
            (json!({"record": []}), "record"),
            (json!({"camera": null}), "camera"),
            (json!({"hls": 5}), "hls"),
            (json!({"outputs": {}}), "outputs"),
            (json!({"outputs": "rtmp://h/a/k"}), "outputs"),
            (
                json!({"outputs": [{"url": KEY}, [CLI, true]]}),
                "outputs[1]",
            ),
        ] {
            let r = app.put_config(body.clone());
            assert_eq!(field_of(r), name, "{body}");
            assert_eq!(file(&app), before, "{body} changed config.toml");
            assert_eq!(app.config_json(), shown_before, "{body} changed what runs");
        }
        // The same rule for an imported file.
        for (text, name) in [
            ("video = [640, 360]\n", "video"),
            ("[[audio]]\nmute = true\n", "audio"),
            ("outputs = [\"rtmp://h/a/k\"]\n", "outputs[0]"),
        ] {
            assert_eq!(field_of(app.import_config(text)), name, "{text}");
            assert_eq!(file(&app), before, "{text} changed config.toml");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_put_changes_only_what_it_names() {
        let mut base = Config::default();
        base.video.fps = 25;
        base.video.gop = 25;
        base.video.bitrate_kbps = 900;
        base.audio.bitrate_kbps = 96;
        base.outputs = vec![out(KEY), out(CLI)];
        let v = patched(&base, json!({"video": {"bitrate_kbps": 1500}})).unwrap();
        let c = v.get();
        assert_eq!(
            (
                c.video.width,
                c.video.fps,
                c.video.gop,
                c.video.bitrate_kbps
            ),
            (1280, 25, 25, 1500)
        );
        assert_eq!((c.audio.bitrate_kbps, c.outputs.len()), (96, 2));
        let v = patched(&base, json!({"audio": {"mute": true}, "mdns": false})).unwrap();
        let c = v.get();
        assert!(c.audio.mute && !c.mdns);
        assert_eq!((c.audio.bitrate_kbps, c.video.bitrate_kbps), (96, 900));
        // A list is replaced whole.
        let v = patched(&base, json!({"outputs": [{"url": CLI}]})).unwrap();
        assert_eq!(v.get().outputs.len(), 1);
        assert!(v.get().outputs[0].enabled, "a new entry gets the defaults");
    }

    /// `outputs` of a patch after [`prepared`], against `current`.
    fn unmasked(current: &ValidConfig, outputs: Value) -> Result<Vec<String>, String> {
        match prepared(json!({ "outputs": outputs }), current) {
            Ok(p) => Ok(p["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["url"].as_str().unwrap().to_string())
                .collect()),
            Err(ApplyError::Field(f)) => Err(format!("{}: {}", f.field, f.reason)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn masked_secrets_go_back_only_to_the_output_they_name() {
        let other = "rtmp://10.0.0.5/app/otherkey00005678";
        let cur = Config {
            outputs: vec![out(KEY), out(other), out(SRT)],
            ..Default::default()
        }
        .validate()
        .unwrap();
        let shown = shown(&cur);
        let masked: Vec<Value> = shown["outputs"].as_array().unwrap().clone();
        assert_eq!(masked[0]["url"], "rtmp://127.0.0.1:9/live/****abcd");
        assert_eq!(
            masked[2]["url"],
            "srt://127.0.0.1:9000?mode=caller&latency=200&passphrase=****"
        );
        // Sent back as shown: every secret kept.
        assert_eq!(unmasked(&cur, json!(masked)).unwrap(), [KEY, other, SRT]);
        // Reordered: each keeps its own.
        let reordered = json!([masked[2], masked[0], masked[1]]);
        assert_eq!(unmasked(&cur, reordered).unwrap(), [SRT, KEY, other]);
        // The same server without the default port, next to a new one.
        let r = unmasked(
            &cur,
            json!([{"url": "rtmp://127.0.0.1:9/live/****abcd"}, {"url": "rtmp://h/a/newkey"}]),
        );
        assert_eq!(r.unwrap(), [KEY, "rtmp://h/a/newkey"]);
        // Another host, port, application, or key: refused, nothing put back.
        for (i, moved) in [
            "rtmp://10.66.66.66/live/****abcd",
            "rtmp://127.0.0.1:1935/live/****abcd",
            "rtmp://127.0.0.1:9/other/****abcd",
            "rtmp://127.0.0.1:9/live/****zzzz",
            "srt://10.66.66.66:9000?mode=caller&latency=200&passphrase=****",
            "srt://127.0.0.1:9000?mode=caller&latency=500&passphrase=****",
        ]
        .iter()
        .enumerate()
        {
            let mut list = masked.clone();
            list.truncate(i % 3);
            list.push(json!({ "url": moved }));
            let e = unmasked(&cur, json!(list)).unwrap_err();
            assert!(
                e.starts_with(&format!("outputs[{}].url: the ", i % 3))
                    && e.contains("must be typed again"),
                "{moved}: {e}"
            );
            assert!(!e.contains("storedkey") && !e.contains("horse"), "{e}");
        }
        // Typed again: taken as given.
        let typed = "rtmp://10.66.66.66/live/newkey0000abcd";
        assert_eq!(unmasked(&cur, json!([{"url": typed}])).unwrap(), [typed]);
    }

    #[test]
    fn short_keys_that_show_the_same_mask_are_told_apart_by_place() {
        let (a, b) = ("rtmp://h/live/room1", "rtmp://h/live/room2");
        let cur = Config {
            outputs: vec![out(a), out(b)],
            ..Default::default()
        }
        .validate()
        .unwrap();
        let m = json!({"url": "rtmp://h:1935/live/****"});
        assert_eq!(unmasked(&cur, json!([m, m])).unwrap(), [a, b]);
        let e = unmasked(&cur, json!([{"url": "rtmp://h/a/new"}, m, m])).unwrap_err();
        assert!(e.starts_with("outputs[2].url"), "{e}");
    }

    #[test]
    fn a_masked_secret_in_an_imported_file_must_name_a_current_output() {
        let (app, dir) = app("import", &[KEY], &[]);
        // Exported masked, imported back: the key is kept.
        let exported = app.export_config(false).unwrap();
        assert!(exported.contains("****abcd") && !exported.contains("storedkey"));
        let edited = exported.replace("bitrate_kbps = 900", "bitrate_kbps = 1000");
        app.import_config(&edited).unwrap();
        let saved = String::from_utf8(file(&app)).unwrap();
        assert!(saved.contains(KEY) && saved.contains("bitrate_kbps = 1000"));
        // A mask that names no output here is refused, never stored.
        let before = file(&app);
        for url in [
            "rtmp://127.0.0.1:9/live/****zzzz",
            "rtmp://10.66.66.66:9/live/****abcd",
        ] {
            let text = format!("[[outputs]]\nurl = \"{url}\"\n");
            assert_eq!(field_of(app.import_config(&text)), "outputs[0].url");
            assert_eq!(file(&app), before, "{url}");
        }
        assert_eq!(running_urls(&app), [KEY]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn command_line_outputs_survive_every_put_and_stay_out_of_the_file() {
        let (app, dir) = app("cli", &[KEY], &[CLI]);
        assert_eq!(running_urls(&app), [KEY, CLI]);
        let shown = app.config_json();
        assert_eq!(shown["outputs"].as_array().unwrap().len(), 1);
        assert_eq!(
            shown["run_outputs"],
            json!([{"url": "rtmp://127.0.0.1:9/live/****1234", "enabled": false}])
        );
        // Changing something else, then emptying the configured outputs.
        app.put_config(json!({"record": {"keep_mb": 4096}}))
            .unwrap();
        assert_eq!(running_urls(&app), [KEY, CLI]);
        app.put_config(json!({"outputs": []})).unwrap();
        assert_eq!(running_urls(&app), [CLI]);
        let saved = String::from_utf8(file(&app)).unwrap();
        assert!(saved.contains("keep_mb = 4096"), "{saved}");
        assert!(
            !saved.contains("keykey") && saved.contains("outputs = []"),
            "{saved}"
        );
        // Sent back as shown (a GET, changed, PUT back whole): accepted;
        // changed: refused, naming it.
        let mut whole = app.config_json();
        whole["mdns"] = json!(false);
        app.put_config(whole.clone()).unwrap();
        assert!(!lock(&app.config).get().mdns);
        whole["run_outputs"] = json!([]);
        let before = file(&app);
        assert_eq!(field_of(app.put_config(whole)), "run_outputs");
        assert_eq!(file(&app), before);
        assert_eq!(running_urls(&app), [CLI]);
        // Its masked URL in outputs keeps it for good: stored with its key,
        // and run once.
        let m = json!({"url": "rtmp://127.0.0.1:9/live/****1234", "enabled": false});
        app.put_config(json!({ "outputs": [m] })).unwrap();
        assert_eq!(running_urls(&app), [CLI]);
        assert!(String::from_utf8(file(&app)).unwrap().contains(CLI));
        assert_eq!(app.config_json()["run_outputs"], json!([]));
        // Dropped from outputs again, it still runs for this run.
        app.put_config(json!({"outputs": []})).unwrap();
        assert_eq!(running_urls(&app), [CLI]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_file_is_the_owners_only_after_a_put() {
        use std::os::unix::fs::PermissionsExt;
        let (app, dir) = app("mode", &[KEY], &[]);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = app.config_path.with_extension("toml.tmp");
        std::fs::write(&tmp, "left over").unwrap();
        for p in [&app.config_path, &tmp] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        app.put_config(json!({"mdns": false})).unwrap();
        assert_eq!(mode(&app.config_path), 0o600);
        assert!(!tmp.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn merge_keeps_what_the_patch_omits() {
        let mut t = json!({"video": {"width": 1280, "fps": 30}, "source": "test"});
        merge(&mut t, json!({"video": {"fps": 25}}));
        assert_eq!(
            t,
            json!({"video": {"width": 1280, "fps": 25}, "source": "test"})
        );
        merge(&mut t, json!({"video": 5}));
        assert_eq!(t["video"], json!(5));
    }
}
