//! The client's local store: one SQLite file, `client.db`, in the data
//! directory, holding message history (which doubles as the record of
//! message ids already shown), the remembered keys of other people
//! ([`crate::peers`]), and per-server queue cursors.
//!
//! # Contract
//!
//! - The file is created with mode 0600 before SQLite opens it, and an
//!   existing file readable by others is tightened to 0600 (SQLite gives its
//!   `-wal` and `-shm` files the database file's mode).
//! - Several `cipherline` processes (a `listen` and a `chat`) share the file:
//!   WAL mode, every write in one `BEGIN IMMEDIATE` transaction, and a
//!   bounded wait ([`StoreOptions::busy_timeout`]) for another process's
//!   write. The API is synchronous and every call is short; no transaction
//!   outlives a call, so none is ever held across an `await`.
//! - Commits are durable (`synchronous = FULL`): a message recorded before
//!   it is acknowledged to the server survives a crash or power loss.
//! - The schema is versioned with `user_version`; a file written by a newer
//!   cipherline is refused, never altered.
//! - The first open of a data directory that still has a `known_peers` text
//!   file imports it (parsed strictly, in the same transaction that creates
//!   the schema) and renames it to `known_peers.migrated`. A file that does
//!   not parse refuses the open with its line number, and nothing is
//!   imported or renamed.
//! - History is bounded per server ([`StoreOptions::max_messages`]): the
//!   oldest messages are deleted to make room.
//!
//! Nothing here is encrypted at rest: the file mode is the only protection
//! (SECURITY.md).
//!
//! Numbers are `u64` in the API and stored by their bits as SQLite's signed
//! 64-bit integers; comparisons of cursors are made in Rust for that reason.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cipherline_proto::app::{Delivery, Target, fold_name};
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};

use crate::ClientError;
use crate::peers::MessageStatus;

/// The database's file name inside the data directory.
pub const FILE_NAME: &str = "client.db";
/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 3;
/// How many messages are kept per server by default.
pub const DEFAULT_MAX_MESSAGES: u64 = 100_000;
/// How long a write waits for another process's write by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The label of a message this user sent (in place of a signature verdict).
pub const OWN_LABEL: &str = "own";

/// The history label of a message received unsigned under a name whose key
/// is remembered: its verdict is `key-changed`, but no other key was seen,
/// so the history must not say the key changed.
pub const UNSIGNED_REMEMBERED_LABEL: &str = "unsigned-remembered";

/// The history label for `status` (a received message).
#[must_use]
pub fn label_of(status: &MessageStatus) -> &'static str {
    match status {
        MessageStatus::KeyChanged { presented: None, .. } => UNSIGNED_REMEMBERED_LABEL,
        other => other.label(),
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// At most this many messages are kept per server; the oldest go first.
    pub max_messages: u64,
    /// How long a call waits for another process's write before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_messages: DEFAULT_MAX_MESSAGES, busy_timeout: DEFAULT_BUSY_TIMEOUT }
    }
}

/// Whether a message was received or sent by this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from someone.
    In,
    /// Sent by this user.
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The server, as the client names it (`host:port`, as for peers).
    pub server: String,
    /// The server's message id: one message, one id, on every delivery.
    pub id: u64,
    /// The per-recipient queue position it came with, 0 if none.
    pub seq: u64,
    /// The server's time for it, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The sender's name.
    pub from: String,
    /// The room, or the user a direct message was for.
    pub target: Target,
    /// The text, exactly as received or sent (escape it before showing it).
    pub text: String,
    /// Received or sent.
    pub direction: Direction,
    /// The verdict label ([`MessageStatus::label`]), or [`OWN_LABEL`].
    pub label: String,
    /// It travelled end to end encrypted (MLS), not readable by the server.
    pub e2e: bool,
}

impl Msg {
    /// A relayed message as the history keeps it. `me` is this client's
    /// name: a message from `me` (sent by another session of this user) is
    /// recorded as sent.
    #[must_use]
    pub fn received(server: &str, me: &str, d: &Delivery, status: &MessageStatus) -> Msg {
        let own = fold_name(&d.from) == fold_name(me);
        Msg {
            server: server.to_owned(),
            id: d.id,
            seq: d.seq,
            timestamp_ms: d.timestamp_ms,
            from: d.from.clone(),
            target: d.to.clone(),
            text: d.text.clone(),
            direction: if own { Direction::Out } else { Direction::In },
            label: if own { OWN_LABEL } else { label_of(status) }.to_owned(),
            e2e: false,
        }
    }

