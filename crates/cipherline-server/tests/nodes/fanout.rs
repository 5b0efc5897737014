//! Live fan-out across nodes (docs/cluster.md, steps 4 and 7): the
//! scenarios `tests/cluster.rs` runs on an in-process bus and
//! `tests/cluster_nats.rs` on a real nats-server.

use std::time::Duration;

use cipherline_client::{Client, ClientError};
use cipherline_proto::app::{ClientMessage, ErrorCode, ServerMessage, Target};
use tokio::time::timeout;

use super::{message_within, ping, user};
use crate::common::connect_as;

/// Subscribing on NATS is asynchronous (the bus's task asks the server);
/// a join's reply can overtake it. Live traffic is at most once and
/// nothing re-sends it, so the scenarios let subscriptions settle first.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn keyless(addr: &str, name: &str) -> Client {
    connect_as(addr, name, None).await.unwrap()
}

/// Every chat message `c` gets until a ping round trip after a pause
/// (long enough for a duplicate from another node to arrive), as
/// (from, text, seq).
async fn drain(c: &mut Client) -> Vec<(String, String, u64)> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.ping(9).await.unwrap();
    let mut got = Vec::new();
    loop {
        match timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap() {
            ServerMessage::Message(d) => got.push((d.from, d.text, d.seq)),
            ServerMessage::Pong { .. } => return got,
            _ => {}
        }
    }
}

/// Open room `lobby` with live-only members on three nodes (two on `a`
/// and on `c`) and a stored member on `c`: each message reaches every
/// member exactly once (a node does not take back what it published),
/// and never its sender.
pub async fn an_open_room_message_reaches_members_on_three_nodes_once_each(a: &str, b: &str, c: &str) {
    let mut ann = keyless(a, "ann").await;
    let mut amy = keyless(a, "amy").await;
    let mut ben = keyless(b, "ben").await;
    let mut cat = keyless(c, "cat").await;
    let mut cid = keyless(c, "cid").await;
    let mut dora = user(c, "dora", 11).await;
    for m in [&mut ann, &mut amy, &mut ben, &mut cat, &mut cid, &mut dora] {
        m.join("Lobby").await.unwrap();
    }
    settle().await;
    // Member lists merge every node's members.
    let everyone = ["amy", "ann", "ben", "cat", "cid", "dora"];
    assert_eq!(ann.who("lobby").await.unwrap(), everyone, "on a");
    assert_eq!(ben.who("lobby").await.unwrap(), everyone, "on b");
    assert_eq!(cid.who("lobby").await.unwrap(), everyone, "on c");
    // Joined notices of the members on the same node are not chat: drop them.
    for m in [&mut ann, &mut amy, &mut ben, &mut cat, &mut cid, &mut dora] {
        assert!(drain(m).await.is_empty());
    }
    for i in 0..3 {
        ann.send_acked(Target::Room("lobby".into()), &format!("from a {i}")).await.unwrap();
    }
    ben.send_acked(Target::Room("LOBBY".into()), "from b").await.unwrap();
    let texts = |got: Vec<(String, String, u64)>| got.into_iter().map(|(_, t, _)| t).collect::<Vec<_>>();
    let from_a: Vec<String> = (0..3).map(|i| format!("from a {i}")).collect();
    let all: Vec<String> = from_a.iter().cloned().chain(["from b".to_owned()]).collect();
    // Two nodes publish: their order is not one order everywhere.
    let sorted = |got: Vec<(String, String, u64)>| {
        let mut t = texts(got);
        t.sort();
        t
    };
    assert_eq!(texts(drain(&mut ann).await), ["from b"], "ann: ben's once, never her own");
    assert_eq!(texts(drain(&mut ben).await), from_a, "ben: ann's, once each, in order");
    assert_eq!(sorted(drain(&mut amy).await), all, "amy, on ann's node: once each");
    assert_eq!(sorted(drain(&mut cat).await), all, "cat on a third node");
    assert_eq!(sorted(drain(&mut cid).await), all, "cid, the second member on that node");
    // The stored member gets them from its queue (seq > 0), once each.
    let mut stored = Vec::new();
    while stored.len() < 4 {
        let (text, seq) = message_within(&mut dora, Duration::from_secs(10)).await.expect("dora's stored copies");
        assert!(seq > 0, "through the store, not live");
        dora.handled(seq).await.unwrap();
        stored.push(text);
    }
    dora.flush_received().await.unwrap();
    stored.sort();
    assert_eq!(stored, all);
    assert!(drain(&mut dora).await.is_empty(), "no live copy for a stored member");
    // A node whose last member left hears nothing more of the room.
    cat.leave("lobby").await.unwrap();
    cid.leave("lobby").await.unwrap();
    ann.send_acked(Target::Room("lobby".into()), "after").await.unwrap();
    assert_eq!(texts(drain(&mut ben).await), ["after"]);
    assert!(drain(&mut cat).await.is_empty() && drain(&mut cid).await.is_empty(), "they left");
    // Stored member dora stays listed; the live ones that left go.
    assert_eq!(ben.who("lobby").await.unwrap(), ["amy", "ann", "ben", "dora"]);
}

/// The limits under which [`a_room_message_is_charged_for_members_on_other_nodes`]
/// runs: a byte budget of 20,000 that does not refill within the test.
pub fn tight_bytes() -> cipherline_server::Limits {
    cipherline_server::Limits {
        max_message_bytes: 20_000,
        bytes_per_sec: 1,
        bytes_burst: 20_000,
        ..cipherline_server::Limits::default()
    }
}

