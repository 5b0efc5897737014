//! The engine's commands for people and rooms: the local history, the
//! conversations, a room's members, the remembered contacts, identity keys
//! (whois, safety codes, verification, trust), and end-to-end rooms
//! (create, invite, kick, leave).
//!
//! History, Conversations and Contacts read the local store only, so they
//! are answered while reconnecting too ([`is_local`]); the others need the
//! connection. What a user may confirm follows `chat` (PROTOCOL.md §13.7):
//! a key is marked verified only after its safety code was shown in this
//! run and while no change of it is pending; a changed key is accepted
//! only by Trust.

use cipherline_keys::Fingerprint;
use cipherline_proto::crypto::sign::SignatureAlgorithm;
use rusqlite::params;

use super::*;
use crate::local::{Direction, Filter, LocalStore, OWN_LABEL, UNSIGNED_REMEMBERED_LABEL};

/// The most entries one History answers.
pub const MAX_HISTORY: u32 = 500;
/// The most bytes of text (and senders) one History answers: the newest
/// entries that fit, at least one. Without it one answer could hold
/// [`MAX_HISTORY`] messages of up to a mebibyte each, and a front-end
/// holds many answers while its reader is slow.
const MAX_HISTORY_BYTES: usize = 1 << 20;
/// The most conversations one Conversations answers.
const MAX_CONVERSATIONS: usize = 1000;
/// Names whose changed key or shown safety code is kept at most: the
/// user's own requests and key changes seen; beyond it the oldest
/// entries go (the user then asks again).
const MAX_PENDING_KEYS: usize = 1024;
/// How often a change to a room's members is tried again after another
/// member's commit won the epoch, and how long the engine waits for the
/// winning commits (stored at the relay before it answers) meanwhile.
pub(super) const STALE_RETRIES: u32 = 3;
const STALE_QUIET: Duration = Duration::from_millis(300);
/// The most deliveries handled while catching up before a retry.
const STALE_CATCH_UP: usize = 256;

/// One message of the local history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The server's message id (use it as `before` to page back).
    pub id: u64,
    /// The sender.
    pub from: String,
    /// The room, or the user a direct message was for.
    pub to: Target,
    /// The text (raw: escape it for a terminal).
    pub text: String,
    /// Whether it travelled end to end encrypted.
    pub e2e: bool,
    /// The verdict on the sender's key when it arrived (`Known` for this
    /// user's own messages).
    pub verified: Verified,
    /// The server's time, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Sent by this user.
    pub outgoing: bool,
    /// Whether it was signed, as [`crate::engine::Message::signed`]: an
    /// unsigned entry whose verdict is [`Verified::Changed`] came under a
    /// name whose key is remembered, without a signature.
    pub signed: bool,
}

/// A room joined or a direct conversation, as Conversations lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The room, or the other person.
    pub target: Target,
    /// Whether it is end to end encrypted (an MLS group this user is in,
    /// or a direct conversation whose latest message was).
    pub e2e: bool,
    /// The server's time of its latest message in the local history.
    pub last_timestamp_ms: Option<u64>,
}

/// The state of a member's identity key, as a member list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Seen for the first time now (and remembered from now on).
    New,
    /// The key remembered for the name (this user's own key too).
    Known,
    /// The remembered key, confirmed by comparing safety codes.
    Verified,
    /// Another key than the one remembered.
    Changed,
    /// No key known for the name.
    Unknown,
}

impl KeyState {
    /// Its lowercase name (`new`, `known`, `verified`, `changed`,
    /// `unknown`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::New => "new",
            KeyState::Known => "known",
            KeyState::Verified => "verified",
            KeyState::Changed => "changed",
            KeyState::Unknown => "unknown",
        }
    }

    fn of(status: &MessageStatus) -> KeyState {
        match status {
            MessageStatus::New(_) => KeyState::New,
            MessageStatus::Known => KeyState::Known,
            MessageStatus::Verified => KeyState::Verified,
            MessageStatus::KeyChanged { .. } => KeyState::Changed,
            MessageStatus::Unsigned | MessageStatus::Invalid => KeyState::Unknown,
        }
    }
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name (raw).
    pub name: String,
    /// The state of its key. In an end-to-end room, the key the MLS group
    /// holds, checked against the one remembered; in an open room, the
    /// state of the key remembered for the name (`Unknown`: none).
    pub key: KeyState,
    /// In an end-to-end room, the fingerprint of the identity key the MLS
    /// group holds for the member (`SHA256:…`); `None` in an open room.
    pub fingerprint: Option<String>,
}

