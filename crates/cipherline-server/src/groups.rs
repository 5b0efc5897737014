//! The delivery service of end-to-end conversations (PROTOCOL.md §13.11):
//! KeyPackage upload and claim, end-to-end rooms, commit sequencing and
//! the fan-out of MLS messages through the store.
//!
//! Everything MLS is opaque bytes here, except that an uploaded KeyPackage
//! is parsed (by `cipherline_e2e`) to check that its credential is the
//! uploader's name and proven Ed25519 key. Only users with a stored queue
//! (a name an identity key owns, on a server with a store) take part.
//!
//! What is kept, in the store's key-value map (so it survives restarts):
//! `kp/<user>/<counter>` one-time KeyPackages (at most [`MAX_ONE_TIME`] a
//! user, given out oldest first and deleted), `kplr/<user>` the
//! last-resort one (given out and kept), `e2e/<room>` an end-to-end room's
//! group id, `group/<hex group id>` the group's [`Record`]. Names are
//! folded. In memory: the end-to-end rooms (so plain Join and Send on them
//! cost no store read; with a store shared by several nodes, a miss is
//! read through) and one lock per group (or user) being changed. A
//! one-time KeyPackage is claimed by a conditional delete, not under a
//! lock, so that nodes sharing the store never give out one twice.
//!
//! Sequencing: the relay accepts exactly one commit per group epoch. A
//! commit is checked and fanned out under its group's lock, and the record
//! moves to the next epoch only once the commit is stored for every other
//! member (removed ones included) and the Welcome for every invited user;
//! only then is it answered Committed, so the committer's next commit can
//! never overtake it in anyone's queue. A commit for another epoch is
//! answered Stale with the current one: the commits that won are in the
//! client's queue already.
//!
//! Logs carry names, group ids (shortened) and sizes, never MLS bytes.

mod record;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cipherline_proto::app::{
    ClientMessage, CommitRequest, ErrorCode, GroupDelivery, GroupEvent, GroupRequest, MAX_MEMBERS, PayloadKind,
    RoomKind, ServerMessage, Target, fold_name, valid_name,
};
use cipherline_proto::crypto::sign::SignatureAlgorithm;
use cipherline_store::{Appended, Store as _, StoreError};

use crate::bucket::TokenBucket;
use crate::connection::{Stored, charge};
use crate::hub::Refusal;
use crate::mail::{Db, Mail, bounded, now_ms};
pub(crate) use record::{GroupKind, Record};

/// Most one-time KeyPackages kept for one user; more are not kept.
pub(crate) const MAX_ONE_TIME: usize = 64;
/// Most end-to-end rooms a server keeps (their names are held in memory).
const MAX_E2E_ROOMS: usize = 100_000;
/// Longest wait for another request on the same group or user.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The room that always exists, open.
const LOBBY: &str = "lobby";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key
/// follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

fn group_key(id: &[u8]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("group/{hex}")
}

fn room_key(room: &str) -> String {
    format!("e2e/{room}")
}

fn one_time_prefix(user: &str) -> String {
    format!("kp/{user}/")
}

fn last_resort_key(user: &str) -> String {
    format!("kplr/{user}")
}

