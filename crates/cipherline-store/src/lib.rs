//! The durable store behind the cipherline server: per-recipient queues and a
//! key-value map with compare-and-set; and blobs (large byte strings in
//! files, for end-to-end files).
//!
//! # Contract
//!
//! - **Acknowledged means durable.** When a mutating call (`append`, `ack`,
//!   `expire`, `put`, `cas`, `delete`, `delete_if`) returns `Ok`, its effect is committed
//!   to disk (SQLite, WAL, `synchronous=FULL`): it survives a crash of the
//!   process or the machine from that moment on. An `Err` means the call had
//!   no effect. A call whose future is dropped before it completes may or may
//!   not have taken effect (the request may already be with the writer).
//! - **Queues.** `append` gives each message a sequence number that is
//!   strictly increasing per queue and never reused, even after every message
//!   of the queue was acknowledged or expired, and even across restarts.
//!   `read` returns messages in sequence order from a cursor; `ack` deletes
//!   up to and including a sequence number; `expire` deletes messages
//!   appended before a time, in every queue. Queues are independent.
//! - **Key-value.** Every write of a key gets a new revision, strictly
//!   increasing across the whole map (like a JetStream stream sequence), so a
//!   key deleted and written again never repeats an old revision.
//!   `cas` writes only if the key's current revision is the expected one
//!   (`None`: the key must not exist), else fails with
//!   [`StoreError::Conflict`]. `delete_if` deletes only if the key's
//!   revision is the expected one.
//! - **Bounds.** Payload and value sizes, queue and key name lengths, the
//!   number of messages one `read` returns and the request channel are all
//!   bounded by [`SqliteOptions`] (by [`NatsOptions`] on NATS, which also
//!   refuses stored records above those bounds); an oversized input is
//!   refused with an error, never truncated.
//!
//! - **Blobs** ([`BlobStore`], module `blob`). A blob's record (owner,
//!   group, size, complete or not, creation time, who still waits for it)
//!   is durable when `blob_create` returns `Created`; deletions
//!   (`blob_delete`, `blob_member_done`, `blob_expire`, a `blob_finish`
//!   that finds nobody waiting) are durable when they return, and the
//!   file goes right after. The bytes are one file per blob in `blobs/`
//!   beside the database file, named by the id in lowercase hex. Pieces
//!   appended with `blob_append` go to the page cache and are **not**
//!   durable: they survive the process, not the machine. `blob_finish`
//!   flushes the file and the directory and only then marks the record
//!   complete, durably: a complete blob's bytes are on disk. Quotas count
//!   every blob at its full size from creation. On open, the directory is
//!   checked against the records: anything that is not a blob file stops
//!   the open; a file without a record is removed; a file longer than its
//!   blob is cut; a complete blob whose file is missing or short loses its
//!   record (logged); an incomplete blob holds what its file holds, so an
//!   upload continues from there. (After a machine crash, a file system
//!   that does not write data before metadata may leave zeros at the end
//!   of an incomplete blob: clients authenticate every piece end to end.)
//!   Open blob files are bounded (idle ones beyond 256 are closed).
//!   [`NatsStore`] implements [`BlobStore`] too (module `nats::blobs`):
//!   pieces in a stream, each durable once appended, records and quota
//!   counts in the key-value map, so a blob is shared by every relay node.
//!
//! [`Store`] has two implementations: [`SqliteStore`], the embedded
//! one-file store, and [`NatsStore`] (module `nats`), the same contract on
//! NATS JetStream for several relay nodes, with the differences its module
//! doc lists (durability is JetStream's acknowledgement, `append_each` is
//! not atomic, `expire` removes queue prefixes only). [`AnyStore`] (module
//! `any`) is either, chosen at run time. All of [`SqliteStore`]'s
//! SQLite work runs on one dedicated thread, which takes every request
//! waiting in its channel and runs them in one transaction with one commit
//! (group commit), so concurrent writers share one disk flush.

#![forbid(unsafe_code)]

mod any;
mod blob;
mod nats;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

pub use any::AnyStore;
pub use nats::{NatsConnection, NatsOptions, NatsStore};

