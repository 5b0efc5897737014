//! End-to-end conversations on MLS: the relay carries only ciphertext, and
//! what it alters, replays or withholds is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cipherline_e2e::{Conversation, E2eError, Member, Suite};
use cipherline_proto::crypto::sign::IdentityKey;

fn member(name: &str, seed: u8, suite: Suite) -> Member {
    Member::new(name, &IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap(), suite).unwrap()
}

/// Alice starts a conversation with each of `others`; all join.
fn group(others: &[&Member], alice: &Member) -> (Conversation, Vec<Conversation>) {
    let kps: Vec<Vec<u8>> = others.iter().map(|m| m.key_package().unwrap()).collect();
    let (conv, welcome) = alice.start(&kps).unwrap();
    let joined = others.iter().map(|m| m.join(&welcome).unwrap()).collect();
    (conv, joined)
}

#[test]
fn two_members_talk_end_to_end_and_the_sender_is_its_identity_key() {
    for suite in [Suite::XWing, Suite::Interop] {
        let alice = member("alice", 1, suite);
        let bob = member("bob", 2, suite);
        let (mut a, mut joined) = group(&[&bob], &alice);
        let mut b = joined.remove(0);
        let marker = b"the marker 7f3a9c that only bob may read";
        let wire = a.encrypt(marker).unwrap();
        assert!(!wire.windows(marker.len()).any(|w| w == marker), "the relay sees only ciphertext");
        let got = b.receive(&wire).unwrap().expect("an application message");
        assert_eq!(&got.plaintext[..], marker);
        assert_eq!(got.sender.name, "alice");
        // The credential's key is alice's cipherline identity key.
        let spki = IdentityKey::ed25519_from_seed(&[1; 32]).unwrap().public_key().spki().to_vec();
        assert_eq!(&spki[spki.len() - 32..], &got.sender.key);
        // And back.
        let reply = b.encrypt(b"hi alice").unwrap();
        assert_eq!(a.receive(&reply).unwrap().unwrap().sender.name, "bob");
        let names: Vec<String> = a.members().unwrap().into_iter().map(|(_, id)| id.name).collect();
        assert_eq!(names, vec!["alice", "bob"]);
    }
}

#[test]
fn an_altered_or_replayed_message_is_refused() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, mut joined) = group(&[&bob], &alice);
    let mut b = joined.remove(0);
    // Each alteration on a fresh message: a refused message may take its
    // decryption key with it (mls-rs consumes the key before the AEAD
    // check), which a relay could achieve by dropping it anyway.
    for at in [0.5, 1.0] {
        let wire = a.encrypt(b"pay 10 to carol").unwrap();
        let mut altered = wire.clone();
        let i = ((wire.len() - 1) as f64 * at) as usize;
        altered[i] ^= 1;
        assert!(b.receive(&altered).is_err(), "a flipped bit at {i} is refused");
    }
    let wire = a.encrypt(b"pay 10 to carol").unwrap();
    assert!(b.receive(&wire[..wire.len() - 1]).is_err(), "a truncated message is refused");
    assert_eq!(&b.receive(&wire).unwrap().unwrap().plaintext[..], b"pay 10 to carol");
    assert!(matches!(b.receive(&wire), Err(E2eError::Mls(_))), "a replay is refused");
}

#[test]
fn a_removed_member_cannot_read_what_follows() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let carol = member("carol", 3, Suite::XWing);
    let (mut a, mut joined) = group(&[&bob, &carol], &alice);
    let mut c = joined.pop().unwrap();
    let mut b = joined.pop().unwrap();
    let before = a.encrypt(b"everyone").unwrap();
    assert_eq!(&c.receive(&before).unwrap().unwrap().plaintext[..], b"everyone");
    let commit = a.remove("carol").unwrap();
    assert!(b.receive(&commit).unwrap().is_none(), "bob applies the commit");
    assert_eq!(b.epoch(), a.epoch());
    let _ = c.receive(&commit);
    let after = a.encrypt(b"not for carol").unwrap();
    assert_eq!(&b.receive(&after).unwrap().unwrap().plaintext[..], b"not for carol");
    assert!(c.receive(&after).is_err(), "the removed member decrypts nothing new");
}

#[test]
fn a_name_outside_the_grammar_is_refused() {
    let key = IdentityKey::ed25519_from_seed(&[4; 32]).unwrap();
    assert!(matches!(Member::new("bad name", &key, Suite::XWing), Err(E2eError::InvalidName)));
    assert!(matches!(Member::new("", &key, Suite::XWing), Err(E2eError::InvalidName)));
}

#[test]
fn the_relay_reads_the_identity_of_a_key_package_and_refuses_a_tampered_one() {
    let alice = member("alice", 1, Suite::XWing);
    let kp = alice.key_package().unwrap();
    let id = cipherline_e2e::inspect_key_package(&kp).unwrap();
    assert_eq!(id.name, "alice");
    assert_eq!(&id.key, &alice.identity().key);
    // Flip a byte of the signature at the end: refused.
    let mut bad = kp.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(cipherline_e2e::inspect_key_package(&bad).is_err());
    assert!(cipherline_e2e::inspect_key_package(b"not an MLS message").is_err());
    assert!(cipherline_e2e::inspect_key_package(&[]).is_err());
}
