//! The running daemon's shared state: configuration, pipeline, sinks and
//! counters, and the operations the HTTP API performs on them.

use crate::base::bus::FrameBus;
use crate::base::clock::SharedClock;
use crate::base::lock;
use crate::base::stats::Stats;
use crate::config::url::mask_url;
use crate::config::{self, Config, ConfigError, FieldError, ValidConfig};
use crate::encoder::EncodeError;
use crate::pipeline::Pipeline;
use crate::sink::hls::{HlsSettings, HlsStore};
use crate::sink::llhls::{LlSettings, LlStore};
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
    pub hls: Arc<HlsStore>,
    /// Low-latency HLS (CMAF parts, blocking reloads).
    pub ll: Arc<LlStore>,
    /// The configuration in effect (stored file plus command-line overrides,
    /// until an API change replaces it).
    pub config: Mutex<ValidConfig>,
    pub config_path: PathBuf,
    /// Admin password, sessions and API tokens.
    pub auth: crate::control::auth::Auth,
    pub started_ns: u64,
    /// Responses by status class (index = status / 100).
    pub http_responses: [AtomicU64; 6],
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

pub fn ll_settings(cfg: &ValidConfig) -> LlSettings {
    let c = cfg.get();
    LlSettings {
        segment_ms: c.hls.segment_ms,
        part_ms: c.hls.part_ms,
        fps: c.video.fps,
        window: c.hls.window,
        target_duration_s: cfg.target_duration_s(),
        audio: cfg.audio_format(),
    }
}

pub fn hls_settings(cfg: &ValidConfig) -> HlsSettings {
    HlsSettings {
        segment_ms: cfg.get().hls.segment_ms,
        window: cfg.get().hls.window,
        target_duration_s: cfg.target_duration_s(),
        audio: cfg.audio_format(),
    }
}

impl App {
    /// The configuration as the API shows it: output URLs have their stream
    /// keys masked (a PUT that sends a masked URL back keeps the real one).
    pub fn config_json(&self) -> Value {
        let mut v = serde_json::to_value(lock(&self.config).get()).unwrap_or(Value::Null);
        if let Some(outs) = v["outputs"].as_array_mut() {
            for o in outs {
                if let Some(url) = o["url"].as_str() {
                    o["url"] = Value::String(mask_url(url));
                }
            }
        }
        v
    }

    /// Applies a change: `patch` is merged over the current configuration
    /// (so a client may send only what it changes), checked, saved, and then
    /// the pipeline restarts if the picture or encoder settings changed. Any
    /// error leaves the stored file and the running stream as they were.
    pub fn put_config(&self, patch: Value) -> Result<(), ApplyError> {
        let mut current = lock(&self.config);
        let valid = patched(current.get(), patch.clone())?;
        if valid == *current {
            return Ok(());
        }
        // The file gets the patch applied to what it holds, not to what runs:
        // command-line overrides are for one run and never written back.
        let stored = config::load(&self.config_path)?;
        let to_save = patched(stored.get(), patch)?;
        config::save(&self.config_path, &to_save)?;
        self.hls.set_settings(hls_settings(&valid));
        self.ll.set_settings(ll_settings(&valid));
        if let Err(e) = self.apply_pipeline(&current, &valid) {
            // Put the old file back so the box boots into what it did.
            let _ = config::save(&self.config_path, &stored);
            self.hls.set_settings(hls_settings(&current));
            self.ll.set_settings(ll_settings(&current));
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
    /// parsed strictly, checked, saved and applied like a PUT.
    pub fn import_config(&self, text: &str) -> Result<(), ApplyError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ApplyError::Shape(e.message().to_string()))?;
        let mut patch = serde_json::to_value(&cfg).map_err(|e| ApplyError::Shape(e.to_string()))?;
        // Arrays replace wholesale in a merge; the outputs list is taken as
        // given. Every other key is present in `patch`, so the merge is a
        // replacement.
        if patch.get("outputs").is_none() {
            patch["outputs"] = json!([]);
        }
        self.put_config(patch)
    }

    /// Restarts the pipeline unless only the outputs or the recorder changed
    /// (a new stream key or a recording must not interrupt HLS or the other
    /// outputs). Camera controls are applied live, also without a restart.
    fn apply_pipeline(&self, old: &ValidConfig, new: &ValidConfig) -> Result<(), EncodeError> {
        let (mut a, mut b) = (old.get().clone(), new.get().clone());
        (a.outputs, b.outputs) = (Vec::new(), Vec::new());
        (a.camera, b.camera) = (Default::default(), Default::default());
        (a.record, b.record) = (Default::default(), Default::default());
        // The mDNS thread follows `mdns` by itself.
        (a.mdns, b.mdns) = (false, false);
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
                match q.name() {
                    "hls" => v["segments"] = json!(self.hls.total_segments()),
                    "llhls" => v["parts"] = json!(self.ll.parts_published()),
                    _ => {}
                }
                v
            })
            .collect();
        let sink_dropped: u64 = self.bus.sinks().iter().map(|q| q.stats().dropped).sum();
        let (p50, p99) = self.ll.part_latency_ms().unzip();
        let (d50, d99) = self.ll.delivery_ms().unzip();
        let health = crate::control::system::read(self.clock.monotonic_ns());
        json!({
            "llhls": {
                "parts": self.ll.parts_published(),
                "waiting_requests": self.ll.waiting(),
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
            &[(String::new(), self.hls.total_segments() as f64)],
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

/// `base` with `patch` merged in, checked. A masked output URL in the patch
/// means "unchanged" and gets its secret back from `base`.
fn patched(base: &Config, patch: Value) -> Result<ValidConfig, ApplyError> {
    let mut merged = serde_json::to_value(base).unwrap_or(Value::Null);
    merge(&mut merged, patch);
    let mut cfg: Config =
        serde_json::from_value(merged).map_err(|e| ApplyError::Shape(e.to_string()))?;
    for (i, o) in cfg.outputs.iter_mut().enumerate() {
        if let Some(old) = base.outputs.iter().find(|old| mask_url(&old.url) == o.url) {
            o.url = old.url.clone();
        } else if o.url.contains("****") {
            // Edited around the mask: the secret is the one this row had.
            if let Some(old) = base.outputs.get(i) {
                o.url = crate::config::url::unmask(&o.url, &old.url);
            }
        }
    }
    Ok(cfg.validate()?)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// JSON merge patch (RFC 7396) without deletion: objects merge key by key,
/// anything else replaces.
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
