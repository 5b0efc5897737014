//! The shared state of the relay: who is connected under which name, who is
//! in which room, and delivery to each connection's bounded queue.
//!
//! Names are compared folded, and a name that looks like a connected one is
//! refused (PROTOCOL.md §13.4). A name may have several connections
//! (sessions) when each proved the same identity key: messages to the name
//! reach them all, room messages the ones in the room. File transfer
//! messages go to the sessions [`crate::transfer`] names.
//!
//! Every method takes the lock briefly and never awaits while holding it:
//! delivery uses `try_send`, so one slow client can never stall another. A
//! client whose queue is full is cut off (its `kick` token is cancelled) and
//! its connection task closes it with `TooSlow`; so is a client whose queued
//! bytes would exceed its byte budget, or any recipient while the server's
//! total byte budget is exhausted (see [`crate::backlog`]). File data is the
//! one exception: it is queued only while a quarter of the queue (messages
//! and bytes) is free, and a receiver without that room is taken out of the
//! transfer instead (see `State::relay_chunk`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cipherline_proto::app::{
    Delivery, ErrorCode, FileSigned, NoticeKind, SendSignature, ServerMessage, Signed, Target, fold_name, folded,
    name_skeleton,
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub(crate) use crate::backlog::Queued;
use crate::backlog::{Backlog, ClientBytes, Outgoing};
use crate::mail::Mail;
use crate::transfer::{self, Chunk, Fanout, OfferError, OfferLimits, Transfers};

/// A refusal with its code and human text.
pub(crate) type Refusal = (ErrorCode, String);

/// Most connections one name may have at once (several sessions of one
/// identity key: a script while a chat is open, two devices).
pub(crate) const MAX_SESSIONS_PER_NAME: usize = 4;

/// One connection registered under a name.
pub(crate) struct Me {
    /// The name, as registered.
    pub(crate) name: String,
    /// Which of the name's sessions.
    pub(crate) session: u64,
}

/// One connection of a user.
struct Session {
    id: u64,
    /// Where its messages are queued.
    outlet: Arc<Outlet>,
    /// The rooms this connection joined.
    rooms: BTreeSet<String>,
    /// Rung when a message is stored for the user (users with a stored
    /// queue only).
    wake: Option<Arc<Notify>>,
    /// Once it resumed: the highest queue position it acknowledged.
    acked: Option<u64>,
}

/// The sending end of one connection's queue: all a delivery needs. A
/// message's live recipients are collected as these (an `Arc` each, no
/// name copied, no second lookup when it is queued).
pub(crate) struct Outlet {
    /// The user's name, for the log line when it is cut off.
    name: String,
    tx: mpsc::Sender<Queued>,
    /// Bytes in `tx`'s queue.
    queued: ClientBytes,
    kick: CancellationToken,
    /// Set when a delivery cut this connection off: checked for every
    /// delivery instead of `kick` (whose check takes a lock).
    kicked: AtomicBool,
}

/// A connected user: one name, one identity key (or none), and one or more
/// connections that all proved that key. A name without a key has exactly
/// one connection: nothing would tell its sessions apart from an impostor.
struct Peer {
    /// The identity key the client proved: (signature algorithm, SPKI).
    key: Option<(u16, Vec<u8>)>,
    /// At most [`MAX_SESSIONS_PER_NAME`], never empty.
    sessions: Vec<Session>,
}

impl Peer {
    /// Whether any of the user's connections is in `room`.
    fn in_room(&self, room: &str) -> bool {
        self.sessions.iter().any(|s| s.rooms.contains(room))
    }

    fn session(&self, id: u64) -> Option<&Session> {
        self.sessions.iter().find(|s| s.id == id)
    }

    /// Whether connection `id` is in `room`.
    fn session_in_room(&self, id: u64, room: &str) -> bool {
        self.session(id).is_some_and(|s| s.rooms.contains(room))
    }
}

impl Session {
    /// Whether `len` bytes of file data may be queued: a quarter of the
    /// queue, in messages and in bytes, stays free for everything else,
    /// including the FileCancelled that tells this peer when it had no room.
    fn has_room_for_data(&self, len: usize, backlog: &Backlog) -> bool {
        let (tx, bytes) = (&self.outlet.tx, self.outlet.queued.load(Ordering::Relaxed).saturating_add(len));
        tx.capacity() > tx.max_capacity() / 4 && bytes <= backlog.per_client / 4 * 3 && backlog.bulk_ok()
    }
}

