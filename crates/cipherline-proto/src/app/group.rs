//! The delivery-service messages of end-to-end conversations (PROTOCOL.md
//! §13.11): key packages, room creation, commit sequencing, group messages.
//!
//! Everything MLS in them (key packages, commits, Welcomes, GroupInfos,
//! application messages) is RFC 9420 `MLSMessage` bytes the relay does not
//! parse, except that it reads the credential of an uploaded KeyPackage to
//! check it is the uploader's.

use super::{get_bool, get_name, get_u64, put_name, put_u64};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Error};

/// Longest group id (an MLS `group_id`; the reference client uses 16
/// random bytes).
pub const MAX_GROUP_ID: usize = 255;
/// Longest KeyPackage (an `MLSMessage`); an X-Wing one is about 1.4 KB.
pub const MAX_KEY_PACKAGE: usize = 65_535;
/// Most KeyPackages in one upload.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 16;
/// Most names in one commit's `invited` or `removed` list.
pub const MAX_COMMIT_NAMES: usize = 1024;

/// What kind of room a room is (PROTOCOL.md §13.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// Server-readable, anyone may join (v1 rooms, the lobby): not end to
    /// end encrypted.
    Open,
    /// End to end encrypted; members are invited by its admins.
    Invite,
    /// End to end encrypted; anyone may join by external commit.
    Public,
}

impl RoomKind {
    fn to_u8(self) -> u8 {
        match self {
            RoomKind::Open => 0,
            RoomKind::Invite => 1,
            RoomKind::Public => 2,
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(RoomKind::Open),
            1 => Ok(RoomKind::Invite),
            2 => Ok(RoomKind::Public),
            _ => Err(DecodeError::IllegalValue),
        }
    }

    /// Whether the room's messages are end to end encrypted.
    #[must_use]
    pub fn is_e2e(self) -> bool {
        !matches!(self, RoomKind::Open)
    }
}

/// What an MLS payload delivered in a [`GroupDelivery`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// A Welcome: the recipient was added to the group.
    Welcome,
    /// A commit the relay accepted for the group's epoch.
    Commit,
    /// An application message (or anything else a member sent).
    Application,
}

impl PayloadKind {
    fn to_u8(self) -> u8 {
        match self {
            PayloadKind::Welcome => 1,
            PayloadKind::Commit => 2,
            PayloadKind::Application => 3,
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(PayloadKind::Welcome),
            2 => Ok(PayloadKind::Commit),
            3 => Ok(PayloadKind::Application),
            _ => Err(DecodeError::IllegalValue),
        }
    }
}

/// A commit submitted for sequencing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// Chosen by the client; pairs the request with its answer.
    pub request: u64,
    /// The MLS group.
    pub group_id: Vec<u8>,
    /// The epoch the commit was built in (the relay accepts one per epoch).
    pub epoch: u64,
    /// An external commit: the sender joins a public room by it.
    pub external: bool,
    /// The commit (`MLSMessage`).
    pub commit: Vec<u8>,
    /// The Welcome for the members it adds (`MLSMessage`), if any.
    pub welcome: Option<Vec<u8>>,
    /// The GroupInfo of the new epoch (`MLSMessage`, with the ratchet
    /// tree), for rooms that others may join by external commit.
    pub group_info: Option<Vec<u8>>,
    /// Who the commit adds, by name (the relay routes the Welcome to them).
    pub invited: Vec<String>,
    /// Who it removes, by name.
    pub removed: Vec<String>,
}

