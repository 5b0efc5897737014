//! `cipherline listen`: print incoming messages, for scripts; a front-end
//! on the client engine ([`cipherline_client::engine`]) like `chat`.
//!
//! - this module: the arguments, the engine's first connection, the room,
//!   and the loop that prints the engine's events until --count or
//!   --timeout;
//! - [`files`]: files offered, accepted within --max-file-size and
//!   --max-total, and how they end.
//!
//! A message is acknowledged to the relay only once it was written out
//! (the engine's [`cipherline_client::engine::Handover`]): a listen killed
//! before that gets it again next time. The engine reconnects by itself;
//! without --reconnect a lost connection ends the run.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_client::ClientError;
use cipherline_client::display::escape;
use cipherline_client::engine::{
    Command, ConnectionState, Engine, EngineHandle, Event, GroupChange, Handover, KeyInfo, Message, Reply, Verified,
};
use cipherline_client::local::{Direction, Msg};
use cipherline_proto::app::{ErrorCode, Target, fold_name};
use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client_args::ClientArgs;
use crate::connector::{Failure, Flags};
use crate::error::{CliError, exit};
use crate::output::{history_json, live_line};

mod files;

/// Print messages from a room (and direct messages) as they arrive, one
/// per line, until --count messages or --timeout seconds.
///
/// Exit codes (the table in README.md): 0 done; 7 --timeout ran out before
/// --count messages, or before listen could connect; 3, 4, 5, 6 as for
/// `send`. --timeout bounds the whole run, reconnections included.
#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The room to listen to.
    #[arg(long, value_name = "ROOM", default_value = "lobby")]
    pub room: String,

    /// Exit after this many messages (files count too).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    /// Exit after this many seconds in all (reconnections included).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// One JSON object per line: {"id","from","room" or "to","text","timestamp","verified","e2e"}
    /// ("e2e": true for a message end-to-end encrypted (MLS), false for one
    /// the server could read: an open room such as the lobby);
    /// (the exact text: without --json, control and format characters are
    /// shown escaped and a multi-line text continues on lines starting with
    /// "  | "); received files as {"file": {"from","path","size","sha256","verified"}};
    /// offers declined over a limit as {"file_declined": {"from","name","size","reason"}}.
    /// "verified" is new, known, verified, unsigned, invalid-signature or key-changed.
    /// An end-to-end message that was not shown (altered, forged or replayed
    /// on the way) is {"e2e_error": {"id","text"}}; a gap in a sender's
    /// messages {"e2e_notice": {"id","text"}}.
    #[arg(long)]
    pub json: bool,

    /// Accept offered files into this directory (otherwise offers are shown
    /// and left unanswered: another session of this identity may accept
    /// them, or they expire). Files sent end to end are fetched in the
    /// background (a few at once), and those this data directory left
    /// unfinished, or that were sent while it was away, continue by
    /// themselves; with --json: {"event":"file_offered"}, throttled
    /// {"event":"file_progress"}, then {"event":"file_saved","path","sha256",…}
    /// or {"event":"file_failed","reason"}. A saved file counts for --count.
    #[arg(long, value_name = "DIR")]
    pub accept_files: Option<PathBuf>,

    /// With --accept-files: decline (telling the sender why) any file larger
    /// than SIZE: bytes, or with a suffix K, M, G or T (powers of 1024). A
    /// larger file sent end to end is shown and kept as offered (fetch it
    /// with `cipherline files get`).
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub max_file_size: u64,

    /// With --accept-files: decline offers once this run has accepted SIZE
    /// in total (files that fail or are cancelled do not count). Files sent
    /// end to end count too: one that does not fit is shown and kept as
    /// offered.
    #[arg(long, value_name = "SIZE", default_value = "10G", value_parser = parse_size)]
    pub max_total: u64,

    /// If the connection drops, connect again (waiting 1, 2, 4 … 30 s).
    #[arg(long)]
    pub reconnect: bool,
}

/// How one engine's run ended.
enum Ended {
    /// --count reached.
    Done,
    /// --timeout ran out while listening.
    TimedOut,
    /// --timeout ran out before the first connection (and the room).
    NotInTime,
    /// The first connection failed.
    NotConnected(CliError),
    /// The connection was lost (without --reconnect) or the engine stopped.
    Lost(CliError),
}

