//! End-to-end conversations on MLS: the relay carries only ciphertext, and
//! what it alters, replays or withholds is refused; commits are built,
//! then confirmed or abandoned as the relay sequences them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_e2e::{E2eError, Member, Suite, UPDATE_AFTER_MESSAGES, UPDATE_AFTER_MS};
use cipherline_proto::crypto::sign::IdentityKey;
use common::{change, group, member, text};

#[test]
fn two_members_talk_end_to_end_and_the_sender_is_its_identity_key() {
    for suite in [Suite::XWing, Suite::Interop] {
        let alice = member("alice", 1, suite);
        let bob = member("bob", 2, suite);
        let (mut a, mut joined) = group(&alice, &[&bob]);
        let mut b = joined.remove(0);
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16, "a random 16-byte group id");
        let marker = b"the marker 7f3a9c that only bob may read";
        let wire = a.encrypt(marker).unwrap();
        assert!(!wire.windows(marker.len()).any(|w| w == marker), "the relay sees only ciphertext");
        let got = text(b.receive(&wire).unwrap());
        assert_eq!(&got.plaintext[..], marker);
        assert_eq!(got.sender.name, "alice");
        // The credential's key is alice's cipherline identity key.
        let spki = IdentityKey::ed25519_from_seed(&[1; 32]).unwrap().public_key().spki().to_vec();
        assert_eq!(&spki[spki.len() - 32..], &got.sender.key);
        // And back.
        let reply = b.encrypt(b"hi alice").unwrap();
        assert_eq!(text(a.receive(&reply).unwrap()).sender.name, "bob");
        let names: Vec<String> = a.members().unwrap().into_iter().map(|(_, id)| id.name).collect();
        assert_eq!(names, vec!["alice", "bob"]);
        // The relay echoing our own message back is recognised, not shown.
        assert!(matches!(a.receive(&reply), Err(E2eError::Mls(_))), "a replay is refused");
        let mine = a.encrypt(b"mine").unwrap();
        assert!(matches!(a.receive(&mine), Err(E2eError::FromSelf)));
    }
}

#[test]
fn an_altered_or_replayed_message_is_refused() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob]);
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
    assert_eq!(&text(b.receive(&wire).unwrap()).plaintext[..], b"pay 10 to carol");
    assert!(matches!(b.receive(&wire), Err(E2eError::Mls(_))), "a replay is refused");
}

#[test]
fn a_removed_member_cannot_read_what_follows() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let carol = member("carol", 3, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob, &carol]);
    let mut c = joined.pop().unwrap();
    let mut b = joined.pop().unwrap();
    let before = a.encrypt(b"everyone").unwrap();
    assert_eq!(&text(c.receive(&before).unwrap()).plaintext[..], b"everyone");
    // Names are compared folded.
    let pending = a.remove(&["Carol"]).unwrap();
    assert!(pending.welcome.is_none());
    assert!(matches!(a.remove(&["dave"]), Err(E2eError::NoSuchMember(_))));
    a.confirm().unwrap();
    let seen = change(b.receive(&pending.commit).unwrap());
    assert_eq!(seen.removed.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["carol"]);
    assert_eq!(seen.committer.name, "alice");
    assert!(!seen.removed_me);
    assert_eq!(b.epoch(), a.epoch());
    // Carol learns she was removed.
    assert!(change(c.receive(&pending.commit).unwrap()).removed_me);
    let after = a.encrypt(b"not for carol").unwrap();
    assert_eq!(&text(b.receive(&after).unwrap()).plaintext[..], b"not for carol");
    assert!(c.receive(&after).is_err(), "the removed member decrypts nothing new");
    let names: Vec<String> = b.members().unwrap().into_iter().map(|(_, id)| id.name).collect();
    assert_eq!(names, ["alice", "bob"]);
}

#[test]
fn a_name_outside_the_grammar_is_refused() {
    let key = IdentityKey::ed25519_from_seed(&[4; 32]).unwrap();
    assert!(matches!(Member::new("bad name", &key, Suite::XWing), Err(E2eError::InvalidName)));
    assert!(matches!(Member::new("", &key, Suite::XWing), Err(E2eError::InvalidName)));
}