/// A delivery-service request from a client (types 0x12 to 0x18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    /// Upload KeyPackages of the sender's own identity (0x12).
    KeyPackages {
        /// The package is the last-resort one (kept, given out again).
        last_resort: bool,
        /// The packages (`MLSMessage`), 1 to 16.
        packages: Vec<Vec<u8>>,
    },
    /// Claim one KeyPackage of `user` (0x13).
    Claim {
        /// Whose.
        user: String,
    },
    /// Create a room of a kind (0x14).
    CreateRoom {
        /// The room.
        room: String,
        /// Its kind.
        kind: RoomKind,
        /// The MLS group of an end-to-end room (empty for an open one).
        group_id: Vec<u8>,
    },
    /// Submit a commit (0x15).
    Commit(CommitRequest),
    /// Send an MLS message to the other members of a group (0x16).
    Send {
        /// Chosen by the client; answered by Ack (or Error) with it.
        id: u64,
        /// The group.
        group_id: Vec<u8>,
        /// The `MLSMessage`.
        payload: Vec<u8>,
    },
    /// Ask what a room is (0x17).
    RoomInfo {
        /// The room.
        room: String,
    },
    /// Ask for a group's latest GroupInfo (0x18).
    GroupInfo {
        /// The group.
        group_id: Vec<u8>,
    },
}

/// An MLS message the relay delivers (stored like a Message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDelivery {
    /// Server id, as for Message.
    pub id: u64,
    /// Server time when it accepted it, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Who sent it, as the relay authenticated it (the MLS sender inside
    /// is what a client believes).
    pub from: String,
    /// The group.
    pub group_id: Vec<u8>,
    /// The room the group is, or `None` for a direct conversation.
    pub room: Option<String>,
    /// What the payload is.
    pub kind: PayloadKind,
    /// For a commit, the epoch it was accepted in; else 0.
    pub epoch: u64,
    /// The `MLSMessage`.
    pub payload: Vec<u8>,
    /// Its position in this recipient's stored queue (to acknowledge).
    pub seq: u64,
}

/// A delivery-service message from the server (types 0x93 to 0x99).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// After KeyPackages: how many one-time packages the server holds for
    /// this user, and whether it holds a last-resort one (0x93).
    KeyPackageCount {
        /// One-time packages held.
        available: u32,
        /// A last-resort package is held.
        last_resort: bool,
    },
    /// A claimed KeyPackage (0x94).
    KeyPackage {
        /// Whose.
        user: String,
        /// The package (`MLSMessage`).
        key_package: Vec<u8>,
    },
    /// The commit was accepted; the group is now at `epoch` (0x95).
    Committed {
        /// The request id.
        request: u64,
        /// The group.
        group_id: Vec<u8>,
        /// The new epoch.
        epoch: u64,
    },
    /// The commit lost: the group is at `epoch` already; the commits that
    /// brought it there are in the client's queue (0x96).
    Stale {
        /// The request id.
        request: u64,
        /// The group.
        group_id: Vec<u8>,
        /// The group's current epoch at the relay.
        epoch: u64,
    },
    /// What a room is (0x97).
    RoomInfo {
        /// The room.
        room: String,
        /// Its kind, `None` if there is no such room.
        kind: Option<RoomKind>,
        /// Its MLS group (empty for an open room or none).
        group_id: Vec<u8>,
        /// Its epoch at the relay (0 for an open room).
        epoch: u64,
        /// Its admins (who may invite and remove in an invite-only room).
        admins: Vec<String>,
    },
    /// A group's latest GroupInfo (0x98).
    GroupInfo {
        /// The group.
        group_id: Vec<u8>,
        /// The epoch it is for.
        epoch: u64,
        /// The `MLSMessage`.
        group_info: Vec<u8>,
    },
    /// An MLS message for this client (0x99).
    Message(GroupDelivery),
}

fn put_opaque(w: &mut Writer, b: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(b.len())
        .ok()
        .filter(|&l| (l as usize) < super::MAX_MESSAGE)
        .ok_or(Error::ApiMisuse("MLS message too long"))?;
    w.bytes(&len.to_be_bytes());
    w.bytes(b);
    Ok(())
}

fn get_opaque(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let len = u32::from_be_bytes(r.array()?) as usize;
    if len >= super::MAX_MESSAGE {
        return Err(DecodeError::FieldTooLong);
    }
    Ok(r.take(len)?.to_vec())
}

/// A non-empty opaque field, or `None` for length 0.
fn get_optional(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let v = get_opaque(r)?;
    Ok(if v.is_empty() { None } else { Some(v) })
}

fn put_group_id(w: &mut Writer, id: &[u8]) -> Result<(), Error> {
    w.vec8(id, MAX_GROUP_ID)
}

