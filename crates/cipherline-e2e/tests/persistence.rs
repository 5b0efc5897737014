//! State in the SQLite file: what a member acknowledged survives the
//! process, on both sides of a conversation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;

use cipherline_e2e::{Member, Suite};
use common::{change, key, text};

fn open(path: &Path, name: &str, seed: u8) -> Member {
    Member::open(path, name, &key(seed), Suite::XWing).unwrap()
}

#[test]
fn a_conversation_survives_both_members_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("alice.sqlite3"), dir.path().join("bob.sqlite3"));
    let alice = open(&pa, "alice", 1);
    let bob = open(&pb, "bob", 2);
    // Bob uploads key packages, then restarts before anyone uses them.
    let kps = bob.key_packages(2).unwrap();
    drop(bob);
    let bob = open(&pb, "bob", 2);

    let mut a = alice.create().unwrap();
    let id = a.id().to_vec();
    let pending = a.add(&kps[..1]).unwrap();
    a.confirm().unwrap();
    let mut b = bob.join(&pending.welcome.unwrap()).unwrap();
    let m1 = a.encrypt(b"before the restart").unwrap();
    assert_eq!(&text(b.receive(&m1).unwrap()).plaintext[..], b"before the restart");
    let m2 = a.encrypt(b"sent before, read after").unwrap();

    // Both processes go away (killed: nothing but drop).
    drop((a, b, alice, bob));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for p in [&pa, &pb] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
    }

    let alice = open(&pa, "alice", 1);
    let bob = open(&pb, "bob", 2);
    assert_eq!(alice.groups().unwrap(), vec![id.clone()]);
    assert_eq!(bob.groups().unwrap(), vec![id.clone()]);
    let mut a = alice.load(&id).unwrap().expect("alice's group is stored");
    let mut b = bob.load(&id).unwrap().expect("bob's group is stored");
    assert_eq!((a.epoch(), b.epoch()), (1, 1));
    assert_eq!(&text(b.receive(&m2).unwrap()).plaintext[..], b"sent before, read after");
    assert!(b.receive(&m1).is_err(), "a message read before the restart is still a replay after it");
    let m3 = a.encrypt(b"after the restart").unwrap();
    assert_ne!(m3, m2);
    assert_eq!(&text(b.receive(&m3).unwrap()).plaintext[..], b"after the restart");
    let back = b.encrypt(b"and back").unwrap();
    assert_eq!(text(a.receive(&back).unwrap()).sender.name, "bob");

    // A commit built and sent, then a crash before the relay's answer: the
    // next run can still confirm it.
    let update = b.update().unwrap();
    drop((b, bob));
    let bob = open(&pb, "bob", 2);
    let mut b = bob.load(&id).unwrap().unwrap();
    assert_eq!(b.pending().unwrap(), Some(update.clone()), "the pending commit, to resubmit");
    b.confirm().unwrap();
    assert_eq!(b.pending().unwrap(), None);
    assert_eq!(change(a.receive(&update.commit).unwrap()).committer.name, "bob");
    assert_eq!(a.epoch(), b.epoch());
    let m4 = b.encrypt(b"new epoch").unwrap();
    drop((a, alice));
    let alice = open(&pa, "alice", 1);
    let mut a = alice.load(&id).unwrap().unwrap();
    assert_eq!(&text(a.receive(&m4).unwrap()).plaintext[..], b"new epoch", "a received commit survives too");

    // The second key package, generated before the first restart, still works.
    let mut other = alice.create().unwrap();
    let other_id = other.id().to_vec();
    let p = other.add(&kps[1..]).unwrap();
    drop((other, alice));
    let alice = open(&pa, "alice", 1);
    let mut other = alice.load(&other_id).unwrap().unwrap();
    assert_eq!(other.pending().unwrap().unwrap().welcome, p.welcome, "the Welcome survives too");
    other.confirm().unwrap();
    bob.join(&p.welcome.unwrap()).unwrap();
    assert_eq!(bob.groups().unwrap().len(), 2);

    // Forgetting a group removes it for good.
    bob.forget(&id).unwrap();
    assert!(bob.load(&id).unwrap().is_none());
    drop(bob);
    let bob = open(&pb, "bob", 2);
    assert!(bob.load(&id).unwrap().is_none());
    assert_eq!(bob.groups().unwrap().len(), 1);
}

#[test]
fn an_existing_state_file_is_narrowed_to_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mls.sqlite3");
    std::fs::write(&path, b"").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let alice = open(&path, "alice", 1);
        alice.create().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

/// A state file from the first build of this crate (WAL journal, the
/// bookkeeping table without the pending commit's columns) opens and
/// works.
#[test]
fn a_state_file_from_an_earlier_build_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mls.sqlite3");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).unwrap();
        conn.execute_batch(
            "CREATE TABLE cipherline_leaf (group_id BLOB PRIMARY KEY, since_ms INTEGER NOT NULL,
             sent INTEGER NOT NULL, pending_commit BLOB) WITHOUT ROWID;",
        )
        .unwrap();
    }
    let alice = open(&path, "alice", 1);
    let bob = member_in(dir.path(), "bob", 2);
    let mut a = alice.create().unwrap();
    let pending = a.add(&bob.key_packages(1).unwrap()).unwrap();
    assert_eq!(a.pending().unwrap(), Some(pending.clone()));
    a.confirm().unwrap();
    let mut b = bob.join(&pending.welcome.unwrap()).unwrap();
    let msg = a.encrypt(b"upgraded").unwrap();
    assert_eq!(&text(b.receive(&msg).unwrap()).plaintext[..], b"upgraded");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "out of WAL, whose frames would keep old secrets");
}

fn member_in(dir: &Path, name: &str, seed: u8) -> Member {
    open(&dir.join(format!("{name}.sqlite3")), name, seed)
}
