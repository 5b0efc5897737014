//! A group's record in the store's key-value map (`group/<hex group id>`):
//! what the relay knows of an end-to-end conversation. Our own file, so
//! parsed strictly: a damaged record is refused, never guessed at.
//!
//! Layout (big-endian): `uint8 version` (1), `uint8 kind` (0 dm, 1
//! invite, 2 public), `room<0..255>` (vec8, empty for a dm), `uint64
//! epoch`, `uint16 n` admins then each `name<1..255>` (vec8), `uint16 n`
//! members likewise, `uint64 group_info_epoch`, `uint32 len` and the
//! latest GroupInfo (`len` 0: none). Names are folded, valid, sorted and
//! unique.

use std::collections::BTreeSet;

use cipherline_proto::app::{MAX_MEMBERS, MAX_MESSAGE, MAX_NAME, RoomKind, fold_name, valid_name};
use cipherline_proto::codec::{Reader, Writer};

const VERSION: u8 = 1;

/// What kind of conversation a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupKind {
    /// A direct conversation of two users (no room).
    Direct,
    /// An end-to-end room whose admins invite.
    Invite,
    /// An end-to-end room anyone may join by external commit.
    Public,
}

impl GroupKind {
    /// The room kind on the wire (a direct conversation is no room).
    pub(crate) fn room_kind(self) -> Option<RoomKind> {
        match self {
            GroupKind::Direct => None,
            GroupKind::Invite => Some(RoomKind::Invite),
            GroupKind::Public => Some(RoomKind::Public),
        }
    }
}

/// One group as the relay keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) kind: GroupKind,
    /// The folded room name; `None` for a direct conversation.
    pub(crate) room: Option<String>,
    /// The epoch the next accepted commit must be built in.
    pub(crate) epoch: u64,
    /// Who may invite (in an invite-only room) and remove others.
    pub(crate) admins: BTreeSet<String>,
    /// The members, folded.
    pub(crate) members: BTreeSet<String>,
    /// The latest GroupInfo published with a commit, and its epoch.
    pub(crate) group_info: Option<(u64, Vec<u8>)>,
}

impl Record {
    /// Whether `name` (any spelling) is a member.
    pub(crate) fn is_member(&self, name: &str) -> bool {
        self.members.contains(&fold_name(name))
    }

    /// Whether `name` (any spelling) is an admin.
    pub(crate) fn is_admin(&self, name: &str) -> bool {
        self.admins.contains(&fold_name(name))
    }

    /// The stored form.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, &'static str> {
        let mut w = Writer::new();
        w.u8(VERSION);
        w.u8(match self.kind {
            GroupKind::Direct => 0,
            GroupKind::Invite => 1,
            GroupKind::Public => 2,
        });
        w.vec8(self.room.as_deref().unwrap_or_default().as_bytes(), MAX_NAME).map_err(|_| "room name too long")?;
        w.bytes(&self.epoch.to_be_bytes());
        for names in [&self.admins, &self.members] {
            let n =
                u16::try_from(names.len()).ok().filter(|&n| usize::from(n) <= MAX_MEMBERS).ok_or("too many names")?;
            w.u16(n);
            for name in names {
                w.vec8(name.as_bytes(), MAX_NAME).map_err(|_| "name too long")?;
            }
        }
        let (gi_epoch, gi) = self.group_info.as_ref().map_or((0, &[][..]), |(e, b)| (*e, b.as_slice()));
        w.bytes(&gi_epoch.to_be_bytes());
        let len = u32::try_from(gi.len()).ok().filter(|&l| (l as usize) < MAX_MESSAGE).ok_or("GroupInfo too long")?;
        w.bytes(&len.to_be_bytes());
        w.bytes(gi);
        Ok(w.into_vec())
    }

    /// Parses a stored record strictly.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let bad = |_| "truncated or malformed";
        let mut r = Reader::new(bytes);
        if r.u8().map_err(bad)? != VERSION {
            return Err("unknown version");
        }
        let kind = match r.u8().map_err(bad)? {
            0 => GroupKind::Direct,
            1 => GroupKind::Invite,
            2 => GroupKind::Public,
            _ => return Err("unknown kind"),
        };
        let room = std::str::from_utf8(r.vec8(MAX_NAME).map_err(bad)?).map_err(|_| "room not UTF-8")?;
        let room = match (kind, room.is_empty()) {
            (GroupKind::Direct, true) => None,
            (GroupKind::Direct, false) | (_, true) => return Err("room does not match kind"),
            (_, false) if valid_name(room, MAX_NAME) && fold_name(room) == room => Some(room.to_owned()),
            _ => return Err("invalid room name"),
        };
        let epoch = u64::from_be_bytes(r.array().map_err(bad)?);
        let admins = names(&mut r)?;
        let members = names(&mut r)?;
        let gi_epoch = u64::from_be_bytes(r.array().map_err(bad)?);
        let len = u32::from_be_bytes(r.array().map_err(bad)?) as usize;
        if len >= MAX_MESSAGE {
            return Err("GroupInfo too long");
        }
        let gi = r.take(len).map_err(bad)?;
        let group_info = (len > 0).then(|| (gi_epoch, gi.to_vec()));
        r.finish().map_err(|_| "trailing bytes")?;
        Ok(Record { kind, room, epoch, admins, members, group_info })
    }
}

/// A list of folded, valid names in strictly ascending order.
fn names(r: &mut Reader<'_>) -> Result<BTreeSet<String>, &'static str> {
    let n = usize::from(r.u16().map_err(|_| "truncated")?);
    if n > MAX_MEMBERS {
        return Err("too many names");
    }
    let mut out = BTreeSet::new();
    let mut last: Option<String> = None;
    for _ in 0..n {
        let name = std::str::from_utf8(r.vec8(MAX_NAME).map_err(|_| "truncated")?).map_err(|_| "name not UTF-8")?;
        if !valid_name(name, MAX_NAME) || fold_name(name) != name || last.as_deref().is_some_and(|l| l >= name) {
            return Err("names not valid, folded, sorted and unique");
        }
        last = Some(name.to_owned());
        out.insert(name.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            kind: GroupKind::Invite,
            room: Some("team".into()),
            epoch: 7,
            admins: ["alice".to_owned()].into(),
            members: ["alice".to_owned(), "bob".to_owned()].into(),
            group_info: Some((7, vec![1, 2, 3])),
        }
    }

    #[test]
    fn records_round_trip_and_are_parsed_strictly() {
        let rec = sample();
        let bytes = rec.encode().unwrap();
        assert_eq!(Record::decode(&bytes).unwrap(), rec);
        let dm = Record { kind: GroupKind::Direct, room: None, admins: BTreeSet::new(), group_info: None, ..rec };
        assert_eq!(Record::decode(&dm.encode().unwrap()).unwrap(), dm);
        // Every truncation and any trailing byte is refused.
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Record::decode(&long).is_err());
        // A dm with a room, a room without one, an unfolded name.
        let mut bad = sample();
        bad.kind = GroupKind::Direct;
        assert!(Record::decode(&bad.encode().unwrap()).is_err());
        let mut bad = sample();
        bad.room = None;
        assert!(Record::decode(&bad.encode().unwrap()).is_err());
        let mut bad = sample();
        bad.members.insert("Carol".into());
        assert!(Record::decode(&bad.encode().unwrap()).is_err());
        let mut bad = sample();
        bad.members.insert("bad name".into());
        assert!(Record::decode(&bad.encode().unwrap()).is_err());
    }
}
