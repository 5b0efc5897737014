//! The application protocol carried inside records (PROTOCOL.md §13).
//!
//! Application data is a byte stream; it is cut into messages, each
//! `length (4, big-endian) | type (1) | body (length - 1 bytes)`. Strings are
//! UTF-8 with a one-byte length (names, rooms) or a four-byte length (text).
//! Client-to-server types are below 0x80, server-to-client types 0x80 and up.
//! Decoding is as strict as the handshake's: bounded lengths, valid UTF-8,
//! known enumerations, no trailing bytes.

use crate::codec::{Reader, Writer};
use crate::crypto::kem::MAX_SPKI_LEN;
use crate::crypto::sign::MAX_SIGNATURE_LEN;
use crate::error::{DecodeError, Error};

mod blob;
mod content;
mod group;
mod limits;
mod names;
mod server_codec;
pub use blob::{BLOB_ID_LEN, BlobEvent, BlobId, BlobRequest, BlobStatus, MAX_BLOB_DATA, MAX_BLOB_FETCH, MIN_BLOB_SIZE};
pub use content::{E2eBody, E2eContent, FileAnnouncement};
pub use group::{
    CommitRequest, GroupDelivery, GroupEvent, GroupRequest, MAX_COMMIT_NAMES, MAX_GROUP_ID, MAX_KEY_PACKAGE,
    MAX_KEY_PACKAGES_PER_UPLOAD, PayloadKind, RoomKind,
};
pub use limits::{QueueLimits, RateLimits};
pub use names::{fold_name, folded, name_skeleton, valid_name};

/// Hard upper bound on one message (type and body); peers may set lower limits.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Longest name or room name the wire format carries.
pub const MAX_NAME: usize = 64;
/// Most names one Members message lists.
pub const MAX_MEMBERS: usize = 4096;
/// Longest file name carried in a file offer.
pub const MAX_FILE_NAME: usize = 255;
/// Most bytes of file data in one chunk (PROTOCOL.md §13.6).
pub const MAX_CHUNK: usize = 16 * 1024;
/// Most bytes a sender may have relayed beyond the slowest accepting
/// receiver's acknowledgement; the server cancels a transfer that exceeds it.
pub const MAX_UNACKED: u64 = 2 * 1024 * 1024;

/// Where a chat message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everyone in a room.
    Room(String),
    /// One user, by name.
    User(String),
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// The first message: the display name to use (unique while connected).
    Hello {
        /// Requested display name.
        name: String,
    },
    /// Join a room (created on first join).
    Join {
        /// Room name.
        room: String,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: String,
    },
    /// Send text to a room or a user; the server acknowledges `id`.
    Send {
        /// Client-chosen id, echoed in the Ack or Error.
        id: u64,
        /// Destination.
        to: Target,
        /// The text.
        text: String,
        /// The sender's signature (PROTOCOL.md §13.7), if it has an identity key.
        signed: Option<SendSignature>,
    },
    /// Ask who is in a room.
    Who {
        /// Room name.
        room: String,
    },
    /// Keepalive; the server answers Pong with the same nonce.
    Ping {
        /// Echoed value.
        nonce: u64,
    },
    /// A clean goodbye before close_notify.
    Goodbye,
    /// Offer a file to a user or a room (PROTOCOL.md §13.6).
    FileOffer {
        /// Sender-chosen transfer id.
        transfer: u64,
        /// Who is offered the file.
        to: Target,
        /// The file's name (no directory part).
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Accept or decline a file offered by `sender`.
    FileAnswer {
        /// The offer's transfer id.
        transfer: u64,
        /// Who offered it.
        sender: String,
        /// Whether the file is wanted.
        accept: bool,
    },
    /// The next piece of an accepted transfer's data.
    FileChunk {
        /// The transfer id.
        transfer: u64,
        /// At most [`MAX_CHUNK`] bytes.
        data: Vec<u8>,
    },
    /// The whole file was sent; its SHA-256.
    FileEnd {
        /// The transfer id.
        transfer: u64,
        /// SHA-256 of all the data.
        sha256: [u8; 32],
        /// The sender's signature over the offer and the hash
        /// ([`crate::signature::file_signing_input`]), if it has an identity key.
        signature: Option<Vec<u8>>,
    },
    /// Stop a transfer: the sender (with `sender` empty) stops it for
    /// everyone; a receiver (naming the sender) stops receiving it.
    FileCancel {
        /// The transfer id.
        transfer: u64,
        /// Empty when sent by the file's sender, else the sender's name.
        sender: String,
        /// Why, for people.
        reason: String,
    },
    /// Ask for the identity key a connected user proved.
    Whois {
        /// The user.
        name: String,
    },
    /// Every stored message up to queue position `upto` was handled:
    /// the server may delete them (PROTOCOL.md §13.9).
    Received {
        /// The highest `seq` handled.
        upto: u64,
    },
    /// Start delivering this user's stored messages to this connection,
    /// after queue position `after` (everything up to it is acknowledged
    /// too): the client's cursor (PROTOCOL.md §13.9). Until it is sent, a
    /// connection gets no stored messages.
    Resume {
        /// The highest `seq` the client has already handled (0: none).
        after: u64,
    },
    /// Ask for (or stop) delivery receipts for the messages this
    /// connection sends from now on (PROTOCOL.md §13.9).
    Receipts {
        /// Whether receipts are wanted.
        enabled: bool,
    },
    /// A receiver confirms it has stored `received` bytes (flow control).
    FileAck {
        /// The transfer id.
        transfer: u64,
        /// Who sends the file.
        sender: String,
        /// Bytes received and stored so far.
        received: u64,
    },
    /// A delivery-service request of end-to-end conversations (0x12 to
    /// 0x18, PROTOCOL.md §13.11).
    Group(GroupRequest),
    /// A blob request of end-to-end files (0x19 to 0x1c, PROTOCOL.md
    /// §13.12).
    Blob(BlobRequest),
}

