//! `send --file` on the one-shot engine: the conversation readied as for
//! a text, [`Command::SendFile`], then the engine's events for that one
//! transfer until it ends. End to end (the engine's `s` transfers) it
//! shows a progress bar on a terminal, or with `--json` the lines
//! `file_started`, `file_progress` and `file_sent` (from
//! [`Event::Upload`] and [`Event::Transfer`]); the version-1 way (`o`
//! transfers: an open room, or no identity key) it says the file is
//! readable by the relay and shows a bar. A failure's exit code follows
//! its kind ([`FailReason`]), never the engine's wording.

use std::path::Path;
use std::time::Duration;

use cipherline_client::ClientError;
use cipherline_client::display::escape;
use cipherline_client::engine::{
    Command, ConnectionState, Event, FailReason, ReceiverAnswer, Reply, TransferState, UploadFacts,
};
use indicatif::ProgressBar;
use serde_json::json;

use super::{Front, SendArgs};
use crate::error::CliError;
use crate::files::{hex, progress_bar};
use crate::transfers::JsonProgress;

/// How long `send --file` waits for any word of its transfer, beyond
/// `--answer-timeout`, before it gives up. The engine's own limits end a
/// transfer sooner (the answer wait; the relay's reply time; at most
/// 150 s for the relay to store a whole upload): this bounds the wait
/// should the engine fall silent.
const QUIET_LIMIT: Duration = Duration::from_secs(300);

impl Front {
    /// Sends `path` (`size` bytes) to `--to` or `--room` and waits until
    /// it was sent whole (end to end: stored by the relay; version 1:
    /// confirmed by every receiver that accepted it).
    pub(super) async fn file(&mut self, args: &SendArgs, path: &Path, size: u64) -> Result<(), CliError> {
        let target = self.prepare(args).await?;
        let transfer = match self.call(Command::SendFile { to: target, path: path.to_owned() }).await? {
            Reply::Transfer { transfer } => transfer,
            _ => return Err(CliError::Client(ClientError::Engine("an unexpected answer to a file".to_owned()))),
        };
        let name = path.file_name().map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        // The engine names a version-1 transfer `o…`, an upload `s…`.
        let mut shown = if transfer.starts_with('o') {
            eprintln!(
                "note: this file is not end-to-end encrypted: the server relays it readable (signed if you have a key)"
            );
            eprintln!("offered {} ({size} bytes); waiting for the receiver to accept", escape(&name));
            Shown::offer(name, size, args.answer_timeout)
        } else {
            Shown::upload(args.json)
        };
        let result = self.follow(&transfer, &mut shown, args).await;
        shown.clear();
        if result.is_err() {
            // Leave a room joined for this file all the same; the
            // failure is what to report.
            let _ = self.call(Command::Finish).await;
            return result;
        }
        self.call(Command::Finish).await?;
        Ok(())
    }

    /// The engine's events until `transfer` ends, each awaited for a
    /// bounded time.
    async fn follow(&mut self, transfer: &str, shown: &mut Shown, args: &SendArgs) -> Result<(), CliError> {
        let limit = Duration::from_secs(args.answer_timeout).saturating_add(QUIET_LIMIT);
        loop {
            let event = match tokio::time::timeout(limit, self.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(CliError::failed("the client engine stopped", "send the file again")),
                Err(_) => {
                    return Err(CliError::timed_out(
                        format!("no word of the file's transfer for {} s", limit.as_secs()),
                        "send the file again (an end-to-end upload continues where it stopped)",
                    ));
                }
            };
            match event {
                Event::Upload(facts) if facts.transfer == transfer => shown.facts(facts),
                Event::Receiver { transfer: t, name, by, answer } if t == transfer => shown.answer(&name, &by, &answer),
                Event::Transfer { transfer: t, done, total, state, .. } if t == transfer => match state {
                    TransferState::Done => return shown.sent(),
                    TransferState::Failed { reason, why } => return Err(shown.failed(&reason, &why)),
                    TransferState::Cancelled => {
                        return Err(CliError::failed("the file's transfer was cancelled", "send the file again"));
                    }
                    _ => shown.progress(done, total),
                },
                Event::Connection(ConnectionState::Stopped { reason }) => {
                    return Err(CliError::failed(
                        format!("the connection was lost: {}", escape(&reason)),
                        "send the file again (an end-to-end upload continues where it stopped)",
                    ));
                }
                other => self.note(other)?,
            }
        }
    }
}

/// What `send --file` shows of its transfer.
enum Shown {
    /// An end-to-end upload.
    Upload {
        json: bool,
        /// Its facts with its hash, once sent whole.
        sent: Option<Box<UploadFacts>>,
        /// Once it started (the engine said so).
        bar: Option<ProgressBar>,
        /// Once it started: the JSON lines name it by its `u` id.
        progress: Option<JsonProgress>,
    },
    /// A version-1 offer.
    Offer { name: String, size: u64, answer_timeout: u64, bar: ProgressBar },
}

impl Shown {
    fn upload(json: bool) -> Self {
        Shown::Upload { json, sent: None, bar: None, progress: None }
    }

