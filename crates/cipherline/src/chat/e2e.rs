//! `chat`'s end-to-end conversations (PROTOCOL.md §13.11): direct
//! messages and end-to-end rooms as MLS groups.
//!
//! Chat's connection is split into a reader task and a writer, so the
//! engine's requests that wait for an answer (claiming a KeyPackage and
//! committing, creating or joining a room, /invite, /kick, /leave, leaf
//! updates) run on a second connection of the same name and identity,
//! opened when first needed ([`Side`]). It never sends Resume, so the
//! relay delivers nothing stored to it: every group message reaches chat
//! through its own connection, in order. Application messages are
//! encrypted here and sent on chat's writer, tracked by the outbox like
//! any text (acknowledgement, `rate_limited` retries, which encrypt again,
//! and "not sent" reports).

use std::time::Duration;

use cipherline_client::display::escape;
use cipherline_client::groups::Outcome;
use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{ClientMessage, GroupDelivery, GroupRequest, RoomKind, Target, fold_name};
use cipherline_proto::crypto::sign::IdentityPublicKey;
use tokio::time::Instant;

use super::{Chat, End, ROOM_WAIT};
use crate::client_args::{ClientArgs, Connected};
use crate::conversation::{as_delivery, describe, key_check};
use crate::error::CliError;
use crate::link::passing;
use crate::output::{key_notice, message_line};
use crate::pacing::Said;

/// How often a change to a room's members is tried again after another
/// member's commit won the epoch (each time after the commits that
/// arrived meanwhile were processed).
const STALE_RETRIES: u32 = 3;
/// How long a change waits before it is tried again after a lost epoch:
/// the winning commits are in this user's queue by then (the relay stores
/// them before it answers), so they are processed first.
const STALE_PAUSE: Duration = Duration::from_millis(300);

/// The second connection, for the requests that wait for an answer.
#[derive(Default)]
pub(super) struct Side {
    client: Option<Client>,
    /// When it was last used: one idle for half the server's idle timeout
    /// may be closed by the server, so it is made again instead.
    used: Option<Instant>,
}

impl Side {
    /// The connection, made (again) if there is none or it sat idle.
    async fn client(&mut self, args: &ClientArgs) -> Result<&mut Client, CliError> {
        let stale = match (&self.client, self.used) {
            (Some(c), Some(used)) => used.elapsed() >= Duration::from_secs(u64::from(c.idle_timeout_secs().max(2)) / 2),
            _ => true,
        };
        if stale {
            if let Some(old) = self.client.take() {
                let _ = old.close().await;
            }
            let Connected { client, .. } = args.connect(false).await?;
            self.client = Some(client);
        }
        self.used = Some(Instant::now());
        let client = self.client.as_mut().ok_or_else(|| CliError::failed("no second connection", "try again"))?;
        // What the relay sent this session meanwhile (live traffic of the
        // name's open rooms; chat's own connection shows it) is dropped
        // rather than kept. `recv` is cancel-safe; a few thousand at most.
        for _ in 0..4096 {
            if !matches!(tokio::time::timeout(Duration::ZERO, client.recv()).await, Ok(Ok(_))) {
                break;
            }
        }
        Ok(client)
    }

