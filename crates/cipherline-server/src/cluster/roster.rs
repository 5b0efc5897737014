//! Who is in an open room on other nodes (docs/cluster.md, step 4), for
//! member lists (`Who`). Each node keeps `roster/<folded room>/<node>` in
//! the store: the names of its live members of the room (as they spell
//! them), one per line, written whenever they change and deleted with the
//! node's last member. A reader skips its own node's entry and those of
//! dead nodes (deleting them, as for presence and floors).
//!
//! Another node's entry is parsed strictly: bounded in size, UTF-8, at
//! most [`MAX_MEMBERS`] names of at most [`MAX_NAME`] bytes each, none
//! empty; a damaged entry adds nothing.

use std::sync::Arc;

use cipherline_proto::app::{MAX_MEMBERS, MAX_NAME};
use cipherline_store::Store as _;

use super::{Cluster, locked};
use crate::hub::Refusal;
use crate::mail::bounded;

/// The largest roster entry read: every name at its longest, a newline each.
const MAX_ROSTER: usize = MAX_MEMBERS * (MAX_NAME + 1);

fn roster_prefix(room: &str) -> String {
    format!("roster/{room}/")
}

/// The names of a roster entry, or none if it is damaged.
fn parse(value: &[u8]) -> Vec<String> {
    if value.len() > MAX_ROSTER {
        return Vec::new();
    }
    let Ok(text) = std::str::from_utf8(value) else { return Vec::new() };
    let names: Vec<&str> = text.split('\n').collect();
    if names.len() > MAX_MEMBERS || names.iter().any(|n| n.is_empty() || n.len() > MAX_NAME) {
        return Vec::new();
    }
    names.into_iter().map(str::to_owned).collect()
}

impl Cluster {
    /// This node's live members of `room` are now `names` (none: it has
    /// none); the store entry follows on its own task.
    pub(crate) fn roster(self: &Arc<Self>, room: &str, names: Vec<String>) {
        {
            let mut rosters = locked(&self.rosters);
            if names.is_empty() {
                rosters.remove(room);
            } else {
                rosters.insert(room.to_owned(), names);
            }
        }
        let (cluster, room) = (self.clone(), room.to_owned());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err((_, why)) = cluster.sync_roster(&room).await {
                    tracing::warn!(node = %cluster.node, "could not update a room roster: {why}");
                }
            });
        }
    }

    /// Makes this node's roster entry of `room` say what `rosters` says
    /// now (under the room's order lock, so writes never overtake).
    async fn sync_roster(&self, room: &str) -> Result<(), Refusal> {
        let _order = self.ordered(&roster_prefix(room)).await;
        let names = locked(&self.rosters).get(room).map(|n| n.join("\n"));
        let key = format!("{}{}", roster_prefix(room), self.node);
        match names {
            Some(names) => bounded(self.store.put(&key, names.into_bytes())).await.map(drop),
            None => bounded(self.store.delete(&key)).await.map(drop),
        }
    }

    /// The live members of `room` on other live nodes.
    pub(crate) async fn members_elsewhere(&self, room: &str) -> Result<Vec<String>, Refusal> {
        let mut names = Vec::new();
        self.scan_elsewhere(&roster_prefix(room), |value| {
            names.extend(parse(value));
            names.len() < MAX_MEMBERS
        })
        .await?;
        names.truncate(MAX_MEMBERS);
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rosters_are_parsed_strictly() {
        assert_eq!(parse(b"ann\nBen"), ["ann", "Ben"]);
        assert!(parse(b"ann\n\nben").is_empty(), "an empty name damages the entry");
        assert!(parse(b"").is_empty());
        assert!(parse(&[0xff, b'a']).is_empty(), "not UTF-8");
        assert!(parse("x".repeat(MAX_NAME + 1).as_bytes()).is_empty(), "a name too long");
        assert!(parse(&vec![b'a'; MAX_ROSTER + 1]).is_empty(), "too large to read");
    }
}
