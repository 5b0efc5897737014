//! The local store's record of end-to-end files (schema version 3): the
//! uploads this data directory started and has not finished, and every
//! file announced to it (a *download*: offered, being fetched, saved,
//! cancelled or failed).
//!
//! Both hold file keys (SECURITY.md: client.db is protected by its file
//! mode only, like the history). Rows are parsed strictly: a row this code
//! did not write (a wrong length, an unknown state) is reported as a
//! corrupt store, never used.

use std::path::{Path, PathBuf};

use cipherline_proto::app::{BLOB_ID_LEN, BlobId, Target};
use cipherline_proto::filestream::FILE_KEY_LEN;
use rusqlite::{OptionalExtension as _, Row, params};
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::local::LocalStore;

pub(crate) const SCHEMA_V3: &str = "
-- File announcements are outcomes too: the table is rebuilt to allow the
-- kind 'file', whose size and SHA-256 are in the new column (the name is
-- in text; the key is in file_downloads).
CREATE TABLE e2e_processed_v3 (
    server TEXT NOT NULL,
    id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'file', 'joined', 'changed', 'removed', 'failed')),
    actor TEXT NOT NULL,
    actor_key BLOB NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('room', 'user')),
    target TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    notice TEXT NOT NULL,
    -- For a file: uint64 size || sha256, else NULL.
    file BLOB CHECK (file IS NULL OR length(file) = 40),
    PRIMARY KEY (server, id)
) WITHOUT ROWID;
INSERT INTO e2e_processed_v3
    SELECT server, id, kind, actor, actor_key, target_kind, target, text, sent_at_ms, notice, NULL FROM e2e_processed;
DROP TABLE e2e_processed;
ALTER TABLE e2e_processed_v3 RENAME TO e2e_processed;
-- Uploads not yet complete (a complete one is forgotten). server is the
-- scope: the server and the folded name of the sender.
CREATE TABLE file_uploads (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    -- The canonical path, as the OS's bytes.
    path BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 BLOB NOT NULL CHECK (length(sha256) = 32),
    blob BLOB NOT NULL UNIQUE CHECK (length(blob) = 16),
    file_key BLOB NOT NULL CHECK (length(file_key) = 32),
    group_id BLOB NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('room', 'user')),
    target TEXT NOT NULL,
    announced INTEGER NOT NULL CHECK (announced IN (0, 1)),
    -- Sealed bytes the relay held when last heard.
    stored INTEGER NOT NULL
);
CREATE INDEX file_uploads_by_path ON file_uploads (server, path);
-- Every file announced to this user (server: the scope, as above).
CREATE TABLE file_downloads (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    message INTEGER NOT NULL,
    sender TEXT NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('room', 'user')),
    target TEXT NOT NULL,
    blob BLOB NOT NULL CHECK (length(blob) = 16),
    file_key BLOB NOT NULL CHECK (length(file_key) = 32),
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL CHECK (length(sha256) = 32),
    -- Where it is being (or was) saved, as the OS's bytes; NULL while offered.
    dir BLOB,
    state TEXT NOT NULL CHECK (state IN ('offered', 'active', 'done', 'cancelled', 'failed')),
    -- Plaintext bytes opened, checked and written so far.
    verified INTEGER NOT NULL,
    -- The saved path (done) or why it failed.
    detail TEXT NOT NULL,
    UNIQUE (server, message)
);
";

#[allow(clippy::cast_possible_wrap)]
fn to_sql(v: u64) -> i64 {
    v as i64
}

#[allow(clippy::cast_sign_loss)]
fn from_sql(v: i64) -> u64 {
    v as u64
}

/// A path as bytes for the store.
pub(crate) fn path_bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_encoded_bytes().to_vec()
}

/// A stored path back (on Unix any bytes; elsewhere as UTF-8, lossily).
fn path_from(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

fn target_parts(t: &Target) -> (&'static str, &str) {
    match t {
        Target::Room(r) => ("room", r),
        Target::User(u) => ("user", u),
    }
}

/// Where a download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadState {
    /// Announced, not being fetched (no `--accept-files`, nobody said get).
    Offered,
    /// Being fetched into its directory (resumed after a restart).
    Active,
    /// Saved, checked, and the relay told.
    Done,
    /// The user cancelled it.
    Cancelled,
    /// It failed for good (corrupted or tampered with, or gone from the relay).
    Failed,
}

