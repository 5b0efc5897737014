//! The relay as MLS delivery service (PROTOCOL.md §13.11): key packages,
//! end-to-end rooms, commit sequencing and fan-out through the store, with
//! real MLS from cipherline-e2e where the relay's checks depend on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use cipherline_client::Client;
use cipherline_e2e::{Member, Suite};
use cipherline_proto::app::{
    ClientMessage, CommitRequest, ErrorCode, GroupDelivery, GroupEvent, GroupRequest, PayloadKind, RoomKind,
    ServerMessage, Target,
};
use cipherline_server::Limits;
use common::{Server, connect_as, key, start_stored};
use tokio::time::timeout;

/// A raw client: sends requests, and sets aside the MLS messages that
/// arrive while it waits for an answer.
struct Peer {
    c: Client,
    inbox: VecDeque<GroupDelivery>,
    seed: u8,
}

type Answer = Result<ServerMessage, (ErrorCode, String)>;

impl Peer {
    async fn connect(server: &Server, name: &str, seed: u8) -> Peer {
        let mut c = connect_as(&server.addr, name, Some(key(seed))).await.unwrap();
        c.resume(0).await.unwrap();
        Peer { c, inbox: VecDeque::new(), seed }
    }

    fn member(&self) -> Member {
        Member::new(self.c.name(), &key(self.seed), Suite::XWing).unwrap()
    }

    /// Sends `msg` and waits for its answer (anything but a delivery).
    async fn ask(&mut self, msg: ClientMessage) -> Answer {
        self.c.send_message(&msg).await.unwrap();
        self.answer().await
    }

    async fn group(&mut self, req: GroupRequest) -> Answer {
        self.ask(ClientMessage::Group(req)).await
    }

    /// The group event answering a request, or its refusal.
    async fn event(&mut self, req: GroupRequest) -> Result<GroupEvent, (ErrorCode, String)> {
        match self.group(req).await? {
            ServerMessage::Group(e) => Ok(e),
            other => panic!("expected a group event, got {other:?}"),
        }
    }

    async fn answer(&mut self) -> Answer {
        loop {
            match timeout(Duration::from_secs(10), self.c.recv()).await.expect("an answer in time").unwrap() {
                ServerMessage::Group(GroupEvent::Message(d)) => self.inbox.push_back(d),
                ServerMessage::Notice { .. } => {}
                ServerMessage::Error { code, text, .. } => return Err((code, text)),
                other => return Ok(other),
            }
        }
    }

    /// The next MLS message delivered to this client (acknowledged).
    async fn delivery(&mut self) -> GroupDelivery {
        let d = match self.inbox.pop_front() {
            Some(d) => d,
            None => loop {
                match timeout(Duration::from_secs(10), self.c.recv()).await.expect("a delivery in time").unwrap() {
                    ServerMessage::Group(GroupEvent::Message(d)) => break d,
                    ServerMessage::Notice { .. } => {}
                    other => panic!("expected a delivery, got {other:?}"),
                }
            },
        };
        assert!(d.seq > 0, "MLS messages come through the store");
        self.c.handled(d.seq).await.unwrap();
        d
    }

    async fn upload(&mut self, last_resort: bool, packages: Vec<Vec<u8>>) -> Result<GroupEvent, (ErrorCode, String)> {
        self.event(GroupRequest::KeyPackages { last_resort, packages }).await
    }

    async fn create(&mut self, room: &str, kind: RoomKind, group_id: &[u8]) -> Answer {
        self.group(GroupRequest::CreateRoom { room: room.into(), kind, group_id: group_id.to_vec() }).await
    }

    async fn commit(&mut self, c: CommitRequest) -> Result<GroupEvent, (ErrorCode, String)> {
        self.event(GroupRequest::Commit(c)).await
    }
}

