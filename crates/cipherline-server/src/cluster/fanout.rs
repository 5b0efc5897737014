//! Live fan-out across nodes (docs/cluster.md, step 4): what a node
//! delivers live (not through a stored queue) to sessions on other nodes.
//!
//! - `<prefix>.user.<hex folded name>`: a direct message to a live-only
//!   user, or a Delivered receipt for a sender. A node subscribes while it
//!   has a session of the name (from the first [`Cluster::claim`] to the
//!   last session's end).
//! - `<prefix>.room.<hex folded room>`: an open-room message. A node
//!   subscribes while it has a live member in the room; it delivers to its
//!   live-only members in the room, never to the sender (by folded name)
//!   and never to stored members, who get the message through their queue
//!   (the sending node stored it and published a wake).
//!
//! Payload: one kind byte ([`USER`] or [`ROOM`]), the origin node's id (16
//! hex digits, so a node skips what it published itself: NATS echoes a
//! connection's own messages to it), then the server frame as sent to a
//! client (4-byte length, then the message). A payload is another
//! process's bytes: it is checked whole (lengths, the frame decodes, it is
//! a Message for this very user or room, or a Delivered on a user subject)
//! before a byte of it reaches a client, and anything else is dropped.
//!
//! Delivery is NATS core: at most once. A node that is down, slow (its
//! incoming queue full) or cut off from NATS loses what was published
//! meanwhile; live-only users have no queue to make up for it, as with a
//! full session queue on one node. Receiving nodes queue with the same
//! bounds as local delivery (a slow client is cut off).

use cipherline_proto::app::{MAX_MESSAGE, ServerMessage, Target, fold_name};

use super::{Cluster, hex, locked};
use crate::hub::{Elsewhere, Hub, Me, Remote};

/// Payload kind: a frame for a user's sessions.
const USER: u8 = 1;
/// Payload kind: an open-room message.
const ROOM: u8 = 2;
/// A node id's length in the payload (hex digits).
const NODE_LEN: usize = 16;
/// The largest payload accepted: kind, node, length prefix, message.
const MAX_PAYLOAD: usize = 1 + NODE_LEN + 4 + MAX_MESSAGE;

/// A checked payload: who published it and the message it carries.
struct Relayed<'a> {
    kind: u8,
    node: &'a [u8],
    msg: ServerMessage,
    frame: &'a [u8],
}

fn encode(kind: u8, node: &str, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + node.len() + frame.len());
    out.push(kind);
    out.extend_from_slice(node.as_bytes());
    out.extend_from_slice(frame);
    out
}

/// Parses a payload strictly: every length checked, the frame whole and
/// decodable; `None` for anything else.
fn decode(payload: &[u8]) -> Option<Relayed<'_>> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let (&kind, rest) = payload.split_first()?;
    if kind != USER && kind != ROOM {
        return None;
    }
    let (node, frame) = rest.split_at_checked(NODE_LEN)?;
    if !node.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let (len, body) = frame.split_at_checked(4)?;
    let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
    if len != body.len() || len > MAX_MESSAGE {
        return None;
    }
    let msg = ServerMessage::decode(body).ok()?;
    Some(Relayed { kind, node, msg, frame })
}

impl Cluster {
    pub(super) fn user_subject(&self, folded: &str) -> String {
        format!("{}.user.{}", self.prefix, hex(folded))
    }

    fn room_subject(&self, room: &str) -> String {
        format!("{}.room.{}", self.prefix, hex(room))
    }

    /// Subscribes to `subject` (`on`) or stops; idempotent, so that a
    /// second subscribe never replaces (and briefly drops) a live one.
    pub(super) fn follow(&self, subject: String, on: bool) {
        let changed = {
            let mut followed = locked(&self.followed);
            if on { followed.insert(subject.clone()) } else { followed.remove(&subject) }
        };
        if changed {
            if on {
                self.bus.subscribe(&subject, self.incoming.clone());
            } else {
                self.bus.unsubscribe(&subject);
            }
        }
    }

    /// This node has a live member of `room` (`on`), or no longer has one.
    pub(crate) fn follow_room(&self, room: &str, on: bool) {
        self.follow(self.room_subject(room), on);
    }

    /// Sends `frame` to the sessions of `remote` on other nodes.
    pub(crate) fn publish_live(&self, remote: &Remote, frame: &[u8]) {
        let (subject, kind) = match remote {
            Remote::User(folded) => (self.user_subject(folded), USER),
            Remote::Room(room) => (self.room_subject(room), ROOM),
        };
        self.bus.publish(subject, encode(kind, &self.node, frame));
    }

    /// Whether `payload` came from this node (NATS echoes it back).
    fn own(&self, relayed: &Relayed<'_>) -> bool {
        relayed.node == self.node.as_bytes()
    }
}