impl DownloadState {
    /// Its name in the store and in `files list`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadState::Offered => "offered",
            DownloadState::Active => "active",
            DownloadState::Done => "done",
            DownloadState::Cancelled => "cancelled",
            DownloadState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "offered" => DownloadState::Offered,
            "active" => DownloadState::Active,
            "done" => DownloadState::Done,
            "cancelled" => DownloadState::Cancelled,
            "failed" => DownloadState::Failed,
            _ => return None,
        })
    }
}

/// One file announced to this user. No `Debug`: it holds the file key.
#[derive(Clone)]
pub struct DownloadRecord {
    /// The local id (`files get ID`).
    pub id: u64,
    /// The scope: server and this user's folded name.
    pub scope: String,
    /// The server's id of the announcing message.
    pub message: u64,
    /// The sender, as its MLS credential names it (escape before showing).
    pub from: String,
    /// The room, or this user for a direct conversation.
    pub target: Target,
    /// The blob at the relay.
    pub blob: BlobId,
    /// The file key.
    pub key: Zeroizing<[u8; FILE_KEY_LEN]>,
    /// The sender's name for the file (sanitise before use, escape before showing).
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    /// The directory it is saved into, once accepted.
    pub dir: Option<PathBuf>,
    /// Where it stands.
    pub state: DownloadState,
    /// Plaintext bytes checked and written.
    pub verified: u64,
    /// The saved path, or why it failed.
    pub detail: String,
}

/// An upload not yet complete. No `Debug`: it holds the file key.
#[derive(Clone)]
pub struct UploadRecord {
    /// The local id (`files cancel ID`).
    pub id: u64,
    /// The scope: server and this user's folded name.
    pub scope: String,
    /// The file's canonical path.
    pub path: PathBuf,
    /// Its size when the upload started.
    pub size: u64,
    /// Its modification time then (nanoseconds since the epoch).
    pub mtime_ns: i64,
    /// Its SHA-256 then.
    pub sha256: [u8; 32],
    /// The blob at the relay.
    pub blob: BlobId,
    /// The file key.
    pub key: Zeroizing<[u8; FILE_KEY_LEN]>,
    /// The conversation's MLS group.
    pub group_id: Vec<u8>,
    /// The conversation: a room, or the other person.
    pub target: Target,
    /// Whether the announcement was sent.
    pub announced: bool,
    /// Sealed bytes the relay held when last heard.
    pub stored: u64,
}

const DOWNLOAD_COLUMNS: &str = "id, server, message, sender, target_kind, target, blob, file_key, name, size, sha256, dir, state, verified, detail";
const UPLOAD_COLUMNS: &str =
    "id, server, path, size, mtime_ns, sha256, blob, file_key, group_id, target_kind, target, announced, stored";

/// The raw columns of a row, parsed after the query (rusqlite's row
/// closure cannot return our errors).
type RawDownload = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    i64,
    Vec<u8>,
    Option<Vec<u8>>,
    String,
    i64,
    String,
);
type RawUpload = (i64, String, Vec<u8>, i64, i64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, String, String, i64, i64);

fn raw_download(r: &Row<'_>) -> rusqlite::Result<RawDownload> {
    r.try_into()
}

fn raw_upload(r: &Row<'_>) -> rusqlite::Result<RawUpload> {
    r.try_into()
}

fn target_from(kind: &str, name: String) -> Option<Target> {
    match kind {
        "room" => Some(Target::Room(name)),
        "user" => Some(Target::User(name)),
        _ => None,
    }
}