pub use blob::{
    BLOB_DIR, BLOB_ID_LEN, BlobCreated, BlobFinished, BlobId, BlobQuota, BlobRead, BlobRecord, BlobStore, BlobUsage,
    BlobWrite, MAX_BLOB_READ, MAX_WAITING, MemberDone, NewBlob, QuotaScope,
};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The batch this request was part of could not be committed, so the
    /// request had no effect.
    #[error("store commit failed, nothing was written: {0}")]
    Commit(String),
    /// The database was written by a newer version of this program.
    #[error(
        "store database schema version {found} is newer than this program knows ({known}); \
         refusing to open it (upgrade the program or use another data directory)"
    )]
    NewerSchema {
        /// The `user_version` found in the file.
        found: i64,
        /// The newest schema version this code knows.
        known: i64,
    },
    /// The database file is not usable as configured.
    #[error("store database {path} cannot be used: {reason}")]
    Unusable {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An input exceeds one of the store's bounds.
    #[error("{what} of {len} bytes exceeds the store's limit of {max} bytes")]
    TooLarge {
        /// Which input: payload, value, queue name or key.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number does not fit the store's range (SQLite integers are signed 64-bit).
    #[error("{what} {value} is out of the store's range (at most {max})", max = i64::MAX)]
    OutOfRange {
        /// Which number.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A compare-and-set found another revision than the expected one.
    #[error("compare-and-set on key {key:?} expected revision {expected:?} but found {found:?}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected (`None`: no value).
        expected: Option<u64>,
        /// The revision found (`None`: no value).
        found: Option<u64>,
    },
    /// The store's writer thread has stopped.
    #[error("the store is closed")]
    Closed,
    /// The NATS JetStream store failed: the server refused, did not answer
    /// in time, or holds records this store did not write. The call may or
    /// may not have taken effect when the answer timed out.
    #[error("NATS store: {0}")]
    Nats(String),
    /// A blob's data file could not be used.
    #[error("blob file {path}: {source}")]
    BlobFile {
        /// The file (or the blob directory).
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// [`BlobStore::blob_finish`] on a blob that does not hold all its bytes.
    #[error("blob holds {stored} of its {size} bytes; it cannot be finished")]
    BlobIncomplete {
        /// Bytes held.
        stored: u64,
        /// Bytes it was created for.
        size: u64,
    },
}

/// Shorthand for results of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One message read from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its sequence number in its queue.
    pub seq: u64,
    /// The bytes appended.
    pub payload: Vec<u8>,
    /// The `now_ms` given to `append`.
    pub appended_ms: u64,
}

/// A message [`Store::expire`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredMessage {
    /// The queue it was in.
    pub queue: String,
    /// The message.
    pub message: StoredMessage,
}

/// What a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages in the queue.
    pub messages: u64,
    /// Total payload bytes of those messages.
    pub bytes: u64,
}

/// The limits [`Store::append_each`] holds each queue and the whole store to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most messages one queue may hold.
    pub max_messages: u64,
    /// Most payload bytes one queue may hold.
    pub max_bytes: u64,
    /// Most payload bytes all queues together may hold.
    pub max_total_bytes: u64,
}

impl Quota {
    /// No limits at all.
    pub const UNLIMITED: Quota = Quota { max_messages: u64::MAX, max_bytes: u64::MAX, max_total_bytes: u64::MAX };
}

/// What [`Store::append_each`] did for one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Appended with this sequence number.
    Stored(u64),
    /// Not appended: the queue holds its quota of messages or bytes.
    QueueFull,
    /// Not appended: the store holds its quota of bytes.
    StoreFull,
}

/// The storage seam of the server: queues and key-value with compare-and-set.
///
/// Shaped so that a NATS JetStream engine can implement it: a queue maps to a
/// subject of a stream (sequence numbers, consumer acknowledgement, max age),
/// the key-value map to a JetStream KV bucket (revisions, create and update
/// with expected revision). Every mutating call returns only once durable.
pub trait Store: Send + Sync {
    /// Appends `payload` to `queue` at time `now_ms` (milliseconds since the
    /// Unix epoch) and returns its sequence number: strictly increasing per
    /// queue, starting at 1, never reused.
    fn append(&self, queue: &str, payload: Vec<u8>, now_ms: u64) -> impl Future<Output = Result<u64>> + Send;

