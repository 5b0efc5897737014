//! `cipherline send`: one-shot messages (and files) for scripts.
//!
//! Texts go through the client engine in its one-shot mode (engine/once.rs):
//! it connects once, never reconnects, and leaves this user's messages on
//! the relay (unacknowledged, for the next `listen`) unless --wait-reply
//! asks for them. `--file` still makes its own connections (the engine's
//! transfer events do not carry what `--json` promises: the upload's `u`
//! id, where a resumed upload started, the file's hash).

use std::collections::{HashMap, HashSet};
use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_client::conversations::Conversations;
use cipherline_client::display::escape;
use cipherline_client::engine::{ConnectionState, Engine, EngineHandle, Event, Message, Reply, SendAck, Verified};
use cipherline_client::local::{Direction, Msg};
use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{RoomKind, Target, fold_name};
use clap::Args;
use tokio::sync::mpsc;

use crate::client_args::ClientArgs;
use crate::connector::{Failure, Flags};
use crate::conversation;
use crate::error::CliError;
use crate::files;
use crate::output::live_line;
use crate::transfers;

/// Send messages (or a file) and exit once the server has acknowledged
/// each one. With no MESSAGE and no --file, every line of standard input
/// is sent as one message.
///
/// Lines are paced to the server's rate limits: a line the server refuses
/// as too fast is sent again after a pause (a few times at most), and a
/// line that cannot be delivered is reported by its number.
///
/// Direct messages are end-to-end encrypted (MLS) when you have an Ed25519
/// identity key (the default): the first one to a user starts a
/// conversation from one of their end-to-end keys, also while they are
/// offline; a user who never ran a current client has none, and the
/// message is refused. In an end-to-end room (`cipherline room`), messages
/// are encrypted for its members; open rooms, like the lobby, are not.
///
/// The server acknowledges a message once it is stored for every
/// recipient it keeps messages for (an offline one gets it on connecting);
/// with --wait-delivered, `send` also waits for each recipient's client to
/// confirm it.
///
/// Exit codes (the table in README.md): 0 all acknowledged; 2 usage; 3 the
/// server's key was not trusted; 4 the server could not be reached; 5 the
/// server refused (e.g. unknown user, a full queue); 6 the name is taken;
/// 7 the server stopped answering; 8 --wait-delivered ran out before every
/// recipient confirmed; 1 anything else.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The room to send to (joined first).
    #[arg(long, value_name = "ROOM", default_value = "lobby", conflicts_with = "to")]
    pub room: String,

    /// Send a direct message to this user instead of a room.
    #[arg(long, value_name = "USER")]
    pub to: Option<String>,

    /// Send this file. To a user with an end-to-end key, or into an
    /// end-to-end room, it is encrypted end to end and kept by the relay
    /// until fetched (an offline recipient gets it later); running the
    /// same command again for an unchanged file resumes an interrupted
    /// upload. Otherwise it goes as in version 1: offered live, relayed
    /// readable, signed.
    #[arg(long, value_name = "PATH", conflicts_with = "message")]
    pub file: Option<PathBuf>,

    /// With --file: progress as JSON lines on standard output
    /// ({"event":"file_started","id","from","total","resumed"},
    /// {"event":"file_progress","id","bytes","total"},
    /// {"event":"file_sent","id","name","size","sha256","resumed"}).
    #[arg(long, requires = "file")]
    pub json: bool,

    /// Seconds to wait for the receiver to accept a file (version-1 files only).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub answer_timeout: u64,

    /// After sending, print messages that arrive for this many seconds
    /// (a round trip: ask, then read the answer).
    #[arg(long, value_name = "SECONDS")]
    pub wait_reply: Option<u64>,

    /// Wait up to this many seconds for every recipient's client to confirm
    /// each message (delivery receipts); exit 8 if one does not. A recipient
    /// without an identity key gets messages live only and cannot confirm.
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["file", "wait_reply"])]
    pub wait_delivered: Option<u64>,

    /// The message; several words are joined with spaces.
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
}

/// How long the engine may take to stop once `send` is done.
const ENGINE_STOP: Duration = Duration::from_secs(5);

