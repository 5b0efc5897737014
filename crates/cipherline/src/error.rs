//! The binary's error type: what went wrong, then what to do about it.
//!
//! Library errors arrive as [`cipherline_keys::Error`] (short, lowercase,
//! naming the file); this type adds the hint a person needs, with the exact
//! flag or command to use. Nothing here prints key bytes or passphrases: the
//! library errors carry none.

use core::fmt;
use std::io;
use std::path::Path;

use cipherline_keys::{Error as KeysError, KeyChange, KeyProblem, ServerAuth};

/// The exit codes of every subcommand: README.md's table of exit codes
/// lists exactly these. clap exits with [`USAGE`] too when it rejects the
/// command line, so a usage error has one code however it is found.
pub mod exit {
    /// Done: every message acknowledged, the count reached, the key made.
    pub const OK: u8 = 0;
    /// Anything not listed below (a file that cannot be read or written,
    /// a lost connection, a server that cannot start).
    pub const FAILED: u8 = 1;
    /// Flags that do not fit together or a value that makes no sense.
    pub const USAGE: u8 = 2;
    /// The server's key was not trusted (unknown, changed, not matching a
    /// pin), or the shared password was wrong.
    pub const UNTRUSTED: u8 = 3;
    /// The server could not be reached, or is at its connection limit.
    pub const UNREACHABLE: u8 = 4;
    /// The server refused a request (an unknown user, a message over its
    /// limits, rate limits that retrying did not get past).
    pub const REFUSED: u8 = 5;
    /// The name is taken by someone connected now.
    pub const NAME_TAKEN: u8 = 6;
    /// A time limit ran out: `listen --timeout` before `--count` messages
    /// (or before it could connect), or the server stopped answering.
    pub const TIMEOUT: u8 = 7;
    /// `send --wait-delivered`: the server stored every message, but not
    /// every recipient's client confirmed it in time (or one could not).
    pub const UNDELIVERED: u8 = 8;

    /// The table for `cipherline --help`, in the words of README.md's.
    pub const HELP: &str = "Exit codes (every subcommand):
  0  done: every message acknowledged, --count reached, the key made
  1  anything else (a file that cannot be read or written, a lost connection)
  2  usage: an unknown flag, flags that do not fit together, a bad value
  3  the server's key was not trusted, or the shared password was wrong
  4  the server could not be reached, or is at its connection limit
  5  the server refused a request (an unknown user, a message over its limits)
  6  the name is taken
  7  a time limit ran out (listen --timeout before --count), or the server stopped answering
  8  send --wait-delivered: not every recipient's client confirmed delivery in time";
}

