//! `cipherline known-servers`: list, add and remove trusted server keys.

use cipherline_keys::{Added, Fingerprint, ServerAddr, ServerAuth, load_public_key};
use clap::{Args, Subcommand};

use crate::error::CliError;
use crate::trust::DataDirArgs;

/// List, add or remove trusted server keys (the known-servers file).
///
/// The file is DATA_DIR/known_servers. Each line is "HOST:PORT SHA256:FINGERPRINT": the server and the
/// fingerprint of the key it must present; or "HOST:PORT password-only": the
/// server has no key (the shared password alone authenticates it). Comments
/// start with '#'. Clients add a line at first contact when you accept a
/// server (or pass --accept-new, or --password-only for a password-only
/// server), and refuse to connect if a known server presents another key,
/// no key where one is recorded, or a key where password-only is recorded.
#[derive(Debug, Subcommand)]
pub enum KnownServersCommand {
    /// Print every known server and its fingerprint.
    List(ListArgs),
    /// Trust a server's key before connecting (from its public key file or a
    /// fingerprint its operator gave you).
    Add(AddArgs),
    /// Forget a server's recorded key (after its operator confirmed a new
    /// one).
    Remove(RemoveArgs),
}

/// Arguments of `known-servers list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

/// Arguments of `known-servers add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The server, as HOST:PORT (an IPv6 address goes in square brackets);
    /// several for the nodes of a cluster, which share one key.
    #[arg(value_name = "HOST:PORT", required = true, num_args = 1..)]
    pub server: Vec<ServerAddr>,

    /// The server's PEM public key file (e.g. server_public_key.pem).
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present_any = ["server_fingerprint", "password_only"],
        conflicts_with_all = ["server_fingerprint", "password_only"]
    )]
    pub server_key: Option<std::path::PathBuf>,

    /// The server key's fingerprint, as `cipherline fingerprint` prints it.
    #[arg(long, value_name = "SHA256:...", conflicts_with = "password_only")]
    pub server_fingerprint: Option<Fingerprint>,

    /// Record the server as password-only: it has no key, and a key it
    /// presents later is refused as a changed key.
    #[arg(long)]
    pub password_only: bool,

    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

/// Arguments of `known-servers remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The server, as HOST:PORT (an IPv6 address goes in square brackets).
    #[arg(value_name = "HOST:PORT")]
    pub server: ServerAddr,

    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

/// Runs `cipherline known-servers ...`.
pub fn run(command: &KnownServersCommand) -> Result<(), CliError> {
    match command {
        KnownServersCommand::List(args) => {
            let known = args.data_dir.resolve()?.known_servers();
            let entries = known.entries()?;
            if entries.is_empty() {
                eprintln!("No known servers in {}.", known.path().display());
            }
            for e in entries {
                println!("{} {}", e.server(), e.auth());
            }
        }
        KnownServersCommand::Add(args) => {
            let fingerprint = match (&args.server_key, args.server_fingerprint) {
                _ if args.password_only => ServerAuth::PasswordOnly,
                (Some(path), _) => ServerAuth::Key(Fingerprint::of_server_key(&load_public_key(path)?)),
                (None, Some(fp)) => ServerAuth::Key(fp),
                (None, None) => {
                    return Err(CliError::usage(
                        "no key given",
                        "pass --server-key PATH, --server-fingerprint SHA256:... or --password-only",
                    ));
                }
            };
            let known = args.data_dir.resolve()?.known_servers();
            for server in &args.server {
                match known.add_auth(server, &fingerprint)? {
                    Added::Recorded => println!("Recorded {} {} in {}.", server, fingerprint, known.path().display()),
                    Added::AlreadyKnown => println!("{} {} was already recorded.", server, fingerprint),
                }
            }
        }
        KnownServersCommand::Remove(args) => {
            let known = args.data_dir.resolve()?.known_servers();
            match known.remove(&args.server)? {
                0 => println!("{} was not in {}; nothing removed.", args.server, known.path().display()),
                n => println!("Removed {n} line(s) for {} from {}.", args.server, known.path().display()),
            }
        }
    }
    Ok(())
}