fn commit(group_id: &[u8], epoch: u64, invited: &[&str], removed: &[&str]) -> CommitRequest {
    CommitRequest {
        request: 100 + epoch,
        group_id: group_id.to_vec(),
        epoch,
        external: false,
        commit: format!("commit at epoch {epoch} (opaque to the relay)").into_bytes(),
        welcome: (!invited.is_empty()).then(|| b"welcome (opaque to the relay)".to_vec()),
        group_info: Some(format!("group info after epoch {epoch}").into_bytes()),
        invited: invited.iter().map(|s| (*s).to_owned()).collect(),
        removed: removed.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn refused(a: Result<impl std::fmt::Debug, (ErrorCode, String)>, code: ErrorCode) -> String {
    match a {
        Err((c, text)) if c == code => text,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Everyone the tests use has visited once, so their keys own their names.
async fn users(server: &Server, names: &[(&str, u8)]) {
    for (name, seed) in names {
        let p = Peer::connect(server, name, *seed).await;
        p.c.close().await.unwrap();
    }
}

#[tokio::test]
async fn one_time_packages_are_consumed_then_the_last_resort_one_is_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    users(&server, &[("carol", 3)]).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let m = alice.member();
    let (one, two, last) = (m.key_package().unwrap(), m.key_package().unwrap(), m.key_package().unwrap());
    assert_eq!(
        alice.upload(false, vec![one.clone(), two.clone()]).await.unwrap(),
        GroupEvent::KeyPackageCount { available: 2, last_resort: false }
    );
    assert_eq!(
        alice.upload(true, vec![last.clone()]).await.unwrap(),
        GroupEvent::KeyPackageCount { available: 2, last_resort: true }
    );
    let mut bob = Peer::connect(&server, "bob", 2).await;
    for expected in [&one, &two, &last, &last] {
        match bob.event(GroupRequest::Claim { user: "Alice".into() }).await.unwrap() {
            GroupEvent::KeyPackage { user, key_package } => {
                assert_eq!((user.as_str(), &key_package), ("Alice", expected), "oldest first, then the last resort");
            }
            other => panic!("{other:?}"),
        }
    }
    let text = refused(bob.event(GroupRequest::Claim { user: "carol".into() }).await, ErrorCode::NoKeyPackage);
    assert!(text.contains("carol") && text.contains("up-to-date client"), "{text}");
    refused(bob.event(GroupRequest::Claim { user: "nobody".into() }).await, ErrorCode::UnknownUser);
    refused(bob.event(GroupRequest::Claim { user: "a/b".into() }).await, ErrorCode::InvalidName);
    server.stop().await;
}

#[tokio::test]
async fn foreign_and_garbage_packages_and_keyless_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let alices = alice.member().key_package().unwrap();
    let bobs = bob.member().key_package().unwrap();
    // Bob uploads alice's package (with one of his own): nothing is kept.
    let text = refused(bob.upload(false, vec![bobs, alices.clone()]).await, ErrorCode::BadKeyPackage);
    assert!(text.contains("not yours"), "{text}");
    // A package naming bob but signed with another key is not his either.
    let impostor = Member::new("bob", &key(9), Suite::XWing).unwrap().key_package().unwrap();
    refused(bob.upload(false, vec![impostor]).await, ErrorCode::BadKeyPackage);
    refused(bob.upload(false, vec![b"garbage".to_vec()]).await, ErrorCode::BadKeyPackage);
    let mut flipped = alices.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 1;
    refused(alice.upload(false, vec![flipped]).await, ErrorCode::BadKeyPackage);
    refused(alice.event(GroupRequest::Claim { user: "bob".into() }).await, ErrorCode::NoKeyPackage);
    // A keyless client takes no part.
    let mut guest = connect_as(&server.addr, "guest", None).await.unwrap();
    guest.send_message(&ClientMessage::Group(GroupRequest::Claim { user: "alice".into() })).await.unwrap();
    let mut guest = Peer { c: guest, inbox: VecDeque::new(), seed: 0 };
    let text = refused(guest.answer().await, ErrorCode::NotAllowed);
    assert!(text.contains("identity key"), "{text}");
    refused(guest.upload(false, vec![alices]).await, ErrorCode::NotAllowed);
    // Asking what a room is is for anyone.
    let info = guest.event(GroupRequest::RoomInfo { room: "lobby".into() }).await.unwrap();
    assert!(matches!(info, GroupEvent::RoomInfo { kind: Some(RoomKind::Open), .. }), "{info:?}");
    server.stop().await;
}

#[tokio::test]
async fn room_names_are_taken_once_and_the_lobby_always_exists() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    assert!(matches!(alice.create("Team", RoomKind::Invite, b"g-team").await, Ok(ServerMessage::Joined { .. })));
    refused(alice.create("team", RoomKind::Public, b"g-other").await, ErrorCode::RoomExists);
    refused(alice.create("team", RoomKind::Open, b"").await, ErrorCode::RoomExists);
    refused(alice.create("lobby", RoomKind::Invite, b"g-lobby").await, ErrorCode::RoomExists);
    refused(alice.create("Lobby", RoomKind::Open, b"").await, ErrorCode::RoomExists);
    // An open room with a member is taken too; a fresh one is joined.
    assert!(matches!(alice.create("chat", RoomKind::Open, b"").await, Ok(ServerMessage::Joined { .. })));
    refused(alice.create("chat", RoomKind::Invite, b"g-chat").await, ErrorCode::RoomExists);
    // The group id of an existing group cannot be reused.
    refused(alice.create("other", RoomKind::Invite, b"g-team").await, ErrorCode::BadRequest);
    match alice.event(GroupRequest::RoomInfo { room: "TEAM".into() }).await.unwrap() {
        GroupEvent::RoomInfo { kind, group_id, epoch, admins, .. } => {
            assert_eq!(
                (kind, group_id.as_slice(), epoch, admins),
                (Some(RoomKind::Invite), &b"g-team"[..], 0, vec!["alice".to_owned()])
            );
        }
        other => panic!("{other:?}"),
    }
    for (room, kind) in [("lobby", Some(RoomKind::Open)), ("chat", Some(RoomKind::Open)), ("none", None)] {
        match alice.event(GroupRequest::RoomInfo { room: room.into() }).await.unwrap() {
            GroupEvent::RoomInfo { kind: k, .. } => assert_eq!(k, kind, "{room}"),
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_direct_conversation_reaches_an_offline_user_who_joins_and_decrypts_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    // Bob's client uploaded a package once, then went offline.
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let bob_mls = bob.member();
    bob.upload(false, vec![bob_mls.key_package().unwrap()]).await.unwrap();
    bob.c.close().await.unwrap();

    let mut alice = Peer::connect(&server, "alice", 1).await;
    let GroupEvent::KeyPackage { key_package, .. } =
        alice.event(GroupRequest::Claim { user: "bob".into() }).await.unwrap()
    else {
        panic!()
    };
    let mut conv = alice.member().create().unwrap();
    let pending = conv.add(&[key_package]).unwrap();
    let group_id = b"dm-alice-bob-0001".to_vec();
    let mut c = commit(&group_id, 0, &["bob"], &[]);
    c.welcome = pending.welcome;
    assert_eq!(
        alice.commit(c).await.unwrap(),
        GroupEvent::Committed { request: 100, group_id: group_id.clone(), epoch: 1 }
    );
    conv.confirm().unwrap();
    let marker = b"dm marker 51c2e: only bob reads this";
    let wire = conv.encrypt(marker).unwrap();
    let answer = alice.group(GroupRequest::Send { id: 7, group_id: group_id.clone(), payload: wire }).await.unwrap();
    let ServerMessage::Ack { client_id: 7, queued: 1, live: 0, full: 0, .. } = answer else { panic!("{answer:?}") };

    let mut bob = Peer::connect(&server, "bob", 2).await;
    let w = bob.delivery().await;
    assert_eq!(
        (w.kind, w.from.as_str(), w.room.as_deref(), &w.group_id),
        (PayloadKind::Welcome, "alice", None, &group_id)
    );
    let mut bob_conv = bob_mls.join(&w.payload).unwrap();
    let m = bob.delivery().await;
    assert!(m.seq > w.seq && m.kind == PayloadKind::Application);
    let cipherline_e2e::Incoming::Application(got) = bob_conv.receive(&m.payload).unwrap() else {
        panic!("an application message")
    };
    assert_eq!((&got.plaintext[..], got.sender.name.as_str()), (&marker[..], "alice"));
    // And back: alice is a member, bob now too.
    let reply = bob_conv.encrypt(b"hi alice").unwrap();
    let answer = bob.group(GroupRequest::Send { id: 8, group_id: group_id.clone(), payload: reply }).await.unwrap();
    assert!(matches!(answer, ServerMessage::Ack { queued: 1, .. }), "{answer:?}");
    let d = alice.delivery().await;
    let cipherline_e2e::Incoming::Application(back) = conv.receive(&d.payload).unwrap() else { panic!() };
    assert_eq!(&back.plaintext[..], b"hi alice");
    // A direct conversation takes no third member.
    refused(alice.commit(commit(&group_id, 1, &["carol"], &[])).await, ErrorCode::NotAllowed);
    server.stop().await;
}

#[tokio::test]
async fn exactly_one_commit_wins_an_epoch_and_the_loser_gets_the_current_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let g = b"race-group".to_vec();
    alice.create("race", RoomKind::Public, &g).await.unwrap();
    assert!(matches!(alice.commit(commit(&g, 0, &["bob"], &[])).await, Ok(GroupEvent::Committed { epoch: 1, .. })));
    assert_eq!(bob.delivery().await.kind, PayloadKind::Welcome);
    // Both commit in epoch 1 at once.
    let (mut ca, mut cb) = (commit(&g, 1, &[], &[]), commit(&g, 1, &[], &[]));
    ca.request = 1;
    cb.request = 2;
    alice.c.send_message(&ClientMessage::Group(GroupRequest::Commit(ca))).await.unwrap();
    bob.c.send_message(&ClientMessage::Group(GroupRequest::Commit(cb))).await.unwrap();
    let (a, b) = (alice.answer().await.unwrap(), bob.answer().await.unwrap());
    let won = |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::Committed { epoch: 2, .. }));
    let lost = |m: &ServerMessage| matches!(m, ServerMessage::Group(GroupEvent::Stale { epoch: 2, .. }));
    assert!((won(&a) && lost(&b)) || (lost(&a) && won(&b)), "{a:?} / {b:?}");
    // The loser finds the winner's commit in its queue, for epoch 1.
    let (loser, winner) = if won(&a) { (&mut bob, "alice") } else { (&mut alice, "bob") };
    let d = loser.delivery().await;
    assert_eq!((d.kind, d.epoch, d.from.as_str()), (PayloadKind::Commit, 1, winner));
    // A commit for an old epoch stays stale.
    assert!(matches!(loser.commit(commit(&g, 0, &[], &[])).await, Ok(GroupEvent::Stale { epoch: 2, .. })));
    server.stop().await;
}