/// A group id shortened for logs.
fn short(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn refused(code: ErrorCode, text: impl Into<String>) -> Refusal {
    (code, text.into())
}

fn not_allowed(text: impl Into<String>) -> Refusal {
    refused(ErrorCode::NotAllowed, text)
}

fn damaged(what: &str) -> Refusal {
    tracing::error!("store: damaged end-to-end record: {what}");
    refused(ErrorCode::StoreFailed, "the server's record of this conversation is damaged")
}

/// An end-to-end room as kept in memory.
#[derive(Clone)]
struct Room {
    group_id: Vec<u8>,
    kind: GroupKind,
}

/// The delivery service's shared state.
pub(crate) struct Groups {
    /// End-to-end rooms by folded name.
    rooms: Mutex<HashMap<String, Room>>,
    /// One lock per group or user whose records a request is changing.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held lock; the map entry goes with the last holder or waiter.
struct Held<'a> {
    groups: &'a Groups,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.groups.locks);
        // The map's reference and ours: nobody else waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Groups {
    /// Loads the end-to-end rooms from the store (a damaged entry stops
    /// the start).
    pub(crate) async fn load(store: &Db) -> Result<Self, String> {
        let err = |e: StoreError| format!("store: {e}");
        let mut rooms = HashMap::new();
        let mut after = String::new();
        loop {
            let keys = store.keys("e2e/", &after, 500).await.map_err(err)?;
            let Some(last) = keys.last().cloned() else { break };
            for key in keys {
                let room = key.get("e2e/".len()..).unwrap_or_default().to_owned();
                let Some((group_id, _)) = store.get(&key).await.map_err(err)? else { continue };
                let Some((value, _)) = store.get(&group_key(&group_id)).await.map_err(err)? else {
                    return Err(format!("store: end-to-end room {room:?} has no group record"));
                };
                let rec = Record::decode(&value).map_err(|e| format!("store: group of room {room:?}: {e}"))?;
                if rec.room.as_deref() != Some(room.as_str()) {
                    return Err(format!("store: group of room {room:?} names another room"));
                }
                rooms.insert(room, Room { group_id, kind: rec.kind });
            }
            after = last;
        }
        Ok(Groups { rooms: Mutex::new(rooms), locks: Mutex::new(HashMap::new()) })
    }

    /// End-to-end rooms (for logs).
    pub(crate) fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    fn room(&self, room: &str) -> Option<Room> {
        lock(&self.rooms).get(room).cloned()
    }

    /// The end-to-end room `room` (folded): this node's copy, or with a
    /// shared store, on a miss, `e2e/<room>` and its group read through
    /// and kept (another node may have created it since this one started;
    /// end-to-end rooms are never deleted, so a kept one stays true).
    async fn room_through(&self, mail: &Mail, room: &str) -> Result<Option<Room>, Refusal> {
        if let Some(found) = self.room(room) {
            return Ok(Some(found));
        }
        if !mail.shared {
            return Ok(None);
        }
        let Some((group_id, _)) = bounded(mail.store.get(&room_key(room))).await? else { return Ok(None) };
        let (rec, _) = read_group(mail, &group_id).await?.ok_or_else(|| damaged("room without its group"))?;
        if rec.room.as_deref() != Some(room) {
            return Err(damaged("group of a room names another room"));
        }
        let found = Room { group_id, kind: rec.kind };
        let mut rooms = lock(&self.rooms);
        if rooms.len() < MAX_E2E_ROOMS {
            rooms.insert(room.to_owned(), found.clone());
        }
        Ok(Some(found))
    }

    /// Waits (bounded) for the lock on `key`.
    async fn lock(&self, key: String) -> Result<Held<'_>, Refusal> {
        let shared = lock(&self.locks).entry(key.clone()).or_default().clone();
        let mut held = Held { groups: self, key, lock: shared.clone(), guard: None };
        let guard = tokio::time::timeout(LOCK_TIMEOUT, shared.lock_owned())
            .await
            .map_err(|_| refused(ErrorCode::StoreFailed, "the server is busy with this conversation; try again"))?;
        held.guard = Some(guard);
        Ok(held)
    }
}

pub(crate) async fn read_group(mail: &Mail, id: &[u8]) -> Result<Option<(Record, u64)>, Refusal> {
    match bounded(mail.store.get(&group_key(id))).await? {
        None => Ok(None),
        Some((value, rev)) => Ok(Some((Record::decode(&value).map_err(damaged)?, rev))),
    }
}

async fn write_group(mail: &Mail, id: &[u8], rec: &Record, rev: Option<u64>) -> Result<(), Refusal> {
    let value = rec.encode().map_err(damaged)?;
    match tokio::time::timeout(Duration::from_secs(10), mail.store.cas(&group_key(id), rev, value)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(StoreError::Conflict { .. })) => {
            tracing::error!(group = %short(id), "group record changed under its lock");
            Err(refused(ErrorCode::StoreFailed, "the conversation changed meanwhile; try again"))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "store request failed");
            Err(refused(ErrorCode::StoreFailed, "the server could not record the conversation; try again"))
        }
        Err(_) => Err(refused(ErrorCode::StoreFailed, "the server's store did not answer in time")),
    }
}

