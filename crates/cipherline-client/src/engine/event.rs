//! What the engine tells its front-ends: the connection's state, the
//! verdict on a sender's key, messages, and every other [`Event`]. Peer
//! strings here are raw: each front-end escapes them for its medium.

use std::time::Duration;

use cipherline_proto::app::Target;

use crate::peers::MessageStatus;

use super::TransferState;

/// The engine's view of its connection, as [`Event::Connection`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first connection is being made.
    Connecting,
    /// Connected as `name`.
    Connected {
        /// The name the server welcomed.
        name: String,
    },
    /// The connection was lost (or an attempt failed): the next attempt is
    /// in `retry_in`.
    Reconnecting {
        /// Why.
        reason: String,
        /// When the next attempt is made.
        retry_in: Duration,
    },
    /// The engine stopped for good.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// The verdict on a message's sender key, as shown next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// A key seen for the first time for this name (now remembered).
    New,
    /// The key remembered for the name.
    Known,
    /// The remembered key, confirmed by comparing safety codes.
    Verified,
    /// Another key than the one remembered (or none where one was).
    Changed,
    /// Not signed, and no key remembered.
    Unsigned,
    /// A signature that does not verify.
    Invalid,
}

impl Verified {
    /// The verdict for a message's status.
    #[must_use]
    pub fn of(status: &MessageStatus) -> Verified {
        match status {
            MessageStatus::New(_) => Verified::New,
            MessageStatus::Known => Verified::Known,
            MessageStatus::Verified => Verified::Verified,
            MessageStatus::KeyChanged { .. } => Verified::Changed,
            MessageStatus::Unsigned => Verified::Unsigned,
            MessageStatus::Invalid => Verified::Invalid,
        }
    }

    /// Its lowercase name (`new`, `known`, `verified`, `changed`,
    /// `unsigned`, `invalid`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verified::New => "new",
            Verified::Known => "known",
            Verified::Verified => "verified",
            Verified::Changed => "changed",
            Verified::Unsigned => "unsigned",
            Verified::Invalid => "invalid",
        }
    }
}

/// A message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The server's message id (stable: the same on every delivery).
    pub id: u64,
    /// The sender.
    pub from: String,
    /// The room, or this user for a direct message.
    pub to: Target,
    /// The text (raw: escape it for a terminal).
    pub text: String,
    /// Whether it came end to end encrypted.
    pub e2e: bool,
    /// The verdict on the sender's key.
    pub verified: Verified,
    /// The fingerprint of the sender's key when this message made it
    /// remembered (verdict [`Verified::New`]): what a first-message notice
    /// shows, so people can compare it.
    pub new_key: Option<String>,
    /// The server's time, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The sender's clock when it sent it, Unix milliseconds, where the
    /// sender vouches for it (a valid signature covers it, or it came end
    /// to end), so the relay cannot change it; `None` otherwise (unsigned,
    /// or a bad signature). What a line shows as the message's time.
    pub sent_ms: Option<u64>,
    /// Whether it was signed or came end to end. An unsigned message whose
    /// verdict is [`Verified::Changed`] carries no other key: it came
    /// under a name whose key is remembered, without a signature.
    pub signed: bool,
}

