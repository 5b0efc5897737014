//! A tampering relay is detected (issue 15, security property 2): a relay
//! that alters, forges, replays, reorders or drops the MLS messages it
//! carries (`RunOptions::dangerous_group_tamper_for_testing_only`, applied
//! as it fans a message out) never gets anything shown as from a member
//! that the member did not send; what does not decrypt and verify is
//! reported to the user (`Outcome::Failed`).
//!
//! Clients are the real ones: `cipherline_client::Client` with an Ed25519
//! identity, and `Conversations` (the MLS engine the CLI uses) on a data
//! directory of its own per user.
//!
//! What a relay can still do: drop messages and deliver authentic ones out
//! of order. Both are signalled by the sender's counter inside the MLS
//! content (a notice with the next message: so many missing, or this one
//! late); a message of a new epoch delivered before its commit is reported
//! and lost.
//!
//! Four tests are ignored because they fail today (bugs in the client):
//! the room a Welcome is for comes from the relay, unauthenticated, so a
//! relay can turn a room into a "direct conversation" (and direct messages
//! then reach everyone later added to the room) or file another group
//! under a room's name; a Welcome made with the last-resort key package
//! can be replayed, rolling the group back to that epoch so that replayed
//! messages are shown again; and a dropped first message of a sender is
//! not noticed (the first counter seen is the baseline).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherline_client::conversations::Conversations;
use cipherline_client::groups::Outcome;
use cipherline_client::{Client, LocalStore};
use cipherline_proto::app::{GroupDelivery, GroupEvent, PayloadKind, ServerMessage, Target};
use cipherline_server::{GroupTamper, Limits};
use common::{Server, connect_as, key, start_stored_with};
use tokio::time::timeout;

/// What the relay does to one group message, given every message it was
/// handed so far (this one last, as it was handed over).
type Attack = Box<dyn FnOnce(GroupDelivery, &[GroupDelivery]) -> Vec<GroupDelivery> + Send>;

#[derive(Default)]
struct State {
    seen: Vec<GroupDelivery>,
    next: Vec<(PayloadKind, Attack)>,
}

/// The hostile relay: passes everything on, except that the next message
/// of a kind gets the attack set for it.
#[derive(Clone)]
struct Relay(Arc<Mutex<State>>);

impl Relay {
    fn new() -> (Relay, GroupTamper) {
        let relay = Relay(Arc::default());
        let state = relay.0.clone();
        let hook: GroupTamper = Arc::new(move |d: GroupDelivery| {
            let mut state = state.lock().unwrap();
            state.seen.push(d.clone());
            let State { seen, next } = &mut *state;
            match next.iter().position(|(kind, _)| *kind == d.kind) {
                Some(i) => {
                    let (_, attack) = next.remove(i);
                    attack(d, seen)
                }
                None => vec![d],
            }
        });
        (relay, hook)
    }

    /// `attack` is applied to the next message of `kind` the relay fans out.
    fn on_next(
        &self,
        kind: PayloadKind,
        attack: impl FnOnce(GroupDelivery, &[GroupDelivery]) -> Vec<GroupDelivery> + Send + 'static,
    ) {
        self.0.lock().unwrap().next.push((kind, Box::new(attack)));
    }

    /// Every attack set was carried out.
    fn done(&self) {
        let state = self.0.lock().unwrap();
        let pending: Vec<PayloadKind> = state.next.iter().map(|(k, _)| *k).collect();
        assert!(pending.is_empty(), "attacks never carried out, on {pending:?}");
    }

    /// The last message handed to the relay by `from` of `kind`.
    fn last(&self, from: &str, kind: PayloadKind) -> GroupDelivery {
        let state = self.0.lock().unwrap();
        state.seen.iter().rev().find(|d| d.from == from && d.kind == kind).cloned().unwrap()
    }
}

/// One user: a connection with its identity key, and its MLS state.
struct User {
    client: Client,
    conv: Conversations,
    _dir: tempfile::TempDir,
}

impl User {
    /// Connects `name` with identity key `seed`, publishes key packages and
    /// starts the delivery of its stored queue.
    async fn connect(server: &Server, name: &str, seed: u8) -> User {
        let dir = tempfile::tempdir().unwrap();
        let mut client = connect_as(&server.addr, name, Some(key(seed))).await.unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        let conv = Conversations::open(dir.path(), &server.addr, name, &key(seed), store).unwrap().unwrap();
        conv.publish_key_packages(&mut client).await.unwrap();
        client.resume(0).await.unwrap();
        User { client, conv, _dir: dir }
    }

