//! Lookups a line front-end needs to word its answers: what is known of
//! a peer's key (the remembered one, a change not trusted yet, whether it
//! was verified), and what a room is (its kind, and whether this user is
//! in it). Neither changes anything.

use super::*;

/// What is known of a peer's identity key, as [`Command::KeyInfo`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The user, as asked.
    pub name: String,
    /// The key remembered for the name (`SHA256:` and hex), if any.
    pub remembered: Option<String>,
    /// Whether the remembered key was confirmed by comparing safety codes.
    pub verified: bool,
    /// A change seen and not trusted yet: `Some(Some(key))` a new key,
    /// `Some(None)` the name has no key now; `None`: no change.
    pub changed: Option<Option<String>>,
    /// This client's own identity key, if it has one (no key: nothing to
    /// verify).
    pub mine: Option<String>,
}

/// What a room is, as [`Command::RoomInfo`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room, as asked.
    pub room: String,
    /// Its kind; `None`: no such room (yet).
    pub kind: Option<RoomKind>,
    /// This user is in the room's end-to-end group.
    pub member: bool,
    /// This user joined it the open way.
    pub joined: bool,
}

impl<C: Connector> Engine<C> {
    /// What is known of `user`'s key (local: no server round trip).
    pub(super) fn key_info(&self, live: &Live, user: &str) -> Reply {
        let folded = fold_name(user);
        Reply::KeyInfo(KeyInfo {
            name: user.to_owned(),
            remembered: live.peers.remembered(user).map(|f| f.to_string()),
            verified: live.peers.is_verified(user),
            changed: self.people.changed_key(&folded).map(|c| c.map(|f| f.to_string())),
            mine: live.client.identity_fingerprint().map(|b| cipherline_keys::Fingerprint::from_bytes(b).to_string()),
        })
    }

    /// What `room` is: asked of the server, with this user's part in it.
    pub(super) async fn room_summary(&mut self, live: &mut Live, room: &str) -> Result<Reply, ClientError> {
        let kind = live.client.room_info(room).await?.kind;
        let member = match &live.e2e {
            Some(e2e) => e2e.room_group(room)?.is_some(),
            None => false,
        };
        Ok(Reply::RoomInfo(RoomSummary {
            room: room.to_owned(),
            kind,
            member,
            joined: self.rooms.contains_key(&fold_name(room)),
        }))
    }
}