    /// Closes the connection, if there is one (chat ends, or its own
    /// connection was lost: this one is most likely gone too).
    pub(super) async fn close(&mut self) {
        self.used = None;
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
        }
    }

    /// Runs `op` on the connection, once more on a new one if the old one
    /// was gone (a request on a closed connection never reached the relay).
    pub(super) async fn run<T>(
        &mut self,
        args: &ClientArgs,
        mut op: impl AsyncFnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, CliError> {
        let mut again = true;
        loop {
            let client = self.client(args).await?;
            match op(client).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    let timed_out = matches!(e, ClientError::Timeout(_));
                    let e = CliError::Client(e);
                    if passing(&e) {
                        self.client = None;
                        // A request that timed out may have been handled.
                        if again && !timed_out {
                            again = false;
                            continue;
                        }
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// A change to the current end-to-end room to try again.
pub(super) struct Deferred {
    pub(super) line: String,
    pub(super) tries: u32,
    pub(super) at: Instant,
}

/// How a text goes out.
enum Route {
    /// In this MLS group.
    Group(Vec<u8>),
    /// As a plain Send, readable by the server.
    Plain,
    /// Not at all (the user was told why).
    Refused,
}

/// An error of the second connection or the engine, for a `!` line (it
/// may carry the relay's words: escaped).
fn why(e: &CliError) -> String {
    escape(&e.to_string()).into_owned()
}

impl Chat {
    /// Whether `room` is an end-to-end room chat is in.
    pub(super) fn is_e2e_room(&self, room: &str) -> bool {
        self.e2e_rooms.contains_key(&fold_name(room))
    }

    /// `/join ROOM` for a client that can take part in end-to-end rooms:
    /// asks what the room is first. No such room: an end-to-end,
    /// invite-only one is created; an end-to-end room this user is in
    /// becomes the current room; a public one is joined by external
    /// commit. Returns false for an open room (joined as always).
    pub(super) async fn e2e_join(&mut self, room: &str, args: &ClientArgs) -> bool {
        let Some(e2e) = self.e2e.as_ref() else { return false };
        let info = match self.side.run(args, async |c| c.room_info(room).await).await {
            Ok(info) => info,
            Err(e) => {
                self.screen.show(format!("! cannot ask about {}: {}", escape(room), why(&e)));
                return true;
            }
        };
        let member = match e2e.room_group(room) {
            Ok(group) => group.is_some(),
            Err(e) => {
                self.screen.show(format!("! {}", why(&CliError::Client(e))));
                return true;
            }
        };
        match info.kind {
            Some(RoomKind::Open) => return false,
            None => match self.side.run(args, async |c| e2e.create_room(c, room, false).await).await {
                Ok(()) => self.enter(
                    room,
                    "joined",
                    "a new room, end-to-end encrypted and invite-only (/invite USER adds members)",
                ),
                Err(e) => self.screen.show(format!("! cannot create {}: {}", escape(room), why(&e))),
            },
            Some(_) if member => {
                self.enter(room, "now in", "end-to-end encrypted");
                self.prune(room, args).await;
            }
            Some(RoomKind::Public) => {
                let mut tries = 0;
                let joined = loop {
                    match self.side.run(args, async |c| e2e.join_public(c, room).await).await {
                        Err(CliError::Client(ClientError::Stale { .. })) if tries < STALE_RETRIES => tries += 1,
                        other => break other,
                    }
                };
                match joined {
                    Ok(()) => self.enter(room, "joined", "end-to-end encrypted, public"),
                    Err(e) => self.screen.show(format!("! cannot join {}: {}", escape(room), why(&e))),
                }
            }
            Some(RoomKind::Invite) => self.screen.show(format!(
                "! {} is end-to-end encrypted and invite-only: ask a member to /invite you",
                escape(room)
            )),
        }
        true
    }

    /// Makes the end-to-end room `room` the current one, and says so.
    fn enter(&mut self, room: &str, how: &str, what: &str) {
        self.e2e_rooms.insert(fold_name(room), room.to_owned());
        self.room = Some(room.to_owned());
        self.screen.show(format!("* {how} {} ({what})", escape(room)));
    }

    /// `/create ROOM [--public | --open]`.
    pub(super) async fn create(&mut self, rest: &str, args: &ClientArgs) -> Result<(), CliError> {
        let mut words = rest.split_whitespace();
        let (Some(room), flag, None) = (words.next(), words.next(), words.next()) else {
            self.screen.show("! usage: /create ROOM [--public | --open]");
            return Ok(());
        };
        match flag {
            Some("--open") => {
                let create =
                    GroupRequest::CreateRoom { room: room.to_owned(), kind: RoomKind::Open, group_id: Vec::new() };
                self.writer.send_message(&ClientMessage::Group(create)).await?;
                self.room_wait = Some(Instant::now() + ROOM_WAIT);
            }
            None | Some("--public") => {
                let public = flag.is_some();
                let Some(e2e) = self.e2e.as_ref() else {
                    self.screen.show(
                        "! end-to-end rooms need an Ed25519 identity key and a server that keeps messages for you; \
                         /create ROOM --open makes one the server can read",
                    );
                    return Ok(());
                };
                match self.side.run(args, async |c| e2e.create_room(c, room, public).await).await {
                    Ok(()) => {
                        let what = if public { "public" } else { "invite-only" };
                        self.enter(room, "created", &format!("end-to-end encrypted, {what}"));
                    }
                    Err(e) => self.screen.show(format!("! cannot create {}: {}", escape(room), why(&e))),
                }
            }
            Some(_) => self.screen.show("! usage: /create ROOM [--public | --open]"),
        }
        Ok(())
    }

    /// `/invite USER...` or `/kick USER...` in the current end-to-end
    /// room; a change that lost its epoch to another member's is tried
    /// again (`tries` so far) once what arrived meanwhile was processed.
    pub(super) async fn change(&mut self, line: &str, users: &str, invite: bool, tries: u32, args: &ClientArgs) {
        let verb = if invite { "/invite" } else { "/kick" };
        let users: Vec<String> = users.split_whitespace().map(str::to_owned).collect();
        let (Some(room), Some(e2e)) = (self.room.clone().filter(|r| self.is_e2e_room(r)), self.e2e.as_ref()) else {
            self.screen.show(format!("! {verb} works in an end-to-end room: /join or /create one first"));
            return;
        };
        if users.is_empty() {
            self.screen.show(format!("! usage: {verb} USER..."));
            return;
        }
        let peers = &mut self.peers;
        let result = self
            .side
            .run(args, async |c| {
                if invite {
                    e2e.invite(c, &room, &users, &mut key_check(peers)).await
                } else {
                    e2e.remove(c, &room, &users).await
                }
            })
            .await;
        let names: Vec<String> = users.iter().map(|u| escape(u).into_owned()).collect();
        match result {
            Ok(()) => {
                let what = if invite { "added" } else { "removed" };
                self.screen.show(format!(
                    "* {what} {} {} {}",
                    names.join(", "),
                    if invite { "to" } else { "from" },
                    escape(&room)
                ));
            }
            Err(CliError::Client(ClientError::Stale { .. })) if tries < STALE_RETRIES => {
                self.deferred =
                    Some(Deferred { line: line.to_owned(), tries: tries + 1, at: Instant::now() + STALE_PAUSE });
            }
            Err(e) => self.screen.show(format!("! {verb} {}: {}", names.join(" "), why(&e))),
        }
    }

    /// `/leave` in an end-to-end room: the relay stops delivering to this
    /// user and this client forgets the group.
    pub(super) async fn leave_e2e(&mut self, room: &str, args: &ClientArgs) {
        let Some(e2e) = self.e2e.as_ref() else { return };
        match self.side.run(args, async |c| e2e.leave(c, room).await).await {
            Ok(()) => {
                self.e2e_rooms.remove(&fold_name(room));
                self.screen.show(format!("* left {}", escape(room)));
                self.room = self.rooms.values().chain(self.e2e_rooms.values()).next().cloned();
            }
            Err(e) => self.screen.show(format!("! cannot leave {}: {}", escape(room), why(&e))),
        }
    }

    /// `/members` (or `/who`) in an end-to-end room: the roster as the MLS
    /// group states it, with the state of each member's key.
    pub(super) fn roster(&mut self, room: &str) {
        let Some(e2e) = self.e2e.as_ref() else { return };
        let members = match e2e.members(room) {
            Ok(m) => m,
            Err(e) => {
                self.screen.show(format!("! {}", why(&CliError::Client(e))));
                return;
            }
        };
        let me = fold_name(&self.info.name);
        let listed: Vec<String> = members
            .iter()
            .map(|(name, key)| {
                let state = if fold_name(name) == me {
                    "you"
                } else {
                    self.peers.check_key(name, &IdentityPublicKey::ed25519_from_raw(key)).label()
                };
                format!("{} ({state})", escape(name))
            })
            .collect();
        self.screen.show(format!("* in {} (end-to-end encrypted): {}", escape(room), listed.join(", ")));
    }

    /// Best effort, on entering an end-to-end room: members the relay no
    /// longer lists (they left) are removed from the MLS group, so what is
    /// said next is not encrypted to them.
    async fn prune(&mut self, room: &str, args: &ClientArgs) {
        let Some(e2e) = self.e2e.as_ref() else { return };
        let Ok(listed) = self.side.run(args, async |c| c.who(room).await).await else { return };
        let listed: Vec<String> = listed.iter().map(|n| fold_name(n)).collect();
        let Ok(members) = e2e.members(room) else { return };
        let me = fold_name(&self.info.name);
        let gone: Vec<String> = members
            .into_iter()
            .map(|(name, _)| name)
            .filter(|n| fold_name(n) != me && !listed.contains(&fold_name(n)))
            .collect();
        if gone.is_empty() {
            return;
        }
        if self.side.run(args, async |c| e2e.remove(c, room, &gone).await).await.is_ok() {
            let names: Vec<String> = gone.iter().map(|n| escape(n).into_owned()).collect();
            self.screen.show(format!("* {} left {}: removed from its group", names.join(", "), escape(room)));
        }
    }

    /// How `said` goes: the group of an end-to-end room, or of the direct
    /// conversation (started on the second connection if there is none).
    async fn route(&mut self, said: &Said, args: &ClientArgs) -> Route {
        let Some(e2e) = self.e2e.as_ref() else {
            if let Target::User(user) = &said.to
                && self.told.insert(fold_name(user))
            {
                self.screen.show(format!(
                    "* messages to {} are not end-to-end encrypted: you have no Ed25519 identity key, or this \
                     server keeps nothing for you",
                    escape(user)
                ));
            }
            return Route::Plain;
        };
        match &said.to {
            Target::Room(room) if self.is_e2e_room(room) => match e2e.room_group(room) {
                Ok(Some(group)) => Route::Group(group),
                Ok(None) => {
                    self.screen.show(format!(
                        "! not sent: you are no longer in {}: {}",
                        escape(room),
                        escape(&said.text)
                    ));
                    Route::Refused
                }
                Err(e) => {
                    self.screen.show(format!("! not sent ({}): {}", why_client(e), escape(&said.text)));
                    Route::Refused
                }
            },
            Target::Room(_) => Route::Plain,
            Target::User(user) => match self.direct_group(user, args).await {
                Ok(group) => {
                    if self.told.insert(fold_name(user)) {
                        self.screen.show(format!("* messages with {} are end-to-end encrypted", escape(user)));
                    }
                    Route::Group(group)
                }
                Err(e) => {
                    self.screen.show(format!("! not sent to {} ({}): {}", escape(user), why(&e), escape(&said.text)));
                    Route::Refused
                }
            },
        }
    }

    /// The direct conversation with `user`, started (on the second
    /// connection, from one of their KeyPackages) if there is none.
    pub(super) async fn direct_group(&mut self, user: &str, args: &ClientArgs) -> Result<Vec<u8>, CliError> {
        let Some(e2e) = self.e2e.as_ref() else {
            return Err(CliError::failed("this chat has no end-to-end conversations", "it needs an Ed25519 key"));
        };
        let peers = &mut self.peers;
        match e2e.direct_group(user) {
            Ok(Some(group)) => Ok(group),
            Ok(None) => self.side.run(args, async |c| e2e.direct(c, user, &mut key_check(peers)).await).await,
            Err(e) => Err(CliError::Client(e)),
        }
    }

    /// Sends `said` end to end if its conversation is; returns it back if
    /// it goes as a plain Send.
    pub(super) async fn transmit_e2e(&mut self, said: Said, args: &ClientArgs) -> Result<Option<Said>, CliError> {
        let group = match self.route(&said, args).await {
            Route::Plain => return Ok(Some(said)),
            Route::Refused => return Ok(None),
            Route::Group(group) => group,
        };
        let Some(e2e) = self.e2e.as_ref() else { return Ok(Some(said)) };
        // A new leaf key now and then (post-compromise security), before
        // this text, so it is encrypted in the new epoch. Only once every
        // text sent was acknowledged: the relay has queued those already,
        // so none can reach a member after the commit (the commit goes on
        // the second connection, which keeps no order with this one). A
        // failure only delays it to a later text.
        if self.outbox.all_answered() && e2e.update_due(&group).unwrap_or(false) {
            let _ = self.side.run(args, async |c| e2e.update_if_due(c, &group).await).await;
        }
        let mut said = said;
        let payload = match said.sealed.take() {
            // A resend after `rate_limited`: the same message again.
            Some((sealed_for, payload)) if sealed_for == group => payload,
            _ => match e2e.seal(&group, &said.text) {
                Ok(p) => p,
                Err(e) => {
                    self.screen.show(format!("! not sent ({}): {}", why_client(e), escape(&said.text)));
                    return Ok(None);
                }
            },
        };
        said.sealed = Some((group.clone(), payload.clone()));
        let id = self.writer.next_id();
        let send = GroupRequest::Send { id, group_id: group.clone(), payload };
        match self.writer.send_message(&ClientMessage::Group(send)).await {
            Ok(()) => self.outbox.sent(id, said),
            Err(ClientError::TooLong { size, max }) => {
                self.screen.show(format!(
                    "! not sent: the message is {size} bytes encrypted; this server accepts at most {max}; shorten \
                     or split it"
                ));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }

    /// Uploads KeyPackages when the relay may be running low (others use
    /// one each to add this user); best effort: the next connection
    /// publishes them anyway.
    pub(super) async fn top_up(&mut self, args: &ClientArgs) {
        self.top_up = false;
        let Some(e2e) = self.e2e.as_ref() else { return };
        if let Err(e) = self.side.run(args, async |c| e2e.publish_key_packages(c).await).await {
            self.screen.show(format!("! could not publish end-to-end key packages: {}", why(&e)));
        }
    }

    /// A group message from the relay: processed by the engine, then shown
    /// (a message like any other, a change as a line), then acknowledged.
    pub(super) async fn on_group(&mut self, d: GroupDelivery) -> Option<End> {
        let Some(e2e) = self.e2e.as_ref() else { return self.handled(d.seq).await };
        let outcome = match e2e.handle(&d) {
            Ok(outcome) => outcome,
            Err(e) => {
                // A local failure (the state files): not acknowledged, so
                // the server delivers it again on the next connection.
                self.screen.show(format!(
                    "! an end-to-end message could not be processed here (it stays on the server): {}",
                    why_client(e)
                ));
                return None;
            }
        };
        if matches!(outcome, Outcome::File { .. }) {
            // Shown with a number to /accept it by (chat/files.rs).
            self.file_offered(d.id, &outcome);
            return self.handled(d.seq).await;
        }
        let me = self.info.name.clone();
        if let Some((delivery, status)) = as_delivery(&outcome, &d, &mut self.peers) {
            if self.recorder.is_new(&me, &delivery, &status) {
                if let Some(notice) = key_notice(&delivery, &status) {
                    self.screen.show(notice);
                }
                self.screen.show(message_line(&delivery, &me, &status));
                if let Outcome::Message { notice, .. } = &outcome
                    && !notice.is_empty()
                {
                    // Escaped by the engine.
                    self.screen.show(format!("! {notice}"));
                }
                self.recorder.shown_as(&me, &delivery, &status, true);
            }
            return self.handled(d.seq).await;
        }
        if let Some(line) = describe(&outcome) {
            self.screen.show(line);
        }
        if matches!(outcome, Outcome::Joined { .. }) {
            // The invitation used up one of this user's KeyPackages.
            self.top_up = true;
        }
        match outcome {
            Outcome::Joined { target: Target::Room(room), .. } => {
                self.screen.show(format!("  /join {} to talk there", escape(&room)));
                self.e2e_rooms.insert(fold_name(&room), room);
            }
            Outcome::Removed { target: Target::Room(room), .. } => {
                self.e2e_rooms.remove(&fold_name(&room));
                if self.room.as_deref().map(fold_name) == Some(fold_name(&room)) {
                    self.room = self.rooms.values().chain(self.e2e_rooms.values()).next().cloned();
                }
            }
            _ => {}
        }
        self.handled(d.seq).await
    }
}

fn why_client(e: ClientError) -> String {
    why(&CliError::Client(e))
}
