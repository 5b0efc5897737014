//! End-to-end conversations (PROTOCOL.md §13.11) for a client: direct
//! messages and end-to-end rooms as MLS groups, through the relay's
//! delivery service.
//!
//! # Contract
//!
//! - The MLS state of a name lives in `mls/NAME.sqlite3` in the data
//!   directory (the name folded; the directory 0700, the file 0600): names
//!   that share a data directory (and so an identity key) are separate
//!   members, each with its own groups. Several `cipherline` processes of
//!   one data directory may run at once (a `listen` beside a `send`): every
//!   operation on a name's state takes the exclusive lock on
//!   `mls/NAME.lock` first (waiting at most
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

use cipherline_e2e::{Conversation, E2eError, Incoming, Label, Member, Suite};
use cipherline_proto::app::{
    CommitRequest, E2eBody, E2eContent, FileAnnouncement, GroupDelivery, PayloadKind, RoomKind, ServerMessage, Target,
    fold_name,
};
use cipherline_proto::crypto::sign::IdentityKey;

use crate::client::{Acked, Client};
use crate::delivery::CommitOutcome;
use crate::error::ClientError;
use crate::files::records::{DownloadRecord, DownloadState};
use crate::groups::{GroupKind, Outcome};
use crate::local::LocalStore;

/// About how many bytes of a Welcome each member of the group takes (its
/// leaf in the ratchet tree, with the X-Wing suite's public keys): 1,384,829
/// bytes at 1,000 members (BENCHMARKS.md).
const TREE_BYTES_PER_MEMBER: u64 = 1400;

/// The directory of the MLS state files in the data directory.
pub const STATE_DIR: &str = "mls";
/// Longest wait for another process's MLS operation.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// One-time KeyPackages a client keeps at the relay.
pub const KEY_PACKAGE_TARGET: u32 = 16;
/// Below this many, a client uploads more.
pub const KEY_PACKAGE_LOW: u32 = 8;
/// KeyPackages per upload message.
const UPLOAD_BATCH: usize = 4;

/// The caller's trust check on a key from a KeyPackage (name, raw
/// Ed25519 key): `Err` refuses to start a conversation with it.
pub type KeyCheck<'a> = dyn FnMut(&str, &[u8; 32]) -> Result<(), ClientError> + 'a;

