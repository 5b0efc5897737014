//! The SQLite file: mls-rs's tables (group state, past epochs, key package
//! secrets, PSKs) and this crate's own table beside them.
//!
//! mls-rs opens one connection per storage; this crate keeps one more for
//! its own table and for forgetting groups. In memory ([`Member::new`],
//! tests) all of them share one named in-memory database, so they see the
//! same tables as with a file.
//!
//! [`Member::new`]: crate::Member::new

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mls_rs::storage_provider::sqlite::connection_strategy::ConnectionStrategy;
use mls_rs::storage_provider::sqlite::{SqLiteDataStorageEngine, SqLiteDataStorageError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::conversation::Pending;
use crate::{E2eError, Result};

/// Where the database lives.
pub(crate) enum Location {
    /// A file, created 0600.
    File(PathBuf),
    /// A named in-memory database, alive while one connection is open.
    Memory(String),
}

impl ConnectionStrategy for Location {
    fn make_connection(&self) -> std::result::Result<Connection, SqLiteDataStorageError> {
        let opened = match self {
            Location::File(path) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            Location::Memory(uri) => Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
        };
        let conn = opened.map_err(|e| SqLiteDataStorageError::SqlEngineError(e.into()))?;
        // Forward secrecy on disk: what a transaction deletes or replaces
        // (an old epoch's secrets, a used key package's private key, the
        // previous group snapshot) is overwritten with zeros in the file,
        // not left in free pages. With the default rollback journal (not
        // WAL, whose frames would keep old pages until a checkpoint), no
        // old secret stays in the database's files once a call returns.
        // rusqlite sets a 5 s busy timeout on every connection.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(|e| SqLiteDataStorageError::SqlEngineError(e.into()))?;
        Ok(conn)
    }
}

/// This crate's own table: per group, since when our leaf key is the
/// same and how many messages we sent with it (for
/// [`Conversation::needs_update`](crate::Conversation::needs_update)), and
/// the bytes of the commit we built and have not yet confirmed or abandoned
/// (to recognise it if the relay echoes it) and whether it has a path
/// (then confirming it renews our leaf key).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cipherline_leaf (
    group_id BLOB PRIMARY KEY,
    since_ms INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    pending_epoch INTEGER,
    pending_commit BLOB,
    pending_welcome BLOB,
    pending_group_info BLOB,
    pending_path INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;";

/// The open database: the engine mls-rs builds its storages from, and our
/// connection.
#[derive(Clone)]
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating it 0600 if need be) the file at `path`.
    pub(crate) fn open(path: &Path) -> Result<(SqLiteDataStorageEngine<Location>, Store)> {
        create_private(path)?;
        // The rollback journal with SQLite's default `synchronous = FULL`:
        // a transaction is durable once the call returns, even across a
        // power cut.
        Self::with(Location::File(path.to_owned()))
    }

    /// A fresh in-memory database.
    pub(crate) fn memory() -> Result<(SqLiteDataStorageEngine<Location>, Store)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uri = format!("file:cipherline-e2e-{}-{n}?mode=memory&cache=shared", std::process::id());
        Self::with(Location::Memory(uri))
    }

    fn with(location: Location) -> Result<(SqLiteDataStorageEngine<Location>, Store)> {
        // Our table goes beside mls-rs's, which it creates on its own first
        // connection (our table leaves its schema version alone).
        let conn = location.make_connection().map_err(|e| E2eError::Store(e.to_string()))?;
        conn.execute_batch(SCHEMA)?;
        upgrade(&conn)?;
        let engine = SqLiteDataStorageEngine::new(location).map_err(|e| E2eError::Store(e.to_string()))?;
        Ok((engine, Store { conn: Arc::new(Mutex::new(conn)) }))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| E2eError::Store("a previous call panicked while holding the database".into()))
    }

    /// Starts the bookkeeping of a group we just created or joined.
    pub(crate) fn start(&self, group_id: &[u8]) -> Result<()> {
        self.lock()?.execute(
            "INSERT INTO cipherline_leaf (group_id, since_ms, sent) VALUES (?, ?, 0)
             ON CONFLICT(group_id) DO UPDATE SET since_ms = excluded.since_ms, sent = 0, pending_epoch = NULL,
             pending_commit = NULL, pending_welcome = NULL, pending_group_info = NULL, pending_path = 0",
            params![group_id, to_i64(now_ms())],
        )?;
        Ok(())
    }

    /// Counts one message sent with the current leaf.
    pub(crate) fn count_sent(&self, group_id: &[u8]) -> Result<()> {
        self.lock()?.execute("UPDATE cipherline_leaf SET sent = sent + 1 WHERE group_id = ?", params![group_id])?;
        Ok(())
    }

    /// Since when our leaf is the same, and how many messages it sent.
    pub(crate) fn leaf(&self, group_id: &[u8]) -> Result<Option<(u64, u64)>> {
        let row = self
            .lock()?
            .query_row("SELECT since_ms, sent FROM cipherline_leaf WHERE group_id = ?", params![group_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        Ok(row.map(|(since, sent)| (to_u64(since), to_u64(sent))))
    }

    /// Remembers (or clears) the commit we built and have not yet
    /// confirmed or abandoned, and whether it has a path.
    pub(crate) fn set_pending(&self, group_id: &[u8], pending: Option<&Pending>, path: bool) -> Result<()> {
        self.lock()?.execute(
            "UPDATE cipherline_leaf SET pending_epoch = ?, pending_commit = ?, pending_welcome = ?,
             pending_group_info = ?, pending_path = ? WHERE group_id = ?",
            params![
                pending.map(|p| to_i64(p.epoch)),
                pending.map(|p| &p.commit),
                pending.and_then(|p| p.welcome.as_ref()),
                pending.and_then(|p| p.group_info.as_ref()),
                path,
                group_id
            ],
        )?;
        Ok(())
    }

    /// The commit we built and have not yet confirmed or abandoned, and
    /// whether it has a path.
    pub(crate) fn pending(&self, group_id: &[u8]) -> Result<Option<(Pending, bool)>> {
        let row = self
            .lock()?
            .query_row(
                "SELECT pending_epoch, pending_commit, pending_welcome, pending_group_info, pending_path
                 FROM cipherline_leaf WHERE group_id = ?",
                params![group_id],
                |r| {
                    let epoch: Option<i64> = r.get(0)?;
                    let commit: Option<Vec<u8>> = r.get(1)?;
                    let pending = epoch.zip(commit).map(|(epoch, commit)| Pending {
                        epoch: to_u64(epoch),
                        commit,
                        welcome: None,
                        group_info: None,
                    });
                    Ok(pending.map(|p| (p, r.get(2), r.get(3), r.get::<_, bool>(4))))
                },
            )
            .optional()?
            .flatten();
        match row {
            None => Ok(None),
            Some((mut pending, welcome, group_info, path)) => {
                pending.welcome = welcome?;
                pending.group_info = group_info?;
                Ok(Some((pending, path?)))
            }
        }
    }

    /// Deletes everything about a group: mls-rs's state and past epochs
    /// (explicitly: its schema's cascade only works where SQLite was built
    /// with foreign keys on by default, as the bundled one is) and our row.
    pub(crate) fn forget(&self, group_id: &[u8]) -> Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM epoch WHERE group_id = ?", params![group_id])?;
        tx.execute("DELETE FROM mls_group WHERE group_id = ?", params![group_id])?;
        tx.execute("DELETE FROM cipherline_leaf WHERE group_id = ?", params![group_id])?;
        tx.commit()?;
        Ok(())
    }
}

/// Brings a file written by an earlier build of this crate (WAL journal,
/// fewer columns) to the current form.
fn upgrade(conn: &Connection) -> Result<()> {
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") && !mode.eq_ignore_ascii_case("memory") {
        return Err(E2eError::Store(format!("could not leave journal mode {mode}")));
    }
    let mut columns = Vec::new();
    {
        let mut statement = conn.prepare("SELECT name FROM pragma_table_info('cipherline_leaf')")?;
        for name in statement.query_map([], |r| r.get::<_, String>(0))? {
            columns.push(name?);
        }
    }
    for (name, declaration) in [
        ("pending_epoch", "INTEGER"),
        ("pending_welcome", "BLOB"),
        ("pending_group_info", "BLOB"),
        ("pending_path", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        if !columns.iter().any(|c| c == name) {
            conn.execute_batch(&format!("ALTER TABLE cipherline_leaf ADD COLUMN {name} {declaration}"))?;
        }
    }
    Ok(())
}

/// Creates the file with mode 0600 if it does not exist, and narrows it
/// to 0600 if it does: it holds every group's secrets.
fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| E2eError::Store(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| E2eError::Store(format!("{}: {e}", path.display())))?;
    }
    drop(file);
    Ok(())
}
