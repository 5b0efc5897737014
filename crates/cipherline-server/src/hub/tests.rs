//! The hub's unit tests (delivery bounds, names, sessions).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

impl Hub {
    /// Accepts and delivers a message, all recipients live (no store).
    fn send_live(
        &self,
        me: &Me,
        to: &Target,
        text: String,
        client_id: u64,
        signature: Option<SendSignature>,
        admit: impl FnOnce(usize) -> Result<(), Refusal>,
    ) -> Result<u64, Refusal> {
        let out = self.send(me, to, text, client_id, signature, &Elsewhere::Nothing, admit)?;
        let id = out.id;
        self.deliver_outbound(out, &[]);
        Ok(id)
    }

    /// The first connection of `name`.
    fn me(&self, name: &str) -> Me {
        let session = self.lock().users.get(name).unwrap().sessions[0].id;
        Me { name: name.to_owned(), session }
    }
}

fn hub() -> Hub {
    Hub::new(std::sync::Arc::new(crate::identity::Identities::open_in_memory()), &crate::Limits::default(), None, None)
}

fn offer_limits() -> OfferLimits {
    OfferLimits::from(&crate::Limits::default())
}

fn connect(hub: &Hub, name: &str, queue: usize) -> (mpsc::Receiver<Queued>, CancellationToken) {
    let (tx, rx) = mpsc::channel(queue);
    let kick = CancellationToken::new();
    hub.register(name, tx, kick.clone(), None, None).unwrap();
    (rx, kick)
}

fn drain(rx: &mut mpsc::Receiver<Queued>) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while let Ok(bytes) = rx.try_recv() {
        out.push(ServerMessage::decode(&bytes[4..]).unwrap());
    }
    out
}

#[test]
fn a_receiver_with_a_full_queue_loses_the_transfer_not_its_connection() {
    let hub = hub();
    let (mut a_rx, a_kick) = connect(&hub, "a", 64);
    let (mut b_rx, b_kick) = connect(&hub, "b", 8);
    hub.file_offer(&hub.me("a"), 1, Target::User("b".into()), "f".into(), 1 << 20, &offer_limits(), |_| Ok(()))
        .unwrap();
    hub.file_answer(&hub.me("b"), "a", 1, true);
    // Tiny chunks: far inside the byte window, but many messages.
    for _ in 0..20 {
        hub.file_chunk(&hub.me("a"), 1, vec![0]);
    }
    let got = drain(&mut b_rx);
    // The offer and data up to three quarters of the queue, then the
    // cancellation in the quarter kept free.
    assert_eq!(got.len(), 7, "{got:?}");
    assert!(matches!(got[0], ServerMessage::FileOffered { .. }));
    assert!(got[1..6].iter().all(|m| matches!(m, ServerMessage::FileData { .. })));
    assert!(matches!(&got[6], ServerMessage::FileCancelled { sender, by, .. } if sender == "a" && by == "a"));
    let got = drain(&mut a_rx);
    assert!(
        matches!(&got[..], [ServerMessage::FileAnswered { .. }, ServerMessage::FileCancelled { by, .. }] if by == "b")
    );
    assert!(!b_kick.is_cancelled() && !a_kick.is_cancelled(), "nobody was cut off");
    assert_eq!(hub.transfer_count(), 0);
}

fn small_budget_hub(per_client: usize, total: usize) -> Hub {
    let limits = crate::Limits {
        max_message_bytes: crate::config::MIN_MESSAGE_BYTES,
        max_queued_bytes_per_client: per_client,
        max_queued_bytes_total: total,
        ..crate::Limits::default()
    };
    Hub::new(std::sync::Arc::new(crate::identity::Identities::open_in_memory()), &limits, None, None)
}

