//! Transfers when one identity key has several sessions (issue 13).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::transfer::reason;

fn hub() -> Hub {
    Hub::new(std::sync::Arc::new(crate::identity::Identities::open_in_memory()), &crate::Limits::default(), None, None)
}

fn session(hub: &Hub, name: &str, key: Option<(u16, Vec<u8>)>) -> (Me, mpsc::Receiver<Queued>) {
    let (tx, rx) = mpsc::channel(64);
    (hub.register(name, tx, CancellationToken::new(), key, None).unwrap(), rx)
}

fn alice_twice_and_bob(hub: &Hub) -> [(Me, mpsc::Receiver<Queued>); 3] {
    let key = Some((0x0807, vec![1; 44]));
    [session(hub, "alice", key.clone()), session(hub, "alice", key), session(hub, "bob", None)]
}

fn drain(rx: &mut mpsc::Receiver<Queued>) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while let Ok(bytes) = rx.try_recv() {
        out.push(ServerMessage::decode(&bytes[4..]).unwrap());
    }
    out
}

fn offer(hub: &Hub, me: &Me, to: Target) {
    let limits = OfferLimits::from(&crate::Limits::default());
    hub.file_offer(me, 1, to, "f".into(), 4, &limits, |_| Ok(())).unwrap();
}

#[test]
fn a_decline_from_one_session_does_not_decline_for_another() {
    let hub = hub();
    let [(chat, mut chat_rx), (listen, mut listen_rx), (bob, mut bob_rx)] = alice_twice_and_bob(&hub);
    offer(&hub, &bob, Target::User("alice".into()));
    for rx in [&mut chat_rx, &mut listen_rx] {
        assert!(matches!(&drain(rx)[..], [ServerMessage::FileOffered { .. }]));
    }
    // The listening session declines on its own: the sender hears
    // nothing yet, as the chat session has not answered.
    hub.file_answer(&listen, "bob", 1, false);
    assert_eq!(drain(&mut bob_rx), []);
    hub.file_answer(&chat, "bob", 1, true);
    let got = drain(&mut bob_rx);
    assert!(matches!(&got[..], [ServerMessage::FileAnswered { by, accept: true, .. }] if by == "alice"), "{got:?}");
    // Data and the end reach the accepting session only.
    hub.file_chunk(&bob, 1, vec![1, 2, 3, 4]);
    hub.file_end(&bob, 1, [0; 32], None, 16);
    let got = drain(&mut chat_rx);
    assert!(
        matches!(&got[..], [ServerMessage::FileData { data, .. }, ServerMessage::FileDone { .. }] if data == &[1, 2, 3, 4]),
        "{got:?}"
    );
    assert_eq!(drain(&mut listen_rx), []);
    // Only the accepting session's receipt counts.
    hub.file_ack(&listen, "bob", 1, 4);
    assert_eq!(drain(&mut bob_rx), []);
    hub.file_ack(&chat, "bob", 1, 4);
    assert!(matches!(&drain(&mut bob_rx)[..], [ServerMessage::FileAcked { received: 4, .. }]));
    assert_eq!(hub.transfer_count(), 0);
}

#[test]
fn an_accept_tells_the_other_sessions_and_all_declines_make_one_answer() {
    let hub = hub();
    let [(chat, mut chat_rx), (listen, mut listen_rx), (bob, mut bob_rx)] = alice_twice_and_bob(&hub);
    offer(&hub, &bob, Target::User("alice".into()));
    drain(&mut chat_rx);
    drain(&mut listen_rx);
    hub.file_answer(&chat, "bob", 1, true);
    let got = drain(&mut listen_rx);
    assert!(
        matches!(&got[..], [ServerMessage::FileCancelled { reason, .. }] if reason == reason::ANSWERED_ELSEWHERE),
        "{got:?}"
    );
    // Its answer now comes too late to change anything.
    hub.file_answer(&listen, "bob", 1, false);
    hub.file_cancel(&listen, "bob", 1, "no".into());
    assert!(matches!(&drain(&mut bob_rx)[..], [ServerMessage::FileAnswered { accept: true, .. }]));
    hub.file_cancel(&bob, "", 1, "never mind".into());
    assert_eq!(hub.transfer_count(), 0);

    // Both sessions decline: the sender gets one decline, after the last.
    let limits = OfferLimits::from(&crate::Limits::default());
    hub.file_offer(&bob, 2, Target::User("alice".into()), "f".into(), 4, &limits, |_| Ok(())).unwrap();
    drain(&mut chat_rx);
    hub.file_answer(&chat, "bob", 2, false);
    assert_eq!(drain(&mut bob_rx), []);
    hub.file_cancel(&listen, "bob", 2, "too big".into());
    let got = drain(&mut bob_rx);
    assert!(matches!(&got[..], [ServerMessage::FileCancelled { by, .. }] if by == "alice"), "{got:?}");
    assert_eq!(hub.transfer_count(), 0);
}