    /// A message this user sent, once the server gave it `id`.
    #[must_use]
    pub fn sent(server: &str, me: &str, id: u64, timestamp_ms: u64, to: &Target, text: &str) -> Msg {
        Msg {
            server: server.to_owned(),
            id,
            seq: 0,
            timestamp_ms,
            from: me.to_owned(),
            target: to.clone(),
            text: text.to_owned(),
            direction: Direction::Out,
            label: OWN_LABEL.to_owned(),
            e2e: false,
        }
    }

    /// The same message, marked as end to end encrypted or not.
    #[must_use]
    pub fn with_e2e(self, e2e: bool) -> Msg {
        Msg { e2e, ..self }
    }

    /// The conversation it belongs to, folded: the room, or for a direct
    /// message the other person (the sender of what came in, the recipient
    /// of what went out).
    fn conversation(&self) -> (&'static str, String) {
        match (&self.target, self.direction) {
            (Target::Room(room), _) => ("room", fold_name(room)),
            (Target::User(_), Direction::In) => ("user", fold_name(&self.from)),
            (Target::User(to), Direction::Out) => ("user", fold_name(to)),
        }
    }
}

/// Which messages [`LocalStore::history`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every message of the server.
    All,
    /// Messages said in one room (compared ignoring case).
    Room(String),
    /// Direct messages with one user, both ways (compared ignoring case).
    With(String),
}

/// The client's database. Cheap to clone: clones share one connection,
/// used by one call at a time.
#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    max_messages: u64,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").field("path", &self.path).finish_non_exhaustive()
    }
}

