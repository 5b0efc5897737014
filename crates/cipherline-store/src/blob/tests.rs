#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::*;
use crate::SqliteOptions;

const QUOTA: BlobQuota = BlobQuota { per_owner: 1000, total: 1500, per_owner_blobs: 100, total_blobs: 100 };

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("store.sqlite3"), SqliteOptions::default()).await.unwrap()
}

fn new(id: u8, owner: &str, size: u64, created_ms: u64, waiting: &[&str]) -> NewBlob {
    NewBlob {
        id: [id; 16],
        owner: owner.into(),
        group: b"group".to_vec(),
        size,
        created_ms,
        waiting: waiting.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn file(dir: &Path, id: u8) -> PathBuf {
    dir.join(BLOB_DIR).join(hex(&[id; 16]))
}

async fn create(store: &SqliteStore, blob: NewBlob) -> BlobRecord {
    match store.blob_create(blob, QUOTA).await.unwrap() {
        BlobCreated::Created(rec) => rec,
        other => panic!("expected Created, got {other:?}"),
    }
}

#[test]
fn ids_are_file_names_of_32_lowercase_hex_digits() {
    let id: BlobId = [0xab, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xff];
    let name = hex(&id);
    assert_eq!(name, "ab000102030405060708090a0b0c0dff");
    assert_eq!(parse_hex(&name), Some(id));
    assert_eq!(parse_hex(&name.to_uppercase()), None);
    assert_eq!(parse_hex(&name[1..]), None);
    assert_eq!(parse_hex(&format!("{name}0")), None);
    assert_eq!(parse_hex("zz000102030405060708090a0b0c0dff"), None);
    assert_eq!(parse_hex("+b000102030405060708090a0b0c0dff"), None);
}

#[tokio::test]
async fn pieces_append_in_order_only_by_the_owner_and_the_file_holds_exactly_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let rec = create(&store, new(1, "alice", 10, 5, &["bob", "bob", "carol"])).await;
    assert_eq!((rec.stored, rec.complete, rec.waiting.clone()), (0, false, vec!["bob".into(), "carol".into()]));
    assert_eq!(
        store.blob_append([1; 16], "alice", 0, b"abcd").await.unwrap(),
        BlobWrite::Written { stored: 4, size: 10 }
    );
    assert_eq!(store.blob_append([1; 16], "bob", 4, b"x").await.unwrap(), BlobWrite::NotOwner);
    assert_eq!(store.blob_append([1; 16], "alice", 3, b"x").await.unwrap(), BlobWrite::WrongOffset { stored: 4 });
    assert_eq!(store.blob_append([1; 16], "alice", 5, b"x").await.unwrap(), BlobWrite::WrongOffset { stored: 4 });
    assert_eq!(
        store.blob_append([1; 16], "alice", 4, b"efghijk").await.unwrap(),
        BlobWrite::TooLong { stored: 4, size: 10 }
    );
    assert_eq!(store.blob_append([2; 16], "alice", 0, b"x").await.unwrap(), BlobWrite::NoBlob);
    assert!(matches!(store.blob_finish([1; 16]).await, Err(StoreError::BlobIncomplete { stored: 4, size: 10 })));
    let read = store.blob_read([1; 16], 1, 100).await.unwrap().unwrap();
    assert_eq!((read.data.as_slice(), read.stored, read.complete), (&b"bcd"[..], 4, false));
    assert_eq!(
        store.blob_append([1; 16], "alice", 4, b"efghij").await.unwrap(),
        BlobWrite::Written { stored: 10, size: 10 }
    );
    let BlobFinished::Complete(rec) = store.blob_finish([1; 16]).await.unwrap() else { panic!() };
    assert!(rec.complete && rec.stored == 10);
    assert_eq!(std::fs::read(file(dir.path(), 1)).unwrap(), b"abcdefghij");
    // Complete: nothing more goes in, finishing again changes nothing.
    assert_eq!(
        store.blob_append([1; 16], "alice", 10, b"k").await.unwrap(),
        BlobWrite::TooLong { stored: 10, size: 10 }
    );
    assert!(matches!(store.blob_finish([1; 16]).await.unwrap(), BlobFinished::Complete(_)));
    let read = store.blob_read([1; 16], 2, 3).await.unwrap().unwrap();
    assert_eq!((read.data.as_slice(), read.complete), (&b"cde"[..], true));
    assert!(store.blob_read([1; 16], 10, 3).await.unwrap().unwrap().data.is_empty());
    assert!(store.blob_read([1; 16], 99, 3).await.unwrap().unwrap().data.is_empty());
    assert_eq!(store.blob_read([9; 16], 0, 3).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn quotas_count_full_sizes_per_owner_and_in_all_and_refusals_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    create(&store, new(1, "alice", 600, 1, &[])).await;
    let over = store.blob_create(new(2, "alice", 401, 1, &[]), QUOTA).await.unwrap();
    assert_eq!(over, BlobCreated::OverQuota { scope: QuotaScope::Owner, used: 600, limit: 1000 });
    create(&store, new(2, "alice", 400, 1, &[])).await;
    create(&store, new(3, "bob", 500, 1, &[])).await;
    let over = store.blob_create(new(4, "carol", 1, 1, &[]), QUOTA).await.unwrap();
    assert_eq!(over, BlobCreated::OverQuota { scope: QuotaScope::Total, used: 1500, limit: 1500 });
    assert_eq!(store.blob_get([4; 16]).await.unwrap(), None);
    let (mine, all) = store.blob_usage("alice").await.unwrap();
    assert_eq!((mine, all), (BlobUsage { blobs: 2, bytes: 1000 }, BlobUsage { blobs: 3, bytes: 1500 }));
    // An existing id is reported, not created again or counted twice.
    let BlobCreated::Exists(rec) = store.blob_create(new(3, "mallory", 5, 1, &[]), QUOTA).await.unwrap() else {
        panic!()
    };
    assert_eq!((rec.owner.as_str(), rec.size), ("bob", 500));
    // Deleting frees the quota.
    assert!(store.blob_delete([1; 16]).await.unwrap().is_some());
    assert!(store.blob_delete([1; 16]).await.unwrap().is_none());
    assert_eq!(store.blob_usage("alice").await.unwrap().0, BlobUsage { blobs: 1, bytes: 400 });
    create(&store, new(4, "carol", 600, 1, &[])).await;
    store.close().await;
}

#[tokio::test]
async fn after_a_restart_stored_is_the_file_length_and_the_upload_continues() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    create(&store, new(1, "alice", 8, 1, &["bob"])).await;
    store.blob_append([1; 16], "alice", 0, b"abc").await.unwrap();
    store.close().await;

    let store = open(dir.path()).await;
    let rec = store.blob_get([1; 16]).await.unwrap().unwrap();
    assert_eq!((rec.stored, rec.complete, rec.waiting), (3, false, vec!["bob".to_owned()]));
    assert_eq!(store.blob_append([1; 16], "alice", 0, b"x").await.unwrap(), BlobWrite::WrongOffset { stored: 3 });
    store.blob_append([1; 16], "alice", 3, b"defgh").await.unwrap();
    assert!(matches!(store.blob_finish([1; 16]).await.unwrap(), BlobFinished::Complete(_)));
    store.close().await;

    let store = open(dir.path()).await;
    let rec = store.blob_get([1; 16]).await.unwrap().unwrap();
    assert_eq!((rec.stored, rec.complete), (8, true));
    assert_eq!(store.blob_read([1; 16], 0, 100).await.unwrap().unwrap().data, b"abcdefgh");
    store.close().await;
}

#[tokio::test]
async fn open_removes_orphan_files_cuts_long_ones_drops_lost_blobs_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    create(&store, new(1, "alice", 4, 1, &[])).await;
    create(&store, new(2, "alice", 4, 1, &[])).await;
    for id in [1, 2] {
        store.blob_append([id; 16], "alice", 0, b"abcd").await.unwrap();
        store.blob_finish([id; 16]).await.unwrap();
    }
    create(&store, new(3, "alice", 4, 1, &[])).await;
    store.close().await;
    // A file whose record is gone, a complete blob whose file is gone, an
    // incomplete one whose file holds more than its size.
    std::fs::write(file(dir.path(), 7), b"orphan").unwrap();
    std::fs::remove_file(file(dir.path(), 2)).unwrap();
    std::fs::write(file(dir.path(), 3), b"abcdefg").unwrap();

    let store = open(dir.path()).await;
    assert!(!file(dir.path(), 7).exists(), "an orphan file is removed");
    assert_eq!(store.blob_get([2; 16]).await.unwrap(), None, "a complete blob without its bytes is dropped");
    assert_eq!(store.blob_usage("alice").await.unwrap().0, BlobUsage { blobs: 2, bytes: 8 });
    assert_eq!(store.blob_get([3; 16]).await.unwrap().unwrap().stored, 4);
    assert_eq!(std::fs::read(file(dir.path(), 3)).unwrap(), b"abcd");
    assert_eq!(store.blob_read([1; 16], 0, 100).await.unwrap().unwrap().data, b"abcd");
    store.close().await;

    std::fs::write(dir.path().join(BLOB_DIR).join("notes.txt"), b"x").unwrap();
    let e = SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap_err();
    assert!(matches!(e, StoreError::Unusable { .. }), "{e}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
}

#[tokio::test]
async fn a_complete_blob_goes_when_the_last_waiting_member_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    create(&store, new(1, "alice", 2, 1, &["bob", "carol"])).await;
    store.blob_append([1; 16], "alice", 0, b"hi").await.unwrap();
    let MemberDone::Kept(rec) = store.blob_member_done([1; 16], "bob").await.unwrap() else { panic!() };
    assert_eq!((rec.waiting, rec.stored), (vec!["carol".to_owned()], 2));
    store.blob_finish([1; 16]).await.unwrap();
    // Someone not waiting changes nothing.
    assert!(matches!(store.blob_member_done([1; 16], "dave").await.unwrap(), MemberDone::Kept(_)));
    assert!(matches!(store.blob_member_done([1; 16], "carol").await.unwrap(), MemberDone::Deleted(_)));
    assert_eq!(store.blob_get([1; 16]).await.unwrap(), None);
    assert!(!file(dir.path(), 1).exists());
    assert_eq!(store.blob_member_done([1; 16], "carol").await.unwrap(), MemberDone::NoBlob);
    assert_eq!(store.blob_usage("alice").await.unwrap().1, BlobUsage::default());

    // Everyone gave up before it was complete: finishing deletes it.
    create(&store, new(2, "alice", 2, 1, &["bob"])).await;
    store.blob_append([2; 16], "alice", 0, b"hi").await.unwrap();
    assert!(matches!(store.blob_member_done([2; 16], "bob").await.unwrap(), MemberDone::Kept(_)));
    assert!(matches!(store.blob_finish([2; 16]).await.unwrap(), BlobFinished::Deleted(_)));
    assert!(!file(dir.path(), 2).exists());
    // Nobody was waiting in the first place: it stays.
    create(&store, new(3, "alice", 2, 1, &[])).await;
    store.blob_append([3; 16], "alice", 0, b"hi").await.unwrap();
    assert!(matches!(store.blob_finish([3; 16]).await.unwrap(), BlobFinished::Complete(_)));
    store.close().await;
}

