//! Rooms and end-to-end groups in a store shared by several servers
//! (docs/cluster.md, steps 5 and 6): two servers on one `SqliteStore`
//! stand in for two relay nodes on one JetStream, as in `shared_names.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherline_e2e::{Member, Suite};
use cipherline_proto::app::{ClientMessage, ErrorCode, GroupEvent, GroupRequest, RoomKind, ServerMessage, Target};
use cipherline_server::{Identities, Limits, RunOptions, SqliteOptions, SqliteStore};
use cipherline_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use common::{connect_as, key};

/// A server on `store`; stops when the sender is used or dropped.
async fn node(store: Arc<SqliteStore>) -> (String, oneshot::Sender<()>, JoinHandle<()>) {
    let options = RunOptions {
        identities: Arc::new(Identities::open_in_memory()),
        store: Some(store),
        shared_store: true,
        ..RunOptions::default()
    };
    common::start_node(common::node_limits(Limits::default()), options).await
}

async fn stop(stop: oneshot::Sender<()>, task: JoinHandle<()>) {
    stop.send(()).unwrap();
    timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

async fn shared_store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap())
}

/// The next chat message `client` gets (other frames skipped).
async fn next_text(client: &mut cipherline_client::Client) -> String {
    loop {
        if let ServerMessage::Message(d) = timeout(Duration::from_secs(5), client.recv()).await.unwrap().unwrap() {
            return d.text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_member_who_joined_on_one_server_gets_a_message_sent_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared_store(&dir).await;
    // Both servers start with no stored members; alice is bound, joins
    // and goes offline through A after B started.
    let (a, stop_a, task_a) = node(store.clone()).await;
    let (b, stop_b, task_b) = node(store.clone()).await;
    let mut alice = connect_as(&a, "alice", Some(key(1))).await.unwrap();
    alice.join("den").await.unwrap();
    alice.close().await.unwrap();

    // bob joins and speaks on B: B re-reads the room and stores for alice.
    let mut bob = connect_as(&b, "bob", Some(key(2))).await.unwrap();
    bob.join("den").await.unwrap();
    let mut names = bob.who("den").await.unwrap();
    names.sort();
    assert_eq!(names, ["alice", "bob"], "B lists the member that joined on A");
    bob.send_acked(Target::Room("den".into()), "hello den").await.unwrap();

    // alice reads it back through A.
    let mut alice = connect_as(&a, "alice", Some(key(1))).await.unwrap();
    alice.resume(0).await.unwrap();
    assert_eq!(next_text(&mut alice).await, "hello den");
    alice.close().await.unwrap();

    // alice leaves on B (which must know she is a member), then bob on A:
    // the last leave deletes the room's key (conditionally), nothing is left.
    let mut alice_b = connect_as(&b, "alice", Some(key(1))).await.unwrap();
    alice_b.leave("den").await.expect("B knows alice is a stored member");
    bob.close().await.unwrap();
    let mut bob_a = connect_as(&a, "bob", Some(key(2))).await.unwrap();
    bob_a.leave("den").await.expect("A knows bob is a stored member");
    assert_eq!(store.get("room/den").await.unwrap(), None, "the last leave removes the room's key");
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
}

/// Sends `msg` and waits for its answer: anything but a notice or a
/// stored delivery, an Error as `Err`.
async fn ask(client: &mut cipherline_client::Client, msg: ClientMessage) -> Result<ServerMessage, (ErrorCode, String)> {
    client.send_message(&msg).await.unwrap();
    loop {
        match timeout(Duration::from_secs(10), client.recv()).await.expect("an answer in time").unwrap() {
            ServerMessage::Group(GroupEvent::Message(_)) | ServerMessage::Notice { .. } => {}
            ServerMessage::Error { code, text, .. } => return Err((code, text)),
            other => return Ok(other),
        }
    }
}

async fn claim(client: &mut cipherline_client::Client, user: &str) -> Vec<u8> {
    match ask(client, ClientMessage::Group(GroupRequest::Claim { user: user.into() })).await {
        Ok(ServerMessage::Group(GroupEvent::KeyPackage { key_package, .. })) => key_package,
        other => panic!("expected a key package, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_claiming_the_last_one_time_key_package_at_once_give_it_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared_store(&dir).await;
    let (a, stop_a, task_a) = node(store.clone()).await;
    let (b, stop_b, task_b) = node(store.clone()).await;
    let mut alice = connect_as(&a, "alice", Some(key(1))).await.unwrap();
    let member = Member::new("alice", &key(1), Suite::XWing).unwrap();
    let last_resort = member.key_package().unwrap();
    let upload = |last_resort: bool, packages: Vec<Vec<u8>>| {
        ClientMessage::Group(GroupRequest::KeyPackages { last_resort, packages })
    };
    ask(&mut alice, upload(true, vec![last_resort.clone()])).await.unwrap();
    let mut bob = connect_as(&a, "bob", Some(key(2))).await.unwrap();
    let mut carol = connect_as(&b, "carol", Some(key(3))).await.unwrap();
    // Each round alice has one one-time package, and bob on A and carol on
    // B claim at once: one gets it, the other the last-resort package.
    for round in 0..8 {
        let one_time = member.key_package().unwrap();
        match ask(&mut alice, upload(false, vec![one_time.clone()])).await {
            Ok(ServerMessage::Group(GroupEvent::KeyPackageCount { available: 1, last_resort: true })) => {}
            other => panic!("round {round}: {other:?}"),
        }
        let (on_a, on_b) = tokio::join!(claim(&mut bob, "alice"), claim(&mut carol, "alice"));
        let mut got = [on_a, on_b];
        got.sort();
        let mut expected = [one_time, last_resort.clone()];
        expected.sort();
        assert_eq!(got, expected, "round {round}: the one-time package is given out exactly once");
    }
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_to_end_room_created_on_one_server_is_known_to_the_other_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared_store(&dir).await;
    let (a, stop_a, task_a) = node(store.clone()).await;
    let (b, stop_b, task_b) = node(store.clone()).await;
    let mut alice = connect_as(&a, "alice", Some(key(1))).await.unwrap();
    let mut bob = connect_as(&b, "bob", Some(key(2))).await.unwrap();
    let create = |room: &str, kind| {
        ClientMessage::Group(GroupRequest::CreateRoom { room: room.into(), kind, group_id: b"g-team".to_vec() })
    };
    assert!(matches!(ask(&mut alice, create("Team", RoomKind::Invite)).await, Ok(ServerMessage::Joined { .. })));

    // B knows it at once: what it is, that the name is taken, that plain
    // joins and messages are refused.
    match ask(&mut bob, ClientMessage::Group(GroupRequest::RoomInfo { room: "team".into() })).await {
        Ok(ServerMessage::Group(GroupEvent::RoomInfo { kind, group_id, admins, .. })) => {
            assert_eq!(
                (kind, group_id.as_slice(), admins),
                (Some(RoomKind::Invite), &b"g-team"[..], vec!["alice".into()])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(ask(&mut bob, create("TEAM", RoomKind::Public)).await, Err((ErrorCode::RoomExists, _))));
    assert!(matches!(ask(&mut bob, create("team", RoomKind::Open)).await, Err((ErrorCode::RoomExists, _))));
    assert!(matches!(ask(&mut bob, ClientMessage::Join { room: "team".into() }).await, Err((ErrorCode::EndToEnd, _))));
    let send = ClientMessage::Send { id: 7, to: Target::Room("team".into()), text: "plain".into(), signed: None };
    assert!(matches!(ask(&mut bob, send).await, Err((ErrorCode::EndToEnd, _))));

    // And an open room with a stored member on A is taken on B too.
    alice.join("den").await.unwrap();
    assert!(matches!(ask(&mut bob, create("den", RoomKind::Invite)).await, Err((ErrorCode::RoomExists, _))));
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
}
