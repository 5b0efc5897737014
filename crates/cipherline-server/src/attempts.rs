//! Failed password attempts per source address (PROTOCOL.md §7.7): SPAKE2
//! gives an attacker one guess per connection, so the server limits how
//! many connections from one address may fail in a window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; the one with the oldest failure goes first.
const MAX_ADDRESSES: usize = 10_000;

/// Recent failures per address.
#[derive(Default)]
pub(crate) struct Attempts {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` has used up its `max` failures within `window`.
    pub(crate) fn blocked(&self, ip: IpAddr, max: u32, window: Duration, now: Instant) -> bool {
        let mut map = self.lock();
        let Some(times) = map.get_mut(&ip) else { return false };
        while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
            times.pop_front();
        }
        if times.is_empty() {
            map.remove(&ip);
            return false;
        }
        times.len() >= max as usize
    }

    /// Records a failure from `ip`.
    pub(crate) fn record(&self, ip: IpAddr, max: u32, now: Instant) {
        let mut map = self.lock();
        if !map.contains_key(&ip) && map.len() >= MAX_ADDRESSES {
            // Bounded memory: forget the address whose last failure is oldest.
            if let Some(oldest) = map.iter().min_by_key(|(_, t)| t.back().copied()).map(|(ip, _)| *ip) {
                map.remove(&oldest);
            }
        }
        let times = map.entry(ip).or_default();
        times.push_back(now);
        while times.len() > max as usize {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_and_forgets_after_the_window() {
        let a = Attempts::default();
        let ip: IpAddr = [127, 0, 0, 2].into();
        let t = Instant::now();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(!a.blocked(ip, 3, w, t));
            a.record(ip, 3, t);
        }
        assert!(a.blocked(ip, 3, w, t));
        assert!(!a.blocked([127, 0, 0, 1].into(), 3, w, t), "per address");
        assert!(!a.blocked(ip, 3, w, t + w), "the window passed");
    }
}