#[tokio::test]
async fn expiry_deletes_old_blobs_and_their_files_complete_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for (id, created) in [(1u8, 100u64), (2, 200), (3, 300)] {
        create(&store, new(id, "alice", 2, created, &["bob"])).await;
        store.blob_append([id; 16], "alice", 0, b"x").await.unwrap();
    }
    store.blob_append([1; 16], "alice", 1, b"y").await.unwrap();
    store.blob_finish([1; 16]).await.unwrap();
    let expired = store.blob_expire(300, 1).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id[0]).collect::<Vec<_>>(), vec![1], "oldest first, at most max");
    assert!(expired[0].complete);
    let expired = store.blob_expire(300, 10).await.unwrap();
    assert_eq!(expired.iter().map(|r| r.id[0]).collect::<Vec<_>>(), vec![2]);
    assert!(!file(dir.path(), 1).exists() && !file(dir.path(), 2).exists() && file(dir.path(), 3).exists());
    assert_eq!(store.blob_append([2; 16], "alice", 1, b"y").await.unwrap(), BlobWrite::NoBlob);
    assert_eq!(store.blob_usage("alice").await.unwrap().0, BlobUsage { blobs: 1, bytes: 2 });
    store.close().await;
}

#[tokio::test]
async fn many_tiny_blobs_are_bounded_per_owner_and_in_all_and_deleting_or_expiring_frees_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let quota = BlobQuota { per_owner: u64::MAX, total: u64::MAX, per_owner_blobs: 3, total_blobs: 5 };
    for id in 1..=3 {
        assert!(matches!(
            store.blob_create(new(id, "alice", 16, 1, &[]), quota).await.unwrap(),
            BlobCreated::Created(_)
        ));
    }
    let over = store.blob_create(new(4, "alice", 16, 1, &[]), quota).await.unwrap();
    assert_eq!(over, BlobCreated::OverQuota { scope: QuotaScope::OwnerBlobs, used: 3, limit: 3 });
    assert_eq!(store.blob_get([4; 16]).await.unwrap(), None, "nothing kept");
    assert!(matches!(store.blob_create(new(5, "bob", 16, 2, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    assert!(matches!(store.blob_create(new(6, "bob", 16, 2, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    let over = store.blob_create(new(7, "carol", 16, 2, &[]), quota).await.unwrap();
    assert_eq!(over, BlobCreated::OverQuota { scope: QuotaScope::TotalBlobs, used: 5, limit: 5 });
    // A deletion frees one for its owner and in all.
    assert!(store.blob_delete([1; 16]).await.unwrap().is_some());
    assert!(matches!(store.blob_create(new(4, "alice", 16, 3, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    // Expiry frees them too, and the counts are right afterwards.
    assert_eq!(store.blob_expire(2, 100).await.unwrap().len(), 2, "alice's two blobs of time 1");
    let (mine, all) = store.blob_usage("alice").await.unwrap();
    assert_eq!((mine, all), (BlobUsage { blobs: 1, bytes: 16 }, BlobUsage { blobs: 3, bytes: 48 }));
    assert!(matches!(store.blob_create(new(7, "carol", 16, 3, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    // The counts survive a restart (they are the records').
    store.close().await;
    let store = open(dir.path()).await;
    let (mine, all) = store.blob_usage("alice").await.unwrap();
    assert_eq!((mine.blobs, all.blobs), (1, 4));
    store.close().await;
}

#[tokio::test]
async fn open_files_stay_bounded_with_many_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let quota = BlobQuota { per_owner: u64::MAX, total: u64::MAX, per_owner_blobs: u64::MAX, total_blobs: u64::MAX };
    for i in 0..(MAX_OPEN + 50) {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let blob = NewBlob { id, owner: "alice".into(), group: vec![1], size: 1, created_ms: 1, waiting: vec![] };
        assert!(matches!(store.blob_create(blob, quota).await.unwrap(), BlobCreated::Created(_)));
        assert!(matches!(store.blob_append(id, "alice", 0, b"z").await.unwrap(), BlobWrite::Written { .. }));
    }
    assert!(lock(&store.blobs.slots).len() <= MAX_OPEN, "idle slots (open files) are dropped");
    let mut first = [0u8; 16];
    first[..8].copy_from_slice(&0u64.to_be_bytes());
    assert_eq!(store.blob_read(first, 0, 10).await.unwrap().unwrap().data, b"z", "a dropped slot loads again");
    store.close().await;
}