struct State {
    users: HashMap<String, Peer>,
    /// Each connected name by its folded form ([`fold_name`]), and by its
    /// look-alike skeleton ([`name_skeleton`]): no two connected names
    /// share either, so these map to one name each.
    by_fold: HashMap<String, String>,
    by_skeleton: HashMap<String, BTreeSet<String>>,
    /// Room names are folded before they get here; members by name.
    rooms: HashMap<String, BTreeSet<String>>,
    /// Members kept across connections (users with a stored queue), by
    /// folded room name, each by its folded name (one user, however it
    /// spells its name); mirrored in the store (see [`crate::mail`]).
    stored_members: HashMap<String, BTreeSet<String>>,
    transfers: Transfers,
    backlog: Arc<Backlog>,
}

/// The relay's shared state.
pub(crate) struct Hub {
    state: Mutex<State>,
    next_id: AtomicU64,
    next_session: AtomicU64,
    /// Failed password attempts per address (password mode).
    pub(crate) attempts: crate::attempts::Attempts,
    /// Who may use which name.
    pub(crate) identities: std::sync::Arc<crate::identity::Identities>,
    /// Test-only: alter relayed messages (see `RunOptions`).
    tamper: Option<fn(&mut Delivery)>,
    /// Store-and-forward, when the server has a store.
    pub(crate) mail: Option<Arc<Mail>>,
    /// The other nodes on the same store, if any (docs/cluster.md).
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// What the target of a Send has on other nodes sharing the store.
pub(crate) enum Elsewhere {
    /// Nothing known, or no other nodes.
    Nothing,
    /// A direct message's target, not known here, is a live-only user on
    /// another node.
    User,
    /// A room's live members on other nodes, as recently read.
    Room(Arc<Vec<String>>),
}

/// A message accepted for relaying: what to store for whom and whom to
/// reach live (PROTOCOL.md §13.9).
pub(crate) struct Outbound {
    /// The server's id for it.
    pub(crate) id: u64,
    /// Server time it was accepted.
    pub(crate) timestamp_ms: u64,
    /// The encoded Message, `seq` 0.
    pub(crate) frame: Vec<u8>,
    /// Recipients with a stored queue.
    pub(crate) stored: Vec<String>,
    /// Connections reached live only.
    live: Vec<Arc<Outlet>>,
    /// Users among `live`.
    pub(crate) live_users: usize,
    /// A direct message (a full queue is then an error, not a count).
    pub(crate) direct: bool,
    /// Who gets it live on other nodes, if anyone may.
    remote: Option<Remote>,
}

impl Hub {
    /// A hub with no one connected, its queues bounded by `limits`.
    pub(crate) fn new(
        identities: std::sync::Arc<crate::identity::Identities>,
        limits: &crate::Limits,
        tamper: Option<fn(&mut Delivery)>,
        mail: Option<(Arc<Mail>, crate::mail::RoomMembers)>,
    ) -> Self {
        let (mail, stored_members) = match mail {
            Some((mail, rooms)) => (Some(mail), rooms),
            None => (None, HashMap::new()),
        };
        let backlog = Arc::new(Backlog::new(limits.max_queued_bytes_total, limits.max_queued_bytes_per_client));
        Hub {
            state: Mutex::new(State {
                users: HashMap::new(),
                by_fold: HashMap::new(),
                by_skeleton: HashMap::new(),
                rooms: HashMap::new(),
                stored_members,
                transfers: Transfers::default(),
                backlog,
            }),
            next_id: AtomicU64::default(),
            next_session: AtomicU64::default(),
            attempts: crate::attempts::Attempts::default(),
            identities,
            tamper,
            mail,
            cluster: None,
        }
    }

    /// Whether `me` may send to open room `room` (folded): a stored
    /// member, or this session joined it.
    pub(crate) fn may_speak(&self, me: &Me, room: &str) -> bool {
        self.lock().may_speak(me, room)
    }