    /// Returns up to `max` messages of `queue` whose sequence number is
    /// greater than `after_seq`, in order. `max` is capped by the store's
    /// read limit.
    fn read(&self, queue: &str, after_seq: u64, max: usize) -> impl Future<Output = Result<Vec<StoredMessage>>> + Send;

    /// Deletes every message of `queue` up to and including `upto_seq`;
    /// returns how many were deleted.
    fn ack(&self, queue: &str, upto_seq: u64) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes up to `max` messages, in any queue, appended before
    /// `before_ms`, oldest first, and returns them (so that their senders
    /// can be told); call again until it returns fewer than `max`.
    fn expire(&self, before_ms: u64, max: usize) -> impl Future<Output = Result<Vec<ExpiredMessage>>> + Send;

    /// Appends one `payload` to each of `queues` in one atomic step, as
    /// [`Store::append`] would, except that a queue at its `quota` (or a
    /// store at its total) is skipped and reported instead. A queue named
    /// twice gets the payload twice. The result has one entry per queue, in
    /// order.
    fn append_each(
        &self,
        queues: Vec<String>,
        payload: Vec<u8>,
        now_ms: u64,
        quota: Quota,
    ) -> impl Future<Output = Result<Vec<Appended>>> + Send;

    /// Counts the messages of `queue` and their payload bytes.
    fn queue_stats(&self, queue: &str) -> impl Future<Output = Result<QueueStats>> + Send;

    /// Counts the messages of every queue and their payload bytes.
    fn total_stats(&self) -> impl Future<Output = Result<QueueStats>> + Send;

    /// Returns the value of `key` and its revision, if it exists.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>>> + Send;

    /// Writes `value` under `key` whatever was there; returns the new revision.
    fn put(&self, key: &str, value: Vec<u8>) -> impl Future<Output = Result<u64>> + Send;

    /// Writes `value` under `key` only if its current revision is `expected`
    /// (`None`: the key must not exist); returns the new revision, or
    /// [`StoreError::Conflict`].
    fn cas(&self, key: &str, expected: Option<u64>, value: Vec<u8>) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes `key`; returns whether it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes `key` only if its current revision is `revision` (the
    /// compare-and-set of deletion); returns whether it did. `false` means
    /// nothing changed: the key is absent or was written since.
    fn delete_if(&self, key: &str, revision: u64) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `max` keys that start with `prefix` and sort after `after`
    /// (`""` for the first page), in byte order.
    fn keys(&self, prefix: &str, after: &str, max: usize) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// The bounds of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Largest payload `append` accepts, in bytes.
    pub max_payload_bytes: usize,
    /// Largest value `put` and `cas` accept, in bytes.
    pub max_value_bytes: usize,
    /// Longest queue name or key, in bytes.
    pub max_name_bytes: usize,
    /// Most messages one `read` returns.
    pub max_read: usize,
    /// Requests that may wait for the writer thread; callers beyond wait for room.
    pub channel_capacity: usize,
    /// Most requests the writer runs in one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_value_bytes: 1024 * 1024,
            max_name_bytes: 1024,
            max_read: 1000,
            channel_capacity: 4096,
            max_batch: 1024,
        }
    }
}

