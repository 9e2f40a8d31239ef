//! The box's own health for the status page: CPU used by the daemon, the
//! system load, and the SoC temperature where the kernel reports one.

use crate::base::lock;
use std::sync::Mutex;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Health {
    /// CPU used by this process since the previous reading, in percent of
    /// one core (so 150 means one and a half cores).
    pub cpu_percent: Option<f64>,
    /// 1-minute load average.
    pub load1: Option<f64>,
    /// SoC temperature in °C (thermal zone 0), absent on machines without one.
    pub soc_temp_c: Option<f64>,
}

/// Previous (monotonic ns, process CPU ticks) sample.
static LAST: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// Reads the current health; `now_ns` is the monotonic clock.
pub fn read(now_ns: u64) -> Health {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| process_ticks(&s));
    let cpu_percent = ticks.and_then(|t| {
        let mut last = lock(&LAST);
        let prev = last.replace((now_ns, t));
        let (then, was) = prev?;
        let dt = now_ns.checked_sub(then).filter(|&d| d > 0)? as f64 / 1e9;
        // USER_HZ is 100 on every Linux architecture we build for.
        Some(((t.saturating_sub(was)) as f64 / 100.0 / dt * 1000.0).round() / 10.0)
    });
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let soc_temp_c = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|milli| (milli / 100.0).round() / 10.0);
    Health {
        cpu_percent,
        load1,
        soc_temp_c,
    }
}

/// utime + stime from `/proc/self/stat` (fields 14 and 15, counted after the
/// command name, which may itself contain spaces and parentheses).
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_the_command_name() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 100";
        assert_eq!(process_ticks(stat), Some(325));
        assert_eq!(process_ticks("garbage"), None);
    }

    #[test]
    fn readings_work_on_this_machine() {
        let h = read(1_000_000_000);
        assert!(h.load1.is_some());
        let h2 = read(2_000_000_000);
        assert!(h2.cpu_percent.is_some_and(|c| c >= 0.0));
    }
}
