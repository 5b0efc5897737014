//! What every client subcommand shares: which server, under which name, and
//! how its key is trusted; and connecting with those.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cipherline_client::conversations::Conversations;
use cipherline_client::peers::Peers;
use cipherline_client::{Client, ClientError, Options, TrustCheck};
use cipherline_keys::{
    Error as KeysError, KeyKind, KeyProblem, LoadOptions, Passphrase, PrivateKey, Prompt, ServerAddr, TrustPolicy,
};
use cipherline_net::NetError;
use cipherline_proto::Error as ProtoError;
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::pake::Password;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::error::Incompatibility;
use clap::Args;

use crate::error::CliError;
use crate::passphrase::{ask_existing, have_terminal, have_tty};
use crate::password::PasswordArgs;
use crate::trust::{TrustArgs, terminal_prompt};

/// The server address clients use when none is given.
pub const DEFAULT_SERVER: &str = "127.0.0.1:5555";

/// Connection flags shared by chat, send and listen.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server, as HOST:PORT; repeat for the nodes of a cluster (the
    /// first is home: local state is kept under it), tried in order, the
    /// next on a lost connection.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_SERVER)]
    pub server: Vec<String>,

    /// Which of `server` to try first (the last that answered).
    #[arg(skip)]
    at: AtomicUsize,

    /// Your display name (letters, digits, '-', '_', '.'). Default: your
    /// user name.
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub trust: TrustArgs,

    #[command(flatten)]
    pub password: PasswordArgs,

    /// Your identity key (an Ed25519 or RSA private key in PEM): it proves
    /// who you are to servers that ask and signs every message you send.
    /// Default: `identity` in the data directory, created on first use.
    #[arg(long, value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// Read the identity key's passphrase from the first line of FILE
    /// (without its line break), for scripts. Without it, an encrypted
    /// identity key's passphrase is asked for on the terminal.
    #[arg(long, value_name = "FILE", conflicts_with = "no_identity")]
    pub identity_passphrase_file: Option<PathBuf>,

    /// Connect without an identity key: your messages are unsigned.
    #[arg(long, conflicts_with = "identity")]
    pub no_identity: bool,

    #[arg(skip)]
    loaded: LoadedIdentity,

    #[arg(skip)]
    resolved: ResolvedPassword,
}

/// The shared password once read: asked for once per run, so that `chat`
/// and `listen --reconnect` never prompt again when they reconnect (chat's
/// line editor owns the terminal then). No password in Debug.
#[derive(Default)]
struct ResolvedPassword(std::sync::OnceLock<Option<Password>>);

impl std::fmt::Debug for ResolvedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "ResolvedPassword(read)" } else { "ResolvedPassword(not yet)" })
    }
}

/// The identity key once loaded: its passphrase is asked for once per run,
/// also when `listen --reconnect` connects again. No key material in Debug.
#[derive(Default)]
struct LoadedIdentity(std::sync::OnceLock<Option<Arc<IdentityKey>>>);

impl std::fmt::Debug for LoadedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "LoadedIdentity(loaded)" } else { "LoadedIdentity(not yet)" })
    }
}

/// A connected client with what the subcommands need around it.
pub struct Connected {
    /// The client.
    pub client: Client,
    /// Remembered keys of other people on this server.
    pub peers: Peers,
    /// The server as the local store names it (`host:port`).
    pub server: String,
    /// End-to-end conversations: `None` without an Ed25519 identity key or
    /// without a stored queue on this server (PROTOCOL.md §13.11).
    pub e2e: Option<Conversations>,
}

/// The trust flags' policy as the client library's check; the refusal is
/// kept whole, for the exit code and hint.
struct PolicyCheck<'a> {
    addr: &'a ServerAddr,
    policy: TrustPolicy,
    may_prompt: bool,
    refusal: Mutex<Option<cipherline_keys::Error>>,
}

impl PolicyCheck<'_> {
    fn verdict(&self, result: Result<cipherline_keys::Trusted, cipherline_keys::Error>) -> Result<(), String> {
        result.map(drop).map_err(|e| {
            let text = e.to_string();
            if let Ok(mut slot) = self.refusal.lock() {
                *slot = Some(e);
            }
            text
        })
    }
}

impl TrustCheck for PolicyCheck<'_> {
    fn check(&self, _: &str, key: &ServerPublicKey) -> Result<(), String> {
        let mut ask = terminal_prompt;
        let prompt: Option<Prompt<'_>> = if self.may_prompt && have_terminal() { Some(&mut ask) } else { None };
        self.verdict(self.policy.check(self.addr, key, prompt))
    }

    fn check_keyless(&self, _: &str) -> Result<(), String> {
        self.verdict(self.policy.check_keyless(self.addr))
    }
}

