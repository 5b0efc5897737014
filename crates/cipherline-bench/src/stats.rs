//! Latency percentiles and readings of other processes from /proc.

use std::time::Duration;

/// Latencies in microseconds, collected then summarised.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
}

impl Latencies {
    /// An empty set with room for `n` samples.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Latencies { micros: Vec::with_capacity(n) }
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.push_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds one sample in microseconds.
    pub fn push_micros(&mut self, us: u64) {
        self.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    /// Moves every sample of `other` into this set.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// Number of samples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether there are no samples.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// `(p50, p99, max)` in milliseconds (nearest-rank), or zeros when empty.
    #[must_use]
    pub fn summary_ms(&mut self) -> (f64, f64, f64) {
        self.micros.sort_unstable();
        let rank = |p: f64| -> f64 {
            let n = self.micros.len();
            if n == 0 {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least p of the
            // samples at or below it.
            let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            f64::from(self.micros.get(idx).copied().unwrap_or(0)) / 1000.0
        };
        (rank(0.50), rank(0.99), rank(1.0))
    }
}

/// Clock ticks per second in /proc/PID/stat. Linux's user-visible tick
/// (USER_HZ) is 100 on every architecture cipherline targets.
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads) a process has used so far.
///
/// Read from each thread's /proc/PID/task/TID/schedstat (nanoseconds on
/// the CPU), because /proc/PID/stat counts in 10 ms ticks, too coarse for
/// a fan-out that takes a fifth of a second of an efficient server's time.
/// Falls back to /proc/PID/stat where schedstat is missing. Threads that
/// exit between two readings drop out of the sum; both servers measured
/// here keep theirs. `None` if nothing can be read.
#[must_use]
pub fn cpu_secs(pid: u32) -> Option<f64> {
    if let Some(secs) = schedstat_secs(pid) {
        return Some(secs);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_secs(&stat)
}

fn schedstat_secs(pid: u32) -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        ns += text.split_ascii_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// The CPU time in a /proc/PID/stat line (fields 14 and 15, utime and
/// stime). The command name (field 2) may contain spaces and parentheses,
/// so fields are counted after its closing parenthesis.
#[must_use]
pub fn parse_cpu_secs(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_ascii_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The CPU time of several processes together (the nodes of one relay),
/// `None` if there are none or one cannot be read.
#[must_use]
pub fn cpu_secs_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_secs(pid)).sum()
}

/// This process's CPU time so far.
#[must_use]
pub fn own_cpu_secs() -> Option<f64> {
    cpu_secs(std::process::id())
}

/// A process's resident set size in KiB, from `VmRSS` in /proc/PID/status.
#[must_use]
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.push_micros(us * 1000);
        }
        assert_eq!(l.summary_ms(), (50.0, 99.0, 100.0));
        assert_eq!(Latencies::default().summary_ms(), (0.0, 0.0, 0.0));
    }

    #[test]
    fn stat_fields_after_an_awkward_name() {
        let line = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_secs(line), Some(3.0));
        assert!(own_cpu_secs().is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
