//! The shared state of the relay: who is connected under which name, who is
//! in which room, and delivery to each connection's bounded queue.
//!
//! Every method takes the lock briefly and never awaits while holding it:
//! delivery uses `try_send`, so one slow client can never stall another. A
//! client whose queue is full is cut off (its `kick` token is cancelled) and
//! its connection task closes it with `TooSlow`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cipherline_proto::app::{Delivery, ErrorCode, NoticeKind, ServerMessage, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// An encoded server message, shared by every recipient of a fan-out.
pub(crate) type Outgoing = Arc<[u8]>;

/// A refusal with its code and human text.
pub(crate) type Refusal = (ErrorCode, String);

struct Peer {
    tx: mpsc::Sender<Outgoing>,
    kick: CancellationToken,
    rooms: BTreeSet<String>,
}

#[derive(Default)]
struct State {
    users: HashMap<String, Peer>,
    rooms: HashMap<String, BTreeSet<String>>,
}

/// The relay's shared state.
#[derive(Default)]
pub(crate) struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn encode(msg: &ServerMessage) -> Option<Outgoing> {
    // Only oversized text can fail to encode, and text is bounded by the
    // server's message limit before it gets here.
    msg.encode().ok().map(Arc::from)
}

impl State {
    /// Queues `msg` for `name`; a full queue cuts the peer off.
    fn deliver(&self, name: &str, msg: &Outgoing) {
        if let Some(peer) = self.users.get(name)
            && peer.tx.try_send(msg.clone()).is_err()
        {
            tracing::warn!(peer = name, "outgoing queue full; dropping slow client");
            peer.kick.cancel();
        }
    }

    fn notify_room(&self, room: &str, except: &str, msg: &ServerMessage) {
        let Some(members) = self.rooms.get(room) else { return };
        let Some(bytes) = encode(msg) else { return };
        for member in members.iter().filter(|m| m.as_str() != except) {
            self.deliver(member, &bytes);
        }
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the server, so recover.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `name` for a connection.
    pub(crate) fn register(
        &self,
        name: &str,
        tx: mpsc::Sender<Outgoing>,
        kick: CancellationToken,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        if state.users.contains_key(name) {
            return Err((ErrorCode::NameTaken, format!("the name {name:?} is in use; choose another")));
        }
        state.users.insert(name.to_owned(), Peer { tx, kick, rooms: BTreeSet::new() });
        Ok(())
    }

    /// Removes a connection and tells its rooms it left.
    pub(crate) fn unregister(&self, name: &str) {
        let mut state = self.lock();
        let Some(peer) = state.users.remove(name) else { return };
        for room in peer.rooms {
            Self::remove_member(&mut state, &room, name);
        }
    }

    fn remove_member(state: &mut State, room: &str, name: &str) {
        if let Some(members) = state.rooms.get_mut(room) {
            members.remove(name);
            if members.is_empty() {
                state.rooms.remove(room);
            }
        }
        let notice = ServerMessage::Notice { kind: NoticeKind::Left, room: room.to_owned(), name: name.to_owned() };
        state.notify_room(room, name, &notice);
    }

    /// Adds `name` to `room` and tells the other members.
    pub(crate) fn join(&self, name: &str, room: &str, max_rooms: usize) -> Result<(), Refusal> {
        let mut state = self.lock();
        let Some(peer) = state.users.get_mut(name) else { return Ok(()) };
        if peer.rooms.contains(room) {
            return Ok(());
        }
        if peer.rooms.len() >= max_rooms {
            return Err((ErrorCode::TooManyRooms, format!("you are in {max_rooms} rooms already; leave one first")));
        }
        peer.rooms.insert(room.to_owned());
        state.rooms.entry(room.to_owned()).or_default().insert(name.to_owned());
        let notice = ServerMessage::Notice { kind: NoticeKind::Joined, room: room.to_owned(), name: name.to_owned() };
        state.notify_room(room, name, &notice);
        Ok(())
    }

    /// Removes `name` from `room` and tells the other members.
    pub(crate) fn leave(&self, name: &str, room: &str) -> Result<(), Refusal> {
        let mut state = self.lock();
        let member = state.users.get_mut(name).is_some_and(|p| p.rooms.remove(room));
        if !member {
            return Err(not_in_room(room));
        }
        Self::remove_member(&mut state, room, name);
        Ok(())
    }

    /// Relays a message; returns the id and timestamp it was given.
    pub(crate) fn send(&self, from: &str, to: &Target, text: String) -> Result<(u64, u64), Refusal> {
        let state = self.lock();
        match to {
            Target::Room(room) => {
                if !state.users.get(from).is_some_and(|p| p.rooms.contains(room)) {
                    return Err(not_in_room(room));
                }
            }
            Target::User(user) => {
                if !state.users.contains_key(user) {
                    return Err((ErrorCode::UnknownUser, format!("no user named {user:?} is connected")));
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let timestamp_ms = now_ms();
        let msg = ServerMessage::Message(Delivery { id, timestamp_ms, from: from.to_owned(), to: to.clone(), text });
        match to {
            Target::Room(room) => state.notify_room(room, from, &msg),
            Target::User(user) => {
                if let Some(bytes) = encode(&msg) {
                    state.deliver(user, &bytes);
                }
            }
        }
        Ok((id, timestamp_ms))
    }

    /// The members of a room the asker is in.
    pub(crate) fn members(&self, asker: &str, room: &str) -> Result<Vec<String>, Refusal> {
        let state = self.lock();
        if !state.users.get(asker).is_some_and(|p| p.rooms.contains(room)) {
            return Err(not_in_room(room));
        }
        Ok(state.rooms.get(room).map(|m| m.iter().cloned().collect()).unwrap_or_default())
    }

    /// Connected users (for logs and tests).
    pub(crate) fn user_count(&self) -> usize {
        self.lock().users.len()
    }
}

fn not_in_room(room: &str) -> Refusal {
    (ErrorCode::NotInRoom, format!("you are not in room {room:?}; join it first"))
}
