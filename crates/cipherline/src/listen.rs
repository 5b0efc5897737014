//! `cipherline listen`: print incoming messages, for scripts.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_client::Client;
use cipherline_proto::app::ServerMessage;
use clap::Args;
use serde_json::json;

use crate::client_args::{ClientArgs, Connected};
use crate::error::CliError;
use crate::files::{Downloads, FileEvent, file_verdict};
use crate::output::{key_notice, print_message};
use cipherline_client::peers::Peers;

/// Print messages from a room (and direct messages) as they arrive, one
/// per line, until --count messages or --timeout seconds.
///
/// Exit codes: 0 done; 7 --timeout ran out before --count messages; the
/// connection codes of `send` otherwise.
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

    /// Exit after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// One JSON object per line: {"id","from","room" or "to","text","timestamp","verified"};
    /// received files as {"file": {"from","path","size","sha256","verified"}}.
    /// "verified" is new, known, verified, unsigned, invalid-signature or key-changed.
    #[arg(long)]
    pub json: bool,

    /// Accept offered files into this directory (otherwise they are declined).
    #[arg(long, value_name = "DIR")]
    pub accept_files: Option<PathBuf>,

    /// If the connection drops, connect again (waiting 1, 2, 4 … 30 s).
    #[arg(long)]
    pub reconnect: bool,
}

enum Outcome {
    Done,
    TimedOut,
    Lost(CliError),
}

/// Runs `listen`.
pub async fn run(args: &ListenArgs) -> Result<(), CliError> {
    if let Some(dir) = &args.accept_files
        && !dir.is_dir()
    {
        return Err(CliError::usage(format!("{} is not a directory", dir.display()), "create it first"));
    }
    let deadline = args.timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut seen = 0u64;
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let mut connected = args.client.connect(true).await?;
            connected.client.join(&args.room).await?;
            Ok::<Connected, CliError>(connected)
        };
        let connected = match deadline {
            Some(d) => tokio::time::timeout_at(d, attempt).await.unwrap_or(Err(CliError::Failed {
                what: "timed out before connecting".into(),
                hint: "check --server".into(),
            })),
            None => attempt.await,
        };
        let Connected { client, mut peers, .. } = match connected {
            Ok(c) => {
                backoff = Duration::from_secs(1);
                c
            }
            Err(e) if args.reconnect && e.exit_code() == 4 => {
                eprintln!("{e}; retrying in {} s", backoff.as_secs());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut client = client;
        match listen_on(&mut client, &mut peers, args, deadline, &mut seen).await {
            Outcome::Done => {
                let _ = client.close().await;
                return Ok(());
            }
            Outcome::TimedOut => {
                let _ = client.close().await;
                return if args.count.is_some() {
                    Err(CliError::Failed {
                        what: format!("only {seen} of {} messages arrived in time", args.count.unwrap_or_default()),
                        hint: "raise --timeout".into(),
                    })
                } else {
                    Ok(())
                };
            }
            Outcome::Lost(e) if args.reconnect => {
                eprintln!("connection lost: {e}; reconnecting in {} s", backoff.as_secs());
                tokio::time::sleep(backoff).await;
            }
            Outcome::Lost(e) => return Err(e),
        }
    }
}

async fn listen_on(
    client: &mut Client,
    peers: &mut Peers,
    args: &ListenArgs,
    deadline: Option<tokio::time::Instant>,
    seen: &mut u64,
) -> Outcome {
    let me = client.name().to_owned();
    let mut downloads = Downloads::new(args.accept_files.clone());
    let keepalive = Duration::from_secs(u64::from(client.idle_timeout_secs().max(2)) / 2);
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut nonce = 0u64;
    loop {
        if args.count.is_some_and(|n| *seen >= n) {
            return Outcome::Done;
        }
        let msg = tokio::select! {
            msg = client.recv() => msg,
            () = tokio::time::sleep(keepalive) => {
                nonce += 1;
                if let Err(e) = client.ping(nonce).await {
                    return Outcome::Lost(e.into());
                }
                continue;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or(far)) => return Outcome::TimedOut,
        };
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => return Outcome::Lost(e.into()),
        };
        match &msg {
            ServerMessage::Message(d) => {
                let status = peers.check(d);
                if let Some(notice) = key_notice(d, &status) {
                    eprintln!("{notice}");
                }
                print_message(d, &me, &status, args.json);
                *seen += 1;
            }
            ServerMessage::Notice { kind, room, name } if !args.json => {
                eprintln!(
                    "* {name} {} {room}",
                    if *kind == cipherline_proto::app::NoticeKind::Joined { "joined" } else { "left" }
                );
            }
            ServerMessage::Error { code, text, .. } if code.is_fatal() => {
                return Outcome::Lost(CliError::failed(
                    format!("the server closed the connection: {text}"),
                    "see above",
                ));
            }
            ServerMessage::FileOffered { .. }
            | ServerMessage::FileData { .. }
            | ServerMessage::FileDone { .. }
            | ServerMessage::FileCancelled { .. } => {
                let (event, replies) = downloads.handle(&msg, true, peers);
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

/// Prints a file event; returns whether a file arrived.
fn report(event: &FileEvent, as_json: bool) -> bool {
    match event {
        FileEvent::Offered { from, name, size, accepted, .. } => {
            let what = if *accepted == Some(true) { "accepting" } else { "declining (no --accept-files)" };
            eprintln!("{from} offers {name} ({size} bytes): {what}");
            false
        }
        FileEvent::Received { from, path, size, sha256, status } => {
            if as_json {
                let v = json!({ "file": { "from": from, "path": path.display().to_string(), "size": size,
                                          "sha256": sha256, "verified": status.label() } });
                println!("{v}");
            } else {
                println!(
                    "received {} from {from} ({size} bytes, SHA-256 {sha256}; {})",
                    path.display(),
                    file_verdict(status)
                );
            }
            true
        }
        FileEvent::Failed { from, name, reason } => {
            eprintln!("file {name} from {from} failed: {reason}");
            false
        }
    }
}