/// The raw Ed25519 key of a proven identity key, if it is one.
fn ed25519_raw(key: Option<(u16, Vec<u8>)>) -> Option<[u8; 32]> {
    let (algorithm, spki) = key?;
    if algorithm != SignatureAlgorithm::Ed25519.to_u16() {
        return None;
    }
    spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?.try_into().ok()
}

/// The id an Error about a request carries.
fn request_id(req: &GroupRequest) -> u64 {
    match req {
        GroupRequest::Commit(c) => c.request,
        GroupRequest::Send { id, .. } => *id,
        _ => 0,
    }
}

/// The names of a commit's list, folded; refused if invalid or repeated.
fn folded_names(names: &[String], max_len: usize) -> Result<Vec<String>, Refusal> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !valid_name(name, max_len) || !seen.insert(fold_name(name)) {
            return Err(refused(ErrorCode::BadRequest, format!("{name:?} is not a valid name or is listed twice")));
        }
    }
    Ok(seen.into_iter().collect())
}

/// Checks commit `c` by `sender` against `rec` (at the commit's epoch)
/// and returns the group after it (PROTOCOL.md §13.11).
fn apply(
    rec: &Record,
    sender: &str,
    c: &CommitRequest,
    max_name: usize,
    has_inbox: impl Fn(&str) -> bool,
) -> Result<Record, Refusal> {
    let sender = fold_name(sender);
    let invited = folded_names(&c.invited, max_name)?;
    let removed = folded_names(&c.removed, max_name)?;
    let room = rec.room.as_deref().unwrap_or_default();
    if c.external {
        if rec.kind != GroupKind::Public {
            return Err(not_allowed(match rec.kind {
                GroupKind::Invite => format!("room {room:?} is invite-only: ask a member to invite you"),
                _ => "a direct conversation cannot be joined".to_owned(),
            }));
        }
        if invited != [sender.clone()] || removed.iter().any(|r| *r != sender) {
            return Err(not_allowed("an external commit adds its sender and no one else"));
        }
    } else {
        if !rec.is_member(&sender) {
            return Err(not_allowed("you are not a member of this conversation"));
        }
        if rec.kind == GroupKind::Direct && !(invited.is_empty() && removed.is_empty()) {
            return Err(not_allowed("a direct conversation keeps its two members: create a room to talk with more"));
        }
        if rec.kind == GroupKind::Invite && !invited.is_empty() && !rec.is_admin(&sender) {
            return Err(not_allowed(format!("only the admins of room {room:?} may invite")));
        }
        if let Some(r) = removed.iter().find(|r| rec.is_member(r) && **r != sender && !rec.is_admin(&sender)) {
            return Err(not_allowed(format!("only the admins of room {room:?} may remove {r:?}")));
        }
        if let Some(i) = invited.iter().find(|i| rec.is_member(i)) {
            return Err(not_allowed(format!("{i:?} is a member already")));
        }
        if !invited.is_empty() && c.welcome.is_none() {
            return Err(refused(ErrorCode::BadRequest, "a commit that adds members needs their Welcome"));
        }
    }
    if let Some(i) = invited.iter().find(|i| !has_inbox(i)) {
        return Err(not_allowed(format!(
            "{i:?} cannot take part in end-to-end conversations (no identity key owns that name here)"
        )));
    }
    let mut next = rec.clone();
    for r in &removed {
        next.members.remove(r);
        next.admins.remove(r);
    }
    next.members.extend(invited);
    if next.members.len() > MAX_MEMBERS {
        return Err(not_allowed(format!("a conversation has at most {MAX_MEMBERS} members")));
    }
    next.epoch = rec.epoch.saturating_add(1);
    if let Some(gi) = &c.group_info {
        next.group_info = Some((next.epoch, gi.clone()));
    }
    Ok(next)
}

