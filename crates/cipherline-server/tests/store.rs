//! Store-and-forward (PROTOCOL.md §13.9): what a server with a store keeps
//! for users whose names a key owns, across their disconnects and its own
//! restarts; and what it tells senders and keyless clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::Duration;

use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{ClientMessage, Delivery, ErrorCode, ServerMessage, Target};
use cipherline_server::Limits;
use cipherline_store::Store as _;
use common::{connect_as, key, start_stored};
use tokio::time::timeout;

/// The next chat message, skipping anything else.
async fn next_message(c: &mut Client) -> Delivery {
    message_within(c, Duration::from_secs(10)).await.expect("a message in time")
}

/// The next chat message, or `None` after `quiet` without one.
async fn message_within(c: &mut Client, quiet: Duration) -> Option<Delivery> {
    loop {
        match timeout(quiet, c.recv()).await {
            Err(_) => return None,
            Ok(m) => match m.unwrap() {
                ServerMessage::Message(d) => return Some(d),
                _ => continue,
            },
        }
    }
}

/// Nothing but keepalive-free silence for a moment: no message arrives.
async fn no_message(c: &mut Client) {
    c.ping(1).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), c.recv()).await.expect("the pong").unwrap() {
            ServerMessage::Message(d) => panic!("unexpected message {:?}", d.text),
            ServerMessage::Pong { .. } => return,
            _ => {}
        }
    }
}

async fn alice(addr: &str) -> Client {
    let mut c = connect_as(addr, "alice", Some(key(1))).await.unwrap();
    c.resume(0).await.unwrap();
    c
}

async fn bob(addr: &str) -> Client {
    let mut c = connect_as(addr, "bob", Some(key(2))).await.unwrap();
    c.resume(0).await.unwrap();
    c
}

#[tokio::test]
async fn a_dm_to_an_offline_user_waits_across_a_restart_and_is_deleted_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    // Bob's key owns his name from his first visit on.
    let b = bob(&server.addr).await;
    assert!(b.info().queue.is_some(), "a user with a key is told its messages are kept");
    b.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    let ack = a.send_with_ack(Target::User("bob".into()), "while you were away").await.unwrap();
    assert_eq!((ack.queued, ack.live, ack.full), (1, 0, 0));
    a.close().await.unwrap();
    server.stop().await;

    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = bob(&server.addr).await;
    let d = next_message(&mut b).await;
    assert_eq!((d.text.as_str(), d.from.as_str(), d.id), ("while you were away", "alice", ack.id));
    assert!(d.seq > 0, "a stored message carries its queue position");
    // Not acknowledged: it comes again on the next connection, same id.
    drop(b);
    let mut b = bob(&server.addr).await;
    let again = next_message(&mut b).await;
    assert_eq!((again.id, again.seq), (d.id, d.seq));
    b.handled(again.seq).await.unwrap();
    b.close().await.unwrap();
    // Acknowledged: gone.
    let mut b = bob(&server.addr).await;
    no_message(&mut b).await;
    server.stop().await;
}

#[tokio::test]
async fn room_membership_outlives_the_connection_and_room_messages_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = bob(&server.addr).await;
    b.join("general").await.unwrap();
    b.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    a.join("general").await.unwrap();
    assert!(a.who("general").await.unwrap().contains(&"bob".to_owned()), "bob is still a member");
    let ack = a.send_with_ack(Target::Room("general".into()), "meeting at 3").await.unwrap();
    assert_eq!(ack.queued, 1, "kept for bob");
    server.stop().await;

    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = bob(&server.addr).await;
    let d = next_message(&mut b).await;
    assert_eq!((d.text.as_str(), d.to.clone()), ("meeting at 3", Target::Room("general".into())));
    b.handled(d.seq).await.unwrap();
    b.flush_received().await.unwrap();
    // Bob speaks in the room without joining again, then leaves for good.
    b.send_acked(Target::Room("general".into()), "ok").await.unwrap();
    b.leave("general").await.unwrap();
    b.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    let ack = a.send_with_ack(Target::Room("general".into()), "anyone?").await.unwrap();
    assert_eq!(ack.queued, 0, "bob left: nothing is kept for him");
    server.stop().await;
}