    async fn dm(&mut self, to: &str, text: &str) {
        self.conv.send_direct(&mut self.client, to, text, &mut |_, _| Ok(())).await.unwrap();
    }

    async fn say(&mut self, room: &str, text: &str) {
        self.conv.send_room(&mut self.client, room, text).await.unwrap();
    }

    async fn create(&mut self, room: &str) {
        self.conv.create_room(&mut self.client, room, false).await.unwrap();
    }

    async fn invite(&mut self, room: &str, user: &str) {
        self.conv.invite(&mut self.client, room, &[user.to_owned()], &mut |_, _| Ok(())).await.unwrap();
    }

    /// The next `n` MLS messages delivered, each processed (and
    /// acknowledged) as the CLI does.
    async fn next(&mut self, n: usize) -> Vec<Outcome> {
        let mut out = Vec::new();
        while out.len() < n {
            let msg = timeout(Duration::from_secs(10), self.client.recv()).await.expect("a delivery in time").unwrap();
            if let ServerMessage::Group(GroupEvent::Message(d)) = msg {
                out.push(self.conv.handle(&d).unwrap());
                self.client.handled(d.seq).await.unwrap();
            }
        }
        out
    }

    async fn one(&mut self) -> Outcome {
        self.next(1).await.remove(0)
    }

    /// Nothing more is delivered (within half a second).
    async fn nothing_more(&mut self) {
        while let Ok(msg) = timeout(Duration::from_millis(500), self.client.recv()).await {
            if let ServerMessage::Group(GroupEvent::Message(d)) = msg.unwrap() {
                panic!("unexpected delivery: {:?}", self.conv.handle(&d).unwrap());
            }
        }
    }
}

/// A message from `from` saying `text` in `target`, in order (no notice
/// from the sender's counter).
#[track_caller]
fn shown(o: &Outcome, from: &str, text: &str, target: &Target) {
    shown_noticing(o, from, text, target, "");
}

/// A message from `from` saying `text` in `target`, with a notice from
/// the sender's counter containing `notice` (empty: no notice).
#[track_caller]
fn shown_noticing(o: &Outcome, from: &str, text: &str, target: &Target, notice: &str) {
    match o {
        Outcome::Message { from: f, text: t, target: g, notice: n, .. }
            if f == from
                && t == text
                && g == target
                && (if notice.is_empty() { n.is_empty() } else { n.contains(notice) }) => {}
        other => panic!("expected {from} saying {text:?} in {target:?} (notice {notice:?}), got {other:?}"),
    }
}

/// Reported as not shown: never a message.
#[track_caller]
fn failed(o: &Outcome) {
    assert!(matches!(o, Outcome::Failed { .. }), "expected the user to be told of a bad message, got {o:?}");
}

#[track_caller]
fn joined(o: &Outcome) {
    assert!(matches!(o, Outcome::Joined { .. }), "expected an invitation, got {o:?}");
}

fn bob() -> Target {
    Target::User("bob".into())
}

fn room(name: &str) -> Target {
    Target::Room(name.into())
}

async fn start() -> (tempfile::TempDir, Server, Relay) {
    let dir = tempfile::tempdir().unwrap();
    let (relay, hook) = Relay::new();
    let server = start_stored_with(dir.path(), Limits::default(), Some(hook)).await;
    (dir, server, relay)
}