/// A person whose key is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The name, as recorded (folded once the key was verified or
    /// trusted, as `chat` records them).
    pub name: String,
    /// The remembered key's fingerprint (`SHA256:` and hex).
    pub fingerprint: String,
    /// Whether the user confirmed it by comparing safety codes.
    pub verified: bool,
}

/// Whether `command` is answered from the local store alone.
pub(super) fn is_local(command: &Command) -> bool {
    matches!(command, Command::History { .. } | Command::Conversations | Command::Contacts)
}

/// What the engine keeps for these commands across connections.
#[derive(Default)]
pub(super) struct People {
    /// The local store (known once connected).
    store: Option<LocalStore>,
    /// The server as the remembered peers name it.
    peers_server: String,
    /// What this user's end-to-end records are kept under.
    scope: Option<String>,
    /// This user's identity key.
    me: Option<Fingerprint>,
    /// Folded names whose key changed, with the new key (`None`: they have
    /// none now), until the user trusts it.
    changed: BTreeMap<String, Option<Fingerprint>>,
    /// Folded names and the key whose safety code was shown.
    codes: BTreeMap<String, Fingerprint>,
}

impl People {
    /// A connection was made: its store, scope and identity.
    pub(super) fn connected(&mut self, live: &Live) {
        self.store = live.peers.store().cloned();
        live.peers.server().clone_into(&mut self.peers_server);
        self.scope = live.e2e.as_ref().map(|e| e.scope().to_owned());
        self.me = live.client.identity_fingerprint().map(Fingerprint::from_bytes);
    }

    /// The change seen for a folded name and not trusted yet, if any.
    pub(super) fn changed_key(&self, folded: &str) -> Option<Option<Fingerprint>> {
        self.changed.get(folded).copied()
    }

    /// A message's verdict: a changed key is kept for Verify and Trust.
    pub(super) fn saw(&mut self, name: &str, status: &MessageStatus) {
        if let MessageStatus::KeyChanged { presented, .. } = status {
            bounded_insert(&mut self.changed, fold_name(name), *presented);
        }
    }
}

/// Inserts into a map kept under [`MAX_PENDING_KEYS`] entries.
fn bounded_insert<V>(map: &mut BTreeMap<String, V>, key: String, value: V) {
    if map.len() >= MAX_PENDING_KEYS && !map.contains_key(&key) {
        map.pop_first();
    }
    map.insert(key, value);
}

impl<C: Connector> Engine<C> {
    /// History, Conversations, Contacts: from the local store.
    pub(super) fn local(&self, command: Command) -> Result<Reply, ClientError> {
        match command {
            Command::History { conversation, before, limit } => self.history(&conversation, before, limit),
            Command::Conversations => self.conversations(),
            Command::Contacts => self.contacts(),
            _ => Err(ClientError::Engine("not a local command".to_owned())),
        }
    }