#[tokio::test]
async fn keyless_clients_get_live_delivery_only_and_unknown_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut guest = connect_as(&server.addr, "guest", None).await.unwrap();
    assert!(guest.info().queue.is_none(), "a keyless client is told nothing is kept for it");
    let mut a = alice(&server.addr).await;
    let ack = a.send_with_ack(Target::User("guest".into()), "live").await.unwrap();
    assert_eq!((ack.queued, ack.live), (0, 1));
    let d = next_message(&mut guest).await;
    assert_eq!((d.text.as_str(), d.seq), ("live", 0));
    drop(guest);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for name in ["guest", "nobody"] {
        match a.send_acked(Target::User(name.into()), "hello?").await {
            Err(ClientError::Refused { code: ErrorCode::UnknownUser, text }) => {
                assert!(text.contains("known to this server"), "{text}");
            }
            other => panic!("expected unknown_user for {name}, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_refuses_a_dm_and_is_counted_for_a_room() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_queued_messages_per_recipient: 2, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let mut b = bob(&server.addr).await;
    b.join("r").await.unwrap();
    b.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    a.join("r").await.unwrap();
    a.send_acked(Target::User("bob".into()), "1").await.unwrap();
    a.send_acked(Target::User("bob".into()), "2").await.unwrap();
    match a.send_acked(Target::User("bob".into()), "3").await {
        Err(ClientError::Refused { code: ErrorCode::QueueFull, text }) => {
            assert!(text.contains("not kept"), "{text}");
        }
        other => panic!("expected queue_full, got {other:?}"),
    }
    let ack = a.send_with_ack(Target::Room("r".into()), "room").await.unwrap();
    assert_eq!((ack.queued, ack.full), (0, 1), "the sender learns one member did not get it");
    // Bob reads and acknowledges: room again.
    let mut b = bob(&server.addr).await;
    for want in ["1", "2"] {
        let d = next_message(&mut b).await;
        assert_eq!(d.text, want, "in order");
        b.handled(d.seq).await.unwrap();
    }
    b.flush_received().await.unwrap();
    // The acknowledgement reached the store before this send: a Ping round trip orders them.
    no_message(&mut b).await;
    let ack = a.send_with_ack(Target::User("bob".into()), "3").await.unwrap();
    assert_eq!(ack.queued, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_sender_that_asks_gets_a_receipt_when_the_recipient_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = bob(&server.addr).await;
    let mut a = alice(&server.addr).await;
    a.send_message(&ClientMessage::Receipts { enabled: true }).await.unwrap();
    let ack = a.send_with_ack(Target::User("bob".into()), "did you get this?").await.unwrap();
    let d = next_message(&mut b).await;
    // No receipt before bob's client acknowledges.
    a.ping(9).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), a.recv()).await.unwrap().unwrap() {
            ServerMessage::Delivered { .. } => panic!("a receipt before the acknowledgement"),
            ServerMessage::Pong { .. } => break,
            _ => {}
        }
    }
    b.handled(d.seq).await.unwrap();
    b.flush_received().await.unwrap();
    loop {
        if let ServerMessage::Delivered { id, by } = timeout(Duration::from_secs(5), a.recv()).await.unwrap().unwrap() {
            assert_eq!((id, by.as_str()), (ack.id, "bob"));
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn nothing_stored_is_sent_before_resume_and_resume_skips_what_the_client_has() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    bob(&server.addr).await.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    for text in ["one", "two", "three"] {
        a.send_acked(Target::User("bob".into()), text).await.unwrap();
    }
    // A connection that does not resume (a one-shot `send`) gets nothing.
    let mut quiet = connect_as(&server.addr, "bob", Some(key(2))).await.unwrap();
    no_message(&mut quiet).await;
    drop(quiet);
    // A client that handled "one" (its cursor) but could not acknowledge it.
    let mut b = connect_as(&server.addr, "bob", Some(key(2))).await.unwrap();
    b.resume(0).await.unwrap();
    let first = next_message(&mut b).await;
    assert_eq!(first.text, "one");
    drop(b);
    let mut b = connect_as(&server.addr, "bob", Some(key(2))).await.unwrap();
    b.resume(first.seq).await.unwrap();
    assert_eq!(next_message(&mut b).await.text, "two", "resumes after the cursor");
    drop(b);
    let mut b = connect_as(&server.addr, "bob", Some(key(2))).await.unwrap();
    b.resume(0).await.unwrap();
    assert_eq!(next_message(&mut b).await.text, "two", "the cursor acknowledged \"one\"");
    server.stop().await;
}

#[tokio::test]
async fn a_message_past_its_time_to_live_is_deleted_unread() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { message_ttl_secs: 2, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    bob(&server.addr).await.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    let late = a.send_acked(Target::User("bob".into()), "too late").await.unwrap();
    // Expiry runs every quarter of the time to live (at least every
    // second); the sender is told, through its own queue.
    let (id, to, seq) = loop {
        let msg = timeout(Duration::from_secs(10), a.recv()).await.expect("an expiry notice").unwrap();
        if let ServerMessage::Expired { id, to, seq } = msg {
            break (id, to, seq);
        }
    };
    assert_eq!((id, to.as_str()), (late, "bob"));
    assert!(seq > 0, "stored, so it waits for a sender who is offline");
    a.handled(seq).await.unwrap();
    a.send_acked(Target::User("bob".into()), "in time").await.unwrap();
    let mut b = bob(&server.addr).await;
    assert_eq!(next_message(&mut b).await.text, "in time", "the expired message is gone");
    server.stop().await;
}

#[tokio::test]
async fn a_flood_to_an_offline_user_is_delivered_in_order_through_the_window() {
    // More than the 256-message window: the rest follows each Received.
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { messages_per_sec: 10_000, burst: 10_000, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    bob(&server.addr).await.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    for i in 0..600 {
        a.send_acked(Target::User("bob".into()), &format!("{i}")).await.unwrap();
    }
    let mut b = bob(&server.addr).await;
    for i in 0..600 {
        let d = next_message(&mut b).await;
        assert_eq!(d.text, format!("{i}"));
        b.handled(d.seq).await.unwrap();
    }
    b.flush_received().await.unwrap();
    no_message(&mut b).await;
    server.stop().await;
}

/// The next chat message, or `None` after three quiet seconds.
async fn maybe_message(c: &mut Client) -> Option<Delivery> {
    message_within(c, Duration::from_secs(3)).await
}

/// A stored member is one user however it spells its name (found in
/// review: joined as `Bob`, back as `bob`, it could not leave, and joining
/// again stored every room message twice and echoed its own).
#[tokio::test]
async fn a_member_is_one_member_whatever_spelling_it_connects_under() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = connect_as(&server.addr, "Bob", Some(key(2))).await.unwrap();
    b.join("general").await.unwrap();
    b.close().await.unwrap();
    let mut b = connect_as(&server.addr, "bob", Some(key(2))).await.unwrap();
    b.resume(0).await.unwrap();
    b.join("general").await.unwrap();
    let mut a = alice(&server.addr).await;
    a.join("general").await.unwrap();
    assert_eq!(a.who("general").await.unwrap(), vec!["alice".to_owned(), "bob".to_owned()]);
    let ack = a.send_with_ack(Target::Room("general".into()), "hi").await.unwrap();
    assert_eq!(ack.queued, 1, "one user, one stored copy");
    let own = b.send_with_ack(Target::Room("general".into()), "from bob").await.unwrap();
    assert_eq!(own.queued, 1, "only alice's");
    let mut got = Vec::new();
    while let Some(d) = maybe_message(&mut b).await {
        got.push(d.text);
    }
    assert_eq!(got, vec!["hi".to_owned()], "each message once, and not his own");
    b.leave("general").await.expect("a stored member can always leave");
    let ack = a.send_with_ack(Target::Room("general".into()), "gone?").await.unwrap();
    assert_eq!(ack.queued, 0);
    server.stop().await;
}

/// Each connection of a user that resumed gets every message stored while
/// it is connected, even when another one acknowledges them first (found
/// in review: the slow one got 256 of 300).
#[tokio::test]
async fn a_second_connection_gets_what_the_first_acknowledged_first() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { messages_per_sec: 10_000, burst: 10_000, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let mut fast = bob(&server.addr).await;
    let mut slow = bob(&server.addr).await;
    let mut a = alice(&server.addr).await;
    for i in 0..300 {
        a.send_acked(Target::User("bob".into()), &format!("m{i}")).await.unwrap();
    }
    for client in [&mut fast, &mut slow] {
        let mut n = 0;
        while let Some(d) = maybe_message(client).await {
            client.handled(d.seq).await.unwrap();
            client.flush_received().await.unwrap();
            n += 1;
        }
        assert_eq!(n, 300, "every message stored while it was connected");
    }
    // Both acknowledged: nothing is left for the next connection.
    drop((fast, slow));
    let mut next = bob(&server.addr).await;
    assert!(maybe_message(&mut next).await.is_none());
    server.stop().await;
}

/// Joining and leaving room after room leaves nothing in the store (found
/// in review: a key per room name, for good, read at every start).
#[tokio::test]
async fn a_room_everyone_left_leaves_no_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { messages_per_sec: 10_000, burst: 10_000, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    let mut b = bob(&server.addr).await;
    for i in 0..50 {
        let room = format!("junk{i}");
        b.join(&room).await.unwrap();
        b.leave(&room).await.unwrap();
    }
    b.join("kept").await.unwrap();
    b.close().await.unwrap();
    server.stop().await;
    let store = cipherline_server::SqliteStore::open(
        dir.path().join("store.sqlite3"),
        cipherline_server::SqliteOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(store.keys("room/", "", 1000).await.unwrap(), vec!["room/kept".to_owned()]);
}

/// A Resume beyond the store's range is hostile input, not a store failure.
#[tokio::test]
async fn a_huge_resume_is_not_a_store_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = connect_as(&server.addr, "bob", Some(key(2))).await.unwrap();
    b.send_message(&ClientMessage::Resume { after: u64::MAX }).await.unwrap();
    b.ping(3).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), b.recv()).await.expect("the pong").unwrap() {
            ServerMessage::Error { code, text, .. } => panic!("{code:?}: {text}"),
            ServerMessage::Pong { .. } => break,
            _ => {}
        }
    }
    server.stop().await;
}