/// What the engine tells its front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message, once per id.
    Message(Message),
    /// A recipient's client confirmed message `id`.
    Delivered {
        /// The message.
        id: u64,
        /// Who confirmed it.
        by: String,
    },
    /// Someone joined or left an open room this user is in.
    Membership {
        /// The room.
        room: String,
        /// Who.
        name: String,
        /// Joined (true) or left.
        joined: bool,
    },
    /// A peer's key differs from the one remembered (message `id`).
    KeyChanged {
        /// The message that showed it.
        id: u64,
        /// The peer.
        name: String,
    },
    /// A change of an end-to-end conversation (members, keys), or a
    /// message of one that could not be read; message `id`.
    Group {
        /// The delivery's id.
        id: u64,
        /// What happened, for people (raw peer strings: escape them).
        text: String,
        /// The same, as data, for a front-end that words it its own way.
        change: GroupChange,
    },
    /// The connection's state changed.
    Connection(ConnectionState),
    /// A file was offered. End to end (`e2e`): recorded, so
    /// [`Command::GetFile`] fetches it now or after a restart; acknowledged
    /// to the relay only after this event was handed over. Version 1
    /// (`e2e` false: an open room, or a sender without end-to-end files;
    /// the relay can read it): offered live and kept in memory only (at
    /// most [`MAX_OFFERS`], the oldest forgotten), so it must be accepted
    /// (or declined) while this connection lasts; it does not survive a
    /// reconnection or a restart.
    FileOffered {
        /// The offer's id: an end-to-end offer's delivery's server id
        /// (stable); a version-1 offer's is engine-assigned, a multiple of
        /// [`OFFER_ID_STEP`], never a server message id ([`is_offer_id`]).
        id: u64,
        /// The sender.
        from: String,
        /// The room, or this user for a direct conversation.
        to: Target,
        /// The sender's name for the file (raw: escape it for a terminal;
        /// it is saved under a sanitised form).
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Whether it came end to end.
        e2e: bool,
        /// The verdict on the sender's key (a version-1 offer is not signed
        /// itself: `unsigned`; its file's signature is checked at its end).
        verified: Verified,
    },
    /// Progress of a transfer (at most one per [`PROGRESS_EVERY`] while it
    /// runs, an end-to-end upload also one per hundredth of the file), and
    /// how it ended.
    Transfer {
        /// Its id, as [`Reply::Transfer`] and [`Command::Files`] name it.
        transfer: String,
        /// The file's name (raw).
        name: String,
        /// Bytes done.
        done: u64,
        /// The file's size.
        total: u64,
        /// Where it stands.
        state: TransferState,
        /// Where a download was saved (when done).
        path: Option<std::path::PathBuf>,
    },
    /// An end-to-end upload's own facts, which [`Event::Transfer`] does
    /// not carry (its local id, where it resumed, the file's hash: what
    /// `send --file --json` reports): handed over when it starts or
    /// resumes, before any progress of it (`sha256` `None`), and when it
    /// was sent whole, just before its `Done` (`sha256` set).
    Upload(UploadFacts),
    /// A message this user sent (server id `id`) expired on the relay
    /// before `to` read it. Like a message, confirmed through
    /// [`Handover`] (when taken) before it is acknowledged.
    Expired {
        /// The message's server id (as its Ack gave it).
        id: u64,
        /// The recipient that did not get it (raw: escape it).
        to: String,
    },
    /// One receiver of a version-1 file this user offers answered, or
    /// stopped receiving it; [`Event::Transfer`] still tells how the whole
    /// transfer goes. Dropped rather than waited for when the front-end
    /// lags.
    Receiver {
        /// The transfer, as [`Event::Transfer`] names it.
        transfer: String,
        /// The file's name (raw).
        name: String,
        /// The receiver (raw: escape it).
        by: String,
        /// What it did.
        answer: ReceiverAnswer,
    },
}

/// What one receiver of a version-1 file did ([`Event::Receiver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverAnswer {
    /// Accepted the offer: the file is sent to it.
    Accepted,
    /// Declined the offer.
    Declined,
    /// Stopped receiving it, with its reason (raw: escape it).
    Stopped(String),
}

/// An end-to-end upload, as [`Event::Upload`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFacts {
    /// The transfer, as [`Event::Transfer`] names it (`s1`).
    pub transfer: String,
    /// Its local id: the store's `u` id (`files list`, `files cancel`).
    pub upload: u64,
    /// The name it is announced under (raw).
    pub name: String,
    /// Plaintext bytes the relay held already when this run started (0
    /// for a new upload).
    pub from: u64,
    /// The file's size.
    pub total: u64,
    /// Whether it continues an earlier upload.
    pub resumed: bool,
    /// SHA-256 of the plaintext, once it was sent whole.
    pub sha256: Option<[u8; 32]>,
}

/// What an [`Event::Group`] is about (raw peer strings: escape them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// `by` started an end-to-end direct conversation with this user.
    Started {
        /// The other person.
        by: String,
    },
    /// This user was added to an end-to-end room.
    Added {
        /// The room.
        room: String,
        /// Its members, comma-separated, as their credentials name them.
        members: String,
    },
    /// `by` changed a conversation's members (`summary`: `+name` and
    /// `-name` words; empty when only `by`'s keys were renewed).
    Changed {
        /// Who committed.
        by: String,
        /// The room, or the other person.
        conversation: Target,
        /// What changed.
        summary: String,
    },
    /// `by` removed this user from a conversation.
    Removed {
        /// Who committed.
        by: String,
        /// The room, or the other person.
        conversation: Target,
    },
    /// A message could not be read (altered, forged, replayed, or for a
    /// conversation this client is not in); `from` is who the relay says
    /// sent it (not authenticated).
    Unreadable {
        /// The relay's sender.
        from: String,
        /// The room or person, as far as known.
        conversation: Target,
        /// Why.
        reason: String,
    },
    /// What the sender's counter says after message `id` (messages of
    /// theirs missing before it, or it came out of order).
    Notice,
}