    fn history(&self, conversation: &Target, before: Option<u64>, limit: u32) -> Result<Reply, ClientError> {
        let Some(store) = &self.people.store else { return Ok(Reply::History(Vec::new())) };
        let filter = match conversation {
            Target::Room(room) => Filter::Room(room.clone()),
            Target::User(user) => Filter::With(user.clone()),
        };
        let msgs = store.history_before(&self.server, &filter, before, u64::from(limit.min(MAX_HISTORY)))?;
        // Oldest first: the newest that fit are kept, so paging back from
        // the oldest one held loses nothing.
        let mut bytes = 0usize;
        let fit = msgs
            .iter()
            .rev()
            .enumerate()
            .take_while(|(i, m)| {
                bytes = bytes.saturating_add(m.text.len() + m.from.len());
                *i == 0 || bytes <= MAX_HISTORY_BYTES
            })
            .count();
        let skip = msgs.len().saturating_sub(fit);
        let entries = msgs
            .into_iter()
            .skip(skip)
            .map(|m| HistoryEntry {
                id: m.id,
                verified: verdict_of_label(&m.label),
                signed: signed_label(&m.label),
                from: m.from,
                to: m.target,
                text: m.text,
                e2e: m.e2e,
                timestamp_ms: m.timestamp_ms,
                outgoing: m.direction == Direction::Out,
            })
            .collect();
        Ok(Reply::History(entries))
    }

    fn conversations(&self) -> Result<Reply, ClientError> {
        let Some(store) = &self.people.store else {
            let rooms = self.rooms.values().map(|r| ConversationSummary {
                target: Target::Room(r.clone()),
                e2e: false,
                last_timestamp_ms: None,
            });
            return Ok(Reply::Conversations(rooms.collect()));
        };
        let latest = store.latest(&self.server)?;
        let groups = match &self.people.scope {
            Some(scope) => store.e2e_conversations(scope)?,
            None => Vec::new(),
        };
        let mut out: BTreeMap<(bool, String), ConversationSummary> = BTreeMap::new();
        let mut add = |target: Target, e2e: bool| {
            let key = key_of(&target);
            let found = latest.get(&key);
            let entry = out.entry(key).or_insert_with(|| ConversationSummary {
                // The spelling the history has, if any.
                target: found.map_or(target, |l| l.target.clone()),
                e2e: false,
                last_timestamp_ms: found.map(|l| l.timestamp_ms),
            });
            entry.e2e |= e2e;
        };
        for room in self.rooms.values() {
            add(Target::Room(room.clone()), false);
        }
        for group in groups {
            add(group, true);
        }
        for (key, l) in &latest {
            if !key.0 {
                add(l.target.clone(), l.e2e);
            }
        }
        let mut list: Vec<ConversationSummary> = out.into_values().collect();
        // Newest first; those without history last, by name.
        list.sort_by(|a, b| {
            b.last_timestamp_ms.cmp(&a.last_timestamp_ms).then_with(|| key_of(&a.target).cmp(&key_of(&b.target)))
        });
        list.truncate(MAX_CONVERSATIONS);
        Ok(Reply::Conversations(list))
    }

    fn contacts(&self) -> Result<Reply, ClientError> {
        let Some(store) = &self.people.store else { return Ok(Reply::Contacts(Vec::new())) };
        Ok(Reply::Contacts(store.contacts(&self.people.peers_server)?))
    }

    /// Members, Whois, Verify, Trust.
    pub(super) async fn people_command(&mut self, live: &mut Live, command: Command) -> Result<Reply, ClientError> {
        match command {
            Command::Members(room) => self.members(live, &room).await,
            Command::Whois(user) => {
                let fp = self.whois(live, &user).await?;
                Ok(Reply::Fingerprint { name: user, fingerprint: fp.to_string() })
            }
            Command::Verify { user, confirm: false } => self.safety_code(live, &user).await,
            Command::Verify { user, confirm: true } => self.confirm(live, &user),
            Command::Trust(user) => self.trust(live, &user).await,
            _ => Err(ClientError::Engine("not a people command".to_owned())),
        }
    }

