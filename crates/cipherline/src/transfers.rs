//! End-to-end files on the command line (PROTOCOL.md §13.12): what
//! `listen --accept-files` says of the files the engine fetches, JSON
//! progress lines (also `send --file`'s: send/file.rs), and `cipherline
//! files list|get|cancel` for pending transfers. The work is the client
//! library's ([`cipherline_client::files`]): `files get` and `files
//! cancel` ask a one-shot client engine for it (`Command::GetFile`,
//! `Command::CancelFile`, progress from `Event::Transfer`), `files list`
//! reads the local store. This shows progress (a bar on a terminal, JSON
//! lines with `--json`) and says what happened, every peer string escaped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherline_client::LocalStore;
use cipherline_client::display::escape;
use cipherline_client::engine::{Command, ConnectionState, EngineHandle, Event, Reply, TransferState};
use cipherline_client::files::{DownloadRecord, Ticker, TransferId};
use cipherline_proto::app::Target;
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::sync::mpsc;

use crate::client_args::ClientArgs;
use crate::connector::one_shot;
use crate::error::CliError;
use crate::files::{hex, progress_bar};

/// How often a JSON progress event is written at most.
const JSON_EVERY: Duration = Duration::from_millis(250);
/// How long `listen` waits before trying an interrupted download again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The files sent and received end to end that are not finished: list
/// them, fetch one now, or cancel one.
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List pending uploads (`u` ids) and downloads (`d` ids) of the data
    /// directory: id, direction, peer or room, name, bytes done of the
    /// total, and state (offered, active).
    List(ListArgs),
    /// Download an offered (or interrupted) file now, with progress.
    Get(GetArgs),
    /// Cancel an upload (the relay deletes the file) or a download (the
    /// partial file is deleted and the relay told you do not want it).
    Cancel(CancelArgs),
}

/// `files list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// One JSON object per line: {"id","direction","peer" or "room","name","bytes","total","state"}.
    #[arg(long)]
    pub json: bool,
}

/// `files get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The download's id (as `files list` shows it, e.g. d3).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Save it into this directory (default: the current one; an
    /// interrupted download continues in the directory it started in).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Progress as JSON lines ({"event": "file_progress"}, then
    /// "file_saved" or "file_failed").
    #[arg(long)]
    pub json: bool,
}

/// `files cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The upload's or download's id (as `files list` shows it, e.g. u2, d3).
    #[arg(value_name = "ID")]
    pub id: String,
}

fn parse_id(s: &str) -> Result<TransferId, CliError> {
    TransferId::parse(s).ok_or_else(|| {
        CliError::usage(
            format!("{} is not a file id", escape(s)),
            "ids look like u2 or d3: see `cipherline files list`",
        )
    })
}

/// Runs `files`.
pub async fn run(command: &'static FilesCommand) -> Result<(), CliError> {
    match command {
        FilesCommand::List(args) => list(args),
        FilesCommand::Get(args) => get(args).await,
        FilesCommand::Cancel(args) => cancel(args).await,
    }
}

fn open_store(client: &ClientArgs) -> Result<LocalStore, CliError> {
    let dir = client.trust.data_dir.resolve()?;
    LocalStore::in_data_dir(dir.path()).map_err(crate::history::store_error)
}

fn conversation_json(target: &Target) -> (&'static str, &str) {
    match target {
        Target::Room(r) => ("room", r),
        Target::User(u) => ("peer", u),
    }
}

fn list(args: &ListArgs) -> Result<(), CliError> {
    let store = open_store(&args.client)?;
    for p in cipherline_client::files::pending(&store, None).map_err(CliError::Client)? {
        let (id, name, bytes, total, state) = (p.id, &p.name, p.bytes, p.total, p.state);
        match (id, &p.from) {
            (TransferId::Up(n), _) => {
                let (kind, peer) = conversation_json(&p.target);
                if args.json {
                    println!(
                        "{}",
                        json!({ "id": id.to_string(), "direction": "out", kind: peer, "name": name,
                                "bytes": bytes, "total": total, "state": state })
                    );
                } else {
                    let label = conversation_label(&p.target, true);
                    println!("u{n:<5} out  {label:<20} {}  {bytes}/{total} bytes  {state}", escape(name));
                }
            }
            (TransferId::Down(n), from) => {
                let from = from.as_deref().unwrap_or_default();
                if args.json {
                    let (kind, peer) = match &p.target {
                        Target::Room(r) => ("room", r.as_str()),
                        Target::User(_) => ("peer", from),
                    };
                    println!(
                        "{}",
                        json!({ "id": id.to_string(), "direction": "in", kind: peer, "from": from, "name": name,
                                "bytes": bytes, "total": total, "state": state })
                    );
                } else {
                    let from = match &p.target {
                        Target::Room(r) => format!("{} in {}", escape(from), escape(r)),
                        Target::User(_) => format!("from {}", escape(from)),
                    };
                    println!("d{n:<5} in   {from:<20} {}  {bytes}/{total} bytes  {state}", escape(name));
                }
            }
        }
    }
    Ok(())
}

fn conversation_label(target: &Target, outgoing: bool) -> String {
    match (target, outgoing) {
        (Target::Room(r), _) => format!("room {}", escape(r)),
        (Target::User(u), true) => format!("to {}", escape(u)),
        (Target::User(u), false) => format!("from {}", escape(u)),
    }
}

