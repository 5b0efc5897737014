//! Pacing: keeping a client under the server's message rate (PROTOCOL.md
//! §13.5), for `send` ([`Pacer`]) and `chat` ([`Outbox`]).
//!
//! The server announces its message bucket in Welcome; a client keeps a
//! copy of it and waits for a token before each message, so a long pipe or
//! a pasted block goes out at the rate the server allows from the start.
//! The copy can drift (the byte bucket, which depends on a room's audience,
//! is not modelled; pings and joins count too), so a message the server
//! still refuses with `rate_limited` (the connection stays) is sent again
//! after a pause that doubles each time, a few times at most.

use std::collections::{HashMap, VecDeque};
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

/// The most lines `chat` holds unsent; input is not read while it is full
/// (a single pasted block may go over it: the user typed it, not a peer).
pub const MAX_QUEUED: usize = 4096;
/// The most of chat's messages sent but not yet acknowledged: past it, the
/// queue waits for acknowledgements (they are kept for a resend).
pub const MAX_IN_FLIGHT: usize = 256;

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

/// A text chat sent (or is about to send again).
pub struct Said {
    /// Its place among the texts chat sent: a resend goes back in order.
    seq: u64,
    /// Where it goes.
    pub to: Target,
    /// What it says.
    pub text: String,
    /// How often the server refused it as too fast.
    tries: u32,
    /// Once encrypted for an end-to-end conversation: the group and the
    /// MLS payload. A resend sends this same payload (sealing again would
    /// take a new number of the sender's counter, and the others would see
    /// a gap).
    pub sealed: Option<(Vec<u8>, Vec<u8>)>,
}

/// What waits in chat's queue.
pub enum Queued {
    /// A line as entered (a command or text), handled when its turn comes,
    /// so that a text after `/join` goes to the room joined.
    Line(String),
    /// A text the server refused as too fast, to send again.
    Resend(Said),
    /// The user quit (a quit word, or the end of input): after the lines before.
    Quit,
}

/// What became of a message the server refused.
pub enum Refused {
    /// Not one of chat's texts (or not `rate_limited`).
    Other,
    /// Queued again, to go after a pause.
    Retrying,
    /// Refused too often: given up.
    GaveUp(Said),
}

/// Chat's outgoing lines: queued as entered, handed out as the server's
/// bucket (as counted here) allows, so the chat loop never sleeps on it
/// and keeps reading messages and sending pings meanwhile.
pub struct Outbox {
    queue: VecDeque<Queued>,
    /// Texts sent and not yet acknowledged, by client id.
    in_flight: HashMap<u64, Said>,
    bucket: Option<Bucket>,
    backoff: Backoff,
    /// After a `rate_limited`, nothing is sent before this.
    paused_until: Option<Instant>,
    next_seq: u64,
}

impl Outbox {
    /// An empty outbox for a session whose limits are `rates`, after `sent`
    /// metered messages.
    pub fn new(rates: RateLimits, sent: u32) -> Self {
        Outbox {
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            bucket: Bucket::new(rates, sent),
            backoff: Backoff::default(),
            paused_until: None,
            next_seq: 0,
        }
    }

    /// Whether more input may be read (the queue is under its cap).
    pub fn has_room(&self) -> bool {
        self.queue.len() < MAX_QUEUED
    }

