//! File transfer state for both ends (PROTOCOL.md §13.6): what to send
//! next and when, and how to store, check and finish what arrives.
//!
//! Memory is constant for any file size: data moves in chunks of at most
//! [`MAX_CHUNK`] bytes, the sender keeps at most [`WINDOW`] bytes beyond the
//! slowest receiver's acknowledgement in flight, and the receiver writes
//! each chunk to disk as it arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use cipherline_proto::app::{MAX_CHUNK, MAX_UNACKED, Target};
use cipherline_proto::crypto::Sha256;
use cipherline_proto::signature::FileFacts;

/// Bytes a sender keeps in flight beyond the slowest acknowledgement: the
/// server's limit less one chunk of headroom.
pub const WINDOW: u64 = MAX_UNACKED - MAX_CHUNK as u64;
/// A receiver acknowledges at least every this many bytes stored.
pub const ACK_EVERY: u64 = 256 * 1024;

/// Why a transfer failed, for people.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The disk (or quota) is full.
    #[error("disk full while writing {0}")]
    DiskFull(PathBuf),
    /// Another file system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The data did not match the sender's SHA-256 (or its size).
    #[error("the received file does not match what was sent ({0}); it was deleted")]
    Mismatch(&'static str),
    /// The file name offered is not usable.
    #[error("unusable file name")]
    BadName,
}

fn io_error(path: &Path, source: std::io::Error) -> TransferError {
    if source.kind() == ErrorKind::StorageFull {
        TransferError::DiskFull(path.to_owned())
    } else {
        TransferError::Io { path: path.to_owned(), source }
    }
}

/// The part of an offered name that is safe to create in a directory: the
/// last path component, without control characters, bidi or other format
/// characters or line/paragraph separators (so `invoice\u{202e}fdp.exe` is
/// stored as `invoicefdp.exe`, its real extension visible), not hidden, not
/// empty.
#[must_use]
pub fn safe_file_name(offered: &str) -> Option<String> {
    let last = offered.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|&c| !cipherline_proto::charclass::is_hazard(c)).collect();
    // Dots and spaces together: " .bashrc" trimmed of its space alone
    // would be hidden again (and a shell's start-up file in a home
    // directory).
    let cleaned = cleaned.trim_start_matches(|c: char| c == '.' || c.is_whitespace()).trim_end().to_owned();
    if cleaned.is_empty() || cleaned.len() > 255 { None } else { Some(cleaned) }
}

/// Names tried for a received file before giving up: `name`, `name (1)`,
/// … `name (999)`.
const MAX_NAME_TRIES: u32 = 1000;

/// The `n`th name to try for a received file: `name`, then `stem (n).ext`
/// (`report (1).pdf`, `README (1)`), cut so it stays within 255 bytes.
/// One naming for both kinds of file (end-to-end and version 1).
#[must_use]
pub fn numbered_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let suffix = format!(" ({n}){ext}");
    let mut end = stem.len().min(255usize.saturating_sub(suffix.len()));
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", stem.get(..end).unwrap_or_default())
}

/// Links the complete file `part` into `dir` under `name`, or the first
/// of `name (1)`, `name (2)`, … ([`numbered_name`]) not taken: a hard link
/// fails if the name exists, where a rename would replace it. `part` is
/// left for the caller to remove. The path, or the one that failed and why.
pub(crate) fn link_unused(part: &Path, dir: &Path, name: &str) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    for n in 0..MAX_NAME_TRIES {
        let path = dir.join(numbered_name(name, n));
        match std::fs::hard_link(part, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err((path, e)),
        }
    }
    Err((dir.join(name), std::io::Error::new(ErrorKind::AlreadyExists, "too many files with this name")))
}

/// Opens `path` for sending, with its size. Only a regular file (or a
/// symlink to one) is accepted: a directory opens fine on Unix and would be
/// offered as a "file" of its metadata size, a device has no meaningful
/// size, and opening a FIFO waits for a writer. The type is checked before
/// opening (so a FIFO is never opened) and again on the opened handle (what
/// is actually read).
pub fn open_regular(path: &Path) -> Result<(File, u64), crate::ClientError> {
    let fail = |source: std::io::Error| crate::ClientError::FileIo { path: path.to_owned(), source };
    let irregular = |meta: &std::fs::Metadata| {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file" };
        fail(std::io::Error::new(ErrorKind::InvalidInput, format!("{what}: only a regular file can be sent")))
    };
    let meta = std::fs::metadata(path).map_err(fail)?;
    if !meta.is_file() {
        return Err(irregular(&meta));
    }
    let file = File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(irregular(&meta));
    }
    Ok((file, meta.len()))
}

