//! Sending a file end to end (PROTOCOL.md §13.12.4, "Sending"): hash it,
//! create (or resume) its blob, announce it to the conversation once, then
//! stream its sealed chunks and wait for the relay's word that the blob is
//! complete and durable.
//!
//! Resuming: the upload is remembered in the local store (path, size,
//! modification time, hash, key, blob, conversation) until it completes.
//! The same file (same canonical path, same conversation, same SHA-256)
//! uploaded again continues where the relay's copy ends, re-sealing the
//! chunk that offset falls in (sealing is deterministic for a key and an
//! index), without announcing it again. A changed file is a new upload
//! with a new key and blob: a file key never seals two plaintexts.

use std::fs::File;
use std::io::{ErrorKind, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cipherline_proto::app::{
    BlobEvent, BlobId, BlobRequest, BlobStatus, ClientMessage, ErrorCode, FileAnnouncement, MAX_BLOB_DATA,
    ServerMessage, Target,
};
use cipherline_proto::crypto::{Rng as _, Sha256, SystemRng};
use cipherline_proto::filestream::{CHUNK_SIZE, FILE_KEY_LEN, FileCipher, SEALED_CHUNK_SIZE, chunk_len, sealed_size};
use zeroize::Zeroizing;

use super::records::UploadRecord;
use super::{blob_delete, blob_error, blob_upload};
use crate::client::{Acked, Client};
use crate::conversations::Conversations;
use crate::error::ClientError;

/// How long to wait, after the last chunk, for the relay to say the blob
/// is complete and durable (the relay flushes it to disk first, for up to
/// 120 s).
pub const COMPLETE_TIMEOUT: Duration = Duration::from_secs(150);
/// Sealed bytes between two notes of the relay's progress in the store.
const NOTE_EVERY: u64 = 4 << 20;
/// Announcements refused as too fast are sent again this many times.
const ANNOUNCE_TRIES: u32 = 5;

/// What an upload reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadEvent {
    /// The upload starts (or resumes) at `from` plaintext bytes of `total`.
    Started {
        /// Its local id (`files cancel`).
        id: u64,
        /// Plaintext bytes the relay held already (0 for a new upload).
        from: u64,
        /// The file's size.
        total: u64,
        /// Whether this continues an earlier upload.
        resumed: bool,
    },
    /// Plaintext bytes sent so far.
    Progress {
        /// Bytes sent.
        bytes: u64,
        /// The file's size.
        total: u64,
    },
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Its local id while it was under way.
    pub id: u64,
    /// The name announced.
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    /// Whether it continued an earlier upload.
    pub resumed: bool,
    /// Plaintext bytes the relay held before this run.
    pub resumed_from: u64,
    /// The relay's Ack of the announcement, if this run sent it.
    pub announced: Option<Acked>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::FileIo { path: path.to_owned(), source }
}

/// The name a file is announced under: its last path component, at most
/// 255 bytes (cut at a character boundary).
fn announced_name(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut end = name.len().min(255);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = name.get(..end).unwrap_or_default();
    if cut.is_empty() { "file".to_owned() } else { cut.to_owned() }
}

