//! `cipherline listen`: print incoming messages, for scripts.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_client::conversations::Conversations;
use cipherline_client::display::escape;
use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{ErrorCode, GroupEvent, RoomKind, ServerMessage};
use clap::Args;
use serde_json::json;

use crate::client_args::{ClientArgs, Connected};
use crate::conversation;
use crate::error::{CliError, exit};
use crate::files::{Downloads, FileEvent, Quota, file_verdict};
use crate::output::{key_notice, print_message};
use crate::recorder::Recorder;
use crate::transfers::{self, Background};
use cipherline_client::files::DownloadState;
use cipherline_client::groups::Outcome as GroupOutcome;
use cipherline_client::peers::Peers;
use std::collections::HashSet;

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

enum Outcome {
    Done,
    TimedOut,
    Lost(CliError),
}

/// Runs `listen` (in a LocalSet: end-to-end files download on local tasks).
pub async fn run(args: &'static ListenArgs) -> Result<(), CliError> {
    tokio::task::LocalSet::new().run_until(run_here(args)).await
}

/// End-to-end files announced to this user while listening.
struct E2eFiles {
    /// With --accept-files: downloads running in the background.
    background: Option<Background>,
    /// Announcements shown in this run (a message not yet acknowledged
    /// comes again after a reconnection).
    offered: HashSet<u64>,
}