async fn get(args: &'static GetArgs) -> Result<(), CliError> {
    let TransferId::Down(id) = parse_id(&args.id)? else {
        return Err(CliError::usage("that is an upload", "`files get` fetches downloads (ids starting with d)"));
    };
    // Read here for what the engine's events do not carry (the sender,
    // the hash), and for the offer's message id the engine knows it by.
    let record = open_store(&args.client)?
        .download(id)
        .map_err(CliError::Client)?
        .ok_or_else(|| CliError::failed(format!("no file d{id}"), "see `cipherline files list`"))?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()
            .map_err(|e| CliError::failed(format!("no current directory: {e}"), "pass --dir DIR"))?,
    };
    tokio::task::LocalSet::new()
        .run_until(async move {
            let (handle, mut events, engine) = one_shot(&args.client).await?;
            let result = fetch(&handle, &mut events, &record, dir, args.json).await;
            drop((handle, events));
            engine.stop().await;
            let saved = result?;
            report_saved(&record, &saved, args.json);
            Ok(())
        })
        .await
}

/// Fetches `record` through the engine with a progress bar (on a
/// terminal) or JSON progress events; where it was saved.
async fn fetch(
    handle: &EngineHandle,
    events: &mut mpsc::Receiver<Event>,
    record: &DownloadRecord,
    dir: PathBuf,
    as_json: bool,
) -> Result<PathBuf, CliError> {
    let fail = |why: &str| {
        report_failed(record.id, why, as_json);
        CliError::failed(format!("file d{} was not saved: {}", record.id, escape(why)), "see `cipherline files list`")
    };
    let transfer = match handle.run(Command::GetFile { id: record.message, dir }).await {
        Ok(Reply::Transfer { transfer }) => transfer,
        Ok(_) => return Err(fail("an unexpected answer")),
        Err(e) => {
            report_failed(record.id, &e.to_string(), as_json);
            return Err(CliError::Client(e));
        }
    };
    let bar = if as_json { indicatif::ProgressBar::hidden() } else { progress_bar(record.size, "receiving") };
    let mut progress = JsonProgress::new(as_json, format!("d{}", record.id));
    let result = loop {
        match events.recv().await {
            Some(Event::Transfer { transfer: t, done, total, state, path, .. }) if t == transfer => {
                bar.set_position(done);
                match state {
                    TransferState::Done => {
                        progress.progress(done, total);
                        break path.ok_or_else(|| fail("saved, but the engine did not say where"));
                    }
                    TransferState::Failed { why, .. } => break Err(fail(&why)),
                    TransferState::Cancelled => break Err(fail("cancelled")),
                    _ => progress.progress(done, total),
                }
            }
            Some(Event::Connection(ConnectionState::Stopped { reason })) => break Err(fail(&reason)),
            Some(_) => {}
            None => break Err(fail("the client engine stopped")),
        }
    };
    bar.finish_and_clear();
    result
}

/// Prints that a download was saved.
pub fn report_saved(record: &DownloadRecord, path: &Path, as_json: bool) {
    let shown = path.display().to_string();
    if as_json {
        println!(
            "{}",
            json!({ "event": "file_saved", "id": format!("d{}", record.id), "from": record.from, "path": shown,
                    "size": record.size, "sha256": hex(&record.sha256) })
        );
    } else {
        println!(
            "saved {} from {} ({} bytes, SHA-256 {}; end-to-end encrypted)",
            escape(&shown),
            escape(&record.from),
            record.size,
            hex(&record.sha256)
        );
    }
}

/// Prints that a download was interrupted and will be tried again.
pub fn report_retrying(id: u64, why: &str, as_json: bool) {
    if as_json {
        println!("{}", json!({ "event": "file_retrying", "id": format!("d{id}"), "reason": why }));
    } else {
        eprintln!("file d{id} interrupted: {}; trying again in {} s", escape(why), RETRY_AFTER.as_secs());
    }
}

/// Prints that a download failed (`why` is our own text, escaped anyway:
/// it may quote the relay).
pub fn report_failed(id: u64, why: &str, as_json: bool) {
    if as_json {
        println!("{}", json!({ "event": "file_failed", "id": format!("d{id}"), "reason": why }));
    } else {
        eprintln!("file d{id} failed: {}", escape(why));
    }
}

/// JSON progress events: one when [`JSON_EVERY`] passed or another
/// hundredth of the file was done since the last one, and the last.
pub struct JsonProgress {
    on: bool,
    id: String,
    ticker: Ticker,
}

impl JsonProgress {
    /// Events for transfer `id` when `on`.
    pub fn new(on: bool, id: String) -> Self {
        JsonProgress { on, id, ticker: Ticker::new(JSON_EVERY).with_hundredths() }
    }

    /// Bytes done of total.
    pub fn progress(&mut self, bytes: u64, total: u64) {
        if self.on && self.due(bytes, total) {
            println!("{}", json!({ "event": "file_progress", "id": self.id, "bytes": bytes, "total": total }));
        }
    }

    /// Whether an event is due for `bytes` of `total` (the first, the
    /// last, another hundredth, or [`JSON_EVERY`] since the last), and
    /// counts it as given if so.
    pub fn due(&mut self, bytes: u64, total: u64) -> bool {
        self.ticker.due(bytes, total)
    }
}

async fn cancel(args: &'static CancelArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id)?;
    tokio::task::LocalSet::new()
        .run_until(async move {
            let (handle, events, engine) = one_shot(&args.client).await?;
            let result = handle.run(Command::CancelFile(id.to_string())).await;
            drop((handle, events));
            engine.stop().await;
            result.map_err(CliError::Client)?;
            eprintln!("cancelled {id}");
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_a_direction() {
        assert_eq!(parse_id("u2").ok(), Some(TransferId::Up(2)));
        assert_eq!(parse_id("D17").ok(), Some(TransferId::Down(17)));
        for bad in ["", "x1", "u", "d-1", "2", "dé"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }
}
