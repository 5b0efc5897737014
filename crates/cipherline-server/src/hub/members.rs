//! Stored room members read through from the store (docs/cluster.md, step
//! 5): nodes sharing a store change `room/<room>` behind each other's
//! backs, so a node re-reads a room's members before it acts on them
//! (a message to the room, a join, a leave, a member list) instead of
//! trusting the copy it loaded at start. One key read each; once the bus
//! announces member changes (`cipherline.members.<hex>`), the copy can be
//! kept and invalidated instead.

use super::Hub;

impl Hub {
    /// With a shared store (`RunOptions::shared_store`), replaces this node's copy of `room`'s (folded) stored members with
    /// what the store holds now, and learns the name bindings of members
    /// it did not know (they were bound through another node). A store
    /// that fails leaves the copy as it was: the caller's own store call
    /// reports the failure.
    pub(crate) async fn refresh_members(&self, room: &str) {
        let Some(mail) = self.mail.as_ref().filter(|m| m.shared) else { return };
        let members = match mail.room_members(room).await {
            Ok(members) => members,
            Err((_, text)) => {
                tracing::warn!(%room, "stored members not re-read: {text}");
                return;
            }
        };
        for member in &members {
            // Every stored member has a binding; a look-up reads the store
            // only for a name this node does not know yet.
            self.look_up(member).await;
        }
        let mut state = self.lock();
        if members.is_empty() {
            state.stored_members.remove(room);
        } else {
            state.stored_members.insert(room.to_owned(), members);
        }
    }
}
