//! Blobs: byte strings of up to many gigabytes, uploaded in order in pieces
//! and read back from any offset (the relay side of end-to-end files).
//!
//! The record (owner, group, size, whether complete, creation time, who
//! still waits for it) is a row of the SQLite database, written through the
//! writer thread like everything else. The bytes are one file per blob in
//! the blob directory beside the database (`blobs/<lowercase hex id>`),
//! written in place through the page cache: appending a piece costs no
//! round trip to the writer thread and no disk flush. What is durable when
//! is in the crate doc.
//!
//! Every operation on one blob holds that blob's slot (an async mutex), so
//! appends, finish, deletion and expiry of one blob never interleave. A
//! slot also keeps the blob's file open and the number of bytes stored;
//! slots are dropped when idle beyond [`MAX_OPEN`] of them, so open files
//! stay bounded.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{Result, SqliteStore, StoreError, to_i64, to_u64};

/// Length of a blob id in bytes.
pub const BLOB_ID_LEN: usize = 16;
/// A blob's id: random, chosen by the uploader.
pub type BlobId = [u8; BLOB_ID_LEN];
/// Most bytes one [`BlobStore::blob_read`] returns.
pub const MAX_BLOB_READ: usize = 1 << 20;
/// Most names a blob's waiting list holds.
pub const MAX_WAITING: usize = 4096;
/// The blob directory's name, beside the database file.
pub const BLOB_DIR: &str = "blobs";
/// Idle slots (each with an open file) kept beyond those in use.
const MAX_OPEN: usize = 256;
/// An upload's file is flushed to disk in the background after every this
/// many bytes, so that the flush that finishes it is short (and the page
/// cache holds little of it unflushed). Durability still comes only from
/// finishing.
const FLUSH_EVERY: u64 = 64 << 20;

/// A blob to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlob {
    /// Its id.
    pub id: BlobId,
    /// Who uploads it (the only one who may append or delete it).
    pub owner: String,
    /// The group it was sent to (opaque to the store).
    pub group: Vec<u8>,
    /// Its full size in bytes.
    pub size: u64,
    /// When it was created (milliseconds since the Unix epoch); it expires
    /// from this time.
    pub created_ms: u64,
    /// Who is to fetch it (duplicates count once).
    pub waiting: Vec<String>,
}

/// What the store knows of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// Its id.
    pub id: BlobId,
    /// Who uploads it.
    pub owner: String,
    /// The group it was sent to.
    pub group: Vec<u8>,
    /// Its full size in bytes.
    pub size: u64,
    /// Bytes held, from offset 0 (`size` once complete).
    pub stored: u64,
    /// Whether all its bytes are held, durably.
    pub complete: bool,
    /// When it was created.
    pub created_ms: u64,
    /// Who has yet to say it is done with it, sorted.
    pub waiting: Vec<String>,
}

/// The limits [`BlobStore::blob_create`] holds blobs to, counted at their
/// full size from creation on, complete or not. The counts bound what
/// the bytes cannot: a blob of 16 bytes still costs a record, a waiting
/// list and a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobQuota {
    /// Most bytes of blobs one owner may have.
    pub per_owner: u64,
    /// Most bytes of blobs in all.
    pub total: u64,
    /// Most blobs one owner may have.
    pub per_owner_blobs: u64,
    /// Most blobs in all.
    pub total_blobs: u64,
}

/// Which limit of a [`BlobQuota`] a blob did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    /// The owner's bytes.
    Owner,
    /// The whole store's bytes.
    Total,
    /// The owner's number of blobs.
    OwnerBlobs,
    /// The whole store's number of blobs.
    TotalBlobs,
}

/// What [`BlobStore::blob_create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCreated {
    /// Created (durably), holding nothing yet.
    Created(BlobRecord),
    /// A blob with that id exists (whoever owns it): nothing was changed.
    Exists(BlobRecord),
    /// Not created: it would take a limit over.
    OverQuota {
        /// Which limit.
        scope: QuotaScope,
        /// What that limit counts already (bytes, or blobs).
        used: u64,
        /// The limit.
        limit: u64,
    },
}

