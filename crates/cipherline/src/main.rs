//! # cipherline: the command-line tool
//!
//! One binary, one subcommand per task. This file only parses the command
//! line and dispatches; each subcommand lives in its own module, and every
//! failure is reported through [`error::CliError`], which says what went
//! wrong and then what to do about it.
//!
//! ## Modules
//!
//! - [`keygen`]: `cipherline keygen`, new key pairs.
//! - [`fingerprint`]: `cipherline fingerprint`, a key file's fingerprint.
//! - [`known_servers`]: `cipherline known-servers`, the trusted server keys.
//! - [`serve`]: `cipherline serve`, the relay server.
//! - [`history`]: `cipherline history`, messages kept in the local store.
//! - [`chat`], [`send`], [`listen`]: the client subcommands, sharing
//!   [`client_args`] (server, name, trust flags), [`files`] (file transfer)
//!   and [`output`] (how messages are printed); `chat` runs on the client
//!   engine, connected through [`connector`] as `tui` is.
//! - [`transfers`]: end-to-end files: `send --file`, `listen
//!   --accept-files`, and `cipherline files` for pending transfers.
//! - [`room`]: `cipherline room`, rooms managed from scripts; with
//!   [`conversation`], how end-to-end conversations are shown.
//! - [`trust`]: the client trust flags (`--accept-new`, `--server-key`,
//!   `--server-fingerprint`, `--data-dir`) and the first-contact prompt.
//! - [`passphrase`]: the passphrase flags and prompt.
//! - [`packaging`]: `cipherline completions` and `cipherline man`.
//! - [`tui`]: `cipherline tui`, the full-screen client on the client engine;
//!   [`slash`], the slash commands it and `chat` parse.
//! - [`console`]: `chat`'s terminal: line editor, output, raw mode always undone.
//! - [`error`]: the error type and its hints.

#![forbid(unsafe_code)]

mod chat;
mod client_args;
mod connector;
mod console;
mod daemon;
mod error;
mod files;
mod fingerprint;
mod history;
mod keygen;
mod known_servers;
mod link;
mod listen;
mod output;
mod packaging;
mod passphrase;
mod password;
mod room;
mod send;
mod serve;
mod slash;
mod transfers;
mod trust;
mod tui;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::error::CliError;

/// cipherline: a secure messenger with a relay server.
#[derive(Debug, Parser)]
#[command(name = "cipherline", version, propagate_version = true, after_help = error::exit::HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands; each one's help text is its arguments type's doc comment.
#[derive(Debug, Subcommand)]
enum Command {
    Keygen(keygen::KeygenArgs),
    Fingerprint(fingerprint::FingerprintArgs),
    #[command(subcommand)]
    KnownServers(known_servers::KnownServersCommand),
    Serve(serve::ServeArgs),
    Chat(chat::ChatArgs),
    Send(send::SendArgs),
    Listen(listen::ListenArgs),
    Daemon(daemon::DaemonArgs),
    Tui(tui::TuiArgs),
    History(history::HistoryArgs),
    #[command(subcommand)]
    Room(room::RoomCommand),
    #[command(subcommand)]
    Files(transfers::FilesCommand),
    Completions(packaging::CompletionsArgs),
    Man(packaging::ManArgs),
}

fn main() -> ExitCode {
    // For the whole run: background transfers (`listen --accept-files`)
    // connect with the command's flags from tasks of their own.
    let cli: &'static Cli = Box::leak(Box::new(Cli::parse()));
    let result = match &cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Fingerprint(args) => fingerprint::run(args),
        Command::KnownServers(command) => known_servers::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Chat(args) => client_runtime(chat::run(args)),
        Command::Send(args) => client_runtime(send::run(args)),
        Command::Listen(args) => client_runtime(listen::run(args)),
        Command::Daemon(args) => client_runtime(daemon::run(args)),
        Command::Tui(args) => client_runtime(tui::run(args)),
        Command::History(args) => history::run(args),
        Command::Room(command) => client_runtime(room::run(command)),
        Command::Files(command) => client_runtime(transfers::run(command)),
        Command::Completions(args) => packaging::completions(args, Cli::command()),
        Command::Man(args) => packaging::man(args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::from(error::exit::OK),
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs a client subcommand on a small async runtime.
fn client_runtime(task: impl std::future::Future<Output = Result<(), CliError>>) -> Result<(), CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}"), "check system limits"))?
        .block_on(task)
}

/// Prints an error and its hint to stderr.
fn report(e: &CliError) {
    eprintln!("error: {e}");
    if let Some(hint) = e.hint() {
        eprintln!("hint: {hint}");
    }
}
