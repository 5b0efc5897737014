//! The flags that decide which servers a client trusts, shared by every
//! client subcommand (they flatten [`TrustArgs`] in), and the first-contact
//! prompt shown on a terminal.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use cipherline_keys::{DataDir, Fingerprint, FirstContact, TrustPolicy, load_public_key};
use clap::Args;

use crate::error::CliError;

/// Where cipherline keeps its data (the known-servers file, the local store).
#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Directory holding cipherline's data, such as the known_servers file and client.db.
    /// Default: $CIPHERLINE_HOME if set, else the per-user data directory
    /// ($XDG_DATA_HOME/cipherline, usually ~/.local/share/cipherline, on
    /// Linux).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// Resolves the directory: this flag, then CIPHERLINE_HOME, then the
    /// platform default.
    pub fn resolve(&self) -> Result<DataDir, CliError> {
        Ok(DataDir::resolve(self.data_dir.as_deref())?)
    }
}

/// How a client decides to trust a server's key.
///
/// Without flags, a server recorded in the known-servers file must present
/// the recorded key; at first contact the fingerprint is shown and you are
/// asked (on a terminal) whether to trust and record it. A changed key is
/// always refused.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// At first contact with a server, record its key in the known-servers
    /// file without asking (trust on first use). A changed key is still
    /// refused.
    #[arg(long)]
    pub accept_new: bool,

    /// Trust only the server key in this PEM public key file (such as the
    /// server_public_key.pem its operator hands out), for this connection;
    /// the known-servers file is neither read nor written.
    #[arg(long, value_name = "PATH", conflicts_with = "server_fingerprint")]
    pub server_key: Option<PathBuf>,

    /// Trust only a server key with this fingerprint (as `cipherline
    /// fingerprint` prints it), for this connection; the known-servers file is
    /// neither read nor written.
    #[arg(long, value_name = "SHA256:...")]
    pub server_fingerprint: Option<Fingerprint>,

    /// The server is password-only: it has no key, and the shared password
    /// (--password-file, --password-prompt or CIPHERLINE_PASSWORD) alone
    /// authenticates it. Recorded as "HOST:PORT password-only" in the
    /// known-servers file at first contact; a server that presents a key
    /// is then refused. Without this flag a server that presents no key is
    /// refused, so a man in the middle who knows the password cannot strip
    /// a server's key.
    #[arg(long, conflicts_with_all = ["server_key", "server_fingerprint"])]
    pub password_only: bool,

    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

impl TrustArgs {
    /// The pinned fingerprint, if --server-key or --server-fingerprint was
    /// given.
    pub fn pin(&self) -> Result<Option<Fingerprint>, CliError> {
        if let Some(path) = &self.server_key {
            return Ok(Some(Fingerprint::of_server_key(&load_public_key(path)?)));
        }
        Ok(self.server_fingerprint)
    }

    /// The trust policy these flags describe.
    pub fn policy(&self) -> Result<TrustPolicy, CliError> {
        let known = self.data_dir.resolve()?.known_servers();
        Ok(TrustPolicy::new(known).accept_new(self.accept_new).pin(self.pin()?).password_only(self.password_only))
    }
}

/// Asks on the terminal whether to trust a server at first contact; only
/// "yes" (or "y") trusts it. Pass it to [`TrustPolicy::check`] only when
/// [`crate::passphrase::have_terminal`] is true.
pub fn terminal_prompt(contact: &FirstContact<'_>) -> std::io::Result<bool> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "Server {} is not in {}.", contact.server(), contact.known_servers().path().display())?;
    writeln!(err, "It presented this {} key:", contact.key_description())?;
    writeln!(err, "  {}", contact.fingerprint())?;
    writeln!(err, "  short form: {}", contact.fingerprint().short())?;
    writeln!(err, "Compare it with the fingerprint the server's operator gave you.")?;
    let stdin = std::io::stdin();
    for _ in 0..3 {
        write!(err, "Trust this key and record it? (yes/no): ")?;
        err.flush()?;
        let mut answer = String::new();
        if stdin.lock().read_line(&mut answer)? == 0 {
            return Ok(false);
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" => return Ok(true),
            "no" | "n" | "" => return Ok(false),
            _ => writeln!(err, "Please type yes or no.")?,
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Client {
        #[command(flatten)]
        trust: TrustArgs,
    }

    #[test]
    fn flags_build_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let fp = Fingerprint::of_spki(b"x");
        let data = dir.path().to_str().unwrap();
        let cli =
            Client::try_parse_from(["c", "--accept-new", "--server-fingerprint", &fp.to_string(), "--data-dir", data])
                .unwrap();
        assert!(cli.trust.accept_new);
        assert_eq!(cli.trust.pin().unwrap(), Some(fp));
        let policy = cli.trust.policy().unwrap();
        assert_eq!(policy.known_servers().path(), dir.path().join("known_servers"));
    }

    #[test]
    fn key_and_fingerprint_pins_conflict_and_bad_fingerprints_are_refused() {
        let fp = Fingerprint::of_spki(b"x").to_string();
        assert!(Client::try_parse_from(["c", "--server-key", "k.pub", "--server-fingerprint", &fp]).is_err());
        // A pin says the server has a key; password-only says it has none.
        assert!(Client::try_parse_from(["c", "--password-only", "--server-fingerprint", &fp]).is_err());
        assert!(Client::try_parse_from(["c", "--password-only", "--server-key", "k.pub"]).is_err());
        assert!(Client::try_parse_from(["c", "--password-only", "--accept-new"]).unwrap().trust.password_only);
        assert!(Client::try_parse_from(["c", "--server-fingerprint", "MD5:00"]).is_err());
    }

    #[test]
    fn server_key_file_pins_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let key = cipherline_keys::PrivateKey::generate(cipherline_keys::KeyKind::X25519).unwrap();
        let path = dir.path().join("server");
        cipherline_keys::write_key_pair(&key, &path, None, false).unwrap();
        let pub_path = cipherline_keys::public_key_path(&path);
        let cli = Client::try_parse_from(["c", "--server-key", pub_path.to_str().unwrap()]).unwrap();
        assert_eq!(cli.trust.pin().unwrap(), Some(key.fingerprint()));
        // The private key is refused as a --server-key.
        let cli = Client::try_parse_from(["c", "--server-key", path.to_str().unwrap()]).unwrap();
        assert!(cli.trust.pin().is_err());
    }
}