#[tokio::test]
async fn an_altered_message_is_reported_and_never_shown() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    alice.dm("bob", "hello").await;
    let got = bob_.next(2).await;
    joined(&got[0]);
    shown(&got[1], "alice", "hello", &bob());

    // One bit flipped in the header, the encrypted sender data, the
    // ciphertext and the tag; then half of it cut off.
    let len = relay.last("alice", PayloadKind::Application).payload.len();
    for at in [1, 8, len / 3, len / 2, len - 20, len - 1] {
        relay.on_next(PayloadKind::Application, move |mut d, _| {
            let i = at.min(d.payload.len() - 1);
            d.payload[i] ^= 0x01;
            vec![d]
        });
        alice.dm("bob", &format!("altered at byte {at}")).await;
        failed(&bob_.one().await);
    }
    relay.on_next(PayloadKind::Application, |mut d, _| {
        d.payload.truncate(d.payload.len() / 2);
        vec![d]
    });
    alice.dm("bob", "cut short").await;
    failed(&bob_.one().await);

    // What the relay says around the MLS bytes counts for nothing: the
    // sender is the one MLS authenticated, the conversation the group's.
    relay.on_next(PayloadKind::Application, |mut d, _| {
        d.from = "mallory".into();
        d.room = Some("elsewhere".into());
        vec![d]
    });
    alice.dm("bob", "relabelled by the relay").await;
    // alice's counter tells bob the seven he was told of are missing.
    let got = bob_.one().await;
    shown_noticing(
        &got,
        "alice",
        "relabelled by the relay",
        &bob(),
        "7 earlier message(s) from alice have not arrived",
    );

    // The conversation survives the tampering.
    alice.dm("bob", "still here").await;
    shown(&bob_.one().await, "alice", "still here", &bob());
    bob_.nothing_more().await;
    relay.done();
}

#[tokio::test]
async fn an_altered_commit_or_welcome_is_reported_and_nothing_after_it_is_shown() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    let mut carol = User::connect(&server, "carol", 3).await;
    let mut dave = User::connect(&server, "dave", 4).await;
    alice.create("secret").await;
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);

    // carol's invitation reaches bob altered: he is told, and cannot read
    // the room from then on (he is told each time), while carol can.
    relay.on_next(PayloadKind::Commit, |mut d, _| {
        let at = d.payload.len() / 2;
        d.payload[at] ^= 0x80;
        vec![d]
    });
    alice.invite("secret", "carol").await;
    failed(&bob_.one().await);
    joined(&carol.one().await);
    alice.say("secret", "after carol came").await;
    failed(&bob_.one().await);
    shown(&carol.one().await, "alice", "after carol came", &room("secret"));

    // dave's invitation altered: he is told, and is not in the room.
    relay.on_next(PayloadKind::Welcome, |mut d, _| {
        let at = d.payload.len() / 2;
        d.payload[at] ^= 0x01;
        vec![d]
    });
    alice.invite("secret", "dave").await;
    failed(&dave.one().await);
    assert!(matches!(carol.one().await, Outcome::Changed { .. }));
    failed(&bob_.one().await);
    alice.say("secret", "after dave came").await;
    failed(&dave.one().await);
    failed(&bob_.one().await);
    shown(&carol.one().await, "alice", "after dave came", &room("secret"));
    for u in [&mut bob_, &mut carol, &mut dave] {
        u.nothing_more().await;
    }
    relay.done();
}