/// What happened in a room, for Notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// The user joined the room.
    Joined,
    /// The user left the room (or disconnected).
    Left,
}

/// Why the server refused something (PROTOCOL.md §13.4).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The first message was not Hello, or Hello came twice.
    HelloRequired,
    /// The name is in use by another connection.
    NameTaken,
    /// The name or room name is empty, too long, or has disallowed characters.
    InvalidName,
    /// The user named as a destination is not connected.
    UnknownUser,
    /// Sending to or asking about a room the client has not joined.
    NotInRoom,
    /// A message exceeded the server's size limit.
    MessageTooLarge,
    /// Messages arrived faster than the server's rate limit.
    RateLimited,
    /// Joining one more room would exceed the per-client limit.
    TooManyRooms,
    /// The server has no room for another connection.
    ServerFull,
    /// No message arrived within the idle timeout.
    IdleTimeout,
    /// The server is shutting down.
    ShuttingDown,
    /// The client could not keep up with its incoming messages.
    TooSlow,
    /// A message did not parse or was not valid here.
    BadRequest,
    /// The name belongs to another identity key (or needs one).
    IdentityMismatch,
    /// The recipient's queue (or the server's store) is full: the message
    /// was not kept.
    QueueFull,
    /// The server could not store the message: it was not delivered.
    StoreFailed,
    /// An uploaded KeyPackage does not parse or is not the uploader's.
    BadKeyPackage,
    /// The user has no KeyPackage to claim (no client of theirs uploaded
    /// one): they cannot be added to an end-to-end conversation yet.
    NoKeyPackage,
    /// A room of that name exists already.
    RoomExists,
    /// Not allowed in this group or room (not a member, not an admin,
    /// invite only).
    NotAllowed,
    /// The room is end to end encrypted: plain Send and Join do not apply.
    EndToEnd,
    /// A blob would not fit the uploader's or the relay's blob quota.
    BlobQuota,
    /// No such blob (unknown, deleted, expired, or not this client's to see).
    NoBlob,
    /// A code this implementation does not know.
    Unknown(u16),
}

