//! End-to-end conversations (PROTOCOL.md §13.11) for a client: direct
//! messages and end-to-end rooms as MLS groups, through the relay's
//! delivery service.
//!
//! # Contract
//!
//! - The MLS state lives in `mls.sqlite3` in the data directory (0600).
//!   Several `cipherline` processes of one data directory may run at once
//!   (a `listen` beside a `send`): every operation on the state takes the
//!   exclusive lock on `mls.lock` first (waiting at most
//!   [`LOCK_TIMEOUT`]), loads the group afresh, and stores it before
//!   releasing the lock, so no two processes ever encrypt with the same
//!   key or apply one commit twice.
//! - Each delivered MLS message is processed once per data directory: the
//!   outcome is recorded under the server's id ([`crate::groups`]) and a
//!   later delivery of the same id (another process, a reconnect) gets the
//!   recorded outcome.
//! - What a message says and who sent it come from MLS alone: the sender
//!   is the credential in the group that signed it, never the relay's
//!   `from`. A message that does not decrypt or verify is reported
//!   ([`Outcome::Failed`]), never shown as from anyone.
//! - A commit is applied only once the relay accepted it (one per epoch);
//!   one that lost the epoch is dropped, and the caller is told to catch up.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cipherline_e2e::{Conversation, E2eError, Incoming, Member, Suite};
use cipherline_proto::app::{
    CommitRequest, E2eContent, GroupDelivery, PayloadKind, RoomKind, ServerMessage, Target, fold_name,
};
use cipherline_proto::crypto::sign::IdentityKey;

use crate::client::{Acked, Client};
use crate::delivery::CommitOutcome;
use crate::error::ClientError;
use crate::groups::{GroupKind, Outcome};
use crate::local::LocalStore;

mod split;

/// The MLS state file in the data directory.
pub const STATE_FILE: &str = "mls.sqlite3";
/// The lock file serialising processes on the MLS state.
pub const LOCK_FILE: &str = "mls.lock";
/// Longest wait for another process's MLS operation.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// One-time KeyPackages a client keeps at the relay.
pub const KEY_PACKAGE_TARGET: u32 = 16;
/// Below this many, a client uploads more.
pub const KEY_PACKAGE_LOW: u32 = 8;

/// A user's end-to-end conversations on one server.
pub struct Conversations {
    member: Member,
    lock: PathBuf,
    store: LocalStore,
    server: String,
    me: String,
}