    fn offer(name: String, size: u64, answer_timeout: u64) -> Self {
        let bar = progress_bar(size, &escape(&name));
        Shown::Offer { name, size, answer_timeout, bar }
    }

    /// An upload's start (shown), or its hash (kept for its end).
    fn facts(&mut self, facts: UploadFacts) {
        let Shown::Upload { json, sent, bar, progress } = self else { return };
        if facts.sha256.is_some() {
            *sent = Some(Box::new(facts));
            return;
        }
        let id = format!("u{}", facts.upload);
        if *json {
            println!(
                "{}",
                json!({ "event": "file_started", "id": id, "from": facts.from, "total": facts.total,
                        "resumed": facts.resumed })
            );
        } else {
            if facts.resumed {
                eprintln!("resuming the upload at {} of {} bytes", facts.from, facts.total);
            }
            let b = progress_bar(facts.total, "sending");
            b.set_position(facts.from);
            *bar = Some(b);
        }
        *progress = Some(JsonProgress::new(*json, id));
    }

    /// Bytes done of total (an upload's shown once it has started).
    /// One receiver's answer to a version-1 offer, on standard error (as
    /// the progress bar and the outcome).
    fn answer(&self, name: &str, by: &str, answer: &ReceiverAnswer) {
        let Shown::Offer { bar, .. } = self else { return };
        bar.suspend(|| eprintln!("{}", crate::output::receiver_answer(name, by, answer)));
    }

    fn progress(&mut self, done: u64, total: u64) {
        match self {
            Shown::Upload { bar, progress, .. } => {
                if let Some(b) = bar {
                    b.set_position(done);
                }
                if let Some(p) = progress {
                    p.progress(done, total);
                }
            }
            Shown::Offer { bar, .. } => bar.set_position(done),
        }
    }

    /// The bar gone.
    fn clear(&self) {
        match self {
            Shown::Upload { bar: Some(b), .. } | Shown::Offer { bar: b, .. } => b.finish_and_clear(),
            Shown::Upload { bar: None, .. } => {}
        }
    }

    /// Sent whole: says so.
    fn sent(&mut self) -> Result<(), CliError> {
        match self {
            Shown::Offer { name, size, bar, .. } => {
                bar.finish_and_clear();
                eprintln!("sent {} ({size} bytes); checked by every receiver that accepted it", escape(name));
            }
            Shown::Upload { json, sent, bar, progress, .. } => {
                let Some(done) = sent.take() else {
                    return Err(CliError::failed(
                        "the file was sent, but the client engine did not say its hash",
                        "see `cipherline files list`",
                    ));
                };
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let sha256 = hex(&done.sha256.unwrap_or_default());
                if *json {
                    if let Some(p) = progress {
                        p.progress(done.total, done.total);
                    }
                    println!(
                        "{}",
                        json!({ "event": "file_sent", "id": format!("u{}", done.upload), "name": done.name,
                                "size": done.total, "sha256": sha256, "resumed": done.resumed,
                                "resumed_from": done.from })
                    );
                } else {
                    eprintln!(
                        "sent {} ({} bytes, SHA-256 {sha256}, end-to-end encrypted){}",
                        escape(&done.name),
                        done.total,
                        if done.resumed { ", resumed" } else { "" }
                    );
                }
            }
        }
        Ok(())
    }

    /// The error a failure of kind `reason` (`why` in words, raw) ends
    /// `send` with: its exit code as the library error behind it had.
    fn failed(&self, reason: &FailReason, why: &str) -> CliError {
        let why = escape(why);
        let again = "run the same command again: an interrupted upload continues where it stopped";
        match (self, reason) {
            (Shown::Upload { .. }, FailReason::TooLarge) => CliError::refused(
                why,
                "cancel files you sent that nobody fetched (`cipherline files list`, `cipherline files cancel ID`), \
                 wait for them to expire, or ask the relay's operator for more room",
            ),
            (Shown::Upload { .. }, FailReason::Refused) => CliError::refused(
                why,
                "end-to-end files need an identity key, a relay with a store, and membership of the conversation",
            ),
            (Shown::Upload { .. }, FailReason::Cancelled) => {
                CliError::refused(why, "it was cancelled at the relay: send it again")
            }
            (Shown::Upload { .. }, FailReason::TimedOut) => CliError::timed_out(why, again),
            (Shown::Upload { .. }, _) => CliError::failed(why, again),
            (Shown::Offer { name, .. }, FailReason::Refused) => CliError::refused(
                format!("{} was not sent: {why}", escape(name)),
                "check the spelling; a version-1 file goes only to users connected right now",
            ),
            (Shown::Offer { name, .. }, FailReason::Declined { by }) => CliError::failed(
                format!("{} was declined by {}", escape(name), escape(&by.join(", "))),
                "nothing was sent",
            ),
            (Shown::Offer { name, answer_timeout, .. }, FailReason::TimedOut) => CliError::failed(
                format!("{} was not sent: {why} (waited {answer_timeout} s)", escape(name)),
                "ask the receiver to accept (in chat: /accept), or use --answer-timeout",
            ),
            (Shown::Offer { name, .. }, _) => {
                CliError::failed(format!("{} was not sent: {why}", escape(name)), "send the file again")
            }
        }
    }
}
