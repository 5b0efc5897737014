//! File transfer through the relay over real loopback sockets (PROTOCOL.md
//! §13.6): offers, answers, data with flow control, the end hash,
//! cancellation from either side, disconnects, and the server's checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{ClientMessage, ErrorCode, MAX_CHUNK, MAX_UNACKED, ServerMessage, Target};
use cipherline_proto::crypto::sha256;
use cipherline_server::Limits;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use common::Server;

/// A receiver acknowledges at least this often (PROTOCOL.md §13.6).
const ACK_EVERY: usize = 256 * 1024;

fn user(n: &str) -> Target {
    Target::User(n.to_owned())
}

fn room(r: &str) -> Target {
    Target::Room(r.to_owned())
}

/// Test data that is not all one byte, so misordering would show.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn send(c: &mut Client, msg: ClientMessage) {
    c.send_message(&msg).await.unwrap();
}

/// The next message, skipping notices and pongs.
async fn next(c: &mut Client) -> ServerMessage {
    loop {
        match timeout(Duration::from_secs(5), c.recv()).await.expect("a message within 5 s").unwrap() {
            ServerMessage::Notice { .. } | ServerMessage::Pong { .. } => {}
            other => return other,
        }
    }
}

/// A direct message from `from` to `to` that `to` must see next: proves
/// nothing else (no stray file data) was queued for `to` before it.
async fn assert_next_is_chat(from: &mut Client, to: &mut Client, text: &str) {
    from.send_acked(user(to.name()), text).await.unwrap();
    match next(to).await {
        ServerMessage::Message(d) => assert_eq!(d.text, text),
        other => panic!("{} expected the chat message, got {other:?}", to.name()),
    }
}

/// Offers a file and checks that each of `recipients` sees the offer.
async fn offer(from: &mut Client, transfer: u64, to: Target, size: u64, recipients: &mut [&mut Client]) {
    send(from, ClientMessage::FileOffer { transfer, to: to.clone(), name: "report.pdf".into(), size }).await;
    for r in recipients.iter_mut() {
        match next(r).await {
            ServerMessage::FileOffered { transfer: t, from: f, to: got_to, name, size: s } => {
                assert_eq!(
                    (t, f.as_str(), &got_to, name.as_str(), s),
                    (transfer, from.name(), &to, "report.pdf", size)
                );
            }
            other => panic!("{} expected the offer, got {other:?}", r.name()),
        }
    }
}

async fn answer(r: &mut Client, sender: &str, transfer: u64, accept: bool) {
    send(r, ClientMessage::FileAnswer { transfer, sender: sender.into(), accept }).await;
}

async fn expect_answer(sender: &mut Client, transfer: u64, by: &str, accept: bool) {
    match next(sender).await {
        ServerMessage::FileAnswered { transfer: t, by: b, accept: a } => {
            assert_eq!((t, b.as_str(), a), (transfer, by, accept))
        }
        other => panic!("expected {by}'s answer, got {other:?}"),
    }
}

/// Sends `bytes` as a well-behaved sender: full chunks, never more than
/// MAX_UNACKED beyond the slowest of `receivers`' acknowledgements; then
/// FileEnd with the hash. Returns the number of FileAcked seen.
async fn send_file(c: &mut Client, transfer: u64, bytes: &[u8], receivers: &[&str]) -> usize {
    let acks = send_data(c, transfer, bytes, receivers).await;
    send(c, ClientMessage::FileEnd { transfer, sha256: sha256(bytes), signature: None }).await;
    acks
}

/// [`send_file`] without the FileEnd.
async fn send_data(c: &mut Client, transfer: u64, bytes: &[u8], receivers: &[&str]) -> usize {
    let mut acked: BTreeMap<String, u64> = receivers.iter().map(|r| ((*r).to_owned(), 0)).collect();
    let mut acks = 0;
    let mut sent = 0u64;
    for piece in bytes.chunks(MAX_CHUNK) {
        let len = piece.len() as u64;
        while sent + len - acked.values().min().copied().unwrap_or(sent) > MAX_UNACKED {
            match next(c).await {
                ServerMessage::FileAcked { transfer: t, by, received } if t == transfer => {
                    let slot = acked.get_mut(&by).expect("an ack from a receiver");
                    assert!(received > *slot && received <= sent, "acks move forward");
                    *slot = received;
                    acks += 1;
                }
                other => panic!("sender expected FileAcked, got {other:?}"),
            }
        }
        send(c, ClientMessage::FileChunk { transfer, data: piece.to_vec() }).await;
        sent += len;
    }
    acks
}