/// The schema, one migration per version: migration `i` takes the database
/// from `user_version` `i` to `i + 1`. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: queues, messages and the key-value map.
    "CREATE TABLE queues (
         name TEXT PRIMARY KEY,
         last_seq INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE messages (
         queue TEXT NOT NULL,
         seq INTEGER NOT NULL,
         payload BLOB NOT NULL,
         appended_ms INTEGER NOT NULL,
         PRIMARY KEY (queue, seq)
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX messages_by_time ON messages (appended_ms);
     CREATE TABLE kv (
         key TEXT PRIMARY KEY,
         value BLOB NOT NULL,
         revision INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE counters (
         name TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) STRICT;
     INSERT INTO counters (name, value) VALUES ('kv_revision', 0);",
    // 2: running counts per queue and in all, so quotas cost no scan.
    "ALTER TABLE queues ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE queues ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE queues SET
         messages = (SELECT count(*) FROM messages m WHERE m.queue = queues.name),
         bytes = (SELECT coalesce(sum(length(payload)), 0) FROM messages m WHERE m.queue = queues.name);
     INSERT INTO counters (name, value) SELECT 'total_messages', count(*) FROM messages;
     INSERT INTO counters (name, value) SELECT 'total_bytes', coalesce(sum(length(payload)), 0) FROM messages;",
    // 3: blobs (their bytes are files in the blob directory), who still
    // waits for each, and running sizes per owner and in all for quotas.
    "CREATE TABLE blobs (
         id BLOB PRIMARY KEY,
         owner TEXT NOT NULL,
         grp BLOB NOT NULL,
         size INTEGER NOT NULL,
         complete INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         waited INTEGER NOT NULL
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX blobs_by_time ON blobs (created_ms);
     CREATE TABLE blob_waiting (
         id BLOB NOT NULL,
         name TEXT NOT NULL,
         PRIMARY KEY (id, name)
     ) STRICT, WITHOUT ROWID;
     CREATE TABLE blob_owners (
         owner TEXT PRIMARY KEY,
         blobs INTEGER NOT NULL,
         bytes INTEGER NOT NULL
     ) STRICT;
     INSERT INTO counters (name, value) VALUES ('blob_count', 0), ('blob_bytes', 0);",
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Work for the writer thread: runs inside the batch's transaction and
/// returns whether it succeeded plus what to do once the batch is committed
/// (or not: then it gets the commit error).
/// A job given `Err` cannot run (the transaction could not begin).
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

/// The embedded [`Store`]: one SQLite file, one writer thread, group commit.
///
/// Dropping it stops the writer thread once it has finished the requests
/// already sent; [`SqliteStore::close`] also waits for that.
pub struct SqliteStore {
    sender: mpsc::Sender<Job>,
    blobs: Arc<blob::Blobs>,
    commits: Arc<AtomicU64>,
    options: SqliteOptions,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("commits", &self.commits())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it to
    /// [`SCHEMA_VERSION`], checks the blob directory beside it against the
    /// blob records (see the crate doc) and starts its writer thread.
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let blob_dir = path.parent().unwrap_or_else(|| Path::new(".")).join(BLOB_DIR);
        let blobs = Arc::new(blob::Blobs::new(blob_dir.clone()));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (sender, receiver) = mpsc::channel::<Job>(options.channel_capacity.max(1));
        let commits = Arc::new(AtomicU64::new(0));
        let thread_commits = Arc::clone(&commits);
        let max_batch = options.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("cipherline-store".into())
            .spawn(move || {
                match open_connection(&path).and_then(|conn| blob::reconcile(&conn, &blob_dir).map(|()| conn)) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        writer_loop(conn, receiver, max_batch, &thread_commits);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| StoreError::Commit(format!("cannot start the store thread: {e}")))?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(Self { sender, blobs, commits, options, thread: Some(thread) })
    }

    /// How many transactions the writer thread has committed since open.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The bounds this store enforces.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// Finishes the requests already sent, stops the writer thread and
    /// closes the database.
    pub async fn close(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Runs `work` on the writer thread inside the current batch and returns
    /// its result once the batch is committed.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => work(conn),
                Err(e) => Err(StoreError::Commit(e.to_owned())),
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error| {
                let result = match (result, commit_error) {
                    (Ok(_), Some(e)) => Err(StoreError::Commit(e.to_owned())),
                    (result, _) => result,
                };
                let _ = reply.send(result);
            });
            (ok, finish)
        });
        self.sender.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn check_len(&self, what: &'static str, len: usize, max: usize) -> Result<()> {
        if len > max {
            return Err(StoreError::TooLarge { what, len, max });
        }
        Ok(())
    }

    pub(crate) fn check_name(&self, what: &'static str, name: &str) -> Result<()> {
        self.check_len(what, name.len(), self.options.max_name_bytes)
    }
}