#[tokio::test]
async fn a_forged_message_is_reported_and_never_shown_as_from_the_sender() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    let mut carol = User::connect(&server, "carol", 3).await;
    // mallory is a user the relay works with: her MLS messages are real.
    let mut mallory = User::connect(&server, "mallory", 5).await;
    alice.dm("bob", "hello bob").await;
    let got = bob_.next(2).await;
    joined(&got[0]);
    shown(&got[1], "alice", "hello bob", &bob());
    alice.dm("carol", "for carol only").await;
    carol.next(2).await;
    let to_carol = relay.last("alice", PayloadKind::Application);
    let invite_carol = relay.last("alice", PayloadKind::Welcome);
    mallory.dm("bob", "hi from mallory").await;
    let got = bob_.next(2).await;
    shown(&got[1], "mallory", "hi from mallory", &Target::User("bob".into()));

    // alice's message replaced by hers to carol (another group).
    let forged = to_carol.payload.clone();
    relay.on_next(PayloadKind::Application, move |mut d, _| {
        d.payload = forged;
        vec![d]
    });
    alice.dm("bob", "the real one").await;
    failed(&bob_.one().await);

    // mallory's real MLS message put into alice's conversation, as alice,
    // beside alice's real one.
    mallory.dm("bob", "mallory pretending").await;
    let got = bob_.one().await;
    shown(&got, "mallory", "mallory pretending", &bob());
    let from_mallory = relay.last("mallory", PayloadKind::Application);
    relay.on_next(PayloadKind::Application, move |d, _| {
        let forged = GroupDelivery { id: 0, payload: from_mallory.payload, ..d.clone() };
        vec![d, forged]
    });
    alice.dm("bob", "the real two").await;
    let got = bob_.next(2).await;
    shown_noticing(&got[0], "alice", "the real two", &bob(), "1 earlier message(s) from alice have not arrived");
    failed(&got[1]);

    // A new message of mallory's, which the relay says is alice's: shown
    // as mallory's, in mallory's conversation.
    relay.on_next(PayloadKind::Application, |mut d, _| {
        d.from = "alice".into();
        vec![d]
    });
    mallory.dm("bob", "I am alice").await;
    shown(&bob_.one().await, "mallory", "I am alice", &bob());

    // Bytes the relay made up, as alice's; and carol's invitation, as an
    // invitation from alice to bob.
    relay.on_next(PayloadKind::Application, move |d, _| {
        let made_up = GroupDelivery { id: 0, payload: vec![0x42; d.payload.len()], ..d.clone() };
        let invitation = GroupDelivery { id: 0, ..invite_carol };
        vec![made_up, invitation]
    });
    alice.dm("bob", "the real three, dropped").await;
    let got = bob_.next(2).await;
    failed(&got[0]);
    failed(&got[1]);
    for o in &got {
        assert!(!matches!(o, Outcome::Message { .. } | Outcome::Joined { .. }), "{o:?}");
    }

    alice.dm("bob", "the real four").await;
    let got = bob_.one().await;
    shown_noticing(&got, "alice", "the real four", &bob(), "1 earlier message(s) from alice have not arrived");
    bob_.nothing_more().await;
    relay.done();
}

#[tokio::test]
async fn a_replayed_message_is_reported_and_not_shown_again() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    alice.dm("bob", "one").await;
    let got = bob_.next(2).await;
    shown(&got[1], "alice", "one", &bob());
    let first = relay.last("alice", PayloadKind::Application);

    // "one" again under a new id, after "two".
    relay.on_next(PayloadKind::Application, move |d, _| vec![d, GroupDelivery { id: 0, ..first }]);
    alice.dm("bob", "two").await;
    let got = bob_.next(2).await;
    shown(&got[0], "alice", "two", &bob());
    failed(&got[1]);

    // In a room: a commit and a message of an earlier epoch replayed.
    alice.create("secret").await;
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);
    alice.say("secret", "in the room").await;
    shown(&bob_.one().await, "alice", "in the room", &room("secret"));
    let said = relay.last("alice", PayloadKind::Application);
    let mut carol = User::connect(&server, "carol", 3).await;
    alice.invite("secret", "carol").await;
    assert!(matches!(bob_.one().await, Outcome::Changed { .. }));
    joined(&carol.one().await);
    let commit = relay.last("alice", PayloadKind::Commit);
    relay.on_next(PayloadKind::Application, move |d, _| {
        vec![d, GroupDelivery { id: 0, ..commit }, GroupDelivery { id: 0, ..said }]
    });
    alice.say("secret", "with carol").await;
    let got = bob_.next(3).await;
    shown(&got[0], "alice", "with carol", &room("secret"));
    failed(&got[1]);
    failed(&got[2]);
    let got = carol.next(3).await;
    shown(&got[0], "alice", "with carol", &room("secret"));
    failed(&got[1]);
    failed(&got[2]);

    // The conversation goes on.
    alice.say("secret", "still fine").await;
    shown(&bob_.one().await, "alice", "still fine", &room("secret"));
    shown(&carol.one().await, "alice", "still fine", &room("secret"));
    bob_.nothing_more().await;
    relay.done();
}

