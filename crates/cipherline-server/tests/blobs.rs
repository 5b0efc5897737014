//! Blobs at the relay (PROTOCOL.md §13.12.3): upload, resume, fetch (held
//! while an upload is in progress), delete, done, quotas and expiry, over
//! the raw protocol against a real relay with a store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherline_client::Client;
use cipherline_proto::app::{
    BlobEvent, BlobId, BlobRequest, BlobStatus, ClientMessage, CommitRequest, ErrorCode, GroupEvent, GroupRequest,
    MAX_BLOB_DATA, RoomKind, ServerMessage,
};
use cipherline_server::Limits;
use common::{Server, connect_as, key, start_stored};
use tokio::time::timeout;

type Answer = Result<ServerMessage, (ErrorCode, u64, String)>;

/// A raw client that skips the MLS messages and notices the relay sends it.
struct Peer {
    c: Client,
}

impl Peer {
    async fn connect(server: &Server, name: &str, seed: u8) -> Peer {
        Peer { c: connect_as(&server.addr, name, Some(key(seed))).await.unwrap() }
    }

    async fn send(&mut self, req: BlobRequest) {
        self.c.send_message(&ClientMessage::Blob(req)).await.unwrap();
    }

    async fn next(&mut self) -> Answer {
        loop {
            match timeout(Duration::from_secs(15), self.c.recv()).await.expect("an answer in time").unwrap() {
                ServerMessage::Group(GroupEvent::Message(_)) | ServerMessage::Notice { .. } => {}
                ServerMessage::Error { code, client_id, text } => return Err((code, client_id, text)),
                other => return Ok(other),
            }
        }
    }

    async fn ask(&mut self, req: BlobRequest) -> Answer {
        self.send(req).await;
        self.next().await
    }

    async fn upload(&mut self, request: u64, blob: BlobId, group: &[u8], size: u64) -> Answer {
        self.ask(BlobRequest::Upload { request, blob, group_id: group.to_vec(), size }).await
    }

    /// Sends `data` in chunks from `offset` (no answer expected).
    async fn chunks(&mut self, blob: BlobId, offset: u64, data: &[u8]) {
        let mut at = offset;
        for piece in data.chunks(MAX_BLOB_DATA) {
            self.send(BlobRequest::Chunk { blob, offset: at, data: piece.to_vec() }).await;
            at += piece.len() as u64;
        }
    }

    /// Fetches from `offset`: the bytes of the BlobData (checked
    /// consecutive, each at most 16 KiB) and the closing state.
    async fn fetch(
        &mut self,
        request: u64,
        blob: BlobId,
        offset: u64,
        max: u32,
    ) -> Result<(Vec<u8>, BlobEvent), (ErrorCode, u64, String)> {
        self.send(BlobRequest::Fetch { request, blob, offset, max }).await;
        self.fetched(request, blob, offset).await
    }

    async fn fetched(
        &mut self,
        request: u64,
        blob: BlobId,
        offset: u64,
    ) -> Result<(Vec<u8>, BlobEvent), (ErrorCode, u64, String)> {
        let mut bytes = Vec::new();
        loop {
            match self.next().await? {
                ServerMessage::Blob(BlobEvent::Data { request: r, blob: b, offset: at, data }) => {
                    assert_eq!((r, b, at), (request, blob, offset + bytes.len() as u64), "consecutive pieces");
                    assert!(!data.is_empty() && data.len() <= MAX_BLOB_DATA);
                    bytes.extend_from_slice(&data);
                }
                ServerMessage::Blob(state @ BlobEvent::State { .. }) => {
                    let BlobEvent::State { request: r, blob: b, .. } = &state else { unreachable!() };
                    assert_eq!((*r, *b), (request, blob));
                    return Ok((bytes, state));
                }
                other => panic!("expected blob data or state, got {other:?}"),
            }
        }
    }
}

fn state(request: u64, blob: BlobId, status: BlobStatus, size: u64, stored: u64) -> ServerMessage {
    ServerMessage::Blob(BlobEvent::State { request, blob, status, size, stored })
}

fn refused(a: Answer, code: ErrorCode, client_id: u64) -> String {
    match a {
        Err((c, id, text)) if c == code && id == client_id => text,
        other => panic!("expected {code:?} for {client_id}, got {other:?}"),
    }
}

/// `len` bytes that differ from position to position.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn blob_file(dir: &Path, blob: &BlobId) -> PathBuf {
    let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
    dir.join("blobs").join(hex)
}

