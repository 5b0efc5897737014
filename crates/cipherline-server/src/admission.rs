//! Which new connections the accept loop serves (PROTOCOL.md §13.5), so
//! that one source address cannot take the whole server:
//!
//! - a rate: each source may open `new_connections_per_ip_per_sec`
//!   connections per second, with a burst of `new_connections_burst_per_ip`
//!   (every connection costs the server a private-key operation);
//! - a cap: each source may hold `max_sessions_per_ip` connections at once
//!   (in the handshake or established);
//! - a reserve: once fewer than `reserved_for_new_addresses_percent` of
//!   `max_connections` are free, only sources holding no connection may
//!   take them, so a few sources filling the server still leave room for
//!   everyone else.
//!
//! Every refusal is the `server_busy` alert. Memory is bounded: a source's
//! connection count exists only while it holds a connection (so at most
//! `max_connections` of them), and rate buckets are kept for at most
//! [`MAX_BUCKETS`] sources, full buckets (nothing to remember) going first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::Limits;
use crate::source::Source;

/// Sources whose connection rate is remembered at most.
const MAX_BUCKETS: usize = 10_000;

/// Why a connection was refused (all get `server_busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The source opens connections faster than its rate.
    Rate,
    /// The source holds `max_sessions_per_ip` connections already.
    Sessions,
    /// The server is nearly full and the rest is kept for new sources.
    Reserved,
}

/// A token bucket of new connections for one source.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// The tokens at `now`, refilled at `rate` per second up to `burst`.
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }
}

#[derive(Default)]
struct State {
    /// Connections held per source; a source holding none is absent.
    held: HashMap<Source, usize>,
    /// New-connection buckets per source.
    buckets: HashMap<Source, Bucket>,
}

/// The per-source admission state of one server.
#[derive(Default)]
pub(crate) struct Admission {
    state: Mutex<State>,
}

/// One admitted connection's place in its source's count; given back when
/// dropped (the connection ended).
pub(crate) struct Held {
    admission: Arc<Admission>,
    source: Source,
}

impl Admission {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `source`, or says why not. `free` is the
    /// number of connection slots still free (before this connection).
    pub(crate) fn admit(
        self: &Arc<Self>,
        source: Source,
        limits: &Limits,
        free: usize,
        now: Instant,
    ) -> Result<Held, Refusal> {
        let mut state = self.lock();
        let rate = f64::from(limits.new_connections_per_ip_per_sec);
        let burst = f64::from(limits.new_connections_burst_per_ip);
        if !state.buckets.contains_key(&source) && state.buckets.len() >= MAX_BUCKETS {
            forget_buckets(&mut state.buckets, now, rate, burst);
        }
        let bucket = state.buckets.entry(source).or_insert(Bucket { tokens: burst, last: now });
        bucket.refill(now, rate, burst);
        if bucket.tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        bucket.tokens -= 1.0;

        let held = state.held.get(&source).copied().unwrap_or(0);
        if held >= limits.max_sessions_per_ip {
            return Err(Refusal::Sessions);
        }
        if held > 0 && free <= reserve(limits) {
            return Err(Refusal::Reserved);
        }
        state.held.insert(source, held + 1);
        Ok(Held { admission: self.clone(), source })
    }

    /// Connections `source` holds now.
    #[cfg(test)]
    fn held(&self, source: Source) -> usize {
        self.lock().held.get(&source).copied().unwrap_or(0)
    }
}

/// The connection slots kept for sources holding none.
fn reserve(limits: &Limits) -> usize {
    limits.max_connections.saturating_mul(usize::from(limits.reserved_for_new_addresses_percent)) / 100
}

/// Makes room for a new bucket: forgets every full bucket (a source that
/// has been quiet long enough to be back at its burst), and if none is, the
/// one used longest ago (that source gets a fresh burst: a bounded gift).
fn forget_buckets(buckets: &mut HashMap<Source, Bucket>, now: Instant, rate: f64, burst: f64) {
    buckets.retain(|_, b| {
        b.refill(now, rate, burst);
        b.tokens < burst
    });
    if buckets.len() >= MAX_BUCKETS {
        let oldest = buckets.iter().min_by_key(|(_, b)| b.last).map(|(s, _)| *s);
        if let Some(oldest) = oldest {
            buckets.remove(&oldest);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        if let Some(count) = state.held.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.held.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn source(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 100,
            max_sessions_per_ip: 3,
            reserved_for_new_addresses_percent: 10,
            new_connections_per_ip_per_sec: 2,
            new_connections_burst_per_ip: 5,
            ..Limits::default()
        }
    }

    #[test]
    fn caps_sessions_per_source_and_gives_places_back() {
        let a = Arc::new(Admission::default());
        let (l, t) = (limits(), Instant::now());
        let x = source("2001:db8::1");
        let first = a.admit(x, &l, 100, t).unwrap();
        let _second = a.admit(source("2001:db8::2"), &l, 100, t).unwrap();
        let _third = a.admit(x, &l, 100, t).unwrap();
        assert_eq!(a.admit(source("2001:db8::ffff"), &l, 100, t).err(), Some(Refusal::Sessions), "one /64");
        let _other = a.admit(source("2001:db8:0:1::1"), &l, 100, t).unwrap();
        drop(first);
        let _again = a.admit(x, &l, 100, t).unwrap();
        drop((_second, _third, _again));
        assert_eq!(a.held(x), 0);
        assert!(!a.lock().held.contains_key(&x), "sources holding nothing are forgotten");
    }

    #[test]
    fn limits_the_rate_of_new_connections_with_a_burst() {
        let a = Arc::new(Admission::default());
        let l = Limits { max_sessions_per_ip: 1000, ..limits() };
        let (x, t) = (source("127.0.0.2"), Instant::now());
        let held: Vec<Held> = (0..5).map(|_| a.admit(x, &l, 100, t).unwrap()).collect();
        assert_eq!(a.admit(x, &l, 100, t).err(), Some(Refusal::Rate));
        assert!(a.admit(source("127.0.0.3"), &l, 100, t).is_ok(), "per source");
        // Two per second come back.
        let later = t + Duration::from_millis(1000);
        let _more = (a.admit(x, &l, 100, later).unwrap(), a.admit(x, &l, 100, later).unwrap());
        assert_eq!(a.admit(x, &l, 100, later).err(), Some(Refusal::Rate));
        drop(held);
    }

    #[test]
    fn the_reserve_is_for_sources_holding_nothing() {
        let a = Arc::new(Admission::default());
        let (l, t) = (limits(), Instant::now());
        let x = source("127.0.0.2");
        let _one = a.admit(x, &l, 11, t).unwrap();
        assert_eq!(a.admit(x, &l, 10, t).err(), Some(Refusal::Reserved), "10 of 100 are kept");
        let _new = a.admit(source("127.0.0.3"), &l, 10, t).expect("a new source may take them");
        let lifted = Limits { reserved_for_new_addresses_percent: 0, ..limits() };
        assert!(a.admit(x, &lifted, 1, t).is_ok(), "0 lifts the reserve");
    }

    #[test]
    fn bucket_memory_is_bounded() {
        let a = Arc::new(Admission::default());
        let (l, t) = (limits(), Instant::now());
        for i in 0..(MAX_BUCKETS as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            drop(a.admit(Source::of(ip.into()), &l, 100, t).unwrap());
        }
        assert!(a.lock().buckets.len() <= MAX_BUCKETS);
        assert!(a.lock().held.is_empty());
    }
}
