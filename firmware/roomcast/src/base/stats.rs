//! Counters and measured rates, shared by the pipeline threads and read by
//! `/api/status` and `/metrics`.

use crate::base::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// How far back the measured fps and bitrate look.
const RATE_WINDOW_NS: u64 = 2_000_000_000;

#[derive(Default)]
pub struct Stats {
    pub captured: AtomicU64,
    pub encoded: AtomicU64,
    /// Raw pictures dropped because the encoder was still busy.
    pub capture_dropped: AtomicU64,
    pub encode_errors: AtomicU64,
    /// Times the encoder was (re)opened after the first.
    pub encoder_restarts: AtomicU64,
    pub encoded_bytes: AtomicU64,
    recent: Mutex<VecDeque<(u64, usize)>>,
    /// What is running now, for status.
    pub current: Mutex<Current>,
}

/// The source and encoder in use.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub source: &'static str,
    /// E.g. `openh264`, `v4l2m2m:/dev/video11 (bcm2835-codec-encode)`.
    pub encoder: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// Frame rate and bitrate over the last couple of seconds of capture time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub fps: f64,
    pub bitrate_bps: f64,
}

impl Stats {
    /// Records an encoded frame of `bytes` captured at `capture_ns`.
    pub fn on_encoded(&self, capture_ns: u64, bytes: usize) {
        self.encoded.fetch_add(1, Relaxed);
        self.encoded_bytes.fetch_add(bytes as u64, Relaxed);
        let mut r = lock(&self.recent);
        r.push_back((capture_ns, bytes));
        while r
            .front()
            .is_some_and(|&(t, _)| t + RATE_WINDOW_NS < capture_ns)
        {
            r.pop_front();
        }
    }

    /// Rates measured from capture timestamps, so they reflect the stream's
    /// own timeline rather than when status happened to be asked. Empty when
    /// nothing was encoded in the last window before `now_ns`.
    pub fn rates(&self, now_ns: u64) -> Rates {
        let r = lock(&self.recent);
        let (Some(&(first, _)), Some(&(last, _))) = (r.front(), r.back()) else {
            return Rates::default();
        };
        if r.len() < 2 || last + RATE_WINDOW_NS < now_ns || last == first {
            return Rates::default();
        }
        let span = (last - first) as f64 / 1e9;
        let frames = (r.len() - 1) as f64;
        // Bytes of all frames but the last cover exactly `span`.
        let bytes: usize = r.iter().take(r.len() - 1).map(|&(_, b)| b).sum();
        Rates {
            fps: frames / span,
            bitrate_bps: bytes as f64 * 8.0 / span,
        }
    }
}

/// Median and 99th percentile of nanosecond samples, in milliseconds.
pub fn quantiles_ms(samples: impl Iterator<Item = u64>) -> Option<(f64, f64)> {
    let mut v: Vec<u64> = samples.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1e6;
    Some((at(0.5), at(0.99)))
}

/// Writes one Prometheus metric family (text format 0.0.4): its HELP and
/// TYPE lines, then one sample per `(labels, value)`.
pub fn write_family(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (String, f64)>,
) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// `{output="…"}` for an output's masked URL, escaped for Prometheus.
pub fn output_label(masked: &str) -> String {
    let label = masked.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{{output=\"{label}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_prometheus_families() {
        assert_eq!(quantiles_ms(std::iter::empty()), None);
        let (p50, p99) = quantiles_ms((1..=100).map(|ms| ms * 1_000_000)).unwrap();
        assert_eq!((p50, p99), (51.0, 99.0));
        let mut out = String::new();
        write_family(
            &mut out,
            ("m", "gauge", "Help."),
            [(output_label("a\"b"), 1.5)],
        );
        assert_eq!(
            out,
            "# HELP m Help.\n# TYPE m gauge\nm{output=\"a\\\"b\"} 1.5\n"
        );
    }

    #[test]
    fn rates_come_from_capture_time() {
        let s = Stats::default();
        for n in 0..=50u64 {
            s.on_encoded(10_000_000_000 + n * 40_000_000, 5_000);
        }
        let r = s.rates(12_000_000_000);
        assert!((r.fps - 25.0).abs() < 1e-9, "{r:?}");
        assert!((r.bitrate_bps - 1_000_000.0).abs() < 1e-6, "{r:?}");
        assert_eq!(s.encoded.load(Relaxed), 51);
        // Stale: nothing encoded lately.
        assert_eq!(s.rates(20_000_000_000), Rates::default());
    }
}