impl LocalStore {
    fn parse_download(&self, raw: RawDownload) -> Result<DownloadRecord, ClientError> {
        let (id, scope, message, from, tk, target, blob, key, name, size, sha256, dir, state, verified, detail) = raw;
        let bad = |what| self.corrupt(what);
        let key: [u8; FILE_KEY_LEN] = key.try_into().map_err(|_| bad("a file key is not 32 bytes"))?;
        let (size, verified) = (from_sql(size), from_sql(verified));
        if verified > size || id < 0 {
            return Err(bad("a download's counts do not fit"));
        }
        Ok(DownloadRecord {
            id: from_sql(id),
            scope,
            message: from_sql(message),
            from,
            target: target_from(&tk, target).ok_or_else(|| bad("a download has an unknown target kind"))?,
            blob: blob.try_into().map_err(|_| bad("a blob id is not 16 bytes"))?,
            key: Zeroizing::new(key),
            name,
            size,
            sha256: sha256.try_into().map_err(|_| bad("a file hash is not 32 bytes"))?,
            dir: dir.as_deref().map(path_from),
            state: DownloadState::parse(&state).ok_or_else(|| bad("a download has an unknown state"))?,
            verified,
            detail,
        })
    }

    fn parse_upload(&self, raw: RawUpload) -> Result<UploadRecord, ClientError> {
        let (id, scope, path, size, mtime_ns, sha256, blob, key, group_id, tk, target, announced, stored) = raw;
        let bad = |what| self.corrupt(what);
        let key: [u8; FILE_KEY_LEN] = key.try_into().map_err(|_| bad("a file key is not 32 bytes"))?;
        if id < 0 || !(0..=1).contains(&announced) {
            return Err(bad("an upload's fields do not fit"));
        }
        Ok(UploadRecord {
            id: from_sql(id),
            scope,
            path: path_from(&path),
            size: from_sql(size),
            mtime_ns,
            sha256: sha256.try_into().map_err(|_| bad("a file hash is not 32 bytes"))?,
            blob: blob.try_into().map_err(|_| bad("a blob id is not 16 bytes"))?,
            key: Zeroizing::new(key),
            group_id,
            target: target_from(&tk, target).ok_or_else(|| bad("an upload has an unknown target kind"))?,
            announced: announced == 1,
            stored: from_sql(stored),
        })
    }