/// At most 256 stored messages go to a connection unacknowledged, and a
/// Received beyond what it was sent counts only up to what it was sent.
#[tokio::test]
async fn the_window_holds_256_and_an_acknowledgement_covers_only_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { messages_per_sec: 10_000, burst: 10_000, ..Limits::default() };
    let server = start_stored(dir.path(), limits).await;
    bob(&server.addr).await.close().await.unwrap();
    let mut a = alice(&server.addr).await;
    for i in 0..300 {
        a.send_acked(Target::User("bob".into()), &format!("m{i}")).await.unwrap();
    }
    let mut b = bob(&server.addr).await;
    let mut last = 0;
    let mut n = 0;
    while let Some(d) = maybe_message(&mut b).await {
        last = d.seq;
        n += 1;
    }
    assert_eq!(n, 256, "the window, and no more without an acknowledgement");
    // "Everything", says the client: only the 256 it was sent are deleted.
    b.send_message(&ClientMessage::Received { upto: u64::MAX }).await.unwrap();
    let mut rest = Vec::new();
    while let Some(d) = maybe_message(&mut b).await {
        rest.push(d.seq);
    }
    assert_eq!(rest.len(), 44, "the window opened for the rest");
    assert!(rest.iter().all(|s| *s > last));
    drop(b);
    let mut again = bob(&server.addr).await;
    let first = maybe_message(&mut again).await.expect("the unacknowledged 44 are still stored");
    assert_eq!(first.seq, rest[0]);
    server.stop().await;
}

