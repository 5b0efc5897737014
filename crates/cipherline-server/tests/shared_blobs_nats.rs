//! End-to-end file blobs on a real NATS JetStream (docs/cluster.md, step
//! 8): two relay nodes, each with its own data directory, on one
//! `nats-server -js`. A blob uploaded through one node is fetched through
//! the other, also while the upload is running (a held fetch), and blob
//! quotas count across nodes. A missing nats-server fails the test (CI
//! installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherline_client::Client;
use cipherline_proto::app::{
    BlobEvent, BlobId, BlobRequest, BlobStatus, ClientMessage, CommitRequest, ErrorCode, GroupEvent, GroupRequest,
    MAX_BLOB_DATA, RoomKind, ServerMessage,
};
use cipherline_server::{Identities, Limits, NatsOptions, NatsStore, RunOptions, SqliteOptions, SqliteStore};
use tokio::sync::oneshot;
use tokio::time::timeout;

use cipherline_testkit::NatsServer;
use common::{connect_as, key};

/// A relay node with its own data directory in `dir`, its store on NATS.
async fn node(dir: &std::path::Path, url: &str, limits: Limits) -> (String, oneshot::Sender<()>) {
    std::fs::create_dir_all(dir).unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let nats = Arc::new(NatsStore::connect(url, NatsOptions::default()).await.unwrap());
    let options = RunOptions {
        identities: Arc::new(Identities::open_in_memory()),
        store: Some(sqlite),
        nats_store: Some(nats),
        ..RunOptions::default()
    };
    let (addr, stop, _task) = common::start_node(common::node_limits(limits), options).await;
    (addr, stop)
}

type Answer = Result<ServerMessage, (ErrorCode, u64, String)>;

async fn next(c: &mut Client) -> Answer {
    loop {
        match timeout(Duration::from_secs(15), c.recv()).await.expect("an answer in time").unwrap() {
            ServerMessage::Group(GroupEvent::Message(_)) | ServerMessage::Notice { .. } => {}
            ServerMessage::Error { code, client_id, text } => return Err((code, client_id, text)),
            other => return Ok(other),
        }
    }
}

async fn ask(c: &mut Client, msg: ClientMessage) -> Answer {
    c.send_message(&msg).await.unwrap();
    next(c).await
}

async fn chunks(c: &mut Client, blob: BlobId, offset: u64, data: &[u8]) {
    let mut at = offset;
    for piece in data.chunks(MAX_BLOB_DATA) {
        let chunk = BlobRequest::Chunk { blob, offset: at, data: piece.to_vec() };
        c.send_message(&ClientMessage::Blob(chunk)).await.unwrap();
        at += piece.len() as u64;
    }
}