pub(crate) fn to_i64(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// SQLite integers written by this crate are never negative.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let unusable = |reason: String| StoreError::Unusable { path: path.to_path_buf(), reason };
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found, known: SCHEMA_VERSION });
    }
    if found < 0 {
        return Err(unusable(format!("negative schema version {found}")));
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unusable(format!("journal mode is {mode}, not WAL")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(to_u64(found) as usize) {
        let next = version as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", next)?;
        tx.commit()?;
        tracing::info!(path = %path.display(), version = next, "store schema migrated");
    }
    tracing::info!(path = %path.display(), version = SCHEMA_VERSION, "store opened");
    Ok(conn)
}

fn writer_loop(mut conn: Connection, mut receiver: mpsc::Receiver<Job>, max_batch: usize, commits: &AtomicU64) {
    while let Some(first) = receiver.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch, commits);
    }
    tracing::debug!("store writer thread stopped");
}

/// Runs `batch` in one transaction, each job in its own savepoint (so a
/// failed job leaves no trace and does not spoil the others), commits once,
/// then answers every job.
fn run_batch(conn: &mut Connection, batch: Vec<Job>, commits: &AtomicU64) {
    let size = batch.len();
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let e = e.to_string();
            tracing::error!(error = %e, requests = size, "store cannot begin a transaction");
            for job in batch {
                let (_, finish) = job(Err(&e));
                finish(Some(&e));
            }
            return;
        }
    };
    let mut finishes = Vec::with_capacity(size);
    for job in batch {
        finishes.push(run_job(&mut tx, job));
    }
    match tx.commit() {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(requests = size, "store batch committed");
            for finish in finishes {
                finish(None);
            }
        }
        Err(e) => {
            let e = e.to_string();
            tracing::error!(error = %e, requests = size, "store commit failed");
            for finish in finishes {
                finish(Some(&e));
            }
        }
    }
}

/// Runs one job in a savepoint of `tx`: kept if the job succeeded, rolled
/// back if it failed.
fn run_job(tx: &mut Transaction<'_>, job: Job) -> Finish {
    let savepoint = match tx.savepoint() {
        Ok(sp) => sp,
        Err(e) => {
            let e = e.to_string();
            tracing::error!(error = %e, "store cannot open a savepoint");
            let (_, finish) = job(Err(&e));
            return Box::new(move |_| finish(Some(&e)));
        }
    };
    let (ok, finish) = job(Ok(&savepoint));
    // A savepoint finished without commit rolls back and releases.
    let settled = if ok { savepoint.commit() } else { savepoint.finish() };
    match settled {
        Ok(()) => finish,
        Err(e) => {
            let e = e.to_string();
            tracing::error!(error = %e, "store cannot settle a savepoint");
            Box::new(move |_| finish(Some(&e)))
        }
    }
}

impl Store for SqliteStore {
    async fn append(&self, queue: &str, payload: Vec<u8>, now_ms: u64) -> Result<u64> {
        self.check_name("queue name", queue)?;
        self.check_len("payload", payload.len(), self.options.max_payload_bytes)?;
        let now = to_i64("time", now_ms)?;
        let queue = queue.to_owned();
        self.call(move |conn| insert_message(conn, &queue, &payload, now)).await
    }