#[tokio::test]
async fn reordered_messages_are_shown_unaltered_and_a_reordered_commit_is_reported() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    alice.dm("bob", "zero").await;
    bob_.next(2).await;

    // "one" held back and delivered after "two". Both are alice's, as she
    // wrote them; her counter tells bob of the gap, then of the late one,
    // and her authenticated clock tells the real order.
    relay.on_next(PayloadKind::Application, |_, _| Vec::new());
    alice.dm("bob", "one").await;
    let held = relay.last("alice", PayloadKind::Application);
    relay.on_next(PayloadKind::Application, move |d, _| vec![d, held]);
    alice.dm("bob", "two").await;
    let got = bob_.next(2).await;
    shown_noticing(&got[0], "alice", "two", &bob(), "1 earlier message(s) from alice have not arrived");
    shown_noticing(&got[1], "alice", "one", &bob(), "arrived after a later one");
    let sent_at = |o: &Outcome| match o {
        Outcome::Message { sent_at_ms, .. } => *sent_at_ms,
        other => panic!("{other:?}"),
    };
    assert!(sent_at(&got[1]) <= sent_at(&got[0]));

    // In a room, a message of the next epoch delivered before the commit
    // that starts it: reported (bob cannot read it yet, and it is not
    // given to him again), and the room goes on.
    let mut carol = User::connect(&server, "carol", 3).await;
    alice.create("secret").await;
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);
    relay.on_next(PayloadKind::Commit, |_, _| Vec::new());
    alice.invite("secret", "carol").await;
    joined(&carol.one().await);
    let commit = relay.last("alice", PayloadKind::Commit);
    relay.on_next(PayloadKind::Application, move |d, _| vec![d, commit]);
    alice.say("secret", "early").await;
    let got = bob_.next(2).await;
    failed(&got[0]);
    assert!(matches!(got[1], Outcome::Changed { .. }), "{:?}", got[1]);
    shown(&carol.one().await, "alice", "early", &room("secret"));
    alice.say("secret", "on time").await;
    shown(&bob_.one().await, "alice", "on time", &room("secret"));
    bob_.nothing_more().await;
    relay.done();
}

#[tokio::test]
async fn dropped_messages_are_missing_and_a_dropped_commit_is_reported_from_then_on() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    alice.dm("bob", "one").await;
    bob_.next(2).await;

    // A dropped message is missing, and alice's counter says so with the
    // next one, which is hers, unaltered.
    relay.on_next(PayloadKind::Application, |_, _| Vec::new());
    alice.dm("bob", "two").await;
    alice.dm("bob", "three").await;
    let got = bob_.one().await;
    shown_noticing(&got, "alice", "three", &bob(), "1 earlier message(s) from alice have not arrived");
    bob_.nothing_more().await;

    // A dropped commit: bob is told of every later message instead of
    // reading it; carol, who got hers, reads them.
    let mut carol = User::connect(&server, "carol", 3).await;
    alice.create("secret").await;
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);
    relay.on_next(PayloadKind::Commit, |_, _| Vec::new());
    alice.invite("secret", "carol").await;
    joined(&carol.one().await);
    for text in ["after the drop", "and again"] {
        alice.say("secret", text).await;
        failed(&bob_.one().await);
        shown(&carol.one().await, "alice", text, &room("secret"));
    }

    // A dropped invitation: dave is never in the group, and is told of
    // the room's messages the relay gives him.
    let mut dave = User::connect(&server, "dave", 4).await;
    relay.on_next(PayloadKind::Welcome, |_, _| Vec::new());
    alice.invite("secret", "dave").await;
    assert!(matches!(carol.one().await, Outcome::Changed { .. }));
    failed(&bob_.one().await);
    alice.say("secret", "dave cannot read this").await;
    failed(&dave.one().await);
    failed(&bob_.one().await);
    shown(&carol.one().await, "alice", "dave cannot read this", &room("secret"));
    for u in [&mut bob_, &mut carol, &mut dave] {
        u.nothing_more().await;
    }
    relay.done();
}

/// The relay says which room (or none) a Welcome is for, and nothing
/// checks it against the group: relabelled, a room's invitation becomes a
/// direct conversation, and a direct message then goes to everyone the
/// room's admin adds (carol reads bob's "for alice only").
#[tokio::test]
async fn a_relabelled_invitation_does_not_turn_a_room_into_a_direct_conversation() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    let mut carol = User::connect(&server, "carol", 3).await;
    alice.create("secret").await;
    relay.on_next(PayloadKind::Welcome, |mut d, _| {
        d.room = None;
        vec![d]
    });
    alice.invite("secret", "bob").await;
    let got = bob_.one().await;
    assert!(
        !matches!(&got, Outcome::Joined { target: Target::User(_), .. }),
        "the relay turned room secret into a direct conversation: {got:?}"
    );
    alice.invite("secret", "carol").await;
    joined(&carol.one().await);
    bob_.next(1).await;
    bob_.dm("alice", "for alice only").await;
    carol.nothing_more().await;
    relay.done();
}