async fn run_here(args: &'static ListenArgs) -> Result<(), CliError> {
    if let Some(dir) = &args.accept_files
        && !dir.is_dir()
    {
        return Err(CliError::usage(format!("{} is not a directory", dir.display()), "create it first"));
    }
    let deadline = args.timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut seen = 0u64;
    // One quota for the whole run, across reconnections.
    let quota = Quota { max_file: args.max_file_size, max_total: args.max_total };
    let mut downloads = Downloads::new(args.accept_files.clone()).with_quota(quota);
    let mut files = E2eFiles {
        background: args.accept_files.as_ref().map(|_| Background::new(&args.client, args.json)),
        offered: HashSet::new(),
    };
    // Across reconnections: a message not yet acknowledged when a
    // connection dropped (or an earlier run ended) comes again, and is
    // printed once.
    let mut recorder: Option<Recorder> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let mut connected = args.client.connect(true).await?;
            let e2e_room = match &connected.e2e {
                Some(_) => connected.client.room_info(&args.room).await?.kind.is_some_and(RoomKind::is_e2e),
                None => false,
            };
            if e2e_room {
                // A member (whose invitation may still wait in its queue)
                // is on the relay's list; anyone else is told what to do.
                connected.client.who(&args.room).await.map_err(|e| room_refused(e, &args.room))?;
            }
            // An end-to-end room is not joined: its group delivers to
            // its members. An open one is joined as always.
            if !e2e_room {
                connected.client.join(&args.room).await.map_err(|e| room_refused(e, &args.room))?;
                if !args.json {
                    eprintln!(
                        "note: {} is not end-to-end encrypted: the server can read what is said there",
                        escape(&args.room)
                    );
                }
            }
            if let Some(e2e) = &connected.e2e
                && let Err(e) = e2e.publish_key_packages(&mut connected.client).await
            {
                eprintln!("warning: could not publish end-to-end key packages: {e}");
            }
            // Then what waited on the server while this user was away.
            connected.client.resume(0).await?;
            Ok::<Connected, CliError>(connected)
        };
        let connected = match deadline {
            Some(d) => match tokio::time::timeout_at(d, attempt).await {
                Ok(connected) => connected,
                Err(_) => return Err(out_of_time(args, seen, "before listen could connect")),
            },
            None => attempt.await,
        };
        let Connected { client, mut peers, server, e2e, .. } = match connected {
            Ok(c) => {
                backoff = Duration::from_secs(1);
                c
            }
            // Also a connection that broke during the attempt (after the
            // handshake, while it joined or published its keys).
            Err(e) if args.reconnect && (e.exit_code() == exit::UNREACHABLE || crate::link::passing(&e)) => {
                eprintln!("{e}; retrying in {} s", backoff.as_secs());
                if !pause(backoff, deadline).await {
                    return Err(out_of_time(args, seen, "before listen could connect again"));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut client = client;
        // Transfers cut by a lost connection cannot resume: their partial
        // files are deleted and their bytes no longer count against --max-total.
        downloads.drop_transfers();
        if recorder.is_none() && client.info().queue.is_none() && !args.json {
            eprintln!(
                "note: this server keeps nothing for you while you are away (live delivery only: connect with an \
                 identity key to have messages stored)"
            );
        }
        let recorder = recorder.get_or_insert_with(|| Recorder::new(peers.store().cloned(), server));
        // Downloads this data directory left unfinished, and files offered
        // while it was away, continue by themselves.
        if let (Some(background), Some(dir), Some(e2e)) = (&mut files.background, &args.accept_files, &e2e) {
            background.resume_pending(e2e.store(), e2e.scope(), dir, Some(&mut downloads))?;
        }
        let mut session = Session { client: &mut client, peers: &mut peers, e2e: e2e.as_ref() };
        match listen_on(&mut session, &mut downloads, &mut files, recorder, args, deadline, &mut seen).await {
            Outcome::Done => {
                let _ = client.close().await;
                return Ok(());
            }
            Outcome::TimedOut => {
                let _ = client.close().await;
                return match args.count {
                    Some(_) => Err(out_of_time(args, seen, "")),
                    // Without --count, --timeout is how long to listen.
                    None => Ok(()),
                };
            }
            Outcome::Lost(e) if args.reconnect => {
                eprintln!("connection lost: {e}; reconnecting in {} s", backoff.as_secs());
                if !pause(backoff, deadline).await {
                    return Err(out_of_time(args, seen, "before listen could connect again"));
                }
            }
            Outcome::Lost(e) => return Err(e),
        }
    }
}

/// Waits `length`, but not past `deadline`: --timeout bounds the whole run,
/// reconnection pauses included. False if the deadline came first.
async fn pause(length: Duration, deadline: Option<tokio::time::Instant>) -> bool {
    let wake = tokio::time::Instant::now() + length;
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

/// The error (exit code 7) for a --timeout that ran out; `when` says what
/// was still under way, if not listening.
fn out_of_time(args: &ListenArgs, seen: u64, when: &str) -> CliError {
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

/// A Join refused because the room is end to end, with what to do.
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

/// One connection's client, remembered keys and end-to-end state.
struct Session<'a> {
    client: &'a mut Client,
    peers: &'a mut Peers,
    e2e: Option<&'a Conversations>,
}

async fn listen_on(
    session: &mut Session<'_>,
    downloads: &mut Downloads,
    files: &mut E2eFiles,
    recorder: &mut Recorder,
    args: &ListenArgs,
    deadline: Option<tokio::time::Instant>,
    seen: &mut u64,
) -> Outcome {
    let Session { client, peers, e2e } = session;
    let me = client.name().to_owned();
    let keepalive = Duration::from_secs(u64::from(client.idle_timeout_secs().max(2)) / 2);
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut nonce = 0u64;
    loop {
        if args.count.is_some_and(|n| *seen >= n) {
            return Outcome::Done;
        }
        let msg = tokio::select! {
            msg = client.recv() => msg,
            // Quiet for a moment: acknowledge what was written out.
            () = tokio::time::sleep(ACK_DELAY), if client.has_unacknowledged() => {
                if let Err(e) = client.flush_received().await {
                    return Outcome::Lost(e.into());
                }
                recorder.acknowledged(client.writer().acknowledged());
                continue;
            }
            () = tokio::time::sleep(keepalive) => {
                nonce += 1;
                if let Err(e) = client.ping(nonce).await {
                    return Outcome::Lost(e.into());
                }
                continue;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or(far)) => return Outcome::TimedOut,
            finished = next_finished(&mut files.background) => {
                if let Some(background) = &mut files.background
                    && !finished.retry
                {
                    background.ended(finished.record.id, finished.result.is_err(), downloads);
                }
                match &finished.result {
                    Ok(path) => {
                        transfers::report_saved(&finished.record, path, args.json);
                        *seen += 1;
                    }
                    Err(why) if finished.retry => transfers::report_retrying(finished.record.id, why, args.json),
                    Err(why) => transfers::report_failed(finished.record.id, why, args.json),
                }
                let _ = std::io::stdout().flush();
                continue;
            }
        };
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => return Outcome::Lost(e.into()),
        };
        match &msg {
            ServerMessage::Message(d) => {
                let status = peers.check(d);
                if recorder.is_new(&me, d, &status) {
                    if let Some(notice) = key_notice(d, &status) {
                        eprintln!("{notice}");
                    }
                    print_message(d, &me, &status, args.json, false);
                    *seen += 1;
                    // Acknowledged only once written out: a listen killed
                    // before this gets the message again next time.
                    if std::io::stdout().flush().is_err() {
                        return Outcome::Lost(CliError::failed("cannot write to standard output", "check the pipe"));
                    }
                    // Recorded as shown only once written out, too.
                    recorder.shown(&me, d, &status);
                }
                if let Err(e) = client.handled(d.seq).await {
                    return Outcome::Lost(e.into());
                }
            }
            ServerMessage::Group(GroupEvent::Message(d)) => {
                // Never sent to a client that cannot take part.
                let Some(e2e) = e2e else { continue };
                let shown = match e2e.handle(d) {
                    Ok(GroupOutcome::File { .. }) => offered(e2e, d.id, files, downloads, args).map(|()| false),
                    Ok(_) => conversation::print_group(e2e, d, peers, recorder, &me, args.json),
                    Err(e) => Err(CliError::Client(e)),
                };
                match shown {
                    Ok(shown) => *seen += u64::from(shown),
                    Err(e) => return Outcome::Lost(e),
                }
                if let Err(e) = client.handled(d.seq).await {
                    return Outcome::Lost(e.into());
                }
            }
            ServerMessage::Expired { id, to, seq } => {
                if args.json {
                    println!("{}", json!({ "expired": { "id": id, "to": to } }));
                } else {
                    eprintln!("your message to {} expired on the server unread (id {id})", escape(to));
                }
                if std::io::stdout().flush().is_err() {
                    return Outcome::Lost(CliError::failed("cannot write to standard output", "check the pipe"));
                }
                if let Err(e) = client.handled(*seq).await {
                    return Outcome::Lost(e.into());
                }
            }
            ServerMessage::Notice { kind, room, name } if !args.json => {
                eprintln!(
                    "* {} {} {}",
                    escape(name),
                    if *kind == cipherline_proto::app::NoticeKind::Joined { "joined" } else { "left" },
                    escape(room)
                );
            }
            ServerMessage::Error { code, text, .. } if code.is_fatal() => {
                return Outcome::Lost(CliError::failed(
                    format!("the server closed the connection: {}", escape(text)),
                    "see above",
                ));
            }
            ServerMessage::FileOffered { .. }
            | ServerMessage::FileData { .. }
            | ServerMessage::FileDone { .. }
            | ServerMessage::FileCancelled { .. } => {
                // Without --accept-files an offer is left unanswered, never
                // declined: another session of this identity (a chat) may
                // accept it, and the server counts a name's decline only
                // once every session that had the offer declined (§13.4).
                let (event, replies) = downloads.handle(&msg, false, peers);
                for reply in replies {
                    if let Err(e) = client.send_message(&reply).await {
                        return Outcome::Lost(e.into());
                    }
                }
                if let Some(event) = event {
                    *seen += u64::from(report(&event, args.json));
                }
            }
            _ => {}
        }
        let _ = std::io::stdout().flush();
    }
}

/// The next background download to finish (never, without any).
async fn next_finished(background: &mut Option<Background>) -> transfers::Finished {
    match background {
        Some(b) => match b.done_rx.recv().await {
            Some(finished) => finished,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// A file announced by message `id`: shown once per run, and with
/// --accept-files fetched in the background. One cancelled or finished
/// already is not shown again.
fn offered(
    e2e: &Conversations,
    id: u64,
    files: &mut E2eFiles,
    quota: &mut Downloads,
    args: &ListenArgs,
) -> Result<(), CliError> {
    let Some(record) = e2e.store().download_of(e2e.scope(), id).map_err(CliError::Client)? else { return Ok(()) };
    if !matches!(record.state, DownloadState::Offered | DownloadState::Active) || !files.offered.insert(record.id) {
        return Ok(());
    }
    // Larger than --max-file-size, or over what --max-total leaves: shown,
    // kept as offered, not fetched.
    let fits = files.background.as_mut().is_some_and(|b| b.admit(&record, quota));
    let accept = args.accept_files.as_deref().filter(|_| fits);
    transfers::report_offered(&record, accept, args.json);
    if let (Some(background), Some(dir)) = (&mut files.background, accept) {
        background.start(e2e.store(), record, dir);
    }
    Ok(())
}

/// How long a quiet listen waits before acknowledging what it wrote out
/// (it acknowledges every 32 messages anyway).
const ACK_DELAY: Duration = Duration::from_millis(200);

/// Prints a file event; returns whether a file arrived.
fn report(event: &FileEvent, as_json: bool) -> bool {
    match event {
        FileEvent::Offered { from, name, size, accepted, reason, .. } => {
            let what = match (accepted, reason) {
                (Some(true), _) => "accepting".to_owned(),
                (_, Some(why)) => format!("declining: {}", escape(why)),
                _ => "not answering (no --accept-files): accept it in another session, or it expires".to_owned(),
            };
            eprintln!("{} offers {} ({size} bytes): {what}", escape(from), escape(name));
            if as_json
                && *accepted != Some(true)
                && let Some(why) = reason
            {
                let v = json!({ "file_declined": { "from": from, "name": name, "size": size, "reason": why } });
                println!("{v}");
            }
            false
        }
        FileEvent::Received { from, path, size, sha256, status } => {
            if as_json {
                let v = json!({ "file": { "from": from, "path": path.display().to_string(), "size": size,
                                          "sha256": sha256, "verified": status.label() } });
                println!("{v}");
            } else {
                let path = path.display().to_string();
                println!(
                    "received {} from {} ({size} bytes, SHA-256 {sha256}; {})",
                    escape(&path),
                    escape(from),
                    file_verdict(status)
                );
            }
            true
        }
        FileEvent::Failed { from, name, reason } => {
            eprintln!("file {} from {} failed: {}", escape(name), escape(from), escape(reason));
            false
        }
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