    async fn append_each(
        &self,
        queues: Vec<String>,
        payload: Vec<u8>,
        now_ms: u64,
        quota: Quota,
    ) -> Result<Vec<Appended>> {
        for queue in &queues {
            self.check_name("queue name", queue)?;
        }
        self.check_len("payload", payload.len(), self.options.max_payload_bytes)?;
        let now = to_i64("time", now_ms)?;
        self.call(move |conn| {
            let len = payload.len() as u64;
            let mut total = to_u64(counter(conn, "total_bytes")?);
            let mut out = Vec::with_capacity(queues.len());
            for queue in &queues {
                if total.saturating_add(len) > quota.max_total_bytes {
                    out.push(Appended::StoreFull);
                    continue;
                }
                let (messages, bytes): (i64, i64) = conn
                    .query_row("SELECT messages, bytes FROM queues WHERE name = ?1", params![queue], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?
                    .unwrap_or((0, 0));
                if to_u64(messages) >= quota.max_messages || to_u64(bytes).saturating_add(len) > quota.max_bytes {
                    out.push(Appended::QueueFull);
                    continue;
                }
                out.push(Appended::Stored(insert_message(conn, queue, &payload, now)?));
                total = total.saturating_add(len);
            }
            Ok(out)
        })
        .await
    }

    async fn read(&self, queue: &str, after_seq: u64, max: usize) -> Result<Vec<StoredMessage>> {
        self.check_name("queue name", queue)?;
        let after = to_i64("sequence number", after_seq)?;
        let max = max.min(self.options.max_read);
        if max == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let queue = queue.to_owned();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, payload, appended_ms FROM messages
                 WHERE queue = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![queue, after, limit], |row| {
                Ok(StoredMessage { seq: to_u64(row.get(0)?), payload: row.get(1)?, appended_ms: to_u64(row.get(2)?) })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn ack(&self, queue: &str, upto_seq: u64) -> Result<u64> {
        self.check_name("queue name", queue)?;
        let upto = i64::try_from(upto_seq).unwrap_or(i64::MAX);
        let queue = queue.to_owned();
        self.call(move |conn| {
            let (n, bytes): (i64, i64) = conn.query_row(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages WHERE queue = ?1 AND seq <= ?2",
                params![queue, upto],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            if n > 0 {
                conn.execute("DELETE FROM messages WHERE queue = ?1 AND seq <= ?2", params![queue, upto])?;
                count_removed(conn, &queue, n, bytes)?;
            }
            Ok(to_u64(n))
        })
        .await
    }

    async fn expire(&self, before_ms: u64, max: usize) -> Result<Vec<ExpiredMessage>> {
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(max.min(self.options.max_read)).unwrap_or(i64::MAX);
        self.call(move |conn| {
            let expired: Vec<ExpiredMessage> = {
                let mut stmt = conn.prepare_cached(
                    "SELECT queue, seq, payload, appended_ms FROM messages
                     WHERE appended_ms < ?1 ORDER BY appended_ms LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![before, limit], |row| {
                    Ok(ExpiredMessage {
                        queue: row.get(0)?,
                        message: StoredMessage {
                            seq: to_u64(row.get(1)?),
                            payload: row.get(2)?,
                            appended_ms: to_u64(row.get(3)?),
                        },
                    })
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut delete = conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND seq = ?2")?;
            for e in &expired {
                delete.execute(params![e.queue, to_i64("sequence number", e.message.seq)?])?;
                let len = i64::try_from(e.message.payload.len()).unwrap_or(i64::MAX);
                count_removed(conn, &e.queue, 1, len)?;
            }
            if !expired.is_empty() {
                tracing::info!(messages = expired.len(), before_ms, "store expired messages");
            }
            Ok(expired)
        })
        .await
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats> {
        self.check_name("queue name", queue)?;
        let queue = queue.to_owned();
        self.call(move |conn| {
            let (messages, bytes): (i64, i64) = conn
                .query_row("SELECT messages, bytes FROM queues WHERE name = ?1", params![queue], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?
                .unwrap_or((0, 0));
            Ok(QueueStats { messages: to_u64(messages), bytes: to_u64(bytes) })
        })
        .await
    }

    async fn total_stats(&self) -> Result<QueueStats> {
        self.call(move |conn| {
            Ok(QueueStats {
                messages: to_u64(counter(conn, "total_messages")?),
                bytes: to_u64(counter(conn, "total_bytes")?),
            })
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        self.check_name("key", key)?;
        let key = key.to_owned();
        self.call(move |conn| {
            let found = conn
                .query_row("SELECT value, revision FROM kv WHERE key = ?1", params![key], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, to_u64(row.get(1)?)))
                })
                .optional()?;
            Ok(found)
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        self.check_name("key", key)?;
        self.check_len("value", value.len(), self.options.max_value_bytes)?;
        let key = key.to_owned();
        self.call(move |conn| write_kv(conn, &key, &value)).await
    }

    async fn cas(&self, key: &str, expected: Option<u64>, value: Vec<u8>) -> Result<u64> {
        self.check_name("key", key)?;
        self.check_len("value", value.len(), self.options.max_value_bytes)?;
        let key = key.to_owned();
        self.call(move |conn| {
            let found: Option<u64> = conn
                .query_row("SELECT revision FROM kv WHERE key = ?1", params![key], |row| Ok(to_u64(row.get(0)?)))
                .optional()?;
            if found != expected {
                return Err(StoreError::Conflict { key, expected, found });
            }
            write_kv(conn, &key, &value)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check_name("key", key)?;
        let key = key.to_owned();
        self.call(move |conn| {
            let n = conn.execute("DELETE FROM kv WHERE key = ?1", params![key])?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_if(&self, key: &str, revision: u64) -> Result<bool> {
        self.check_name("key", key)?;
        let key = key.to_owned();
        // A revision beyond SQLite's integers cannot be stored, so matches nothing.
        let Ok(revision) = i64::try_from(revision) else { return Ok(false) };
        self.call(move |conn| {
            let n = conn.execute("DELETE FROM kv WHERE key = ?1 AND revision = ?2", params![key, revision])?;
            Ok(n > 0)
        })
        .await
    }

    async fn keys(&self, prefix: &str, after: &str, max: usize) -> Result<Vec<String>> {
        self.check_name("key prefix", prefix)?;
        self.check_name("key", after)?;
        let max = max.min(self.options.max_read);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        // Keys with the prefix lie in [prefix, prefix + U+10FFFF): a range
        // the primary key index walks from where the page starts, so a
        // page costs its own length, not a scan from the first key (LIKE
        // would also take '%' and '_' as wildcards).
        let upper = format!("{prefix}\u{10FFFF}");
        let (lower, inclusive) = if after > prefix { (after.to_owned(), false) } else { (prefix.to_owned(), true) };
        self.call(move |conn| {
            let sql = if inclusive {
                "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            } else {
                "SELECT key FROM kv WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            };
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![lower, upper, limit], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }
}

/// Appends one message to `queue` and counts it; returns its sequence number.
fn insert_message(conn: &Connection, queue: &str, payload: &[u8], now: i64) -> Result<u64> {
    let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
    let seq: i64 = conn.query_row(
        "INSERT INTO queues (name, last_seq, messages, bytes) VALUES (?1, 1, 1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + 1, messages = messages + 1, bytes = bytes + ?2
         RETURNING last_seq",
        params![queue, len],
        |row| row.get(0),
    )?;
    conn.execute(
        "INSERT INTO messages (queue, seq, payload, appended_ms) VALUES (?1, ?2, ?3, ?4)",
        params![queue, seq, payload, now],
    )?;
    conn.execute(
        "UPDATE counters SET value = value + (CASE name WHEN 'total_messages' THEN 1 ELSE ?1 END)
         WHERE name IN ('total_messages', 'total_bytes')",
        params![len],
    )?;
    Ok(to_u64(seq))
}

/// Takes `messages` messages of `bytes` bytes off `queue`'s and the store's counts.
fn count_removed(conn: &Connection, queue: &str, messages: i64, bytes: i64) -> Result<()> {
    conn.execute(
        "UPDATE queues SET messages = max(messages - ?2, 0), bytes = max(bytes - ?3, 0) WHERE name = ?1",
        params![queue, messages, bytes],
    )?;
    conn.execute(
        "UPDATE counters SET value = max(value - (CASE name WHEN 'total_messages' THEN ?1 ELSE ?2 END), 0)
         WHERE name IN ('total_messages', 'total_bytes')",
        params![messages, bytes],
    )?;
    Ok(())
}

fn counter(conn: &Connection, name: &str) -> Result<i64> {
    Ok(conn.query_row("SELECT value FROM counters WHERE name = ?1", params![name], |row| row.get(0))?)
}

/// Writes `key` with the next revision of the whole map.
fn write_kv(conn: &Connection, key: &str, value: &[u8]) -> Result<u64> {
    let revision: i64 = conn.query_row(
        "UPDATE counters SET value = value + 1 WHERE name = 'kv_revision' RETURNING value",
        [],
        |row| row.get(0),
    )?;
    conn.execute(
        "INSERT INTO kv (key, value, revision) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision",
        params![key, value, revision],
    )?;
    Ok(to_u64(revision))
}