/// Relabelled, another group's invitation is taken for a room this user
/// is in: its messages show in that room (and, if its group id sorts
/// first, what the user says in the room goes to that group).
#[tokio::test]
async fn a_relabelled_invitation_does_not_put_another_group_in_a_room() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    let mut mallory = User::connect(&server, "mallory", 5).await;
    alice.create("secret").await;
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);
    mallory.create("lair").await;
    relay.on_next(PayloadKind::Welcome, |mut d, _| {
        d.room = Some("secret".into());
        vec![d]
    });
    mallory.invite("lair", "bob").await;
    let got = bob_.one().await;
    assert!(
        !matches!(&got, Outcome::Joined { target: Target::Room(r), .. } if r == "secret"),
        "the relay put mallory's group in room secret: {got:?}"
    );
    mallory.say("lair", "hello from the lair").await;
    let got = bob_.one().await;
    assert!(
        !matches!(&got, Outcome::Message { target: Target::Room(r), .. } if r == "secret"),
        "mallory's message shows in room secret: {got:?}"
    );
    relay.done();
}

/// An invitation replayed under a new id. Made with a one-time key package
/// it cannot be opened again (the test below); made with the last-resort
/// package, which the client keeps, it is opened again: the group goes
/// back to the invitation's epoch, and a replayed message of that epoch is
/// shown a second time as new.
#[tokio::test]
async fn a_replayed_invitation_does_not_roll_a_group_back() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    alice.create("secret").await;
    // Use up bob's one-time key packages: the invitation is made with his
    // last-resort one (as when he has been offline a while).
    for _ in 0..16 {
        alice.client.claim_key_package("bob").await.unwrap();
    }
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);
    let welcome = relay.last("alice", PayloadKind::Welcome);
    alice.say("secret", "m1").await;
    shown(&bob_.one().await, "alice", "m1", &room("secret"));
    let m1 = relay.last("alice", PayloadKind::Application);
    relay.on_next(PayloadKind::Application, move |d, _| {
        vec![d, GroupDelivery { id: 0, ..welcome }, GroupDelivery { id: 0, ..m1 }]
    });
    alice.say("secret", "m2").await;
    let got = bob_.next(3).await;
    shown(&got[0], "alice", "m2", &room("secret"));
    assert!(!matches!(got[1], Outcome::Joined { .. }), "the replayed invitation was opened again: {:?}", got[1]);
    failed(&got[2]);
    relay.done();
}

#[tokio::test]
async fn a_replayed_invitation_made_with_a_one_time_key_package_is_reported() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    alice.create("secret").await;
    alice.invite("secret", "bob").await;
    joined(&bob_.one().await);
    let welcome = relay.last("alice", PayloadKind::Welcome);
    alice.say("secret", "m1").await;
    shown(&bob_.one().await, "alice", "m1", &room("secret"));
    let m1 = relay.last("alice", PayloadKind::Application);
    relay.on_next(PayloadKind::Application, move |d, _| {
        vec![d, GroupDelivery { id: 0, ..welcome }, GroupDelivery { id: 0, ..m1 }]
    });
    alice.say("secret", "m2").await;
    let got = bob_.next(3).await;
    shown(&got[0], "alice", "m2", &room("secret"));
    failed(&got[1]);
    failed(&got[2]);
    alice.say("secret", "m3").await;
    shown(&bob_.one().await, "alice", "m3", &room("secret"));
    bob_.nothing_more().await;
    relay.done();
}

/// The first message of a conversation dropped: the second is the first
/// bob sees from alice, and her counter (2) is taken as the baseline, so
/// nothing tells him one is missing although he was in the conversation
/// from its start.
#[tokio::test]
async fn a_dropped_first_message_is_noticed() {
    let (_dir, server, relay) = start().await;
    let mut alice = User::connect(&server, "alice", 1).await;
    let mut bob_ = User::connect(&server, "bob", 2).await;
    relay.on_next(PayloadKind::Application, |_, _| Vec::new());
    alice.dm("bob", "one").await;
    alice.dm("bob", "two").await;
    let got = bob_.next(2).await;
    joined(&got[0]);
    shown_noticing(&got[1], "alice", "two", &bob(), "1 earlier message(s) from alice have not arrived");
    relay.done();
}