const SCHEMA_V1: &str = "
CREATE TABLE history (
    n INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    sender TEXT NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('room', 'user')),
    target TEXT NOT NULL,
    conversation TEXT NOT NULL,
    text TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    label TEXT NOT NULL,
    -- One message id may be here twice: sent by one name of this data
    -- directory and received by another (or by the same, to itself).
    UNIQUE (server, id, direction)
);
CREATE INDEX history_by_server ON history (server);
CREATE INDEX history_by_conversation ON history (server, target_kind, conversation);
CREATE TABLE history_count (server TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE peers (
    server TEXT NOT NULL,
    folded TEXT NOT NULL,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    verified INTEGER NOT NULL CHECK (verified IN (0, 1)),
    PRIMARY KEY (server, folded)
) WITHOUT ROWID;
CREATE TABLE cursors (server TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
";

/// The legacy peers file's name, and what it is renamed to once imported.
const LEGACY_PEERS: &str = "known_peers";
const LEGACY_MIGRATED: &str = "known_peers.migrated";

// u64 values are stored by their bits (see the module doc).
#[allow(clippy::cast_possible_wrap)]
fn to_sql(v: u64) -> i64 {
    v as i64
}

#[allow(clippy::cast_sign_loss)]
fn from_sql(v: i64) -> u64 {
    v as u64
}

impl LocalStore {
    /// Opens (creating if needed) the store at `path` with default options.
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        Self::open_with(path, &StoreOptions::default())
    }

    /// Opens the store `client.db` in the data directory `dir`.
    pub fn in_data_dir(dir: &Path) -> Result<Self, ClientError> {
        Self::open(&dir.join(FILE_NAME))
    }

    /// Opens (creating if needed) the store at `path`: the file made
    /// private, the schema created or checked, a `known_peers` file beside
    /// it imported on first open.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Self, ClientError> {
        create_private(path)?;
        let err = |e| db_error(path, e);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(options.busy_timeout).map_err(err)?;
        // Setting up a new file (switching it to WAL, creating the schema)
        // can meet another process doing the same; SQLite then answers
        // "busy" at once for some steps without waiting, so the setup is
        // retried, within the same bounded wait.
        let deadline = std::time::Instant::now() + options.busy_timeout;
        loop {
            match setup(&mut conn, path) {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other?,
            }
        }
        Ok(LocalStore { conn: Arc::new(Mutex::new(conn)), path: path.to_owned(), max_messages: options.max_messages })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: it waits for
    /// other writers up front, within the busy timeout, rather than failing
    /// midway), committed if `f` succeeds.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.error(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Runs `f` on the connection, for reads.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn)
    }

    /// The most messages kept per server.
    pub(crate) fn max_messages(&self) -> u64 {
        self.max_messages
    }

    /// This store's error for a database failure.
    pub(crate) fn error(&self, source: rusqlite::Error) -> ClientError {
        db_error(&self.path, source)
    }

    /// This store's error for a record that does not parse.
    pub(crate) fn corrupt(&self, what: &'static str) -> ClientError {
        corrupt(&self.path, what)
    }

    /// Records a message; false if the server's id was already recorded for
    /// that server in the same direction (it was shown before: show it
    /// again nowhere). A message one name of this data directory sent and
    /// another received is recorded once each way. Makes room
    /// by deleting the server's oldest messages beyond the bound.
    pub fn record(&self, msg: &Msg) -> Result<bool, ClientError> {
        let (kind, conversation) = msg.conversation();
        let target = match &msg.target {
            Target::Room(r) | Target::User(r) => r.as_str(),
        };
        self.write(|tx| {
            let e = |e| self.error(e);
            let added = tx
                .execute(
                    "INSERT INTO history (server, id, seq, timestamp_ms, sender, target_kind, target, conversation,
                                          text, direction, label, e2e)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (server, id, direction) DO NOTHING",
                    params![
                        msg.server,
                        to_sql(msg.id),
                        to_sql(msg.seq),
                        to_sql(msg.timestamp_ms),
                        msg.from,
                        kind,
                        target,
                        conversation,
                        msg.text,
                        msg.direction.as_str(),
                        msg.label,
                        msg.e2e
                    ],
                )
                .map_err(e)?;
            if added == 0 {
                return Ok(false);
            }
            // A running count per server, so the bound costs an index step,
            // not a scan of 100,000 rows, per message.
            let count: i64 = tx
                .query_row(
                    "INSERT INTO history_count (server, n) VALUES (?1, 1)
                     ON CONFLICT (server) DO UPDATE SET n = n + 1 RETURNING n",
                    params![msg.server],
                    |r| r.get(0),
                )
                .map_err(e)?;
            let excess = from_sql(count).saturating_sub(self.max_messages);
            if excess > 0 {
                let deleted = tx
                    .execute(
                        "DELETE FROM history WHERE n IN
                           (SELECT n FROM history WHERE server = ?1 ORDER BY n LIMIT ?2)",
                        params![msg.server, to_sql(excess)],
                    )
                    .map_err(e)?;
                tx.execute(
                    "UPDATE history_count SET n = n - ?2 WHERE server = ?1",
                    params![msg.server, i64::try_from(deleted).unwrap_or(i64::MAX)],
                )
                .map_err(e)?;
            }
            Ok(true)
        })
    }

    /// The newest `limit` messages of `server` that `filter` selects, oldest
    /// first, in the order they were recorded.
    pub fn history(&self, server: &str, filter: &Filter, limit: u64) -> Result<Vec<Msg>, ClientError> {
        self.history_before(server, filter, None, limit)
    }

    /// As [`LocalStore::history`], of the messages recorded before the
    /// message with the server's id `before` (its first record, if it is
    /// there both ways); none if that message is not in the history.
    pub fn history_before(
        &self,
        server: &str,
        filter: &Filter,
        before: Option<u64>,
        limit: u64,
    ) -> Result<Vec<Msg>, ClientError> {
        let limit = i64::try_from(limit.min(self.max_messages)).unwrap_or(i64::MAX);
        let (clause, key) = match filter {
            Filter::All => ("", String::new()),
            Filter::Room(room) => ("AND target_kind = 'room' AND conversation = ?3", fold_name(room)),
            Filter::With(user) => ("AND target_kind = 'user' AND conversation = ?3", fold_name(user)),
        };
        let sql = format!(
            "SELECT id, seq, timestamp_ms, sender, target_kind, target, text, direction, label, e2e FROM history
             WHERE server = ?1 AND n < ?4 {clause} ORDER BY n DESC LIMIT ?2"
        );
        self.read(|conn| {
            let e = |e| self.error(e);
            let cutoff = match before {
                None => i64::MAX,
                Some(id) => {
                    let n: Option<i64> = conn
                        .query_row(
                            "SELECT min(n) FROM history WHERE server = ?1 AND id = ?2",
                            params![server, to_sql(id)],
                            |r| r.get(0),
                        )
                        .map_err(e)?;
                    match n {
                        Some(n) => n,
                        None => return Ok(Vec::new()),
                    }
                }
            };
            let mut stmt = conn.prepare(&sql).map_err(e)?;
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, bool>(9)?,
                ))
            };
            let rows = stmt.query_map(params![server, limit, key, cutoff], map).map_err(e)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, seq, ts, from, kind, target, text, direction, label, e2e) = row.map_err(e)?;
                let target = match kind.as_str() {
                    "room" => Target::Room(target),
                    "user" => Target::User(target),
                    _ => return Err(self.corrupt("a history record has an unknown target kind")),
                };
                let direction = match direction.as_str() {
                    "in" => Direction::In,
                    "out" => Direction::Out,
                    _ => return Err(self.corrupt("a history record has an unknown direction")),
                };
                out.push(Msg {
                    server: server.to_owned(),
                    id: from_sql(id),
                    seq: from_sql(seq),
                    timestamp_ms: from_sql(ts),
                    from,
                    target,
                    text,
                    direction,
                    label,
                    e2e,
                });
            }
            out.reverse();
            Ok(out)
        })
    }

    /// The newest history entry now. What is recorded after it was recorded
    /// by this process or by another client process running at the same
    /// time (see [`LocalStore::record_fresh`]).
    pub fn watermark(&self) -> Result<u64, ClientError> {
        self.read(|conn| {
            let n: Option<i64> =
                conn.query_row("SELECT max(n) FROM history", [], |r| r.get(0)).map_err(|e| self.error(e))?;
            Ok(n.map_or(0, from_sql))
        })
    }

    /// Whether `msg` was recorded at or before `since` (this process's
    /// [`LocalStore::watermark`] when it started): shown by an earlier run,
    /// which ended before acknowledging it, so the server delivered it
    /// again — not to be shown again. One recorded after `since` was
    /// recorded by this process or by another client process running now
    /// (a `listen` beside a `chat` each show every message). Ask this
    /// before showing a message; [`LocalStore::record`] it after.
    pub fn recorded_before(&self, msg: &Msg, since: u64) -> Result<bool, ClientError> {
        self.read(|conn| {
            let n: Option<i64> = conn
                .query_row(
                    "SELECT n FROM history WHERE server = ?1 AND id = ?2 AND direction = ?3",
                    params![msg.server, to_sql(msg.id), msg.direction.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.error(e))?;
            Ok(n.is_some_and(|n| from_sql(n) <= since))
        })
    }

    /// The highest queue position this client acknowledged to `server`, 0
    /// if none.
    pub fn cursor(&self, server: &str) -> Result<u64, ClientError> {
        self.read(|conn| {
            let seq: Option<i64> = conn
                .query_row("SELECT seq FROM cursors WHERE server = ?1", params![server], |r| r.get(0))
                .optional()
                .map_err(|e| self.error(e))?;
            Ok(seq.map_or(0, from_sql))
        })
    }

    /// Moves `server`'s cursor to `seq` if that is forward; an older `seq`
    /// (another process got further meanwhile) changes nothing.
    pub fn set_cursor(&self, server: &str, seq: u64) -> Result<(), ClientError> {
        self.write(|tx| {
            let e = |e| self.error(e);
            let now: Option<i64> = tx
                .query_row("SELECT seq FROM cursors WHERE server = ?1", params![server], |r| r.get(0))
                .optional()
                .map_err(e)?;
            if now.is_some_and(|now| from_sql(now) >= seq) {
                return Ok(());
            }
            tx.execute(
                "INSERT INTO cursors (server, seq) VALUES (?1, ?2) ON CONFLICT (server) DO UPDATE SET seq = ?2",
                params![server, to_sql(seq)],
            )
            .map_err(e)?;
            Ok(())
        })
    }
}