/// Runs `send`: texts on the client engine (one-shot: it connects once
/// and leaves this user's stored messages on the relay unless
/// --wait-reply asks for them); a file over connections of its own.
pub async fn run(args: &'static SendArgs) -> Result<(), CliError> {
    if let Some(path) = &args.file {
        // Before connecting: a directory or FIFO is refused, never offered.
        files::open_regular(path)?;
        return send_file(args, path).await;
    }
    tokio::task::LocalSet::new().run_until(send_texts(args)).await
}

/// Sends the message, or every line of standard input, through the engine.
async fn send_texts(args: &'static SendArgs) -> Result<(), CliError> {
    let flags = Flags::new(&args.client);
    let failure = flags.failure();
    let (engine, handle, events) = Engine::new(flags, args.client.home().to_string(), &[]);
    let engine = tokio::task::spawn_local(engine.one_shot().run());
    let mut front = Front { handle, events: Some(events), failure, me: String::new(), confirmed: HashMap::new() };
    let result = match front.connected().await {
        Ok(()) => front.work(args).await,
        Err(e) => Err(e),
    };
    drop(front);
    let _ = tokio::time::timeout(ENGINE_STOP, engine).await;
    result
}

/// `send`'s side of the engine: its handle, its events, and what they said.
struct Front {
    handle: EngineHandle,
    /// `None` once the engine stopped.
    events: Option<mpsc::Receiver<Event>>,
    failure: Failure,
    me: String,
    /// Who confirmed each message (`Event::Delivered`, names folded).
    confirmed: HashMap<u64, HashSet<String>>,
}

impl Front {
    /// Waits for the first connection; the connector's error (its exit
    /// code) if it failed.
    async fn connected(&mut self) -> Result<(), CliError> {
        loop {
            match self.next().await {
                Some(Event::Connection(ConnectionState::Connected { name })) => {
                    self.me = name;
                    return Ok(());
                }
                Some(Event::Connection(ConnectionState::Stopped { reason })) => {
                    return Err(self.failed(&reason));
                }
                None => return Err(self.failed("the engine stopped")),
                Some(event) => self.note(event)?,
            }
        }
    }

    /// The next event; `None` once the engine stopped.
    async fn next(&mut self) -> Option<Event> {
        let event = self.events.as_mut()?.recv().await;
        if event.is_none() {
            self.events = None;
        }
        event
    }

    /// The connector's error for a failed connection, else the engine's words.
    fn failed(&self, reason: &str) -> CliError {
        self.failure.borrow_mut().take().unwrap_or_else(|| {
            CliError::failed(format!("could not connect: {reason}"), "check the server address, name and key")
        })
    }

    /// Runs `command`, taking the events that come meanwhile (the engine
    /// waits when its event channel is full).
    async fn call(&mut self, command: cipherline_client::engine::Command) -> Result<Reply, CliError> {
        let handle = self.handle.clone();
        let run = handle.run(command);
        tokio::pin!(run);
        loop {
            if self.events.is_none() {
                return (&mut run).await.map_err(CliError::Client);
            }
            tokio::select! {
                biased;
                reply = &mut run => return reply.map_err(CliError::Client),
                event = self.next() => if let Some(event) = event {
                    self.note(event)?;
                },
            }
        }
    }

    /// What an event means to `send`: a receipt is counted; messages (only
    /// handed over after --wait-reply's Receive) are printed.
    fn note(&mut self, event: Event) -> Result<(), CliError> {
        match event {
            Event::Delivered { id, by } => {
                self.confirmed.entry(id).or_default().insert(fold_name(&by));
            }
            Event::Message(m) => print_received(&self.me, &m)?,
            Event::KeyChanged { name, .. } => eprintln!(
                "!!! THE IDENTITY KEY OF {0} HAS CHANGED: someone may be impersonating them, or they have a new key: \
                 compare /verify {0} with them before trusting it (then /trust {0}).",
                escape(&name)
            ),
            Event::Group { text, .. } => eprintln!("{}", escape(&text)),
            Event::Expired { id, to } => {
                eprintln!("your message to {} expired on the server unread (id {id})", escape(&to));
            }
            _ => {}
        }
        Ok(())
    }

