//! `--stdio`'s standard output: one writer task, a line at a time, fed by
//! a queue bounded in lines and in bytes; and the byte [`Budget`] that
//! counts responses the same way for each `--socket` client.
//!
//! Contract:
//! - Lines are written whole, in the order they were queued, each
//!   followed by `\n` and flushed.
//! - The queue holds at most [`OUT_BYTES`] bytes of lines (a longer line
//!   waits for the whole budget) and [`OUT_LINES`] lines; a line's bytes
//!   go back to the budget once it was written.
//! - A response's bytes are taken from the budget before its line is
//!   built ([`Out::send_response`]): a request whose answer does not fit
//!   waits holding only its result (not yet JSON text, which may be six
//!   times longer: `\u0001` for each control byte). So with a reader that
//!   stopped reading, the daemon holds at most [`OUT_BYTES`] of lines plus
//!   the results of the requests under way, each waiting its turn.
//! - A message notification is confirmed to the engine (the daemon passes
//!   [`cipherline_client::engine::Handover::handed`]) only once its line
//!   was written and flushed: until then the engine neither records the
//!   message nor acknowledges it to the relay, so a daemon killed with the
//!   line unwritten gets the message again after a restart.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of lines queued for standard output (or for one socket client's
/// responses) at most; a longer line waits for the whole budget. With a
/// reader that stopped reading, the daemon holds this and the results of
/// the requests under way, not hundreds of big answers.
pub(super) const OUT_BYTES: usize = 16 << 20;
/// Lines queued for standard output at most.
const OUT_LINES: usize = 256;

/// A line queued for standard output.
struct Queued {
    line: String,
    /// Its bytes of the budget, given back once it was written.
    _bytes: OwnedSemaphorePermit,
    /// A message notification, to confirm once written.
    message: bool,
}

/// A budget of bytes of lines waiting to be written (standard output's,
/// or one socket client's); cheap to clone.
#[derive(Clone)]
pub(super) struct Budget {
    semaphore: Arc<Semaphore>,
    /// The budget's size.
    bytes: usize,
}

impl Budget {
    /// A budget of `bytes`.
    pub(super) fn new(bytes: usize) -> Budget {
        Budget { semaphore: Arc::new(Semaphore::new(bytes)), bytes }
    }

    /// `len` bytes of the budget, once they are free (a line longer than
    /// the whole budget takes all of it); given back when the permit is
    /// dropped. An error only if the budget was closed.
    pub(super) async fn take(&self, len: usize) -> Result<OwnedSemaphorePermit, ()> {
        let bytes = u32::try_from(len.clamp(1, self.bytes)).unwrap_or(u32::MAX);
        self.semaphore.clone().acquire_many_owned(bytes).await.map_err(drop)
    }

    /// A response's line, built only once its bytes (measured first,
    /// without building it) were taken from the budget; with them.
    pub(super) async fn response(&self, response: Value) -> Result<(String, OwnedSemaphorePermit), ()> {
        let permit = self.take(json_len(&response)).await?;
        let line = response.to_string();
        drop(response);
        Ok((line, permit))
    }
}

/// The queue of lines for standard output; cheap to clone.
#[derive(Clone)]
pub(super) struct Out {
    tx: mpsc::Sender<Queued>,
    budget: Budget,
}

impl Out {
    /// The queue, and the writer task that empties it into `output`,
    /// calling `confirm` for each message notification written; the writer
    /// ends once every `Out` is dropped and the queue is written, or at a
    /// write error (dropping `confirm`).
    pub(super) fn new<W, C>(output: W, confirm: C) -> (Out, tokio::task::JoinHandle<()>)
    where
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
        C: FnMut() + Send + 'static,
    {
        Out::with_budget(output, confirm, OUT_BYTES)
    }