fn commit(group_id: &[u8], invited: &[&str]) -> CommitRequest {
    CommitRequest {
        request: 1,
        group_id: group_id.to_vec(),
        epoch: 0,
        external: false,
        commit: b"commit (opaque to the relay)".to_vec(),
        welcome: Some(b"welcome (opaque to the relay)".to_vec()),
        group_info: None,
        invited: invited.iter().map(|s| (*s).to_owned()).collect(),
        removed: Vec::new(),
    }
}

async fn group(p: &mut Peer, req: GroupRequest) -> ServerMessage {
    p.c.send_message(&ClientMessage::Group(req)).await.unwrap();
    p.next().await.unwrap()
}

const DM: &[u8] = b"dm-alice-bob";

/// Alice (key 1) and bob (key 2) in a direct conversation `DM`; carol (key
/// 3) has visited once and is in none.
async fn direct(server: &Server) -> (Peer, Peer) {
    for (name, seed) in [("bob", 2), ("carol", 3)] {
        Peer::connect(server, name, seed).await.c.close().await.unwrap();
    }
    let mut alice = Peer::connect(server, "alice", 1).await;
    let answer = group(&mut alice, GroupRequest::Commit(commit(DM, &["bob"]))).await;
    assert!(matches!(answer, ServerMessage::Group(GroupEvent::Committed { epoch: 1, .. })), "{answer:?}");
    let bob = Peer::connect(server, "bob", 2).await;
    (alice, bob)
}

#[tokio::test]
async fn a_blob_goes_up_and_comes_back_whole_and_the_file_holds_exactly_its_bytes_with_no_rate_tokens() {
    let dir = tempfile::tempdir().unwrap();
    // One message a second: blob messages must not be charged, or the
    // second chunk would be refused.
    let limits = Limits { messages_per_sec: 1, burst: 1, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let (mut alice, mut bob) = direct(&server).await;
    let blob: BlobId = [0x11; 16];
    let data = bytes(2 * MAX_BLOB_DATA + 7000, 1);
    let size = data.len() as u64;
    assert_eq!(alice.upload(5, blob, DM, size).await.unwrap(), state(5, blob, BlobStatus::Uploading, size, 0));
    alice.chunks(blob, 0, &data).await;
    // The last chunk makes it complete: the owner hears so, unprompted.
    assert_eq!(alice.next().await.unwrap(), state(0, blob, BlobStatus::Complete, size, size));

    let (got, end) = bob.fetch(9, blob, 0, 1 << 20).await.unwrap();
    assert!(got == data, "the fetched bytes are the uploaded bytes");
    assert_eq!(end, BlobEvent::State { request: 9, blob, status: BlobStatus::Complete, size, stored: size });
    // A range: at most `max` bytes from the offset.
    let (got, _) = bob.fetch(10, blob, 100, 20_000).await.unwrap();
    assert!(got[..] == data[100..20_100]);
    let (got, _) = bob.fetch(11, blob, size, 1000).await.unwrap();
    assert!(got.is_empty(), "nothing past the end");
    // The owner may fetch too.
    let (got, _) = alice.fetch(12, blob, size - 10, 1000).await.unwrap();
    assert!(got[..] == data[data.len() - 10..]);
    // What the relay keeps is exactly what the client sent.
    assert!(std::fs::read(blob_file(dir.path(), &blob)).unwrap() == data);
    server.stop().await;
}

#[tokio::test]
async fn an_upload_resumes_after_a_reconnect_and_a_wrong_offset_is_refused_without_ending_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let (mut alice, mut bob) = direct(&server).await;
    let blob: BlobId = [0x22; 16];
    let data = bytes(MAX_BLOB_DATA + 500, 2);
    let size = data.len() as u64;
    alice.upload(1, blob, DM, size).await.unwrap();
    alice.chunks(blob, 0, &data[..MAX_BLOB_DATA]).await;
    // Answered in order: the chunk is in before this answer.
    let (_, end) = alice.fetch(2, blob, 0, 1).await.unwrap();
    assert!(
        matches!(end, BlobEvent::State { stored, status: BlobStatus::Uploading, .. } if stored == MAX_BLOB_DATA as u64)
    );
    alice.c.close().await.unwrap();

    let mut alice = Peer::connect(&server, "alice", 1).await;
    let held = MAX_BLOB_DATA as u64;
    assert_eq!(alice.upload(3, blob, DM, size).await.unwrap(), state(3, blob, BlobStatus::Uploading, size, held));
    // The same id for another size, or by someone else: not a resume.
    refused(alice.upload(4, blob, DM, size + 1).await, ErrorCode::NotAllowed, 4);
    refused(bob.upload(5, blob, DM, size).await, ErrorCode::NotAllowed, 5);
    // A chunk at the wrong offset, past the end, or from another member.
    alice.chunks(blob, 0, b"again").await;
    let text = refused(alice.next().await, ErrorCode::BadRequest, 0);
    assert!(text.contains(&held.to_string()), "{text}");
    alice.chunks(blob, held, &[0; 501]).await;
    refused(alice.next().await, ErrorCode::BadRequest, 0);
    bob.chunks(blob, held, &data[MAX_BLOB_DATA..]).await;
    refused(bob.next().await, ErrorCode::BadRequest, 0);
    // The session lives on: the rest completes it.
    alice.chunks(blob, held, &data[MAX_BLOB_DATA..]).await;
    assert_eq!(alice.next().await.unwrap(), state(0, blob, BlobStatus::Complete, size, size));
    let (got, _) = bob.fetch(6, blob, 0, 1 << 20).await.unwrap();
    assert!(got == data);
    // Uploading it again is a resume of a complete blob.
    assert_eq!(alice.upload(7, blob, DM, size).await.unwrap(), state(7, blob, BlobStatus::Complete, size, size));
    server.stop().await;
}

