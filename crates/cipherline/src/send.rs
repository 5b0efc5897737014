//! `cipherline send`: one-shot messages (and files) for scripts.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_proto::app::{ServerMessage, Target};
use clap::Args;

use crate::client_args::ClientArgs;
use crate::error::CliError;
use crate::files;
use crate::output::{key_notice, print_message};
use crate::pacing::Pacer;

/// Send messages (or a file) and exit once the server has acknowledged
/// each one. With no MESSAGE and no --file, every line of standard input
/// is sent as one message.
///
/// Lines are paced to the server's rate limits: a line the server refuses
/// as too fast is sent again after a pause (a few times at most), and a
/// line that cannot be delivered is reported by its number.
///
/// Exit codes (the table in README.md): 0 all acknowledged; 2 usage; 3 the
/// server's key was not trusted; 4 the server could not be reached; 5 the
/// server refused (e.g. unknown user); 6 the name is taken; 7 the server
/// stopped answering; 1 anything else.
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

    /// Send this file (the receiver must accept it).
    #[arg(long, value_name = "PATH", conflicts_with = "message")]
    pub file: Option<PathBuf>,

    /// Seconds to wait for the receiver to accept a file.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub answer_timeout: u64,

    /// After sending, print messages that arrive for this many seconds
    /// (a round trip: ask, then read the answer).
    #[arg(long, value_name = "SECONDS")]
    pub wait_reply: Option<u64>,

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
    let (mut client, mut peers) = (connected.client, connected.peers);
    let target = match &args.to {
        Some(user) => Target::User(user.clone()),
        None => {
            client.join(&args.room).await?;
            Target::Room(args.room.clone())
        }
    };
    // The Join took one of the server's message tokens.
    let mut pacer = Pacer::new(client.info().rates, u32::from(args.to.is_none()));
    if let Some(path) = &args.file {
        files::send_file(&mut client, target.clone(), path, Duration::from_secs(args.answer_timeout)).await?;
    } else if args.message.is_empty() {
        let stdin = std::io::stdin();
        for (index, line) in stdin.lock().lines().enumerate() {
            let number = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
            let line = line.map_err(|e| CliError::failed(format!("reading standard input: {e}"), "check the pipe"))?;
            if !line.is_empty() {
                pacer
                    .send(&mut client, &target, &line)
                    .await
                    .map_err(|e| CliError::Line { line: number, error: Box::new(e) })?;
            }
        }
    } else {
        pacer.send(&mut client, &target, &args.message.join(" ")).await?;
    }
    if let Some(secs) = args.wait_reply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while let Ok(msg) = tokio::time::timeout_at(deadline, client.recv()).await {
            if let ServerMessage::Message(d) = msg? {
                let status = peers.check(&d);
                if let Some(notice) = key_notice(&d, &status) {
                    eprintln!("{notice}");
                }
                print_message(&d, client.name(), &status, false);
            }
        }
    }
    let _ = client.close().await;
    Ok(())
}
