//! Receiving a file sent end to end (PROTOCOL.md §13.12.4, "Receiving"):
//! fetch the blob (requests of 1 MiB, two outstanding, one while the
//! upload is still going), open each sealed chunk by its index, write the
//! plaintext to a hidden partial file in the target directory, and when
//! the whole file is there and its SHA-256 is the announced one, move it
//! under its sanitised name, never over an existing file; then tell the
//! relay this member is done with the blob.
//!
//! A restart resumes from the last complete chunk in the partial file
//! (a torn last chunk is cut off; what is there was opened and checked
//! before it was written, and is hashed again to continue the file's
//! hash).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherline_proto::app::{BlobEvent, BlobRequest, BlobStatus, ClientMessage, MAX_BLOB_FETCH, ServerMessage};
use cipherline_proto::crypto::Sha256;
use cipherline_proto::filestream::{CHUNK_SIZE, FileCipher, SEALED_CHUNK_SIZE, chunk_count, chunk_len, sealed_size};
use zeroize::Zeroizing;

use super::records::{DownloadRecord, DownloadState, blob_hex};
use super::{FETCH_HOLD, Progress, STALL_LIMIT, blob_delete, blob_error};
use crate::client::Client;
use crate::error::ClientError;
use crate::local::LocalStore;
use crate::transfer::{link_unused, safe_file_name};

/// Most fetches outstanding at once (once the upload is complete).
const OUTSTANDING: usize = 2;
/// Plaintext bytes between two notes of progress in the store.
const NOTE_EVERY: u64 = 4 << 20;
/// How long one answer may take beyond the relay's hold.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::FileIo { path: path.to_owned(), source }
}

/// The hidden partial file of a download in `dir`: named by the blob and
/// the download, so it is ours alone and never the (sanitised) name of a
/// file. The download's id too: two announcements may name one blob (a
/// peer can announce any blob it knows of, with another key), and one
/// download must not continue, or delete, the other's partial file.
#[must_use]
pub fn partial_path(dir: &Path, record: &DownloadRecord) -> PathBuf {
    dir.join(format!(".{}.{}.cipherline-part", blob_hex(&record.blob), record.id))
}

/// Where a download of `record` into `dir` continues: the whole chunks its
/// partial file holds (0 without one). The store's note of progress lags
/// the partial file by up to [`NOTE_EVERY`], so this is what a resumed
/// download reports first, not the note.
#[must_use]
pub fn resume_point(dir: &Path, record: &DownloadRecord) -> u64 {
    let len = std::fs::metadata(partial_path(download_dir(dir, record), record)).map_or(0, |m| m.len());
    kept_of(len, record.size)
}

/// The directory a download goes to: the one it started in, once active.
fn download_dir<'a>(dir: &'a Path, record: &'a DownloadRecord) -> &'a Path {
    match (&record.dir, record.state) {
        (Some(d), DownloadState::Active) => d,
        _ => dir,
    }
}

/// The bytes of a partial file of `len` bytes that are kept: all of a
/// whole file, else its whole chunks.
fn kept_of(len: u64, size: u64) -> u64 {
    if len == size { size } else { (len.min(size) / CHUNK_SIZE as u64) * CHUNK_SIZE as u64 }
}

/// The name a received file is saved under: the sender's name sanitised
/// ([`safe_file_name`]: no path parts, no control or bidirectional
/// characters, not hidden), or `file` if nothing of it is usable.
#[must_use]
pub fn saved_name(offered: &str) -> String {
    safe_file_name(offered).unwrap_or_else(|| "file".to_owned())
}

/// Moves the complete partial file into `dir` under `name` (or `name (1)`
/// and so on: [`link_unused`]), never replacing an existing file.
/// Returns the path.
pub fn place(part: &Path, dir: &Path, name: &str) -> Result<PathBuf, ClientError> {
    let path = link_unused(part, dir, name).map_err(|(path, e)| io(&path)(e))?;
    std::fs::remove_file(part).map_err(io(part))?;
    Ok(path)
}

/// What a fetch loop needs of the partial file.
struct Sink {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    /// Plaintext bytes written (whole chunks).
    written: u64,
}

/// Opens (or creates) the partial file and brings it to the last complete
/// chunk, hashing what is kept.
fn open_partial(path: &Path, size: u64) -> Result<Sink, ClientError> {
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io(path))?;
    // One writer per partial file: a `listen` and a `files get` of the
    // same download would interleave their chunks. Released on close.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(ClientError::FileIo {
                path: path.to_owned(),
                source: std::io::Error::new(
                    ErrorKind::ResourceBusy,
                    "another cipherline process is downloading this file",
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(path)(e)),
    }
    let len = file.metadata().map_err(io(path))?.len();
    let keep = kept_of(len, size);
    if keep != len {
        file.set_len(keep).map_err(io(path))?;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = keep;
    file.seek(SeekFrom::Start(0)).map_err(io(path))?;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let part = buf.get_mut(..want).ok_or(ClientError::Unexpected)?;
        file.read_exact(part).map_err(io(path))?;
        hasher.update(part);
        left -= want as u64;
    }
    file.seek(SeekFrom::Start(keep)).map_err(io(path))?;
    Ok(Sink { file, path: path.to_owned(), hasher, written: keep })
}