/// What [`BlobStore::blob_append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobWrite {
    /// Written: the blob now holds `stored` of its `size` bytes.
    Written {
        /// Bytes held now.
        stored: u64,
        /// Its full size.
        size: u64,
    },
    /// No such blob (never created, deleted or expired).
    NoBlob,
    /// The blob is someone else's.
    NotOwner,
    /// The offset is not the number of bytes held.
    WrongOffset {
        /// Bytes held.
        stored: u64,
    },
    /// The bytes would go past the blob's size.
    TooLong {
        /// Bytes held.
        stored: u64,
        /// Its full size.
        size: u64,
    },
}

/// What [`BlobStore::blob_finish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFinished {
    /// Complete, durably.
    Complete(BlobRecord),
    /// Complete, and deleted at once: everyone who waited for it said they
    /// were done with it before it was complete.
    Deleted(BlobRecord),
    /// No such blob.
    NoBlob,
}

/// What [`BlobStore::blob_member_done`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberDone {
    /// The member is off the waiting list (if it was on it); the blob stays.
    Kept(BlobRecord),
    /// The blob is complete and nobody waits for it any more: deleted.
    Deleted(BlobRecord),
    /// No such blob.
    NoBlob,
}

/// Bytes read from a blob, and its state when they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRead {
    /// The bytes, from the offset asked for.
    pub data: Vec<u8>,
    /// Its full size.
    pub size: u64,
    /// Bytes held.
    pub stored: u64,
    /// Whether complete.
    pub complete: bool,
}

/// How many blobs and how many bytes (at full size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobUsage {
    /// Blobs.
    pub blobs: u64,
    /// Bytes, each blob counted at its full size.
    pub bytes: u64,
}

/// The blob side of the storage seam, shaped so that an object store (NATS
/// JetStream's) can implement it too: a record per blob plus its bytes.
pub trait BlobStore: Send + Sync {
    /// Creates a blob if its id is new and it fits `quota` (record
    /// durable on `Created`); reports an existing one unchanged.
    fn blob_create(&self, blob: NewBlob, quota: BlobQuota) -> impl Future<Output = Result<BlobCreated>> + Send;

    /// The blob's record, if it exists.
    fn blob_get(&self, id: BlobId) -> impl Future<Output = Result<Option<BlobRecord>>> + Send;

    /// Appends `data` at `offset`, which must be the number of bytes held,
    /// to `owner`'s blob. Not durable until [`BlobStore::blob_finish`].
    fn blob_append(
        &self,
        id: BlobId,
        owner: &str,
        offset: u64,
        data: &[u8],
    ) -> impl Future<Output = Result<BlobWrite>> + Send;

    /// Makes a blob that holds all its bytes complete: its data flushed to
    /// disk, then the record marked complete, durably. Complete already:
    /// nothing to do. Not all bytes held: [`StoreError::BlobIncomplete`].
    fn blob_finish(&self, id: BlobId) -> impl Future<Output = Result<BlobFinished>> + Send;

    /// Up to `max` (at most [`MAX_BLOB_READ`]) bytes from `offset`, as far
    /// as they are held; `None` if there is no such blob.
    fn blob_read(&self, id: BlobId, offset: u64, max: usize) -> impl Future<Output = Result<Option<BlobRead>>> + Send;

    /// `member` is done with the blob: off its waiting list; a complete
    /// blob nobody waits for any more is deleted.
    fn blob_member_done(&self, id: BlobId, member: &str) -> impl Future<Output = Result<MemberDone>> + Send;

    /// Deletes a blob; returns what it was, if it existed.
    fn blob_delete(&self, id: BlobId) -> impl Future<Output = Result<Option<BlobRecord>>> + Send;

    /// Deletes up to `max` blobs created before `before_ms`, oldest first,
    /// and returns them; call again until it returns fewer than `max`.
    fn blob_expire(&self, before_ms: u64, max: usize) -> impl Future<Output = Result<Vec<BlobRecord>>> + Send;

