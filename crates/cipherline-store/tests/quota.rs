//! Quotas on fan-out appends, the running counts behind them and key
//! listing, on both backends (see `common`); and the SQLite migration that
//! adds the counts to an existing database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_store::{Appended, QueueStats, Quota, SqliteOptions, SqliteStore, Store};
use common::Harness;

on_both_backends!(
    append_each_skips_full_queues_and_a_full_store_and_says_which,
    counts_follow_ack_and_expire_and_survive_reopen,
    keys_lists_a_prefix_in_order_and_takes_wildcards_literally,
    keys_under_nested_and_partial_prefixes,
    append_each_counts_a_queue_named_twice_and_reaches_many_queues,
);

/// A queue named twice gets two copies, numbered in order, and its second
/// copy counts against its quota; a fan-out to more queues than NATS
/// appends at once reaches every one.
async fn append_each_counts_a_queue_named_twice_and_reaches_many_queues(h: &mut Harness) {
    let store = h.open().await;
    let got = store.append_each(queues(&["a", "b", "a"]), vec![1; 10], 1, Quota::UNLIMITED).await.unwrap();
    assert_eq!(got, vec![Appended::Stored(1), Appended::Stored(1), Appended::Stored(2)]);
    let quota = Quota { max_messages: 3, ..Quota::UNLIMITED };
    let got = store.append_each(queues(&["a", "c", "a"]), vec![2; 10], 2, quota).await.unwrap();
    assert_eq!(got, vec![Appended::Stored(3), Appended::Stored(1), Appended::QueueFull]);
    assert_eq!(store.read("a", 2, 10).await.unwrap()[0].payload, vec![2; 10]);
    let many: Vec<String> = (0..100).map(|i| format!("member{i}")).collect();
    let got = store.append_each(many.clone(), vec![3; 10], 3, quota).await.unwrap();
    assert_eq!(got, vec![Appended::Stored(1); 100]);
    for name in &many {
        assert_eq!(store.queue_stats(name).await.unwrap(), QueueStats { messages: 1, bytes: 10 }, "{name}");
    }
    store.close().await;
}

/// Prefixes with several `/` segments, ending inside a segment or at a
/// `/`, with empty segments (NATS lists the subjects under the complete
/// segments and checks the rest).
async fn keys_under_nested_and_partial_prefixes(h: &mut Harness) {
    let store = h.open().await;
    for key in ["e2e/kp/alice/1", "e2e/kp/alice/2", "e2e/kp/alicia/1", "e2e/kp/al", "e2e/kp", "e2e//x", "e2e/"] {
        store.put(key, b"v".to_vec()).await.unwrap();
    }
    assert_eq!(store.keys("e2e/kp/alice/", "", 10).await.unwrap(), vec!["e2e/kp/alice/1", "e2e/kp/alice/2"]);
    assert_eq!(store.keys("e2e/kp/alice/", "e2e/kp/alice/1", 10).await.unwrap(), vec!["e2e/kp/alice/2"]);
    assert_eq!(
        store.keys("e2e/kp/ali", "", 10).await.unwrap(),
        vec!["e2e/kp/alice/1", "e2e/kp/alice/2", "e2e/kp/alicia/1"]
    );
    assert_eq!(store.keys("e2e/kp/", "", 2).await.unwrap(), vec!["e2e/kp/al", "e2e/kp/alice/1"]);
    assert_eq!(store.keys("e2e/", "", 10).await.unwrap().len(), 7);
    assert_eq!(store.keys("e2e//", "", 10).await.unwrap(), vec!["e2e//x"]);
    assert_eq!(store.keys("e2e/kp", "", 10).await.unwrap().len(), 5);
    assert!(store.delete("e2e/kp/alice/1").await.unwrap());
    assert_eq!(store.keys("e2e/kp/alice/", "", 10).await.unwrap(), vec!["e2e/kp/alice/2"]);
    store.close().await;
}

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

