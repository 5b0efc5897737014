//! Helpers shared by the end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs, dead_code)]

use cipherline_e2e::{Change, Conversation, Incoming, Member, Received, Suite};
use cipherline_proto::crypto::sign::IdentityKey;

pub fn key(seed: u8) -> IdentityKey {
    IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap()
}

pub fn member(name: &str, seed: u8, suite: Suite) -> Member {
    Member::new(name, &key(seed), suite).unwrap()
}

/// The message in `incoming`, or a panic.
pub fn text(incoming: Incoming) -> Received {
    match incoming {
        Incoming::Application(received) => received,
        _ => panic!("something else where a message was expected"),
    }
}

/// The change in `incoming`, or a panic.
pub fn change(incoming: Incoming) -> Change {
    match incoming {
        Incoming::Commit(change) => change,
        _ => panic!("something else where a commit was expected"),
    }
}

/// `creator` creates a group and adds each of `others` (one commit,
/// confirmed as if the relay accepted it); all join from the Welcome.
pub fn group(creator: &Member, others: &[&Member]) -> (Conversation, Vec<Conversation>) {
    let mut conv = creator.create().unwrap();
    assert_eq!(conv.epoch(), 0);
    let kps: Vec<Vec<u8>> = others.iter().map(|m| m.key_packages(1).unwrap().remove(0)).collect();
    let pending = conv.add(&kps).unwrap();
    assert_eq!(pending.epoch, 0, "built in epoch 0");
    assert_eq!(conv.epoch(), 0, "not applied before the relay accepts it");
    conv.confirm().unwrap();
    assert_eq!(conv.epoch(), 1);
    let welcome = pending.welcome.unwrap();
    let joined = others.iter().map(|m| m.join(&welcome).unwrap()).collect();
    (conv, joined)
}
