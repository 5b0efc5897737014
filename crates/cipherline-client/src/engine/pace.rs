//! Pacing the engine's requests under the server's message rate
//! (PROTOCOL.md §13.5): a copy of the server's token bucket, made from the
//! rates Welcome announced, so a pasted flood goes out at the rate the
//! server allows instead of being refused and tried again.
//!
//! Contract:
//! - [`paced`] waits for a token before each request it runs (a text, a
//!   Join, a RoomInfo), so nothing peer-driven can make it wait longer
//!   than one token's refill ([`LONGEST_WAIT`] at most).
//! - The copy can drift: the server also counts what the engine sends
//!   without pacing (pings, key packages, group changes, Receipts), and
//!   the byte bucket, which depends on a room's audience, is not
//!   modelled. So a request the server still refuses as `rate_limited`
//!   is tried again after a pause that doubles, [`RATE_RETRIES`] times
//!   at most (the fallback), and the copy is then taken to be empty.

use std::time::Duration;

use cipherline_proto::app::{ErrorCode, RateLimits};
use tokio::time::Instant;

use super::jittered;
use crate::conversations::Conversations;
use crate::{Client, ClientError};

/// How often a request the server refused as too fast is tried again, and
/// the first pause (doubling) before it is.
pub(super) const RATE_RETRIES: u32 = 4;
const RATE_PAUSE: Duration = Duration::from_millis(500);
/// The longest wait for one token, whatever the rates announced (a
/// server announcing a tiny rate cannot stall the engine for long: the
/// fallback then takes over).
pub(super) const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// The server's message bucket as this client counts it: `rate` tokens a
/// second, `burst` at most. `None` inside when the server announced no
/// rate (then requests are only retried, never waited for).
pub(super) struct Pace {
    bucket: Option<Bucket>,
}

struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Pace {
    /// The bucket of a session whose Welcome announced `rates`, after
    /// `sent` metered messages (Hello, Receipts, Joins, Resume: what a
    /// connection attempt sends before any command).
    pub(super) fn new(rates: RateLimits, sent: u32) -> Pace {
        let bucket = (rates.messages_per_sec > 0 && rates.burst > 0).then(|| {
            let burst = f64::from(rates.burst);
            Bucket {
                tokens: (burst - f64::from(sent)).max(0.0),
                rate: f64::from(rates.messages_per_sec),
                burst,
                last: Instant::now(),
            }
        });
        Pace { bucket }
    }

    /// Waits until the bucket has a token, and takes it.
    async fn turn(&mut self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the next token: how long to wait for it first (zero when
    /// there is one). The count may go below zero meanwhile; the wait
    /// refills it, and after a capped wait it stays below, as the
    /// server's count does not forgive a message sent early.
    fn reserve(&mut self) -> Duration {
        let Some(b) = &mut self.bucket else { return Duration::ZERO };
        b.refill();
        let wait = if b.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64((1.0 - b.tokens) / b.rate).unwrap_or(LONGEST_WAIT).min(LONGEST_WAIT)
        };
        b.tokens = (b.tokens - 1.0).max(-b.burst);
        wait
    }

    /// The server refused a request as too fast: its bucket is empty.
    fn emptied(&mut self) {
        if let Some(b) = &mut self.bucket {
            b.refill();
            b.tokens = b.tokens.min(0.0);
        }
    }
}

impl Bucket {
    fn refill(&mut self) {
        let now = Instant::now();
        let gained = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + gained).min(self.burst);
        self.last = now;
    }
}

/// Runs `request` once the bucket has a token, and again after a pause
/// (at most [`RATE_RETRIES`] times) while the server answers
/// `rate_limited` anyway.
pub(super) async fn paced<T>(
    pace: &mut Pace,
    mut request: impl AsyncFnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let mut pause = RATE_PAUSE;
    for _ in 0..RATE_RETRIES {
        pace.turn().await;
        match request().await {
            Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) => {
                pace.emptied();
                tokio::time::sleep(jittered(pause)).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    pace.turn().await;
    request().await
}

/// After a text sent in `group`: a leaf-key update when one is due
/// (post-compromise security), paced like a text, since a commit takes one
/// of the server's tokens too (unpaced, it came right after a flood and
/// was refused, so keys were not renewed). A refusal or a lost race is
/// tried again after the next message.
pub(super) async fn update_if_due(pace: &mut Pace, e2e: &Conversations, client: &mut Client, group: &[u8]) {
    if e2e.update_due(group).unwrap_or(false) {
        let _ = paced(pace, async || e2e.update_if_due(client, group).await).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rates(per_sec: u32, burst: u32) -> RateLimits {
        RateLimits { messages_per_sec: per_sec, burst, ..RateLimits::default() }
    }

    #[test]
    fn a_burst_goes_at_once_then_one_request_per_token() {
        let mut pace = Pace::new(rates(10, 3), 1);
        // Two tokens left after the one already sent: no wait for them.
        assert_eq!((pace.reserve(), pace.reserve()), (Duration::ZERO, Duration::ZERO));
        // The third waits for a token: about a tenth of a second at 10 a
        // second (less the little time these lines took).
        let wait = pace.reserve();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100), "{wait:?}");
        // The next one waits for the one after it.
        assert!(pace.reserve() > Duration::from_millis(150));
    }

    #[test]
    fn a_refusal_empties_the_copy_and_a_tiny_rate_waits_at_most_the_cap() {
        let mut pace = Pace::new(rates(1, 5), 0);
        pace.emptied();
        assert!(pace.reserve() > Duration::from_millis(900), "a refusal means no token is left");
        let mut none = Pace::new(rates(0, 5), 0);
        assert_eq!((none.reserve(), none.reserve()), (Duration::ZERO, Duration::ZERO), "no rate announced: no wait");
        let mut tiny = Pace::new(rates(1, 1), 1);
        tiny.bucket.as_mut().unwrap().rate = 0.01;
        assert_eq!(tiny.reserve(), LONGEST_WAIT, "never longer than the cap");
    }

    #[tokio::test]
    async fn a_request_refused_as_too_fast_is_tried_again() {
        let mut pace = Pace::new(rates(100, 100), 0);
        let mut calls = 0;
        let answer = paced(&mut pace, async || {
            calls += 1;
            if calls < 3 {
                Err(ClientError::Refused { code: ErrorCode::RateLimited, text: "slow down".into() })
            } else {
                Ok(calls)
            }
        })
        .await
        .unwrap();
        assert_eq!(answer, 3, "tried again after each refusal");
    }
}