    /// What `owner`'s blobs take, and what all blobs take.
    fn blob_usage(&self, owner: &str) -> impl Future<Output = Result<(BlobUsage, BlobUsage)>> + Send;
}

/// The blob files and the slots of the blobs in use.
pub(crate) struct Blobs {
    dir: PathBuf,
    slots: StdMutex<HashMap<BlobId, Arc<Mutex<Slot>>>>,
}

/// One blob's in-memory state; `open: None` until loaded from the record.
#[derive(Default)]
struct Slot {
    open: Option<Open>,
    /// Deleted while someone waited for the slot.
    gone: bool,
}

struct Open {
    owner: String,
    size: u64,
    stored: u64,
    complete: bool,
    file: Arc<File>,
    /// `stored` when the last background flush started.
    flushed_at: u64,
    /// Whether a background flush is running (one at a time per blob).
    flushing: Arc<AtomicBool>,
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A blob id as its file name: 32 lowercase hex digits.
pub(crate) fn hex(id: &BlobId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id a file name spells, if it is exactly 32 lowercase hex digits.
pub(crate) fn parse_hex(name: &str) -> Option<BlobId> {
    if name.len() != 2 * BLOB_ID_LEN || !name.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut id = [0u8; BLOB_ID_LEN];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::BlobFile { path: path.to_path_buf(), source }
}

/// Flushes the directory itself, so that a file created in it survives a
/// crash of the machine along with its data.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(file_error(dir))
}

impl Blobs {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Blobs { dir, slots: StdMutex::new(HashMap::new()) }
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(hex(id))
    }

    /// The slot of `id`, created if needed; idle slots beyond [`MAX_OPEN`]
    /// are dropped first (with their open files).
    fn slot(&self, id: BlobId) -> Arc<Mutex<Slot>> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(&id) {
            return slot.clone();
        }
        if slots.len() >= MAX_OPEN {
            // Only the map holds an idle slot: nobody can be using it, and
            // nobody can take it while the map is locked. Dropping half at
            // once makes the scan rare.
            let idle: Vec<BlobId> = slots
                .iter()
                .filter(|(_, s)| Arc::strong_count(s) == 1)
                .map(|(k, _)| *k)
                .take(slots.len().saturating_sub(MAX_OPEN / 2))
                .collect();
            for k in idle {
                slots.remove(&k);
            }
        }
        slots.entry(id).or_default().clone()
    }

    /// Drops `id`'s slot from the map if it is still `slot`.
    fn forget(&self, id: &BlobId, slot: &Arc<Mutex<Slot>>) {
        let mut slots = lock(&self.slots);
        if slots.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(id);
        }
    }

    /// After the record's deletion is committed: marks the slot, drops it
    /// and removes the file (a failure leaves an orphan file, which the
    /// next open removes).
    fn gone(&self, id: &BlobId, slot_arc: &Arc<Mutex<Slot>>, slot: &mut Slot) {
        slot.gone = true;
        slot.open = None;
        self.forget(id, slot_arc);
        let path = self.path(id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(blob = %short(id), error = %e, "cannot remove a deleted blob's file");
        }
    }
}

/// A blob id shortened for logs.
fn short(id: &BlobId) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Owner, size and completeness of a blob, from its record.
fn read_head(conn: &Connection, id: &BlobId) -> Result<Option<(String, u64, bool)>> {
    Ok(conn
        .query_row("SELECT owner, size, complete FROM blobs WHERE id = ?1", params![&id[..]], |row| {
            Ok((row.get(0)?, to_u64(row.get(1)?), row.get::<_, i64>(2)? != 0))
        })
        .optional()?)
}