#[tokio::test]
async fn an_upload_resumes_after_the_relay_restarts_on_the_same_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let (mut alice, bob) = direct(&server).await;
    let blob: BlobId = [0x33; 16];
    let data = bytes(3 * MAX_BLOB_DATA, 3);
    let size = data.len() as u64;
    alice.upload(1, blob, DM, size).await.unwrap();
    alice.chunks(blob, 0, &data[..2 * MAX_BLOB_DATA]).await;
    alice.fetch(2, blob, 0, 1).await.unwrap();
    alice.c.close().await.unwrap();
    bob.c.close().await.unwrap();
    server.stop().await;

    let server = start_stored(dir.path(), Limits::default()).await;
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let held = 2 * MAX_BLOB_DATA as u64;
    assert_eq!(alice.upload(3, blob, DM, size).await.unwrap(), state(3, blob, BlobStatus::Uploading, size, held));
    alice.chunks(blob, held, &data[2 * MAX_BLOB_DATA..]).await;
    assert_eq!(alice.next().await.unwrap(), state(0, blob, BlobStatus::Complete, size, size));
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let (got, _) = bob.fetch(4, blob, 0, 1 << 20).await.unwrap();
    assert!(got == data);
    server.stop().await;
}

#[tokio::test]
async fn strangers_unknown_ids_and_keyless_clients_learn_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let (mut alice, _bob) = direct(&server).await;
    let blob: BlobId = [0x44; 16];
    alice.upload(1, blob, DM, 100).await.unwrap();
    alice.chunks(blob, 0, &[7; 60]).await;
    let mut carol = Peer::connect(&server, "carol", 3).await;
    // Not a member: the same answer as for an id nobody uses.
    let text =
        refused(carol.fetch(2, blob, 0, 100).await.map(|_| ServerMessage::Pong { nonce: 0 }), ErrorCode::NoBlob, 2);
    let unknown = refused(
        carol.fetch(3, [0x45; 16], 0, 100).await.map(|_| ServerMessage::Pong { nonce: 0 }),
        ErrorCode::NoBlob,
        3,
    );
    assert_eq!(text, unknown, "the relay does not tell which");
    refused(carol.ask(BlobRequest::Delete { request: 4, blob }).await, ErrorCode::NoBlob, 4);
    refused(carol.upload(5, [0x46; 16], DM, 100).await, ErrorCode::NotAllowed, 5);
    refused(carol.upload(6, [0x46; 16], b"no-such-group", 100).await, ErrorCode::NotAllowed, 6);
    refused(alice.fetch(7, blob, 101, 10).await.map(|_| ServerMessage::Pong { nonce: 0 }), ErrorCode::BadRequest, 7);
    // A chunk for an id nobody uses.
    alice.chunks([0x47; 16], 0, b"x").await;
    refused(alice.next().await, ErrorCode::NoBlob, 0);
    // A client without an identity key has no stored queue: no blobs.
    let mut guest = Peer { c: connect_as(&server.addr, "guest", None).await.unwrap() };
    refused(guest.upload(8, [0x48; 16], DM, 100).await, ErrorCode::NotAllowed, 8);
    guest.chunks(blob, 60, b"x").await;
    refused(guest.next().await, ErrorCode::NotAllowed, 0);
    // Alice's blob is as she left it.
    let (got, _) = alice.fetch(9, blob, 0, 100).await.unwrap();
    assert_eq!(got, vec![7; 60]);
    server.stop().await;
}