impl ErrorCode {
    /// The code on the wire.
    #[must_use]
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::HelloRequired => 1,
            ErrorCode::NameTaken => 2,
            ErrorCode::InvalidName => 3,
            ErrorCode::UnknownUser => 4,
            ErrorCode::NotInRoom => 5,
            ErrorCode::MessageTooLarge => 6,
            ErrorCode::RateLimited => 7,
            ErrorCode::TooManyRooms => 8,
            ErrorCode::ServerFull => 9,
            ErrorCode::IdleTimeout => 10,
            ErrorCode::ShuttingDown => 11,
            ErrorCode::TooSlow => 12,
            ErrorCode::BadRequest => 13,
            ErrorCode::IdentityMismatch => 14,
            ErrorCode::QueueFull => 15,
            ErrorCode::StoreFailed => 16,
            ErrorCode::BadKeyPackage => 17,
            ErrorCode::NoKeyPackage => 18,
            ErrorCode::RoomExists => 19,
            ErrorCode::NotAllowed => 20,
            ErrorCode::EndToEnd => 21,
            ErrorCode::BlobQuota => 22,
            ErrorCode::NoBlob => 23,
            ErrorCode::Unknown(c) => c,
        }
    }

    /// Parses a code (unknown codes are kept).
    #[must_use]
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::HelloRequired,
            2 => ErrorCode::NameTaken,
            3 => ErrorCode::InvalidName,
            4 => ErrorCode::UnknownUser,
            5 => ErrorCode::NotInRoom,
            6 => ErrorCode::MessageTooLarge,
            7 => ErrorCode::RateLimited,
            8 => ErrorCode::TooManyRooms,
            9 => ErrorCode::ServerFull,
            10 => ErrorCode::IdleTimeout,
            11 => ErrorCode::ShuttingDown,
            12 => ErrorCode::TooSlow,
            13 => ErrorCode::BadRequest,
            14 => ErrorCode::IdentityMismatch,
            15 => ErrorCode::QueueFull,
            16 => ErrorCode::StoreFailed,
            17 => ErrorCode::BadKeyPackage,
            18 => ErrorCode::NoKeyPackage,
            19 => ErrorCode::RoomExists,
            20 => ErrorCode::NotAllowed,
            21 => ErrorCode::EndToEnd,
            22 => ErrorCode::BlobQuota,
            23 => ErrorCode::NoBlob,
            other => ErrorCode::Unknown(other),
        }
    }

    /// Whether the server closes the connection after sending this error.
    #[must_use]
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::ServerFull
                | ErrorCode::IdleTimeout
                | ErrorCode::ShuttingDown
                | ErrorCode::TooSlow
                | ErrorCode::BadRequest
                | ErrorCode::MessageTooLarge
        )
    }
}

/// A chat message as the server delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Server-assigned id, unique for this server run.
    pub id: u64,
    /// Server time when it relayed the message, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The sender's name.
    pub from: String,
    /// The room it was said in, or the recipient of a direct message.
    pub to: Target,
    /// The text.
    pub text: String,
    /// The sender's signature and key, if it signed (PROTOCOL.md §13.7).
    pub signed: Option<Signed>,
    /// Its position in this recipient's stored queue, to acknowledge with
    /// Received once handled; 0 for a message delivered live only
    /// (PROTOCOL.md §13.9).
    pub seq: u64,
}

/// What a signing sender adds to Send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSignature {
    /// The sender's clock when it signed, Unix milliseconds.
    pub sent_at_ms: u64,
    /// The signature over [`crate::signature::signing_input`].
    pub signature: Vec<u8>,
}