fn e2e(e: E2eError) -> ClientError {
    ClientError::EndToEnd(e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The exclusive lock on the MLS state, released on drop.
struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn lock(path: &Path) -> Result<Locked, ClientError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| ClientError::EndToEnd(format!("cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Locked(file)),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(TryLockError::WouldBlock) => {
                return Err(ClientError::EndToEnd(format!(
                    "another cipherline process held {} for {} s",
                    path.display(),
                    LOCK_TIMEOUT.as_secs()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(ClientError::EndToEnd(format!("cannot lock {}: {e}", path.display())));
            }
        }
    }
}

impl Conversations {
    /// Opens the end-to-end state of data directory `dir` for `me` on
    /// `server`; `None` if the identity key cannot take part (RSA: MLS
    /// signs with Ed25519 only).
    pub fn open(
        dir: &Path,
        server: &str,
        me: &str,
        identity: &IdentityKey,
        store: LocalStore,
    ) -> Result<Option<Self>, ClientError> {
        if identity.ed25519_mls_secret().is_none() {
            return Ok(None);
        }
        let lock_path = dir.join(LOCK_FILE);
        let _guard = lock(&lock_path)?;
        let member = Member::open(&dir.join(STATE_FILE), me, identity, Suite::default()).map_err(e2e)?;
        Ok(Some(Conversations { member, lock: lock_path, store, server: server.to_owned(), me: me.to_owned() }))
    }

    /// The local store this uses.
    #[must_use]
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    fn load(&self, group_id: &[u8]) -> Result<Conversation, ClientError> {
        self.member
            .load(group_id)
            .map_err(e2e)?
            .ok_or_else(|| ClientError::EndToEnd("this client is not in that conversation".into()))
    }

    /// Makes sure the relay holds KeyPackages for this user (others need
    /// one to start a conversation with it): a last-resort one, and
    /// [`KEY_PACKAGE_TARGET`] one-time ones when it holds fewer than
    /// [`KEY_PACKAGE_LOW`].
    pub async fn publish_key_packages(&self, client: &mut Client) -> Result<(), ClientError> {
        let first = {
            let _guard = lock(&self.lock)?;
            self.member.key_packages(1).map_err(e2e)?
        };
        let (available, has_last_resort) = client.upload_key_packages(false, first).await?;
        if !has_last_resort {
            let last = {
                let _guard = lock(&self.lock)?;
                self.member.last_resort_key_package().map_err(e2e)?
            };
            client.upload_key_packages(true, vec![last]).await?;
        }
        if available < KEY_PACKAGE_LOW {
            let more = KEY_PACKAGE_TARGET - available;
            let packages = {
                let _guard = lock(&self.lock)?;
                self.member.key_packages(more as usize).map_err(e2e)?
            };
            client.upload_key_packages(false, packages).await?;
        }
        Ok(())
    }

    /// Processes one delivered MLS message (or returns what processing it
    /// gave the first time).
    pub fn handle(&self, d: &GroupDelivery) -> Result<Outcome, ClientError> {
        if let Some(done) = self.store.processed(&self.server, d.id)? {
            return Ok(done);
        }
        let _guard = lock(&self.lock)?;
        // Again under the lock: another process may have just done it.
        if let Some(done) = self.store.processed(&self.server, d.id)? {
            return Ok(done);
        }
        let outcome = self.process(d)?;
        self.store.set_processed(&self.server, d.id, &outcome)?;
        Ok(outcome)
    }

    /// The conversation a delivery belongs to, as far as known.
    fn target_of(&self, d: &GroupDelivery) -> Result<Target, ClientError> {
        Ok(match (d.room.clone(), self.store.group(&self.server, &d.group_id)?) {
            (_, Some(GroupKind::Room(room))) | (Some(room), None) => Target::Room(room),
            (_, Some(GroupKind::Direct(peer))) => Target::User(peer),
            (None, None) => Target::User(d.from.clone()),
        })
    }

    fn process(&self, d: &GroupDelivery) -> Result<Outcome, ClientError> {
        let target = self.target_of(d)?;
        let failed = |reason: String| Outcome::Failed { from: d.from.clone(), target: target.clone(), reason };
        match d.kind {
            PayloadKind::Welcome => match self.member.join(&d.payload) {
                Ok(conv) => {
                    let members = conv.members().map_err(e2e)?;
                    let others: Vec<String> = members
                        .iter()
                        .map(|(_, id)| id.name.clone())
                        .filter(|n| fold_name(n) != fold_name(&self.me))
                        .collect();
                    let (kind, target) = match &d.room {
                        Some(room) => (GroupKind::Room(room.clone()), Target::Room(room.clone())),
                        None => match others.as_slice() {
                            [peer] => (GroupKind::Direct(peer.clone()), Target::User(peer.clone())),
                            _ => {
                                let _ = self.member.forget(conv.id());
                                return Ok(failed("a direct conversation must have exactly two members".into()));
                            }
                        },
                    };
                    self.store.set_group(&self.server, conv.id(), &kind)?;
                    Ok(Outcome::Joined { target, members: others.join(", ") })
                }
                Err(e) => Ok(failed(format!("an invitation could not be opened: {e}"))),
            },
            PayloadKind::Commit | PayloadKind::Application => {
                let Some(mut conv) = self.member.load(&d.group_id).map_err(e2e)? else {
                    return Ok(failed("a message for a conversation this client is not in".into()));
                };
                match conv.receive(&d.payload) {
                    Ok(Incoming::Application(r)) => match E2eContent::decode(&r.plaintext) {
                        Ok(content) => Ok(Outcome::Message {
                            from: r.sender.name,
                            key: r.sender.key,
                            target: match target {
                                Target::User(_) => Target::User(self.me.clone()),
                                room => room,
                            },
                            text: content.text,
                            sent_at_ms: content.sent_at_ms,
                        }),
                        Err(_) => {
                            Ok(failed(format!("{} sent something this client does not understand", r.sender.name)))
                        }
                    },
                    Ok(Incoming::Commit(change)) => {
                        if change.removed_me {
                            let _ = self.member.forget(&d.group_id);
                            self.store.forget_group(&self.server, &d.group_id)?;
                            return Ok(Outcome::Removed { by: change.committer.name, target });
                        }
                        let summary: Vec<String> = change
                            .added
                            .iter()
                            .map(|id| format!("+{}", id.name))
                            .chain(change.removed.iter().map(|id| format!("-{}", id.name)))
                            .collect();
                        Ok(Outcome::Changed { by: change.committer.name, target, summary: summary.join(" ") })
                    }
                    Err(e) => Ok(failed(format!(
                        "a message could not be decrypted or verified (altered, forged or replayed on the way): {e}"
                    ))),
                }
            }
        }
    }

    /// The direct conversation with `peer`, if there is one.
    fn direct_group(&self, peer: &str) -> Result<Option<Vec<u8>>, ClientError> {
        for id in self.store.groups_of(&self.server, &GroupKind::Direct(peer.to_owned()))? {
            if self.member.load(&id).map_err(e2e)?.is_some() {
                return Ok(Some(id));
            }
            self.store.forget_group(&self.server, &id)?;
        }
        Ok(None)
    }

    /// The end-to-end group of `room`, if this client is in it.
    pub fn room_group(&self, room: &str) -> Result<Option<Vec<u8>>, ClientError> {
        for id in self.store.groups_of(&self.server, &GroupKind::Room(room.to_owned()))? {
            if self.member.load(&id).map_err(e2e)?.is_some() {
                return Ok(Some(id));
            }
            self.store.forget_group(&self.server, &id)?;
        }
        Ok(None)
    }

    /// This client's epoch of the end-to-end room `room`, if it is in it.
    pub fn room_epoch(&self, room: &str) -> Result<Option<u64>, ClientError> {
        let Some(group_id) = self.room_group(room)? else { return Ok(None) };
        let _guard = lock(&self.lock)?;
        Ok(Some(self.load(&group_id)?.epoch()))
    }

    /// Starts a direct conversation with `peer` from one of its
    /// KeyPackages, whose key `accept` approves (the caller's trust check:
    /// a changed key is refused there).
    async fn start_direct(
        &self,
        client: &mut Client,
        peer: &str,
        accept: &mut dyn FnMut(&str, &[u8; 32]) -> Result<(), ClientError>,
    ) -> Result<Vec<u8>, ClientError> {
        let package = client.claim_key_package(peer).await?;
        let identity = cipherline_e2e::inspect_key_package(&package).map_err(e2e)?;
        if fold_name(&identity.name) != fold_name(peer) {
            return Err(ClientError::EndToEnd(format!(
                "the relay gave a key package of someone else for {}",
                crate::display::escape(peer)
            )));
        }
        accept(&identity.name, &identity.key)?;
        let guard = lock(&self.lock)?;
        let mut conv = self.member.create().map_err(e2e)?;
        let pending = conv.add(&[package]).map_err(e2e)?;
        let group_id = conv.id().to_vec();
        let request = CommitRequest {
            request: 0,
            group_id: group_id.clone(),
            epoch: pending.epoch,
            external: false,
            commit: pending.commit,
            welcome: pending.welcome,
            group_info: None,
            invited: vec![peer.to_owned()],
            removed: vec![],
        };
        match client.commit(request).await {
            Ok(CommitOutcome::Committed(_)) => {
                conv.confirm().map_err(e2e)?;
                drop(guard);
                self.store.set_group(&self.server, &group_id, &GroupKind::Direct(peer.to_owned()))?;
                Ok(group_id)
            }
            Ok(CommitOutcome::Stale(_)) => {
                let _ = self.member.forget(&group_id);
                Err(ClientError::EndToEnd("the relay refused to start the conversation".into()))
            }
            Err(e) => {
                let _ = self.member.forget(&group_id);
                Err(e)
            }
        }
    }

    /// Encrypts `text` in group `group_id` and hands it to the relay;
    /// waits for the Ack.
    async fn send_in(&self, client: &mut Client, group_id: &[u8], text: &str) -> Result<Acked, ClientError> {
        let content = E2eContent { sent_at_ms: now_ms(), text: text.to_owned() };
        let payload = {
            let _guard = lock(&self.lock)?;
            let mut conv = self.load(group_id)?;
            conv.encrypt(&content.encode()).map_err(e2e)?
        };
        client.group_send_acked(group_id, payload).await
    }

    /// Sends `text` to `peer` end to end, starting the conversation from
    /// one of its KeyPackages if there is none yet (also when `peer` is
    /// offline). `accept` checks the key of a new conversation's peer.
    pub async fn send_direct(
        &self,
        client: &mut Client,
        peer: &str,
        text: &str,
        accept: &mut dyn FnMut(&str, &[u8; 32]) -> Result<(), ClientError>,
    ) -> Result<Acked, ClientError> {
        let group_id = match self.direct_group(peer)? {
            Some(id) => id,
            None => self.start_direct(client, peer, accept).await?,
        };
        self.send_in(client, &group_id, text).await
    }

    /// Sends `text` to the end-to-end room `room` (this client must be in
    /// its group).
    pub async fn send_room(&self, client: &mut Client, room: &str, text: &str) -> Result<Acked, ClientError> {
        let group_id = self.room_group(room)?.ok_or_else(|| {
            ClientError::EndToEnd(format!(
                "this client is not in the end-to-end room {} (or has not caught up with its invitation yet: run \
                 `cipherline listen` once)",
                crate::display::escape(room)
            ))
        })?;
        self.send_in(client, &group_id, text).await
    }

    /// Creates the end-to-end room `room` (`public`: anyone may join by
    /// external commit), with this user as its first member and admin.
    pub async fn create_room(&self, client: &mut Client, room: &str, public: bool) -> Result<(), ClientError> {
        let (group_id, kind) = {
            let _guard = lock(&self.lock)?;
            let conv = if public { self.member.create_public() } else { self.member.create() }.map_err(e2e)?;
            (conv.id().to_vec(), if public { RoomKind::Public } else { RoomKind::Invite })
        };
        if let Err(e) = client.create_room(room, kind, group_id.clone()).await {
            let _ = self.member.forget(&group_id);
            return Err(e);
        }
        self.store.set_group(&self.server, &group_id, &GroupKind::Room(room.to_owned()))?;
        if public {
            // The first GroupInfo, so the first joiner has one.
            self.commit_in(client, &group_id, |conv| conv.update(), &[], &[]).await?;
        }
        Ok(())
    }

    /// Builds a commit with `build`, submits it, applies it if the relay
    /// accepted it. A commit that lost its epoch is dropped: the caller
    /// must process what arrived meanwhile and try again.
    async fn commit_in(
        &self,
        client: &mut Client,
        group_id: &[u8],
        build: impl FnOnce(&mut Conversation) -> Result<cipherline_e2e::Pending, E2eError>,
        invited: &[String],
        removed: &[String],
    ) -> Result<(), ClientError> {
        let _guard = lock(&self.lock)?;
        let mut conv = self.load(group_id)?;
        let pending = build(&mut conv).map_err(e2e)?;
        let request = CommitRequest {
            request: 0,
            group_id: group_id.to_vec(),
            epoch: pending.epoch,
            external: false,
            commit: pending.commit,
            welcome: pending.welcome,
            group_info: pending.group_info,
            invited: invited.to_vec(),
            removed: removed.to_vec(),
        };
        match client.commit(request).await {
            Ok(CommitOutcome::Committed(_)) => conv.confirm().map_err(e2e),
            Ok(CommitOutcome::Stale(epoch)) => {
                conv.abandon().map_err(e2e)?;
                Err(ClientError::Stale { epoch })
            }
            Err(e) => {
                let _ = conv.abandon();
                Err(e)
            }
        }
    }

    /// Adds `users` to the end-to-end room `room`, each from one of its
    /// KeyPackages (whose key `accept` approves).
    pub async fn invite(
        &self,
        client: &mut Client,
        room: &str,
        users: &[String],
        accept: &mut dyn FnMut(&str, &[u8; 32]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let group_id = self.room_group(room)?.ok_or_else(|| not_member(room))?;
        let mut packages = Vec::with_capacity(users.len());
        for user in users {
            let package = client.claim_key_package(user).await?;
            let identity = cipherline_e2e::inspect_key_package(&package).map_err(e2e)?;
            if fold_name(&identity.name) != fold_name(user) {
                return Err(ClientError::EndToEnd(format!(
                    "the relay gave a key package of someone else for {}",
                    crate::display::escape(user)
                )));
            }
            accept(&identity.name, &identity.key)?;
            packages.push(package);
        }
        self.commit_in(client, &group_id, |conv| conv.add(&packages), users, &[]).await
    }

    /// Removes `users` from the end-to-end room `room`.
    pub async fn remove(&self, client: &mut Client, room: &str, users: &[String]) -> Result<(), ClientError> {
        let group_id = self.room_group(room)?.ok_or_else(|| not_member(room))?;
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        self.commit_in(client, &group_id, |conv| conv.remove(&names), &[], users).await
    }

    /// Joins the public end-to-end room `room` by external commit, from
    /// the GroupInfo the relay keeps.
    pub async fn join_public(&self, client: &mut Client, room: &str) -> Result<(), ClientError> {
        let info = client.room_info(room).await?;
        if info.kind != Some(RoomKind::Public) {
            return Err(ClientError::EndToEnd(format!(
                "{} is not a public end-to-end room: ask a member to invite you",
                crate::display::escape(room)
            )));
        }
        let (_, group_info) = client.group_info(&info.group_id).await?;
        let guard = lock(&self.lock)?;
        let (conv, pending) = self.member.join_external(&group_info).map_err(e2e)?;
        let group_id = conv.id().to_vec();
        let request = CommitRequest {
            request: 0,
            group_id: group_id.clone(),
            epoch: pending.epoch,
            external: true,
            commit: pending.commit,
            welcome: None,
            group_info: pending.group_info,
            invited: vec![self.me.clone()],
            removed: vec![],
        };
        let outcome = client.commit(request).await;
        drop(guard);
        match outcome {
            Ok(CommitOutcome::Committed(_)) => {
                self.store.set_group(&self.server, &group_id, &GroupKind::Room(room.to_owned()))?;
                Ok(())
            }
            Ok(CommitOutcome::Stale(epoch)) => {
                let _ = self.member.forget(&group_id);
                Err(ClientError::Stale { epoch })
            }
            Err(e) => {
                let _ = self.member.forget(&group_id);
                Err(e)
            }
        }
    }

    /// Leaves the end-to-end room `room`: the relay stops delivering to
    /// this user, and this client forgets the group (the remaining members
    /// remove it from the MLS group).
    pub async fn leave(&self, client: &mut Client, room: &str) -> Result<(), ClientError> {
        client.leave(room).await?;
        if let Some(group_id) = self.room_group(room)? {
            let _guard = lock(&self.lock)?;
            let _ = self.member.forget(&group_id);
            self.store.forget_group(&self.server, &group_id)?;
        }
        Ok(())
    }

    /// The members of the end-to-end room `room` as the MLS group says
    /// (names and Ed25519 keys, authenticated by the group).
    pub fn members(&self, room: &str) -> Result<Vec<(String, [u8; 32])>, ClientError> {
        let group_id = self.room_group(room)?.ok_or_else(|| not_member(room))?;
        let _guard = lock(&self.lock)?;
        let conv = self.load(&group_id)?;
        Ok(conv.members().map_err(e2e)?.into_iter().map(|(_, id)| (id.name, id.key)).collect())
    }

    /// Sends a leaf-key update in `group_id` if it is due (by messages
    /// sent and by time), for post-compromise security. A lost race for
    /// the epoch is not an error: the next message tries again.
    pub async fn update_if_due(&self, client: &mut Client, group_id: &[u8]) -> Result<bool, ClientError> {
        let due = {
            let _guard = lock(&self.lock)?;
            self.load(group_id)?.needs_update(now_ms())
        };
        if !due {
            return Ok(false);
        }
        match self.commit_in(client, group_id, Conversation::update, &[], &[]).await {
            Ok(()) => Ok(true),
            Err(ClientError::Stale { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// For a one-shot command that has no other reader: starts delivery
    /// of this user's queue after `cursor` and processes the MLS messages
    /// that arrive until none has come for `quiet` (at most `limit` in
    /// all), without acknowledging anything (a `listen` shows them later,
    /// from the recorded outcomes). Brings this client's groups up to the
    /// relay's epochs before it sends or commits.
    pub async fn catch_up(
        &self,
        client: &mut Client,
        cursor: u64,
        quiet: Duration,
        limit: Duration,
    ) -> Result<(), ClientError> {
        client.resume(cursor).await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let wait = (tokio::time::Instant::now() + quiet).min(deadline);
            match tokio::time::timeout_at(wait, client.recv()).await {
                Err(_) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(ServerMessage::Group(cipherline_proto::app::GroupEvent::Message(d)))) => {
                    self.handle(&d)?;
                }
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn not_member(room: &str) -> ClientError {
    ClientError::EndToEnd(format!("this client is not in the end-to-end room {}", crate::display::escape(room)))
}