/// Receives a transfer as a well-behaved receiver: stores the data, acks at
/// least every 256 KiB, and at FileDone returns the data and the hash.
async fn receive_file(c: &mut Client, sender: &str, transfer: u64) -> (Vec<u8>, [u8; 32]) {
    let mut got = Vec::new();
    let mut last_ack = 0;
    loop {
        match next(c).await {
            ServerMessage::FileData { transfer: t, from, data } => {
                assert_eq!((t, from.as_str()), (transfer, sender));
                assert!(!data.is_empty() && data.len() <= MAX_CHUNK);
                got.extend_from_slice(&data);
                if got.len() - last_ack >= ACK_EVERY {
                    last_ack = got.len();
                    let received = got.len() as u64;
                    send(c, ClientMessage::FileAck { transfer, sender: sender.into(), received }).await;
                }
            }
            ServerMessage::FileDone { transfer: t, from, sha256, .. } => {
                assert_eq!((t, from.as_str()), (transfer, sender));
                return (got, sha256);
            }
            ServerMessage::FileAcked { .. } => {}
            other => panic!("{} expected file data, got {other:?}", c.name()),
        }
    }
}

fn spawn_receiver(mut c: Client, sender: &'static str, transfer: u64) -> JoinHandle<(Client, Vec<u8>, [u8; 32])> {
    tokio::spawn(async move {
        let (got, hash) = receive_file(&mut c, sender, transfer).await;
        (c, got, hash)
    })
}

/// Expects FileCancelled for `sender`'s transfer, stopped by `by`.
async fn expect_cancelled(c: &mut Client, sender: &str, transfer: u64, by: &str, reason_has: &str) {
    match next(c).await {
        ServerMessage::FileCancelled { transfer: t, sender: s, by: b, reason } => {
            assert_eq!((t, s.as_str(), b.as_str()), (transfer, sender, by), "{reason}");
            assert!(reason.contains(reason_has), "{reason:?} should mention {reason_has:?}");
        }
        other => panic!("{} expected FileCancelled by {by}, got {other:?}", c.name()),
    }
}