#[tokio::test]
async fn members_only_admins_invite_and_external_commits_only_into_public_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    users(&server, &[("dave", 4)]).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let mut carol = Peer::connect(&server, "carol", 3).await;
    let (inv, public) = (b"g-invite".to_vec(), b"g-public".to_vec());
    alice.create("private", RoomKind::Invite, &inv).await.unwrap();
    alice.create("open-door", RoomKind::Public, &public).await.unwrap();
    alice.commit(commit(&inv, 0, &["bob"], &[])).await.unwrap();
    // Carol is no member: she may not send or commit.
    let send = GroupRequest::Send { id: 5, group_id: inv.clone(), payload: b"x".to_vec() };
    refused(carol.group(send).await, ErrorCode::NotAllowed);
    refused(carol.commit(commit(&inv, 1, &[], &[])).await, ErrorCode::NotAllowed);
    // Bob is a member but not an admin: no invitations into an invite-only room.
    let text = refused(bob.commit(commit(&inv, 1, &["carol"], &[])).await, ErrorCode::NotAllowed);
    assert!(text.contains("admins"), "{text}");
    // Nor may he remove alice; alice may invite and remove.
    refused(bob.commit(commit(&inv, 1, &[], &["alice"])).await, ErrorCode::NotAllowed);
    assert!(matches!(
        alice.commit(commit(&inv, 1, &["carol"], &["bob"])).await,
        Ok(GroupEvent::Committed { epoch: 2, .. })
    ));
    // Bob, removed, learns of it; carol gets her Welcome.
    let d = bob.delivery().await;
    assert_eq!(d.kind, PayloadKind::Welcome);
    assert_eq!((bob.delivery().await.kind, carol.delivery().await.kind), (PayloadKind::Commit, PayloadKind::Welcome));

    // External commits: refused into the invite-only room, accepted into the public one.
    let mut ext = commit(&inv, 2, &["dave"], &[]);
    ext.external = true;
    ext.welcome = None;
    let mut dave = Peer::connect(&server, "dave", 4).await;
    refused(dave.commit(ext.clone()).await, ErrorCode::NotAllowed);
    refused(dave.event(GroupRequest::GroupInfo { group_id: inv.clone() }).await, ErrorCode::NotAllowed);
    // The public room's GroupInfo is for anyone with a stored queue.
    match dave.event(GroupRequest::GroupInfo { group_id: public.clone() }).await {
        Err((ErrorCode::NotAllowed, _)) => {}
        other => panic!("nothing published yet: {other:?}"),
    }
    alice.commit(commit(&public, 0, &[], &[])).await.unwrap();
    let GroupEvent::GroupInfo { epoch: 1, group_info, .. } =
        dave.event(GroupRequest::GroupInfo { group_id: public.clone() }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(group_info, b"group info after epoch 0");
    ext.group_id = public.clone();
    ext.epoch = 1;
    assert!(matches!(dave.commit(ext).await, Ok(GroupEvent::Committed { epoch: 2, .. })));
    let d = alice.delivery().await;
    assert_eq!((d.kind, d.from.as_str(), d.room.as_deref()), (PayloadKind::Commit, "dave", Some("open-door")));
    // In a public room any member invites.
    assert!(dave.commit(commit(&public, 2, &["bob"], &[])).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn plain_join_and_send_meet_end_to_end_rooms_and_leave_updates_who() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let g = b"g-secret".to_vec();
    alice.create("secret", RoomKind::Invite, &g).await.unwrap();
    let text = refused(bob.ask(ClientMessage::Join { room: "Secret".into() }).await, ErrorCode::EndToEnd);
    assert!(text.contains("invite-only"), "{text}");
    refused(bob.ask(ClientMessage::Who { room: "secret".into() }).await, ErrorCode::NotInRoom);
    alice.commit(commit(&g, 0, &["bob"], &[])).await.unwrap();
    let send = ClientMessage::Send { id: 3, to: Target::Room("secret".into()), text: "plain".into(), signed: None };
    refused(alice.ask(send).await, ErrorCode::EndToEnd);
    let ServerMessage::Members { names, .. } = bob.ask(ClientMessage::Who { room: "secret".into() }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(names, ["alice", "bob"]);
    assert!(matches!(bob.ask(ClientMessage::Leave { room: "secret".into() }).await, Ok(ServerMessage::Left { .. })));
    let ServerMessage::Members { names, .. } = alice.ask(ClientMessage::Who { room: "secret".into() }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(names, ["alice"]);
    // Bob left: messages no longer reach him, and alice may commit his removal.
    let send = GroupRequest::Send { id: 4, group_id: g.clone(), payload: b"x".to_vec() };
    assert!(matches!(alice.group(send).await, Ok(ServerMessage::Ack { queued: 0, .. })));
    refused(
        bob.group(GroupRequest::Send { id: 5, group_id: g.clone(), payload: b"x".to_vec() }).await,
        ErrorCode::NotAllowed,
    );
    assert!(matches!(alice.commit(commit(&g, 1, &[], &["bob"])).await, Ok(GroupEvent::Committed { epoch: 2, .. })));
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_groups_epochs_and_key_packages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let kp = alice.member().key_package().unwrap();
    alice.upload(false, vec![kp.clone()]).await.unwrap();
    let g = b"g-kept".to_vec();
    alice.create("kept", RoomKind::Invite, &g).await.unwrap();
    alice.commit(commit(&g, 0, &[], &[])).await.unwrap();
    alice.c.close().await.unwrap();
    server.stop().await;

    let server = start_stored(dir.path(), Limits::default()).await;
    let mut bob = Peer::connect(&server, "bob", 2).await;
    match bob.event(GroupRequest::RoomInfo { room: "kept".into() }).await.unwrap() {
        GroupEvent::RoomInfo { kind, group_id, epoch, .. } => {
            assert_eq!((kind, group_id, epoch), (Some(RoomKind::Invite), g.clone(), 1));
        }
        other => panic!("{other:?}"),
    }
    refused(bob.ask(ClientMessage::Join { room: "kept".into() }).await, ErrorCode::EndToEnd);
    refused(bob.create("kept", RoomKind::Open, b"").await, ErrorCode::RoomExists);
    let GroupEvent::KeyPackage { key_package, .. } =
        bob.event(GroupRequest::Claim { user: "alice".into() }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(key_package, kp);
    let mut alice = Peer::connect(&server, "alice", 1).await;
    assert!(matches!(alice.commit(commit(&g, 0, &[], &[])).await, Ok(GroupEvent::Stale { epoch: 1, .. })));
    server.stop().await;
}

#[tokio::test]
async fn at_most_64_one_time_packages_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let kp = alice.member().key_package().unwrap();
    let mut last = None;
    for _ in 0..5 {
        last = Some(alice.upload(false, vec![kp.clone(); 16]).await.unwrap());
    }
    assert_eq!(last.unwrap(), GroupEvent::KeyPackageCount { available: 64, last_resort: false });
    // One claimed makes room for one more.
    let mut bob = Peer::connect(&server, "bob", 2).await;
    bob.event(GroupRequest::Claim { user: "alice".into() }).await.unwrap();
    assert_eq!(
        alice.upload(false, vec![kp.clone(); 2]).await.unwrap(),
        GroupEvent::KeyPackageCount { available: 64, last_resort: false }
    );
    server.stop().await;
}

#[tokio::test]
async fn group_messages_pay_the_byte_rate_and_carry_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_message_bytes: 20_000, bytes_per_sec: 1, bytes_burst: 20_000, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    users(&server, &[("bob", 2)]).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    alice.c.send_message(&ClientMessage::Receipts { enabled: true }).await.unwrap();
    let g = b"dm-receipts".to_vec();
    alice.commit(commit(&g, 0, &["bob"], &[])).await.unwrap();
    let send = |id| GroupRequest::Send { id, group_id: g.clone(), payload: vec![0x5a; 12_000] };
    let ServerMessage::Ack { id, queued: 1, .. } = alice.group(send(1)).await.unwrap() else { panic!() };
    // 12,000 bytes to one recipient twice is over a burst of 20,000.
    let text = refused(alice.group(send(2)).await, ErrorCode::RateLimited);
    assert!(text.contains("bytes"), "{text}");
    // A commit pays the same way, and a refused one moves no epoch.
    let mut big = commit(&g, 1, &[], &[]);
    big.commit = vec![0x5a; 12_000];
    refused(alice.commit(big).await, ErrorCode::RateLimited);
    assert!(matches!(alice.commit(commit(&g, 1, &[], &[])).await, Ok(GroupEvent::Committed { epoch: 2, .. })));
    let mut bob = Peer::connect(&server, "bob", 2).await;
    assert_eq!(bob.delivery().await.kind, PayloadKind::Welcome);
    let d = bob.delivery().await;
    assert_eq!((d.kind, d.id), (PayloadKind::Application, id));
    assert_eq!((bob.delivery().await.kind), PayloadKind::Commit, "only the accepted commit");
    bob.c.flush_received().await.unwrap();
    match alice.answer().await.unwrap() {
        ServerMessage::Delivered { id: got, by } => assert_eq!((got, by.as_str()), (id, "bob")),
        other => panic!("expected a receipt, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn an_expired_group_message_is_reported_to_its_sender_and_a_welcome_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits { message_ttl_secs: 2, ..Limits::default() }).await;
    users(&server, &[("bob", 2)]).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let g = b"dm-expiry".to_vec();
    alice.commit(commit(&g, 0, &["bob"], &[])).await.unwrap();
    let send = GroupRequest::Send { id: 1, group_id: g.clone(), payload: b"too late".to_vec() };
    let ServerMessage::Ack { id, .. } = alice.group(send).await.unwrap() else { panic!() };
    // The Welcome (older) expires silently; the application message is
    // reported, through alice's own queue.
    match timeout(Duration::from_secs(10), alice.answer()).await.expect("an expiry notice").unwrap() {
        ServerMessage::Expired { id: expired, to, seq } => {
            assert_eq!((expired, to.as_str()), (id, "bob"));
            assert!(seq > 0);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    server.stop().await;
}