/// A blob's whole record (`stored`: `size` if complete, else 0 for the
/// caller to fill in from the slot).
fn read_record(conn: &Connection, id: &BlobId) -> Result<Option<BlobRecord>> {
    let found = conn
        .query_row("SELECT owner, grp, size, complete, created_ms FROM blobs WHERE id = ?1", params![&id[..]], |row| {
            let size = to_u64(row.get(2)?);
            let complete = row.get::<_, i64>(3)? != 0;
            Ok(BlobRecord {
                id: *id,
                owner: row.get(0)?,
                group: row.get(1)?,
                size,
                stored: if complete { size } else { 0 },
                complete,
                created_ms: to_u64(row.get(4)?),
                waiting: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut rec) = found else { return Ok(None) };
    let mut stmt = conn.prepare_cached("SELECT name FROM blob_waiting WHERE id = ?1 ORDER BY name")?;
    rec.waiting = stmt.query_map(params![&id[..]], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(Some(rec))
}

/// Deletes a blob's record and takes it off the counts; returns it.
fn delete_record(conn: &Connection, id: &BlobId) -> Result<Option<BlobRecord>> {
    let Some(rec) = read_record(conn, id)? else { return Ok(None) };
    let size = to_i64("blob size", rec.size)?;
    conn.execute("DELETE FROM blobs WHERE id = ?1", params![&id[..]])?;
    conn.execute("DELETE FROM blob_waiting WHERE id = ?1", params![&id[..]])?;
    conn.execute(
        "UPDATE blob_owners SET blobs = max(blobs - 1, 0), bytes = max(bytes - ?2, 0) WHERE owner = ?1",
        params![rec.owner, size],
    )?;
    conn.execute("DELETE FROM blob_owners WHERE owner = ?1 AND blobs = 0", params![rec.owner])?;
    conn.execute(
        "UPDATE counters SET value = max(value - (CASE name WHEN 'blob_count' THEN 1 ELSE ?1 END), 0)
         WHERE name IN ('blob_count', 'blob_bytes')",
        params![size],
    )?;
    Ok(Some(rec))
}

fn counter(conn: &Connection, name: &str) -> Result<u64> {
    Ok(to_u64(conn.query_row("SELECT value FROM counters WHERE name = ?1", params![name], |row| row.get(0))?))
}

/// Opens (creating, owner-only) a blob's file for reading and writing.
fn open_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(file_error(path))
}

/// Checks the blob directory against the records when the store opens:
/// creates the directory if missing; refuses anything in it that is not a
/// blob file; removes a file with no record (its deletion was committed,
/// the removal not done); cuts a file longer than its blob; drops the
/// record of a complete blob whose file is missing or short (its data is
/// lost: fetching it must fail cleanly, not hand out a hole). An
/// incomplete blob's `stored` is its file's length from then on.
pub(crate) fn reconcile(conn: &Connection, dir: &Path) -> Result<()> {
    let unusable = |reason: String| StoreError::Unusable { path: dir.to_path_buf(), reason };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(unusable("it is not a directory".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(dir).map_err(file_error(dir))?;
        }
        Err(e) => return Err(file_error(dir)(e)),
    }
    let (mut orphans, mut cut) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir).map_err(file_error(dir))? {
        let entry = entry.map_err(file_error(dir))?;
        let name = entry.file_name();
        let path = entry.path();
        let Some(id) = name.to_str().and_then(parse_hex) else {
            return Err(unusable(format!(
                "{name:?} is not a blob file (only files named by 32 lowercase hex digits belong there): move it away"
            )));
        };
        let meta = entry.metadata().map_err(file_error(&path))?;
        if !meta.is_file() {
            return Err(unusable(format!("{name:?} is not a regular file: move it away")));
        }
        match read_head(conn, &id)? {
            None => {
                std::fs::remove_file(&path).map_err(file_error(&path))?;
                orphans += 1;
            }
            Some((_, size, _)) if meta.len() > size => {
                let file = OpenOptions::new().write(true).open(&path).map_err(file_error(&path))?;
                file.set_len(size).and_then(|()| file.sync_all()).map_err(file_error(&path))?;
                cut += 1;
            }
            Some(_) => {}
        }
    }
    let lost: Vec<(BlobId, String)> = {
        let mut stmt = conn.prepare("SELECT id, size, owner FROM blobs WHERE complete = 1")?;
        let mut rows = stmt.query([])?;
        let mut lost = Vec::new();
        while let Some(row) = rows.next()? {
            let raw: Vec<u8> = row.get(0)?;
            let Ok(id) = BlobId::try_from(raw.as_slice()) else {
                return Err(unusable("a blob record has an id of the wrong length".into()));
            };
            let path = dir.join(hex(&id));
            let len = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(file_error(&path)(e)),
            };
            if len < to_u64(row.get(1)?) {
                lost.push((id, row.get(2)?));
            }
        }
        lost
    };
    if !lost.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for (id, owner) in &lost {
            delete_record(&tx, id)?;
            tracing::error!(blob = %short(id), owner = %owner, "a complete blob's file is missing or short: its record is dropped");
        }
        tx.commit()?;
    }
    if orphans + cut > 0 {
        tracing::warn!(orphans, cut, "blob files without a record removed, longer than their blob cut");
    }
    Ok(())
}

