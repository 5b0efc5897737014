//! Pacing: keeping a client under the server's message rate (PROTOCOL.md
//! §13.5), for `send` ([`Pacer`]); `chat` sends through the client engine, which
//! retries `rate_limited` itself.
//!
//! The server announces its message bucket in Welcome; a client keeps a
//! copy of it and waits for a token before each message, so a long pipe or
//! a pasted block goes out at the rate the server allows from the start.
//! The copy can drift (the byte bucket, which depends on a room's audience,
//! is not modelled; pings and joins count too), so a message the server
//! still refuses with `rate_limited` (the connection stays) is sent again
//! after a pause that doubles each time, a few times at most.

use std::time::Duration;

use cipherline_client::{Acked, Client, ClientError};
use cipherline_proto::app::{ErrorCode, RateLimits, Target};
use tokio::time::Instant;

use crate::error::CliError;

/// How often one message is sent again after the server said it came too
/// fast, and the longest pause between tries: together they bound how long
/// one line may take (about 10 s) when the server keeps refusing it.
pub const RETRIES: u32 = 8;
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// A token bucket like the server's: `rate` tokens a second, `burst` at most.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    /// The server's bucket for a session whose limits are `rates`, after
    /// `sent` metered messages (a Join); `None` when it announced no rate.
    fn new(rates: RateLimits, sent: u32) -> Option<Self> {
        (rates.messages_per_sec > 0 && rates.burst > 0).then(|| {
            let burst = f64::from(rates.burst);
            Bucket {
                tokens: (burst - f64::from(sent)).max(0.0),
                rate: f64::from(rates.messages_per_sec),
                burst,
                last: Instant::now(),
            }
        })
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    /// When the next token is there (now, if it is).
    fn ready_at(&mut self) -> Instant {
        self.refill();
        if self.tokens >= 1.0 {
            return self.last;
        }
        let wait = Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate).unwrap_or(LONGEST_PAUSE);
        self.last + wait.min(LONGEST_PAUSE)
    }

    /// Counts one message sent. It may go below zero (a ping sent while
    /// the bucket was empty), as the server's count does not forgive it.
    fn take(&mut self) {
        self.refill();
        self.tokens = (self.tokens - 1.0).max(-self.burst);
    }

    /// The server refused a message as too fast: its bucket is empty.
    fn empty(&mut self) {
        self.refill();
        self.tokens = self.tokens.min(0.0);
    }
}

/// The pause before the next retry: it grows while the server keeps
/// refusing and starts over after a delivery.
#[derive(Default)]
struct Backoff(Option<Duration>);

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self.0.map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE));
        self.0 = Some(pause);
        pause
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

/// Keeps `send` under the server's message rate: one message at a time,
/// each acknowledged before the next.
pub struct Pacer {
    bucket: Option<Bucket>,
    backoff: Backoff,
}

impl Pacer {
    /// A pacer for a session whose limits are `rates`, in which `sent`
    /// metered messages (a Join) were already sent since Welcome.
    pub fn new(rates: RateLimits, sent: u32) -> Self {
        Pacer { bucket: Bucket::new(rates, sent), backoff: Backoff::default() }
    }

    /// Waits until the server's bucket (as counted here) has a token, and
    /// takes it.
    async fn wait_turn(&mut self) {
        let Some(b) = &mut self.bucket else { return };
        tokio::time::sleep_until(b.ready_at()).await;
        b.take();
    }

    /// Leaves `room`, paced like a message and retried while the server
    /// says it comes too fast (after a long pipe the bucket is empty).
    pub async fn leave(&mut self, client: &mut Client, room: &str) -> Result<(), CliError> {
        self.paced(async || client.leave(room).await).await
    }

    /// Sends `text` and waits for its acknowledgement, pacing it and
    /// retrying while the server says it comes too fast.
    pub async fn send(&mut self, client: &mut Client, to: &Target, text: &str) -> Result<Acked, CliError> {
        self.paced(async || client.send_with_ack(to.clone(), text).await).await
    }

    /// Runs `request` when the bucket has a token, and again after a pause
    /// (at most [`RETRIES`] times) while the server answers `rate_limited`.
    pub async fn paced<T>(&mut self, mut request: impl AsyncFnMut() -> Result<T, ClientError>) -> Result<T, CliError> {
        let mut tries = 0;
        loop {
            self.wait_turn().await;
            match request().await {
                Ok(answer) => {
                    self.backoff.reset();
                    return Ok(answer);
                }
                Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) if tries < RETRIES => {
                    tries += 1;
                    if let Some(b) = &mut self.bucket {
                        b.empty();
                    }
                    tokio::time::sleep(self.backoff.next()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