    /// Everything after connecting.
    async fn work(&mut self, args: &SendArgs) -> Result<(), CliError> {
        use cipherline_client::engine::Command;
        let target = match &args.to {
            Some(user) => Target::User(user.clone()),
            None => Target::Room(args.room.clone()),
        };
        if let Reply::Prepared(removed) = self.call(Command::Prepare(target.clone())).await? {
            for name in removed {
                eprintln!("removed {} from {} (they had left)", escape(&name), escape(&args.room));
            }
        }
        let mut acks = Vec::new();
        if args.message.is_empty() {
            let stdin = std::io::stdin();
            for (index, line) in stdin.lock().lines().enumerate() {
                let number = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
                let line =
                    line.map_err(|e| CliError::failed(format!("reading standard input: {e}"), "check the pipe"))?;
                if !line.is_empty() {
                    let ack = self
                        .send_one(&target, line)
                        .await
                        .map_err(|e| CliError::Line { line: number, error: Box::new(e) })?;
                    acks.push(ack);
                }
            }
        } else {
            acks.push(self.send_one(&target, args.message.join(" ")).await?);
        }
        let full: u32 = acks.iter().map(|a| a.full).sum();
        if full > 0 {
            eprintln!(
                "warning: {full} recipient copies were not kept: those members have too many messages waiting on the \
                 server"
            );
        }
        if let Some(secs) = args.wait_delivered {
            self.wait_delivered(&acks, Duration::from_secs(secs)).await?;
        }
        if let Some(secs) = args.wait_reply {
            // A reply may be stored for this user: ask for stored messages.
            self.call(Command::Receive).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.next()).await {
                self.note(event)?;
            }
        }
        self.call(Command::Finish).await?;
        Ok(())
    }

    async fn send_one(&mut self, to: &Target, text: String) -> Result<SendAck, CliError> {
        let command = cipherline_client::engine::Command::SendAcked { to: to.clone(), text };
        match self.call(command).await? {
            Reply::Acked(ack) => Ok(ack),
            _ => Err(CliError::Client(ClientError::Engine("an unexpected answer to a send".to_owned()))),
        }
    }

    /// Waits until every recipient each of `acks` was stored for confirmed
    /// it (a Delivered receipt per recipient), for at most `limit`.
    async fn wait_delivered(&mut self, acks: &[SendAck], limit: Duration) -> Result<(), CliError> {
        let deadline = tokio::time::Instant::now() + limit;
        let unconfirmed = |front: &Front| -> u64 {
            acks.iter()
                .filter(|a| a.queued > 0)
                .map(|a| {
                    let by = front.confirmed.get(&a.id).map_or(0, HashSet::len);
                    u64::from(a.queued).saturating_sub(u64::try_from(by).unwrap_or(u64::MAX))
                })
                .sum()
        };
        while unconfirmed(self) > 0 {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Some(event)) => self.note(event)?,
                Ok(None) | Err(_) => break,
            }
        }
        let unconfirmed = unconfirmed(self);
        let live: u64 = acks.iter().map(|a| u64::from(a.live) + u64::from(a.full)).sum();
        if unconfirmed == 0 && live == 0 {
            return Ok(());
        }
        let mut what = Vec::new();
        if unconfirmed > 0 {
            what.push(format!(
                "{unconfirmed} recipient copies were stored on the server but not confirmed by the recipient's client \
                 within {} s",
                limit.as_secs()
            ));
        }
        if live > 0 {
            what.push(format!(
                "{live} recipient copies cannot be confirmed (delivered live to a client without an identity key, or \
                 not kept because a queue was full)"
            ));
        }
        Err(CliError::Undelivered {
            what: what.join("; "),
            hint: "the server keeps stored messages until the recipient connects; raise --wait-delivered to wait \
                   longer"
                .into(),
        })
    }
}