#[tokio::test]
async fn quotas_per_user_and_in_all_refuse_with_blob_quota_and_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_blob_bytes_per_user: 100, max_blob_store_bytes: 150, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let (mut alice, mut bob) = direct(&server).await;
    let (a, b, c, d) = ([1u8; 16], [2u8; 16], [3u8; 16], [4u8; 16]);
    alice.upload(1, a, DM, 60).await.unwrap();
    // Counted at full size, before any byte arrived.
    let text = refused(alice.upload(2, b, DM, 50).await, ErrorCode::BlobQuota, 2);
    assert!(text.contains("110") && text.contains("per-user limit of 100"), "{text}");
    refused(alice.upload(3, b, DM, 101).await, ErrorCode::BlobQuota, 3);
    bob.upload(4, c, DM, 80).await.unwrap();
    let text = refused(bob.upload(5, d, DM, 20).await, ErrorCode::BlobQuota, 5);
    assert!(text.contains("160") && text.contains("150"), "{text}");
    // Nothing was kept of the refused ones.
    for (request, id) in [(6, b), (7, d)] {
        refused(
            bob.fetch(request, id, 0, 10).await.map(|_| ServerMessage::Pong { nonce: 0 }),
            ErrorCode::NoBlob,
            request,
        );
        assert!(!blob_file(dir.path(), &id).exists());
    }
    // Deleting frees the owner's quota.
    let gone = alice.ask(BlobRequest::Delete { request: 8, blob: a }).await.unwrap();
    assert_eq!(gone, state(8, a, BlobStatus::Gone, 60, 0));
    alice.upload(9, b, DM, 50).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn an_owner_delete_ends_the_blob_for_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let (mut alice, mut bob) = direct(&server).await;
    let blob: BlobId = [0x55; 16];
    alice.upload(1, blob, DM, 1000).await.unwrap();
    alice.chunks(blob, 0, &[9; 300]).await;
    let (got, _) = bob.fetch(2, blob, 0, 1000).await.unwrap();
    assert_eq!(got.len(), 300);
    assert!(blob_file(dir.path(), &blob).exists());
    assert_eq!(
        alice.ask(BlobRequest::Delete { request: 3, blob }).await.unwrap(),
        state(3, blob, BlobStatus::Gone, 1000, 300)
    );
    refused(bob.fetch(4, blob, 0, 1000).await.map(|_| ServerMessage::Pong { nonce: 0 }), ErrorCode::NoBlob, 4);
    alice.chunks(blob, 300, &[9; 10]).await;
    refused(alice.next().await, ErrorCode::NoBlob, 0);
    assert!(!blob_file(dir.path(), &blob).exists());
    server.stop().await;
}

#[tokio::test]
async fn a_complete_blob_goes_once_everyone_waiting_is_done_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    for (name, seed) in [("bob", 2), ("carol", 3)] {
        Peer::connect(&server, name, seed).await.c.close().await.unwrap();
    }
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let room = b"g-team".to_vec();
    let joined = group(
        &mut alice,
        GroupRequest::CreateRoom { room: "team".into(), kind: RoomKind::Invite, group_id: room.clone() },
    )
    .await;
    assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
    let answer = group(&mut alice, GroupRequest::Commit(commit(&room, &["bob", "carol"]))).await;
    assert!(matches!(answer, ServerMessage::Group(GroupEvent::Committed { .. })), "{answer:?}");
    let (mut bob, mut carol) = (Peer::connect(&server, "bob", 2).await, Peer::connect(&server, "carol", 3).await);
    let blob: BlobId = [0x66; 16];
    alice.upload(1, blob, &room, 20).await.unwrap();
    // Bob is done before it is complete: it stays (carol waits).
    assert_eq!(
        bob.ask(BlobRequest::Delete { request: 2, blob }).await.unwrap(),
        state(2, blob, BlobStatus::Uploading, 20, 0)
    );
    alice.chunks(blob, 0, &[1; 20]).await;
    assert_eq!(alice.next().await.unwrap(), state(0, blob, BlobStatus::Complete, 20, 20));
    // Bob saying it again changes nothing; carol is the last: gone.
    assert_eq!(
        bob.ask(BlobRequest::Delete { request: 3, blob }).await.unwrap(),
        state(3, blob, BlobStatus::Complete, 20, 20)
    );
    assert!(blob_file(dir.path(), &blob).exists());
    assert_eq!(
        carol.ask(BlobRequest::Delete { request: 4, blob }).await.unwrap(),
        state(4, blob, BlobStatus::Gone, 20, 20)
    );
    refused(alice.fetch(5, blob, 0, 20).await.map(|_| ServerMessage::Pong { nonce: 0 }), ErrorCode::NoBlob, 5);
    assert!(!blob_file(dir.path(), &blob).exists());
    server.stop().await;
}

