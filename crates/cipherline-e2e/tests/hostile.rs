//! Whatever a peer or the relay sends, nothing panics, and the
//! conversation keeps working afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_e2e::{Conversation, Member, Suite};
use common::{group, member, text};
use proptest::prelude::*;

struct World {
    alice: Member,
    a: Conversation,
    b: Conversation,
    message: Vec<u8>,
    commit: Vec<u8>,
    welcome: Vec<u8>,
    group_info: Vec<u8>,
}

fn world() -> World {
    let alice = member("alice", 1, Suite::Interop);
    let bob = member("bob", 2, Suite::Interop);
    let mut a = alice.create_public().unwrap();
    let pending = a.add(&bob.key_packages(1).unwrap()).unwrap();
    a.confirm().unwrap();
    let welcome = pending.welcome.unwrap();
    let b = bob.join(&welcome).unwrap();
    let message = a.encrypt(b"a message").unwrap();
    let commit = a.update().unwrap().commit;
    a.abandon().unwrap();
    let group_info = a.group_info().unwrap();
    World { alice, a, b, message, commit, welcome, group_info }
}

fn edit(bytes: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (at, value) in edits {
        let i = at % out.len();
        out[i] = *value;
    }
    out.truncate(cut % (out.len() + 1));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_bytes_never_panic_and_the_conversation_goes_on(
        random in proptest::collection::vec(any::<u8>(), 0..2048),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut w = world();
        let _ = w.b.receive(&random);
        let _ = w.b.receive(&edit(&w.message, &edits, cut));
        let _ = w.b.receive(&edit(&w.commit, &edits, cut));
        let carol = member("carol", 3, Suite::Interop);
        let _ = carol.join(&random);
        let _ = carol.join(&edit(&w.welcome, &edits, cut));
        let _ = carol.join_external(&random);
        let _ = carol.join_external(&edit(&w.group_info, &edits, cut));
        let _ = w.alice.load(&random);
        // Bob still reads alice.
        let fresh = w.a.encrypt(b"still working").unwrap();
        prop_assert_eq!(&text(w.b.receive(&fresh).unwrap()).plaintext[..], b"still working");
    }
}

#[test]
fn a_commit_from_the_relay_alone_is_refused() {
    // The relay holds every commit it ever sequenced; replaying an old one,
    // or one from another group, changes nothing.
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob]);
    let mut b = joined.remove(0);
    let first = a.update().unwrap();
    a.confirm().unwrap();
    b.receive(&first.commit).unwrap();
    assert!(b.receive(&first.commit).is_err(), "a replayed commit");
    let (mut other, _) = group(&member("mallory", 9, Suite::XWing), &[&member("bob", 2, Suite::XWing)]);
    let foreign = other.update().unwrap();
    assert!(b.receive(&foreign.commit).is_err(), "a commit of another group");
    assert_eq!(a.epoch(), b.epoch());
    let msg = a.encrypt(b"same epoch").unwrap();
    assert_eq!(&text(b.receive(&msg).unwrap()).plaintext[..], b"same epoch");
}