/// A relayed message's signature, with what a recipient needs to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The sender's Send id (part of the signed input).
    pub client_id: u64,
    /// The sender's clock when it signed.
    pub sent_at_ms: u64,
    /// Signature algorithm of the sender's identity key (0x0807 Ed25519,
    /// 0x0804 RSA-PSS-SHA256).
    pub algorithm: u16,
    /// The sender's identity key as proven to the server (DER SPKI).
    pub sender_key: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// A relayed file's signature, with the key that made it (PROTOCOL.md §13.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSigned {
    /// Signature algorithm of the sender's identity key.
    pub algorithm: u16,
    /// The sender's identity key as proven to the server (DER SPKI).
    pub sender_key: Vec<u8>,
    /// The signature over [`crate::signature::file_signing_input`].
    pub signature: Vec<u8>,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// Hello accepted: the name in force and the server's limits.
    Welcome {
        /// The accepted name.
        name: String,
        /// Largest message the server accepts.
        max_message: u32,
        /// Seconds of silence after which the server closes the connection.
        idle_timeout_secs: u32,
        /// The rate limits this client is held to.
        rates: RateLimits,
        /// What is kept for this client while it is offline; `None`: live
        /// delivery only.
        queue: Option<QueueLimits>,
    },
    /// A room was joined.
    Joined {
        /// Room name.
        room: String,
    },
    /// A room was left.
    Left {
        /// Room name.
        room: String,
    },
    /// A relayed chat message.
    Message(Delivery),
    /// The server accepted and relayed the client's message `client_id`.
    Ack {
        /// The client's id for the message.
        client_id: u64,
        /// The id the server gave it.
        id: u64,
        /// The server timestamp it carries.
        timestamp_ms: u64,
        /// Recipients it was stored for, whose clients acknowledge it.
        queued: u32,
        /// Recipients it reached live only (no stored queue).
        live: u32,
        /// Recipients it was not kept for because their queue was full.
        full: u32,
    },
    /// Someone joined or left a room this client is in.
    Notice {
        /// What happened.
        kind: NoticeKind,
        /// The room.
        room: String,
        /// Who.
        name: String,
    },
    /// Who is in a room.
    Members {
        /// The room.
        room: String,
        /// The names, sorted.
        names: Vec<String>,
    },
    /// A refusal; `client_id` names the message it refers to (0 if none).
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// The client's message id it answers, or 0.
        client_id: u64,
        /// Human-readable detail.
        text: String,
    },
    /// The answer to Ping.
    Pong {
        /// The Ping's nonce.
        nonce: u64,
    },
    /// Someone offers this client a file.
    FileOffered {
        /// The sender's transfer id.
        transfer: u64,
        /// The sender.
        from: String,
        /// The user (this client) or the room it was offered to.
        to: Target,
        /// The file's name, as the sender gave it (sanitise before use).
        name: String,
        /// Its announced size.
        size: u64,
    },
    /// A receiver answered this client's offer.
    FileAnswered {
        /// The transfer id.
        transfer: u64,
        /// The receiver.
        by: String,
        /// Whether it accepted.
        accept: bool,
    },
    /// Data of a transfer this client accepted.
    FileData {
        /// The transfer id.
        transfer: u64,
        /// The sender.
        from: String,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The sender finished; compare the hash with the data received.
    FileDone {
        /// The transfer id.
        transfer: u64,
        /// The sender.
        from: String,
        /// SHA-256 of the whole file, as the sender computed it.
        sha256: [u8; 32],
        /// The sender's signature over the offer and the hash, if it signed.
        signed: Option<FileSigned>,
    },
    /// The other side, or the server, stopped a transfer.
    FileCancelled {
        /// The transfer id.
        transfer: u64,
        /// Who sends the file: with `transfer`, names the transfer without
        /// ambiguity (this client's own name for a transfer it sends).
        sender: String,
        /// The sender (to receivers) or the receiver (to the sender) that
        /// stopped it; the file's sender's own name if the server did.
        by: String,
        /// Why.
        reason: String,
    },
    /// The identity key a user proved to the server (answer to Whois).
    Identity {
        /// The user.
        name: String,
        /// Signature algorithm, 0 if the user has no identity key.
        algorithm: u16,
        /// The key (DER SPKI), empty if none.
        key: Vec<u8>,
    },
    /// A delivery receipt: `by`'s client acknowledged this client's
    /// message `id` (only after Receipts was enabled when it was sent).
    Delivered {
        /// The server id of the message (as in its Ack).
        id: u64,
        /// The recipient.
        by: String,
    },
    /// This client's message `id` to `to` expired on the server unread
    /// (its time to live ran out); stored, like a message, in this
    /// client's queue.
    Expired {
        /// The server id of the message (as in its Ack).
        id: u64,
        /// The recipient that did not get it.
        to: String,
        /// Its position in this client's stored queue (to acknowledge).
        seq: u64,
    },
    /// A receiver's progress (flow control for the sender).
    FileAcked {
        /// The transfer id.
        transfer: u64,
        /// The receiver.
        by: String,
        /// Bytes it has stored.
        received: u64,
    },
    /// A delivery-service message of end-to-end conversations (0x93 to
    /// 0x99, PROTOCOL.md §13.11).
    Group(GroupEvent),
    /// A blob message of end-to-end files (0x9a and 0x9b, PROTOCOL.md
    /// §13.12).
    Blob(BlobEvent),
}

fn put_name(w: &mut Writer, s: &str) -> Result<(), Error> {
    w.vec8(s.as_bytes(), MAX_NAME)
}

fn put_text(w: &mut Writer, s: &str) -> Result<(), Error> {
    let len =
        u32::try_from(s.len()).ok().filter(|&l| (l as usize) < MAX_MESSAGE).ok_or(Error::ApiMisuse("text too long"))?;
    w.bytes(&len.to_be_bytes());
    w.bytes(s.as_bytes());
    Ok(())
}

/// File data: a u16 length (at most [`MAX_CHUNK`]) and the bytes.
fn put_data(w: &mut Writer, data: &[u8]) -> Result<(), Error> {
    w.vec16(data, MAX_CHUNK)
}

fn get_data(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.vec16(MAX_CHUNK)?.to_vec())
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::IllegalValue),
    }
}

fn put_u64(w: &mut Writer, v: u64) {
    w.bytes(&v.to_be_bytes());
}