#[tokio::test]
async fn expired_blobs_are_deleted_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { blob_ttl_secs: 1, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let (mut alice, mut bob) = direct(&server).await;
    let (done, partial): (BlobId, BlobId) = ([0x77; 16], [0x78; 16]);
    alice.upload(1, done, DM, 16).await.unwrap();
    alice.chunks(done, 0, &[5; 16]).await;
    alice.next().await.unwrap();
    alice.upload(2, partial, DM, 32).await.unwrap();
    alice.chunks(partial, 0, &[5; 16]).await;
    alice.fetch(3, partial, 0, 1).await.unwrap();
    assert!(blob_file(dir.path(), &done).exists() && blob_file(dir.path(), &partial).exists());
    let mut request = 10;
    for blob in [done, partial] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            request += 1;
            match bob.fetch(request, blob, 0, 1).await {
                Err((ErrorCode::NoBlob, id, _)) if id == request => break,
                Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                other => panic!("expected the blob to expire, got {other:?}"),
            }
        }
        assert!(!blob_file(dir.path(), &blob).exists());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_held_fetch_answers_as_soon_as_bytes_arrive_and_later_requests_wait_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let (mut alice, mut bob) = direct(&server).await;
    let blob: BlobId = [0x88; 16];
    alice.upload(1, blob, DM, 100).await.unwrap();
    bob.send(BlobRequest::Fetch { request: 2, blob, offset: 0, max: 100 }).await;
    bob.c.send_message(&ClientMessage::Ping { nonce: 77 }).await.unwrap();
    // Nothing yet: the fetch is held, and the Ping behind it too.
    assert!(timeout(Duration::from_millis(500), bob.c.recv()).await.is_err(), "held while nothing is there");
    alice.chunks(blob, 0, &[3; 40]).await;
    // Well before the 10 s hold runs out.
    let (got, end) =
        timeout(Duration::from_secs(5), bob.fetched(2, blob, 0)).await.expect("answered on arrival").unwrap();
    assert_eq!(got, vec![3; 40]);
    assert_eq!(end, BlobEvent::State { request: 2, blob, status: BlobStatus::Uploading, size: 100, stored: 40 });
    assert_eq!(bob.next().await.unwrap(), ServerMessage::Pong { nonce: 77 }, "answered in order");
    // Deleting the blob ends a held fetch at once too.
    bob.send(BlobRequest::Fetch { request: 3, blob, offset: 40, max: 100 }).await;
    assert!(timeout(Duration::from_millis(300), bob.c.recv()).await.is_err());
    alice.ask(BlobRequest::Delete { request: 4, blob }).await.unwrap();
    let answer = timeout(Duration::from_secs(5), bob.next()).await.expect("answered on deletion");
    refused(answer, ErrorCode::NoBlob, 3);
    server.stop().await;
}

#[tokio::test]
async fn many_tiny_blobs_are_refused_past_the_count_limits_and_a_deletion_frees_one() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_blobs_per_user: 3, max_blobs: 4, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let (mut alice, mut bob) = direct(&server).await;
    // Sixteen bytes each: the byte quotas would take 268 million of them.
    for i in 1..=3u8 {
        alice.upload(u64::from(i), [i; 16], DM, 16).await.unwrap();
    }
    let text = refused(alice.upload(4, [4; 16], DM, 16).await, ErrorCode::BlobQuota, 4);
    assert!(text.contains("3 files") && text.contains("per-user limit of 3 files"), "{text}");
    assert!(!blob_file(dir.path(), &[4; 16]).exists(), "nothing kept");
    bob.upload(5, [5; 16], DM, 16).await.unwrap();
    let text = refused(bob.upload(6, [6; 16], DM, 16).await, ErrorCode::BlobQuota, 6);
    assert!(text.contains("limit of 4 files for all users"), "{text}");
    // A resume of an existing blob is not a new one: still answered.
    assert_eq!(alice.upload(7, [1; 16], DM, 16).await.unwrap(), state(7, [1; 16], BlobStatus::Uploading, 16, 0));
    // The owner's deletion frees one, for her and in all.
    alice.ask(BlobRequest::Delete { request: 8, blob: [1; 16] }).await.unwrap();
    bob.upload(9, [6; 16], DM, 16).await.unwrap();
    refused(alice.upload(10, [4; 16], DM, 16).await, ErrorCode::BlobQuota, 10);
    server.stop().await;
}