/// Why a fetch loop stopped early.
enum Stop {
    /// For good: the partial file is deleted and the download failed.
    Fatal(ClientError),
    /// For now: the partial file is kept, to resume.
    Later(ClientError),
}

/// Downloads (or resumes) download `id` into `dir` (a resumed one stays
/// in the directory it started in), over `client`, a connection of the
/// receiving user for this transfer alone; returns where the file was
/// saved. A failure for good (corrupted or tampered with, gone from the
/// relay) deletes the partial file and marks the download failed; any
/// other (connection lost, stalled) keeps it active, to resume.
pub async fn download(
    store: &LocalStore,
    client: &mut Client,
    id: u64,
    dir: &Path,
    progress: &mut Progress<'_>,
) -> Result<PathBuf, ClientError> {
    let record = store.download(id)?.ok_or_else(|| ClientError::EndToEnd(format!("no file with id {id}")))?;
    match record.state {
        DownloadState::Done => return Ok(PathBuf::from(&record.detail)),
        DownloadState::Cancelled | DownloadState::Failed => {
            return Err(ClientError::EndToEnd(format!("file {id} was {}", record.state.as_str())));
        }
        DownloadState::Offered | DownloadState::Active => {}
    }
    let dir = download_dir(dir, &record).to_owned();
    let part = partial_path(&dir, &record);
    let mut sink = open_partial(&part, record.size)?;
    store.set_download(id, DownloadState::Active, Some(&dir), sink.written, "")?;
    progress(sink.written, record.size);
    match fetch(store, client, &record, &mut sink, progress).await {
        Ok(()) => {}
        Err(Stop::Later(e)) => {
            let _ = store.set_download(id, DownloadState::Active, None, sink.written, "");
            return Err(e);
        }
        Err(Stop::Fatal(e)) => return Err(fail(store, &record, &part, e)),
    }
    // Every chunk opened; now the whole file against the announcement.
    let len = sink.file.metadata().map_err(io(&part))?.len();
    let hash = std::mem::take(&mut sink.hasher).finish();
    if len != record.size || sink.written != record.size {
        return Err(fail(store, &record, &part, ClientError::FileCorrupt("its size is not the announced one")));
    }
    if hash != record.sha256 {
        return Err(fail(store, &record, &part, ClientError::FileCorrupt("its SHA-256 is not the announced one")));
    }
    sink.file.sync_all().map_err(io(&part))?;
    drop(sink);
    let saved = place(&part, &dir, &saved_name(&record.name))?;
    store.set_download(id, DownloadState::Done, None, record.size, &saved.to_string_lossy())?;
    // Best effort: the relay deletes the blob once nobody waits for it,
    // or at its expiry anyway.
    let _ = blob_delete(client, record.blob).await;
    Ok(saved)
}

/// Marks a download failed for good and deletes its partial file.
fn fail(store: &LocalStore, record: &DownloadRecord, part: &Path, e: ClientError) -> ClientError {
    let _ = std::fs::remove_file(part);
    let _ = store.set_download(record.id, DownloadState::Failed, None, 0, &e.to_string());
    e
}

/// An answer smaller than this while the upload goes on means the
/// download is right behind it: it pauses for [`FOLLOW_PAUSE`] before
/// asking again.
const FOLLOW_BATCH: u64 = 256 * 1024;
/// See [`FOLLOW_BATCH`]: at 200 MiB/s about 1 MiB arrives meanwhile.
const FOLLOW_PAUSE: Duration = Duration::from_millis(5);

/// One fetch outstanding: its request id, where its bytes end, and
/// whether an earlier short answer made its bytes unusable (they would
/// leave a gap; they are dropped, and asked for again).
struct Asked {
    request: u64,
    start: u64,
    end: u64,
    stale: bool,
}