/// Two members commit in the same epoch; the relay takes bob's; carol
/// abandons hers, catches up with the winner and retries; everyone ends
/// in the same epoch and reads everyone.
#[test]
fn two_commits_in_one_epoch_one_wins_the_other_retries() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let carol = member("carol", 3, Suite::XWing);
    let dave = member("dave", 4, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob, &carol]);
    let mut c = joined.pop().unwrap();
    let mut b = joined.pop().unwrap();
    let epoch = a.epoch();

    let bobs = b.update().unwrap();
    let dave_kp = dave.key_packages(1).unwrap().remove(0);
    let carols = c.add(std::slice::from_ref(&dave_kp)).unwrap();
    assert_eq!((bobs.epoch, carols.epoch), (epoch, epoch), "both built in the same epoch");

    assert_eq!(c.pending().unwrap(), Some(carols.clone()));
    // The relay accepts bob's, refuses carol's.
    b.confirm().unwrap();
    assert!(matches!(b.confirm(), Err(E2eError::NoPendingCommit)));
    assert_eq!(change(a.receive(&bobs.commit).unwrap()).committer.name, "bob");
    c.abandon().unwrap();
    assert_eq!(c.pending().unwrap(), None);
    assert_eq!(c.epoch(), epoch, "an abandoned commit leaves the epoch alone");
    let winner = change(c.receive(&bobs.commit).unwrap());
    assert_eq!((winner.epoch, winner.committer.name.as_str()), (epoch + 1, "bob"));
    assert!(winner.added.is_empty() && winner.removed.is_empty(), "an update adds and removes nobody");

    // Carol retries in the new epoch; the relay accepts it and echoes it
    // back to her, which confirms it.
    let retry = c.add(std::slice::from_ref(&dave_kp)).unwrap();
    assert_eq!(retry.epoch, epoch + 1);
    let own = change(c.receive(&retry.commit).unwrap());
    assert_eq!(own.committer.name, "carol");
    assert_eq!(own.added.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["dave"]);
    for conv in [&mut a, &mut b] {
        let seen = change(conv.receive(&retry.commit).unwrap());
        assert_eq!(seen.added[0].name, "dave");
    }
    let mut d = dave.join(&retry.welcome.unwrap()).unwrap();
    let epochs = [a.epoch(), b.epoch(), c.epoch(), d.epoch()];
    assert_eq!(epochs, [epoch + 2; 4], "all agree");
    let hello = d.encrypt(b"hello from dave").unwrap();
    for conv in [&mut a, &mut b, &mut c] {
        let got = text(conv.receive(&hello).unwrap());
        assert_eq!((got.sender.name.as_str(), &got.plaintext[..]), ("dave", &b"hello from dave"[..]));
    }
}

/// A member who loses the race but never calls abandon still catches up:
/// receiving the winner drops its own commit.
#[test]
fn receiving_the_winner_drops_a_pending_commit() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob]);
    let mut b = joined.remove(0);
    let alices = a.update().unwrap();
    let _bobs = b.update().unwrap();
    a.confirm().unwrap();
    change(b.receive(&alices.commit).unwrap());
    assert!(matches!(b.confirm(), Err(E2eError::NoPendingCommit)), "the losing commit is gone");
    let msg = b.encrypt(b"still here").unwrap();
    assert_eq!(&text(a.receive(&msg).unwrap()).plaintext[..], b"still here");
}