impl Hub {
    /// What `to` has on other nodes, read before `me`'s Send is admitted
    /// (which is synchronous): a direct message's target bound or live
    /// elsewhere, or a room's stored members re-read and its live members
    /// on other nodes (recent, for the charge, §13.5; only for a room `me`
    /// may speak in).
    pub(crate) async fn elsewhere(&self, me: &Me, to: &Target) -> Elsewhere {
        match to {
            Target::User(user) => {
                self.look_up(user).await;
                if self.live_elsewhere(user).await { Elsewhere::User } else { Elsewhere::Nothing }
            }
            Target::Room(room) => {
                let room = fold_name(room);
                self.refresh_members(&room).await;
                match &self.cluster {
                    Some(cluster) if self.may_speak(me, &room) => {
                        Elsewhere::Room(cluster.members_elsewhere_recent(&room).await)
                    }
                    _ => Elsewhere::Nothing,
                }
            }
        }
    }

    /// Whether `name` (not connected here, no stored queue) has a session
    /// on another node: a direct message to it is then published to that
    /// node. A store failure counts as no.
    pub(crate) async fn live_elsewhere(&self, name: &str) -> bool {
        let Some(cluster) = &self.cluster else { return false };
        if self.has_inbox(name) || self.session_count_folded(name) > 0 {
            return false;
        }
        cluster.sessions_elsewhere(&fold_name(name)).await.is_ok_and(|n| n > 0)
    }

    /// Tells other nodes `msg` for `sender`'s sessions there (a Delivered
    /// receipt); nothing without a cluster.
    pub(crate) fn publish_to_user(&self, name: &str, msg: &ServerMessage) {
        let Some(cluster) = &self.cluster else { return };
        match msg.encode() {
            Ok(frame) => cluster.publish_live(&Remote::User(fold_name(name)), &frame),
            Err(_) => tracing::debug!("a receipt did not encode"),
        }
    }

    /// Handles a payload from `<prefix>.user.<hex>` (`user` is the folded
    /// name the subject names).
    pub(crate) fn relayed_to_user(&self, user: &str, payload: &[u8]) {
        let Some(cluster) = &self.cluster else { return };
        let Some(relayed) = decode(payload) else {
            tracing::debug!("dropping a malformed payload from the bus");
            return;
        };
        if cluster.own(&relayed) || relayed.kind != USER {
            return;
        }
        let fits = match &relayed.msg {
            // A direct message for exactly this user, who has no queue
            // here (a stored user gets its messages from the store).
            ServerMessage::Message(d) => {
                matches!(&d.to, Target::User(to) if fold_name(to) == user) && d.seq == 0 && !self.has_inbox(user)
            }
            ServerMessage::Delivered { .. } => true,
            _ => false,
        };
        if fits {
            self.deliver_relayed_to_user(user, relayed.frame);
        } else {
            tracing::debug!("dropping an unexpected message from the bus");
        }
    }

    /// Handles a payload from `<prefix>.room.<hex>` (`room` folded).
    pub(crate) fn relayed_to_room(&self, room: &str, payload: &[u8]) {
        let Some(cluster) = &self.cluster else { return };
        let Some(relayed) = decode(payload) else {
            tracing::debug!("dropping a malformed payload from the bus");
            return;
        };
        if cluster.own(&relayed) || relayed.kind != ROOM {
            return;
        }
        match &relayed.msg {
            ServerMessage::Message(d) if matches!(&d.to, Target::Room(to) if fold_name(to) == room) && d.seq == 0 => {
                self.deliver_relayed_to_room(room, &fold_name(&d.from), relayed.frame);
            }
            _ => tracing::debug!("dropping an unexpected message from the bus"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payloads_are_parsed_strictly() {
        let frame = ServerMessage::Delivered { id: 7, by: "bob".into() }.encode().unwrap();
        let node = "0123456789abcdef";
        let good = encode(USER, node, &frame);
        let got = decode(&good).unwrap();
        assert_eq!((got.kind, got.node), (USER, node.as_bytes()));
        assert!(matches!(got.msg, ServerMessage::Delivered { id: 7, .. }));
        assert!(decode(&encode(3, node, &frame)).is_none(), "unknown kind");
        assert!(decode(&encode(USER, "0123456789abcdeg", &frame)).is_none(), "node not hex");
        assert!(decode(&good[..good.len() - 1]).is_none(), "frame cut short");
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).is_none(), "bytes after the frame");
        let mut bad_len = good.clone();
        bad_len[1 + NODE_LEN] = 0xff;
        assert!(decode(&bad_len).is_none(), "length prefix past the payload");
        assert!(decode(&encode(USER, node, &[0, 0, 0, 1, 0xee])).is_none(), "not a server message");
        assert!(decode(&[]).is_none() && decode(&[USER]).is_none());
    }
}