#[tokio::test]
async fn an_upload_never_finished_expires_and_frees_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_blobs_per_user: 1, blob_ttl_secs: 1, max_blob_bytes_per_user: 100, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let (mut alice, _bob) = direct(&server).await;
    alice.upload(1, [0x91; 16], DM, 100).await.unwrap();
    alice.chunks([0x91; 16], 0, &[1; 10]).await;
    // Over quota now (by count and by bytes); free once it expired.
    refused(alice.upload(2, [0x92; 16], DM, 16).await, ErrorCode::BlobQuota, 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut request = 3;
    loop {
        match alice.upload(request, [0x92; 16], DM, 100).await {
            Ok(answer) => {
                assert_eq!(answer, state(request, [0x92; 16], BlobStatus::Uploading, 100, 0));
                break;
            }
            Err((ErrorCode::BlobQuota, ..)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("expected the unfinished blob to expire, got {other:?}"),
        }
        request += 1;
    }
    assert!(!blob_file(dir.path(), &[0x91; 16]).exists());
    // Its late chunks find nothing.
    alice.chunks([0x91; 16], 10, &[1; 10]).await;
    refused(alice.next().await, ErrorCode::NoBlob, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_member_who_left_fetches_nothing_and_hostile_offsets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    for (name, seed) in [("bob", 2), ("carol", 3)] {
        Peer::connect(&server, name, seed).await.c.close().await.unwrap();
    }
    let mut alice = Peer::connect(&server, "alice", 1).await;
    let room = b"g-leavers".to_vec();
    let joined = group(
        &mut alice,
        GroupRequest::CreateRoom { room: "leavers".into(), kind: RoomKind::Invite, group_id: room.clone() },
    )
    .await;
    assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
    let answer = group(&mut alice, GroupRequest::Commit(commit(&room, &["bob", "carol"]))).await;
    assert!(matches!(answer, ServerMessage::Group(GroupEvent::Committed { .. })), "{answer:?}");
    let mut bob = Peer::connect(&server, "bob", 2).await;
    let blob: BlobId = [0x93; 16];
    alice.upload(1, blob, &room, 40).await.unwrap();
    alice.chunks(blob, 0, &[8; 40]).await;
    assert_eq!(alice.next().await.unwrap(), state(0, blob, BlobStatus::Complete, 40, 40));
    assert_eq!(bob.fetch(2, blob, 0, 40).await.unwrap().0, vec![8; 40]);
    // Offsets past the end, up to 2^64 - 1: bad_request, the session lives.
    for (request, offset) in [(3, 41), (4, u64::MAX), (5, 1 << 63)] {
        let answer = bob.fetch(request, blob, offset, 1 << 20).await.map(|_| ServerMessage::Pong { nonce: 0 });
        refused(answer, ErrorCode::BadRequest, request);
    }
    // At the end exactly: nothing, and at once (a complete blob is not held).
    let (got, end) = timeout(Duration::from_secs(2), bob.fetch(6, blob, 40, 10)).await.unwrap().unwrap();
    assert!(got.is_empty());
    assert_eq!(ServerMessage::Blob(end), state(6, blob, BlobStatus::Complete, 40, 40));
    // Bob is removed from the room: he may not fetch, nor say he is done.
    let mut remove = commit(&room, &[]);
    remove.epoch = 1;
    remove.welcome = None;
    remove.removed = vec!["bob".into()];
    let answer = group(&mut alice, GroupRequest::Commit(remove)).await;
    assert!(matches!(answer, ServerMessage::Group(GroupEvent::Committed { .. })), "{answer:?}");
    refused(bob.fetch(7, blob, 0, 40).await.map(|_| ServerMessage::Pong { nonce: 0 }), ErrorCode::NoBlob, 7);
    refused(bob.ask(BlobRequest::Delete { request: 8, blob }).await, ErrorCode::NoBlob, 8);
    // Nor upload to the room any more.
    refused(bob.upload(9, [0x94; 16], &room, 16).await, ErrorCode::NotAllowed, 9);
    server.stop().await;
}
