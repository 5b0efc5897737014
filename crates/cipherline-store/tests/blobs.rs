//! The blob store's contract on both backends (see `common`): SQLite's
//! record plus file per blob, and NATS JetStream's stream of pieces plus
//! records in the key-value map (docs/cluster.md, step 8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_store::{
    AnyStore, BlobCreated, BlobFinished, BlobQuota, BlobRead, BlobStore, BlobUsage, BlobWrite, MemberDone, NewBlob,
    QuotaScope, StoreError,
};
use common::Harness;

on_both_backends!(
    a_blob_goes_up_in_pieces_and_reads_back_from_any_offset,
    quotas_count_blobs_at_full_size_until_they_go,
    a_complete_blob_goes_with_its_last_waiting_member_and_expiry_takes_old_ones,
);

const UNLIMITED: BlobQuota =
    BlobQuota { per_owner: u64::MAX, total: u64::MAX, per_owner_blobs: 1000, total_blobs: 1000 };

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

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

async fn read(store: &AnyStore, id: u8, offset: u64, max: usize) -> BlobRead {
    store.blob_read([id; 16], offset, max).await.unwrap().expect("the blob exists")
}

async fn a_blob_goes_up_in_pieces_and_reads_back_from_any_offset(h: &mut Harness) {
    let store = h.open().await;
    let data = bytes(100_000, 1);
    let size = data.len() as u64;
    let created = store.blob_create(new(1, "alice", size, 10, &["bob", "bob"]), UNLIMITED).await.unwrap();
    let BlobCreated::Created(rec) = created else { panic!("{created:?}") };
    assert_eq!((rec.stored, rec.complete, rec.waiting.as_slice()), (0, false, &["bob".to_owned()][..]));
    assert!(matches!(
        store.blob_create(new(1, "mallory", 5, 11, &[]), UNLIMITED).await.unwrap(),
        BlobCreated::Exists(r) if r.owner == "alice"
    ));

    // Pieces of uneven sizes, in order; wrong offsets, strangers and
    // overlong pieces change nothing.
    let cuts = [0, 1, 4096, 4097, 30_000, 65_536, 99_999, 100_000];
    let id = [1; 16];
    for w in cuts.windows(2) {
        let (from, to) = (w[0], w[1]);
        assert_eq!(store.blob_append(id, "bob", from as u64, &data[from..to]).await.unwrap(), BlobWrite::NotOwner);
        if from > 0 {
            assert_eq!(
                store.blob_append(id, "alice", from as u64 - 1, &data[from..to]).await.unwrap(),
                BlobWrite::WrongOffset { stored: from as u64 }
            );
        }
        let got = store.blob_append(id, "alice", from as u64, &data[from..to]).await.unwrap();
        assert_eq!(got, BlobWrite::Written { stored: to as u64, size });
        if to == 30_000 {
            // Readable while the upload goes on, and not finishable yet.
            let r = read(&store, 1, 0, 1 << 20).await;
            assert_eq!((r.data.len(), r.stored, r.complete), (30_000, 30_000, false));
            assert!(r.data[..] == data[..30_000]);
            assert!(matches!(
                store.blob_finish(id).await,
                Err(StoreError::BlobIncomplete { stored: 30_000, size: s }) if s == size
            ));
            assert_eq!(store.blob_get(id).await.unwrap().unwrap().stored, 30_000);
        }
    }
    assert_eq!(
        store.blob_append(id, "alice", size, b"x").await.unwrap(),
        BlobWrite::TooLong { stored: size, size },
        "nothing past the size"
    );
    assert!(matches!(store.blob_finish(id).await.unwrap(), BlobFinished::Complete(r) if r.complete));
    assert!(matches!(store.blob_finish(id).await.unwrap(), BlobFinished::Complete(_)), "finishing twice is fine");

    // Any offset, any length: within a piece, across several, at the end.
    for (offset, max) in [(0, 1), (1, 4096), (4000, 200), (4096, 1), (29_999, 40_000), (65_535, 3), (99_990, 100)] {
        let r = read(&store, 1, offset, max).await;
        let end = (offset as usize + max).min(data.len());
        assert!(r.data[..] == data[offset as usize..end], "{offset} {max}");
        assert_eq!((r.size, r.stored, r.complete), (size, size, true));
    }
    assert!(read(&store, 1, size, 10).await.data.is_empty());
    assert_eq!(store.blob_read([9; 16], 0, 10).await.unwrap(), None);
    assert_eq!(store.blob_append([9; 16], "alice", 0, b"x").await.unwrap(), BlobWrite::NoBlob);
    assert_eq!(store.blob_finish([9; 16]).await.unwrap(), BlobFinished::NoBlob);

    // The owner deletes it: gone for every call.
    let deleted = store.blob_delete(id).await.unwrap().unwrap();
    assert_eq!((deleted.stored, deleted.size), (size, size));
    assert_eq!(store.blob_get(id).await.unwrap(), None);
    assert_eq!(store.blob_read(id, 0, 10).await.unwrap(), None);
    assert_eq!(store.blob_delete(id).await.unwrap(), None);
    store.close().await;
}

