//! Password attempts (PROTOCOL.md §7.7): SPAKE2 gives an attacker one guess
//! per handshake, so the server limits how many handshakes may fail, per
//! source address and server-wide.
//!
//! A handshake is counted as a failed attempt *before* the password
//! exchange runs, and that one count is taken back only when the client's
//! Finished verifies. Counting after the fact does not work: the server's
//! Finished already tells the client whether its guess was right, so a
//! guesser that reads it and closes without a word would never be counted.
//! Checking and counting happen under one lock, so concurrent handshakes
//! from one address cannot all pass the check before any is counted. And
//! since nothing else is ever counted, an unauthenticated plaintext alert
//! (which anyone on the path can forge) costs an address nothing beyond the
//! attempt its handshake already holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::source::Source;

/// Sources tracked at most; the one whose last attempt is oldest goes first.
const MAX_SOURCES: usize = 10_000;

/// The window of the server-wide budget.
const MINUTE: Duration = Duration::from_secs(60);

/// Which limit refused a password handshake; both are answered with the
/// `too_many_attempts` alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exhausted {
    /// This source used up `max_password_failures` in its window.
    Source,
    /// The server-wide `max_password_failures_per_minute` is spent.
    Server,
}

/// One password handshake, counted as failed until [`Attempts::succeeded`]
/// takes it back.
#[must_use = "an attempt stays counted as failed unless it succeeds"]
pub(crate) struct Attempt {
    source: Source,
    at: Instant,
}

/// The limits [`Attempts::begin`] applies.
#[derive(Clone, Copy)]
pub(crate) struct Budget {
    /// Failed attempts one source may make within `window`.
    pub(crate) per_source: u32,
    /// The window of `per_source`.
    pub(crate) window: Duration,
    /// Failed attempts all sources together may make per minute.
    pub(crate) per_minute: u32,
}

#[derive(Default)]
struct State {
    /// Recent attempts per source, oldest first (at most `per_source`).
    sources: HashMap<Source, VecDeque<Instant>>,
    /// The server-wide budget as a leaky bucket: attempts counted and not
    /// yet leaked out; it leaks `per_minute` per minute. Starts empty, so a
    /// default value needs no limits.
    spent: f64,
    last_leak: Option<Instant>,
}

/// Password attempts per source and server-wide.
#[derive(Default)]
pub(crate) struct Attempts {
    state: Mutex<State>,
}

impl Attempts {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a password handshake from `source` as failed, unless `source`
    /// or the server has used up its budget (then nothing is counted and the
    /// handshake must not run).
    pub(crate) fn begin(&self, source: Source, budget: Budget, now: Instant) -> Result<Attempt, Exhausted> {
        let mut state = self.lock();
        let state = &mut *state;
        // The server-wide bucket leaks continuously.
        let rate = f64::from(budget.per_minute) / MINUTE.as_secs_f64();
        if let Some(last) = state.last_leak {
            let leaked = now.saturating_duration_since(last).as_secs_f64() * rate;
            state.spent = (state.spent - leaked).max(0.0);
        }
        state.last_leak = Some(now);

        if let Some(times) = state.sources.get_mut(&source) {
            while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= budget.window) {
                times.pop_front();
            }
            if times.is_empty() {
                state.sources.remove(&source);
            } else if times.len() >= budget.per_source as usize {
                return Err(Exhausted::Source);
            }
        }
        if state.spent + 1.0 > f64::from(budget.per_minute) {
            return Err(Exhausted::Server);
        }

        if !state.sources.contains_key(&source) && state.sources.len() >= MAX_SOURCES {
            // Bounded memory: forget the source whose last attempt is oldest
            // (the server-wide budget still counts what it did).
            let oldest = state.sources.iter().min_by_key(|(_, t)| t.back().copied()).map(|(s, _)| *s);
            if let Some(oldest) = oldest {
                state.sources.remove(&oldest);
            }
        }
        state.sources.entry(source).or_default().push_back(now);
        state.spent += 1.0;
        Ok(Attempt { source, at: now })
    }

    /// The client's Finished verified: `attempt` was not a failure after all.
    pub(crate) fn succeeded(&self, attempt: Attempt) {
        let mut state = self.lock();
        state.spent = (state.spent - 1.0).max(0.0);
        if let Some(times) = state.sources.get_mut(&attempt.source) {
            if let Some(i) = times.iter().position(|t| *t == attempt.at) {
                times.remove(i);
            }
            if times.is_empty() {
                state.sources.remove(&attempt.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    const BUDGET: Budget = Budget { per_source: 3, window: Duration::from_secs(60), per_minute: 1000 };

    #[test]
    fn each_source_is_refused_after_its_attempts_until_the_window_passes() {
        let a = Attempts::default();
        let ip = source("127.0.0.2");
        let t = Instant::now();
        let held: Vec<Attempt> = (0..3).map(|_| a.begin(ip, BUDGET, t).unwrap()).collect();
        assert_eq!(a.begin(ip, BUDGET, t).err(), Some(Exhausted::Source), "counted before it ends");
        assert!(a.begin(source("127.0.0.1"), BUDGET, t).is_ok(), "per source");
        assert!(a.begin(ip, BUDGET, t + BUDGET.window).is_ok(), "the window passed");
        drop(held);
    }

    #[test]
    fn a_success_takes_back_only_its_own_attempt() {
        let a = Attempts::default();
        let ip = source("127.0.0.2");
        let t = Instant::now();
        let _failed = a.begin(ip, BUDGET, t).unwrap();
        for i in 0..10 {
            let ok = a.begin(ip, BUDGET, t + Duration::from_millis(i)).unwrap();
            a.succeeded(ok);
        }
        let _second = a.begin(ip, BUDGET, t).unwrap();
        let _third = a.begin(ip, BUDGET, t).unwrap();
        assert_eq!(a.begin(ip, BUDGET, t).err(), Some(Exhausted::Source));
    }

    #[test]
    fn the_server_wide_budget_spans_sources_and_refills() {
        let a = Attempts::default();
        let budget = Budget { per_minute: 4, ..BUDGET };
        let t = Instant::now();
        for i in 1..=4 {
            let _ = a.begin(source(&format!("127.0.0.{i}")), budget, t).unwrap();
        }
        assert_eq!(a.begin(source("127.0.0.5"), budget, t).err(), Some(Exhausted::Server));
        // One attempt leaks out every 15 s at 4 per minute.
        assert_eq!(a.begin(source("127.0.0.5"), budget, t + Duration::from_secs(14)).err(), Some(Exhausted::Server));
        let ok = a.begin(source("127.0.0.5"), budget, t + Duration::from_secs(15)).unwrap();
        assert_eq!(a.begin(source("127.0.0.6"), budget, t + Duration::from_secs(15)).err(), Some(Exhausted::Server));
        a.succeeded(ok);
        assert!(a.begin(source("127.0.0.6"), budget, t + Duration::from_secs(15)).is_ok(), "a success refunds");
    }

    #[test]
    fn memory_is_bounded() {
        let a = Attempts::default();
        let budget = Budget { per_minute: u32::MAX, ..BUDGET };
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 50) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let _ = a.begin(Source::of(ip.into()), budget, t).unwrap();
        }
        assert_eq!(a.lock().sources.len(), MAX_SOURCES);
    }
}