async fn append_each_skips_full_queues_and_a_full_store_and_says_which(h: &mut Harness) {
    let store = h.open().await;
    let quota = Quota { max_messages: 2, max_bytes: 1000, max_total_bytes: 10_000 };
    let got = store.append_each(queues(&["a", "b"]), vec![1; 100], 5, quota).await.unwrap();
    assert_eq!(got, vec![Appended::Stored(1), Appended::Stored(1)]);
    store.append("a", vec![1; 100], 5).await.unwrap();
    // `a` holds two messages now: full by count; `b` still has room.
    let got = store.append_each(queues(&["a", "b"]), vec![2; 100], 6, quota).await.unwrap();
    assert_eq!(got, vec![Appended::QueueFull, Appended::Stored(2)]);
    assert_eq!(store.queue_stats("a").await.unwrap(), QueueStats { messages: 2, bytes: 200 });
    // By bytes: 901 more would take `c` over 1000.
    store.append("c", vec![0; 100], 5).await.unwrap();
    let got = store.append_each(queues(&["c"]), vec![0; 901], 6, quota).await.unwrap();
    assert_eq!(got, vec![Appended::QueueFull]);
    // Acknowledging makes room again.
    store.ack("a", 1).await.unwrap();
    let got = store.append_each(queues(&["a"]), vec![3; 100], 7, quota).await.unwrap();
    assert_eq!(got, vec![Appended::Stored(3)]);
    // The store's total: 500 bytes held; a limit of 600 takes one more 100.
    assert_eq!(store.total_stats().await.unwrap(), QueueStats { messages: 5, bytes: 500 });
    let tight = Quota { max_total_bytes: 600, ..Quota::UNLIMITED };
    let got = store.append_each(queues(&["x", "y"]), vec![4; 100], 8, tight).await.unwrap();
    assert_eq!(got, vec![Appended::Stored(1), Appended::StoreFull]);
    store.close().await;
}

async fn counts_follow_ack_and_expire_and_survive_reopen(h: &mut Harness) {
    let store = h.open().await;
    for (q, t) in [("a", 1), ("a", 2), ("b", 1), ("b", 3)] {
        store.append(q, vec![9; 10], t).await.unwrap();
    }
    assert_eq!(store.expire(2, 100).await.unwrap().len(), 2);
    assert_eq!(store.queue_stats("a").await.unwrap(), QueueStats { messages: 1, bytes: 10 });
    assert_eq!(store.queue_stats("b").await.unwrap(), QueueStats { messages: 1, bytes: 10 });
    store.ack("b", 10).await.unwrap();
    assert_eq!(store.total_stats().await.unwrap(), QueueStats { messages: 1, bytes: 10 });
    store.close().await;
    h.crash_backend();
    let store = h.open().await;
    assert_eq!(store.total_stats().await.unwrap(), QueueStats { messages: 1, bytes: 10 });
    store.close().await;
}

async fn keys_lists_a_prefix_in_order_and_takes_wildcards_literally(h: &mut Harness) {
    let store = h.open().await;
    for key in ["room/b", "room/a", "room%/x", "rooms", "user/a", "room_/y"] {
        store.put(key, b"v".to_vec()).await.unwrap();
    }
    assert_eq!(store.keys("room/", "", 100).await.unwrap(), vec!["room/a", "room/b"]);
    assert_eq!(store.keys("room/", "", 1).await.unwrap(), vec!["room/a"]);
    assert_eq!(store.keys("room/", "room/a", 1).await.unwrap(), vec!["room/b"], "the next page");
    assert!(store.keys("room/", "room/b", 1).await.unwrap().is_empty());
    assert_eq!(store.keys("room%", "", 100).await.unwrap(), vec!["room%/x"]);
    assert!(store.keys("none/", "", 100).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn migrating_a_version_1_database_counts_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite3");
    {
        // The version 1 schema, with messages already in it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE queues (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) STRICT;
             CREATE TABLE messages (queue TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,
                 appended_ms INTEGER NOT NULL, PRIMARY KEY (queue, seq)) STRICT, WITHOUT ROWID;
             CREATE INDEX messages_by_time ON messages (appended_ms);
             CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL) STRICT;
             CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
             INSERT INTO counters (name, value) VALUES ('kv_revision', 0);
             INSERT INTO queues VALUES ('a', 3);
             INSERT INTO messages VALUES ('a', 2, x'0102', 1), ('a', 3, x'030405', 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap();
    assert_eq!(store.queue_stats("a").await.unwrap(), QueueStats { messages: 2, bytes: 5 });
    assert_eq!(store.total_stats().await.unwrap(), QueueStats { messages: 2, bytes: 5 });
    assert_eq!(store.append("a", vec![0], 2).await.unwrap(), 4, "the sequence goes on");
    store.close().await;
}
