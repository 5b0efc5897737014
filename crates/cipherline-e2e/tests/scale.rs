//! A 100-member group built in one process: added in batches, a message
//! everyone reads, a removal everyone applies, a message the removed
//! member cannot read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_e2e::{Conversation, Suite};
use common::{change, member, text};

const MEMBERS: usize = 100;
const BATCH: usize = 33;

#[test]
fn a_100_member_group_talks_and_removes_one() {
    let members: Vec<_> = (0..MEMBERS).map(|i| member(&format!("user{i:03}"), i as u8, Suite::XWing)).collect();
    let mut convs: Vec<Conversation> = vec![members[0].create().unwrap()];
    for batch in members[1..].chunks(BATCH) {
        let kps: Vec<Vec<u8>> = batch.iter().map(|m| m.key_packages(1).unwrap().remove(0)).collect();
        let pending = convs[0].add(&kps).unwrap();
        convs[0].confirm().unwrap();
        for conv in &mut convs[1..] {
            assert_eq!(change(conv.receive(&pending.commit).unwrap()).added.len(), batch.len());
        }
        let welcome = pending.welcome.unwrap();
        for m in batch {
            convs.push(m.join(&welcome).unwrap());
        }
    }
    assert_eq!(convs[0].members().unwrap().len(), MEMBERS);
    let epoch = convs[0].epoch();
    assert!(convs.iter().all(|c| c.epoch() == epoch));

    let hello = convs[0].encrypt(b"hello, hundred").unwrap();
    for conv in &mut convs[1..] {
        let got = text(conv.receive(&hello).unwrap());
        assert_eq!((got.sender.name.as_str(), &got.plaintext[..]), ("user000", &b"hello, hundred"[..]));
    }

    // A member other than the creator removes user007.
    let pending = convs[50].remove(&["user007"]).unwrap();
    convs[50].confirm().unwrap();
    let mut removed = convs.remove(7);
    assert!(change(removed.receive(&pending.commit).unwrap()).removed_me);
    for (i, conv) in convs.iter_mut().enumerate() {
        if i != 49 {
            // convs[50] before the removal is convs[49] now: the committer.
            let seen = change(conv.receive(&pending.commit).unwrap());
            assert_eq!(seen.removed[0].name, "user007");
        }
    }
    assert!(convs.iter().all(|c| c.epoch() == epoch + 1));
    let after = convs[98].encrypt(b"after the removal").unwrap();
    for (i, conv) in convs.iter_mut().enumerate() {
        if i != 98 {
            assert_eq!(&text(conv.receive(&after).unwrap()).plaintext[..], b"after the removal");
        }
    }
    assert!(removed.receive(&after).is_err(), "the removed member reads nothing after its removal");
}
