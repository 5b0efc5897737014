//! Token buckets: the per-client rate limits (PROTOCOL.md §13.5).
//!
//! Two buckets meter a client: one counts messages, the other the relay
//! work they cause, in bytes times recipients. The second exists because a
//! message's cost to the server grows with its audience: one 64 KiB message
//! to a 1,000-member room is 64 MB of encryption and writing, and must not
//! cost the same single token as a short direct message.

use std::time::Instant;

/// A token bucket: `rate` tokens per second sustained, `burst` at most.
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket { tokens: burst, rate, burst, last: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes one token if there is one.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        self.take(1.0, now)
    }

    /// Takes `cost` tokens if there are that many; otherwise takes none.
    /// A cost above the burst is never allowed: it could only be paid by
    /// letting the client run into debt, which is the work we refuse.
    pub(crate) fn take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allows_burst_then_rate() {
        let mut r = TokenBucket::new(10.0, 3.0);
        let t = r.last;
        assert!(r.allow(t) && r.allow(t) && r.allow(t));
        assert!(!r.allow(t));
        assert!(r.allow(t + Duration::from_millis(150)));
    }

    #[test]
    fn costs_above_the_burst_never_pass() {
        let mut r = TokenBucket::new(100.0, 1000.0);
        let t = r.last;
        assert!(!r.take(1001.0, t + Duration::from_secs(3600)));
        assert!(r.take(600.0, t));
        assert!(!r.take(600.0, t), "a refused take costs nothing, and 400 are left");
        assert!(r.take(400.0, t));
    }
}
