//! The hub's side of live fan-out across nodes (docs/cluster.md, step 4;
//! the bus side is `crate::cluster::fanout`): where a relayed frame goes
//! on this node, under the same queue bounds as local delivery.

use std::collections::BTreeMap;

use cipherline_proto::app::{MAX_MEMBERS, fold_name};

use super::{Hub, State};

/// Whom a message also goes to on other nodes.
pub(crate) enum Remote {
    /// A live-only user (folded name) connected to another node.
    User(String),
    /// An open room's (folded) live members on other nodes.
    Room(String),
}

impl Hub {
    /// How many connections the user that `name` folds to has here.
    pub(crate) fn session_count_folded(&self, name: &str) -> usize {
        let state = self.lock();
        Self::resolve(&state, name).and_then(|user| state.users.get(&user)).map_or(0, |p| p.sessions.len())
    }

    /// Queues a checked frame from another node for every session of the
    /// user `folded` names here.
    pub(crate) fn deliver_relayed_to_user(&self, folded: &str, frame: &[u8]) {
        let state = self.lock();
        let Some(user) = Self::resolve(&state, folded) else { return };
        let bytes = state.backlog.share(frame.to_vec());
        state.deliver(&user, &bytes);
    }

    /// Queues a checked room message from another node for this node's
    /// live-only members in `room`, each once, never its sender's
    /// sessions (`sender` folded) nor a stored member's (the sending node
    /// stored it for them).
    pub(crate) fn deliver_relayed_to_room(&self, room: &str, sender: &str, frame: &[u8]) {
        let state = self.lock();
        let Some(members) = state.rooms.get(room) else { return };
        let mut bytes = None;
        for member in members {
            let folded = fold_name(member);
            if folded == sender || state.stored_member(room, member) || self.has_inbox(member) {
                continue;
            }
            let bytes = bytes.get_or_insert_with(|| state.backlog.share(frame.to_vec()));
            state.deliver_in_room(member, room, bytes);
        }
    }

    /// With other nodes: this node's live members of `room` changed. It
    /// subscribes to the room's messages from other nodes while it has
    /// one, and its roster entry (for other nodes' member lists) follows.
    pub(super) fn room_changed(&self, state: &State, room: &str) {
        let Some(cluster) = &self.cluster else { return };
        let names: Vec<String> = state.rooms.get(room).into_iter().flatten().cloned().collect();
        cluster.follow_room(room, !names.is_empty());
        cluster.roster(room, names);
    }

    /// `names` (this node's members of `room`, from [`Hub::members`]) with
    /// the room's live members on other nodes, each once, sorted. A
    /// store failure leaves this node's list alone.
    pub(crate) async fn members_everywhere(&self, room: &str, names: Vec<String>) -> Vec<String> {
        let Some(cluster) = &self.cluster else { return names };
        let elsewhere = match cluster.members_elsewhere(room).await {
            Ok(elsewhere) => elsewhere,
            Err((_, why)) => {
                tracing::warn!(%room, "members on other nodes not read: {why}");
                return names;
            }
        };
        let mut all: BTreeMap<String, String> = names.into_iter().map(|n| (fold_name(&n), n)).collect();
        for name in elsewhere {
            all.entry(fold_name(&name)).or_insert(name);
        }
        let mut all: Vec<String> = all.into_values().collect();
        all.sort();
        all.truncate(MAX_MEMBERS);
        all
    }
}

impl Hub {
    /// `text` for a file offer that found no recipient here; with other
    /// nodes it says why: v1 transfers run session to session on one node
    /// (docs/cluster.md, step 7), so recipients elsewhere cannot get one.
    pub(super) fn not_here(&self, text: &str) -> String {
        if self.cluster.is_some() {
            format!(
                "{text} on this node (file offers do not cross this server's nodes: use an end-to-end file or the \
                 same node)"
            )
        } else {
            text.to_owned()
        }
    }
}