/// The sender's side of one transfer.
pub struct Outgoing {
    /// The transfer id.
    pub transfer: u64,
    /// The file's size.
    pub size: u64,
    sent: u64,
    hasher: Sha256,
    unanswered: BTreeSet<String>,
    accepted: BTreeMap<String, u64>,
    declined: Vec<String>,
}

impl Outgoing {
    /// A transfer of `size` bytes offered to `recipients` (for a room offer,
    /// pass no recipients: answers then add them as they come).
    #[must_use]
    pub fn new(transfer: u64, size: u64, recipients: impl IntoIterator<Item = String>) -> Self {
        Outgoing {
            transfer,
            size,
            sent: 0,
            hasher: Sha256::new(),
            unanswered: recipients.into_iter().collect(),
            accepted: BTreeMap::new(),
            declined: Vec::new(),
        }
    }

    /// A receiver answered.
    pub fn on_answer(&mut self, by: &str, accept: bool) {
        self.unanswered.remove(by);
        if accept {
            self.accepted.insert(by.to_owned(), 0);
        } else {
            self.declined.push(by.to_owned());
        }
    }

    /// A receiver acknowledged `received` bytes; returns true if that was
    /// its final acknowledgement (the whole file, checked).
    pub fn on_ack(&mut self, by: &str, received: u64) -> bool {
        if let Some(acked) = self.accepted.get_mut(by) {
            *acked = (*acked).max(received.min(self.sent));
        }
        received == self.size && self.sent == self.size
    }

    /// A receiver stopped receiving (cancelled or disconnected).
    pub fn on_cancel(&mut self, by: &str) {
        self.unanswered.remove(by);
        self.accepted.remove(by);
    }

    /// Receivers that accepted and have not cancelled.
    #[must_use]
    pub fn receivers(&self) -> usize {
        self.accepted.len()
    }

    /// Receivers that declined.
    #[must_use]
    pub fn declined(&self) -> &[String] {
        &self.declined
    }

    /// Whether some recipient has not answered yet.
    #[must_use]
    pub fn awaiting_answers(&self) -> bool {
        !self.unanswered.is_empty()
    }

    /// Bytes sent so far.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes every accepting receiver has confirmed.
    #[must_use]
    pub fn acked(&self) -> u64 {
        self.accepted.values().copied().min().unwrap_or(0)
    }

    /// Whether every accepting receiver confirmed the whole, checked file.
    #[must_use]
    pub fn delivered(&self) -> bool {
        self.sent == self.size && !self.accepted.is_empty() && self.accepted.values().all(|&a| a == self.size)
    }

    /// Whether the next chunk of `len` bytes may be sent now.
    #[must_use]
    pub fn window_open(&self, len: usize) -> bool {
        !self.accepted.is_empty() && self.sent + len as u64 - self.acked() <= WINDOW
    }

    /// Records a chunk about to be sent (feeds the hash).
    pub fn record_chunk(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.sent += data.len() as u64;
    }

    /// The SHA-256 of everything sent (call once, after the last chunk).
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finish()
    }
}

/// The receiver's side of one transfer: data goes to a `.part` file that
/// becomes the real file only once size and SHA-256 match.
pub struct Incoming {
    /// The sender.
    pub from: String,
    /// The transfer id.
    pub transfer: u64,
    /// The announced size.
    pub size: u64,
    /// The final file name (already made safe).
    pub name: String,
    /// The name as offered (what the sender signed).
    offered_name: String,
    /// The user or room it was offered to (what the sender signed).
    to: Target,
    dir: PathBuf,
    part: PathBuf,
    file: Option<File>,
    received: u64,
    last_ack: u64,
    hasher: Sha256,
}

/// Partial-file names tried before a receive gives up (each taken by a
/// file left behind or another transfer).
const MAX_PART_TRIES: u32 = 100;

