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
    /// For an end-to-end room this user is in: the members of its group
    /// the relay no longer lists in the room (they left it; removing them
    /// keeps what is said next from being encrypted to them).
    pub gone: Vec<String>,
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
        // Paced: a RoomInfo takes a message token (chat asks it on /join,
        // perhaps right after a pasted flood).
        let client = &mut live.client;
        let kind = super::pace::paced(&mut live.pace, async || client.room_info(room).await).await?.kind;
        let member = match &live.e2e {
            Some(e2e) => e2e.room_group(room)?.is_some(),
            None => false,
        };
        let gone = if member { self.gone(live, room).await } else { Vec::new() };
        Ok(Reply::RoomInfo(RoomSummary {
            room: room.to_owned(),
            kind,
            member,
            joined: self.rooms.contains_key(&fold_name(room)),
            gone,
        }))
    }

    /// Best effort: without the relay's list nobody is taken for gone.
    async fn gone(&self, live: &mut Live, room: &str) -> Vec<String> {
        let (Ok(listed), Some(e2e)) = (live.client.who(room).await, &live.e2e) else { return Vec::new() };
        let Ok(members) = e2e.members(room) else { return Vec::new() };
        let listed: Vec<String> = listed.iter().map(|n| fold_name(n)).collect();
        let me = fold_name(&self.name);
        members
            .into_iter()
            .map(|(name, _)| name)
            .filter(|n| fold_name(n) != me && !listed.contains(&fold_name(n)))
            .collect()
    }
}