impl SqliteStore {
    /// The slot's open state, loaded from the record if needed; `None` if
    /// the blob does not exist.
    async fn loaded<'s>(&self, id: BlobId, slot: &'s mut Slot) -> Result<Option<&'s mut Open>> {
        if slot.gone {
            return Ok(None);
        }
        if slot.open.is_none() {
            let Some((owner, size, complete)) = self.call(move |conn| read_head(conn, &id)).await? else {
                return Ok(None);
            };
            let path = self.blobs.path(&id);
            let file = open_file(&path)?;
            let len = file.metadata().map_err(file_error(&path))?.len();
            // Bytes past the size cannot be there (appends are checked and
            // open cuts longer files); clamp anyway.
            let stored = if complete { size } else { len.min(size) };
            slot.open = Some(Open {
                owner,
                size,
                stored,
                complete,
                file: Arc::new(file),
                flushed_at: stored,
                flushing: Arc::new(AtomicBool::new(false)),
            });
        }
        Ok(slot.open.as_mut())
    }

    /// Fills in `rec.stored` from the slot.
    async fn with_stored(&self, mut rec: BlobRecord, slot: &mut Slot) -> Result<BlobRecord> {
        if let Some(open) = self.loaded(rec.id, slot).await? {
            rec.stored = open.stored;
        }
        Ok(rec)
    }
}

