//! `cipherline history`: the messages kept in the local store, for people
//! (one escaped line each, like `listen`) and scripts (`--json`, the same
//! objects as `listen --json`).

use std::io::Write as _;

use cipherline_client::ClientError;
use cipherline_client::local::{FILE_NAME, Filter, LocalStore};
use cipherline_keys::ServerAddr;
use clap::Args;

use crate::client_args::DEFAULT_SERVER;
use crate::error::CliError;
use crate::output::{history_json, history_line};
use crate::trust::DataDirArgs;

/// Show messages kept from earlier sessions with a server, oldest first:
/// the newest --limit of them, from one room (--room), one person
/// (--with, both ways), or everything. Nothing is sent to the server.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The server whose history to show, as HOST:PORT (as given to chat,
    /// send and listen).
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// Only messages said in this room.
    #[arg(long, value_name = "ROOM", conflicts_with = "with")]
    pub room: Option<String>,

    /// Only direct messages with this user, both ways.
    #[arg(long, value_name = "USER")]
    pub with: Option<String>,

    /// Show at most this many messages (the newest).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u64,

    /// One JSON object per line, with the fields of `listen --json`:
    /// {"id","from","room" or "to","text","timestamp","verified"};
    /// "verified" is the verdict when the message arrived, or "own" for a
    /// message you sent.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

/// Runs `history`.
pub fn run(args: &HistoryArgs) -> Result<(), CliError> {
    // The server as chat, send and listen name it when they record.
    let server = args.server.parse::<ServerAddr>()?.to_string();
    let filter = match (&args.room, &args.with) {
        (Some(room), _) => Filter::Room(room.clone()),
        (None, Some(user)) => Filter::With(user.clone()),
        (None, None) => Filter::All,
    };
    let path = args.data_dir.resolve()?.path().join(FILE_NAME);
    if !path.exists() {
        // Nothing kept yet is not a failure: scripts get empty output.
        eprintln!("no history yet");
        return Ok(());
    }
    let store = LocalStore::open(&path).map_err(store_error)?;
    let messages = store.history(&server, &filter, args.limit).map_err(store_error)?;
    let mut out = std::io::stdout().lock();
    for m in &messages {
        let line = if args.json { history_json(m).to_string() } else { history_line(m) };
        // A closed pipe (`| head`) ends the listing quietly.
        if writeln!(out, "{line}").is_err() {
            return Ok(());
        }
    }
    let _ = out.flush();
    Ok(())
}

/// The local store's failure, with what to do about it.
pub fn store_error(e: ClientError) -> CliError {
    let hint = match &e {
        ClientError::KnownPeers { .. } => {
            "fix or delete that line of known_peers in the data directory: it is imported into client.db once, \
             then kept as known_peers.migrated"
        }
        ClientError::LocalStoreTooNew { .. } => "run the newer cipherline that wrote it",
        ClientError::LocalStore { .. } => {
            "another cipherline may be busy writing it (try again), or the disk is full; a damaged client.db can \
             be moved aside (history and remembered peer keys start afresh)"
        }
        _ => "check the data directory (--data-dir or CIPHERLINE_HOME) and its permissions",
    };
    CliError::failed(format!("cannot use the local store: {e}"), hint)
}