/// Prints a message that arrived during --wait-reply as `listen` prints
/// one (escaped), after a notice for a key seen the first time.
fn print_received(me: &str, m: &Message) -> Result<(), CliError> {
    use std::io::Write as _;
    let from = escape(&m.from);
    match m.verified {
        Verified::New => eprintln!(
            "* first message from {from}: remembered their key (not verified: /verify {from} in chat to compare \
             safety codes)"
        ),
        Verified::Invalid => {
            eprintln!("!!! a message claiming to be from {from} has a bad signature: the relay altered or forged it");
        }
        _ => {}
    }
    let label = match m.verified {
        Verified::Invalid => "invalid-signature",
        Verified::Changed => "key-changed",
        other => other.as_str(),
    };
    let shown = Msg {
        server: String::new(),
        id: m.id,
        seq: 0,
        // The sender's time where it is vouched for, as `listen` shows it.
        timestamp_ms: m.sent_ms.unwrap_or(m.timestamp_ms),
        from: m.from.clone(),
        target: m.to.clone(),
        text: m.text.clone(),
        direction: if m.from.eq_ignore_ascii_case(me) { Direction::Out } else { Direction::In },
        label: label.to_owned(),
        e2e: m.e2e,
    };
    let mut out = std::io::stdout().lock();
    let line = live_line(&shown, m.verified == Verified::Changed && !m.signed);
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        return Err(CliError::failed("cannot write to standard output", "check the pipe"));
    }
    Ok(())
}

/// Sends `path` to `--to` or `--room`: end to end where messages are
/// (over a connection of its own, resumable), else as a version-1 offer.
async fn send_file(args: &SendArgs, path: &std::path::Path) -> Result<(), CliError> {
    let connected = args.client.connect(true).await?;
    let (mut client, mut peers, e2e) = (connected.client, connected.peers, connected.e2e);
    let mut leave_after = false;
    let mut end_to_end = false;
    let target = match &args.to {
        Some(user) => {
            end_to_end = e2e.is_some();
            Target::User(user.clone())
        }
        None => {
            if let Some(e2e) = &e2e
                && client.room_info(&args.room).await?.kind.is_some_and(RoomKind::is_e2e)
            {
                end_to_end = true;
                catch_up(e2e, &mut client, &connected.server, &args.room).await?;
                for name in e2e.reconcile(&mut client, &args.room).await? {
                    eprintln!("removed {} from {} (they had left)", escape(&name), escape(&args.room));
                }
            } else {
                leave_after = client.info().queue.is_some() && client.who(&args.room).await.is_err();
                client.join(&args.room).await?;
            }
            Target::Room(args.room.clone())
        }
    };
    if end_to_end && let Some(e2e) = &e2e {
        let group_id = match &target {
            Target::User(user) => {
                let mut check = conversation::key_check(&mut peers);
                e2e.direct(&mut client, user, &mut check).await?
            }
            Target::Room(room) => e2e.room(room).map_err(CliError::Client)?,
        };
        // The upload gets a connection of its own.
        let (mut data, e2e_data) = match args.client.connect(false).await? {
            crate::client_args::Connected { client, e2e: Some(e2e), .. } => (client, e2e),
            _ => return Err(CliError::failed("the second connection cannot send end-to-end files", "try again")),
        };
        let result = transfers::send_file(&e2e_data, &mut data, path, &group_id, &target, args.json).await;
        let _ = data.close().await;
        let _ = client.close().await;
        return result.map(drop);
    }
    eprintln!("note: this file is not end-to-end encrypted: the server relays it readable (signed if you have a key)");
    files::send_file(&mut client, target, path, Duration::from_secs(args.answer_timeout)).await?;
    if leave_after {
        client.leave(&args.room).await?;
    }
    let _ = client.close().await;
    Ok(())
}

/// Brings this client's state of the end-to-end room `room` up to the
/// relay's epoch (commits that came while it was away), so what it sends
/// can be read by every member; refuses if it is not a member.
async fn catch_up(e2e: &Conversations, client: &mut Client, server: &str, room: &str) -> Result<(), CliError> {
    let Some(mine) = e2e.room_epoch(room).map_err(CliError::Client)? else {
        return Err(not_member(room));
    };
    if client.room_info(room).await?.epoch <= mine {
        return Ok(());
    }
    let cursor = e2e.store().cursor(server).map_err(CliError::Client)?;
    e2e.catch_up(client, cursor, Duration::from_millis(300), Duration::from_secs(10)).await?;
    Ok(())
}

fn not_member(room: &str) -> CliError {
    CliError::failed(
        format!("you are not a member of the end-to-end room {}", escape(room)),
        "a member adds you with `cipherline room invite ROOM YOUR_NAME`; if one did, run `cipherline listen` once to \
         receive the invitation",
    )
}