/// How long the engine gets to say goodbye to the server.
const ENGINE_STOP: Duration = Duration::from_secs(5);

/// Runs `listen` (in a LocalSet: the engine's transfers are local tasks).
pub async fn run(args: &'static ListenArgs) -> Result<(), CliError> {
    tokio::task::LocalSet::new().run_until(run_here(args)).await
}

async fn run_here(args: &'static ListenArgs) -> Result<(), CliError> {
    if let Some(dir) = &args.accept_files
        && !dir.is_dir()
    {
        return Err(CliError::usage(format!("{} is not a directory", dir.display()), "create it first"));
    }
    let deadline = args.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    // Across engines (a first connection tried again): the count, the quota.
    let mut listen = Listen {
        args,
        deadline,
        seen: 0,
        files: files::Files::new(args),
        queue: VecDeque::new(),
        notices: VecDeque::new(),
    };
    let mut backoff = cipherline_client::engine::FIRST_RETRY;
    loop {
        let flags = Flags::new(&args.client);
        let failure = flags.failure();
        let (engine, handle, events) =
            Engine::new(flags, args.client.home().to_string(), std::slice::from_ref(&args.room));
        let mut engine = engine.resume_downloads(args.accept_files.is_some());
        let handover = engine.handover();
        let task = tokio::task::spawn_local(engine.run());
        let mut link = Link { handle, events, handover, failure };
        let ended = listen.session(&mut link).await;
        drop(link);
        let _ = tokio::time::timeout(ENGINE_STOP, task).await;
        match ended {
            Ended::Done => return Ok(()),
            Ended::TimedOut => {
                return match args.count {
                    Some(_) => Err(listen.out_of_time("")),
                    // Without --count, --timeout is how long to listen.
                    None => Ok(()),
                };
            }
            Ended::NotInTime => return Err(listen.out_of_time("before listen could connect")),
            // The engine retries only after a first success (a wrong
            // address should be reported); --reconnect asks for more.
            Ended::NotConnected(e)
                if args.reconnect && (e.exit_code() == exit::UNREACHABLE || crate::link::passing(&e)) =>
            {
                eprintln!("{e}; retrying in {} s", backoff.as_secs());
                if !pause(backoff, deadline).await {
                    return Err(listen.out_of_time("before listen could connect again"));
                }
                backoff = (backoff * 2).min(cipherline_client::engine::LAST_RETRY);
            }
            Ended::NotConnected(e) | Ended::Lost(e) => return Err(e),
        }
    }
}

/// Waits `length`, but not past `deadline`: --timeout bounds the whole run,
/// reconnection pauses included. False if the deadline came first.
async fn pause(length: Duration, deadline: Option<Instant>) -> bool {
    let wake = Instant::now() + length;
    match deadline {
        Some(d) if d <= wake => {
            tokio::time::sleep_until(d).await;
            false
        }
        _ => {
            tokio::time::sleep_until(wake).await;
            true
        }
    }
}

/// The room refused (an end-to-end room this user is not in), with what
/// to do.
fn room_refused(e: ClientError, room: &str) -> CliError {
    match e {
        ClientError::Refused { code: ErrorCode::EndToEnd | ErrorCode::NotInRoom, text } => CliError::failed(
            format!("{}", escape(&text)),
            format!(
                "{} is an end-to-end room: a member adds you with `cipherline room invite {0} YOUR_NAME` (or join a \
                 public one with `cipherline room join {0}`)",
                escape(room)
            ),
        ),
        other => CliError::Client(other),
    }
}

/// The error for a connection that could not be made or was ended for
/// good: the connector's (with its exit code), else the engine's words.
fn failed(failure: &Failure, reason: &str) -> CliError {
    failure.borrow_mut().take().unwrap_or_else(|| {
        CliError::failed(format!("the server closed the connection: {}", escape(reason)), "see above")
    })
}

/// One engine: its handle, its events, and the confirmation of messages.
struct Link {
    handle: EngineHandle,
    events: mpsc::Receiver<Event>,
    handover: Handover,
    failure: Failure,
}