    /// Records a file announced to `scope`'s user by message `message`
    /// (state offered); returns its local id, or the existing one's if that
    /// message was recorded before.
    pub fn add_download(&self, new: &DownloadRecord) -> Result<u64, ClientError> {
        let (tk, target) = target_parts(&new.target);
        self.write(|tx| {
            let e = |e| self.error(e);
            tx.execute(
                "INSERT INTO file_downloads (server, message, sender, target_kind, target, blob, file_key, name, size,
                                             sha256, dir, state, verified, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, 'offered', 0, '')
                 ON CONFLICT (server, message) DO NOTHING",
                params![
                    new.scope,
                    to_sql(new.message),
                    new.from,
                    tk,
                    target,
                    new.blob.as_slice(),
                    new.key.as_slice(),
                    new.name,
                    to_sql(new.size),
                    new.sha256.as_slice()
                ],
            )
            .map_err(e)?;
            let id: i64 = tx
                .query_row(
                    "SELECT id FROM file_downloads WHERE server = ?1 AND message = ?2",
                    params![new.scope, to_sql(new.message)],
                    |r| r.get(0),
                )
                .map_err(e)?;
            Ok(from_sql(id))
        })
    }

    /// The download with local id `id`.
    pub fn download(&self, id: u64) -> Result<Option<DownloadRecord>, ClientError> {
        let sql = format!("SELECT {DOWNLOAD_COLUMNS} FROM file_downloads WHERE id = ?1");
        let raw =
            self.read(|c| c.query_row(&sql, params![to_sql(id)], raw_download).optional().map_err(|e| self.error(e)))?;
        raw.map(|r| self.parse_download(r)).transpose()
    }

    /// The download announced by message `message` of `scope`.
    pub fn download_of(&self, scope: &str, message: u64) -> Result<Option<DownloadRecord>, ClientError> {
        let sql = format!("SELECT {DOWNLOAD_COLUMNS} FROM file_downloads WHERE server = ?1 AND message = ?2");
        let raw = self.read(|c| {
            c.query_row(&sql, params![scope, to_sql(message)], raw_download).optional().map_err(|e| self.error(e))
        })?;
        raw.map(|r| self.parse_download(r)).transpose()
    }

    /// Downloads of `scope` (every scope if `None`) in `states` (all if
    /// empty), oldest first.
    pub fn downloads(&self, scope: Option<&str>, states: &[DownloadState]) -> Result<Vec<DownloadRecord>, ClientError> {
        let sql = format!("SELECT {DOWNLOAD_COLUMNS} FROM file_downloads WHERE ?1 IS NULL OR server = ?1 ORDER BY id");
        let raws = self.read(|c| {
            let mut stmt = c.prepare(&sql).map_err(|e| self.error(e))?;
            let rows = stmt.query_map(params![scope], raw_download).map_err(|e| self.error(e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
        })?;
        let mut out = Vec::new();
        for raw in raws {
            let d = self.parse_download(raw)?;
            if states.is_empty() || states.contains(&d.state) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Sets where download `id` stands: its state, its directory (kept if
    /// `None`), the bytes verified and the detail. A download done, failed
    /// or cancelled has its file key erased.
    pub fn set_download(
        &self,
        id: u64,
        state: DownloadState,
        dir: Option<&Path>,
        verified: u64,
        detail: &str,
    ) -> Result<(), ClientError> {
        let dir = dir.map(path_bytes);
        self.write(|tx| {
            tx.execute(
                // A download that ended needs its key no more: it is
                // overwritten (secure_delete keeps it out of free pages).
                "UPDATE file_downloads SET state = ?2, dir = COALESCE(?3, dir), verified = ?4, detail = ?5,
                   file_key = CASE WHEN ?2 IN ('done', 'failed', 'cancelled') THEN zeroblob(32) ELSE file_key END
                 WHERE id = ?1",
                params![to_sql(id), state.as_str(), dir, to_sql(verified), detail],
            )
            .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    /// Forgets download `id` (cancelled: its key is erased from the store).
    pub fn forget_download(&self, id: u64) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.execute("DELETE FROM file_downloads WHERE id = ?1", params![to_sql(id)]).map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    /// Records a new upload; returns its local id.
    pub fn add_upload(&self, new: &UploadRecord) -> Result<u64, ClientError> {
        let (tk, target) = target_parts(&new.target);
        self.write(|tx| {
            let id: i64 = tx
                .query_row(
                    "INSERT INTO file_uploads (server, path, size, mtime_ns, sha256, blob, file_key, group_id,
                                               target_kind, target, announced, stored)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
                    params![
                        new.scope,
                        path_bytes(&new.path),
                        to_sql(new.size),
                        new.mtime_ns,
                        new.sha256.as_slice(),
                        new.blob.as_slice(),
                        new.key.as_slice(),
                        new.group_id,
                        tk,
                        target,
                        new.announced,
                        to_sql(new.stored)
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| self.error(e))?;
            Ok(from_sql(id))
        })
    }

    /// The upload with local id `id`.
    pub fn upload(&self, id: u64) -> Result<Option<UploadRecord>, ClientError> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM file_uploads WHERE id = ?1");
        let raw =
            self.read(|c| c.query_row(&sql, params![to_sql(id)], raw_upload).optional().map_err(|e| self.error(e)))?;
        raw.map(|r| self.parse_upload(r)).transpose()
    }

    /// Uploads of `scope` (every scope if `None`), oldest first.
    pub fn uploads(&self, scope: Option<&str>) -> Result<Vec<UploadRecord>, ClientError> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM file_uploads WHERE ?1 IS NULL OR server = ?1 ORDER BY id");
        let raws = self.read(|c| {
            let mut stmt = c.prepare(&sql).map_err(|e| self.error(e))?;
            let rows = stmt.query_map(params![scope], raw_upload).map_err(|e| self.error(e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
        })?;
        raws.into_iter().map(|r| self.parse_upload(r)).collect()
    }

    /// Notes that upload `id` was announced, and how much the relay holds.
    pub fn set_upload(&self, id: u64, announced: bool, stored: u64) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE file_uploads SET announced = ?2, stored = ?3 WHERE id = ?1",
                params![to_sql(id), announced, to_sql(stored)],
            )
            .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    /// Forgets upload `id` (complete, cancelled, or its file changed).
    pub fn forget_upload(&self, id: u64) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.execute("DELETE FROM file_uploads WHERE id = ?1", params![to_sql(id)]).map_err(|e| self.error(e))?;
            Ok(())
        })
    }
}

/// A blob id in lowercase hex (the relay's file name for it, and ours for
/// the partial file).
#[must_use]
pub fn blob_hex(blob: &BlobId) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(2 * BLOB_ID_LEN);
    for b in blob {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download(message: u64) -> DownloadRecord {
        DownloadRecord {
            id: 0,
            scope: "s alice".into(),
            message,
            from: "bob".into(),
            target: Target::User("alice".into()),
            blob: [7; 16],
            key: Zeroizing::new([9; 32]),
            name: "a.txt".into(),
            size: 100,
            sha256: [1; 32],
            dir: None,
            state: DownloadState::Offered,
            verified: 0,
            detail: String::new(),
        }
    }

    #[test]
    fn downloads_are_recorded_once_per_message_and_updated() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        let id = store.add_download(&download(5)).unwrap();
        assert_eq!(store.add_download(&download(5)).unwrap(), id, "a message is one download");
        let other = store.add_download(&download(6)).unwrap();
        assert_ne!(other, id);
        store.set_download(id, DownloadState::Active, Some(dir.path()), 64, "").unwrap();
        let d = store.download(id).unwrap().unwrap();
        assert_eq!((d.state, d.verified, d.dir.as_deref()), (DownloadState::Active, 64, Some(dir.path())));
        assert_eq!(*d.key, [9; 32]);
        assert_eq!(store.downloads(Some("s alice"), &[DownloadState::Offered]).unwrap().len(), 1);
        store.set_download(other, DownloadState::Done, None, 100, "/x/a.txt").unwrap();
        assert_eq!(*store.download(other).unwrap().unwrap().key, [0; 32], "the key of a finished download is erased");
        assert_eq!(store.downloads(Some("s bob"), &[]).unwrap().len(), 0);
        store.forget_download(id).unwrap();
        assert!(store.download(id).unwrap().is_none());
        assert!(store.download_of("s alice", 6).unwrap().is_some());
    }

    #[test]
    fn a_file_outcome_is_cached_like_a_message() {
        use crate::groups::Outcome;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        let outcome = Outcome::File {
            from: "bob".into(),
            key: [5; 32],
            target: Target::Room("team".into()),
            name: "a.txt".into(),
            size: 70_000,
            sha256: [6; 32],
            sent_at_ms: 1234,
            notice: String::new(),
        };
        assert!(store.set_processed("s alice", 9, &outcome).unwrap());
        assert_eq!(store.processed("s alice", 9).unwrap(), Some(outcome));
        // A file outcome without its facts is not ours.
        let conn = rusqlite::Connection::open(dir.path().join("client.db")).unwrap();
        conn.execute("UPDATE e2e_processed SET file = NULL", []).unwrap();
        assert!(matches!(store.processed("s alice", 9), Err(ClientError::LocalStoreCorrupt { .. })));
    }

    #[test]
    fn a_row_this_code_did_not_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        let id = store.add_download(&download(5)).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("client.db")).unwrap();
        conn.execute("UPDATE file_downloads SET verified = 1000 WHERE id = ?1", params![to_sql(id)]).unwrap();
        assert!(matches!(store.download(id), Err(ClientError::LocalStoreCorrupt { .. })));
    }

    #[test]
    fn uploads_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        let up = UploadRecord {
            id: 0,
            scope: "s alice".into(),
            path: dir.path().join("f"),
            size: 3,
            mtime_ns: 42,
            sha256: [2; 32],
            blob: [3; 16],
            key: Zeroizing::new([4; 32]),
            group_id: b"g".to_vec(),
            target: Target::Room("r".into()),
            announced: false,
            stored: 0,
        };
        let id = store.add_upload(&up).unwrap();
        store.set_upload(id, true, 19).unwrap();
        let got = store.upload(id).unwrap().unwrap();
        assert_eq!((got.announced, got.stored, got.path, got.target), (true, 19, up.path.clone(), up.target.clone()));
        assert_eq!(store.uploads(None).unwrap().len(), 1);
        store.forget_upload(id).unwrap();
        assert!(store.uploads(None).unwrap().is_empty());
    }
}