    /// Queues an entry after the others.
    pub fn push(&mut self, entry: Queued) {
        self.queue.push_back(entry);
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether every text sent was acknowledged (or given up).
    pub fn all_answered(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Drops the lines still queued (the user quit); resends stay.
    pub fn drop_lines(&mut self) {
        self.queue.retain(|q| matches!(q, Queued::Resend(_)));
    }

    /// When the next entry may be handled: `None` if none waits or too
    /// many texts are unacknowledged. After a `rate_limited`, until the
    /// next acknowledgement, texts go one at a time: each is answered
    /// before the next is sent, so resent texts keep their order.
    pub fn due(&mut self) -> Option<Instant> {
        let most = if self.backoff.0.is_some() { 1 } else { MAX_IN_FLIGHT };
        if self.queue.is_empty() || self.in_flight.len() >= most {
            return None;
        }
        let ready = self.bucket.as_mut().map_or_else(Instant::now, Bucket::ready_at);
        Some(self.paused_until.map_or(ready, |p| p.max(ready)))
    }

    /// The next entry, counting a token for it (a line may send a message).
    pub fn pop(&mut self) -> Option<Queued> {
        let entry = self.queue.pop_front()?;
        if !matches!(entry, Queued::Quit) {
            self.spend();
        }
        Some(entry)
    }

    /// Counts a message sent outside the queue (a ping).
    pub fn spend(&mut self) {
        if let Some(b) = &mut self.bucket {
            b.take();
        }
    }

    /// A new text for `to`, numbered after every earlier one.
    pub fn said(&mut self, to: Target, text: &str) -> Said {
        self.next_seq += 1;
        Said { seq: self.next_seq, to, text: text.to_owned(), tries: 0, sealed: None }
    }

    /// `said` went out with client id `id`.
    pub fn sent(&mut self, id: u64, said: Said) {
        self.in_flight.insert(id, said);
    }

    /// The server acknowledged `id`.
    pub fn acked(&mut self, id: u64) -> Option<Said> {
        let said = self.in_flight.remove(&id);
        if said.is_some() {
            self.backoff.reset();
        }
        said
    }

    /// The connection was lost: the texts sent and not acknowledged, in
    /// the order they were sent (the server may or may not have stored
    /// them, so they are not sent again on their own).
    pub fn take_unanswered(&mut self) -> Vec<Said> {
        let mut lost: Vec<Said> = self.in_flight.drain().map(|(_, said)| said).collect();
        lost.sort_by_key(|s| s.seq);
        lost
    }

    /// A new session with limits `rates` began, after `sent` metered
    /// messages (its Joins): pace by its bucket; the queue stays.
    pub fn restart(&mut self, rates: RateLimits, sent: u32) {
        self.bucket = Bucket::new(rates, sent);
        self.backoff.reset();
        self.paused_until = None;
    }

    /// How many lines and texts wait to be sent.
    pub fn unsent(&self) -> usize {
        self.queue.iter().filter(|q| !matches!(q, Queued::Quit)).count()
    }

    /// The server refused `id` with `code`: a text refused as too fast is
    /// queued again ahead of the lines not yet sent, in the order the texts
    /// were first sent, after a pause.
    pub fn refused(&mut self, id: u64, code: ErrorCode) -> Refused {
        let Some(mut said) = self.in_flight.remove(&id) else { return Refused::Other };
        if code != ErrorCode::RateLimited {
            return Refused::Other;
        }
        if said.tries >= RETRIES {
            return Refused::GaveUp(said);
        }
        said.tries += 1;
        if let Some(b) = &mut self.bucket {
            b.empty();
        }
        self.paused_until = Some(Instant::now() + self.backoff.next());
        let at = self.queue.iter().take_while(|q| matches!(q, Queued::Resend(s) if s.seq < said.seq)).count();
        self.queue.insert(at, Queued::Resend(said));
        Refused::Retrying
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn rates(per_sec: u32, burst: u32) -> RateLimits {
        RateLimits { messages_per_sec: per_sec, burst, bytes_per_sec: 0, bytes_burst: 0 }
    }

    #[tokio::test]
    async fn an_outbox_hands_out_the_burst_then_waits_for_tokens() {
        let mut o = Outbox::new(rates(10, 3), 0);
        for i in 0..5 {
            o.push(Queued::Line(format!("{i}")));
        }
        for _ in 0..3 {
            assert!(o.due().unwrap() <= Instant::now());
            assert!(o.pop().is_some());
        }
        assert!(o.due().unwrap() > Instant::now(), "the burst is spent");
    }

    #[test]
    fn a_lost_connection_hands_back_the_unacknowledged_texts_in_order_and_keeps_the_queue() {
        let mut o = Outbox::new(rates(10, 40), 0);
        // Client ids need not follow the order the texts were said in.
        for (id, text) in [(9, "first"), (3, "second"), (5, "third")] {
            let said = o.said(Target::Room("lobby".into()), text);
            o.sent(id, said);
        }
        o.acked(3);
        o.push(Queued::Line("typed while away".into()));
        o.push(Queued::Quit);
        let lost: Vec<String> = o.take_unanswered().into_iter().map(|s| s.text).collect();
        assert_eq!(lost, ["first", "third"]);
        assert!(o.all_answered());
        assert_eq!(o.unsent(), 1, "the line waits; a quit is not a line");
        o.restart(rates(10, 40), 2);
        assert!(matches!(o.pop(), Some(Queued::Line(l)) if l == "typed while away"));
    }

    #[tokio::test]
    async fn a_text_refused_as_too_fast_goes_back_in_order_and_is_given_up_after_the_retries() {
        let mut o = Outbox::new(rates(10, 40), 0);
        o.push(Queued::Line("later".into()));
        for id in [1, 2] {
            let said = o.said(Target::Room("lobby".into()), &format!("t{id}"));
            o.sent(id, said);
        }
        assert!(matches!(o.refused(2, ErrorCode::RateLimited), Refused::Retrying));
        assert!(matches!(o.refused(1, ErrorCode::RateLimited), Refused::Retrying));
        let order: Vec<String> = std::iter::from_fn(|| o.pop())
            .map(|q| match q {
                Queued::Resend(s) => s.text,
                Queued::Line(l) => l,
                Queued::Quit => panic!("no quit"),
            })
            .collect();
        assert_eq!(order, ["t1", "t2", "later"]);
        let mut said = o.said(Target::Room("lobby".into()), "x");
        said.tries = RETRIES;
        o.sent(3, said);
        assert!(matches!(o.refused(3, ErrorCode::RateLimited), Refused::GaveUp(_)));
        assert!(o.all_answered());
    }
}
