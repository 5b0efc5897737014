//! The relay over real loopback sockets: rooms, direct messages, names,
//! every limit, slow and hostile clients, idle timeout and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::Duration;

use cipherline_client::{Client, ClientError};
use cipherline_proto::AlertCode;
use cipherline_proto::app::{ErrorCode, ServerMessage, Target};
use cipherline_server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use common::Server;

/// The next chat message, skipping notices and pongs.
async fn next_message(c: &mut Client) -> cipherline_proto::app::Delivery {
    loop {
        match timeout(Duration::from_secs(5), c.recv()).await.expect("a message within 5 s").unwrap() {
            ServerMessage::Message(d) => return d,
            ServerMessage::Notice { .. } | ServerMessage::Pong { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn room(r: &str) -> Target {
    Target::Room(r.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_in_a_room_all_receive_each_others_messages() {
    let server = Server::start(Limits::default()).await;
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut c = server.client(name).await.unwrap();
        c.join("lobby").await.unwrap();
        clients.push(c);
    }
    assert_eq!(clients[0].who("lobby").await.unwrap(), vec!["alice", "bob", "carol"]);
    for (i, c) in clients.iter_mut().enumerate() {
        let id = c.send_acked(room("lobby"), &format!("hello from {i}")).await.unwrap();
        assert!(id > 0);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got: Vec<(String, String)> = Vec::new();
        for _ in 0..2 {
            let d = next_message(c).await;
            assert_eq!(d.to, room("lobby"));
            assert!(d.timestamp_ms > 0);
            got.push((d.from, d.text));
        }
        got.sort();
        let mut want: Vec<(String, String)> = ["alice", "bob", "carol"]
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, n)| ((*n).to_owned(), format!("hello from {j}")))
            .collect();
        want.sort();
        assert_eq!(got, want, "client {i} sees the other two, not itself");
    }
    for c in clients {
        c.close().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_message_reaches_only_its_target() {
    let server = Server::start(Limits::default()).await;
    let mut alice = server.client("alice").await.unwrap();
    let mut bob = server.client("bob").await.unwrap();
    let mut carol = server.client("carol").await.unwrap();
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("lobby").await.unwrap();
    }
    alice.send_acked(Target::User("bob".into()), "psst, bob").await.unwrap();
    let d = next_message(&mut bob).await;
    assert_eq!((d.from.as_str(), d.to, d.text.as_str()), ("alice", Target::User("bob".into()), "psst, bob"));
    // Carol's next message is a later room message: the direct one never came.
    bob.send_acked(room("lobby"), "public").await.unwrap();
    let d = next_message(&mut carol).await;
    assert_eq!((d.from.as_str(), d.text.as_str()), ("bob", "public"));
    // An unknown user is refused with a clear code.
    let err = alice.send_acked(Target::User("nobody".into()), "hello?").await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::UnknownUser, .. }), "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_and_checked() {
    let server = Server::start(Limits { max_name_len: 8, ..Limits::default() }).await;
    let _alice = server.client("alice").await.unwrap();
    let err = server.client("alice").await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::NameTaken, .. }), "{err:?}");
    for bad in ["toolongname", "has space", ".dot", ""] {
        let err = server.client(bad).await.err().unwrap();
        assert!(matches!(err, ClientError::Refused { code: ErrorCode::InvalidName, .. }), "{bad:?}: {err:?}");
    }
    // Once alice leaves, the name is free again.
    _alice.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.client("alice").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_trip_as_configured() {
    let limits = Limits {
        max_rooms_per_client: 2,
        messages_per_sec: 1,
        burst: 5,
        max_message_bytes: 17408,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let mut a = server.client("a").await.unwrap();
    a.join("r1").await.unwrap();
    a.join("r2").await.unwrap();
    let err = a.join("r3").await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::TooManyRooms, .. }), "{err:?}");
    // Not in a room: refused.
    let err = a.send_acked(room("elsewhere"), "x").await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::NotInRoom, .. }), "{err:?}");

    // Rate: the burst of 5 (4 already spent on joins and the refused send) runs out.
    let mut limited = false;
    for i in 0..5 {
        match a.send_acked(room("r1"), &format!("m{i}")).await {
            Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) => limited = true,
            Ok(_) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(limited, "the rate limit tripped");

    // Size: the limit announced in Welcome is the one the client library
    // holds messages to, before sending anything (the server's own refusal
    // of a longer message is tested with raw bytes in hostile.rs).
    let mut b = server.client("b").await.unwrap();
    b.join("r1").await.unwrap();
    let err = b.send(room("r1"), &"x".repeat(20_000)).await.unwrap_err();
    assert!(matches!(err, ClientError::TooLong { max: 17408, .. }), "{err:?}");
    b.send_acked(room("r1"), "still connected").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_server_busy() {
    let server = Server::start(Limits { max_connections: 2, ..Limits::default() }).await;
    let _a = server.client("a").await.unwrap();
    let _b = server.client("b").await.unwrap();
    let err = server.client("c").await.err().unwrap();
    match err {
        ClientError::Net(e) => assert_eq!(e.alert_received(), Some(AlertCode::ServerBusy)),
        other => panic!("{other:?}"),
    }
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.client("c").await.expect("a slot freed up");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_delay_others() {
    // Rates lifted (messages and bytes x recipients): this floods on purpose.
    let limits = Limits {
        queue_len: 64,
        write_timeout_secs: 2,
        messages_per_sec: 10_000,
        burst: 10_000,
        bytes_per_sec: 1 << 40,
        bytes_burst: 1 << 40,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let mut slow = server.client("slow").await.unwrap();
    slow.join("lobby").await.unwrap();
    let mut alice = server.client("alice").await.unwrap();
    let mut bob = server.client("bob").await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    // "slow" never reads again. Alice sends far more than its socket buffers
    // and queue hold (400 x 60 KB); Bob, who reads, must get every message.
    let text = "y".repeat(60 * 1024);
    let n = 400;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            alice.send_acked(room("lobby"), &format!("{i}:{text}")).await.unwrap();
        }
        alice
    });
    for i in 0..n {
        let d = timeout(Duration::from_secs(20), next_message(&mut bob)).await.expect("bob is never starved");
        assert!(d.text.starts_with(&format!("{i}:")), "in order and complete");
    }
    let _alice = sender.await.unwrap();
    // The slow client was cut off with a clear reason once it reads again.
    let mut saw_too_slow = false;
    loop {
        match timeout(Duration::from_secs(10), slow.recv()).await.unwrap() {
            Ok(ServerMessage::Error { code: ErrorCode::TooSlow, .. }) => saw_too_slow = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(saw_too_slow, "the slow client was told why it was dropped");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_stalled_handshakes_are_dropped_while_others_chat() {
    let server = Server::start(Limits { handshake_timeout_secs: 1, ..Limits::default() }).await;
    let mut alice = server.client("alice").await.unwrap();
    let mut bob = server.client("bob").await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();

    // Garbage: the server answers with an alert and closes.
    let mut garbage = TcpStream::connect(&server.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // Stalled: connects and sends nothing.
    let mut stalled = TcpStream::connect(&server.addr).await.unwrap();

    alice.send_acked(room("lobby"), "still here").await.unwrap();
    assert_eq!(next_message(&mut bob).await.text, "still here");

    for (name, sock) in [("garbage", &mut garbage), ("stalled", &mut stalled)] {
        let mut all = Vec::new();
        let read = timeout(Duration::from_secs(5), sock.read_to_end(&mut all)).await;
        assert!(read.is_ok(), "{name} connection was closed by the server");
        // It saw ServerIdentity, then a plaintext alert frame.
        let tail = &all[all.len() - 4..];
        assert_eq!(&tail[..3], &[0x15, 0x00, 0x01], "{name} got an alert");
        let code = AlertCode::from_u8(tail[3]);
        let expected = if name == "garbage" { AlertCode::DecodeError } else { AlertCode::Timeout };
        assert_eq!(code, expected, "{name}");
    }
    bob.send_acked(room("lobby"), "and so am I").await.unwrap();
    assert_eq!(next_message(&mut alice).await.text, "and so am I");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_dropped_and_pings_keep_them() {
    let server = Server::start(Limits { idle_timeout_secs: 1, ..Limits::default() }).await;
    let mut idle = server.client("idle").await.unwrap();
    let mut pinger = server.client("pinger").await.unwrap();
    assert_eq!(idle.idle_timeout_secs(), 1);
    for nonce in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        pinger.ping(nonce).await.unwrap();
        assert_eq!(
            timeout(Duration::from_secs(2), pinger.recv()).await.unwrap().unwrap(),
            ServerMessage::Pong { nonce }
        );
    }
    match timeout(Duration::from_secs(3), idle.recv()).await.unwrap() {
        Ok(ServerMessage::Error { code: ErrorCode::IdleTimeout, .. }) => {}
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_and_finishes_in_time() {
    let server = Server::start(Limits::default()).await;
    let mut a = server.client("a").await.unwrap();
    let mut b = server.client("b").await.unwrap();
    a.join("lobby").await.unwrap();
    b.join("lobby").await.unwrap();
    a.send_acked(room("lobby"), "before shutdown").await.unwrap();
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // b gets the message sent before shutdown, then the notice, then a clean close.
    assert_eq!(next_message(&mut b).await.text, "before shutdown");
    for c in [&mut a, &mut b] {
        let mut told = false;
        loop {
            match timeout(Duration::from_secs(5), c.recv()).await.unwrap() {
                Ok(ServerMessage::Error { code: ErrorCode::ShuttingDown, .. }) => told = true,
                Ok(ServerMessage::Notice { .. } | ServerMessage::Message(_)) => {}
                Ok(other) => panic!("{other:?}"),
                Err(ClientError::Net(cipherline_net::NetError::Closed)) => break,
                Err(e) => panic!("not a clean close: {e}"),
            }
        }
        assert!(told);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_waits_for_replies_keeps_a_bounded_backlog() {
    // A script that sends and waits for Acks in a loud room never reads the
    // room: the messages that arrive meanwhile are kept for it only up to a
    // bound, the oldest dropped first, and its Acks still come through.
    let limits = Limits {
        messages_per_sec: 100_000,
        burst: 100_000,
        bytes_per_sec: 1 << 40,
        bytes_burst: 1 << 40,
        queue_len: 8192,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let mut quiet = server.connect("quiet").await;
    let mut loud = server.connect("loud").await;
    quiet.join("lobby").await.unwrap();
    loud.join("lobby").await.unwrap();
    for i in 0..3000 {
        loud.send(room("lobby"), &format!("noise {i}")).await.unwrap();
    }
    loud.send_acked(room("lobby"), "last").await.unwrap();
    quiet.send_acked(Target::User("quiet".into()), "note to self").await.ok();
    quiet.send_acked(room("lobby"), "still here").await.unwrap();
    assert!(quiet.dropped() > 0, "the backlog was bounded");
    server.stop().await;
}