async fn expect_error(c: &mut Client, code: ErrorCode, client_id: u64) {
    match next(c).await {
        ServerMessage::Error { code: got, client_id: id, text } => {
            assert_eq!((got, id), (code, client_id), "{text}");
        }
        other => panic!("expected Error {code:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_transfer_arrives_intact_with_a_matching_hash() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // Not a multiple of the chunk size, and large enough for a few acks.
    let file = data(700 * 1024 + 123);
    offer(&mut alice, 1, user("bob"), file.len() as u64, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 1, true).await;
    expect_answer(&mut alice, 1, "bob", true).await;
    let receiver = spawn_receiver(bob, "alice", 1);
    send_data(&mut alice, 1, &file, &["bob"]).await;
    // Bob acks at 256 and 512 KiB; each ack reaches Alice (the transfer is
    // still open: acks for a finished transfer would be ignored).
    for want in [ACK_EVERY as u64, 2 * ACK_EVERY as u64] {
        match next(&mut alice).await {
            ServerMessage::FileAcked { transfer: 1, by, received } => {
                assert_eq!((by.as_str(), received), ("bob", want))
            }
            other => panic!("{other:?}"),
        }
    }
    send(&mut alice, ClientMessage::FileEnd { transfer: 1, sha256: sha256(&file), signature: None }).await;
    let (mut bob, got, hash) = receiver.await.unwrap();
    assert_eq!(got.len(), file.len());
    assert!(got == file, "byte-identical");
    assert_eq!(hash, sha256(&got), "the FileDone hash matches the data received");
    // Bob checked the file: his receipt (an ack of the whole size) reaches Alice.
    let size = file.len() as u64;
    send(&mut bob, ClientMessage::FileAck { transfer: 1, sender: "alice".into(), received: size }).await;
    match next(&mut alice).await {
        ServerMessage::FileAcked { transfer: 1, by, received } => assert_eq!((by.as_str(), received), ("bob", size)),
        other => panic!("{other:?}"),
    }
    // The transfer is over: more data for it goes nowhere.
    send(&mut alice, ClientMessage::FileChunk { transfer: 1, data: vec![1; 10] }).await;
    assert_next_is_chat(&mut alice, &mut bob, "done").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_tells_the_sender_and_sends_no_data() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    offer(&mut alice, 7, user("bob"), 100, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 7, false).await;
    expect_answer(&mut alice, 7, "bob", false).await;
    // A sender that sends anyway reaches no one, and a late change of mind
    // is ignored (the offer is gone).
    send(&mut alice, ClientMessage::FileChunk { transfer: 7, data: vec![0; 100] }).await;
    send(&mut alice, ClientMessage::FileEnd { transfer: 7, sha256: [0; 32], signature: None }).await;
    answer(&mut bob, "alice", 7, true).await;
    assert_next_is_chat(&mut alice, &mut bob, "no file for you").await;
    assert_next_is_chat(&mut bob, &mut alice, "fine").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_offer_reaches_every_other_member_and_only_acceptors_get_data() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let mut dave = server.connect("dave").await;
    let mut eve = server.connect("eve").await; // connected, not in the room
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.join("team").await.unwrap();
    }
    let file = data(300 * 1024);
    offer(&mut alice, 3, room("team"), file.len() as u64, &mut [&mut bob, &mut carol, &mut dave]).await;
    answer(&mut bob, "alice", 3, true).await;
    answer(&mut carol, "alice", 3, false).await;
    answer(&mut dave, "alice", 3, true).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        match next(&mut alice).await {
            ServerMessage::FileAnswered { transfer: 3, by, accept } => answers.push((by, accept)),
            other => panic!("{other:?}"),
        }
    }
    answers.sort();
    assert_eq!(answers, [("bob".to_owned(), true), ("carol".to_owned(), false), ("dave".to_owned(), true)]);

    // Dave takes the first chunk, then stops; Bob keeps going.
    send(&mut alice, ClientMessage::FileChunk { transfer: 3, data: file[..MAX_CHUNK].to_vec() }).await;
    match next(&mut dave).await {
        ServerMessage::FileData { transfer: 3, data, .. } => assert_eq!(data, &file[..MAX_CHUNK]),
        other => panic!("{other:?}"),
    }
    let reason = "changed my mind".to_owned();
    send(&mut dave, ClientMessage::FileCancel { transfer: 3, sender: "alice".into(), reason }).await;
    expect_cancelled(&mut alice, "alice", 3, "dave", "changed my mind").await;

    // The first chunk is still queued for Bob: send the rest, then the end
    // with the whole file's hash.
    let receiver = spawn_receiver(bob, "alice", 3);
    for piece in file[MAX_CHUNK..].chunks(MAX_CHUNK) {
        send(&mut alice, ClientMessage::FileChunk { transfer: 3, data: piece.to_vec() }).await;
    }
    send(&mut alice, ClientMessage::FileEnd { transfer: 3, sha256: sha256(&file), signature: None }).await;
    let (_bob, got, hash) = receiver.await.unwrap();
    assert!(got == file);
    assert_eq!(hash, sha256(&got));

    // Carol (declined), Dave (cancelled) and Eve (not in the room) got
    // nothing more.
    assert_next_is_chat(&mut alice, &mut carol, "c").await;
    assert_next_is_chat(&mut alice, &mut dave, "d").await;
    assert_next_is_chat(&mut alice, &mut eve, "e").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_ignores_the_window_gets_the_transfer_cancelled() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    offer(&mut alice, 1, user("bob"), 10 * MAX_UNACKED, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 1, true).await;
    expect_answer(&mut alice, 1, "bob", true).await;
    // Bob reads but never acks; Alice sends one chunk beyond the window.
    let in_window = MAX_UNACKED as usize / MAX_CHUNK;
    for _ in 0..=in_window {
        send(&mut alice, ClientMessage::FileChunk { transfer: 1, data: vec![0xab; MAX_CHUNK] }).await;
    }
    expect_cancelled(&mut alice, "alice", 1, "alice", "flow control").await;
    let mut chunks = 0;
    loop {
        match next(&mut bob).await {
            ServerMessage::FileData { .. } => chunks += 1,
            ServerMessage::FileCancelled { transfer: 1, sender, by, reason } => {
                assert_eq!((sender.as_str(), by.as_str()), ("alice", "alice"));
                assert!(reason.contains("flow control"), "{reason}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(chunks, in_window, "everything within the window was relayed, nothing beyond");

    // Sending more than the offered size ends a transfer the same way.
    offer(&mut alice, 2, user("bob"), 10, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 2, true).await;
    expect_answer(&mut alice, 2, "bob", true).await;
    send(&mut alice, ClientMessage::FileChunk { transfer: 2, data: vec![0; 11] }).await;
    expect_cancelled(&mut alice, "alice", 2, "alice", "more data than it offered").await;
    expect_cancelled(&mut bob, "alice", 2, "alice", "more data than it offered").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_cancel_reaches_the_sender() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    offer(&mut alice, 5, user("bob"), 1000, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 5, true).await;
    expect_answer(&mut alice, 5, "bob", true).await;
    send(&mut alice, ClientMessage::FileChunk { transfer: 5, data: vec![1; 500] }).await;
    assert!(matches!(next(&mut bob).await, ServerMessage::FileData { transfer: 5, .. }));
    let reason = "disk full".to_owned();
    send(&mut bob, ClientMessage::FileCancel { transfer: 5, sender: "alice".into(), reason }).await;
    expect_cancelled(&mut alice, "alice", 5, "bob", "disk full").await;
    // Bob was the only receiver: the rest goes nowhere.
    send(&mut alice, ClientMessage::FileChunk { transfer: 5, data: vec![1; 500] }).await;
    send(&mut alice, ClientMessage::FileEnd { transfer: 5, sha256: [0; 32], signature: None }).await;
    assert_next_is_chat(&mut alice, &mut bob, "sorry").await;

    // A receiver whose check fails after FileDone tells the sender so.
    offer(&mut alice, 7, user("bob"), 4, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 7, true).await;
    expect_answer(&mut alice, 7, "bob", true).await;
    send(&mut alice, ClientMessage::FileChunk { transfer: 7, data: b"data".to_vec() }).await;
    send(&mut alice, ClientMessage::FileEnd { transfer: 7, sha256: [0; 32], signature: None }).await;
    let (got, hash) = receive_file(&mut bob, "alice", 7).await;
    assert_ne!(sha256(&got), hash);
    let reason = "SHA-256 mismatch; the file was deleted".to_owned();
    send(&mut bob, ClientMessage::FileCancel { transfer: 7, sender: "alice".into(), reason }).await;
    expect_cancelled(&mut alice, "alice", 7, "bob", "SHA-256 mismatch").await;

    // The sender's own cancel reaches everyone offered, answered or not.
    let mut carol = server.connect("carol").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("r").await.unwrap();
    }
    offer(&mut alice, 6, room("r"), 1000, &mut [&mut bob, &mut carol]).await;
    answer(&mut bob, "alice", 6, true).await;
    expect_answer(&mut alice, 6, "bob", true).await;
    let reason = "wrong file".to_owned();
    send(&mut alice, ClientMessage::FileCancel { transfer: 6, sender: String::new(), reason }).await;
    expect_cancelled(&mut bob, "alice", 6, "alice", "wrong file").await;
    expect_cancelled(&mut carol, "alice", 6, "alice", "wrong file").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_cancel_transfers_on_the_other_side() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("r").await.unwrap();
    }
    // The sender goes: the receiver that accepted and the one that has not
    // answered yet both hear of it.
    offer(&mut alice, 1, room("r"), 1000, &mut [&mut bob, &mut carol]).await;
    answer(&mut bob, "alice", 1, true).await;
    expect_answer(&mut alice, 1, "bob", true).await;
    send(&mut alice, ClientMessage::FileChunk { transfer: 1, data: vec![1; 100] }).await;
    assert!(matches!(next(&mut bob).await, ServerMessage::FileData { transfer: 1, .. }));
    drop(alice);
    expect_cancelled(&mut bob, "alice", 1, "alice", "sender disconnected").await;
    expect_cancelled(&mut carol, "alice", 1, "alice", "sender disconnected").await;

    // A receiver goes: the sender hears of it.
    offer(&mut bob, 2, user("carol"), 1000, &mut [&mut carol]).await;
    answer(&mut carol, "bob", 2, true).await;
    expect_answer(&mut bob, 2, "carol", true).await;
    carol.close().await.unwrap();
    expect_cancelled(&mut bob, "bob", 2, "carol", "receiver disconnected").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_and_acks_do_not_use_up_the_message_rate() {
    let server = Server::start(Limits { messages_per_sec: 2, burst: 5, ..Limits::default() }).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // 4 MiB: 256 chunks and 16 acks, against 5 tokens and 2 per second;
    // twice the window, so the sender must wait for acks.
    let file = data(4 * 1024 * 1024);
    offer(&mut alice, 1, user("bob"), file.len() as u64, &mut [&mut bob]).await;
    answer(&mut bob, "alice", 1, true).await;
    expect_answer(&mut alice, 1, "bob", true).await;
    let receiver = spawn_receiver(bob, "alice", 1);
    let acks = send_file(&mut alice, 1, &file, &["bob"]).await;
    assert!(acks >= 8, "the sender waited for the receiver ({acks} acks)");
    let (mut bob, got, hash) = receiver.await.unwrap();
    assert!(got == file);
    assert_eq!(hash, sha256(&file));
    // The rate limit itself is still in force for other messages.
    let mut limited = false;
    for i in 0..10 {
        match bob.send_acked(user("alice"), &format!("m{i}")).await {
            Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) => {
                limited = true;
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(limited, "ordinary messages are still rate limited");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_checked() {
    let server = Server::start(Limits { max_transfers_per_client: 2, ..Limits::default() }).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let bad_names = ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "a\0b", "line\nbreak", "\u{1b}[2J"];
    for (i, bad) in bad_names.iter().enumerate() {
        let transfer = 100 + i as u64;
        let msg = ClientMessage::FileOffer { transfer, to: user("bob"), name: (*bad).into(), size: 1 };
        send(&mut alice, msg).await;
        expect_error(&mut alice, ErrorCode::InvalidName, transfer).await;
    }
    let cases = [
        (user("nobody"), ErrorCode::UnknownUser),
        (user("alice"), ErrorCode::UnknownUser),
        (room("elsewhere"), ErrorCode::NotInRoom),
        (room("solo"), ErrorCode::UnknownUser),
    ];
    alice.join("solo").await.unwrap();
    for (i, (to, code)) in cases.into_iter().enumerate() {
        let transfer = 200 + i as u64;
        send(&mut alice, ClientMessage::FileOffer { transfer, to, name: "f".into(), size: 1 }).await;
        expect_error(&mut alice, code, transfer).await;
    }
    // Bob was offered none of them.
    assert_next_is_chat(&mut alice, &mut bob, "nothing yet").await;

    // At most two transfers in progress per sender.
    offer(&mut alice, 1, user("bob"), 1, &mut [&mut bob]).await;
    offer(&mut alice, 2, user("bob"), 1, &mut [&mut bob]).await;
    send(&mut alice, ClientMessage::FileOffer { transfer: 3, to: user("bob"), name: "f".into(), size: 1 }).await;
    expect_error(&mut alice, ErrorCode::RateLimited, 3).await;
    // Declining frees the slot.
    answer(&mut bob, "alice", 2, false).await;
    expect_answer(&mut alice, 2, "bob", false).await;
    offer(&mut alice, 3, user("bob"), 1, &mut [&mut bob]).await;

    // Reusing the id of a transfer in progress is a protocol error.
    send(&mut alice, ClientMessage::FileOffer { transfer: 1, to: user("bob"), name: "f".into(), size: 1 }).await;
    expect_error(&mut alice, ErrorCode::BadRequest, 0).await;
    // ... which closes the connection and so cancels Alice's transfers.
    expect_cancelled(&mut bob, "alice", 1, "alice", "sender disconnected").await;
    expect_cancelled(&mut bob, "alice", 3, "alice", "sender disconnected").await;
    server.stop().await;
}

/// Issue 12 item 1: a file name with a bidi override (`invoice\u{202e}fdp.exe`
/// shows as "invoiceexe.pdf"), a zero-width or other format character, or a
/// line separator is refused with `invalid_name`, and the receiver is never
/// offered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_with_bidi_or_format_characters_are_refused() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let disguised = [
        "invoice\u{202e}fdp.exe",
        "a\u{200b}b.txt",
        "\u{2066}x\u{2069}.pdf",
        "\u{feff}f",
        "a\u{2028}b",
        "tag\u{e0041}",
    ];
    for (i, bad) in disguised.iter().enumerate() {
        let transfer = 300 + i as u64;
        let msg = ClientMessage::FileOffer { transfer, to: user("bob"), name: (*bad).into(), size: 1 };
        send(&mut alice, msg).await;
        expect_error(&mut alice, ErrorCode::InvalidName, transfer).await;
    }
    assert_next_is_chat(&mut alice, &mut bob, "no offer reached bob").await;
    server.stop().await;
}