/// Fetches the sealed bytes after what the sink holds, opening and
/// writing each chunk as it completes.
async fn fetch(
    store: &LocalStore,
    client: &mut Client,
    record: &DownloadRecord,
    sink: &mut Sink,
    progress: &mut Progress<'_>,
) -> Result<(), Stop> {
    let fatal = |e| Stop::Fatal(e);
    let later = |e| Stop::Later(e);
    let size = record.size;
    let sealed = sealed_size(size).ok_or(Stop::Fatal(ClientError::FileCorrupt("an impossible size")))?;
    let cipher =
        FileCipher::new(&record.key, size).map_err(|_| Stop::Fatal(ClientError::FileCorrupt("an impossible size")))?;
    let count = chunk_count(size);
    let mut index = sink.written / CHUNK_SIZE as u64;
    if sink.written == size {
        index = count;
    }
    let mut expect = index.saturating_mul(SEALED_CHUNK_SIZE as u64).min(sealed);
    let mut issued = expect;
    let mut asked: VecDeque<Asked> = VecDeque::new();
    let mut chunk: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(SEALED_CHUNK_SIZE));
    let mut complete = false;
    let mut moved = tokio::time::Instant::now();
    let mut noted = sink.written;
    while index < count {
        let limit = if complete { OUTSTANDING } else { 1 };
        while asked.len() < limit && issued < sealed {
            let request = client.writer().next_id();
            let max = u32::try_from((sealed - issued).min(u64::from(MAX_BLOB_FETCH))).unwrap_or(MAX_BLOB_FETCH);
            let msg = ClientMessage::Blob(BlobRequest::Fetch { request, blob: record.blob, offset: issued, max });
            client.send_message(&msg).await.map_err(later)?;
            asked.push_back(Asked { request, start: issued, end: issued + u64::from(max), stale: false });
            issued += u64::from(max);
        }
        if moved.elapsed() > STALL_LIMIT {
            return Err(Stop::Later(ClientError::Stalled(STALL_LIMIT.as_secs())));
        }
        let msg = match tokio::time::timeout(FETCH_HOLD + ANSWER_SLACK, client.recv()).await {
            Err(_) => return Err(Stop::Later(ClientError::Timeout("waiting for the file's bytes from the relay"))),
            Ok(msg) => msg.map_err(later)?,
        };
        match msg {
            ServerMessage::Blob(BlobEvent::Data { request, blob, offset, data }) if blob == record.blob => {
                if !asked.iter().any(|a| a.request == request && !a.stale) || offset != expect {
                    continue;
                }
                if expect + data.len() as u64 > sealed {
                    return Err(Stop::Fatal(ClientError::FileCorrupt("more bytes than the file has")));
                }
                expect += data.len() as u64;
                moved = tokio::time::Instant::now();
                let mut rest = data.as_slice();
                while !rest.is_empty() {
                    let want = chunk_len(size, index)
                        .ok_or(Stop::Fatal(ClientError::FileCorrupt("too many chunks")))?
                        + (SEALED_CHUNK_SIZE - CHUNK_SIZE);
                    let take = (want - chunk.len()).min(rest.len());
                    let (now, next) = rest.split_at(take);
                    chunk.extend_from_slice(now);
                    rest = next;
                    if chunk.len() == want {
                        let plain = cipher
                            .open(index, &chunk)
                            .map_err(|_| Stop::Fatal(ClientError::FileCorrupt("a chunk did not open")))?;
                        sink.file.write_all(&plain).map_err(|e| Stop::Later(io(&sink.path)(e)))?;
                        sink.hasher.update(&plain);
                        sink.written += plain.len() as u64;
                        chunk.clear();
                        index += 1;
                        progress(sink.written, size);
                        if sink.written - noted >= NOTE_EVERY {
                            noted = sink.written;
                            let _ = store.set_download(record.id, DownloadState::Active, None, sink.written, "");
                        }
                    }
                }
            }
            ServerMessage::Blob(BlobEvent::State { request, blob, status, size: blob_size, stored })
                if blob == record.blob && asked.front().is_some_and(|a| a.request == request) =>
            {
                let Some(done) = asked.pop_front() else { continue };
                if blob_size != sealed || stored > sealed {
                    return Err(fatal(ClientError::FileCorrupt("the relay's blob is not the announced size")));
                }
                match status {
                    BlobStatus::Gone => return Err(fatal(ClientError::BlobGone)),
                    BlobStatus::Complete => complete = true,
                    BlobStatus::Uploading => complete = false,
                }
                if !done.stale && expect < done.end {
                    // A short answer (the upload is behind, or the relay
                    // sent less): what was asked after it would leave a
                    // gap, so it is dropped and asked for again.
                    for a in &mut asked {
                        a.stale = true;
                    }
                    issued = expect;
                    if complete && stored <= expect {
                        return Err(fatal(ClientError::FileCorrupt("the relay's blob ends early")));
                    }
                    if !complete && expect.saturating_sub(done.start) < FOLLOW_BATCH {
                        // Following an upload closely: a moment lets more
                        // arrive, so each answer carries more than the
                        // one piece the relay woke for (a round trip per
                        // 16 KiB would cap the speed).
                        tokio::time::sleep(FOLLOW_PAUSE).await;
                    }
                }
            }
            ServerMessage::Error { code, client_id, text }
                if client_id == 0 || asked.iter().any(|a| a.request == client_id) =>
            {
                return match blob_error(ClientError::Refused { code, text }) {
                    e @ (ClientError::BlobGone | ClientError::BlobNotAllowed(_)) => Err(fatal(e)),
                    e => Err(later(e)),
                };
            }
            _ => {}
        }
    }
    // Every chunk is in; the answers still on the way say what the relay
    // holds. They are read so that a blob whose size is not the announced
    // one is refused whatever the file's size (when one request covered
    // the whole file, its answer's state comes after the last chunk).
    while let Some(request) = asked.front().map(|a| a.request) {
        let msg = match tokio::time::timeout(FETCH_HOLD + ANSWER_SLACK, client.recv()).await {
            Err(_) => return Err(Stop::Later(ClientError::Timeout("waiting for the relay's word on the file"))),
            Ok(msg) => msg.map_err(later)?,
        };
        match msg {
            ServerMessage::Blob(BlobEvent::State { request: r, blob, size: blob_size, .. })
                if blob == record.blob && r == request =>
            {
                asked.pop_front();
                if blob_size != sealed {
                    return Err(fatal(ClientError::FileCorrupt("the relay's blob is not the announced size")));
                }
            }
            // The file is whole and was checked: a late refusal changes
            // nothing of it.
            ServerMessage::Error { client_id, .. } if asked.iter().any(|a| a.request == client_id) => {
                asked.retain(|a| a.request != client_id);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Cancels download `id`: the relay is told this member is done with the
/// blob (one already gone is fine), the partial file is deleted, and the
/// record (with its key) forgotten. `client` is a connection of the
/// receiving user; `None` forgets it locally only.
pub async fn cancel(store: &LocalStore, client: Option<&mut Client>, id: u64) -> Result<(), ClientError> {
    let Some(record) = store.download(id)? else { return Ok(()) };
    if let Some(client) = client
        && record.state != DownloadState::Done
    {
        match blob_delete(client, record.blob).await {
            Ok(_) | Err(ClientError::BlobGone) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(dir) = &record.dir {
        let _ = std::fs::remove_file(partial_path(dir, &record));
    }
    store.forget_download(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_downloads_of_one_blob_have_partial_files_of_their_own() {
        let record = |id| DownloadRecord {
            id,
            scope: "s".into(),
            message: id,
            from: "mallory".into(),
            target: cipherline_proto::app::Target::User("bob".into()),
            blob: [7; 16],
            key: Zeroizing::new([0; 32]),
            name: "x".into(),
            size: 1,
            sha256: [0; 32],
            dir: None,
            state: DownloadState::Offered,
            verified: 0,
            detail: String::new(),
        };
        let dir = Path::new("/inbox");
        let (a, b) = (partial_path(dir, &record(1)), partial_path(dir, &record(2)));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with('.'));
        // A peer naming a file like it gets the name without its dot.
        assert_eq!(saved_name(name), name[1..]);
    }

    #[test]
    fn hostile_names_are_saved_sanitised() {
        assert_eq!(saved_name("../../etc/passwd"), "passwd");
        assert_eq!(saved_name("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(saved_name("a\u{1b}[2Jb\n.txt"), "a[2Jb.txt");
        assert_eq!(saved_name(".."), "file");
        assert_eq!(saved_name("C:\\Windows\\x.dll"), "x.dll");
    }

    #[test]
    fn placing_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"mine").unwrap();
        std::fs::write(dir.path().join("a (1).txt"), b"mine too").unwrap();
        let part = dir.path().join(".p");
        std::fs::write(&part, b"theirs").unwrap();
        let saved = place(&part, dir.path(), "a.txt").unwrap();
        assert_eq!(saved, dir.path().join("a (2).txt"));
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"mine");
        assert_eq!(std::fs::read(saved).unwrap(), b"theirs");
        assert!(!part.exists());
    }

    #[test]
    fn a_partial_file_is_cut_to_its_last_whole_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".part");
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE + 100)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let sink = open_partial(&path, 3 * CHUNK_SIZE as u64).unwrap();
        assert_eq!(sink.written, 2 * CHUNK_SIZE as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * CHUNK_SIZE as u64);
        assert_eq!(sink.hasher.clone().finish(), cipherline_proto::crypto::sha256(&data[..2 * CHUNK_SIZE]));
        drop(sink);
        // A whole file (a last chunk shorter than CHUNK_SIZE) is kept whole.
        std::fs::write(&path, &data).unwrap();
        let sink = open_partial(&path, data.len() as u64).unwrap();
        assert_eq!(sink.written, data.len() as u64);
        // A second writer of the same partial file is refused while the
        // first has it open.
        assert!(open_partial(&path, data.len() as u64).is_err());
        drop(sink);
        assert!(open_partial(&path, data.len() as u64).is_ok());
    }
}