impl Stored<'_> {
    /// Handles the delivery-service requests, and Join, Send, Leave and Who
    /// on end-to-end rooms; gives anything else back.
    pub(crate) async fn end_to_end(
        &mut self,
        msg: ClientMessage,
        msg_len: usize,
        bytes_rate: &mut TokenBucket,
    ) -> Result<Option<ServerMessage>, ClientMessage> {
        let error = |(code, text): Refusal, client_id: u64| Some(ServerMessage::Error { code, client_id, text });
        let Some(mail) = self.hub.mail.clone() else {
            return match msg {
                ClientMessage::Group(req) => Ok(error(
                    not_allowed("end-to-end conversations need a server with a store; this one has none"),
                    request_id(&req),
                )),
                other => Err(other),
            };
        };
        if let ClientMessage::Group(req) = msg {
            let id = request_id(&req);
            return Ok(match self.group(&mail, req, msg_len, bytes_rate).await {
                Ok(reply) => reply,
                Err(r) => error(r, id),
            });
        }
        let room = match &msg {
            ClientMessage::Join { room }
            | ClientMessage::Leave { room }
            | ClientMessage::Who { room }
            | ClientMessage::Send { to: Target::Room(room), .. } => fold_name(room),
            _ => return Err(msg),
        };
        let e2e = match mail.groups.room_through(&mail, &room).await {
            Ok(e2e) => e2e,
            Err(r) => {
                let id = if let ClientMessage::Send { id, .. } = &msg { *id } else { 0 };
                return Ok(error(r, id));
            }
        };
        let Some(e2e) = e2e else { return Err(msg) };
        let encrypted = |how: &str| refused(ErrorCode::EndToEnd, format!("{room:?} is end-to-end encrypted{how}"));
        Ok(match msg {
            ClientMessage::Join { .. } => error(
                encrypted(match e2e.kind {
                    GroupKind::Public => ": join it with an up-to-date client",
                    _ => " and invite-only: ask a member to invite you",
                }),
                0,
            ),
            ClientMessage::Send { id, .. } => error(encrypted(": send to it with an up-to-date client"), id),
            ClientMessage::Leave { room: spelled } => match self.leave_group(&mail, &e2e.group_id).await {
                Ok(()) => Some(ServerMessage::Left { room: spelled }),
                Err(r) => error(r, 0),
            },
            ClientMessage::Who { room: spelled } => match read_group(&mail, &e2e.group_id).await {
                Ok(Some((rec, _))) if rec.is_member(&self.me.name) => {
                    Some(ServerMessage::Members { room: spelled, names: rec.members.into_iter().collect() })
                }
                Ok(_) => error(refused(ErrorCode::NotInRoom, format!("you are not a member of room {room:?}")), 0),
                Err(r) => error(r, 0),
            },
            other => return Err(other),
        })
    }

    /// One delivery-service request.
    async fn group(
        &mut self,
        mail: &Mail,
        req: GroupRequest,
        msg_len: usize,
        bytes_rate: &mut TokenBucket,
    ) -> Result<Option<ServerMessage>, Refusal> {
        let (me, hub) = (self.me, self.hub);
        let max_name = self.settings.limits.max_name_len;
        // Asking what a room is, and creating an open room, are for anyone.
        let open = matches!(req, GroupRequest::RoomInfo { .. } | GroupRequest::CreateRoom { kind: RoomKind::Open, .. });
        if !open && !hub.has_inbox(&me.name) {
            return Err(not_allowed(
                "end-to-end conversations are for users whose name an identity key owns: connect with your identity \
                 key",
            ));
        }
        let check_name = |name: &str| {
            if valid_name(name, max_name) {
                Ok(())
            } else {
                Err(refused(ErrorCode::InvalidName, format!("{name:?} is not a valid name")))
            }
        };
        let event = match req {
            GroupRequest::KeyPackages { last_resort, packages } => self.upload(mail, last_resort, &packages).await?,
            GroupRequest::Claim { user } => {
                check_name(&user)?;
                self.claim(mail, user).await?
            }
            GroupRequest::CreateRoom { room, kind, group_id } => {
                check_name(&room)?;
                return self.create_room(mail, room, kind, group_id).await.map(Some);
            }
            GroupRequest::Commit(c) => self.commit(mail, c, msg_len, bytes_rate).await?,
            GroupRequest::Send { id, group_id, payload } => {
                return self.send(mail, id, group_id, payload, msg_len, bytes_rate).await.map(Some);
            }
            GroupRequest::RoomInfo { room } => {
                check_name(&room)?;
                self.room_info(mail, room).await?
            }
            GroupRequest::GroupInfo { group_id } => {
                let (rec, _) = read_group(mail, &group_id).await?.ok_or_else(|| not_allowed("no such conversation"))?;
                if rec.kind != GroupKind::Public && !rec.is_member(&me.name) {
                    return Err(not_allowed("you are not a member of this conversation"));
                }
                let (epoch, group_info) =
                    rec.group_info.ok_or_else(|| not_allowed("no GroupInfo was published for this conversation"))?;
                GroupEvent::GroupInfo { group_id, epoch, group_info }
            }
        };
        Ok(Some(ServerMessage::Group(event)))
    }

    /// KeyPackages: each must be the uploader's own (name and proven key).
    async fn upload(&self, mail: &Mail, last_resort: bool, packages: &[Vec<u8>]) -> Result<GroupEvent, Refusal> {
        let me = self.me;
        let bad = |text: String| refused(ErrorCode::BadKeyPackage, text);
        let key = ed25519_raw(self.hub.proven_key(me)).ok_or_else(|| {
            bad("end-to-end key packages need an Ed25519 identity key (an RSA key cannot sign MLS messages)".into())
        })?;
        let user = fold_name(&me.name);
        for (i, package) in packages.iter().enumerate() {
            let identity = cipherline_e2e::inspect_key_package(package)
                .map_err(|e| bad(format!("key package {} is not valid: {e}", i + 1)))?;
            if fold_name(&identity.name) != user || identity.key != key {
                return Err(bad(format!("key package {} is not yours: it must name you and your identity key", i + 1)));
            }
        }
        let _held = mail.groups.lock(format!("user/{user}")).await?;
        let prefix = one_time_prefix(&user);
        let mut held = bounded(mail.store.keys(&prefix, "", MAX_ONE_TIME + 1)).await?;
        if last_resort {
            // One last-resort package is kept: the last one given.
            if let Some(package) = packages.last() {
                bounded(mail.store.put(&last_resort_key(&user), package.clone())).await?;
            }
        } else {
            let mut next = held
                .last()
                .and_then(|k| k.get(prefix.len()..))
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(1, |n| n.saturating_add(1));
            for package in packages.iter().take(MAX_ONE_TIME.saturating_sub(held.len())) {
                let key = format!("{prefix}{next:020}");
                bounded(mail.store.cas(&key, None, package.clone())).await?;
                held.push(key);
                next = next.saturating_add(1);
            }
        }
        let has_last_resort = bounded(mail.store.get(&last_resort_key(&user))).await?.is_some();
        let available = u32::try_from(held.len().min(MAX_ONE_TIME)).unwrap_or(u32::MAX);
        tracing::debug!(name = %me.name, uploaded = packages.len(), last_resort, available, "key packages stored");
        Ok(GroupEvent::KeyPackageCount { available, last_resort: has_last_resort })
    }

    /// Claim: the oldest one-time package (deleted), else the last-resort one.
    ///
    /// A one-time package is claimed by deleting it on the condition that
    /// it is still the revision just read (`delete_if`): of several
    /// claims at once, on this node or others sharing the store, exactly
    /// one deletes it and gives it out; the others go on to the next. No
    /// lock is taken: a node-local one would not stop another node.
    async fn claim(&self, mail: &Mail, user: String) -> Result<GroupEvent, Refusal> {
        /// Keys read at a time (a user keeps at most [`MAX_ONE_TIME`]).
        const PAGE: usize = 16;
        // Maybe bound through another node since this one started.
        self.hub.look_up(&user).await;
        if !self.hub.has_inbox(&user) {
            return Err(refused(ErrorCode::UnknownUser, format!("no user named {user:?} is known to this server")));
        }
        let folded = fold_name(&user);
        let prefix = one_time_prefix(&folded);
        let mut after = String::new();
        loop {
            let page = bounded(mail.store.keys(&prefix, &after, PAGE)).await?;
            for key in &page {
                let Some((key_package, revision)) = bounded(mail.store.get(key)).await? else { continue };
                if bounded(mail.store.delete_if(key, revision)).await? {
                    tracing::debug!(by = %self.me.name, user = %folded, "one-time key package claimed");
                    return Ok(GroupEvent::KeyPackage { user, key_package });
                }
            }
            // Keys sort after `after` strictly, so each page moves on.
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.clone(),
                _ => break,
            }
        }
        match bounded(mail.store.get(&last_resort_key(&folded))).await? {
            Some((key_package, _)) => {
                tracing::debug!(by = %self.me.name, user = %folded, "last-resort key package claimed");
                Ok(GroupEvent::KeyPackage { user, key_package })
            }
            None => Err(refused(
                ErrorCode::NoKeyPackage,
                format!("{user:?} has no end-to-end key package yet: they must run an up-to-date client once"),
            )),
        }
    }

    /// CreateRoom: an open room is joined; an end-to-end one recorded.
    async fn create_room(
        &mut self,
        mail: &Mail,
        room: String,
        kind: RoomKind,
        group_id: Vec<u8>,
    ) -> Result<ServerMessage, Refusal> {
        let folded = fold_name(&room);
        // What other nodes sharing the store created is taken too.
        mail.groups.room_through(mail, &folded).await?;
        self.hub.refresh_members(&folded).await;
        let exists = || refused(ErrorCode::RoomExists, format!("room {room:?} exists already"));
        let taken =
            |groups: &Groups| folded == LOBBY || self.hub.open_room_exists(&folded) || groups.room(&folded).is_some();
        let kind = match kind {
            RoomKind::Open => {
                if taken(&mail.groups) {
                    return Err(exists());
                }
                self.join(&folded).await?;
                return Ok(ServerMessage::Joined { room });
            }
            RoomKind::Invite => GroupKind::Invite,
            RoomKind::Public => GroupKind::Public,
        };
        if group_id.is_empty() {
            return Err(refused(ErrorCode::BadRequest, "an end-to-end room needs its MLS group id"));
        }
        let _room_lock = mail.groups.lock(format!("room/{folded}")).await?;
        let _group_lock = mail.groups.lock(group_key(&group_id)).await?;
        if taken(&mail.groups) {
            return Err(exists());
        }
        if mail.groups.room_count() >= MAX_E2E_ROOMS {
            return Err(not_allowed(format!("this server keeps at most {MAX_E2E_ROOMS} end-to-end rooms")));
        }
        if read_group(mail, &group_id).await?.is_some() {
            return Err(refused(ErrorCode::BadRequest, "that group id is in use: choose a fresh random one"));
        }
        let creator = fold_name(&self.me.name);
        let rec = Record {
            kind,
            room: Some(folded.clone()),
            epoch: 0,
            admins: [creator.clone()].into(),
            members: [creator].into(),
            group_info: None,
        };
        write_group(mail, &group_id, &rec, None).await?;
        match tokio::time::timeout(Duration::from_secs(10), mail.store.cas(&room_key(&folded), None, group_id.clone()))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(StoreError::Conflict { .. })) => return Err(exists()),
            _ => return Err(refused(ErrorCode::StoreFailed, "the server could not record the room; try again")),
        }
        lock(&mail.groups.rooms).insert(folded.clone(), Room { group_id: group_id.clone(), kind });
        tracing::info!(name = %self.me.name, room = %folded, group = %short(&group_id), ?kind, "end-to-end room created");
        Ok(ServerMessage::Joined { room })
    }

    /// Commit: sequencing, authorization, fan-out, then the answer.
    async fn commit(
        &self,
        mail: &Mail,
        c: CommitRequest,
        msg_len: usize,
        bytes_rate: &mut TokenBucket,
    ) -> Result<GroupEvent, Refusal> {
        let (me, hub) = (self.me, self.hub);
        let max_name = self.settings.limits.max_name_len;
        if c.group_id.is_empty() {
            return Err(refused(ErrorCode::BadRequest, "a commit needs its group id"));
        }
        let _held = mail.groups.lock(group_key(&c.group_id)).await?;
        let sender = fold_name(&me.name);
        // Maybe bound through another node since this one started.
        for name in &c.invited {
            hub.look_up(name).await;
        }
        let (before, next, rev) = match read_group(mail, &c.group_id).await? {
            // The first message to a user: a direct conversation of two.
            None if c.epoch == 0 && !c.external && c.invited.len() == 1 && c.removed.is_empty() => {
                let invited = folded_names(&c.invited, max_name)?;
                let Some(other) = invited.first().filter(|o| **o != sender && hub.has_inbox(o)) else {
                    return Err(not_allowed(format!(
                        "{:?} cannot take part in end-to-end conversations (no identity key owns that name here)",
                        c.invited.first().map_or("", String::as_str)
                    )));
                };
                if c.welcome.is_none() {
                    return Err(refused(ErrorCode::BadRequest, "a commit that adds members needs their Welcome"));
                }
                let before = Record {
                    kind: GroupKind::Direct,
                    room: None,
                    epoch: 0,
                    admins: BTreeSet::new(),
                    members: [sender.clone()].into(),
                    group_info: None,
                };
                let mut next = before.clone();
                next.members.insert(other.clone());
                next.epoch = 1;
                next.group_info = c.group_info.clone().map(|gi| (1, gi));
                (before, next, None)
            }
            None => return Err(not_allowed("no such conversation")),
            Some((rec, rev)) => {
                if !c.external && !rec.is_member(&sender) {
                    return Err(not_allowed("you are not a member of this conversation"));
                }
                if c.epoch != rec.epoch {
                    tracing::debug!(name = %me.name, group = %short(&c.group_id), epoch = c.epoch, current = rec.epoch, "stale commit");
                    return Ok(GroupEvent::Stale { request: c.request, group_id: c.group_id, epoch: rec.epoch });
                }
                let next = apply(&rec, &me.name, &c, max_name, |n| hub.has_inbox(n))?;
                (rec, next, Some(rev))
            }
        };
        // The new record must fit in the store before anyone gets the
        // commit: a record that cannot be written would leave the commit
        // delivered and the epoch where it was.
        let max = mail.store.max_value_bytes();
        if next.encode().map_err(damaged)?.len() > max {
            return Err(refused(
                ErrorCode::MessageTooLarge,
                format!("the group's record with this GroupInfo would exceed the server's {max} bytes"),
            ));
        }
        let room = before.room.clone();
        let delivery = |kind, epoch, payload: Vec<u8>| GroupDelivery {
            id: mail.next_id(),
            timestamp_ms: now_ms(),
            from: me.name.clone(),
            group_id: c.group_id.clone(),
            room: room.clone(),
            kind,
            epoch,
            payload,
            seq: 0,
        };
        // Like a room message, a commit costs its size times its recipients
        // (§13.5).
        let others: Vec<String> = before.members.iter().filter(|m| **m != sender).cloned().collect();
        let invited: Vec<String> =
            next.members.difference(&before.members).filter(|m| **m != sender).cloned().collect();
        charge(bytes_rate, &self.settings.limits, msg_len, others.len() + invited.len())?;
        // The Welcome first: an invitation that cannot be kept (a full
        // queue) refuses the commit before any member has it.
        if let Some(welcome) = c.welcome.filter(|_| !invited.is_empty()) {
            let (_, full) = self.fan_out(mail, &invited, delivery(PayloadKind::Welcome, 0, welcome), false).await?;
            if full > 0 {
                return Err(refused(
                    ErrorCode::QueueFull,
                    "an invited user's queue (or the server's store) is full: the invitation was not kept; try again \
                     later",
                ));
            }
        }
        // Everyone who was a member, removed ones too (so they learn it).
        let size = c.commit.len();
        self.fan_out(mail, &others, delivery(PayloadKind::Commit, c.epoch, c.commit), false).await?;
        write_group(mail, &c.group_id, &next, rev).await?;
        tracing::debug!(
            name = %me.name, group = %short(&c.group_id), epoch = next.epoch, size, members = next.members.len(),
            invited = invited.len(), "commit accepted"
        );
        Ok(GroupEvent::Committed { request: c.request, group_id: c.group_id, epoch: next.epoch })
    }

    /// Send: an application message to the other members, acknowledged
    /// like a room message once stored.
    async fn send(
        &self,
        mail: &Mail,
        id: u64,
        group_id: Vec<u8>,
        payload: Vec<u8>,
        msg_len: usize,
        bytes_rate: &mut TokenBucket,
    ) -> Result<ServerMessage, Refusal> {
        let me = self.me;
        let (rec, _) = read_group(mail, &group_id).await?.ok_or_else(|| not_allowed("no such conversation"))?;
        if !rec.is_member(&me.name) {
            return Err(not_allowed("you are not a member of this conversation"));
        }
        let sender = fold_name(&me.name);
        let others: Vec<String> = rec.members.iter().filter(|m| **m != sender).cloned().collect();
        charge(bytes_rate, &self.settings.limits, msg_len, others.len())?;
        let size = payload.len();
        let d = GroupDelivery {
            id: mail.next_id(),
            timestamp_ms: now_ms(),
            from: me.name.clone(),
            group_id,
            room: rec.room,
            kind: PayloadKind::Application,
            epoch: 0,
            payload,
            seq: 0,
        };
        let (id_out, timestamp_ms) = (d.id, d.timestamp_ms);
        let (queued, full) = self.fan_out(mail, &others, d, *self.receipts).await?;
        tracing::trace!(name = %me.name, size, queued, full, "end-to-end message stored");
        Ok(ServerMessage::Ack { client_id: id, id: id_out, timestamp_ms, queued, live: 0, full })
    }

    /// Stores a delivery for each of `to` (folded names) and rings those
    /// connected; returns how many got it and how many queues were full.
    /// A test's tampering relay (`RunOptions`) decides here what is
    /// stored instead.
    async fn fan_out(
        &self,
        mail: &Mail,
        to: &[String],
        d: GroupDelivery,
        receipts: bool,
    ) -> Result<(u32, u32), Refusal> {
        if to.is_empty() {
            return Ok((0, 0));
        }
        let deliveries = match &mail.group_tamper {
            // Test-only: a hostile relay's own choice of what to deliver.
            Some(tamper) => tamper(d)
                .into_iter()
                .map(|mut d| {
                    if d.id == 0 {
                        d.id = mail.next_id();
                    }
                    d
                })
                .collect(),
            None => vec![d],
        };
        let (mut queued, mut full) = (0u32, 0u32);
        for d in deliveries {
            let now = d.timestamp_ms;
            let frame = ServerMessage::Group(GroupEvent::Message(d))
                .encode()
                .map_err(|_| refused(ErrorCode::MessageTooLarge, "the message is too large to relay"))?;
            let results = mail.store(to, &frame, receipts, now).await?;
            for (name, result) in to.iter().zip(results) {
                if matches!(result, Appended::Stored(_)) {
                    queued = queued.saturating_add(1);
                    self.hub.wake(name);
                } else {
                    full = full.saturating_add(1);
                }
            }
        }
        Ok((queued, full))
    }

    /// RoomInfo: what a room is.
    async fn room_info(&self, mail: &Mail, room: String) -> Result<GroupEvent, Refusal> {
        let folded = fold_name(&room);
        if let Some(e2e) = mail.groups.room_through(mail, &folded).await? {
            let (rec, _) = read_group(mail, &e2e.group_id).await?.ok_or_else(|| damaged("room without its group"))?;
            return Ok(GroupEvent::RoomInfo {
                room,
                kind: rec.kind.room_kind(),
                group_id: e2e.group_id,
                epoch: rec.epoch,
                admins: rec.admins.into_iter().collect(),
            });
        }
        self.hub.refresh_members(&folded).await;
        let open = folded == LOBBY || self.hub.open_room_exists(&folded);
        Ok(GroupEvent::RoomInfo {
            room,
            kind: open.then_some(RoomKind::Open),
            group_id: Vec::new(),
            epoch: 0,
            admins: Vec::new(),
        })
    }

    /// Leave on an end-to-end room: the sender is no longer a member at
    /// the relay; the others' clients commit its MLS removal later.
    async fn leave_group(&self, mail: &Mail, group_id: &[u8]) -> Result<(), Refusal> {
        let _held = mail.groups.lock(group_key(group_id)).await?;
        let (mut rec, rev) = read_group(mail, group_id).await?.ok_or_else(|| damaged("room without its group"))?;
        let me = fold_name(&self.me.name);
        let room = rec.room.clone().unwrap_or_default();
        if !rec.members.remove(&me) {
            return Err(refused(ErrorCode::NotInRoom, format!("you are not a member of room {room:?}")));
        }
        rec.admins.remove(&me);
        write_group(mail, group_id, &rec, Some(rev)).await?;
        tracing::debug!(name = %self.me.name, room = %room, "left an end-to-end room");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