fn get_group_id(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.vec8(MAX_GROUP_ID)?.to_vec())
}

fn put_names(w: &mut Writer, names: &[String]) -> Result<(), Error> {
    let n = u16::try_from(names.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_COMMIT_NAMES)
        .ok_or(Error::ApiMisuse("too many names"))?;
    w.u16(n);
    names.iter().try_for_each(|name| put_name(w, name))
}

fn get_names(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = usize::from(r.u16()?);
    if n > MAX_COMMIT_NAMES {
        return Err(DecodeError::FieldTooLong);
    }
    // Each name is at least one byte on the wire, so `n` is also bounded by
    // what is left of the message.
    let mut names = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        names.push(get_name(r)?);
    }
    Ok(names)
}

impl GroupRequest {
    /// Writes the type byte and body.
    pub(super) fn encode_into(&self, w: &mut Writer) -> Result<(), Error> {
        match self {
            GroupRequest::KeyPackages { last_resort, packages } => {
                w.u8(0x12);
                w.u8(u8::from(*last_resort));
                let n = u8::try_from(packages.len())
                    .ok()
                    .filter(|&n| n > 0 && usize::from(n) <= MAX_KEY_PACKAGES_PER_UPLOAD)
                    .ok_or(Error::ApiMisuse("1 to 16 key packages per upload"))?;
                w.u8(n);
                packages.iter().try_for_each(|p| w.vec16(p, MAX_KEY_PACKAGE))?;
            }
            GroupRequest::Claim { user } => {
                w.u8(0x13);
                put_name(w, user)?;
            }
            GroupRequest::CreateRoom { room, kind, group_id } => {
                w.u8(0x14);
                put_name(w, room)?;
                w.u8(kind.to_u8());
                put_group_id(w, group_id)?;
            }
            GroupRequest::Commit(c) => {
                w.u8(0x15);
                put_u64(w, c.request);
                put_group_id(w, &c.group_id)?;
                put_u64(w, c.epoch);
                w.u8(u8::from(c.external));
                put_opaque(w, &c.commit)?;
                put_opaque(w, c.welcome.as_deref().unwrap_or_default())?;
                put_opaque(w, c.group_info.as_deref().unwrap_or_default())?;
                put_names(w, &c.invited)?;
                put_names(w, &c.removed)?;
            }
            GroupRequest::Send { id, group_id, payload } => {
                w.u8(0x16);
                put_u64(w, *id);
                put_group_id(w, group_id)?;
                put_opaque(w, payload)?;
            }
            GroupRequest::RoomInfo { room } => {
                w.u8(0x17);
                put_name(w, room)?;
            }
            GroupRequest::GroupInfo { group_id } => {
                w.u8(0x18);
                put_group_id(w, group_id)?;
            }
        }
        Ok(())
    }

    /// Reads the body of a message of type `t` (0x12 to 0x18).
    pub(super) fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match t {
            0x12 => {
                let last_resort = get_bool(r)?;
                let n = usize::from(r.u8()?);
                if n == 0 || n > MAX_KEY_PACKAGES_PER_UPLOAD {
                    return Err(DecodeError::IllegalValue);
                }
                let mut packages = Vec::with_capacity(n);
                for _ in 0..n {
                    packages.push(r.vec16(MAX_KEY_PACKAGE)?.to_vec());
                }
                GroupRequest::KeyPackages { last_resort, packages }
            }
            0x13 => GroupRequest::Claim { user: get_name(r)? },
            0x14 => GroupRequest::CreateRoom {
                room: get_name(r)?,
                kind: RoomKind::from_u8(r.u8()?)?,
                group_id: get_group_id(r)?,
            },
            0x15 => GroupRequest::Commit(CommitRequest {
                request: get_u64(r)?,
                group_id: get_group_id(r)?,
                epoch: get_u64(r)?,
                external: get_bool(r)?,
                commit: get_opaque(r)?,
                welcome: get_optional(r)?,
                group_info: get_optional(r)?,
                invited: get_names(r)?,
                removed: get_names(r)?,
            }),
            0x16 => GroupRequest::Send { id: get_u64(r)?, group_id: get_group_id(r)?, payload: get_opaque(r)? },
            0x17 => GroupRequest::RoomInfo { room: get_name(r)? },
            0x18 => GroupRequest::GroupInfo { group_id: get_group_id(r)? },
            _ => return Err(DecodeError::UnknownMessageType),
        })
    }
}