    async fn members(&mut self, live: &mut Live, room: &str) -> Result<Reply, ClientError> {
        let me = fold_name(&self.name);
        if let Some(e2e) = &live.e2e
            && e2e.room_group(room)?.is_some()
        {
            let mut members = Vec::new();
            for (name, key) in e2e.members(room)? {
                let public = IdentityPublicKey::ed25519_from_raw(&key);
                let fingerprint = Some(cipherline_keys::Fingerprint::from_bytes(public.fingerprint()).to_string());
                let key = if fold_name(&name) == me {
                    KeyState::Known
                } else {
                    let status = live.peers.check_key(&name, &public);
                    self.people.saw(&name, &status);
                    KeyState::of(&status)
                };
                members.push(Member { name, key, fingerprint });
            }
            return Ok(Reply::Members(members));
        }
        let names = live.client.who(room).await?;
        let members = names
            .into_iter()
            .map(|name| {
                let key = if fold_name(&name) == me {
                    KeyState::Known
                } else if self.people.changed.contains_key(&fold_name(&name)) {
                    KeyState::Changed
                } else if live.peers.is_verified(&name) {
                    KeyState::Verified
                } else if live.peers.remembered(&name).is_some() {
                    KeyState::Known
                } else {
                    KeyState::Unknown
                };
                Member { name, key, fingerprint: None }
            })
            .collect();
        Ok(Reply::Members(members))
    }

    /// The key the server holds for `user`, judged against the one
    /// remembered (remembered if it is the first; kept as changed if it
    /// differs).
    async fn whois(&mut self, live: &mut Live, user: &str) -> Result<Fingerprint, ClientError> {
        live.client.send_message(&ClientMessage::Whois { name: user.to_owned() }).await?;
        let folded = fold_name(user);
        let want = |m: &ServerMessage| matches!(m, ServerMessage::Identity { name, .. } if fold_name(name) == folded);
        let ServerMessage::Identity { algorithm, key, .. } = live.client.reply(want, |_| false).await? else {
            return Err(ClientError::Unexpected);
        };
        let parsed = SignatureAlgorithm::from_u16(algorithm).and_then(|a| IdentityPublicKey::from_spki(a, &key).ok());
        let Some(key) = parsed else {
            let status = live.peers.check_no_key(user);
            self.people.saw(user, &status);
            return Err(ClientError::Trust(format!(
                "{} has no identity key: their messages are unsigned",
                crate::display::escape(user)
            )));
        };
        let status = live.peers.check_key(user, &key);
        self.people.saw(user, &status);
        Ok(Fingerprint::from_bytes(key.fingerprint()))
    }

    /// The safety code with `user`: for their new key if it changed, else
    /// for the remembered one, else for what the server holds.
    async fn safety_code(&mut self, live: &mut Live, user: &str) -> Result<Reply, ClientError> {
        let Some(me) = self.people.me else {
            return Err(ClientError::Trust("this client has no identity key: there is nothing to verify".to_owned()));
        };
        let folded = fold_name(user);
        let theirs = match self.people.changed.get(&folded).copied() {
            Some(Some(new)) => new,
            Some(None) => {
                return Err(ClientError::Trust(format!(
                    "{} has no identity key now: trust that to forget the old one",
                    crate::display::escape(user)
                )));
            }
            None => match live.peers.remembered(user) {
                Some(fp) => fp,
                None => self.whois(live, user).await?,
            },
        };
        let code = cipherline_proto::signature::safety_code(me.as_bytes(), theirs.as_bytes());
        bounded_insert(&mut self.people.codes, folded, theirs);
        Ok(Reply::SafetyCode { user: user.to_owned(), code })
    }

    /// The codes matched: the remembered key is marked verified, if its
    /// code was shown and no change of it is pending.
    fn confirm(&mut self, live: &mut Live, user: &str) -> Result<Reply, ClientError> {
        let folded = fold_name(user);
        let name = crate::display::escape(user);
        let Some(remembered) = live.peers.remembered(user) else {
            return Err(ClientError::Trust(format!("no key remembered for {name}: verify first")));
        };
        if self.people.changed.contains_key(&folded) {
            return Err(ClientError::Trust(format!(
                "{name}'s key changed: compare the new code (verify), then trust it, then confirm"
            )));
        }
        if self.people.codes.get(&folded) != Some(&remembered) {
            return Err(ClientError::Trust(format!("verify {name} first, and compare the code it gives")));
        }
        live.peers.mark_verified(&folded, remembered)?;
        Ok(Reply::Done)
    }