fn put_target(w: &mut Writer, t: &Target) -> Result<(), Error> {
    match t {
        Target::Room(r) => {
            w.u8(0);
            put_name(w, r)
        }
        Target::User(u) => {
            w.u8(1);
            put_name(w, u)
        }
    }
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::IllegalValue)
}

fn get_name(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    utf8(r.vec8(MAX_NAME)?)
}

fn get_text(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let len = u32::from_be_bytes(r.array()?) as usize;
    if len >= MAX_MESSAGE {
        return Err(DecodeError::FieldTooLong);
    }
    utf8(r.take(len)?)
}

fn get_u64(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(r.array()?))
}

fn get_target(r: &mut Reader<'_>) -> Result<Target, DecodeError> {
    match r.u8()? {
        0 => Ok(Target::Room(get_name(r)?)),
        1 => Ok(Target::User(get_name(r)?)),
        _ => Err(DecodeError::IllegalValue),
    }
}

/// Prefixes `body` (type byte first) with its four-byte length.
fn frame(body: Writer) -> Result<Vec<u8>, Error> {
    let body = body.into_vec();
    if body.len() > MAX_MESSAGE {
        return Err(Error::ApiMisuse("message too long"));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).map_err(|_| Error::ApiMisuse("message too long"))?.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

impl ClientMessage {
    /// Encodes the message with its length prefix.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        match self {
            ClientMessage::Hello { name } => {
                w.u8(0x01);
                put_name(&mut w, name)?;
            }
            ClientMessage::Join { room } => {
                w.u8(0x02);
                put_name(&mut w, room)?;
            }
            ClientMessage::Leave { room } => {
                w.u8(0x03);
                put_name(&mut w, room)?;
            }
            ClientMessage::Send { id, to, text, signed } => {
                w.u8(0x04);
                put_u64(&mut w, *id);
                put_target(&mut w, to)?;
                put_text(&mut w, text)?;
                match signed {
                    None => w.u8(0),
                    Some(sig) => {
                        w.u8(1);
                        put_u64(&mut w, sig.sent_at_ms);
                        w.vec16(&sig.signature, MAX_SIGNATURE_LEN)?;
                    }
                }
            }
            ClientMessage::Whois { name } => {
                w.u8(0x0e);
                put_name(&mut w, name)?;
            }
            ClientMessage::Who { room } => {
                w.u8(0x05);
                put_name(&mut w, room)?;
            }
            ClientMessage::Ping { nonce } => {
                w.u8(0x06);
                put_u64(&mut w, *nonce);
            }
            ClientMessage::Goodbye => w.u8(0x07),
            ClientMessage::FileOffer { transfer, to, name, size } => {
                w.u8(0x08);
                put_u64(&mut w, *transfer);
                put_target(&mut w, to)?;
                w.vec8(name.as_bytes(), MAX_FILE_NAME)?;
                put_u64(&mut w, *size);
            }
            ClientMessage::FileAnswer { transfer, sender, accept } => {
                w.u8(0x09);
                put_u64(&mut w, *transfer);
                put_name(&mut w, sender)?;
                w.u8(u8::from(*accept));
            }
            ClientMessage::FileChunk { transfer, data } => {
                w.u8(0x0a);
                put_u64(&mut w, *transfer);
                put_data(&mut w, data)?;
            }
            ClientMessage::FileEnd { transfer, sha256, signature } => {
                w.u8(0x0b);
                put_u64(&mut w, *transfer);
                w.bytes(sha256);
                match signature {
                    None => w.u8(0),
                    Some(sig) => {
                        w.u8(1);
                        w.vec16(sig, MAX_SIGNATURE_LEN)?;
                    }
                }
            }
            ClientMessage::FileCancel { transfer, sender, reason } => {
                w.u8(0x0c);
                put_u64(&mut w, *transfer);
                put_name(&mut w, sender)?;
                put_text(&mut w, reason)?;
            }
            ClientMessage::Received { upto } => {
                w.u8(0x0f);
                put_u64(&mut w, *upto);
            }
            ClientMessage::Resume { after } => {
                w.u8(0x11);
                put_u64(&mut w, *after);
            }
            ClientMessage::Receipts { enabled } => {
                w.u8(0x10);
                w.u8(u8::from(*enabled));
            }
            ClientMessage::FileAck { transfer, sender, received } => {
                w.u8(0x0d);
                put_u64(&mut w, *transfer);
                put_name(&mut w, sender)?;
                put_u64(&mut w, *received);
            }
            ClientMessage::Group(g) => g.encode_into(&mut w)?,
            ClientMessage::Blob(b) => b.encode_into(&mut w)?,
        }
        frame(w)
    }

    /// Decodes one message (type byte and body, without the length prefix).
    pub fn decode(msg: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg);
        let m = match r.u8()? {
            0x01 => ClientMessage::Hello { name: get_name(&mut r)? },
            0x02 => ClientMessage::Join { room: get_name(&mut r)? },
            0x03 => ClientMessage::Leave { room: get_name(&mut r)? },
            0x04 => ClientMessage::Send {
                id: get_u64(&mut r)?,
                to: get_target(&mut r)?,
                text: get_text(&mut r)?,
                signed: match r.u8()? {
                    0 => None,
                    1 => Some(SendSignature {
                        sent_at_ms: get_u64(&mut r)?,
                        signature: r.vec16(MAX_SIGNATURE_LEN)?.to_vec(),
                    }),
                    _ => return Err(DecodeError::IllegalValue),
                },
            },
            0x0e => ClientMessage::Whois { name: get_name(&mut r)? },
            0x05 => ClientMessage::Who { room: get_name(&mut r)? },
            0x06 => ClientMessage::Ping { nonce: get_u64(&mut r)? },
            0x07 => ClientMessage::Goodbye,
            0x08 => ClientMessage::FileOffer {
                transfer: get_u64(&mut r)?,
                to: get_target(&mut r)?,
                name: utf8(r.vec8(MAX_FILE_NAME)?)?,
                size: get_u64(&mut r)?,
            },
            0x09 => ClientMessage::FileAnswer {
                transfer: get_u64(&mut r)?,
                sender: get_name(&mut r)?,
                accept: get_bool(&mut r)?,
            },
            0x0a => ClientMessage::FileChunk { transfer: get_u64(&mut r)?, data: get_data(&mut r)? },
            0x0b => ClientMessage::FileEnd {
                transfer: get_u64(&mut r)?,
                sha256: r.array()?,
                signature: match r.u8()? {
                    0 => None,
                    1 => Some(r.vec16(MAX_SIGNATURE_LEN)?.to_vec()),
                    _ => return Err(DecodeError::IllegalValue),
                },
            },
            0x0c => ClientMessage::FileCancel {
                transfer: get_u64(&mut r)?,
                sender: get_name(&mut r)?,
                reason: get_text(&mut r)?,
            },
            0x0f => ClientMessage::Received { upto: get_u64(&mut r)? },
            0x10 => ClientMessage::Receipts { enabled: get_bool(&mut r)? },
            0x11 => ClientMessage::Resume { after: get_u64(&mut r)? },
            0x0d => ClientMessage::FileAck {
                transfer: get_u64(&mut r)?,
                sender: get_name(&mut r)?,
                received: get_u64(&mut r)?,
            },
            t @ 0x12..=0x18 => ClientMessage::Group(GroupRequest::decode_body(t, &mut r)?),
            t @ 0x19..=0x1c => ClientMessage::Blob(BlobRequest::decode_body(t, &mut r)?),
            _ => return Err(DecodeError::UnknownMessageType),
        };
        r.finish()?;
        Ok(m)
    }
}

/// Cuts the application byte stream into messages.
///
/// Like [`crate::frame::Deframer`], it refuses a length over its limit as
/// soon as the four length bytes arrive, and holds at most one message plus
/// the bytes pushed since the last drain.
#[derive(Debug)]
pub struct MessageDecoder {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl MessageDecoder {
    /// A decoder refusing messages longer than `max` (capped at [`MAX_MESSAGE`]).
    #[must_use]
    pub fn new(max: usize) -> Self {
        MessageDecoder { buf: Vec::new(), start: 0, max: max.min(MAX_MESSAGE) }
    }

    /// Appends decrypted application bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet a whole message.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message (type byte and body): `Ok(None)` if more bytes
    /// are needed; [`DecodeError::FieldTooLong`] if the length is over the
    /// limit; [`DecodeError::FrameLength`] for a zero length.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(&[a, b, c, d]) = pending.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len == 0 {
            return Err(DecodeError::FrameLength);
        }
        if len > self.max {
            return Err(DecodeError::FieldTooLong);
        }
        let Some(msg) = pending.get(4..4 + len) else { return Ok(None) };
        let msg = msg.to_vec();
        self.start += 4 + len;
        Ok(Some(msg))
    }
}
