//! The client library's error type.

use cipherline_proto::app::ErrorCode;

/// What can go wrong for a client.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server's key was not trusted; nothing secret was sent.
    #[error("{0}")]
    Untrusted(String),
    /// The connection or the protocol failed.
    #[error(transparent)]
    Net(#[from] cipherline_net::NetError),
    /// The server refused a request. Displayed with `text` escaped: it is
    /// the server's (or, relayed, a peer's) and may hold terminal controls.
    #[error("server refused ({code:?}): {}", crate::display::escape(.text))]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's explanation.
        text: String,
    },
    /// The server sent something this client did not expect.
    #[error("unexpected reply from the server")]
    Unexpected,
    /// A message is longer than the server accepts (it would end the
    /// session); it was not sent.
    #[error("message too long: {size} bytes encoded, the server accepts at most {max}")]
    TooLong {
        /// The encoded size of the refused message, in bytes.
        size: usize,
        /// The server's `max_message`, from Welcome.
        max: u32,
    },
    /// End-to-end encryption failed or is not possible (the text says
    /// why; it holds no plaintext or key).
    #[error("end-to-end: {0}")]
    EndToEnd(String),
    /// A commit lost its epoch to another member's: the group changed
    /// meanwhile; process what arrived and try again.
    #[error("the conversation changed meanwhile (now at epoch {epoch}); try again")]
    Stale {
        /// The group's epoch at the relay.
        epoch: u64,
    },
    /// The client engine cannot do what was asked (it stopped, or is
    /// reconnecting); the text says which.
    #[error("{0}")]
    Engine(String),
    /// A peer's key cannot be verified or trusted as asked (the text
    /// says why and what to do first).
    #[error("{0}")]
    Trust(String),
    /// A time limit ran out.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The server welcomed this client under another name than the one it
    /// asked for (a relay could otherwise make it sign as someone else).
    #[error("the server accepted this client under a different name than it asked for; refusing the session")]
    WrongName,
    /// The known-peers file does not parse (the line's content is never shown).
    #[error("known peers file, line {line}: {reason}")]
    KnownPeers {
        /// The file.
        path: std::path::PathBuf,
        /// The 1-based line (0 for the whole file).
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file of the local store, or the legacy known-peers file, could not
    /// be created, read or renamed.
    #[error("{}: {source}", path.display())]
    KnownPeersIo {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A peer's key can only be confirmed while it is the remembered one.
    #[error("that key is not the one remembered for this peer")]
    PeerNotRemembered,
    /// A peer name outside the name grammar cannot be remembered.
    #[error("not a valid user name")]
    InvalidPeerName,
    /// The local store's database failed (another process's write outlasted
    /// the busy timeout, a full disk, a file that is not a database).
    #[error("{}: {source}", path.display())]
    LocalStore {
        /// The database file.
        path: std::path::PathBuf,
        /// What failed.
        source: rusqlite::Error,
    },
    /// The local store was written by a newer cipherline; it is left as it is.
    #[error(
        "{} was written by a newer cipherline (schema version {found}; this one knows up to {supported}): \
         use the newer cipherline, or move the file aside to start afresh",
        path.display()
    )]
    LocalStoreTooNew {
        /// The database file.
        path: std::path::PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// A record in the local store does not parse (its content is never shown).
    #[error("{}: {what}", path.display())]
    LocalStoreCorrupt {
        /// The database file.
        path: std::path::PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// The local store already holds the most peers it may for this
    /// server.
    #[error("too many known peers on this server to remember another")]
    TooManyPeers,
    /// Another process changed this peer's record since this one read it;
    /// nothing was written and the file's record now applies.
    #[error("another cipherline process changed this peer's key record meanwhile; nothing was changed")]
    PeerChangedElsewhere,
    /// The relay has no room for this file (its per-user or total blob
    /// quota): nothing of it was kept. The relay's text (escaped) names
    /// the limit.
    #[error("the relay has no room for this file: {}", crate::display::escape(.0))]
    BlobQuota(String),
    /// The file is no longer at the relay: its sender cancelled it, every
    /// recipient did (the relay then drops it), or it expired. Shown to
    /// senders and receivers alike, so it blames nobody in particular.
    #[error("the file is no longer on the relay (cancelled by its sender or by every recipient, or expired)")]
    BlobGone,
    /// The relay does not let this client upload or fetch files here (no
    /// stored queue, not a member of the conversation, or a server without
    /// a store). The relay's text is escaped.
    #[error("the relay does not allow this file transfer: {}", crate::display::escape(.0))]
    BlobNotAllowed(String),
    /// The file changed while it was being sent: the upload was cancelled
    /// (a file key never seals two different plaintexts).
    #[error("{} changed while it was being sent; the upload was cancelled", .0.display())]
    FileChanged(std::path::PathBuf),
    /// A received file did not verify: a chunk did not open, or its size or
    /// SHA-256 is not the announced one. The partial file was deleted.
    #[error("the file received was corrupted or tampered with on the way ({0}); it was deleted")]
    FileCorrupt(&'static str),
    /// A local file could not be read, written, created or renamed.
    #[error("{}: {source}", path.display())]
    FileIo {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file transfer made no progress for too long (the sender stopped
    /// uploading, or the relay stopped answering); it can be resumed.
    #[error("the transfer made no progress for {0} s; it can be resumed later")]
    Stalled(u64),
    /// No file transfer or offer has this id (for this name and server).
    #[error("no file transfer {}", crate::display::escape(.0))]
    NoTransfer(String),
}
