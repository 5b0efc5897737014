//! Who may use which name (PROTOCOL.md §13.8).
//!
//! - **Open**: anyone may connect. The first identity key that uses a name
//!   owns it from then on (trust on first use); later connections under that
//!   name must prove the same key, and clients without a key cannot use it.
//!   Bindings persist in a names file when one is given.
//! - **Allowlist**: only identity keys listed in an authorized-keys file may
//!   connect, each under the names listed for it. The file can be reloaded
//!   while the server runs ([`Identities::reload`], on SIGHUP in the CLI).
//!
//! Both files have one entry a line, `NAME SHA256:<fingerprint>`, where the
//! fingerprint is the SHA-256 of the identity key's DER SubjectPublicKeyInfo
//! (what `cipherline fingerprint` prints); `#` starts a comment.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use cipherline_keys::Fingerprint;
use cipherline_proto::app::ErrorCode;

use crate::connection::valid_name;
use crate::hub::Refusal;

/// Largest names or authorized-keys file read.
const MAX_FILE: u64 = 4 << 20;

/// How names relate to identity keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// Anyone; names bind to the first key that used them, persisted in
    /// `names_file` if given.
    Open {
        /// Where bindings are kept across restarts.
        names_file: Option<PathBuf>,
    },
    /// Only the listed keys, under their listed names.
    Allowlist {
        /// The authorized-keys file.
        file: PathBuf,
    },
}

/// Errors loading an identity file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `NAME SHA256:<fingerprint>`.
    #[error("{path} line {line}: expected \"NAME SHA256:<fingerprint>\"")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
}

type Table = HashMap<String, BTreeSet<[u8; 32]>>;

fn read_table(path: &Path, missing_ok: bool) -> Result<Table, IdentityFileError> {
    use std::io::Read as _;
    let io = |source| IdentityFileError::Io { path: path.to_owned(), source };
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => f.take(MAX_FILE).read_to_string(&mut text).map(drop).map_err(io)?,
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::new()),
        Err(e) => return Err(io(e)),
    }
    let mut table = Table::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = || IdentityFileError::Syntax { path: path.to_owned(), line: n + 1 };
        let mut parts = line.split_whitespace();
        let (Some(name), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else { return Err(syntax()) };
        let fp: Fingerprint = fp.parse().map_err(|_| syntax())?;
        if !valid_name(name, cipherline_proto::app::MAX_NAME) {
            return Err(syntax());
        }
        table.entry(name.to_owned()).or_default().insert(*fp.as_bytes());
    }
    Ok(table)
}

/// The loaded policy and its tables.
pub struct Identities {
    policy: IdentityPolicy,
    table: RwLock<Table>,
}

impl Identities {
    /// Open policy kept in memory only (the library default).
    #[must_use]
    pub fn open_in_memory() -> Self {
        Identities { policy: IdentityPolicy::Open { names_file: None }, table: RwLock::new(Table::new()) }
    }

    /// Loads a policy's file (a missing names file is an empty one).
    pub fn load(policy: IdentityPolicy) -> Result<Self, IdentityFileError> {
        let table = match &policy {
            IdentityPolicy::Open { names_file: Some(path) } => read_table(path, true)?,
            IdentityPolicy::Open { names_file: None } => Table::new(),
            IdentityPolicy::Allowlist { file } => read_table(file, false)?,
        };
        Ok(Identities { policy, table: RwLock::new(table) })
    }

    /// Re-reads the authorized-keys file (allowlist only); returns the
    /// number of names. On error the previous table stays in force.
    pub fn reload(&self) -> Result<usize, IdentityFileError> {
        let IdentityPolicy::Allowlist { file } = &self.policy else { return Ok(self.read().len()) };
        let table = read_table(file, false)?;
        let n = table.len();
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = table;
        Ok(n)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a client that proved `key` (or none) may stay connected at
    /// all: under the allowlist, only listed keys.
    pub(crate) fn admits(&self, key: Option<&[u8; 32]>) -> bool {
        match &self.policy {
            IdentityPolicy::Open { .. } => true,
            IdentityPolicy::Allowlist { .. } => key.is_some_and(|k| self.read().values().any(|set| set.contains(k))),
        }
    }

    /// Whether `name` may be used by a client that proved `key` (or none);
    /// in open mode, binds an unbound name to the key (and records it).
    pub(crate) fn check_name(&self, name: &str, key: Option<&[u8; 32]>) -> Result<(), Refusal> {
        let mismatch = |why: String| (ErrorCode::IdentityMismatch, why);
        match &self.policy {
            IdentityPolicy::Allowlist { .. } => {
                let ok = key.is_some_and(|k| self.read().get(name).is_some_and(|set| set.contains(k)));
                if ok {
                    Ok(())
                } else {
                    Err(mismatch(format!("your identity key is not authorized for the name {name:?}")))
                }
            }
            IdentityPolicy::Open { names_file } => {
                let mut table = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                match (table.get(name), key) {
                    (Some(bound), Some(k)) if bound.contains(k) => Ok(()),
                    (Some(_), _) => Err(mismatch(format!(
                        "the name {name:?} belongs to another identity key on this server; choose another name"
                    ))),
                    (None, None) => Ok(()),
                    (None, Some(k)) => {
                        if let Some(path) = names_file
                            && let Err(e) = append(path, name, k)
                        {
                            tracing::error!(error = %e, "cannot record a name binding");
                            return Err((ErrorCode::BadRequest, "the server cannot record your name".into()));
                        }
                        table.entry(name.to_owned()).or_default().insert(*k);
                        tracing::info!(name, key = %Fingerprint::from_bytes(*k), "name bound to identity key");
                        Ok(())
                    }
                }
            }
        }
    }
}

fn append(path: &Path, name: &str, key: &[u8; 32]) -> Result<(), IdentityFileError> {
    let io = |source| IdentityFileError::Io { path: path.to_owned(), source };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    writeln!(f, "{name} {}", Fingerprint::from_bytes(*key)).map_err(io)?;
    f.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_binds_first_key_and_persists() {
        let dir = std::env::temp_dir().join(format!("cl-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("names");
        let _ = std::fs::remove_file(&file);
        let ids = Identities::load(IdentityPolicy::Open { names_file: Some(file.clone()) }).unwrap();
        assert!(ids.check_name("alice", Some(&[1; 32])).is_ok());
        assert!(ids.check_name("alice", Some(&[1; 32])).is_ok());
        assert_eq!(ids.check_name("alice", Some(&[2; 32])).unwrap_err().0, ErrorCode::IdentityMismatch);
        assert_eq!(ids.check_name("alice", None).unwrap_err().0, ErrorCode::IdentityMismatch);
        assert!(ids.check_name("guest", None).is_ok(), "keyless clients may use unbound names");
        let again = Identities::load(IdentityPolicy::Open { names_file: Some(file) }).unwrap();
        assert_eq!(again.check_name("alice", Some(&[2; 32])).unwrap_err().0, ErrorCode::IdentityMismatch);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