    /// Whether `name` has a stored queue: the server has a store and an
    /// identity key owns the name.
    pub(crate) fn has_inbox(&self, name: &str) -> bool {
        self.mail.is_some() && self.identities.is_owned(name)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl State {
    fn encode(&self, msg: &ServerMessage) -> Option<Outgoing> {
        // Only oversized text can fail to encode, and text is bounded by the
        // server's message limit before it gets here.
        msg.encode().ok().map(|bytes| self.backlog.share(bytes))
    }

    /// Queues `msg` for `name`. A full queue, a client over its byte
    /// budget, or a server over its total cuts the peer off: it gets
    /// nothing more, and its connection closes with `too_slow`.
    fn deliver(&self, name: &str, msg: &Outgoing) {
        let Some(peer) = self.users.get(name) else { return };
        for session in &peer.sessions {
            self.deliver_outlet(&session.outlet, msg);
        }
    }

    /// Queues `msg` for `name`'s connections that are in `room`.
    fn deliver_in_room(&self, name: &str, room: &str, msg: &Outgoing) {
        let Some(peer) = self.users.get(name) else { return };
        for session in peer.sessions.iter().filter(|s| s.rooms.contains(room)) {
            self.deliver_outlet(&session.outlet, msg);
        }
    }

    /// Queues `msg` for one connection, or cuts it off (see [`State::deliver`]).
    fn deliver_outlet(&self, peer: &Outlet, msg: &Outgoing) {
        if peer.kicked.load(Ordering::Relaxed) {
            return;
        }
        let why = if peer.queued.load(Ordering::Relaxed).saturating_add(msg.len()) > self.backlog.per_client {
            "its queued bytes would exceed max_queued_bytes_per_client"
        } else if self.backlog.total() > self.backlog.max_total {
            "the server's queues hold max_queued_bytes_total"
        } else {
            match peer.tx.try_send(Queued::new(msg.clone(), &peer.queued)) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => "its queue holds queue_len messages",
                // Gone since the message's recipients were collected.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        };
        tracing::warn!(peer = peer.name, "dropping slow client: {why}");
        peer.kicked.store(true, Ordering::Relaxed);
        peer.kick.cancel();
    }

    /// Queues `msg` for connection `session` of `name`, if still connected.
    fn deliver_to(&self, name: &str, session: u64, msg: &Outgoing) {
        if let Some(s) = self.users.get(name).and_then(|p| p.session(session)) {
            self.deliver_outlet(&s.outlet, msg);
        }
    }

    /// Delivers transfer messages, each to the connections it names.
    fn deliver_all(&self, out: &[Fanout]) {
        for fanout in out.iter().filter(|f| !f.to.is_empty()) {
            let Some(bytes) = self.encode(&fanout.msg) else { continue };
            for (name, session) in &fanout.to {
                self.deliver_to(name, *session, &bytes);
            }
        }
    }

    /// Relays one chunk's FileData. A receiver whose queue is mostly full
    /// is dropped from this transfer rather than cut off: otherwise a sender
    /// of many tiny chunks (the window counts bytes, not messages) could get
    /// any receiver disconnected, and honest receivers of several transfers
    /// at once would lose their connection instead of one transfer.
    fn relay_chunk(&mut self, from: &str, transfer: u64, fanout: &Fanout) {
        let Some(bytes) = self.encode(&fanout.msg) else { return };
        let mut slow = Vec::new();
        for (name, id) in &fanout.to {
            // Only the session that accepted gets the data.
            let Some(session) = self.users.get(name).and_then(|p| p.session(*id)) else { continue };
            if session.has_room_for_data(bytes.len(), &self.backlog) {
                self.deliver_outlet(&session.outlet, &bytes);
            } else {
                slow.push(name);
            }
        }
        for name in slow {
            tracing::info!(from, transfer, receiver = %name, "receiver's queue is full; dropping it from the transfer");
            let out = self.transfers.drop_slow_receiver(from, transfer, name);
            self.deliver_all(&out);
        }
    }

    /// Tells a room's members something (a notice): its connections in
    /// the room, and every connection of a stored member.
    fn notify_room(&self, room: &str, except: &str, msg: &ServerMessage) {
        let Some(bytes) = self.encode(msg) else { return };
        let stored = self.stored_members.get(room);
        let except = fold_name(except);
        if let Some(members) = self.rooms.get(room) {
            for member in members.iter() {
                let folded = fold_name(member);
                if folded != except && !stored.is_some_and(|s| s.contains(&folded)) {
                    self.deliver_in_room(member, room, &bytes);
                }
            }
        }
        for member in stored.into_iter().flatten().filter(|m| **m != except) {
            if let Some(online) = self.by_fold.get(member) {
                self.deliver(online, &bytes);
            }
        }
    }

    /// Whether `name` (any spelling) is a stored member of `room`.
    fn stored_member(&self, room: &str, name: &str) -> bool {
        self.stored_members.get(room).is_some_and(|m| m.contains(&fold_name(name)))
    }

    /// Whether connection `me` may speak in `room`: it joined it, or its
    /// user is a stored member.
    fn may_speak(&self, me: &Me, room: &str) -> bool {
        self.stored_member(room, &me.name)
            || self.users.get(&me.name).is_some_and(|p| p.session_in_room(me.session, room))
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the server, so recover.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `name` for a connection; returns the connection's handle.
    ///
    /// Names are compared folded ([`fold_name`]): `Alice` is refused while
    /// `alice` is connected. A name whose look-alike skeleton
    /// ([`name_skeleton`]) equals a connected name's is refused too. The
    /// one exception: a connection that proved the same identity key as the
    /// connected user, under the same spelling, becomes another session of
    /// that user (up to [`MAX_SESSIONS_PER_NAME`]).
    pub(crate) fn register(
        &self,
        name: &str,
        tx: mpsc::Sender<Queued>,
        kick: CancellationToken,
        key: Option<(u16, Vec<u8>)>,
        wake: Option<Arc<Notify>>,
    ) -> Result<Me, Refusal> {
        let mut state = self.lock();
        let folded = fold_name(name);
        let skeleton = name_skeleton(name);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
        let outlet =
            Outlet { name: name.to_owned(), tx, queued: ClientBytes::default(), kick, kicked: AtomicBool::new(false) };
        let session = Session { id, outlet: Arc::new(outlet), rooms: BTreeSet::new(), wake, acked: None };
        if let Some(taken) = state.by_fold.get(&folded).cloned() {
            let peer =
                state.users.get_mut(&taken).ok_or_else(|| (ErrorCode::NameTaken, "the name is in use".into()))?;
            let same_key = key.is_some() && peer.key == key;
            if !same_key {
                let text = if taken == name {
                    format!("the name {name:?} is in use; choose another")
                } else {
                    format!(
                        "the name {name:?} is in use as {taken:?} (names are compared ignoring case); choose another"
                    )
                };
                return Err((ErrorCode::NameTaken, text));
            }
            if taken != name {
                return Err((
                    ErrorCode::NameTaken,
                    format!("your identity key is connected as {taken:?}; use that spelling to open another session"),
                ));
            }
            if peer.sessions.len() >= MAX_SESSIONS_PER_NAME {
                return Err((
                    ErrorCode::NameTaken,
                    format!(
                        "your identity key has {MAX_SESSIONS_PER_NAME} sessions open as {name:?} already; close one \
                         first"
                    ),
                ));
            }
            peer.sessions.push(session);
            return Ok(Me { name: name.to_owned(), session: id });
        }
        let fp = key.as_ref().map(|(_, spki)| cipherline_proto::crypto::sha256(spki));
        // A connected look-alike keeps others out, but not the key that owns
        // exactly this name (two names bound before look-alikes were
        // refused must not lock each other's owners out).
        if let Some(like) = state.by_skeleton.get(&skeleton).and_then(|names| names.iter().next())
            && !self.identities.owns(name, fp.as_ref())
        {
            return Err((
                ErrorCode::NameTaken,
                format!("the name {name:?} looks too much like {like:?}, who is connected; choose another"),
            ));
        }
        // A name owned by another key is refused before it becomes visible
        // (to Whois, Send, room members): an impostor that the identity
        // claim would refuse a moment later never appears under it at all.
        if let Some(refusal) = self.identities.refuses(name, fp.as_ref()) {
            return Err(refusal);
        }
        state.by_fold.insert(folded, name.to_owned());
        state.by_skeleton.entry(skeleton).or_default().insert(name.to_owned());
        state.users.insert(name.to_owned(), Peer { key, sessions: vec![session] });
        Ok(Me { name: name.to_owned(), session: id })
    }

    /// Removes a connection. The file transfers it offered or accepted end
    /// (and offers only it still had are answered for it), whether or not
    /// the name has other sessions. The user's last connection takes the
    /// name with it: its rooms are told it left.
    pub(crate) fn unregister(&self, me: &Me) {
        let mut state = self.lock();
        let name = me.name.as_str();
        let Some(peer) = state.users.get_mut(name) else { return };
        let Some(at) = peer.sessions.iter().position(|s| s.id == me.session) else { return };
        let session = peer.sessions.swap_remove(at);
        let left: Vec<String> = session.rooms.into_iter().filter(|room| !peer.in_room(room)).collect();
        let last = peer.sessions.is_empty();
        self.left_across(name, peer.sessions.len());
        if last {
            state.users.remove(name);
            state.by_fold.remove(&fold_name(name));
            let skeleton = name_skeleton(name);
            if let Some(names) = state.by_skeleton.get_mut(&skeleton) {
                names.remove(name);
                if names.is_empty() {
                    state.by_skeleton.remove(&skeleton);
                }
            }
        }
        for room in left {
            if state.stored_member(&room, name) {
                // Still a member: only its connection went away.
                if let Some(members) = state.rooms.get_mut(&room) {
                    members.remove(name);
                    if members.is_empty() {
                        state.rooms.remove(&room);
                    }
                }
                self.room_changed(&state, &room);
                continue;
            }
            self.remove_member(&mut state, &room, name);
        }
        let out = state.transfers.disconnect(name, me.session);
        state.deliver_all(&out);
    }

    /// The connected user's name for `name` compared folded, e.g. `alice`
    /// for `Alice`: how names from clients (message and file targets,
    /// Whois) find the user.
    fn resolve(state: &State, name: &str) -> Option<String> {
        if state.users.contains_key(name) {
            return Some(name.to_owned());
        }
        state.by_fold.get(&fold_name(name)).cloned()
    }

    fn remove_member(&self, state: &mut State, room: &str, name: &str) {
        if let Some(members) = state.rooms.get_mut(room) {
            members.remove(name);
            if members.is_empty() {
                state.rooms.remove(room);
            }
        }
        self.room_changed(state, room);
        let notice = ServerMessage::Notice { kind: NoticeKind::Left, room: room.to_owned(), name: name.to_owned() };
        state.notify_room(room, name, &notice);
    }

    /// Adds connection `me` to `room` (a folded name) and, if it is the
    /// user's first connection there, tells the other members.
    /// `stored`: the user's membership was just recorded in the store.
    pub(crate) fn join(&self, me: &Me, room: &str, max_rooms: usize, stored: bool) -> Result<(), Refusal> {
        let name = me.name.as_str();
        let mut state = self.lock();
        let was_stored = state.stored_member(room, name);
        if stored {
            state.stored_members.entry(room.to_owned()).or_default().insert(fold_name(name));
        }
        let Some(peer) = state.users.get_mut(name) else { return Ok(()) };
        let was_member = peer.in_room(room) || was_stored;
        let Some(session) = peer.sessions.iter_mut().find(|s| s.id == me.session) else { return Ok(()) };
        if session.rooms.contains(room) {
            return Ok(());
        }
        if session.rooms.len() >= max_rooms {
            return Err((ErrorCode::TooManyRooms, format!("you are in {max_rooms} rooms already; leave one first")));
        }
        session.rooms.insert(room.to_owned());
        state.rooms.entry(room.to_owned()).or_default().insert(name.to_owned());
        self.room_changed(&state, room);
        if was_member {
            return Ok(());
        }
        let notice = ServerMessage::Notice { kind: NoticeKind::Joined, room: room.to_owned(), name: name.to_owned() };
        state.notify_room(room, name, &notice);
        Ok(())
    }

    /// Takes connection `me` out of `room`; if it was the user's last
    /// connection there, tells the other members.
    /// A stored member leaves for good (every connection of it): the
    /// store no longer lists it (the caller saw to that first).
    pub(crate) fn leave(&self, me: &Me, room: &str) -> Result<(), Refusal> {
        let name = me.name.as_str();
        let mut state = self.lock();
        let was_stored = state.stored_members.get_mut(room).is_some_and(|m| m.remove(&fold_name(name)));
        if state.stored_members.get(room).is_some_and(BTreeSet::is_empty) {
            state.stored_members.remove(room);
        }
        let Some(peer) = state.users.get_mut(name) else { return Err(not_in_room(room)) };
        let member = peer.sessions.iter_mut().find(|s| s.id == me.session).is_some_and(|s| s.rooms.remove(room));
        if !member && !was_stored {
            return Err(not_in_room(room));
        }
        if was_stored {
            for session in &mut peer.sessions {
                session.rooms.remove(room);
            }
        }
        if !peer.in_room(room) {
            self.remove_member(&mut state, room, name);
        }
        Ok(())
    }

    /// Whether `name` is a stored member of `room` (a folded name).
    pub(crate) fn is_stored_member(&self, room: &str, name: &str) -> bool {
        self.lock().stored_member(room, name)
    }

    /// Whether an open room of that (folded) name exists: someone is in it,
    /// live or stored.
    pub(crate) fn open_room_exists(&self, room: &str) -> bool {
        let state = self.lock();
        state.rooms.contains_key(room) || state.stored_members.get(room).is_some_and(|m| !m.is_empty())
    }

    /// The identity key connection `me` proved: (signature algorithm, SPKI).
    pub(crate) fn proven_key(&self, me: &Me) -> Option<(u16, Vec<u8>)> {
        self.lock().users.get(&me.name).and_then(|p| p.key.clone())
    }

    /// The rooms `name` is a stored member of.
    pub(crate) fn stored_room_count(&self, name: &str) -> usize {
        let folded = fold_name(name);
        self.lock().stored_members.values().filter(|m| m.contains(&folded)).count()
    }

    /// Accepts a message for relaying: checks the target, charges `admit`
    /// (told the number of recipients; the sender's byte-rate budget,
    /// §13.5) and gives it its id, but queues nothing yet: the caller stores
    /// it for [`Outbound::stored`] recipients, then calls
    /// [`Hub::deliver_outbound`] (PROTOCOL.md §13.9). `elsewhere`: what
    /// the target has on other nodes ([`Hub::elsewhere`], which needs the
    /// store).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &self,
        me: &Me,
        to: &Target,
        text: String,
        client_id: u64,
        signature: Option<SendSignature>,
        elsewhere: &Elsewhere,
        admit: impl FnOnce(usize) -> Result<(), Refusal>,
    ) -> Result<Outbound, Refusal> {
        let from = me.name.as_str();
        let state = self.lock();
        let mut stored = Vec::new();
        let mut live = Vec::new();
        let mut live_users = 0;
        let mut remote = None;
        // Routed by the folded names (§13.4), but delivered with the target
        // as the sender wrote it: the sender's signature covers that.
        let direct = matches!(to, Target::User(_));
        match to {
            Target::Room(room) => {
                let room = fold_name(room);
                if !state.may_speak(me, &room) {
                    return Err(not_in_room(&room));
                }
                // Each member once, by folded name: connected ones as they
                // spell their names, stored ones folded. Connected names
                // are unique by folded form already (§13.4): only stored
                // members need merging in.
                let connected = state.rooms.get(&room).into_iter().flatten();
                let members: Vec<&String> = match state.stored_members.get(&room).filter(|s| !s.is_empty()) {
                    None => connected.collect(),
                    Some(kept) => {
                        let mut all: BTreeMap<Cow<'_, str>, &String> = connected.map(|m| (folded(m), m)).collect();
                        for m in kept {
                            all.entry(Cow::Borrowed(m.as_str())).or_insert(m);
                        }
                        all.into_values().collect()
                    }
                };
                let sender = folded(from);
                // Live members on other nodes are recipients too (§13.5),
                // each once, unless stored or live here already.
                if let Elsewhere::Room(names) = elsewhere
                    && !names.is_empty()
                {
                    let here: HashSet<Cow<'_, str>> = members.iter().map(|m| folded(m)).collect();
                    let mut others: Vec<Cow<'_, str>> = names.iter().map(|n| folded(n)).collect();
                    others.sort_unstable();
                    others.dedup();
                    live_users += others.iter().filter(|n| **n != sender && !here.contains(*n)).count();
                }
                for member in members {
                    if folded(member) == sender {
                        continue;
                    }
                    let peer = state.users.get(member.as_str());
                    // A name without a key has no stored queue (only a key
                    // binds a name): no look-up in the bindings.
                    let keyless = peer.is_some_and(|p| p.key.is_none());
                    if !keyless && self.has_inbox(member) {
                        stored.push(member.clone());
                    } else if let Some(peer) = peer {
                        let before = live.len();
                        let sessions = peer.sessions.iter().filter(|s| s.rooms.contains(&room));
                        live.extend(sessions.map(|s| s.outlet.clone()));
                        live_users += usize::from(live.len() > before);
                    }
                }
                // Live members on other nodes hear it through the bus.
                if self.cluster.is_some() {
                    remote = Some(Remote::Room(room));
                }
            }
            Target::User(user) => match Self::resolve(&state, user) {
                Some(user) if self.has_inbox(&user) => stored.push(user),
                Some(user) => {
                    let peer = state.users.get(&user);
                    live.extend(peer.into_iter().flat_map(|p| p.sessions.iter().map(|s| s.outlet.clone())));
                    live_users = 1;
                }
                None if self.has_inbox(user) => stored.push(fold_name(user)),
                // A live-only user connected to another node.
                None if matches!(elsewhere, Elsewhere::User) => {
                    remote = Some(Remote::User(fold_name(user)));
                    live_users = 1;
                }
                None => {
                    let known = if self.mail.is_some() { " or known to this server" } else { "" };
                    return Err((ErrorCode::UnknownUser, format!("no user named {user:?} is connected{known}")));
                }
            },
        }
        if !state.backlog.bulk_ok() {
            // Refusing the sender is the gentle way to stay within the
            // total: otherwise every recipient would be cut off.
            return Err(busy());
        }
        admit(stored.len() + live_users)?;
        let id = match &self.mail {
            Some(mail) => mail.next_id(),
            // Without a store, ids count from 1 below 2^40, skipping 0.
            None => crate::mail::counted_id(&self.next_id),
        };
        let timestamp_ms = now_ms();
        // A signature goes out with the key the sender proved, so recipients
        // can check it; one from a client without a key is meaningless.
        let key = state.users.get(from).and_then(|p| p.key.clone());
        let signed = match (signature, key) {
            (Some(sig), Some((algorithm, sender_key))) => {
                Some(Signed { client_id, sent_at_ms: sig.sent_at_ms, algorithm, sender_key, signature: sig.signature })
            }
            _ => None,
        };
        let mut delivery = Delivery { id, timestamp_ms, from: from.to_owned(), to: to.clone(), text, signed, seq: 0 };
        if let Some(tamper) = self.tamper {
            tamper(&mut delivery);
        }
        // Only oversized text can fail to encode, and text is bounded by the
        // server's message limit before it gets here.
        let frame = ServerMessage::Message(delivery)
            .encode()
            .map_err(|_| (ErrorCode::MessageTooLarge, "the message is too large to relay".to_owned()))?;
        Ok(Outbound { id, timestamp_ms, frame, stored, live, live_users, direct, remote })
    }

    /// Delivers an accepted message: rings the connections of the
    /// recipients it was stored for (`stored`, a subset of
    /// [`Outbound::stored`]) and queues it for the live ones.
    pub(crate) fn deliver_outbound(&self, out: Outbound, stored: &[&String]) {
        let state = self.lock();
        for name in stored {
            Self::wake_in(&state, name);
            self.publish_wake(name);
        }
        if let (Some(remote), Some(cluster)) = (&out.remote, &self.cluster) {
            cluster.publish_live(remote, &out.frame);
        }
        if out.live.is_empty() {
            return;
        }
        let bytes = state.backlog.share(out.frame);
        for outlet in &out.live {
            state.deliver_outlet(outlet, &bytes);
        }
    }

    /// Connection `me` acknowledged its user's stored queue up to `upto`;
    /// returns how far every connection of the user that resumed has
    /// acknowledged (what may be deleted).
    pub(crate) fn acknowledged(&self, me: &Me, upto: u64) -> u64 {
        let mut state = self.lock();
        let Some(peer) = state.users.get_mut(&me.name) else { return 0 };
        if let Some(session) = peer.sessions.iter_mut().find(|s| s.id == me.session) {
            session.acked = Some(session.acked.unwrap_or(0).max(upto));
        }
        peer.sessions.iter().filter_map(|s| s.acked).min().unwrap_or(0)
    }

    /// Makes sure this node knows whether `name` is a stored user before a
    /// message is routed to it: a name neither connected here nor bound in
    /// this node's table may have been bound through another node sharing
    /// the store (docs/cluster.md, step 1c), so its binding is read.
    pub(crate) async fn look_up(&self, name: &str) {
        let known =
            self.mail.is_none() || self.identities.is_owned(name) || Self::resolve(&self.lock(), name).is_some();
        if !known {
            self.identities.look_up(name).await;
        }
    }

    /// Rings the connections of `name`, here and on other nodes:
    /// something was stored for it.
    pub(crate) fn wake(&self, name: &str) {
        Self::wake_in(&self.lock(), name);
        self.publish_wake(name);
    }

    /// Rings the connections of `name` on this node only (a wake from
    /// another node, or the periodic re-read).
    pub(crate) fn ring(&self, name: &str) {
        Self::wake_in(&self.lock(), name);
    }

    fn wake_in(state: &State, name: &str) {
        let Some(user) = Self::resolve(state, name) else { return };
        for session in state.users.get(&user).map(|p| p.sessions.as_slice()).unwrap_or_default() {
            if let Some(wake) = &session.wake {
                wake.notify_one();
            }
        }
    }

    /// Tells `sender`'s connections that `by` received their message `id`:
    /// here, and on other nodes (the sender may be connected anywhere).
    pub(crate) fn receipt(&self, sender: &str, id: u64, by: &str) {
        let msg = ServerMessage::Delivered { id, by: by.to_owned() };
        self.publish_to_user(sender, &msg);
        let state = self.lock();
        let Some(sender) = Self::resolve(&state, sender) else { return };
        if let Some(bytes) = state.encode(&msg) {
            state.deliver(&sender, &bytes);
        }
    }

    /// The identity key a connected user proved (answer to Whois).
    pub(crate) fn whois(&self, name: &str) -> Result<ServerMessage, Refusal> {
        let state = self.lock();
        let unknown = || (ErrorCode::UnknownUser, format!("no user named {name:?} is connected"));
        let user = Self::resolve(&state, name).ok_or_else(unknown)?;
        let peer = state.users.get(&user).ok_or_else(unknown)?;
        let (algorithm, key) = peer.key.clone().unwrap_or_default();
        Ok(ServerMessage::Identity { name: user, algorithm, key })
    }

    /// The members of a room the asker is in.
    pub(crate) fn members(&self, asker: &Me, room: &str) -> Result<Vec<String>, Refusal> {
        let state = self.lock();
        if !state.may_speak(asker, room) {
            return Err(not_in_room(room));
        }
        // Each member once: as it spells its name when connected, else folded.
        let mut names: BTreeMap<String, String> =
            state.stored_members.get(room).into_iter().flatten().map(|m| (m.clone(), m.clone())).collect();
        for m in state.rooms.get(room).into_iter().flatten() {
            names.insert(fold_name(m), m.clone());
        }
        let mut names: Vec<String> = names.into_values().collect();
        names.sort();
        names.truncate(cipherline_proto::app::MAX_MEMBERS);
        Ok(names)
    }

    /// How many connections `name` has here.
    pub(crate) fn session_count(&self, name: &str) -> usize {
        self.lock().users.get(name).map_or(0, |p| p.sessions.len())
    }

    /// Connected users (for logs and tests).
    pub(crate) fn user_count(&self) -> usize {
        self.lock().users.len()
    }
}

fn busy() -> Refusal {
    (ErrorCode::RateLimited, "the server is busy relaying for slow readers; try again shortly".into())
}

fn not_in_room(room: &str) -> Refusal {
    (ErrorCode::NotInRoom, format!("you are not in room {room:?}; join it first"))
}

mod members;
mod offers;
mod relay;

pub(crate) use offers::expire_offers;

pub(crate) use relay::Remote;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod session_transfers;
