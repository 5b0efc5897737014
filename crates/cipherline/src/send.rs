//! `cipherline send`: one-shot messages (and files) for scripts.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use cipherline_client::conversations::Conversations;
use cipherline_client::display::escape;
use cipherline_client::peers::Peers;
use cipherline_client::{Acked, Client};
use cipherline_proto::app::{ClientMessage, GroupEvent, RoomKind, ServerMessage, Target, fold_name};
use clap::Args;

use crate::client_args::ClientArgs;
use crate::conversation;
use crate::error::CliError;
use crate::files;
use crate::output::{key_notice, print_message};
use crate::pacing::Pacer;
use crate::recorder::Recorder;
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

/// Runs `send`.
pub async fn run(args: &SendArgs) -> Result<(), CliError> {
    // Before connecting: a directory or FIFO is refused, never offered.
    if let Some(path) = &args.file {
        files::open_regular(path)?;
    }
    let connected = args.client.connect(true).await?;
    let (mut client, mut peers, e2e) = (connected.client, connected.peers, connected.e2e);
    let mut recorder = Recorder::new(peers.store().cloned(), connected.server.clone());
    let me = client.name().to_owned();
    // A name a key owns stays a member of a room it joins until it leaves
    // (PROTOCOL.md §13.10): a one-shot send into a room it was not in
    // leaves again afterwards, so scripts do not collect room traffic.
    let mut leave_after = false;
    // Direct messages of a client that can are always end to end; a room
    // is if it was created so (PROTOCOL.md §13.11).
    let mut route = Route::Plain;
    let target = match &args.to {
        Some(user) => {
            if e2e.is_some() {
                route = Route::EndToEnd;
            }
            Target::User(user.clone())
        }
        None => {
            if let Some(e2e) = &e2e
                && client.room_info(&args.room).await?.kind.is_some_and(RoomKind::is_e2e)
            {
                route = Route::EndToEnd;
                catch_up(e2e, &mut client, &connected.server, &args.room).await?;
                reconcile(e2e, &mut client, &args.room).await?;
            } else {
                leave_after = client.info().queue.is_some() && client.who(&args.room).await.is_err();
                client.join(&args.room).await?;
            }
            Target::Room(args.room.clone())
        }
    };
    if let Some(path) = &args.file
        && route == Route::EndToEnd
        && let Some(e2e) = &e2e
    {
        let group_id = match &target {
            Target::User(user) => {
                let mut check = conversation::key_check(&mut peers);
                e2e.direct(&mut client, user, &mut check).await?
            }
            Target::Room(room) => e2e.room(room).map_err(CliError::Client)?,
        };
        // The upload gets a connection of its own (this one may be
        // receiving the room's traffic after catching up).
        let (mut data, e2e_data) = match args.client.connect(false).await? {
            crate::client_args::Connected { client, e2e: Some(e2e), .. } => (client, e2e),
            _ => return Err(CliError::failed("the second connection cannot send end-to-end files", "try again")),
        };
        let result = transfers::send_file(&e2e_data, &mut data, path, &group_id, &target, args.json).await;
        let _ = data.close().await;
        let _ = client.close().await;
        return result.map(drop);
    }
    if args.file.is_some() {
        eprintln!(
            "note: this file is not end-to-end encrypted: the server relays it readable (signed if you have a key)"
        );
    }
    if args.wait_delivered.is_some() {
        client.send_message(&ClientMessage::Receipts { enabled: true }).await?;
    }
    // The Who and Join, or the RoomInfo (and a Receipts) took server
    // message tokens.
    let sent = 2 * u32::from(args.to.is_none()) + u32::from(args.wait_delivered.is_some());
    let mut pacer = Pacer::new(client.info().rates, sent);
    let mut acks = Vec::new();
    if let Some(path) = &args.file {
        files::send_file(&mut client, target.clone(), path, Duration::from_secs(args.answer_timeout)).await?;
    } else if args.message.is_empty() {
        let stdin = std::io::stdin();
        for (index, line) in stdin.lock().lines().enumerate() {
            let number = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
            let line = line.map_err(|e| CliError::failed(format!("reading standard input: {e}"), "check the pipe"))?;
            if !line.is_empty() {
                let ack = send_one(&mut pacer, &mut client, &mut peers, e2e.as_ref(), &target, &line)
                    .await
                    .map_err(|e| CliError::Line { line: number, error: Box::new(e) })?;
                recorder.sent_as(&me, ack.id, ack.timestamp_ms, &target, &line, route == Route::EndToEnd);
                acks.push(ack);
            }
        }
    } else {
        let text = args.message.join(" ");
        let ack = send_one(&mut pacer, &mut client, &mut peers, e2e.as_ref(), &target, &text).await?;
        recorder.sent_as(&me, ack.id, ack.timestamp_ms, &target, &text, route == Route::EndToEnd);
        acks.push(ack);
    }
    let full: u32 = acks.iter().map(|a| a.full).sum();
    if full > 0 {
        eprintln!(
            "warning: {full} recipient copies were not kept: those members have too many messages waiting on the server"
        );
    }
    if let Some(secs) = args.wait_delivered {
        wait_delivered(&mut client, &acks, Duration::from_secs(secs)).await?;
    }
    if let Some(secs) = args.wait_reply {
        // A reply may be stored for this user: ask for stored messages.
        client.resume(0).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while let Ok(msg) = tokio::time::timeout_at(deadline, client.recv()).await {
            let d = match msg? {
                ServerMessage::Message(d) => d,
                ServerMessage::Group(GroupEvent::Message(d)) => {
                    if let Some(e2e) = &e2e {
                        conversation::print_group(e2e, &d, &mut peers, &mut recorder, &me, false)?;
                    }
                    client.handled(d.seq).await?;
                    continue;
                }
                ServerMessage::Expired { id, to, seq } => {
                    eprintln!("your message to {} expired on the server unread (id {id})", escape(&to));
                    client.handled(seq).await?;
                    continue;
                }
                _ => continue,
            };
            {
                let status = peers.check(&d);
                if recorder.is_new(&me, &d, &status) {
                    if let Some(notice) = key_notice(&d, &status) {
                        eprintln!("{notice}");
                    }
                    print_message(&d, &me, &status, false, false);
                    if std::io::Write::flush(&mut std::io::stdout()).is_err() {
                        return Err(CliError::failed("cannot write to standard output", "check the pipe"));
                    }
                    recorder.shown(&me, &d, &status);
                }
                client.handled(d.seq).await?;
            }
        }
    }
    if leave_after {
        pacer.leave(&mut client, &args.room).await?;
    }
    let _ = client.close().await;
    Ok(())
}