/// Switches the connection to WAL, durable commits and secure deletion,
/// and brings the schema up to date.
fn setup(conn: &mut Connection, path: &Path) -> Result<(), ClientError> {
    let err = |e| db_error(path, e);
    // A newer cipherline's file is refused before anything (even the
    // journal mode) is changed in it.
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(ClientError::LocalStoreTooNew { path: path.to_owned(), found, supported: SCHEMA_VERSION });
    }
    // WAL lets a reader and a writer in two processes work at once;
    // FULL makes each commit durable before the call returns.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(corrupt(path, "the database cannot be switched to WAL mode"));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
    // Messages deleted by the bound are overwritten, not left readable
    // in free pages of the file.
    conn.pragma_update(None, "secure_delete", "ON").map_err(err)?;
    migrate(conn, path)
}

/// Whether `e` is SQLite's "another connection holds the lock".
fn is_busy(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::LocalStore { source: rusqlite::Error::SqliteFailure(f, _), .. }
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn db_error(path: &Path, source: rusqlite::Error) -> ClientError {
    ClientError::LocalStore { path: path.to_owned(), source }
}

fn corrupt(path: &Path, what: &'static str) -> ClientError {
    ClientError::LocalStoreCorrupt { path: path.to_owned(), what }
}

/// Creates the file (and its directory, 0700) with mode 0600 if missing,
/// and takes away any access others have to an existing one, before SQLite
/// opens it: SQLite would create it with the umask's mode.
fn create_private(path: &Path) -> Result<(), ClientError> {
    let io = |p: &Path, source| ClientError::KnownPeersIo { path: p.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| io(dir, e))?;
    }
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(|e| io(path, e))?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700)).map_err(|e| io(path, e))?;
        }
    }
    drop(file);
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction that a
/// second process opening at the same time waits for (and then finds
/// nothing to do).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), ClientError> {
    let err = |e| db_error(path, e);
    let check = |found: i64| {
        if found > SCHEMA_VERSION {
            return Err(ClientError::LocalStoreTooNew { path: path.to_owned(), found, supported: SCHEMA_VERSION });
        }
        if found < 0 {
            return Err(corrupt(path, "the schema version is negative"));
        }
        Ok(found == SCHEMA_VERSION)
    };
    // Checked first without the write lock: the usual open finds the
    // schema current and never waits for another process's write.
    if check(conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?)? {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
    // Again under the lock: another process may have set it up meanwhile.
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    if check(found)? {
        return Ok(());
    }
    let legacy = path.with_file_name(LEGACY_PEERS);
    // found == 0: a new file.
    let import = found == 0 && legacy != path && legacy.exists();
    if found == 0 {
        tx.execute_batch(SCHEMA_V1).map_err(err)?;
    }
    // Version 2 adds the end-to-end conversations (crate::groups).
    if found <= 1 {
        tx.execute_batch(crate::groups::SCHEMA_V2).map_err(err)?;
    }
    // Version 3 adds end-to-end files (crate::files::records).
    tx.execute_batch(crate::files::records::SCHEMA_V3).map_err(err)?;
    if import {
        for line in crate::known_peers::load(&legacy)? {
            tx.execute(
                "INSERT INTO peers (server, folded, name, fingerprint, verified) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![line.server, fold_name(&line.name), line.name, line.fp.to_string(), line.verified],
            )
            .map_err(err)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(err)?;
    // Renamed before the commit, so a failed rename imports nothing and a
    // failed commit is undone by renaming back: the text file is either
    // still live or imported, never both or neither.
    let migrated = path.with_file_name(LEGACY_MIGRATED);
    if import {
        std::fs::rename(&legacy, &migrated)
            .map_err(|source| ClientError::KnownPeersIo { path: legacy.clone(), source })?;
    }
    if let Err(e) = tx.commit() {
        if import {
            let _ = std::fs::rename(&migrated, &legacy);
        }
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod label_tests {
    use super::{UNSIGNED_REMEMBERED_LABEL, label_of};
    use crate::peers::MessageStatus;

    /// An unsigned message under a remembered name is stored as unsigned,
    /// not as a changed key (no other key was seen); a real change is not.
    #[test]
    fn an_unsigned_message_under_a_remembered_name_is_not_stored_as_a_changed_key() {
        let remembered = cipherline_keys::Fingerprint::from_bytes([1; 32]);
        let unsigned = MessageStatus::KeyChanged { remembered, presented: None };
        assert_eq!(label_of(&unsigned), UNSIGNED_REMEMBERED_LABEL);
        let changed = MessageStatus::KeyChanged {
            remembered,
            presented: Some(cipherline_keys::Fingerprint::from_bytes([2; 32])),
        };
        assert_eq!(label_of(&changed), "key-changed");
        assert_eq!(label_of(&MessageStatus::Unsigned), "unsigned");
    }
}