/// A user's end-to-end conversations on one server.
pub struct Conversations {
    member: Member,
    lock: PathBuf,
    store: LocalStore,
    /// The server and this name: what the local tables are keyed by.
    scope: String,
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

/// Creates `dir` (mode 0700) if needed.
fn make_private_dir(dir: &Path) -> Result<(), ClientError> {
    let err = |e: std::io::Error| ClientError::EndToEnd(format!("cannot create {}: {e}", dir.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        if !dir.is_dir() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(err)?;
    Ok(())
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
        let state = dir.join(STATE_DIR);
        make_private_dir(&state)?;
        let folded = fold_name(me);
        let lock_path = state.join(format!("{folded}.lock"));
        let _guard = lock(&lock_path)?;
        let member =
            Member::open(&state.join(format!("{folded}.sqlite3")), me, identity, Suite::default()).map_err(e2e)?;
        let scope = format!("{server} {folded}");
        Ok(Some(Conversations { member, lock: lock_path, store, scope, me: me.to_owned() }))
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
            // A few per upload: an X-Wing KeyPackage is about 2.5 KB, and
            // a server's max_message may be as low as 17,408 bytes.
            for batch in packages.chunks(UPLOAD_BATCH) {
                client.upload_key_packages(false, batch.to_vec()).await?;
            }
        }
        Ok(())
    }

    /// Processes one delivered MLS message (or returns what processing it
    /// gave the first time).
    pub fn handle(&self, d: &GroupDelivery) -> Result<Outcome, ClientError> {
        if let Some(done) = self.store.processed(&self.scope, d.id)? {
            return Ok(done);
        }
        let _guard = lock(&self.lock)?;
        // Again under the lock: another process may have just done it.
        if let Some(done) = self.store.processed(&self.scope, d.id)? {
            return Ok(done);
        }
        let outcome = self.process(d)?;
        self.store.set_processed(&self.scope, d.id, &outcome)?;
        Ok(outcome)
    }

    /// The conversation a delivery belongs to, as far as known.
    fn target_of(&self, d: &GroupDelivery) -> Result<Target, ClientError> {
        Ok(match (d.room.clone(), self.store.group(&self.scope, &d.group_id)?) {
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
                Ok(conv) => self.joined(d, &conv).or_else(|reason| {
                    // Not what it claims: never kept, never used.
                    let _ = self.member.forget(conv.id());
                    Ok(failed(reason))
                }),
                Err(E2eError::AlreadyJoined) => {
                    Ok(failed("an invitation to a conversation this client is already in (replayed)".into()))
                }
                Err(e) => Ok(failed(format!("an invitation could not be opened: {e}"))),
            },
            PayloadKind::Commit | PayloadKind::Application => {
                let Some(mut conv) = self.member.load(&d.group_id).map_err(e2e)? else {
                    return Ok(failed("a message for a conversation this client is not in".into()));
                };
                match conv.receive(&d.payload) {
                    Ok(Incoming::Application(r)) => match E2eContent::decode(&r.plaintext) {
                        Ok(content) => {
                            let before = self.store.saw(&self.scope, &d.group_id, &r.sender.name, content.counter)?;
                            let notice = counter_notice(&r.sender.name, before, content.counter);
                            let target = match target {
                                Target::User(_) => Target::User(self.me.clone()),
                                room => room,
                            };
                            match content.body {
                                E2eBody::Text(text) => Ok(Outcome::Message {
                                    notice,
                                    from: r.sender.name,
                                    key: r.sender.key,
                                    target,
                                    text,
                                    sent_at_ms: content.sent_at_ms,
                                }),
                                E2eBody::File(file) => {
                                    // Recorded as a download before the
                                    // outcome: the key lives there.
                                    self.store.add_download(&DownloadRecord {
                                        id: 0,
                                        scope: self.scope.clone(),
                                        message: d.id,
                                        from: r.sender.name.clone(),
                                        target: target.clone(),
                                        blob: file.blob,
                                        key: file.key.clone(),
                                        name: file.name.clone(),
                                        size: file.size,
                                        sha256: file.sha256,
                                        dir: None,
                                        state: DownloadState::Offered,
                                        verified: 0,
                                        detail: String::new(),
                                    })?;
                                    Ok(Outcome::File {
                                        from: r.sender.name,
                                        key: r.sender.key,
                                        target,
                                        name: file.name,
                                        size: file.size,
                                        sha256: file.sha256,
                                        sent_at_ms: content.sent_at_ms,
                                        notice,
                                    })
                                }
                            }
                        }
                        Err(_) => {
                            Ok(failed(format!("{} sent something this client does not understand", r.sender.name)))
                        }
                    },
                    Ok(Incoming::Commit(change)) => {
                        if change.removed_me {
                            let _ = self.member.forget(&d.group_id);
                            self.store.forget_group(&self.scope, &d.group_id)?;
                            return Ok(Outcome::Removed { by: change.committer.name, target });
                        }
                        if conv.label() == Some(Label::Direct) && conv.members().map_err(e2e)?.len() != 2 {
                            // A direct conversation is two people: a commit
                            // adding a third ends it (nothing more is sent
                            // in it; the next message starts a new one).
                            let _ = self.member.forget(&d.group_id);
                            self.store.forget_group(&self.scope, &d.group_id)?;
                            return Ok(failed(format!(
                                "{} added someone to a direct conversation: it is closed, and the next message starts \
                                 a new one",
                                crate::display::escape(&change.committer.name)
                            )));
                        }
                        // Members added now count their messages from 1.
                        for added in &change.added {
                            self.store.set_seen(&self.scope, &d.group_id, &added.name, 0)?;
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

    /// Claims a KeyPackage of `user` and checks it: it must name `user`,
    /// be another key than this user's, and pass `accept` (the caller's
    /// trust check on the key).
    async fn claim(&self, client: &mut Client, user: &str, accept: &mut KeyCheck<'_>) -> Result<Vec<u8>, ClientError> {
        let package = client.claim_key_package(user).await?;
        let identity = cipherline_e2e::inspect_key_package(&package).map_err(e2e)?;
        if fold_name(&identity.name) != fold_name(user) {
            return Err(ClientError::EndToEnd(format!(
                "the relay gave a key package of someone else for {}",
                crate::display::escape(user)
            )));
        }
        self.not_myself(user, &identity.key)?;
        accept(&identity.name, &identity.key)?;
        Ok(package)
    }

    /// Refuses to put this identity key in a group twice: MLS requires
    /// each member's signature key to be unique, and another name of the
    /// same key (names sharing a data directory) would be a second leaf.
    fn not_myself(&self, user: &str, key: &[u8; 32]) -> Result<(), ClientError> {
        if *key == self.member.identity().key {
            return Err(ClientError::EndToEnd(format!(
                "{} is a name of your own identity key: an end-to-end conversation needs two keys (give each name \
                 its own data directory, --data-dir)",
                crate::display::escape(user)
            )));
        }
        Ok(())
    }

    /// Checks and records a group joined by `d`'s Welcome: what it is comes
    /// from the group's label, which every member agreed on, and must be
    /// what the relay says (a room's invitation of that room's name; a
    /// direct conversation of exactly two people); a second group calling
    /// itself a room this client is in, or an old invitation replayed, is
    /// refused. `Err` is the reason to report.
    fn joined(&self, d: &GroupDelivery, conv: &Conversation) -> Result<Outcome, String> {
        let db = |e: ClientError| e.to_string();
        let members = conv.members().map_err(|e| e.to_string())?;
        let others: Vec<String> =
            members.iter().map(|(_, id)| id.name.clone()).filter(|n| fold_name(n) != fold_name(&self.me)).collect();
        let (kind, target) = match (conv.label(), &d.room, others.as_slice()) {
            (Some(Label::Direct), None, [peer]) => (GroupKind::Direct(peer.clone()), Target::User(peer.clone())),
            (Some(Label::Room(name)), Some(room), _) if fold_name(room) == name => {
                (GroupKind::Room(name.clone()), Target::Room(room.clone()))
            }
            _ => return Err("an invitation that is not what the relay says it is (room or direct conversation)".into()),
        };
        if let GroupKind::Room(name) = &kind
            && self.room_group(name).map_err(db)?.is_some_and(|held| held != conv.id())
        {
            return Err(format!(
                "an invitation to a second group calling itself {}: this client is in one already",
                crate::display::escape(name)
            ));
        }
        if !self.store.joined_at(&self.scope, conv.id(), conv.epoch()).map_err(db)? {
            return Err("an old invitation, replayed".into());
        }
        self.store.set_group(&self.scope, conv.id(), &kind).map_err(db)?;
        // A direct conversation is joined at its start, before either
        // side said anything: both count from 1, so a first message
        // dropped is noticed. (In a room, others may have spoken before.)
        if matches!(kind, GroupKind::Direct(_)) {
            for (_, id) in &members {
                self.store.set_seen(&self.scope, conv.id(), &id.name, 0).map_err(db)?;
            }
        }
        Ok(Outcome::Joined { target, members: others.join(", ") })
    }

    /// The direct conversation with `peer`, if there is one.
    pub fn direct_group(&self, peer: &str) -> Result<Option<Vec<u8>>, ClientError> {
        for id in self.store.groups_of(&self.scope, &GroupKind::Direct(peer.to_owned()))? {
            if self.member.load(&id).map_err(e2e)?.is_some() {
                return Ok(Some(id));
            }
            self.store.forget_group(&self.scope, &id)?;
        }
        Ok(None)
    }

    /// The end-to-end group of `room`, if this client is in it.
    pub fn room_group(&self, room: &str) -> Result<Option<Vec<u8>>, ClientError> {
        for id in self.store.groups_of(&self.scope, &GroupKind::Room(room.to_owned()))? {
            if self.member.load(&id).map_err(e2e)?.is_some() {
                return Ok(Some(id));
            }
            self.store.forget_group(&self.scope, &id)?;
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
        accept: &mut KeyCheck<'_>,
    ) -> Result<Vec<u8>, ClientError> {
        let package = self.claim(client, peer, accept).await?;
        let guard = lock(&self.lock)?;
        let mut conv = self.member.create_labelled(&Label::Direct, false).map_err(e2e)?;
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
                self.store.set_group(&self.scope, &group_id, &GroupKind::Direct(peer.to_owned()))?;
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
    /// Encrypts `text` for the other members of `group_id` (an
    /// `MLSMessage` for GroupSend). A payload the relay refuses for now
    /// (`rate_limited`) is sent again as it is, never sealed again: each
    /// sealing takes the next number of this user's counter, and a number
    /// never sent would show the others a gap.
    pub fn seal(&self, group_id: &[u8], text: &str) -> Result<Vec<u8>, ClientError> {
        self.seal_body(group_id, E2eBody::Text(text.to_owned()))
    }

    /// Encrypts the announcement of an end-to-end file (PROTOCOL.md
    /// §13.12.2) for the other members of `group_id`, with the next number
    /// of the same counter as texts. As for [`Conversations::seal`], a
    /// payload refused for now is sent again as it is, never sealed again.
    pub fn seal_file(&self, group_id: &[u8], file: &FileAnnouncement) -> Result<Vec<u8>, ClientError> {
        self.seal_body(group_id, E2eBody::File(file.clone()))
    }

    fn seal_body(&self, group_id: &[u8], body: E2eBody) -> Result<Vec<u8>, ClientError> {
        let _guard = lock(&self.lock)?;
        let mut conv = self.load(group_id)?;
        let counter = self.store.next_sent(&self.scope, group_id, &self.me)?;
        let content = E2eContent { counter, sent_at_ms: now_ms(), body };
        let bytes = content.encode().map_err(|e| ClientError::EndToEnd(e.to_string()))?;
        conv.encrypt(&bytes).map_err(e2e)
    }

    /// What this user's local records (outcomes, downloads, uploads) are
    /// kept under: the server and the folded name.
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// This user's name.
    #[must_use]
    pub fn me(&self) -> &str {
        &self.me
    }

    /// After a message was sent in `group_id`: a leaf update if one is due
    /// (post-compromise security: a new leaf key every 100 messages or 24
    /// hours). Best effort: a failure here does not undo the send.
    pub async fn sent(&self, client: &mut Client, group_id: &[u8]) {
        let _ = self.update_if_due(client, group_id).await;
    }

    async fn send_in(&self, client: &mut Client, group_id: &[u8], text: &str) -> Result<Acked, ClientError> {
        let payload = self.seal(group_id, text)?;
        let acked = client.group_send_acked(group_id, payload).await?;
        self.sent(client, group_id).await;
        Ok(acked)
    }

    /// The direct conversation with `peer`, started from one of its
    /// KeyPackages if there is none yet (also when `peer` is offline);
    /// `accept` checks the key of a new conversation's peer.
    pub async fn direct(
        &self,
        client: &mut Client,
        peer: &str,
        accept: &mut KeyCheck<'_>,
    ) -> Result<Vec<u8>, ClientError> {
        match self.direct_group(peer)? {
            Some(id) => Ok(id),
            None => self.start_direct(client, peer, accept).await,
        }
    }

    /// Sends `text` to `peer` end to end ([`Conversations::direct`], then
    /// [`Conversations::seal`]) and waits for the Ack.
    pub async fn send_direct(
        &self,
        client: &mut Client,
        peer: &str,
        text: &str,
        accept: &mut KeyCheck<'_>,
    ) -> Result<Acked, ClientError> {
        let group_id = self.direct(client, peer, accept).await?;
        self.send_in(client, &group_id, text).await
    }

    /// The group of the end-to-end room `room`, or why this client cannot
    /// speak there.
    pub fn room(&self, room: &str) -> Result<Vec<u8>, ClientError> {
        self.room_group(room)?.ok_or_else(|| {
            ClientError::EndToEnd(format!(
                "this client is not in the end-to-end room {} (or has not caught up with its invitation yet: run \
                 `cipherline listen` once)",
                crate::display::escape(room)
            ))
        })
    }

    /// Sends `text` to the end-to-end room `room` (this client must be in
    /// its group).
    pub async fn send_room(&self, client: &mut Client, room: &str, text: &str) -> Result<Acked, ClientError> {
        let group_id = self.room(room)?;
        self.send_in(client, &group_id, text).await
    }

    /// Creates the end-to-end room `room` (`public`: anyone may join by
    /// external commit), with this user as its first member and admin.
    pub async fn create_room(&self, client: &mut Client, room: &str, public: bool) -> Result<(), ClientError> {
        let (group_id, kind) = {
            let _guard = lock(&self.lock)?;
            let conv = self.member.create_labelled(&Label::Room(room.to_owned()), public).map_err(e2e)?;
            (conv.id().to_vec(), if public { RoomKind::Public } else { RoomKind::Invite })
        };
        if let Err(e) = client.create_room(room, kind, group_id.clone()).await {
            let _ = self.member.forget(&group_id);
            return Err(e);
        }
        self.store.set_group(&self.scope, &group_id, &GroupKind::Room(room.to_owned()))?;
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
            Err(ClientError::TooLong { size, max }) if !invited.is_empty() => {
                let _ = conv.abandon();
                // The Welcome carries the whole ratchet tree (PROTOCOL.md
                // §13.11): say what limits the room, not just the bytes.
                Err(ClientError::EndToEnd(format!(
                    "the commit adding them is {size} bytes, more than the server's {max}: its Welcome carries \
                     the room's whole ratchet tree, about {TREE_BYTES_PER_MEMBER} bytes per member, so an \
                     end-to-end room on this server takes about {} members",
                    u64::from(max) / TREE_BYTES_PER_MEMBER
                )))
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
        accept: &mut KeyCheck<'_>,
    ) -> Result<(), ClientError> {
        let group_id = self.room_group(room)?.ok_or_else(|| not_member(room))?;
        let mut packages = Vec::with_capacity(users.len());
        for user in users {
            packages.push(self.claim(client, user, accept).await?);
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
                self.store.set_group(&self.scope, &group_id, &GroupKind::Room(room.to_owned()))?;
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
            self.store.forget_group(&self.scope, &group_id)?;
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

    /// Completes in MLS what the relay says about `room`'s members: a
    /// member of the MLS group that is no longer on the relay's list (it
    /// sent Leave) is removed by commit, so it can read nothing new. Any
    /// member may do it (the relay allows removing one who left); a lost
    /// race is not an error. Returns the names removed.
    pub async fn reconcile(&self, client: &mut Client, room: &str) -> Result<Vec<String>, ClientError> {
        let Some(group_id) = self.room_group(room)? else { return Ok(Vec::new()) };
        let listed: std::collections::BTreeSet<String> = client.who(room).await?.iter().map(|n| fold_name(n)).collect();
        let gone: Vec<String> = {
            let _guard = lock(&self.lock)?;
            self.load(&group_id)?
                .members()
                .map_err(e2e)?
                .into_iter()
                .map(|(_, id)| id.name)
                .filter(|name| !listed.contains(&fold_name(name)) && fold_name(name) != fold_name(&self.me))
                .collect()
        };
        if gone.is_empty() {
            return Ok(gone);
        }
        let names: Vec<&str> = gone.iter().map(String::as_str).collect();
        match self.commit_in(client, &group_id, |conv| conv.remove(&names), &[], &gone).await {
            Ok(()) => Ok(gone),
            Err(ClientError::Stale { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Whether this client's leaf key in `group_id` is due for an update
    /// ([`Conversations::update_if_due`] sends it), checked locally so a
    /// caller opens a connection for it only when needed.
    pub fn update_due(&self, group_id: &[u8]) -> Result<bool, ClientError> {
        let _guard = lock(&self.lock)?;
        Ok(self.load(group_id)?.needs_update(now_ms()))
    }

    /// Sends a leaf-key update in `group_id` if it is due (by messages
    /// sent and by time), for post-compromise security. A lost race for
    /// the epoch is not an error: the next message tries again.
    pub async fn update_if_due(&self, client: &mut Client, group_id: &[u8]) -> Result<bool, ClientError> {
        if !self.update_due(group_id)? {
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

/// What a sender's message counter says, given the highest seen from
/// them before (`None`: this is the first): messages missing in between
/// (dropped by the relay, or still on the way), or this one arriving after
/// a later one. Empty when all is in order.
fn counter_notice(sender: &str, before: Option<u64>, counter: u64) -> String {
    let sender = crate::display::escape(sender);
    match before {
        None => String::new(),
        Some(b) if counter == b + 1 => String::new(),
        Some(b) if counter > b => {
            let missing = counter - b - 1;
            format!("{missing} earlier message(s) from {sender} have not arrived (dropped on the way, or late)")
        }
        Some(b) if counter == b => format!("this message from {sender} repeats the number of an earlier one"),
        Some(_) => format!("this message from {sender} arrived after a later one"),
    }
}

fn not_member(room: &str) -> ClientError {
    ClientError::EndToEnd(format!("this client is not in the end-to-end room {}", crate::display::escape(room)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_counter_reports_gaps_reorders_and_repeats() {
        assert_eq!(counter_notice("alice", None, 57), "", "the first message seen sets the baseline");
        assert_eq!(counter_notice("alice", Some(3), 4), "");
        assert!(counter_notice("alice", Some(3), 6).starts_with("2 earlier message(s) from alice"));
        assert!(counter_notice("alice", Some(6), 5).contains("after a later one"));
        assert!(counter_notice("alice", Some(6), 6).contains("repeats"));
        // Names are escaped.
        assert!(!counter_notice("a\u{1b}[2J", Some(1), 5).contains('\u{1b}'));
    }

    #[test]
    fn counters_are_kept_per_group_and_member() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        assert_eq!(store.next_sent("s", b"g1", "Alice").unwrap(), 1);
        assert_eq!(store.next_sent("s", b"g1", "alice").unwrap(), 2);
        assert_eq!(store.next_sent("s", b"g2", "alice").unwrap(), 1);
        assert_eq!(store.saw("s", b"g1", "bob", 5).unwrap(), None);
        assert_eq!(store.saw("s", b"g1", "BOB", 7).unwrap(), Some(5));
        // An older one does not move the mark back.
        assert_eq!(store.saw("s", b"g1", "bob", 6).unwrap(), Some(7));
        assert_eq!(store.saw("s", b"g1", "bob", 8).unwrap(), Some(7));
    }
}