#[test]
fn anyone_joins_a_public_group_from_its_group_info_a_private_group_gives_none() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let eve = member("eve", 5, Suite::XWing);
    let mut a = alice.create_public().unwrap();
    assert!(a.is_public());
    let pending = a.add(&bob.key_packages(1).unwrap()).unwrap();
    let published = pending.group_info.clone().expect("a public group's commit carries the next GroupInfo");
    a.confirm().unwrap();
    let mut b = bob.join(&pending.welcome.unwrap()).unwrap();
    assert!(b.is_public());

    // Eve joins from the GroupInfo the relay published with the commit.
    let (mut e, joined) = eve.join_external(&published).unwrap();
    assert_eq!(joined.epoch, 1, "built in the GroupInfo's epoch");
    assert!(joined.welcome.is_none());
    assert!(joined.group_info.is_some(), "the next GroupInfo for the relay to publish");
    for conv in [&mut a, &mut b] {
        let seen = change(conv.receive(&joined.commit).unwrap());
        assert_eq!(seen.committer.name, "eve");
        assert_eq!(seen.added.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["eve"]);
    }
    assert_eq!([a.epoch(), b.epoch(), e.epoch()], [2, 2, 2]);
    let hi = e.encrypt(b"hi from eve").unwrap();
    assert_eq!(text(a.receive(&hi).unwrap()).sender.name, "eve");
    assert_eq!(text(b.receive(&hi).unwrap()).sender.name, "eve");

    // A GroupInfo is good for one epoch: a second joiner with the old one
    // is refused by the members; she forgets it and retries with a newer one.
    let frank = member("frank", 6, Suite::XWing);
    let (stale, stale_commit) = frank.join_external(&published).unwrap();
    assert!(a.receive(&stale_commit.commit).is_err(), "a commit for an old epoch is refused");
    frank.forget(stale.id()).unwrap();
    let (_f, fresh) = frank.join_external(&a.group_info().unwrap()).unwrap();
    assert_eq!(change(a.receive(&fresh.commit).unwrap()).committer.name, "frank");

    // A private group has no GroupInfo to give.
    let private = alice.create().unwrap();
    assert!(!private.is_public());
    assert!(matches!(private.group_info(), Err(E2eError::NotPublic)));
}

#[test]
fn a_last_resort_key_package_serves_twice_a_one_time_one_once() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let carol = member("carol", 3, Suite::XWing);
    let last = bob.last_resort_key_package().unwrap();
    for creator in [&alice, &carol] {
        let mut conv = creator.create().unwrap();
        let pending = conv.add(std::slice::from_ref(&last)).unwrap();
        conv.confirm().unwrap();
        let mut b = bob.join(&pending.welcome.unwrap()).unwrap();
        let msg = conv.encrypt(b"welcome bob").unwrap();
        assert_eq!(&text(b.receive(&msg).unwrap()).plaintext[..], b"welcome bob");
    }
    assert_eq!(bob.groups().unwrap().len(), 2);

    let once = bob.key_packages(1).unwrap().remove(0);
    let mut first = alice.create().unwrap();
    let w1 = first.add(std::slice::from_ref(&once)).unwrap().welcome.unwrap();
    let mut second = carol.create().unwrap();
    let w2 = second.add(std::slice::from_ref(&once)).unwrap().welcome.unwrap();
    bob.join(&w1).unwrap();
    assert!(bob.join(&w2).is_err(), "a one-time key package's secret is gone after its first use");
}

#[test]
fn an_update_is_due_after_100_messages_or_24_hours_and_a_confirmed_commit_resets_it() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob]);
    let mut b = joined.remove(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(!a.needs_update(now));
    assert!(!b.needs_update(now));
    assert!(a.needs_update(now + UPDATE_AFTER_MS + 60_000), "24 hours later");
    assert!(b.needs_update(now + UPDATE_AFTER_MS + 60_000), "also for a joiner");
    for i in 0..UPDATE_AFTER_MESSAGES {
        assert!(!a.needs_update(now), "not after {i} messages");
        let msg = a.encrypt(b"tick").unwrap();
        text(b.receive(&msg).unwrap());
    }
    assert!(a.needs_update(now), "after {UPDATE_AFTER_MESSAGES} messages");
    assert!(!b.needs_update(now), "received messages do not count");
    let pending = a.update().unwrap();
    assert!(a.needs_update(now), "not reset before the relay accepts the update");
    a.confirm().unwrap();
    assert!(!a.needs_update(now), "reset by the confirmed update");
    assert!(!a.needs_update(now + UPDATE_AFTER_MS / 2));
    change(b.receive(&pending.commit).unwrap());
    // An add-only commit has no path and renews nothing; a removal has one
    // and resets the counters too.
    for _ in 0..UPDATE_AFTER_MESSAGES {
        b.encrypt(b"tock").unwrap();
    }
    assert!(b.needs_update(now));
    let carol = member("carol", 3, Suite::XWing);
    b.add(&carol.key_packages(1).unwrap()).unwrap();
    b.confirm().unwrap();
    assert!(b.needs_update(now), "an add renews no leaf key");
    b.remove(&["carol"]).unwrap();
    b.confirm().unwrap();
    assert!(!b.needs_update(now), "a removal does");
}