    /// Accepts `user`'s changed key (or that they have none now).
    async fn trust(&mut self, live: &mut Live, user: &str) -> Result<Reply, ClientError> {
        let folded = fold_name(user);
        if !self.people.changed.contains_key(&folded) {
            // A change seen before this run: the server's key now.
            let _ = self.whois(live, user).await;
        }
        // Recorded under the folded name, however it was spelled.
        match self.people.changed.remove(&folded) {
            Some(Some(fp)) => live.peers.remember(&folded, fp)?,
            Some(None) => live.peers.forget(&folded)?,
            None => {
                return Err(ClientError::Trust(format!(
                    "no changed key seen for {}: nothing to trust",
                    crate::display::escape(user)
                )));
            }
        }
        // A code shown for the old key no longer confirms anything.
        self.people.codes.remove(&folded);
        Ok(Reply::Done)
    }

    /// Create, Invite, Kick.
    pub(super) async fn room_change(&mut self, live: &mut Live, command: Command) -> Result<Reply, ClientError> {
        match command {
            Command::Create { room, kind: RoomKind::Open } => {
                live.client.create_room(&room, RoomKind::Open, Vec::new()).await?;
                self.rooms.insert(fold_name(&room), room);
                Ok(Reply::Done)
            }
            Command::Create { room, kind } => {
                let e2e = live.e2e.as_ref().ok_or_else(no_e2e)?;
                e2e.create_room(&mut live.client, &room, kind == RoomKind::Public).await?;
                Ok(Reply::Done)
            }
            Command::Invite { room, users } => self.members_change(live, &room, &users, true).await,
            Command::Kick { room, users } => self.members_change(live, &room, &users, false).await,
            _ => Err(ClientError::Engine("not a room command".to_owned())),
        }
    }