    /// [`Out::new`] with a budget of `bytes` (tests use small ones).
    fn with_budget<W, C>(output: W, confirm: C, bytes: usize) -> (Out, tokio::task::JoinHandle<()>)
    where
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
        C: FnMut() + Send + 'static,
    {
        let (tx, lines) = mpsc::channel(OUT_LINES);
        let out = Out { tx, budget: Budget::new(bytes) };
        (out, tokio::spawn(write(output, lines, confirm)))
    }

    /// Queues `line` once its bytes fit the budget; an error if the writer
    /// is gone. `message`: a message notification, confirmed to the engine
    /// once written.
    pub(super) async fn send(&self, line: String, message: bool) -> Result<(), ()> {
        let permit = self.budget.take(line.len()).await?;
        self.tx.send(Queued { line, _bytes: permit, message }).await.map_err(drop)
    }

    /// Queues a response: its line's bytes are counted (measured, not
    /// built) and taken from the budget first, then the line is built.
    pub(super) async fn send_response(&self, response: Value) -> Result<(), ()> {
        let (line, permit) = self.budget.response(response).await?;
        self.tx.send(Queued { line, _bytes: permit, message: false }).await.map_err(drop)
    }
}

/// The length of `value` written as JSON (as `to_string` writes it),
/// counted without building it.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` fails only if the writer does; this one never does.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Writes the queue to `output` by the rules in the module's doc.
async fn write<W>(mut output: W, mut lines: mpsc::Receiver<Queued>, mut confirm: impl FnMut())
where
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(queued) = lines.recv().await {
        let written = async {
            output.write_all(queued.line.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await
        };
        if written.await.is_err() {
            // Standard output is gone: dropping `confirm` (the engine's
            // handover) stops the engine.
            break;
        }
        // Written and flushed: only now may the engine record the message
        // and acknowledge it to the relay.
        if queued.message {
            confirm();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The writer confirms a message only once its line went through the
    /// pipe: with the far end unread, the message stays unconfirmed;
    /// other lines are never confirmed.
    #[tokio::test]
    async fn a_message_is_confirmed_only_once_its_line_was_written() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let confirmed = Arc::new(AtomicUsize::new(0));
        let count = confirmed.clone();
        // A pipe of 64 bytes: a longer line cannot be written until read.
        let (near, mut far) = tokio::io::duplex(64);
        let (out, writer) = Out::new(near, move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        out.send("a response".to_owned(), false).await.unwrap();
        out.send("x".repeat(200), true).await.unwrap();
        let mut first = vec![0u8; 11];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut first).await.unwrap();
        assert_eq!(first, b"a response\n");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(confirmed.load(Ordering::SeqCst), 0, "confirmed before the line was read");
        let mut line = vec![0u8; 201];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut line).await.unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        drop(out);
        tokio::time::timeout(Duration::from_secs(5), writer).await.unwrap().unwrap();
        assert_eq!(confirmed.load(Ordering::SeqCst), 1, "not confirmed once written");
    }

    /// A response is counted in the budget before its line exists: with
    /// the budget taken by a line not yet read, the next response waits,
    /// and goes once the reader reads.
    #[tokio::test]
    async fn a_response_waits_for_the_budget_before_it_is_built() {
        let big = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": { "text": "\u{1}".repeat(20) } });
        let line = big.to_string();
        assert_eq!(json_len(&big), line.len());
        assert!(line.len() > 120, "{line}");
        let (near, mut far) = tokio::io::duplex(16);
        let (out, writer) = Out::with_budget(near, || {}, 200);
        out.send("y".repeat(150), false).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), out.send_response(big.clone())).await;
        assert!(waiting.is_err(), "queued past the budget");
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut all).await.unwrap();
            all
        });
        tokio::time::timeout(Duration::from_secs(5), out.send_response(big)).await.unwrap().unwrap();
        drop(out);
        tokio::time::timeout(Duration::from_secs(5), writer).await.unwrap().unwrap();
        let all = reader.await.unwrap();
        assert_eq!(all, format!("{}\n{line}\n", "y".repeat(150)).into_bytes());
    }
}