/// The bytes of a fetch's BlobData (consecutive) and its closing state.
async fn fetched(c: &mut Client, request: u64, offset: u64) -> (Vec<u8>, BlobEvent) {
    let mut bytes = Vec::new();
    loop {
        match next(c).await.unwrap() {
            ServerMessage::Blob(BlobEvent::Data { request: r, offset: at, data, .. }) => {
                assert_eq!((r, at), (request, offset + bytes.len() as u64), "consecutive pieces");
                bytes.extend_from_slice(&data);
            }
            ServerMessage::Blob(state @ BlobEvent::State { .. }) => return (bytes, state),
            other => panic!("expected blob data or state, got {other:?}"),
        }
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

const GROUP: &[u8] = b"g-files";

/// alice (key 1) on A creates an end-to-end room and invites bob (key 2),
/// who is connected to B. Both names are bound through A first, so A
/// knows bob when alice invites him.
async fn alice_and_bob(a: &str, b: &str) -> (Client, Client) {
    connect_as(a, "bob", Some(key(2))).await.unwrap().close().await.unwrap();
    let mut alice = connect_as(a, "alice", Some(key(1))).await.unwrap();
    let create = GroupRequest::CreateRoom { room: "files".into(), kind: RoomKind::Invite, group_id: GROUP.to_vec() };
    assert!(matches!(ask(&mut alice, ClientMessage::Group(create)).await, Ok(ServerMessage::Joined { .. })));
    let commit = CommitRequest {
        request: 1,
        group_id: GROUP.to_vec(),
        epoch: 0,
        external: false,
        commit: b"commit (opaque to the relay)".to_vec(),
        welcome: Some(b"welcome (opaque to the relay)".to_vec()),
        group_info: None,
        invited: vec!["bob".into()],
        removed: Vec::new(),
    };
    let answer = ask(&mut alice, ClientMessage::Group(GroupRequest::Commit(commit))).await.unwrap();
    assert!(matches!(answer, ServerMessage::Group(GroupEvent::Committed { epoch: 1, .. })), "{answer:?}");
    let bob = connect_as(b, "bob", Some(key(2))).await.unwrap();
    (alice, bob)
}

fn upload(request: u64, blob: BlobId, size: u64) -> ClientMessage {
    ClientMessage::Blob(BlobRequest::Upload { request, blob, group_id: GROUP.to_vec(), size })
}

fn state(request: u64, blob: BlobId, status: BlobStatus, size: u64, stored: u64) -> ServerMessage {
    ServerMessage::Blob(BlobEvent::State { request, blob, status, size, stored })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_uploaded_through_one_node_is_fetched_through_another_also_while_it_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let (a, _stop_a) = node(&dir.path().join("a"), nats.url(), Limits::default()).await;
    let (b, _stop_b) = node(&dir.path().join("b"), nats.url(), Limits::default()).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;

    let blob: BlobId = [0x42; 16];
    let data = bytes(3 * MAX_BLOB_DATA + 1234, 5);
    let (size, half) = (data.len() as u64, 2 * MAX_BLOB_DATA);
    assert_eq!(ask(&mut alice, upload(1, blob, size)).await.unwrap(), state(1, blob, BlobStatus::Uploading, size, 0));
    chunks(&mut alice, blob, 0, &data[..half]).await;
    // A resume answers after the chunks before it: the relay holds half.
    assert_eq!(
        ask(&mut alice, upload(2, blob, size)).await.unwrap(),
        state(2, blob, BlobStatus::Uploading, size, half as u64)
    );

    // bob on B reads what A received, from any offset.
    bob.send_message(&ClientMessage::Blob(BlobRequest::Fetch { request: 3, blob, offset: 0, max: 1 << 20 }))
        .await
        .unwrap();
    let (got, end) = fetched(&mut bob, 3, 0).await;
    assert!(got[..] == data[..half], "the bytes uploaded through A, read through B");
    assert_eq!(ServerMessage::Blob(end), state(3, blob, BlobStatus::Uploading, size, half as u64));

    // A fetch past what is there is held on B until the upload through A
    // moves on (B polls the stored progress), well before the 10 s hold.
    let fetch = BlobRequest::Fetch { request: 4, blob, offset: half as u64, max: 1 << 20 };
    bob.send_message(&ClientMessage::Blob(fetch)).await.unwrap();
    assert!(timeout(Duration::from_millis(500), bob.recv()).await.is_err(), "held while nothing is there");
    chunks(&mut alice, blob, half as u64, &data[half..]).await;
    assert_eq!(next(&mut alice).await.unwrap(), state(0, blob, BlobStatus::Complete, size, size));
    let (got, _) =
        timeout(Duration::from_secs(5), fetched(&mut bob, 4, half as u64)).await.expect("answered on arrival");
    assert!(!got.is_empty() && got[..] == data[half..half + got.len()], "the rest, as it arrived through A");

    // Complete: the whole blob through B; bob is done with it, and as the
    // only one waiting, that deletes it for both nodes.
    bob.send_message(&ClientMessage::Blob(BlobRequest::Fetch { request: 5, blob, offset: 0, max: 1 << 20 }))
        .await
        .unwrap();
    let (got, end) = fetched(&mut bob, 5, 0).await;
    assert!(got == data);
    assert_eq!(ServerMessage::Blob(end), state(5, blob, BlobStatus::Complete, size, size));
    let gone = ask(&mut bob, ClientMessage::Blob(BlobRequest::Delete { request: 6, blob })).await.unwrap();
    assert_eq!(gone, state(6, blob, BlobStatus::Gone, size, size));
    let fetch = BlobRequest::Fetch { request: 7, blob, offset: 0, max: 10 };
    assert!(matches!(ask(&mut alice, ClientMessage::Blob(fetch)).await, Err((ErrorCode::NoBlob, 7, _))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_quotas_count_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let limits = Limits { max_blobs_per_user: 1, ..Limits::default() };
    let (a, _stop_a) = node(&dir.path().join("a"), nats.url(), limits.clone()).await;
    let (b, _stop_b) = node(&dir.path().join("b"), nats.url(), limits).await;
    let (mut alice_a, _bob) = alice_and_bob(&a, &b).await;
    assert!(ask(&mut alice_a, upload(1, [1; 16], 16)).await.is_ok());
    // alice's second blob, through B, is over her quota of one.
    let mut alice_b = connect_as(&b, "alice", Some(key(1))).await.unwrap();
    assert!(matches!(ask(&mut alice_b, upload(2, [2; 16], 16)).await, Err((ErrorCode::BlobQuota, 2, _))));
    // Her first one deleted through B frees it for A.
    let gone = ask(&mut alice_b, ClientMessage::Blob(BlobRequest::Delete { request: 3, blob: [1; 16] })).await;
    assert!(matches!(gone, Ok(ServerMessage::Blob(BlobEvent::State { status: BlobStatus::Gone, .. }))), "{gone:?}");
    assert!(ask(&mut alice_a, upload(4, [2; 16], 16)).await.is_ok());
}