#[test]
fn a_receiving_session_leaving_ends_the_transfer_though_another_remains() {
    let hub = hub();
    let [(chat, _chat_rx), (_listen, _listen_rx), (bob, mut bob_rx)] = alice_twice_and_bob(&hub);
    offer(&hub, &bob, Target::User("alice".into()));
    hub.file_answer(&chat, "bob", 1, true);
    hub.file_chunk(&bob, 1, vec![1, 2]);
    drain(&mut bob_rx);
    hub.unregister(&chat);
    let got = drain(&mut bob_rx);
    assert!(
        matches!(&got[..], [ServerMessage::FileCancelled { by, reason, .. }]
            if by == "alice" && reason == reason::RECEIVER_DISCONNECTED),
        "{got:?}"
    );
    assert_eq!(hub.transfer_count(), 0);
}

#[test]
fn a_sending_session_leaving_ends_its_transfer_and_frees_its_id() {
    let hub = hub();
    let [(chat, _chat_rx), (listen, mut listen_rx), (bob, mut bob_rx)] = alice_twice_and_bob(&hub);
    offer(&hub, &chat, Target::User("bob".into()));
    hub.file_answer(&bob, "alice", 1, true);
    // The other session cannot feed, end or cancel it.
    hub.file_chunk(&listen, 1, vec![9]);
    hub.file_end(&listen, 1, [0; 32], None, 16);
    hub.file_cancel(&listen, "", 1, "not mine".into());
    assert!(matches!(&drain(&mut bob_rx)[..], [ServerMessage::FileOffered { .. }]));
    assert_eq!(hub.transfer_count(), 1);
    hub.unregister(&chat);
    let got = drain(&mut bob_rx);
    assert!(
        matches!(&got[..], [ServerMessage::FileCancelled { sender, reason, .. }]
            if sender == "alice" && reason == reason::SENDER_DISCONNECTED),
        "{got:?}"
    );
    assert_eq!(hub.transfer_count(), 0);
    // The remaining session may number a transfer 1 now.
    offer(&hub, &listen, Target::User("bob".into()));
    assert_eq!(drain(&mut listen_rx), [], "the answer went to the session that offered");
}

#[test]
fn a_room_offer_reaches_only_the_sessions_in_the_room() {
    let hub = hub();
    let [(chat, mut chat_rx), (_listen, mut listen_rx), (bob, _bob_rx)] = alice_twice_and_bob(&hub);
    hub.join(&chat, "lobby", 32, false).unwrap();
    hub.join(&bob, "lobby", 32, false).unwrap();
    drain(&mut chat_rx);
    offer(&hub, &bob, Target::Room("lobby".into()));
    assert!(matches!(&drain(&mut chat_rx)[..], [ServerMessage::FileOffered { .. }]));
    assert_eq!(drain(&mut listen_rx), [], "not in the room");
    hub.file_answer(&chat, "bob", 1, true);
    hub.file_chunk(&bob, 1, vec![1]);
    assert!(matches!(&drain(&mut chat_rx)[..], [ServerMessage::FileData { .. }]));
    assert_eq!(drain(&mut listen_rx), []);
}