async fn quotas_count_blobs_at_full_size_until_they_go(h: &mut Harness) {
    let store = h.open().await;
    let quota = BlobQuota { per_owner: 1000, total: 1500, per_owner_blobs: 2, total_blobs: 3 };
    assert!(matches!(store.blob_create(new(1, "alice", 600, 1, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    assert_eq!(
        store.blob_create(new(2, "alice", 500, 1, &[]), quota).await.unwrap(),
        BlobCreated::OverQuota { scope: QuotaScope::Owner, used: 600, limit: 1000 }
    );
    assert!(matches!(store.blob_create(new(2, "alice", 10, 1, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    assert_eq!(
        store.blob_create(new(3, "alice", 10, 1, &[]), quota).await.unwrap(),
        BlobCreated::OverQuota { scope: QuotaScope::OwnerBlobs, used: 2, limit: 2 }
    );
    assert_eq!(
        store.blob_create(new(3, "bob", 900, 1, &[]), quota).await.unwrap(),
        BlobCreated::OverQuota { scope: QuotaScope::Total, used: 610, limit: 1500 }
    );
    assert!(matches!(store.blob_create(new(3, "bob", 5, 1, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    assert_eq!(
        store.blob_create(new(4, "carol", 5, 1, &[]), quota).await.unwrap(),
        BlobCreated::OverQuota { scope: QuotaScope::TotalBlobs, used: 3, limit: 3 }
    );
    assert_eq!(
        store.blob_usage("alice").await.unwrap(),
        (BlobUsage { blobs: 2, bytes: 610 }, BlobUsage { blobs: 3, bytes: 615 })
    );
    // A deletion gives its share back (once, however often it is asked).
    store.blob_delete([1; 16]).await.unwrap().unwrap();
    assert_eq!(store.blob_delete([1; 16]).await.unwrap(), None);
    assert_eq!(
        store.blob_usage("alice").await.unwrap(),
        (BlobUsage { blobs: 1, bytes: 10 }, BlobUsage { blobs: 2, bytes: 15 })
    );
    assert!(matches!(store.blob_create(new(4, "carol", 5, 1, &[]), quota).await.unwrap(), BlobCreated::Created(_)));
    store.close().await;
}

async fn a_complete_blob_goes_with_its_last_waiting_member_and_expiry_takes_old_ones(h: &mut Harness) {
    let store = h.open().await;
    let id = [1; 16];
    store.blob_create(new(1, "alice", 3, 100, &["bob", "carol"]), UNLIMITED).await.unwrap();
    store.blob_append(id, "alice", 0, b"abc").await.unwrap();
    // Done before it is complete: off the list, the blob stays.
    assert!(matches!(store.blob_member_done(id, "bob").await.unwrap(), MemberDone::Kept(r) if r.waiting == ["carol"]));
    assert!(matches!(store.blob_member_done(id, "dave").await.unwrap(), MemberDone::Kept(r) if r.waiting == ["carol"]));
    store.blob_finish(id).await.unwrap();
    assert!(matches!(store.blob_member_done(id, "carol").await.unwrap(), MemberDone::Deleted(r) if r.complete));
    assert_eq!(store.blob_member_done(id, "carol").await.unwrap(), MemberDone::NoBlob);
    assert_eq!(store.blob_get(id).await.unwrap(), None);

    // Everyone gave up before it was complete: finishing deletes it.
    store.blob_create(new(2, "alice", 1, 200, &["bob"]), UNLIMITED).await.unwrap();
    store.blob_append([2; 16], "alice", 0, b"z").await.unwrap();
    store.blob_member_done([2; 16], "bob").await.unwrap();
    assert!(matches!(store.blob_finish([2; 16]).await.unwrap(), BlobFinished::Deleted(_)));

    // Expiry: older than the cutoff, oldest first, in batches.
    for (i, t) in [(3u8, 300u64), (4, 400), (5, 500), (6, 600)] {
        store.blob_create(new(i, "alice", 1, t, &[]), UNLIMITED).await.unwrap();
    }
    let first: Vec<u8> = store.blob_expire(550, 2).await.unwrap().iter().map(|r| r.id[0]).collect();
    assert_eq!(first, [3, 4]);
    let next: Vec<u8> = store.blob_expire(550, 2).await.unwrap().iter().map(|r| r.id[0]).collect();
    assert_eq!(next, [5]);
    assert!(store.blob_expire(550, 2).await.unwrap().is_empty());
    assert!(store.blob_get([6; 16]).await.unwrap().is_some());
    assert_eq!(store.blob_usage("alice").await.unwrap().0, BlobUsage { blobs: 1, bytes: 1 });
    store.close().await;
}