/// What a run keeps.
pub(super) struct Listen {
    args: &'static ListenArgs,
    deadline: Option<Instant>,
    /// Messages (and files) shown, for --count.
    seen: u64,
    files: files::Files,
    /// Events taken while a command was answered, shown next.
    queue: VecDeque<Event>,
    /// Senders whose key needs a word after their message (first seen,
    /// or changed): said once the engine was asked what it knows.
    notices: VecDeque<(String, Verified)>,
}

/// A whole run's end as far from now.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl Listen {
    /// The error (exit code 7) for a --timeout that ran out; `when` says
    /// what was still under way, if not listening.
    fn out_of_time(&self, when: &str) -> CliError {
        let args = self.args;
        let seen = self.seen;
        let secs = args.timeout.unwrap_or_default();
        let what = match (args.count, when) {
            (Some(n), "") => format!("--timeout {secs} s ran out: only {seen} of {n} messages arrived"),
            (Some(n), when) => format!("--timeout {secs} s ran out {when}: {seen} of {n} messages arrived"),
            (None, when) => format!("--timeout {secs} s ran out {when}"),
        };
        let hint = if when.is_empty() {
            "raise --timeout, or check that the senders use the same room (--room)"
        } else {
            "is the server running? check --server, or raise --timeout"
        };
        CliError::timed_out(what, hint)
    }

    /// One engine's run: the first connection, the room, then events.
    async fn session(&mut self, link: &mut Link) -> Ended {
        let deadline = self.deadline.unwrap_or_else(far);
        loop {
            let event = tokio::select! {
                event = link.events.recv() => event,
                () = tokio::time::sleep_until(deadline) => return Ended::NotInTime,
            };
            match event {
                Some(Event::Connection(ConnectionState::Connected { .. })) => break,
                Some(Event::Connection(
                    ConnectionState::Stopped { reason } | ConnectionState::Reconnecting { reason, .. },
                )) => return Ended::NotConnected(connect_failed(&link.failure, &reason)),
                None => return Ended::NotConnected(connect_failed(&link.failure, "the engine stopped")),
                Some(other) => self.queue.push_back(other),
            }
        }
        let setup = tokio::time::timeout_at(deadline, self.enter(link));
        match setup.await {
            Err(_) => return Ended::NotInTime,
            Ok(Err(_)) if self.args.count.is_some_and(|n| self.seen >= n) => return Ended::Done,
            Ok(Err(ended)) => return ended,
            Ok(Ok(())) => {}
        }
        let mut reconnecting = false;
        loop {
            // Said even when --count is reached (the message came first).
            if let Some((name, verified)) = self.notices.pop_front() {
                let info = match self.ask(link, Command::KeyInfo(name.clone())).await {
                    Ok(Reply::KeyInfo(info)) => Some(info),
                    _ => None,
                };
                if let Some(notice) = key_notice(&name, verified, info.as_ref()) {
                    eprintln!("{notice}");
                }
                continue;
            }
            if self.args.count.is_some_and(|n| self.seen >= n) {
                return Ended::Done;
            }
            let event = match self.queue.pop_front() {
                Some(event) => event,
                None => {
                    let retry = self.files.next_retry();
                    tokio::select! {
                        event = link.events.recv() => match event {
                            Some(event) => event,
                            None => return Ended::Lost(failed(&link.failure, "the engine stopped")),
                        },
                        () = tokio::time::sleep_until(deadline) => return Ended::TimedOut,
                        () = tokio::time::sleep_until(retry.unwrap_or_else(far)), if retry.is_some() => {
                            if let Err(ended) = self.retry_due(link).await {
                                return ended;
                            }
                            continue;
                        }
                    }
                }
            };
            match event {
                Event::Connection(ConnectionState::Reconnecting { reason, retry_in }) => {
                    if !self.args.reconnect {
                        return Ended::Lost(CliError::failed(
                            format!("connection lost: {}", escape(&reason)),
                            "connect again, or use --reconnect",
                        ));
                    }
                    if reconnecting {
                        eprintln!("{}; retrying in {} s", escape(&reason), retry_in.as_secs());
                    } else {
                        eprintln!("connection lost: {}; reconnecting in {} s", escape(&reason), retry_in.as_secs());
                    }
                    reconnecting = true;
                    // Version-1 transfers ended with the connection (their
                    // bytes no longer count against --max-total).
                }
                Event::Connection(ConnectionState::Connected { .. }) => reconnecting = false,
                Event::Connection(ConnectionState::Stopped { reason }) => {
                    return Ended::Lost(failed(&link.failure, &reason));
                }
                Event::Connection(ConnectionState::Connecting) => {}
                other => {
                    if let Err(ended) = self.on_event(link, other).await {
                        return ended;
                    }
                }
            }
        }
    }

    /// The room: an open one is joined (the engine joined it already,
    /// and does again after each reconnection); an end-to-end one is not
    /// (its group delivers to its members), but this user must be on the
    /// relay's list. Then what the server keeps, and files left pending.
    async fn enter(&mut self, link: &mut Link) -> Result<(), Ended> {
        let args = self.args;
        let room = &args.room;
        let joined = |reply: &Reply| match reply {
            Reply::Status(status) => status.rooms.iter().any(|r| fold_name(r) == fold_name(room)),
            _ => false,
        };
        let status = self.ask(link, Command::Status).await.map_err(|e| Ended::NotConnected(CliError::Client(e)))?;
        let direct_e2e = matches!(&status, Reply::Status(s) if s.e2e);
        if !joined(&status) {
            let info = self.ask(link, Command::RoomInfo(room.clone())).await;
            let e2e_room =
                matches!(&info, Ok(Reply::RoomInfo(r)) if r.kind.is_some_and(cipherline_proto::app::RoomKind::is_e2e));
            let refused = |e: ClientError| Ended::NotConnected(room_refused(e, room));
            if e2e_room && direct_e2e {
                // A member (whose invitation may still wait in its queue)
                // is on the relay's list; anyone else is told what to do.
                self.ask(link, Command::Members(room.clone())).await.map_err(refused)?;
            } else {
                self.ask(link, Command::Join(room.clone())).await.map_err(refused)?;
                self.note_open();
            }
        } else {
            self.note_open();
        }
        if let Ok(Reply::Session(s)) = self.ask(link, Command::Session).await
            && !s.stored
            && !self.args.json
        {
            eprintln!(
                "note: this server keeps nothing for you while you are away (live delivery only: connect with an \
                 identity key to have messages stored)"
            );
        }
        self.pending_at_start(link).await
    }

    fn note_open(&self) {
        if !self.args.json {
            eprintln!(
                "note: {} is not end-to-end encrypted: the server can read what is said there",
                escape(&self.args.room)
            );
        }
    }

    /// Runs a command; meanwhile events are taken (messages are shown and
    /// confirmed at once, since the engine waits for that before it
    /// answers, and so are group changes, to keep their order; files and
    /// the connection are kept for later), so the engine never waits
    /// on a full event channel for an answer that waits on it.
    async fn ask(&mut self, link: &mut Link, command: Command) -> Result<Reply, ClientError> {
        let handle = link.handle.clone();
        let answer = handle.run(command);
        let mut answer = std::pin::pin!(answer);
        loop {
            tokio::select! {
                reply = &mut answer => return reply,
                event = link.events.recv() => match event {
                    // --count reached: the message is left unconfirmed
                    // (so not acknowledged: the next run gets it), and the
                    // answer is not waited for (the engine waits first).
                    Some(event @ Event::Message(_)) if self.args.count.is_some_and(|n| self.seen >= n) => {
                        self.queue.push_front(event);
                        return Err(ClientError::Engine("--count reached".to_owned()));
                    }
                    Some(event) => match self.show_now(link, event) {
                        Ok(None) => {}
                        Ok(Some(event)) => self.queue.push_back(event),
                        Err(_) => return Err(ClientError::Engine("cannot write to standard output".to_owned())),
                    },
                    None => return Err(ClientError::Engine("the engine stopped".to_owned())),
                },
            }
        }
    }

    /// One event (not the connection's).
    async fn on_event(&mut self, link: &mut Link, event: Event) -> Result<(), Ended> {
        match self.show_now(link, event) {
            Err(e) => return Err(Ended::Lost(e)),
            Ok(None) => {}
            Ok(Some(Event::FileOffered { id, from, name, size, e2e, .. })) => {
                self.offered(link, files::Offered { id, from, name, size, e2e }).await?;
            }
            Ok(Some(Event::Transfer { transfer, done, total, state, path, .. })) => {
                self.transfer(link, files::Progress { transfer, done, total, state, path }).await?;
            }
            Ok(Some(_)) => {}
        }
        let _ = std::io::stdout().flush();
        Ok(())
    }

    /// Shows what needs no command (messages, group changes, people
    /// joining); hands back the rest (files, the connection).
    fn show_now(&mut self, link: &Link, event: Event) -> Result<Option<Event>, CliError> {
        match event {
            Event::Message(m) => self.message(link, &m)?,
            Event::Group { id, text, change } => self.group(id, &text, &change),
            Event::Membership { room, name, joined } => {
                if !self.args.json {
                    eprintln!("* {} {} {}", escape(&name), if joined { "joined" } else { "left" }, escape(&room));
                }
            }
            Event::Expired { id, to } => self.expired(link, id, &to)?,
            Event::Delivered { .. } | Event::KeyChanged { .. } => {}
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// Shows a message, then confirms it to the engine (which acknowledges
    /// it to the relay only then); a notice about its sender's key follows.
    fn message(&mut self, link: &Link, m: &Message) -> Result<(), CliError> {
        let shown = Msg {
            server: String::new(),
            id: m.id,
            seq: 0,
            timestamp_ms: m.timestamp_ms,
            from: m.from.clone(),
            target: m.to.clone(),
            text: m.text.clone(),
            direction: Direction::In,
            label: label(m.verified).to_owned(),
            e2e: m.e2e,
        };
        let line = if self.args.json {
            history_json(&shown).to_string()
        } else {
            // The sender's time where it is vouched for (the JSON's
            // "timestamp" stays the server's, as it always was).
            let shown = Msg { timestamp_ms: m.sent_ms.unwrap_or(m.timestamp_ms), ..shown };
            live_line(&shown, m.verified == Verified::Changed && !m.signed)
        };
        let mut out = std::io::stdout().lock();
        // Acknowledged only once written out: a listen killed before this
        // gets the message again next time.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Err(CliError::failed("cannot write to standard output", "check the pipe"));
        }
        drop(out);
        link.handover.handed();
        self.seen += 1;
        match m.verified {
            Verified::New | Verified::Changed if self.notices.len() < MAX_NOTICES => {
                self.notices.push_back((m.from.clone(), m.verified));
            }
            Verified::Invalid => {
                if let Some(notice) = key_notice(&m.from, m.verified, None) {
                    eprintln!("{notice}");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A message of ours that expired unread (standard output with
    /// --json, else standard error), then confirmed to the engine as a
    /// message is: a listen killed before this hears of it again.
    fn expired(&self, link: &Link, id: u64, to: &str) -> Result<(), CliError> {
        if self.args.json {
            println!("{}", json!({ "expired": { "id": id, "to": to } }));
        } else {
            eprintln!("your message to {} expired on the server unread (id {id})", escape(to));
        }
        if std::io::stdout().flush().is_err() {
            return Err(CliError::failed("cannot write to standard output", "check the pipe"));
        }
        link.handover.handed();
        Ok(())
    }

    /// A change of an end-to-end conversation, or a message not shown.
    fn group(&self, id: u64, text: &str, change: &GroupChange) {
        let json = self.args.json;
        if matches!(change, GroupChange::Notice) {
            // Already escaped by the engine's end-to-end layer.
            if json {
                println!("{}", json!({ "e2e_notice": { "id": id, "text": text } }));
            } else {
                eprintln!("! {text}");
            }
            return;
        }
        let line = describe(change);
        if json && line.starts_with('!') {
            println!("{}", json!({ "e2e_error": { "id": id, "text": line } }));
        } else {
            // Standard error, for the person watching; --json keeps
            // standard output for messages and failures.
            eprintln!("{line}");
        }
    }
}

/// The first connection's failure: the connector's error (its exit code),
/// else the engine's words.
fn connect_failed(failure: &Failure, reason: &str) -> CliError {
    failure.borrow_mut().take().unwrap_or_else(|| {
        CliError::failed(format!("could not connect: {}", escape(reason)), "check the server address, name and key")
    })
}

/// The verdict's label as `listen` has always shown it (the history's).
fn label(verified: Verified) -> &'static str {
    match verified {
        Verified::New => "new",
        Verified::Known => "known",
        Verified::Verified => "verified",
        Verified::Changed => "key-changed",
        Verified::Unsigned => "unsigned",
        Verified::Invalid => "invalid-signature",
    }
}

/// Key notices waiting at most (a flood of new senders is not held).
const MAX_NOTICES: usize = 256;

/// A warning after a message from a first-seen, changed or forged key,
/// with what the engine knows of the key (`info`).
fn key_notice(from: &str, verified: Verified, info: Option<&KeyInfo>) -> Option<String> {
    let from = escape(from);
    let remembered = info.and_then(|i| i.remembered.clone()).unwrap_or_else(|| "?".to_owned());
    match (verified, info.and_then(|i| i.changed.clone())) {
        (Verified::New, _) => Some(format!(
            "* first message from {from}: remembered their key {remembered} (not verified: /verify {from} in chat to \
             compare safety codes)"
        )),
        (Verified::Changed, Some(None)) => Some(format!(
            "!!! A MESSAGE UNDER THE NAME {from} IS NOT SIGNED, but their key {remembered} is remembered: someone \
             may be impersonating them. Do not trust it; ask them (in chat, /trust {from} forgets the old key)."
        )),
        (Verified::Changed, presented) => Some(format!(
            "!!! THE IDENTITY KEY OF {} HAS CHANGED: remembered {remembered}, now {}. Someone may be \
             impersonating them, or they have a new key: compare /verify {from} with them before trusting it (then /trust {from}).",
            from,
            presented.flatten().unwrap_or_else(|| "?".to_owned())
        )),
        (Verified::Invalid, _) => Some(format!(
            "!!! a message claiming to be from {from} has a bad signature: the relay altered or forged it"
        )),
        _ => None,
    }
}

/// An end-to-end conversation's name, for people.
fn conversation(target: &Target) -> String {
    match target {
        Target::Room(room) => format!("the end-to-end room {}", escape(room)),
        Target::User(user) => format!("the end-to-end conversation with {}", escape(user)),
    }
}

/// A group change as `listen` has always worded it; failures start with `!`.
fn describe(change: &GroupChange) -> String {
    match change {
        GroupChange::Started { by } => format!("* {} started an end-to-end conversation with you", escape(by)),
        GroupChange::Added { room, members } => {
            format!("* you were added to {} (members: {})", conversation(&Target::Room(room.clone())), escape(members))
        }
        GroupChange::Changed { by, conversation: target, summary } if summary.is_empty() => {
            format!("* {} renewed their keys in {}", escape(by), conversation(target))
        }
        GroupChange::Changed { by, conversation: target, summary } => {
            format!("* {} changed the members of {}: {}", escape(by), conversation(target), escape(summary))
        }
        GroupChange::Removed { by, conversation: target } => {
            format!("* {} removed you from {}", escape(by), conversation(target))
        }
        GroupChange::Unreadable { from, conversation: target, reason } => format!(
            "! a message in {} (the relay says from {}) was not shown: {}",
            conversation(target),
            escape(from),
            escape(reason)
        ),
        GroupChange::Notice => String::new(),
    }
}

/// Parses a size: a number of bytes, optionally followed by K, M, G or T
/// (powers of 1024; `KiB`, `MB` and lowercase are accepted too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("{s:?} is not a size (e.g. 500K, 10M, 1G)"))?;
    let unit = suffix.to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").filter(|u| !u.is_empty()).or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("10K"), Ok(10 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("3mb"), Ok(3 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
        for bad in ["", "G", "1.5G", "1X", "1iB", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