/// A client without a stored queue gets no receipts (its name may be
/// someone else's by the time one comes back).
#[tokio::test]
async fn a_keyless_sender_gets_no_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stored(dir.path(), Limits::default()).await;
    let mut b = bob(&server.addr).await;
    let mut guest = connect_as(&server.addr, "guest", None).await.unwrap();
    guest.send_message(&ClientMessage::Receipts { enabled: true }).await.unwrap();
    guest.send_acked(Target::User("bob".into()), "from a guest").await.unwrap();
    let d = next_message(&mut b).await;
    b.handled(d.seq).await.unwrap();
    b.flush_received().await.unwrap();
    guest.ping(5).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), guest.recv()).await.expect("the pong").unwrap() {
            ServerMessage::Delivered { .. } => panic!("a receipt for a keyless sender"),
            ServerMessage::Pong { .. } => break,
            _ => {}
        }
    }
    server.stop().await;
}

/// Two new stores start at different message id epochs, so a server whose
/// store was deleted does not repeat the ids clients remember as shown.
#[tokio::test]
async fn a_new_store_does_not_repeat_an_old_stores_ids() {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let server = start_stored(dir.path(), Limits::default()).await;
        bob(&server.addr).await.close().await.unwrap();
        let mut a = alice(&server.addr).await;
        ids.push(a.send_acked(Target::User("bob".into()), "hello").await.unwrap());
        server.stop().await;
    }
    assert_ne!(ids[0], ids[1]);
}