/// Carol is offline through several commits and messages; she gets them
/// in order from the store and ends where the others are. Out of order,
/// a commit of a later epoch is refused without harm.
#[test]
fn a_member_offline_through_several_commits_catches_up_in_order() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let carol = member("carol", 3, Suite::XWing);
    let dave = member("dave", 4, Suite::XWing);
    let (mut a, mut joined) = group(&alice, &[&bob, &carol]);
    let mut c = joined.pop().unwrap();
    let mut b = joined.pop().unwrap();
    let mut queued = Vec::new(); // what the relay stores for carol

    let add_dave = a.add(&dave.key_packages(1).unwrap()).unwrap();
    a.confirm().unwrap();
    change(b.receive(&add_dave.commit).unwrap());
    let mut d = dave.join(&add_dave.welcome.unwrap()).unwrap();
    queued.push(add_dave.commit);
    queued.push(a.encrypt(b"one").unwrap());
    let update = b.update().unwrap();
    b.confirm().unwrap();
    change(a.receive(&update.commit).unwrap());
    change(d.receive(&update.commit).unwrap());
    queued.push(update.commit);
    queued.push(d.encrypt(b"two").unwrap());
    let remove = d.remove(&["alice"]).unwrap();
    d.confirm().unwrap();
    change(b.receive(&remove.commit).unwrap());
    queued.push(remove.commit);
    queued.push(b.encrypt(b"three").unwrap());

    assert!(c.receive(&queued[2]).is_err(), "a commit from a later epoch is refused");
    let mut said = Vec::new();
    let mut changes = Vec::new();
    for wire in &queued {
        match c.receive(wire).unwrap() {
            cipherline_e2e::Incoming::Application(m) => said.push(String::from_utf8(m.plaintext.to_vec()).unwrap()),
            cipherline_e2e::Incoming::Commit(ch) => changes.push(ch),
        }
    }
    assert_eq!(said, ["one", "two", "three"]);
    assert_eq!(changes.iter().map(|ch| ch.epoch).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(changes[2].removed[0].name, "alice");
    assert_eq!([b.epoch(), c.epoch(), d.epoch()], [4, 4, 4]);
    let names: Vec<String> = c.members().unwrap().into_iter().map(|(_, id)| id.name).collect();
    assert_eq!(names, ["bob", "carol", "dave"], "alice is gone");
}

/// A group knows a member by its folded name: a second "Bob", with
/// another key or another spelling, cannot be added beside bob.
#[test]
fn a_second_member_with_the_same_folded_name_is_refused() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, _joined) = group(&alice, &[&bob]);
    for impostor in [member("BOB", 9, Suite::XWing), member("bob", 10, Suite::XWing)] {
        assert!(a.add(&impostor.key_packages(1).unwrap()).is_err(), "{}", impostor.identity().name);
    }
    // Real newcomers still get in.
    a.add(&member("carol", 3, Suite::XWing).key_packages(1).unwrap()).unwrap();
    a.confirm().unwrap();
}

#[test]
fn members_and_conversations_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Member>();
    send::<cipherline_e2e::Conversation>();
}

#[test]
fn start_makes_a_group_with_others_in_one_call() {
    let alice = member("alice", 1, Suite::XWing);
    let bob = member("bob", 2, Suite::XWing);
    let (mut a, welcome) = alice.start(&bob.key_packages(1).unwrap()).unwrap();
    assert_eq!(a.epoch(), 1);
    assert_eq!(a.pending().unwrap(), None);
    let mut b = bob.join(&welcome).unwrap();
    let msg = a.encrypt(b"started").unwrap();
    assert_eq!(&text(b.receive(&msg).unwrap()).plaintext[..], b"started");
}
