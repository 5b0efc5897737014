//! What a recipient remembers about other people's identity keys, and the
//! verdict on each message it receives (PROTOCOL.md §13.7).
//!
//! Like the known-servers file, but per peer: the first key seen for a name
//! on a server is remembered (trust on first use); a different key later is
//! a loud warning, never silently accepted. The file has one line per peer,
//! `SERVER NAME SHA256:<fingerprint>`, `#` for comments.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cipherline_keys::Fingerprint;
use cipherline_proto::app::Delivery;
use cipherline_proto::crypto::sign::IdentityPublicKey;
use cipherline_proto::signature::{self, Verification};

/// The verdict on one relayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageStatus {
    /// Signed by the key remembered for the sender.
    Verified,
    /// Signed by a key seen for the first time, now remembered.
    FirstSeen(Fingerprint),
    /// The sender did not sign (it has no identity key).
    Unsigned,
    /// The signature does not verify: altered or forged on the way.
    Invalid,
    /// Validly signed, but by a different key than the one remembered.
    KeyChanged {
        /// The key remembered for the sender.
        remembered: Fingerprint,
        /// The key that signed this message.
        presented: Fingerprint,
    },
}

impl MessageStatus {
    /// Whether the message can be shown as coming from the named sender.
    #[must_use]
    pub fn is_trusted(&self) -> bool {
        matches!(self, MessageStatus::Verified | MessageStatus::FirstSeen(_))
    }

    /// A short word for displays and JSON.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            MessageStatus::Verified | MessageStatus::FirstSeen(_) => "verified",
            MessageStatus::Unsigned => "unsigned",
            MessageStatus::Invalid => "invalid-signature",
            MessageStatus::KeyChanged { .. } => "key-changed",
        }
    }
}

/// Remembered peer keys for one server.
pub struct Peers {
    server: String,
    file: Option<PathBuf>,
    keys: HashMap<String, Fingerprint>,
}

impl Peers {
    /// Peers of `server`, remembered in `file` (or only in memory).
    pub fn load(server: &str, file: Option<&Path>) -> std::io::Result<Self> {
        let mut keys = HashMap::new();
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                        let mut parts = line.split_whitespace();
                        if let (Some(s), Some(name), Some(fp)) = (parts.next(), parts.next(), parts.next())
                            && s == server
                            && let Ok(fp) = fp.parse::<Fingerprint>()
                        {
                            // The last line for a name wins (see `replace`).
                            keys.insert(name.to_owned(), fp);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Peers { server: server.to_owned(), file: file.map(Path::to_owned), keys })
    }

    /// The key remembered for `name`.
    #[must_use]
    pub fn remembered(&self, name: &str) -> Option<Fingerprint> {
        self.keys.get(name).copied()
    }

    /// Records `fp` as `name`'s key (first use, or the user accepted a change).
    pub fn remember(&mut self, name: &str, fp: Fingerprint) -> std::io::Result<()> {
        if let Some(path) = &self.file {
            // One short line per write with O_APPEND: concurrent clients
            // never interleave inside a line.
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            f.write_all(format!("{} {name} {fp}\n", self.server).as_bytes())?;
        }
        self.keys.insert(name.to_owned(), fp);
        Ok(())
    }

    /// The verdict on a message key `key` announced for `name` (from a
    /// message or Whois), remembering it on first use.
    pub fn check_key(&mut self, name: &str, key: &IdentityPublicKey) -> MessageStatus {
        let presented = Fingerprint::from_bytes(key.fingerprint());
        match self.keys.get(name) {
            Some(remembered) if *remembered == presented => MessageStatus::Verified,
            Some(remembered) => MessageStatus::KeyChanged { remembered: *remembered, presented },
            None => {
                // Remembering may fail (read-only data dir); the verdict stands.
                let _ = self.remember(name, presented);
                MessageStatus::FirstSeen(presented)
            }
        }
    }

    /// The verdict on a relayed message.
    pub fn check(&mut self, d: &Delivery) -> MessageStatus {
        match signature::verify(d) {
            Verification::Unsigned => MessageStatus::Unsigned,
            Verification::Invalid => MessageStatus::Invalid,
            Verification::Valid(key) => self.check_key(&d.from, &key),
        }
    }
}
