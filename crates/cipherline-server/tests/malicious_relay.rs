//! What a malicious relay can and cannot do today (SECURITY.md, "A malicious
//! relay"): each test plays the relay through the server's tamper hook, or
//! by replaying, dropping and reordering what an honest relay delivered, and
//! checks what the recipient's signature check (PROTOCOL.md §13.7) makes of
//! it. The "can" tests pin down today's limits honestly: when end-to-end
//! encryption lands they must change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherline_client::Client;
use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_proto::app::{Delivery, ServerMessage, Target};
use cipherline_proto::message::ClientAuthRequest;
use cipherline_server::{Identities, Limits};
use tokio::time::timeout;

use common::{connect_as, key, start_relay};

async fn next_message(c: &mut Client) -> Delivery {
    loop {
        if let ServerMessage::Message(d) = timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap() {
            return d;
        }
    }
}

/// Alice (key 1) sends `texts` to bob (key 2) through a relay with `tamper`;
/// returns what bob received.
async fn exchange(tamper: Option<fn(&mut Delivery)>, texts: &[&str]) -> Vec<Delivery> {
    let (addr, _stop, _task) =
        start_relay(Arc::new(Identities::open_in_memory()), ClientAuthRequest::Optional, Limits::default(), tamper)
            .await;
    let mut alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    let mut got = Vec::new();
    for text in texts {
        alice.send_acked(Target::User("bob".into()), text).await.unwrap();
        got.push(next_message(&mut bob).await);
    }
    got
}

/// What the recording relay saw: (from, to, text).
static SEEN: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());

fn record(d: &mut Delivery) {
    let to = match &d.to {
        Target::Room(r) | Target::User(r) => r.clone(),
    };
    SEEN.lock().unwrap().push((d.from.clone(), to, d.text.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_relay_can_read_every_message_and_who_sends_it_to_whom() {
    exchange(Some(record), &["the launch code is 0000"]).await;
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen, [("alice".to_owned(), "bob".to_owned(), "the launch code is 0000".to_owned())]);
}

fn strip_signature(d: &mut Delivery) {
    d.signed = None;
    d.text = "pay mallory".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_relay_cannot_forge_a_known_sender_unnoticed() {
    let honest = exchange(None, &["hello"]).await;
    let mut peers = Peers::load("relay", None).unwrap();
    assert!(peers.check(&honest[0]).is_trusted(), "first contact remembers alice's key");
    // An unsigned message under alice's name, once her key is remembered,
    // gets the key-change treatment: never silently attributed to her.
    let forged = exchange(Some(strip_signature), &["hello"]).await;
    let status = peers.check(&forged[0]);
    assert!(!status.is_trusted(), "{status:?}");
    // Altering signed text breaks the signature.
    let mut altered = honest[0].clone();
    altered.text = "pay mallory".into();
    assert_eq!(peers.check(&altered), MessageStatus::Invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_relay_can_replay_drop_and_reorder_signed_messages_undetected() {
    // Today's limit (PROTOCOL.md §13.7): signatures carry no sequence, so a
    // recipient accepts an old signed message again, and cannot see a gap
    // or a swapped order.
    let got = exchange(None, &["one", "two", "three"]).await;
    let mut peers = Peers::load("relay", None).unwrap();
    for d in [&got[2], &got[0], &got[0]] {
        assert!(peers.check(d).is_trusted(), "replayed, reordered (and 'two' dropped) yet accepted");
    }
}