impl Incoming {
    /// Starts receiving into `dir` the file `from` offered to `to`.
    pub fn create(
        dir: &Path,
        from: &str,
        to: &Target,
        transfer: u64,
        offered_name: &str,
        size: u64,
    ) -> Result<Self, TransferError> {
        let name = safe_file_name(offered_name).ok_or(TransferError::BadName)?;
        // The sender's name comes from the relay: keep only name-grammar
        // characters (never '/', '.' or controls) in the temporary file name.
        let tag: String = from.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
        // Not the file's own name: a legal 255-byte name plus a suffix
        // would be too long for the file system.
        // Transfer ids restart with every sending session, and names that
        // differ only in dropped characters share a tag: a partial file
        // left by a killed receiver, or another transfer's, must not stop
        // this one. Never opened over an existing file (create_new).
        let mut attempt = 0u32;
        let (part, file) = loop {
            let suffix = if attempt == 0 { String::new() } else { format!("-{attempt}") };
            let part = dir.join(format!(".cipherline-{tag}-{transfer}{suffix}.part"));
            match OpenOptions::new().write(true).create_new(true).open(&part) {
                Ok(file) => break (part, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < MAX_PART_TRIES => attempt += 1,
                Err(e) => return Err(io_error(&part, e)),
            }
        };
        Ok(Incoming {
            from: from.to_owned(),
            transfer,
            size,
            name,
            offered_name: offered_name.to_owned(),
            to: to.clone(),
            dir: dir.to_owned(),
            part,
            file: Some(file),
            received: 0,
            last_ack: 0,
            hasher: Sha256::new(),
        })
    }

    /// What the sender's file signature covers, with the hash from FileDone
    /// (PROTOCOL.md §13.7): check it before calling the file anyone's.
    #[must_use]
    pub fn facts<'a>(&'a self, sha256: &'a [u8; 32]) -> FileFacts<'a> {
        FileFacts {
            sender: &self.from,
            to: &self.to,
            transfer: self.transfer,
            name: &self.offered_name,
            size: self.size,
            sha256,
        }
    }

    /// Bytes stored so far.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Stores a chunk; returns the byte count to acknowledge, if an
    /// acknowledgement is due.
    pub fn write(&mut self, data: &[u8]) -> Result<Option<u64>, TransferError> {
        if self.received + data.len() as u64 > self.size {
            return Err(TransferError::Mismatch("more data than announced"));
        }
        let file = self.file.as_mut().ok_or(TransferError::Mismatch("data after the end"))?;
        file.write_all(data).map_err(|e| io_error(&self.part, e))?;
        self.hasher.update(data);
        self.received += data.len() as u64;
        // Intermediate acks stay below the size: an ack of the whole size
        // means "received and verified" and is sent by `finish`'s caller.
        if self.received - self.last_ack >= ACK_EVERY && self.received < self.size {
            self.last_ack = self.received;
            return Ok(Some(self.received));
        }
        Ok(None)
    }

    /// Checks size and hash; on success moves the file into place (never
    /// over an existing file: `name`, `name (1)`, `name (2)`, …) and returns its
    /// path. On mismatch the partial file is deleted.
    pub fn finish(mut self, sha256: &[u8; 32]) -> Result<PathBuf, TransferError> {
        let file = self.file.take().ok_or(TransferError::Mismatch("finished twice"))?;
        if self.received != self.size {
            self.discard();
            return Err(TransferError::Mismatch("size"));
        }
        if self.hasher.clone().finish() != *sha256 {
            self.discard();
            return Err(TransferError::Mismatch("SHA-256"));
        }
        let placed = self.place(file);
        if placed.is_err() {
            // `file` is gone, so Drop would not clean up: do it here.
            let _ = std::fs::remove_file(&self.part);
        }
        placed
    }

    /// Syncs the complete file and links it under its name (or the
    /// first unused `name (n).ext`: [`link_unused`]).
    fn place(&self, file: File) -> Result<PathBuf, TransferError> {
        file.sync_all().map_err(|e| io_error(&self.part, e))?;
        drop(file);
        let path = link_unused(&self.part, &self.dir, &self.name).map_err(|(path, e)| io_error(&path, e))?;
        let _ = std::fs::remove_file(&self.part);
        Ok(path)
    }

    /// Deletes the partial file (cancelled or failed).
    pub fn discard(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.part);
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // An unfinished transfer leaves nothing behind.
        if self.file.is_some() {
            self.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_file_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(safe_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_file_name("C:\\x\\y.txt").as_deref(), Some("y.txt"));
        assert_eq!(safe_file_name(".bashrc").as_deref(), Some("bashrc"));
        // Hidden again once a leading space (or NBSP, or a removed control
        // or bidi character) is gone: still not hidden.
        for hidden in [" .bashrc", "\u{a0}.bashrc", ". .bashrc", " \u{202e}. .bash_login", "\t.profile"] {
            let name = safe_file_name(hidden).unwrap();
            assert!(!name.starts_with('.') && !name.starts_with(' '), "{hidden:?} -> {name:?}");
        }
        assert_eq!(safe_file_name(" . ").as_deref(), None);
        assert_eq!(safe_file_name("..").as_deref(), None);
        assert_eq!(safe_file_name("a/").as_deref(), None);
        assert_eq!(safe_file_name("bad\u{0}\nname").as_deref(), Some("badname"));
        // Bidi and format characters would disguise the real extension.
        assert_eq!(safe_file_name("invoice\u{202e}fdp.exe").as_deref(), Some("invoicefdp.exe"));
        assert_eq!(safe_file_name("a\u{200b}\u{2066}b\u{2028}\u{feff}").as_deref(), Some("ab"));
        assert_eq!(safe_file_name("\u{202e}\u{200f}").as_deref(), None);
    }

    #[test]
    fn window_and_delivery() {
        let mut o = Outgoing::new(1, 3 * WINDOW, ["bob".to_owned()]);
        assert!(!o.window_open(MAX_CHUNK), "nothing before an accept");
        o.on_answer("bob", true);
        while o.window_open(MAX_CHUNK) {
            o.record_chunk(&[0; MAX_CHUNK]);
        }
        assert!(o.sent() <= WINDOW);
        o.on_ack("bob", o.sent());
        assert!(o.window_open(MAX_CHUNK));
        assert!(!o.delivered());
    }

    #[test]
    fn names_with_numbers_keep_the_extension_and_the_length_limit() {
        assert_eq!(numbered_name("report.pdf", 0), "report.pdf");
        assert_eq!(numbered_name("report.pdf", 1), "report (1).pdf");
        assert_eq!(numbered_name("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered_name("README", 3), "README (3)");
        let long = "a".repeat(251) + ".txt";
        assert!(numbered_name(&long, 12).len() <= 255);
        assert!(numbered_name(&long, 12).ends_with(" (12).txt"));
    }

    #[test]
    fn incoming_checks_hash_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("cl-transfer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.txt"), b"existing").unwrap();
        let data = b"hello file";
        let me = Target::User("bob".into());
        let mut good = Incoming::create(&dir, "alice", &me, 1, "f.txt", data.len() as u64).unwrap();
        good.write(data).unwrap();
        let path = good.finish(&cipherline_proto::crypto::sha256(data)).unwrap();
        assert_eq!(path, dir.join("f (1).txt"), "named as end-to-end files are");
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(std::fs::read(dir.join("f.txt")).unwrap(), b"existing");

        let mut bad = Incoming::create(&dir, "alice", &me, 2, "g.txt", data.len() as u64).unwrap();
        bad.write(data).unwrap();
        assert!(matches!(bad.finish(&[0; 32]), Err(TransferError::Mismatch("SHA-256"))));
        assert!(!dir.join("g.txt").exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "no partial files left");

        let mut over = Incoming::create(&dir, "alice", &me, 3, "h.txt", 2).unwrap();
        assert!(over.write(b"abc").is_err());
        drop(over);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);

        // The longest name the server allows is received under that name
        // (the partial file's own name does not grow with it).
        let long = "n".repeat(255);
        let mut big = Incoming::create(&dir, "alice", &me, 4, &long, data.len() as u64).unwrap();
        big.write(data).unwrap();
        assert_eq!(big.finish(&cipherline_proto::crypto::sha256(data)).unwrap(), dir.join(&long));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_partial_file_left_behind_does_not_stop_a_later_transfer_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let me = Target::User("bob".into());
        // A receiver killed mid-transfer left this; ids restart per session.
        let stale = dir.path().join(".cipherline-alice-1.part");
        std::fs::write(&stale, b"half").unwrap();
        let data = b"second time";
        let mut again = Incoming::create(dir.path(), "alice", &me, 1, "f.txt", data.len() as u64).unwrap();
        again.write(data).unwrap();
        let path = again.finish(&cipherline_proto::crypto::sha256(data)).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
        assert_eq!(std::fs::read(&stale).unwrap(), b"half", "never written over");
    }
}