/// The identity key file's name in the data directory.
pub const IDENTITY_FILE: &str = "identity";

fn create_identity(path: &Path) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        crate::serve::create_private_dir(dir)?;
    }
    let key = PrivateKey::generate(KeyKind::Ed25519)?;
    match cipherline_keys::write_key_pair(&key, path, None, false) {
        Ok(()) => {}
        // Another cipherline process created it first: use that one.
        Err(cipherline_keys::Error::AlreadyExists { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    eprintln!("created your identity key: {}", path.display());
    eprintln!("its fingerprint: {}  (/whois and /verify show it to others)", key.public_key().fingerprint());
    Ok(())
}

/// Loads the identity key at `path`. An encrypted key is decrypted with the
/// passphrase from `passphrase_file`, or else one typed on the terminal; the
/// errors name this command's flag (keygen's `--passphrase-file` is not one
/// of chat's, send's or listen's).
fn load_identity(path: &Path, passphrase_file: Option<&Path>) -> Result<IdentityKey, CliError> {
    let mut passphrase = passphrase_file.map(Passphrase::from_file).transpose()?;
    loop {
        match cipherline_keys::load_identity_key(path, &LoadOptions::new().passphrase(passphrase.as_ref())) {
            Ok(key) => return Ok(key),
            // Asked once: a wrong answer is reported below, not asked again,
            // so a script never loops on a prompt.
            Err(KeysError::KeyFile { problem: KeyProblem::PassphraseRequired, .. })
                if passphrase.is_none() && have_tty() =>
            {
                passphrase = Some(ask_existing()?);
            }
            Err(KeysError::KeyFile { problem: KeyProblem::PassphraseRequired, .. }) => {
                return Err(CliError::NoTerminal {
                    what: "the identity key is encrypted and needs its passphrase",
                    hint: "pass --identity-passphrase-file FILE (the passphrase on its first line), run on a \
                           terminal to type it, or use another key with --identity",
                });
            }
            Err(KeysError::KeyFile { problem: KeyProblem::WrongPassphrase, .. }) => {
                let hint = match passphrase_file {
                    Some(file) => format!(
                        "check the passphrase on the first line of {} (used without its line break)",
                        file.display()
                    ),
                    None => "run the command again and type the passphrase the key was made with".to_owned(),
                };
                return Err(CliError::failed(
                    format!("wrong passphrase for the identity key {}", path.display()),
                    hint,
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The login name, made acceptable as a display name; "user" if none.
fn default_name() -> String {
    let raw = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
    let cleaned: String =
        raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(32).collect();
    let cleaned = cleaned.trim_start_matches(['-', '.']).to_owned();
    if cleaned.is_empty() { "user".to_owned() } else { cleaned }
}

impl ClientArgs {
    /// The name to use.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(default_name)
    }

    /// The identity key to use: the flag's, or the default one (created
    /// on first use); `None` with --no-identity.
    fn identity(&self) -> Result<Option<Arc<IdentityKey>>, CliError> {
        if let Some(loaded) = self.loaded.0.get() {
            return Ok(loaded.clone());
        }
        if self.no_identity {
            return Ok(None);
        }
        let path = match &self.identity {
            Some(path) => path.clone(),
            None => {
                let path = self.trust.data_dir.resolve()?.path().join(IDENTITY_FILE);
                if !path.exists() {
                    create_identity(&path)?;
                }
                path
            }
        };
        let key = Arc::new(load_identity(&path, self.identity_passphrase_file.as_deref())?);
        Ok(self.loaded.0.get_or_init(|| Some(key)).clone())
    }

    /// The home address: the first `--server`, under which local state
    /// (peer keys, cursors, history) is kept whichever node answers, so a
    /// failover is not a new server.
    pub fn home(&self) -> &str {
        self.server.first().map_or(DEFAULT_SERVER, String::as_str)
    }

    /// After a lost connection: the next address is tried first.
    pub fn fail_over(&self) {
        let n = self.server.len();
        let _ = self.at.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |at| Some(next_at(at, n)));
    }

    /// Connects to the addresses in turn from the last that answered (each
    /// once), keeping the first that does; a refused server key ends the
    /// round (another node would present the same key).
    pub async fn connect(&self, may_prompt: bool) -> Result<Connected, CliError> {
        let n = self.server.len().max(1);
        let start = self.at.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in order(start, n) {
            match self.connect_to(i, may_prompt).await {
                Ok(connected) => {
                    self.at.store(i, Ordering::Relaxed);
                    return Ok(connected);
                }
                Err(e @ CliError::Keys(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| CliError::usage("no --server given", "add --server HOST:PORT")))
    }

    /// Connects to the `i`th address, checks the server's key by the
    /// trust flags (asking on a terminal at first contact with that
    /// address when `may_prompt`), and says Hello; state is the home's.
    async fn connect_to(&self, i: usize, may_prompt: bool) -> Result<Connected, CliError> {
        let addr: ServerAddr = self.server.get(i).map_or(self.home(), String::as_str).parse()?;
        let home: ServerAddr = self.home().parse()?;
        let identity = self.identity()?;
        let check = PolicyCheck { addr: &addr, policy: self.trust.policy()?, may_prompt, refusal: Mutex::new(None) };
        let name = self.name();
        let password = match self.resolved.0.get() {
            Some(read) => read.clone(),
            None => {
                let read = self.password.resolve(true)?;
                self.resolved.0.get_or_init(|| read).clone()
            }
        };
        let password_only = self.trust.password_only;
        if password_only && password.is_none() {
            return Err(CliError::usage(
                "--password-only needs the shared password",
                "add --password-file FILE or --password-prompt, or set CIPHERLINE_PASSWORD",
            ));
        }
        let config = cipherline_proto::ClientConfig {
            name: password.as_ref().map(|_| name.clone()),
            password,
            password_only,
            identity,
            ..cipherline_proto::ClientConfig::default()
        };
        let options = Options { config: Arc::new(config), ..Options::default() };
        let result = Client::connect(&addr.to_string(), &name, &options, &check).await;
        let store = self.trust.data_dir.resolve()?.path().join(cipherline_client::local::FILE_NAME);
        let peers = Peers::load(&home.to_string(), Some(&store)).map_err(crate::history::store_error)?;
        let client = result.map_err(|e| match e {
            ClientError::Untrusted(why) => match check.refusal.lock().ok().and_then(|mut r| r.take()) {
                Some(keys_error) => CliError::Keys(keys_error),
                None => CliError::Client(ClientError::Untrusted(why)),
            },
            // The protocol refused a keyless server before ClientHello (no
            // --password-only): the trust policy says why in the user's
            // terms (a pin, a recorded key, or the missing flag). It never
            // trusts here, since password-only mode is off.
            ClientError::Net(NetError::Protocol(ProtoError::PeerIncompatible(Incompatibility::KeylessServer))) => {
                match check.policy.check_keyless(&addr) {
                    Err(keys_error) => CliError::Keys(keys_error),
                    Ok(_) => CliError::Client(e),
                }
            }
            other => CliError::Client(other),
        })?;
        let e2e = match (&self.identity()?, client.info().queue.is_some(), peers.store()) {
            (Some(key), true, Some(local)) => {
                let dir = self.trust.data_dir.resolve()?;
                Conversations::open(dir.path(), &home.to_string(), client.name(), key, local.clone())
                    .map_err(CliError::Client)?
            }
            _ => None,
        };
        Ok(Connected { client, peers, server: home.to_string(), e2e })
    }
}

/// The index after `at` among `n` addresses, wrapping round.
fn next_at(at: usize, n: usize) -> usize {
    if n == 0 { 0 } else { (at + 1) % n }
}

/// The `n` indexes in turn from `start`, wrapping round.
fn order(start: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (start + k) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_wraps_round() {
        assert_eq!(next_at(0, 3), 1);
        assert_eq!(next_at(2, 3), 0);
        assert_eq!(next_at(0, 1), 0);
        assert_eq!(order(1, 3).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(order(0, 1).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn home_is_the_first_server_and_failover_moves_on() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            client: ClientArgs,
        }
        let cli = Cli::parse_from(["x", "--server", "127.0.0.1:1", "--server", "127.0.0.1:2"]);
        assert_eq!(cli.client.server, vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()]);
        assert_eq!(cli.client.home(), "127.0.0.1:1");
        cli.client.fail_over();
        assert_eq!(cli.client.at.load(Ordering::Relaxed), 1);
        // State stays under home whichever node is current.
        assert_eq!(cli.client.home(), "127.0.0.1:1");
        cli.client.fail_over();
        assert_eq!(cli.client.at.load(Ordering::Relaxed), 0);
        let one = Cli::parse_from(["x"]);
        assert_eq!(one.client.home(), DEFAULT_SERVER);
    }
}