impl BlobStore for SqliteStore {
    async fn blob_create(&self, blob: NewBlob, quota: BlobQuota) -> Result<BlobCreated> {
        self.check_name("blob owner", &blob.owner)?;
        self.check_len("group id", blob.group.len(), self.options().max_name_bytes)?;
        self.check_len("waiting list", blob.waiting.len(), MAX_WAITING)?;
        for name in &blob.waiting {
            self.check_name("waiting name", name)?;
        }
        let size = to_i64("blob size", blob.size)?;
        let created = to_i64("time", blob.created_ms)?;
        let id = blob.id;
        let slot_arc = self.blobs.slot(id);
        let mut slot = slot_arc.lock().await;
        let outcome = self
            .call(move |conn| {
                if let Some(rec) = read_record(conn, &blob.id)? {
                    return Ok(BlobCreated::Exists(rec));
                }
                let (blobs, used): (i64, i64) = conn
                    .query_row("SELECT blobs, bytes FROM blob_owners WHERE owner = ?1", params![blob.owner], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?
                    .unwrap_or((0, 0));
                let (blobs, used) = (to_u64(blobs), to_u64(used));
                if blobs >= quota.per_owner_blobs {
                    let limit = quota.per_owner_blobs;
                    return Ok(BlobCreated::OverQuota { scope: QuotaScope::OwnerBlobs, used: blobs, limit });
                }
                if used.saturating_add(blob.size) > quota.per_owner {
                    return Ok(BlobCreated::OverQuota { scope: QuotaScope::Owner, used, limit: quota.per_owner });
                }
                let count = counter(conn, "blob_count")?;
                if count >= quota.total_blobs {
                    let limit = quota.total_blobs;
                    return Ok(BlobCreated::OverQuota { scope: QuotaScope::TotalBlobs, used: count, limit });
                }
                let total = counter(conn, "blob_bytes")?;
                if total.saturating_add(blob.size) > quota.total {
                    return Ok(BlobCreated::OverQuota { scope: QuotaScope::Total, used: total, limit: quota.total });
                }
                let mut waiting: Vec<String> = blob.waiting.clone();
                waiting.sort();
                waiting.dedup();
                let waited = i64::try_from(waiting.len()).unwrap_or(i64::MAX);
                conn.execute(
                    "INSERT INTO blobs (id, owner, grp, size, complete, created_ms, waited)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
                    params![&blob.id[..], blob.owner, blob.group, size, created, waited],
                )?;
                let mut add = conn.prepare_cached("INSERT INTO blob_waiting (id, name) VALUES (?1, ?2)")?;
                for name in &waiting {
                    add.execute(params![&blob.id[..], name])?;
                }
                conn.execute(
                    "INSERT INTO blob_owners (owner, blobs, bytes) VALUES (?1, 1, ?2)
                     ON CONFLICT (owner) DO UPDATE SET blobs = blobs + 1, bytes = bytes + ?2",
                    params![blob.owner, size],
                )?;
                conn.execute(
                    "UPDATE counters SET value = value + (CASE name WHEN 'blob_count' THEN 1 ELSE ?1 END)
                     WHERE name IN ('blob_count', 'blob_bytes')",
                    params![size],
                )?;
                Ok(BlobCreated::Created(BlobRecord {
                    id: blob.id,
                    owner: blob.owner,
                    group: blob.group,
                    size: blob.size,
                    stored: 0,
                    complete: false,
                    created_ms: blob.created_ms,
                    waiting,
                }))
            })
            .await?;
        Ok(match outcome {
            BlobCreated::Exists(rec) => BlobCreated::Exists(self.with_stored(rec, &mut slot).await?),
            BlobCreated::Created(rec) => {
                // Whatever the slot knew was of an older blob of that id.
                *slot = Slot::default();
                tracing::debug!(blob = %short(&id), owner = %rec.owner, size = rec.size, "blob created");
                BlobCreated::Created(rec)
            }
            other => other,
        })
    }

    async fn blob_get(&self, id: BlobId) -> Result<Option<BlobRecord>> {
        let slot_arc = self.blobs.slot(id);
        let mut slot = slot_arc.lock().await;
        let Some(rec) = self.call(move |conn| read_record(conn, &id)).await? else {
            return Ok(None);
        };
        Ok(Some(self.with_stored(rec, &mut slot).await?))
    }

    async fn blob_append(&self, id: BlobId, owner: &str, offset: u64, data: &[u8]) -> Result<BlobWrite> {
        let slot_arc = self.blobs.slot(id);
        let mut slot = slot_arc.lock().await;
        let Some(open) = self.loaded(id, &mut slot).await? else { return Ok(BlobWrite::NoBlob) };
        if open.owner != owner {
            return Ok(BlobWrite::NotOwner);
        }
        if offset != open.stored {
            return Ok(BlobWrite::WrongOffset { stored: open.stored });
        }
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let end = offset.saturating_add(len);
        if open.complete || end > open.size {
            return Ok(BlobWrite::TooLong { stored: open.stored, size: open.size });
        }
        // Into the page cache, in place: no flush and no thread hop per
        // piece (blob_finish flushes once). A short blocking call.
        open.file.write_all_at(data, offset).map_err(file_error(&self.blobs.path(&id)))?;
        open.stored = end;
        if end.saturating_sub(open.flushed_at) >= FLUSH_EVERY && !open.flushing.swap(true, Ordering::AcqRel) {
            open.flushed_at = end;
            let (file, flushing) = (open.file.clone(), open.flushing.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = file.sync_data() {
                    tracing::warn!(blob = %short(&id), error = %e, "background flush of a blob failed");
                }
                flushing.store(false, Ordering::Release);
            });
        }
        Ok(BlobWrite::Written { stored: end, size: open.size })
    }