#[test]
fn a_reader_that_stops_reading_is_dropped_by_its_queued_bytes() {
    let hub = small_budget_hub(64 * 1024, 1 << 20);
    // A queue of 256 messages: by count alone, 256 x 16 KB could wait.
    let (rx, kick) = connect(&hub, "reader", 256);
    let (_s_rx, s_kick) = connect(&hub, "sender", 256);
    hub.join(&hub.me("reader"), "r", 32, false).unwrap();
    hub.join(&hub.me("sender"), "r", 32, false).unwrap();
    let text = "x".repeat(16_000);
    let mut sent = 0;
    while !kick.is_cancelled() && sent < 100 {
        hub.send_live(&hub.me("sender"), &Target::Room("r".into()), text.clone(), sent, None, |_| Ok(())).unwrap();
        sent += 1;
    }
    assert!(kick.is_cancelled(), "the reader was cut off as too slow");
    assert_eq!(sent, 5, "cut off at the fifth 16 KB message, with 64 KiB queued");
    assert!(rx.len() <= 5, "the sender's join notice and four messages");
    let queued: usize = hub.lock().users.get("reader").unwrap().sessions[0].outlet.queued.load(Ordering::Relaxed);
    assert!(queued <= 64 * 1024, "{queued}");
    assert!(!s_kick.is_cancelled());
    drop(rx);
    hub.unregister(&hub.me("reader"));
    let state = hub.lock();
    let sender_holds = state.users.get("sender").unwrap().sessions[0].outlet.queued.load(Ordering::Relaxed);
    assert_eq!(state.backlog.total(), sender_holds, "only the notice that the reader left is still queued");
}

#[test]
fn room_messages_count_once_in_total_and_senders_wait_when_it_is_spent() {
    let hub = small_budget_hub(256 * 1024, 256 * 1024);
    let readers: Vec<_> = (0..4).map(|i| connect(&hub, &format!("r{i}"), 256)).collect();
    let (_s_rx, _s) = connect(&hub, "sender", 256);
    for i in 0..4 {
        hub.join(&hub.me(&format!("r{i}")), "room", 32, false).unwrap();
    }
    hub.join(&hub.me("sender"), "room", 32, false).unwrap();
    let text = "x".repeat(16_000);
    hub.send_live(&hub.me("sender"), &Target::Room("room".into()), text.clone(), 1, None, |_| Ok(())).unwrap();
    let one = hub.lock().users.get("r0").unwrap().sessions[0].outlet.queued.load(Ordering::Relaxed);
    assert!(one > 16_000);
    // Four recipients (and the join notices they already held), counted once.
    let queued_each = one;
    assert!(hub.lock().backlog.total() < queued_each + 1000, "shared, not counted per recipient");
    // Keep sending: the sender is refused at three quarters of the
    // total, before any recipient (each under its own budget) is cut off.
    let mut refused = None;
    for id in 2..40 {
        if let Err(r) =
            hub.send_live(&hub.me("sender"), &Target::Room("room".into()), text.clone(), id, None, |_| Ok(()))
        {
            refused = Some(r);
            break;
        }
    }
    let (code, _) = refused.expect("the total was spent");
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(readers.iter().all(|(_, kick)| !kick.is_cancelled()), "nobody was cut off");
    assert!(hub.lock().backlog.total() <= 256 * 1024);
}

#[test]
fn unregister_ends_and_leaves_transfers() {
    let hub = hub();
    let (mut a_rx, _a) = connect(&hub, "a", 64);
    let (mut b_rx, _b) = connect(&hub, "b", 64);
    hub.file_offer(&hub.me("a"), 1, Target::User("b".into()), "f".into(), 10, &offer_limits(), |_| Ok(())).unwrap();
    hub.file_offer(&hub.me("b"), 1, Target::User("a".into()), "f".into(), 10, &offer_limits(), |_| Ok(())).unwrap();
    drain(&mut a_rx);
    drain(&mut b_rx);
    hub.unregister(&hub.me("b"));
    let got = drain(&mut a_rx);
    // Same id both ways: `sender` tells the two apart.
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter().any(|m| matches!(m, ServerMessage::FileCancelled { sender, by, .. } if sender == "b" && by == "b"))
    );
    assert!(
        got.iter().any(|m| matches!(m, ServerMessage::FileCancelled { sender, by, .. } if sender == "a" && by == "b"))
    );
    assert_eq!(hub.transfer_count(), 0);
}

fn key(n: u8) -> Option<(u16, Vec<u8>)> {
    Some((0x0807, vec![n; 44]))
}