/// A room message costs its size times its recipients on every node
/// (§13.5): ann on `a` with three room members on `b` has used 18 KB of
/// relay work with one 6 KB message, so a second one is over the 20 KB
/// budget of [`tight_bytes`]. Counting only `a`'s members would charge
/// nothing.
pub async fn a_room_message_is_charged_for_members_on_other_nodes(a: &str, b: &str) {
    let mut ann = keyless(a, "ann").await;
    let mut others = Vec::new();
    for name in ["ben", "bob", "bea"] {
        let mut c = keyless(b, name).await;
        c.join("hall").await.unwrap();
        others.push(c);
    }
    ann.join("hall").await.unwrap();
    settle().await;
    let text = "x".repeat(6000);
    ann.send_acked(Target::Room("hall".into()), &text).await.expect("18 KB of a 20 KB budget");
    for c in &mut others {
        assert_eq!(drain(c).await.len(), 1, "each member on b got it");
    }
    let second = ann.send_acked(Target::Room("hall".into()), &text).await;
    assert!(
        matches!(second, Err(ClientError::Refused { code: ErrorCode::RateLimited, .. })),
        "a second 6 KB message to three is over the budget: {second:?}"
    );
}

/// A direct message to a live-only user connected to another node is
/// delivered (and counted live in the Ack); a name connected nowhere is
/// still unknown.
pub async fn a_direct_message_reaches_a_live_only_user_on_another_node(a: &str, b: &str) {
    let mut gil = keyless(b, "gil").await;
    let mut hal = keyless(a, "hal").await;
    settle().await;
    let ack = hal.send_with_ack(Target::User("Gil".into()), "hello across").await.unwrap();
    assert_eq!((ack.queued, ack.live), (0, 1));
    let got = drain(&mut gil).await;
    assert_eq!(got.len(), 1, "once: {got:?}");
    assert_eq!((got[0].0.as_str(), got[0].1.as_str(), got[0].2), ("hal", "hello across", 0));
    // And back the other way.
    gil.send_acked(Target::User("hal".into()), "hello back").await.unwrap();
    assert_eq!(drain(&mut hal).await.len(), 1);
    let refused = hal.send_acked(Target::User("nobody".into()), "?").await;
    assert!(matches!(refused, Err(ClientError::Refused { code: ErrorCode::UnknownUser, .. })), "{refused:?}");
}

/// A Delivered receipt reaches the sender on its node when the recipient
/// acknowledges on another.
pub async fn delivered_crosses_nodes(a: &str, b: &str) {
    let mut ivy = user(a, "ivy", 12).await;
    let mut jon = user(b, "jon", 13).await;
    ivy.send_message(&ClientMessage::Receipts { enabled: true }).await.unwrap();
    settle().await;
    let ack = ivy.send_with_ack(Target::User("jon".into()), "receipt please").await.unwrap();
    let (text, seq) = message_within(&mut jon, Duration::from_secs(10)).await.expect("jon gets it");
    assert_eq!(text, "receipt please");
    jon.handled(seq).await.unwrap();
    jon.flush_received().await.unwrap();
    ping(&mut jon).await;
    loop {
        match timeout(Duration::from_secs(5), ivy.recv()).await.expect("a receipt within 5 s").unwrap() {
            ServerMessage::Delivered { id, by } => {
                assert_eq!((id, by.as_str()), (ack.id, "jon"));
                break;
            }
            _ => continue,
        }
    }
}

/// The next error or file offer `c` gets.
async fn offer_or_error(c: &mut Client) -> ServerMessage {
    loop {
        let m = timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap();
        if matches!(m, ServerMessage::Error { .. } | ServerMessage::FileOffered { .. }) {
            return m;
        }
    }
}

/// A v1 file offer whose recipients are all on other nodes is refused
/// with a text that names the way out; recipients on the sender's node
/// still get one.
pub async fn a_v1_offer_to_other_nodes_only_is_refused(a: &str, b: &str) {
    let mut kay = keyless(a, "kay").await;
    let mut lee = keyless(b, "lee").await;
    kay.join("files").await.unwrap();
    lee.join("files").await.unwrap();
    settle().await;
    for (transfer, to) in [(1, Target::Room("files".into())), (2, Target::User("lee".into()))] {
        let offer = ClientMessage::FileOffer { transfer, to, name: "f.bin".into(), size: 10 };
        kay.send_message(&offer).await.unwrap();
        match offer_or_error(&mut kay).await {
            ServerMessage::Error { code, text, .. } => {
                assert_eq!(code, ErrorCode::UnknownUser);
                assert!(text.contains("use an end-to-end file or the same node"), "{text}");
            }
            other => panic!("refused, not {other:?}"),
        }
    }
    let mut max = keyless(a, "max").await;
    max.join("files").await.unwrap();
    let offer =
        ClientMessage::FileOffer { transfer: 3, to: Target::Room("files".into()), name: "f.bin".into(), size: 10 };
    kay.send_message(&offer).await.unwrap();
    match offer_or_error(&mut max).await {
        ServerMessage::FileOffered { transfer, from, .. } => assert_eq!((transfer, from.as_str()), (3, "kay")),
        other => panic!("max on kay's node gets the offer, not {other:?}"),
    }
    drop(lee);
}