/// How `send` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Send (text), readable by the server: an open room, or a client
    /// without an Ed25519 identity.
    Plain,
    /// Encrypted in an MLS group: a direct message, or an end-to-end room.
    EndToEnd,
}

/// Sends one text by `route` (end to end when `e2e` is given and the
/// target is a user or an end-to-end room), paced, and waits for the Ack.
async fn send_one(
    pacer: &mut Pacer,
    client: &mut Client,
    peers: &mut Peers,
    e2e: Option<&Conversations>,
    target: &Target,
    text: &str,
) -> Result<Acked, CliError> {
    let Some(e2e) = e2e else { return pacer.send(client, target, text).await };
    let group_id = match target {
        Target::User(user) => {
            let mut check = conversation::key_check(peers);
            pacer.paced(async || e2e.direct(client, user, &mut check).await).await?
        }
        Target::Room(room) => match e2e.room_group(room).map_err(CliError::Client)? {
            Some(group_id) => group_id,
            None => return pacer.send(client, target, text).await,
        },
    };
    // Sealed once: a resend after `rate_limited` is the same message.
    let payload = e2e.seal(&group_id, text).map_err(CliError::Client)?;
    let acked = pacer.paced(async || client.group_send_acked(&group_id, payload.clone()).await).await?;
    e2e.sent(client, &group_id).await;
    Ok(acked)
}

/// Brings this client's state of the end-to-end room `room` up to the
/// relay's epoch (commits that came while it was away), so what it sends
/// can be read by every member; refuses if it is not a member.
async fn catch_up(e2e: &Conversations, client: &mut Client, server: &str, room: &str) -> Result<(), CliError> {
    let Some(mine) = e2e.room_epoch(room).map_err(CliError::Client)? else {
        return Err(CliError::failed(
            format!("you are not a member of the end-to-end room {}", escape(room)),
            "a member adds you with `cipherline room invite ROOM YOUR_NAME`; if one did, run `cipherline listen` once \
             to receive the invitation",
        ));
    };
    if client.room_info(room).await?.epoch <= mine {
        return Ok(());
    }
    let cursor = e2e.store().cursor(server).map_err(CliError::Client)?;
    e2e.catch_up(client, cursor, Duration::from_millis(300), Duration::from_secs(10)).await?;
    Ok(())
}

/// Removes from the MLS group of `room` whoever left it at the relay, so
/// what this client sends next is not readable by them.
async fn reconcile(e2e: &Conversations, client: &mut Client, room: &str) -> Result<(), CliError> {
    for name in e2e.reconcile(client, room).await? {
        eprintln!("removed {} from {} (they had left)", escape(&name), escape(room));
    }
    Ok(())
}

/// Waits until every recipient each of `acks` was stored for confirmed it
/// (a Delivered receipt per recipient), for at most `limit`.
async fn wait_delivered(client: &mut Client, acks: &[Acked], limit: Duration) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + limit;
    // Each message: how many recipients it was stored for, and who confirmed.
    let mut waiting: HashMap<u64, (u32, HashSet<String>)> =
        acks.iter().filter(|a| a.queued > 0).map(|a| (a.id, (a.queued, HashSet::new()))).collect();
    while !waiting.is_empty() {
        let msg = match tokio::time::timeout_at(deadline, client.recv()).await {
            Ok(msg) => msg?,
            Err(_) => break,
        };
        if let ServerMessage::Delivered { id, by } = msg
            && let Some((count, by_whom)) = waiting.get_mut(&id)
        {
            by_whom.insert(fold_name(&by));
            if by_whom.len() >= usize::try_from(*count).unwrap_or(usize::MAX) {
                waiting.remove(&id);
            }
        }
    }
    let unconfirmed: u64 = waiting.values().map(|(count, by)| u64::from(*count).saturating_sub(by.len() as u64)).sum();
    let live: u64 = acks.iter().map(|a| u64::from(a.live) + u64::from(a.full)).sum();
    if unconfirmed == 0 && live == 0 {
        return Ok(());
    }
    let mut what = Vec::new();
    if unconfirmed > 0 {
        what.push(format!(
            "{unconfirmed} recipient copies were stored on the server but not confirmed by the recipient's client within {} s",
            limit.as_secs()
        ));
    }
    if live > 0 {
        what.push(format!(
            "{live} recipient copies cannot be confirmed (delivered live to a client without an identity key, or not kept \
             because a queue was full)"
        ));
    }
    Err(CliError::Undelivered {
        what: what.join("; "),
        hint: "the server keeps stored messages until the recipient connects; raise --wait-delivered to wait longer"
            .into(),
    })
}