fn session(hub: &Hub, name: &str, key: Option<(u16, Vec<u8>)>) -> Result<(Me, mpsc::Receiver<Queued>), Refusal> {
    let (tx, rx) = mpsc::channel(64);
    hub.register(name, tx, CancellationToken::new(), key, None).map(|me| (me, rx))
}

#[test]
fn names_are_compared_ignoring_case_and_look_alikes_are_refused() {
    let hub = hub();
    let (_alice, mut rx) = session(&hub, "alice", key(1)).unwrap();
    for other in ["Alice", "ALICE", "a1ice", "AIice"] {
        let (code, text) = session(&hub, other, key(2)).err().unwrap();
        assert_eq!(code, ErrorCode::NameTaken, "{other}: {text}");
    }
    // Nor by a keyless client.
    assert!(session(&hub, "Alice", None).is_err());
    // A message to any spelling reaches alice, addressed as the sender
    // wrote it (which the sender's signature covers).
    let (bob, _b) = session(&hub, "bob", None).unwrap();
    hub.send_live(&bob, &Target::User("ALICE".into()), "hi".into(), 1, None, |_| Ok(())).unwrap();
    let got = drain(&mut rx);
    assert!(
        matches!(&got[..], [ServerMessage::Message(d)] if d.to == Target::User("ALICE".into()) && d.from == "bob"),
        "{got:?}"
    );
    assert!(matches!(hub.whois("Alice"), Ok(ServerMessage::Identity { name, .. }) if name == "alice"));
}

#[test]
fn one_key_may_have_several_sessions_and_each_gets_its_messages() {
    let hub = hub();
    let (one, mut rx1) = session(&hub, "alice", key(1)).unwrap();
    let (two, mut rx2) = session(&hub, "alice", key(1)).unwrap();
    // Another spelling of the same key's name gets told which to use.
    let (_, text) = session(&hub, "Alice", key(1)).err().unwrap();
    assert!(text.contains("connected as \"alice\""), "{text}");
    assert_eq!(hub.user_count(), 1);
    let (bob, _b) = session(&hub, "bob", None).unwrap();
    hub.send_live(&bob, &Target::User("alice".into()), "hi".into(), 1, None, |_| Ok(())).unwrap();
    for rx in [&mut rx1, &mut rx2] {
        let got = drain(rx);
        assert!(matches!(&got[..], [ServerMessage::Message(d)] if d.text == "hi"), "{got:?}");
    }
    // Rooms: the name is listed once; room messages reach the sessions in the room.
    hub.join(&one, "lobby", 32, false).unwrap();
    hub.join(&two, "lobby", 32, false).unwrap();
    hub.join(&bob, "lobby", 32, false).unwrap();
    assert_eq!(hub.members(&bob, "lobby").unwrap(), ["alice", "bob"]);
    drain(&mut rx1);
    drain(&mut rx2);
    hub.send_live(&bob, &Target::Room("lobby".into()), "all".into(), 2, None, |_| Ok(())).unwrap();
    assert_eq!(drain(&mut rx1).len(), 1);
    assert_eq!(drain(&mut rx2).len(), 1);
    // Each session numbers its transfers from 1: a clash is refused, not fatal.
    let offer =
        |me: &Me| hub.file_offer(me, 1, Target::User("bob".into()), "f".into(), 10, &offer_limits(), |_| Ok(()));
    offer(&one).unwrap();
    assert!(matches!(offer(&two), Err(OfferError::Refused((ErrorCode::BadRequest, _)))));
    // One session leaving keeps the name and its room membership.
    hub.unregister(&one);
    assert_eq!(hub.members(&bob, "lobby").unwrap(), ["alice", "bob"]);
    assert!(hub.whois("alice").is_ok());
    hub.unregister(&two);
    assert_eq!(hub.members(&bob, "lobby").unwrap(), ["bob"]);
    assert!(hub.whois("alice").is_err());
    // Sessions per name are bounded.
    let kept: Vec<_> = (0..MAX_SESSIONS_PER_NAME).map(|_| session(&hub, "carol", key(3)).unwrap()).collect();
    assert!(session(&hub, "carol", key(3)).is_err());
    drop(kept);
}