/// Everything the CLI reports to the user.
#[derive(Debug)]
pub enum CliError {
    /// An error from the keys library.
    Keys(KeysError),
    /// Flags that do not fit together, or a value that makes no sense.
    Usage {
        /// What is wrong.
        what: String,
        /// What to do instead.
        hint: String,
    },
    /// A passphrase was needed but there is no terminal to ask on.
    NoTerminal {
        /// What needed asking.
        what: &'static str,
        /// The flag to use instead.
        hint: &'static str,
    },
    /// The two passphrases typed did not match.
    PassphraseMismatch,
    /// Reading from or writing to the terminal failed.
    Terminal(io::Error),
    /// The client library failed (connecting, the server refused, ...).
    Client(cipherline_client::ClientError),
    /// A time limit ran out (`listen --timeout` before `--count`
    /// messages, or before it could connect); exit code 7.
    TimedOut {
        /// What did not happen in time.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// `send --wait-delivered`: stored, but not confirmed by every
    /// recipient's client in time; exit code 8.
    Undelivered {
        /// Which recipients did not confirm.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// Line `line` of `send`'s standard input was not delivered; the
    /// lines before it were. Keeps the exit code of `error`.
    Line {
        /// The 1-based line number.
        line: u64,
        /// Why it was not delivered.
        error: Box<CliError>,
    },
    /// The server refused a request, as the client engine reports it
    /// (its words, not the library's error: a file transfer's end);
    /// exit code 5.
    Refused {
        /// What was refused, and why.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// Something else failed; `hint` says what to do.
    Failed {
        /// What went wrong.
        what: String,
        /// What to do about it.
        hint: String,
    },
}

impl From<KeysError> for CliError {
    fn from(e: KeysError) -> Self {
        CliError::Keys(e)
    }
}

impl From<cipherline_client::ClientError> for CliError {
    fn from(e: cipherline_client::ClientError) -> Self {
        CliError::Client(e)
    }
}

impl CliError {
    /// A usage error with a hint.
    pub fn usage(what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Usage { what: what.into(), hint: hint.into() }
    }

    /// A failure with a hint.
    pub fn failed(what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Failed { what: what.into(), hint: hint.into() }
    }

    /// A refused request, as the client engine reports it.
    pub fn refused(what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Refused { what: what.into(), hint: hint.into() }
    }

    /// A time limit ran out.
    pub fn timed_out(what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::TimedOut { what: what.into(), hint: hint.into() }
    }

    /// The process exit code: the one mapping every subcommand uses (see
    /// [`exit`] and the table in README.md).
    pub fn exit_code(&self) -> u8 {
        use cipherline_client::ClientError as C;
        use exit::{NAME_TAKEN, REFUSED, TIMEOUT, UNREACHABLE, UNTRUSTED, USAGE};
        match self {
            CliError::Line { error, .. } => error.exit_code(),
            CliError::Usage { .. } => USAGE,
            CliError::TimedOut { .. } => TIMEOUT,
            CliError::Undelivered { .. } => exit::UNDELIVERED,
            CliError::Refused { .. } => REFUSED,
            CliError::Keys(
                KeysError::UnknownServer { .. }
                | KeysError::ServerRejected { .. }
                | KeysError::ServerKeyChanged(_)
                | KeysError::PinMismatch { .. }
                | KeysError::PinnedServerHasNoKey { .. }
                | KeysError::PasswordOnlyNotRequested { .. }
                | KeysError::KeyNotExpected { .. },
            )
            | CliError::Client(C::Untrusted(_)) => UNTRUSTED,
            CliError::Client(C::Net(cipherline_net::NetError::Protocol(
                cipherline_proto::Error::AuthenticationFailed(cipherline_proto::error::AuthFailure::Password),
            ))) => UNTRUSTED,
            CliError::Client(C::Net(e)) if e.alert_received() == Some(cipherline_proto::AlertCode::TooManyAttempts) => {
                UNTRUSTED
            }
            CliError::Client(C::Net(cipherline_net::NetError::Protocol(
                cipherline_proto::Error::PeerIncompatible(
                    cipherline_proto::error::Incompatibility::PasswordRequired
                    | cipherline_proto::error::Incompatibility::PasswordNotOffered
                    | cipherline_proto::error::Incompatibility::KeylessServer,
                ),
            ))) => UNTRUSTED,
            CliError::Client(C::Connect { .. } | C::Timeout("connecting")) => UNREACHABLE,
            CliError::Client(C::Net(e)) if e.alert_received() == Some(cipherline_proto::AlertCode::ServerBusy) => {
                UNREACHABLE
            }
            CliError::Client(C::Refused { code: cipherline_proto::app::ErrorCode::NameTaken, .. }) => NAME_TAKEN,
            // The server ended the connection (shutting down, idle, too
            // slow): a lost connection, not a refused request.
            CliError::Client(C::Refused { code, .. }) if code.is_fatal() && !is_request_refusal(*code) => exit::FAILED,
            // Over the limit the server announced: refused before sending,
            // as the server would have refused it.
            CliError::Client(C::Refused { .. } | C::TooLong { .. }) => REFUSED,
            CliError::Client(C::BlobQuota(_) | C::BlobNotAllowed(_) | C::BlobGone) => REFUSED,
            // The server stopped answering within the client's reply time.
            CliError::Client(C::Timeout(_)) => TIMEOUT,
            _ => exit::FAILED,
        }
    }

    /// What to do about the error, if there is advice to give.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::Keys(e) => keys_hint(e),
            CliError::Usage { hint, .. } => Some(hint.clone()),
            CliError::NoTerminal { hint, .. } => Some((*hint).to_owned()),
            CliError::PassphraseMismatch => Some("run the command again and type the same passphrase twice".into()),
            CliError::Terminal(_) => None,
            CliError::Failed { hint, .. }
            | CliError::TimedOut { hint, .. }
            | CliError::Undelivered { hint, .. }
            | CliError::Refused { hint, .. } => Some(hint.clone()),
            CliError::Line { error, .. } => error.hint(),
            CliError::Client(e) => client_hint(e),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Keys(KeysError::ServerKeyChanged(change)) => {
                let KeyChange { server, path, line, known, presented } = &**change;
                writeln!(f, "THE KEY OF SERVER {server} HAS CHANGED. NOT CONNECTING.")?;
                writeln!(f, "  recorded in {} line {line}: {}", path.display(), describe_auth(known))?;
                writeln!(f, "  presented by the server now:  {}", describe_auth(presented))?;
                write!(
                    f,
                    "Someone may be intercepting the connection (a man-in-the-middle attack), \
                     or the server's operator may have replaced its key."
                )
            }
            CliError::Keys(e) => write!(f, "{e}"),
            CliError::Usage { what, .. } => f.write_str(what),
            CliError::NoTerminal { what, .. } => write!(f, "{what}, but there is no terminal to ask on"),
            CliError::PassphraseMismatch => f.write_str("the passphrases do not match"),
            CliError::Terminal(e) => write!(f, "terminal: {e}"),
            CliError::Failed { what, .. }
            | CliError::TimedOut { what, .. }
            | CliError::Undelivered { what, .. }
            | CliError::Refused { what, .. } => f.write_str(what),
            CliError::Line { line, error } => {
                // Empty lines are skipped, not sent: say "every line with
                // text", which stays true whatever came before.
                let before = if *line > 1 { " (every line before it with text was delivered)" } else { "" };
                write!(f, "line {line} of standard input was not delivered{before}: {error}")
            }
            CliError::Client(e) => client_message(e, f),
        }
    }
}

/// A recorded or presented server key in words: its fingerprint, or that
/// there is none.
fn describe_auth(auth: &ServerAuth) -> String {
    match auth {
        ServerAuth::Key(fp) => fp.to_string(),
        ServerAuth::PasswordOnly => "no key (password-only server)".to_owned(),
    }
}

fn client_message(e: &cipherline_client::ClientError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    use cipherline_client::ClientError as C;
    match e {
        C::Net(n) if n.alert_received() == Some(cipherline_proto::AlertCode::ServerBusy) => {
            f.write_str("the server is at its connection limit")
        }
        // The server's text (or a peer's, relayed) may hold terminal controls.
        C::Refused { text, .. } => write!(f, "the server refused: {}", cipherline_client::display::escape(text)),
        other => write!(f, "{other}"),
    }
}

fn client_hint(e: &cipherline_client::ClientError) -> Option<String> {
    use cipherline_client::ClientError as C;
    use cipherline_proto::app::ErrorCode;
    Some(match e {
        C::Connect { .. } | C::Timeout("connecting") => {
            "is the server running? start one with `cipherline serve`, or give its address with --server HOST:PORT"
                .to_owned()
        }
        C::Net(n) if n.alert_received() == Some(cipherline_proto::AlertCode::ServerBusy) => {
            "try again in a moment".to_owned()
        }
        C::Net(cipherline_net::NetError::Protocol(cipherline_proto::Error::AuthenticationFailed(
            cipherline_proto::error::AuthFailure::Password,
        ))) => "check the shared password (--password-file, --password-prompt or CIPHERLINE_PASSWORD); after a few \
                failures the server refuses this address for a while"
            .to_owned(),
        C::Net(n) if n.alert_received() == Some(cipherline_proto::AlertCode::TooManyAttempts) => {
            "too many wrong passwords from this address: wait a minute and check the password".to_owned()
        }
        C::Net(cipherline_net::NetError::Protocol(cipherline_proto::Error::PeerIncompatible(
            cipherline_proto::error::Incompatibility::PasswordRequired,
        ))) => "this server uses a shared password: give it with --password-file, --password-prompt or \
                CIPHERLINE_PASSWORD"
            .to_owned(),
        C::Net(cipherline_net::NetError::Protocol(cipherline_proto::Error::PeerIncompatible(
            cipherline_proto::error::Incompatibility::PasswordNotOffered,
        ))) => "this server does not use a password: unset CIPHERLINE_PASSWORD or drop --password-*".to_owned(),
        C::Net(cipherline_net::NetError::Protocol(cipherline_proto::Error::PeerIncompatible(
            cipherline_proto::error::Incompatibility::KeylessServer,
        ))) => "if the server's operator says it has no key, connect with --password-only".to_owned(),
        C::Net(cipherline_net::NetError::Protocol(cipherline_proto::Error::AuthenticationFailed(_))) => {
            "the server could not prove it holds the key you trust: someone may be intercepting the connection, or \
             you pinned the wrong key"
                .to_owned()
        }
        // Your own key may hold several sessions of its name (PROTOCOL.md
        // §13.4): "choose another name" is wrong advice for those refusals.
        C::Refused { code: ErrorCode::NameTaken, text } if text.contains("your identity key") => {
            "close one of your other sessions, or use the spelling the server named".to_owned()
        }
        C::Refused { code: ErrorCode::NameTaken, .. } => "choose another name with --name".to_owned(),
        C::Refused { code: ErrorCode::InvalidName, .. } => {
            "names are letters, digits, '-', '_' and '.', up to 32 characters".to_owned()
        }
        C::Refused { code: ErrorCode::UnknownUser, .. } => {
            "check the spelling; only users connected right now can be messaged".to_owned()
        }
        C::BlobQuota(_) => "cancel files you sent that nobody fetched (`cipherline files list`, `cipherline files \
                            cancel ID`), wait for them to expire, or ask the relay's operator for more room"
            .to_owned(),
        C::BlobGone => "ask the sender to send it again".to_owned(),
        C::BlobNotAllowed(_) => "end-to-end files need an identity key, a relay with a store, and membership of the \
                                 conversation"
            .to_owned(),
        C::FileChanged(_) => "send it again once it stops changing".to_owned(),
        C::FileCorrupt(_) => "ask the sender to send it again; if it happens again, the relay may be tampering with \
                              files"
            .to_owned(),
        C::Stalled(_) => "run the same command again: it continues where it stopped".to_owned(),
        _ => return None,
    })
}

/// Quotes a path for a shell command line (single quotes when needed).
pub fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn keys_hint(e: &KeysError) -> Option<String> {
    let hint = match e {
        KeysError::KeyFile { path, problem } => return problem_hint(path, problem),
        KeysError::Key(_) | KeysError::Internal(_) => return None,
        KeysError::Read { .. } => "check that the path is right and that you can read it".to_owned(),
        KeysError::Write { .. } => "check that the directory exists and that you can write there".to_owned(),
        KeysError::Lock { .. } => "check that you can write in the data directory (see --data-dir)".to_owned(),
        KeysError::AlreadyExists { .. } => "pass --force to replace it, or choose another path with --out".to_owned(),
        KeysError::InsecurePermissions { path, .. } => format!(
            "make it private with `chmod 600 {}` (and consider the key exposed if others could read it), \
             or pass --insecure-key-permissions to use it anyway",
            shell_quote(path)
        ),
        KeysError::InvalidRsaBits { .. } => "use --bits 2048, 3072 (the default) or 4096".to_owned(),
        KeysError::InvalidPassphrase { from: Some(path), .. } => {
            format!("put the passphrase on the first line of {}", path.display())
        }
        KeysError::InvalidPassphrase { from: None, .. } => {
            "type a passphrase, or leave out --passphrase-prompt for an unencrypted key".to_owned()
        }
        KeysError::InvalidFingerprint { .. } => {
            "copy the fingerprint exactly as `cipherline fingerprint` prints it, e.g. SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
                .to_owned()
        }
        KeysError::InvalidServerAddress { .. } => {
            "give the server as HOST:PORT, e.g. chat.example.org:7878 or [2001:db8::1]:7878".to_owned()
        }
        KeysError::KnownServersSyntax { path, line, .. } => format!(
            "fix or delete line {line} of {}; each line is \"HOST:PORT SHA256:<fingerprint>\"",
            path.display()
        ),
        KeysError::UnknownServer { .. } => "check the fingerprint with the server's operator, then connect again \
             with --server-fingerprint SHA256:... (this time only) or --accept-new (to record it)"
            .to_owned(),
        KeysError::ServerRejected { .. } => {
            "nothing was recorded; connect again once you have checked the fingerprint with the server's operator"
                .to_owned()
        }
        KeysError::ServerKeyChanged(change) => {
            let KeyChange { server, path, line, presented, .. } = &**change;
            let dir = path.parent().unwrap_or(Path::new("."));
            // What to confirm with the operator: the new key, or that the
            // server really has no key any more.
            let ask = match presented {
                ServerAuth::Key(_) => "ask the server's operator for its fingerprint over a channel you trust. Only \
                                       if it matches the new one",
                ServerAuth::PasswordOnly => "ask the server's operator over a channel you trust whether the server \
                                             really has no key any more. Only if so",
            };
            let reconnect = match presented {
                ServerAuth::Key(_) => "connect again",
                ServerAuth::PasswordOnly => "connect again with --password-only",
            };
            format!(
                "{ask}, remove the old entry:\n        cipherline known-servers remove {server} --data-dir {}\n      \
                 (or delete line {line} of {}), then {reconnect}.",
                shell_quote(dir),
                path.display()
            )
        }
        KeysError::PinnedServerHasNoKey { .. } => "someone who knows the password may be intercepting the \
             connection and hiding the server's key; do not connect. If the server's operator says it has no key \
             now, connect with --password-only instead of a pin"
            .to_owned(),
        KeysError::PasswordOnlyNotRequested { .. } => "if the server's operator says the server has no key \
             (`cipherline serve --password-only`), connect with --password-only; otherwise someone who knows the \
             password may be intercepting the connection and hiding the server's key"
            .to_owned(),
        KeysError::KeyNotExpected { .. } => "--password-only says the server has no key, but it presented one: \
             check its fingerprint with the server's operator, then connect without --password-only"
            .to_owned(),
        KeysError::PinMismatch { .. } => "check the --server-key file or --server-fingerprint value with the \
             server's operator; do not connect until they match"
            .to_owned(),
        KeysError::Prompt(_) => "pass --accept-new or --server-fingerprint instead of answering a prompt".to_owned(),
        KeysError::NoDataDir => "pass --data-dir DIR or set CIPHERLINE_HOME".to_owned(),
        _ => return None,
    };
    Some(hint)
}

fn problem_hint(path: &Path, problem: &KeyProblem) -> Option<String> {
    let p = shell_quote(path);
    let hint = match problem {
        KeyProblem::TooLarge { .. } | KeyProblem::NotPem { .. } | KeyProblem::Malformed(_) => {
            "give a PEM key file (-----BEGIN ... KEY-----), or make a new key with `cipherline keygen`".to_owned()
        }
        KeyProblem::SeveralPemBlocks { .. } => {
            format!("extract the key into a file of its own: `openssl pkey -in {p} -out KEY.pem`, then use KEY.pem")
        }
        KeyProblem::LegacyEncryptedPem => format!(
            "convert it to encrypted PKCS#8: `openssl pkcs8 -topk8 -scrypt -in {p} -out NEW.pem`, then use NEW.pem"
        ),
        KeyProblem::UnsupportedLabel { .. } => "cipherline reads PEM blocks labelled PRIVATE KEY, ENCRYPTED PRIVATE \
             KEY, RSA PRIVATE KEY, PUBLIC KEY and RSA PUBLIC KEY (for an OpenSSH key, convert it with \
             `ssh-keygen -p -m PKCS8 -f FILE`)"
            .to_owned(),
        KeyProblem::UnsupportedAlgorithm(_) | KeyProblem::RsaKeySize { .. } => "cipherline uses RSA (2048 to 4096 \
             bits) or X25519 server keys and Ed25519 or RSA identity keys; make one with `cipherline keygen`"
            .to_owned(),
        KeyProblem::WrongKind { .. } => {
            "server keys are RSA or X25519 (`cipherline keygen --type x25519`), identity keys Ed25519 or RSA \
             (`cipherline keygen --type ed25519`)"
                .to_owned()
        }
        KeyProblem::ExpectedPublicKey => {
            format!("give the public key file instead (e.g. {p}.pub); never hand out a private key")
        }
        KeyProblem::ExpectedPrivateKey => "give the private key file (the one without .pub)".to_owned(),
        KeyProblem::PassphraseRequired => "pass --passphrase-file FILE or --passphrase-prompt".to_owned(),
        KeyProblem::WrongPassphrase => {
            "check the passphrase (--passphrase-file uses the file's first line, without its line break)".to_owned()
        }
        KeyProblem::UnsupportedEncryption(_) | KeyProblem::KdfTooCostly(_) => format!(
            "re-encrypt it with scrypt: `openssl pkcs8 -topk8 -scrypt -in {p} -out NEW.pem` (after decrypting it with \
             the tool that made it)"
        ),
        KeyProblem::PublicKeyMismatch | KeyProblem::Rejected => {
            "the file is damaged or was not made by a correct tool; use another copy or make a new key".to_owned()
        }
        _ => return None,
    };
    Some(hint)
}

/// Fatal Error codes that still answer a request (the message itself was
/// refused), as opposed to the server ending the connection on its own.
fn is_request_refusal(code: cipherline_proto::app::ErrorCode) -> bool {
    use cipherline_proto::app::ErrorCode as E;
    matches!(code, E::MessageTooLarge | E::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipherline_client::ClientError as C;
    use cipherline_proto::app::ErrorCode as E;

    fn refused(code: E, text: &str) -> CliError {
        CliError::Client(C::Refused { code, text: text.to_owned() })
    }

    #[test]
    fn a_connection_the_server_ended_is_not_a_refused_request() {
        for code in [E::ShuttingDown, E::IdleTimeout, E::TooSlow] {
            assert_eq!(refused(code, "bye").exit_code(), exit::FAILED, "{code:?}");
        }
        assert_eq!(refused(E::MessageTooLarge, "too big").exit_code(), exit::REFUSED);
        assert_eq!(refused(E::UnknownUser, "who?").exit_code(), exit::REFUSED);
        assert_eq!(refused(E::NameTaken, "in use").exit_code(), exit::NAME_TAKEN);
    }

    #[test]
    fn a_second_session_of_your_own_key_is_not_told_to_choose_another_name() {
        let own = refused(E::NameTaken, "your identity key has 4 sessions open as \"alice\" already; close one first");
        assert!(!own.hint().unwrap_or_default().contains("--name"));
        assert!(refused(E::NameTaken, "the name \"alice\" is in use").hint().unwrap_or_default().contains("--name"));
    }
}