impl GroupEvent {
    /// Writes the type byte and body.
    pub(super) fn encode_into(&self, w: &mut Writer) -> Result<(), Error> {
        match self {
            GroupEvent::KeyPackageCount { available, last_resort } => {
                w.u8(0x93);
                w.bytes(&available.to_be_bytes());
                w.u8(u8::from(*last_resort));
            }
            GroupEvent::KeyPackage { user, key_package } => {
                w.u8(0x94);
                put_name(w, user)?;
                w.vec16(key_package, MAX_KEY_PACKAGE)?;
            }
            GroupEvent::Committed { request, group_id, epoch } => {
                w.u8(0x95);
                put_u64(w, *request);
                put_group_id(w, group_id)?;
                put_u64(w, *epoch);
            }
            GroupEvent::Stale { request, group_id, epoch } => {
                w.u8(0x96);
                put_u64(w, *request);
                put_group_id(w, group_id)?;
                put_u64(w, *epoch);
            }
            GroupEvent::RoomInfo { room, kind, group_id, epoch, admins } => {
                w.u8(0x97);
                put_name(w, room)?;
                w.u8(kind.map_or(0xff, RoomKind::to_u8));
                put_group_id(w, group_id)?;
                put_u64(w, *epoch);
                put_names(w, admins)?;
            }
            GroupEvent::GroupInfo { group_id, epoch, group_info } => {
                w.u8(0x98);
                put_group_id(w, group_id)?;
                put_u64(w, *epoch);
                put_opaque(w, group_info)?;
            }
            GroupEvent::Message(d) => {
                w.u8(0x99);
                put_u64(w, d.id);
                put_u64(w, d.timestamp_ms);
                put_name(w, &d.from)?;
                put_group_id(w, &d.group_id)?;
                put_name(w, d.room.as_deref().unwrap_or_default())?;
                w.u8(d.kind.to_u8());
                put_u64(w, d.epoch);
                put_opaque(w, &d.payload)?;
                put_u64(w, d.seq);
            }
        }
        Ok(())
    }

    /// Reads the body of a message of type `t` (0x93 to 0x99).
    pub(super) fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match t {
            0x93 => {
                GroupEvent::KeyPackageCount { available: u32::from_be_bytes(r.array()?), last_resort: get_bool(r)? }
            }
            0x94 => GroupEvent::KeyPackage { user: get_name(r)?, key_package: r.vec16(MAX_KEY_PACKAGE)?.to_vec() },
            0x95 => GroupEvent::Committed { request: get_u64(r)?, group_id: get_group_id(r)?, epoch: get_u64(r)? },
            0x96 => GroupEvent::Stale { request: get_u64(r)?, group_id: get_group_id(r)?, epoch: get_u64(r)? },
            0x97 => GroupEvent::RoomInfo {
                room: get_name(r)?,
                kind: match r.u8()? {
                    0xff => None,
                    k => Some(RoomKind::from_u8(k)?),
                },
                group_id: get_group_id(r)?,
                epoch: get_u64(r)?,
                admins: get_names(r)?,
            },
            0x98 => {
                GroupEvent::GroupInfo { group_id: get_group_id(r)?, epoch: get_u64(r)?, group_info: get_opaque(r)? }
            }
            0x99 => GroupEvent::Message(GroupDelivery {
                id: get_u64(r)?,
                timestamp_ms: get_u64(r)?,
                from: get_name(r)?,
                group_id: get_group_id(r)?,
                room: Some(get_name(r)?).filter(|room| !room.is_empty()),
                kind: PayloadKind::from_u8(r.u8()?)?,
                epoch: get_u64(r)?,
                payload: get_opaque(r)?,
                seq: get_u64(r)?,
            }),
            _ => return Err(DecodeError::UnknownMessageType),
        })
    }
}