    async fn blob_finish(&self, id: BlobId) -> Result<BlobFinished> {
        let slot_arc = self.blobs.slot(id);
        let mut slot = slot_arc.lock().await;
        let Some(open) = self.loaded(id, &mut slot).await? else { return Ok(BlobFinished::NoBlob) };
        if !open.complete {
            if open.stored < open.size {
                return Err(StoreError::BlobIncomplete { stored: open.stored, size: open.size });
            }
            // The data first, then the directory entry, then the record:
            // a record that says complete always has its bytes on disk.
            let (file, dir, path) = (open.file.clone(), self.blobs.dir.clone(), self.blobs.path(&id));
            tokio::task::spawn_blocking(move || {
                file.sync_data().map_err(file_error(&path))?;
                sync_dir(&dir)
            })
            .await
            .map_err(|e| StoreError::Commit(format!("blob flush task failed: {e}")))??;
        }
        let done = self
            .call(move |conn| {
                conn.execute("UPDATE blobs SET complete = 1 WHERE id = ?1", params![&id[..]])?;
                let Some(rec) = read_record(conn, &id)? else { return Ok(BlobFinished::NoBlob) };
                let waited: i64 =
                    conn.query_row("SELECT waited FROM blobs WHERE id = ?1", params![&id[..]], |row| row.get(0))?;
                // Everyone it was for gave up on it before it was complete.
                if waited > 0 && rec.waiting.is_empty() {
                    delete_record(conn, &id)?;
                    return Ok(BlobFinished::Deleted(rec));
                }
                Ok(BlobFinished::Complete(rec))
            })
            .await?;
        match &done {
            BlobFinished::Complete(rec) => {
                if let Some(open) = slot.open.as_mut() {
                    open.complete = true;
                }
                tracing::debug!(blob = %short(&id), owner = %rec.owner, size = rec.size, "blob complete");
            }
            BlobFinished::Deleted(_) | BlobFinished::NoBlob => self.blobs.gone(&id, &slot_arc, &mut slot),
        }
        Ok(done)
    }

    async fn blob_read(&self, id: BlobId, offset: u64, max: usize) -> Result<Option<BlobRead>> {
        let slot_arc = self.blobs.slot(id);
        let (file, read) = {
            let mut slot = slot_arc.lock().await;
            let Some(open) = self.loaded(id, &mut slot).await? else { return Ok(None) };
            let available = open.stored.saturating_sub(offset);
            let len = usize::try_from(available).unwrap_or(usize::MAX).min(max).min(MAX_BLOB_READ);
            (
                open.file.clone(),
                BlobRead { data: vec![0; len], size: open.size, stored: open.stored, complete: open.complete },
            )
        };
        drop(slot_arc);
        if read.data.is_empty() {
            return Ok(Some(read));
        }
        // Bytes below `stored` never change while the blob exists, so they
        // are read without holding the slot (appends go on meanwhile); a
        // blob deleted meanwhile still reads from its open file.
        let path = self.blobs.path(&id);
        let read = tokio::task::spawn_blocking(move || {
            let mut read = read;
            file.read_exact_at(&mut read.data, offset).map(|()| read)
        })
        .await
        .map_err(|e| StoreError::Commit(format!("blob read task failed: {e}")))?
        .map_err(file_error(&path))?;
        Ok(Some(read))
    }

    async fn blob_member_done(&self, id: BlobId, member: &str) -> Result<MemberDone> {
        self.check_name("member name", member)?;
        let member = member.to_owned();
        let slot_arc = self.blobs.slot(id);
        let mut slot = slot_arc.lock().await;
        let done = self
            .call(move |conn| {
                if read_head(conn, &id)?.is_none() {
                    return Ok(MemberDone::NoBlob);
                }
                conn.execute("DELETE FROM blob_waiting WHERE id = ?1 AND name = ?2", params![&id[..], member])?;
                let Some(rec) = read_record(conn, &id)? else { return Ok(MemberDone::NoBlob) };
                if rec.complete && rec.waiting.is_empty() {
                    delete_record(conn, &id)?;
                    return Ok(MemberDone::Deleted(rec));
                }
                Ok(MemberDone::Kept(rec))
            })
            .await?;
        Ok(match done {
            MemberDone::Kept(rec) => MemberDone::Kept(self.with_stored(rec, &mut slot).await?),
            MemberDone::Deleted(rec) => {
                self.blobs.gone(&id, &slot_arc, &mut slot);
                tracing::debug!(blob = %short(&id), owner = %rec.owner, size = rec.size, "blob fetched by everyone: deleted");
                MemberDone::Deleted(rec)
            }
            MemberDone::NoBlob => MemberDone::NoBlob,
        })
    }