    /// Adds (`invite`) or removes `users` in the end-to-end room `room`; a
    /// change that lost its epoch to another member's is tried again once
    /// the commits that won were handled.
    async fn members_change(
        &mut self,
        live: &mut Live,
        room: &str,
        users: &[String],
        invite: bool,
    ) -> Result<Reply, ClientError> {
        if users.is_empty() {
            return Err(ClientError::EndToEnd("name at least one user to invite or kick".to_owned()));
        }
        let mut tries = 0;
        loop {
            let Live { client, peers, e2e, .. } = &mut *live;
            let e2e = e2e.as_ref().ok_or_else(no_e2e)?;
            if e2e.room_group(room)?.is_none() {
                return Err(ClientError::EndToEnd(format!(
                    "invite and kick work in an end-to-end room this user is in, not in {}",
                    crate::display::escape(room)
                )));
            }
            let result = if invite {
                let mut check = |name: &str, key: &[u8; 32]| refuse_changed(peers, name, key);
                e2e.invite(client, room, users, &mut check).await
            } else {
                e2e.remove(client, room, users).await
            };
            match result {
                Ok(()) => return Ok(Reply::Done),
                Err(ClientError::Stale { .. }) if tries < STALE_RETRIES => {
                    tries += 1;
                    self.catch_up(live).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Handles what the relay delivered meanwhile (the commits that won an
    /// epoch), until it has been quiet for a moment.
    async fn catch_up(&mut self, live: &mut Live) -> Result<(), ClientError> {
        for _ in 0..STALE_CATCH_UP {
            let msg = match tokio::time::timeout(STALE_QUIET, live.client.recv()).await {
                Err(_) => return Ok(()),
                Ok(msg) => msg?,
            };
            match self.incoming(live, msg).await {
                Step::Go => {}
                Step::Lost(why) | Step::Stop(why) => return Err(ClientError::Engine(why)),
            }
        }
        Ok(())
    }

    /// Leaves a room: an end-to-end room's group too.
    pub(super) async fn leave(&mut self, live: &mut Live, room: &str) -> Result<Reply, ClientError> {
        if let Some(e2e) = &live.e2e
            && e2e.room_group(room)?.is_some()
        {
            e2e.leave(&mut live.client, room).await?;
            return Ok(Reply::Done);
        }
        live.client.leave(room).await?;
        self.rooms.remove(&fold_name(room));
        Ok(Reply::Done)
    }
}

fn no_e2e() -> ClientError {
    ClientError::EndToEnd(
        "end-to-end rooms need an Ed25519 identity key and a server that keeps messages for you; an open room is one \
         the server can read"
            .to_owned(),
    )
}

/// Refuses to add someone whose key changed (compare codes, then trust).
fn refuse_changed(peers: &mut Peers, name: &str, key: &[u8; 32]) -> Result<(), ClientError> {
    match peers.check_key(name, &IdentityPublicKey::ed25519_from_raw(key)) {
        MessageStatus::KeyChanged { .. } => Err(ClientError::EndToEnd(format!(
            "the identity key of {} has changed: not added; compare safety codes, then trust the new key",
            crate::display::escape(name)
        ))),
        _ => Ok(()),
    }
}

/// The verdict a history record's label stands for: the one the message
/// had live (an unsigned message under a remembered name was `Changed`).
fn verdict_of_label(label: &str) -> Verified {
    match label {
        "new" => Verified::New,
        "known" | OWN_LABEL => Verified::Known,
        "verified" => Verified::Verified,
        "key-changed" | UNSIGNED_REMEMBERED_LABEL => Verified::Changed,
        "invalid-signature" => Verified::Invalid,
        _ => Verified::Unsigned,
    }
}

/// Whether a history record's label says the message was signed (an
/// older history's `key-changed` may have been unsigned: it cannot tell).
fn signed_label(label: &str) -> bool {
    !matches!(label, "unsigned" | UNSIGNED_REMEMBERED_LABEL)
}

/// How conversations are told apart: rooms and people by folded name.
fn key_of(target: &Target) -> (bool, String) {
    match target {
        Target::Room(r) => (true, fold_name(r)),
        Target::User(u) => (false, fold_name(u)),
    }
}

/// The latest message of one conversation.
struct Latest {
    target: Target,
    e2e: bool,
    timestamp_ms: u64,
}

impl LocalStore {
    /// The latest message of each conversation with `server`, at most
    /// [`MAX_CONVERSATIONS`], by conversation.
    fn latest(&self, server: &str) -> Result<BTreeMap<(bool, String), Latest>, ClientError> {
        self.read(|conn| {
            let e = |e| self.error(e);
            // SQLite takes the bare columns from the row holding the max.
            let mut stmt = conn
                .prepare(
                    "SELECT target_kind, sender, target, direction, e2e, max(timestamp_ms) FROM history
                     WHERE server = ?1 GROUP BY target_kind, conversation ORDER BY max(timestamp_ms) DESC LIMIT ?2",
                )
                .map_err(e)?;
            let limit = i64::try_from(MAX_CONVERSATIONS).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![server, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, bool>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .map_err(e)?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (kind, sender, target, direction, e2e, ts) = row.map_err(e)?;
                let target = match (kind.as_str(), direction.as_str()) {
                    ("room", _) => Target::Room(target),
                    // A direct conversation is named by the other person.
                    ("user", "in") => Target::User(sender),
                    ("user", "out") => Target::User(target),
                    _ => return Err(self.corrupt("a history record has an unknown kind or direction")),
                };
                #[allow(clippy::cast_sign_loss)]
                let timestamp_ms = ts as u64;
                out.insert(key_of(&target), Latest { target, e2e, timestamp_ms });
            }
            Ok(out)
        })
    }

    /// The end-to-end conversations recorded for `scope` (rooms and
    /// people, folded names).
    fn e2e_conversations(&self, scope: &str) -> Result<Vec<Target>, ClientError> {
        self.read(|conn| {
            let e = |e| self.error(e);
            let mut stmt = conn.prepare("SELECT room, peer FROM e2e_groups WHERE server = ?1 LIMIT ?2").map_err(e)?;
            let limit = i64::try_from(MAX_CONVERSATIONS).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![scope, limit], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(e)?;
            let mut out = Vec::new();
            for row in rows {
                match row.map_err(e)? {
                    (Some(room), None) => out.push(Target::Room(room)),
                    (None, Some(peer)) => out.push(Target::User(peer)),
                    _ => return Err(self.corrupt("an end-to-end group is both a room and a direct conversation")),
                }
            }
            Ok(out)
        })
    }

    /// The keys remembered for `server`'s users, by name.
    fn contacts(&self, server: &str) -> Result<Vec<Contact>, ClientError> {
        self.read(|conn| {
            let e = |e| self.error(e);
            let mut stmt = conn
                .prepare("SELECT name, fingerprint, verified FROM peers WHERE server = ?1 ORDER BY folded LIMIT ?2")
                .map_err(e)?;
            let limit = i64::try_from(crate::peers::MAX_PEERS).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![server, limit], |r| {
                    Ok(Contact { name: r.get(0)?, fingerprint: r.get(1)?, verified: r.get(2)? })
                })
                .map_err(e)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::Msg;
    use cipherline_proto::app::Delivery;

    /// A connector that never connects (these commands need none).
    struct Never;

    impl Connector for Never {
        fn connect(&self, _: bool) -> Connecting<'_> {
            Box::pin(async { Err(ConnectFailure { reason: "none".to_owned(), passing: false }) })
        }
    }

    /// An engine that never connects, with a store at `dir`.
    fn engine(dir: &std::path::Path, rooms: &[String]) -> Engine<Never> {
        let (mut engine, _handle, _events) = Engine::new(Never, "s".into(), rooms);
        engine.people.store = Some(LocalStore::open(&dir.join("client.db")).unwrap());
        engine.people.peers_server = "s".into();
        engine.people.scope = Some("s alice".into());
        engine.name = "alice".into();
        engine
    }

    fn received(id: u64, ts: u64, from: &str, to: Target, text: &str) -> Msg {
        received_as(id, ts, from, to, text, &MessageStatus::Known)
    }

    /// A message received by alice, with the verdict `status`, as stored.
    fn received_as(id: u64, ts: u64, from: &str, to: Target, text: &str, status: &MessageStatus) -> Msg {
        let d = Delivery { id, timestamp_ms: ts, from: from.into(), to, text: text.into(), signed: None, seq: 0 };
        Msg::received("s", "alice", &d, status)
    }

    #[test]
    fn history_pages_back_oldest_first_within_one_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), &[]);
        let store = engine.people.store.clone().unwrap();
        for i in 1..=5u64 {
            store.record(&received(i, 1000 + i, "bob", Target::User("alice".into()), &format!("m{i}"))).unwrap();
        }
        store.record(&received(9, 2000, "carol", Target::Room("dev".into()), "elsewhere")).unwrap();
        store.record(&Msg::sent("s", "alice", 10, 3000, &Target::User("Bob".into()), "mine").with_e2e(true)).unwrap();
        let page = |before, limit| {
            let reply =
                engine.local(Command::History { conversation: Target::User("BOB".into()), before, limit }).unwrap();
            let Reply::History(entries) = reply else { panic!("{reply:?}") };
            entries
        };
        let last = page(None, 3);
        let texts: Vec<&str> = last.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["m4", "m5", "mine"], "the newest 3, oldest first; the room's message is not there");
        assert!(last[2].outgoing && last[2].e2e && !last[0].outgoing);
        assert_eq!(last[2].verified, Verified::Known);
        assert_eq!(last[0].from, "bob");
        let older = page(Some(last[0].id), 10);
        let texts: Vec<&str> = older.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["m1", "m2", "m3"], "strictly before the cursor");
        assert!(page(Some(12345), 10).is_empty(), "an unknown cursor gives nothing");
        assert_eq!(page(None, 100_000).len(), 6, "capped, not refused");
    }

    #[test]
    fn conversations_list_rooms_joined_groups_and_people_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), &["Lobby".to_owned()]);
        let store = engine.people.store.clone().unwrap();
        store.record(&received(1, 1000, "Bob", Target::User("alice".into()), "hi")).unwrap();
        store.record(&received(2, 3000, "carol", Target::Room("Secret".into()), "psst").with_e2e(true)).unwrap();
        // A room left long ago: in the history, not joined, not listed.
        store.record(&received(3, 5000, "dave", Target::Room("old".into()), "bye")).unwrap();
        store.set_group("s alice", b"g1", &crate::groups::GroupKind::Room("secret".into())).unwrap();
        store.set_group("s alice", b"g2", &crate::groups::GroupKind::Direct("erin".into())).unwrap();
        let Reply::Conversations(list) = engine.local(Command::Conversations).unwrap() else { panic!() };
        let shown: Vec<(Target, bool, Option<u64>)> =
            list.into_iter().map(|c| (c.target, c.e2e, c.last_timestamp_ms)).collect();
        assert_eq!(
            shown,
            [
                (Target::Room("Secret".into()), true, Some(3000)),
                (Target::User("Bob".into()), false, Some(1000)),
                (Target::User("erin".into()), true, None),
                (Target::Room("Lobby".into()), false, None),
            ]
        );
    }

    #[test]
    fn contacts_are_the_remembered_keys() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), &[]);
        let store = engine.people.store.clone().unwrap();
        let mut peers = Peers::open("s", store).unwrap();
        let key = IdentityPublicKey::ed25519_from_raw(&[7; 32]);
        assert!(matches!(peers.check_key("Bob", &key), MessageStatus::New(_)));
        let fp = peers.remembered("bob").unwrap();
        peers.mark_verified("bob", fp).unwrap();
        let Reply::Contacts(list) = engine.local(Command::Contacts).unwrap() else { panic!() };
        assert_eq!(list, [Contact { name: "bob".into(), fingerprint: fp.to_string(), verified: true }]);
    }

    /// An unsigned message under a remembered name comes back from the
    /// history with the verdict and signedness it had live (not as a key
    /// change, nor as a plain unsigned one); an older `key-changed` record
    /// still loads as a change.
    #[test]
    fn history_gives_back_an_unsigned_message_under_a_remembered_name_as_it_came() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), &[]);
        let store = engine.people.store.clone().unwrap();
        let remembered = Fingerprint::from_bytes([1; 32]);
        let unsigned = MessageStatus::KeyChanged { remembered, presented: None };
        let to_alice = || Target::User("alice".into());
        store.record(&received_as(1, 5, "bob", to_alice(), "pay mallory", &unsigned)).unwrap();
        let old = Msg { label: "key-changed".into(), ..received(2, 6, "bob", to_alice(), "older") };
        store.record(&old).unwrap();
        let reply = engine
            .local(Command::History { conversation: Target::User("bob".into()), before: None, limit: 10 })
            .unwrap();
        let Reply::History(entries) = reply else { panic!("{reply:?}") };
        let got: Vec<(Verified, bool)> = entries.iter().map(|e| (e.verified, e.signed)).collect();
        assert_eq!(got, [(Verified::Changed, false), (Verified::Changed, true)]);
    }

    #[test]
    fn history_labels_map_to_verdicts_and_key_states_have_labels() {
        assert_eq!(verdict_of_label(OWN_LABEL), Verified::Known);
        assert_eq!(verdict_of_label("key-changed"), Verified::Changed);
        assert_eq!(verdict_of_label(UNSIGNED_REMEMBERED_LABEL), Verified::Changed);
        assert!(!signed_label(UNSIGNED_REMEMBERED_LABEL) && !signed_label("unsigned"));
        assert!(signed_label("key-changed") && signed_label(OWN_LABEL));
        assert_eq!(verdict_of_label("invalid-signature"), Verified::Invalid);
        assert_eq!(verdict_of_label("verified"), Verified::Verified);
        let labels: Vec<_> = [KeyState::New, KeyState::Changed, KeyState::Unknown].map(KeyState::as_str).into();
        assert_eq!(labels, ["new", "changed", "unknown"]);
    }

    #[test]
    fn pending_keys_stay_bounded() {
        let mut map = BTreeMap::new();
        for i in 0..MAX_PENDING_KEYS + 10 {
            bounded_insert(&mut map, format!("u{i:05}"), i);
        }
        assert_eq!(map.len(), MAX_PENDING_KEYS);
    }
}