/// Size and modification time (ns since the epoch) of a regular file.
fn facts(path: &Path) -> Result<(u64, i64), ClientError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if !meta.is_file() {
        return Err(ClientError::FileIo {
            path: path.to_owned(),
            source: std::io::Error::new(ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Ok((meta.len(), mtime))
}

/// SHA-256 of a whole file, read 1 MiB at a time (on a blocking thread).
async fn hash_file(path: PathBuf) -> Result<(u64, [u8; 32]), ClientError> {
    let task = tokio::task::spawn_blocking(move || {
        let mut file = File::open(&path).map_err(io(&path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            hasher.update(buf.get(..n).unwrap_or_default());
            total += n as u64;
        }
        Ok((total, hasher.finish()))
    });
    task.await.map_err(|_| ClientError::EndToEnd("the hashing task failed".into()))?
}

/// Reads exactly `buf.len()` bytes; a file that ended early changed.
fn read_chunk(file: &mut File, buf: &mut [u8], path: &Path) -> Result<(), ClientError> {
    match file.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ClientError::FileChanged(path.to_owned())),
        Err(e) => Err(io(path)(e)),
    }
}

/// Uploads the file at `path` to the conversation `group_id` (`target`
/// names it: the room, or the other person), announcing it there, or
/// resumes the remembered upload of the same file to the same
/// conversation. `client` is a connection for this transfer alone.
pub async fn upload(
    conversations: &Conversations,
    client: &mut Client,
    path: &Path,
    group_id: &[u8],
    target: &Target,
    events: &mut (dyn FnMut(UploadEvent) + Send),
) -> Result<Uploaded, ClientError> {
    upload_named(conversations, client, path, None, group_id, target, events).await
}

/// [`upload`], announcing the file under `name` (1 to 255 bytes of UTF-8)
/// instead of its own (a front-end's "send as"; tests announce hostile
/// names with it). A resumed upload keeps the name it was announced under.
#[allow(clippy::too_many_arguments)]
pub async fn upload_named(
    conversations: &Conversations,
    client: &mut Client,
    path: &Path,
    name: Option<&str>,
    group_id: &[u8],
    target: &Target,
    events: &mut (dyn FnMut(UploadEvent) + Send),
) -> Result<Uploaded, ClientError> {
    let store = conversations.store();
    let scope = conversations.scope().to_owned();
    let canonical = std::fs::canonicalize(path).map_err(io(path))?;
    let (size, mtime_ns) = facts(&canonical)?;
    let name = match name {
        Some(n) if !n.is_empty() && n.len() <= 255 => n.to_owned(),
        Some(_) => return Err(ClientError::EndToEnd("a file name is 1 to 255 bytes".into())),
        None => announced_name(&canonical),
    };
    let (hashed, sha256) = hash_file(canonical.clone()).await?;
    if hashed != size {
        return Err(ClientError::FileChanged(canonical));
    }
    let sealed = sealed_size(size).ok_or_else(|| ClientError::EndToEnd("the file is too large".into()))?;
    let mut earlier = None;
    for up in store.uploads(Some(&scope))? {
        if up.path == canonical && up.group_id == group_id {
            if up.sha256 == sha256 && up.size == size && earlier.is_none() {
                earlier = Some(up);
            } else {
                // The file changed since: its old blob is of no use.
                let _ = blob_delete(client, up.blob).await;
                store.forget_upload(up.id)?;
            }
        }
    }
    let resumed = earlier.is_some();
    let record = match earlier {
        Some(up) => up,
        None => {
            let mut blob: BlobId = [0; 16];
            let mut key = Zeroizing::new([0u8; FILE_KEY_LEN]);
            SystemRng.try_fill(&mut blob).map_err(|e| ClientError::EndToEnd(e.to_string()))?;
            SystemRng.try_fill(key.as_mut_slice()).map_err(|e| ClientError::EndToEnd(e.to_string()))?;
            let mut up = UploadRecord {
                id: 0,
                scope: scope.clone(),
                path: canonical.clone(),
                size,
                mtime_ns,
                sha256,
                blob,
                key,
                group_id: group_id.to_vec(),
                target: target.clone(),
                announced: false,
                stored: 0,
            };
            up.id = store.add_upload(&up)?;
            up
        }
    };
    let state = match blob_upload(client, record.blob, group_id, sealed).await {
        Ok(state) => state,
        Err(e) => {
            if !resumed || matches!(e, ClientError::BlobNotAllowed(_)) {
                // Nothing of it is at the relay (or never will be).
                store.forget_upload(record.id)?;
            }
            return Err(e);
        }
    };
    if state.size != sealed || state.stored > sealed {
        return Err(ClientError::Unexpected);
    }
    let mut announced = None;
    if !record.announced {
        let file = FileAnnouncement { blob: record.blob, key: record.key.clone(), size, sha256, name: name.clone() };
        match announce(conversations, client, group_id, &file).await {
            Ok(acked) => announced = Some(acked),
            Err(e) => {
                // Nobody knows of the blob: it would only take quota.
                if state.stored == 0 {
                    let _ = blob_delete(client, record.blob).await;
                    store.forget_upload(record.id)?;
                }
                return Err(e);
            }
        }
        store.set_upload(record.id, true, state.stored)?;
    }
    let from_plain = (state.stored / SEALED_CHUNK_SIZE as u64) * CHUNK_SIZE as u64;
    events(UploadEvent::Started { id: record.id, from: from_plain.min(size), total: size, resumed });
    if state.status != BlobStatus::Complete {
        let complete =
            send_chunks(store, client, &record, state.stored, &canonical, events).await.inspect_err(|e| {
                if matches!(e, ClientError::BlobGone | ClientError::FileChanged(_)) {
                    let _ = store.forget_upload(record.id);
                }
            })?;
        if !complete && let Err(e) = wait_complete(client, record.blob).await {
            if matches!(e, ClientError::BlobGone) {
                store.forget_upload(record.id)?;
            }
            return Err(e);
        }
    }
    events(UploadEvent::Progress { bytes: size, total: size });
    store.forget_upload(record.id)?;
    Ok(Uploaded { id: record.id, name, size, sha256, resumed, resumed_from: from_plain.min(size), announced })
}

/// Sends the announcement, again (the same bytes) if the relay says it
/// came too fast.
async fn announce(
    conversations: &Conversations,
    client: &mut Client,
    group_id: &[u8],
    file: &FileAnnouncement,
) -> Result<Acked, ClientError> {
    let payload = conversations.seal_file(group_id, file)?;
    let mut tries = 0;
    let acked = loop {
        match client.group_send_acked(group_id, payload.clone()).await {
            Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) if tries < ANNOUNCE_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other?,
        }
    };
    conversations.sent(client, group_id).await;
    Ok(acked)
}

/// Streams the sealed chunks from the relay's `stored` on; the plaintext
/// is hashed as it goes (what came before `stored` is read and hashed
/// first), and the whole must be the remembered hash: a file that changed
/// meanwhile is refused and its blob deleted. Returns whether the relay
/// said the blob is complete already.
async fn send_chunks(
    store: &crate::LocalStore,
    client: &mut Client,
    record: &UploadRecord,
    stored: u64,
    path: &Path,
    events: &mut (dyn FnMut(UploadEvent) + Send),
) -> Result<bool, ClientError> {
    let size = record.size;
    let cipher = FileCipher::new(&record.key, size).map_err(|e| ClientError::EndToEnd(e.to_string()))?;
    let first = stored / SEALED_CHUNK_SIZE as u64;
    let mut within = usize::try_from(stored % SEALED_CHUNK_SIZE as u64).unwrap_or(0);
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = Zeroizing::new(vec![0u8; CHUNK_SIZE]);
    // The part the relay holds already: hashed, not sent.
    for _ in 0..first {
        read_chunk(&mut file, &mut buf, path)?;
        hasher.update(&buf);
    }
    file.seek(SeekFrom::Start(first * CHUNK_SIZE as u64)).map_err(io(path))?;
    let mut noted = stored;
    let mut complete = false;
    for index in first..cipher.chunks() {
        let len = chunk_len(size, index).ok_or(ClientError::Unexpected)?;
        let plain = buf.get_mut(..len).ok_or(ClientError::Unexpected)?;
        read_chunk(&mut file, plain, path)?;
        hasher.update(plain);
        let sealed = cipher.seal(index, plain).map_err(|e| ClientError::EndToEnd(e.to_string()))?;
        let base = index * SEALED_CHUNK_SIZE as u64;
        let mut at = within;
        within = 0;
        while let Some(rest) = sealed.get(at..).filter(|r| !r.is_empty()) {
            let piece = rest.get(..rest.len().min(MAX_BLOB_DATA)).unwrap_or(rest);
            let chunk = BlobRequest::Chunk { blob: record.blob, offset: base + at as u64, data: piece.to_vec() };
            client.send_message(&ClientMessage::Blob(chunk)).await?;
            at += piece.len();
        }
        // An error about a chunk (the blob deleted meanwhile) arrives
        // unprompted: look for one without waiting.
        complete |= check_refusals(client, record.blob).await?;
        let done = base + at as u64;
        if done - noted >= NOTE_EVERY {
            noted = done;
            // For `files list` only: a resume asks the relay.
            let _ = store.set_upload(record.id, true, done);
        }
        let bytes = (index * CHUNK_SIZE as u64 + len as u64).min(size);
        events(UploadEvent::Progress { bytes, total: size });
    }
    let mut extra = [0u8; 1];
    let grew = matches!(file.read(&mut extra), Ok(n) if n > 0);
    if grew || hasher.finish() != record.sha256 {
        let _ = blob_delete(client, record.blob).await;
        return Err(ClientError::FileChanged(path.to_owned()));
    }
    Ok(complete)
}

/// Reads whatever arrived on the connection without waiting: a refusal
/// of a chunk ends the upload; returns whether the relay said the blob is
/// complete; anything else is dropped (this connection carries nothing
/// else).
async fn check_refusals(client: &mut Client, blob: BlobId) -> Result<bool, ClientError> {
    let mut complete = false;
    loop {
        // Polled once: a zero timeout would wait for the timer's next tick
        // (a millisecond) whenever nothing is there, once per chunk.
        let msg = tokio::select! {
            biased;
            msg = client.recv() => msg,
            () = std::future::ready(()) => return Ok(complete),
        };
        complete |= refusal(msg?, blob)?;
    }
}

fn refusal(msg: ServerMessage, blob: BlobId) -> Result<bool, ClientError> {
    match msg {
        ServerMessage::Error { code, text, .. } => Err(blob_error(ClientError::Refused { code, text })),
        ServerMessage::Blob(BlobEvent::State { request: 0, blob: b, status: BlobStatus::Complete, .. })
            if b == blob =>
        {
            Ok(true)
        }
        ServerMessage::Blob(BlobEvent::State { request: 0, blob: b, status: BlobStatus::Gone, .. }) if b == blob => {
            Err(ClientError::BlobGone)
        }
        _ => Ok(false),
    }
}

/// Waits for the unprompted BlobState saying the blob is complete.
async fn wait_complete(client: &mut Client, blob: BlobId) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + COMPLETE_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, client.recv()).await {
            Err(_) => return Err(ClientError::Timeout("waiting for the relay to store the whole file")),
            Ok(msg) => {
                if refusal(msg?, blob)? {
                    return Ok(());
                }
            }
        }
    }
}

/// Cancels upload `id` of this data directory: the relay deletes the blob
/// (this user owns it; one already gone is fine) and the record is
/// forgotten. `client` is a connection of the upload's user.
pub async fn cancel(store: &crate::LocalStore, client: &mut Client, id: u64) -> Result<(), ClientError> {
    let Some(up) = store.upload(id)? else { return Ok(()) };
    match blob_delete(client, up.blob).await {
        Ok(_) | Err(ClientError::BlobGone) => {}
        Err(e) => return Err(e),
    }
    store.forget_upload(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_last_component_cut_at_255_bytes() {
        assert_eq!(announced_name(Path::new("/a/b/report.pdf")), "report.pdf");
        let long = format!("/x/{}", "é".repeat(200));
        let name = announced_name(Path::new(&long));
        assert!(name.len() <= 255 && name.chars().all(|c| c == 'é'));
        assert_eq!(announced_name(Path::new("/")), "file");
    }
}