    async fn blob_delete(&self, id: BlobId) -> Result<Option<BlobRecord>> {
        let slot_arc = self.blobs.slot(id);
        let mut slot = slot_arc.lock().await;
        let stored = match self.loaded(id, &mut slot).await? {
            Some(open) => open.stored,
            None => return Ok(None),
        };
        let deleted = self.call(move |conn| delete_record(conn, &id)).await?;
        self.blobs.gone(&id, &slot_arc, &mut slot);
        Ok(deleted.map(|rec| BlobRecord { stored, ..rec }))
    }

    async fn blob_expire(&self, before_ms: u64, max: usize) -> Result<Vec<BlobRecord>> {
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(max.min(self.options().max_read)).unwrap_or(i64::MAX);
        let mut ids: Vec<BlobId> = self
            .call(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT id FROM blobs WHERE created_ms < ?1 ORDER BY created_ms LIMIT ?2")?;
                let rows = stmt.query_map(params![before, limit], |row| row.get::<_, Vec<u8>>(0))?;
                let mut ids = Vec::new();
                for raw in rows {
                    if let Ok(id) = BlobId::try_from(raw?.as_slice()) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            })
            .await?;
        // Each blob's slot is held while its record goes (in a fixed order:
        // everyone else holds one slot at a time, so no deadlock).
        ids.sort_unstable();
        let mut held: Vec<(BlobId, Arc<Mutex<Slot>>, OwnedMutexGuard<Slot>)> = Vec::with_capacity(ids.len());
        for id in ids {
            let slot = self.blobs.slot(id);
            let guard = slot.clone().lock_owned().await;
            held.push((id, slot, guard));
        }
        let ids: Vec<BlobId> = held.iter().map(|(id, ..)| *id).collect();
        let expired = self
            .call(move |conn| {
                let mut out = Vec::new();
                for id in &ids {
                    // Checked again: a blob deleted and created anew under
                    // the same id meanwhile is not old.
                    let old: Option<i64> = conn
                        .query_row("SELECT created_ms FROM blobs WHERE id = ?1", params![&id[..]], |row| row.get(0))
                        .optional()?;
                    if old.is_some_and(|t| t < before)
                        && let Some(rec) = delete_record(conn, id)?
                    {
                        out.push(rec);
                    }
                }
                Ok(out)
            })
            .await?;
        for (id, slot, mut guard) in held {
            if expired.iter().any(|r| r.id == id) {
                self.blobs.gone(&id, &slot, &mut guard);
            }
        }
        for rec in &expired {
            tracing::info!(blob = %short(&rec.id), owner = %rec.owner, size = rec.size, complete = rec.complete, "blob expired");
        }
        Ok(expired)
    }

    async fn blob_usage(&self, owner: &str) -> Result<(BlobUsage, BlobUsage)> {
        self.check_name("blob owner", owner)?;
        let owner = owner.to_owned();
        self.call(move |conn| {
            let (blobs, bytes): (i64, i64) = conn
                .query_row("SELECT blobs, bytes FROM blob_owners WHERE owner = ?1", params![owner], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?
                .unwrap_or((0, 0));
            let mine = BlobUsage { blobs: to_u64(blobs), bytes: to_u64(bytes) };
            let all = BlobUsage { blobs: counter(conn, "blob_count")?, bytes: counter(conn, "blob_bytes")? };
            Ok((mine, all))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
