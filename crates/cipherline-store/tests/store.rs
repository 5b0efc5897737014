//! The store's contract, one suite on both backends (SQLite and NATS
//! JetStream, see `common`), plus the SQLite-only tests (schema versions,
//! group commit, SIGKILL of the process holding the file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherline_store::{QueueStats, SCHEMA_VERSION, SqliteOptions, SqliteStore, Store, StoreError};
use common::{Bounds, Harness};

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("store.sqlite3")
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).await.expect("open store")
}

fn seqs(messages: &[cipherline_store::StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

on_both_backends!(
    append_read_ack_keep_order_per_queue_and_queues_are_independent,
    ack_deletes_up_to_and_including_and_stats_follow,
    seq_survives_reopen_and_is_never_reused,
    expire_removes_messages_older_than_the_cutoff_in_every_queue,
    kv_put_get_cas_conflict_and_delete,
    delete_if_deletes_only_the_expected_revision,
    bounds_are_enforced,
    concurrent_appends_get_dense_numbers_that_survive_reopen,
    acknowledged_appends_survive_an_abrupt_drop,
    a_failed_request_does_not_spoil_its_batch,
    any_queue_name_and_key_works,
    reads_and_acks_from_the_middle_of_a_long_queue,
);

async fn append_read_ack_keep_order_per_queue_and_queues_are_independent(h: &mut Harness) {
    let store = h.open().await;
    for i in 0..5u64 {
        assert_eq!(store.append("alice", format!("a{i}").into_bytes(), 1000 + i).await.unwrap(), i + 1);
        if i < 2 {
            assert_eq!(store.append("bob", format!("b{i}").into_bytes(), 2000 + i).await.unwrap(), i + 1);
        }
    }
    let alice = store.read("alice", 0, 100).await.unwrap();
    assert_eq!(seqs(&alice), vec![1, 2, 3, 4, 5]);
    assert_eq!(alice[2].payload, b"a2");
    assert_eq!(alice[2].appended_ms, 1002);
    let bob = store.read("bob", 0, 100).await.unwrap();
    assert_eq!(seqs(&bob), vec![1, 2]);
    assert_eq!(bob[1].payload, b"b1");

    // Reading from a cursor, with a limit.
    assert_eq!(seqs(&store.read("alice", 2, 2).await.unwrap()), vec![3, 4]);
    assert!(store.read("nobody", 0, 10).await.unwrap().is_empty());

    // Acknowledging one queue leaves the other alone.
    assert_eq!(store.ack("alice", 3).await.unwrap(), 3);
    assert_eq!(seqs(&store.read("alice", 0, 100).await.unwrap()), vec![4, 5]);
    assert_eq!(seqs(&store.read("bob", 0, 100).await.unwrap()), vec![1, 2]);
    store.close().await;
}

async fn ack_deletes_up_to_and_including_and_stats_follow(h: &mut Harness) {
    let store = h.open().await;
    for len in [10usize, 20, 30] {
        store.append("q", vec![7; len], 1).await.unwrap();
    }
    assert_eq!(store.queue_stats("q").await.unwrap(), QueueStats { messages: 3, bytes: 60 });
    assert_eq!(store.ack("q", 2).await.unwrap(), 2);
    assert_eq!(store.queue_stats("q").await.unwrap(), QueueStats { messages: 1, bytes: 30 });
    // Acknowledging again, or below what is left, deletes nothing.
    assert_eq!(store.ack("q", 2).await.unwrap(), 0);
    assert_eq!(store.ack("q", u64::MAX).await.unwrap(), 1);
    assert_eq!(store.queue_stats("q").await.unwrap(), QueueStats::default());
    assert_eq!(store.queue_stats("empty").await.unwrap(), QueueStats::default());
    store.close().await;
}

async fn seq_survives_reopen_and_is_never_reused(h: &mut Harness) {
    let store = h.open().await;
    for _ in 0..3 {
        store.append("q", b"x".to_vec(), 1).await.unwrap();
    }
    store.ack("q", 3).await.unwrap();
    store.close().await;
    h.crash_backend();

    let store = h.open().await;
    assert!(store.read("q", 0, 10).await.unwrap().is_empty());
    assert_eq!(store.append("q", b"y".to_vec(), 2).await.unwrap(), 4);
    assert_eq!(store.append("other", b"z".to_vec(), 2).await.unwrap(), 1);
    store.close().await;
}

async fn expire_removes_messages_older_than_the_cutoff_in_every_queue(h: &mut Harness) {
    let store = h.open().await;
    store.append("a", b"old".to_vec(), 100).await.unwrap();
    store.append("b", b"old".to_vec(), 150).await.unwrap();
    store.append("a", b"new".to_vec(), 200).await.unwrap();
    store.append("b", b"new".to_vec(), 300).await.unwrap();
    // At most `max` per call, oldest first, returned whole.
    let first = store.expire(200, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].queue.as_str(), first[0].message.seq, first[0].message.payload.as_slice()),
        ("a", 1, &b"old"[..])
    );
    let second = store.expire(200, 10).await.unwrap();
    assert_eq!(second.len(), 1, "strictly before the cutoff");
    assert_eq!((second[0].queue.as_str(), second[0].message.appended_ms), ("b", 150));
    assert_eq!(seqs(&store.read("a", 0, 10).await.unwrap()), vec![2]);
    assert_eq!(seqs(&store.read("b", 0, 10).await.unwrap()), vec![2]);
    assert!(store.expire(200, 10).await.unwrap().is_empty());
    assert_eq!(store.expire(u64::MAX, 10).await.unwrap().len(), 2);
    // Expiry does not reset sequence numbers.
    assert_eq!(store.append("a", b"later".to_vec(), 400).await.unwrap(), 3);
    store.close().await;
}

async fn kv_put_get_cas_conflict_and_delete(h: &mut Harness) {
    let store = h.open().await;
    assert_eq!(store.get("k").await.unwrap(), None);

    // Create only if absent.
    let r1 = store.cas("k", None, b"one".to_vec()).await.unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some((b"one".to_vec(), r1)));
    match store.cas("k", None, b"again".to_vec()).await {
        Err(StoreError::Conflict { key, expected: None, found: Some(found) }) => {
            assert_eq!(key, "k");
            assert_eq!(found, r1);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Update from the right revision; a stale one conflicts and writes nothing.
    let r2 = store.cas("k", Some(r1), b"two".to_vec()).await.unwrap();
    assert!(r2 > r1);
    assert!(matches!(
        store.cas("k", Some(r1), b"stale".to_vec()).await,
        Err(StoreError::Conflict { found: Some(f), .. }) if f == r2
    ));
    assert_eq!(store.get("k").await.unwrap(), Some((b"two".to_vec(), r2)));

    // Put overwrites whatever is there, with a new revision.
    let r3 = store.put("k", b"three".to_vec()).await.unwrap();
    assert!(r3 > r2);
    let other = store.put("other", b"o".to_vec()).await.unwrap();
    assert!(other > r3, "revisions increase across the whole map");

    // Delete; a deleted key never gets an old revision back.
    assert!(store.delete("k").await.unwrap());
    assert!(!store.delete("k").await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(matches!(store.cas("k", Some(r3), b"gone".to_vec()).await, Err(StoreError::Conflict { found: None, .. })));
    let r4 = store.cas("k", None, b"four".to_vec()).await.unwrap();
    assert!(r4 > other);
    assert_eq!(store.get("other").await.unwrap(), Some((b"o".to_vec(), other)));
    store.close().await;
}

async fn delete_if_deletes_only_the_expected_revision(h: &mut Harness) {
    let store = h.open().await;
    assert!(!store.delete_if("k", 1).await.unwrap(), "an absent key");
    let r1 = store.cas("k", None, b"one".to_vec()).await.unwrap();
    let r2 = store.cas("k", Some(r1), b"two".to_vec()).await.unwrap();

    // A stale revision deletes nothing.
    assert!(!store.delete_if("k", r1).await.unwrap());
    assert!(!store.delete_if("k", 0).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some((b"two".to_vec(), r2)));

    // The current one deletes; the key is then absent to every call.
    assert!(store.delete_if("k", r2).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), None);
    assert!(!store.delete_if("k", r2).await.unwrap(), "deleted once");
    assert!(matches!(store.cas("k", Some(r2), b"x".to_vec()).await, Err(StoreError::Conflict { found: None, .. })));
    assert!(store.keys("", "", 10).await.unwrap().is_empty(), "not listed");

    // Created again with a fresh revision, which a delete_if of the old
    // one leaves alone.
    let r3 = store.cas("k", None, b"three".to_vec()).await.unwrap();
    assert!(r3 > r2);
    assert!(!store.delete_if("k", r2).await.unwrap());
    assert_eq!(store.get("k").await.unwrap(), Some((b"three".to_vec(), r3)));

    // Racing: eight conditional deletions of one revision, one wins; and a
    // deletion racing an update either deletes it or leaves the update.
    let r4 = store.put("race", b"v".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.delete_if("race", r4).await.unwrap() }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    let r5 = store.cas("race", None, b"w".to_vec()).await.unwrap();
    let (s1, s2) = (store.clone(), store.clone());
    let deleter = tokio::spawn(async move { s1.delete_if("race", r5).await.unwrap() });
    let updater = tokio::spawn(async move { s2.cas("race", Some(r5), b"x".to_vec()).await });
    let (deleted, updated) = (deleter.await.unwrap(), updater.await.unwrap());
    assert!(deleted != updated.is_ok(), "exactly one of the two wins");
    match updated {
        Ok(r6) => assert_eq!(store.get("race").await.unwrap(), Some((b"x".to_vec(), r6))),
        Err(_) => assert_eq!(store.get("race").await.unwrap(), None),
    }
    store.close().await;
}

#[tokio::test]
async fn refuses_a_database_with_a_newer_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    open(&path).await.close().await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let err = SqliteStore::open(&path, SqliteOptions::default()).await.unwrap_err();
    match &err {
        StoreError::NewerSchema { found, known } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*known, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(err.to_string().contains("newer than this program knows"), "{err}");
}

async fn bounds_are_enforced(h: &mut Harness) {
    let bounds = Bounds { max_payload_bytes: 16, max_value_bytes: 8, max_name_bytes: 4, max_read: 3 };
    let store = h.open_with(bounds).await;
    assert!(matches!(
        store.append("q", vec![0; 17], 1).await,
        Err(StoreError::TooLarge { what: "payload", len: 17, max: 16 })
    ));
    assert!(matches!(store.append("qqqqq", vec![0; 1], 1).await, Err(StoreError::TooLarge { .. })));
    assert!(matches!(store.put("k", vec![0; 9]).await, Err(StoreError::TooLarge { what: "value", .. })));
    assert!(matches!(store.append("q", vec![0; 1], u64::MAX).await, Err(StoreError::OutOfRange { .. })));
    for _ in 0..5 {
        store.append("q", vec![0; 16], 1).await.unwrap();
    }
    // A refused append took no sequence number; `read` is capped.
    assert_eq!(seqs(&store.read("q", 0, 100).await.unwrap()), vec![1, 2, 3]);
    assert!(store.read("q", 0, 0).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_200_concurrent_appends_share_transactions_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path).await);
    let before = store.commits();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let queue = format!("q{}", i % 4);
            let seq = store.append(&queue, i.to_be_bytes().to_vec(), 1).await.unwrap();
            (queue, seq, i)
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await.unwrap());
    }
    let commits = store.commits() - before;
    assert!(commits >= 1);
    assert!(commits < 200, "200 appends took {commits} commits: no group commit");
    println!("200 concurrent appends committed in {commits} transactions");
    Arc::into_inner(store).expect("no other owner").close().await;

    let store = open(&path).await;
    for q in 0..4 {
        let queue = format!("q{q}");
        let messages = store.read(&queue, 0, 1000).await.unwrap();
        assert_eq!(seqs(&messages), (1..=50).collect::<Vec<u64>>(), "{queue}");
        let payloads: BTreeSet<Vec<u8>> = messages.into_iter().map(|m| m.payload).collect();
        let expected: BTreeSet<Vec<u8>> =
            acked.iter().filter(|(name, _, _)| *name == queue).map(|(_, _, i)| i.to_be_bytes().to_vec()).collect();
        assert_eq!(payloads, expected, "{queue}");
    }
    for (queue, seq, i) in &acked {
        let m = store.read(queue, seq - 1, 1).await.unwrap();
        assert_eq!(m[0].payload, i.to_be_bytes(), "{queue} seq {seq}");
    }
    store.close().await;
}

/// 200 appends from concurrent tasks to 4 queues: each queue numbers its
/// messages 1..=50 without gaps or repeats (on NATS, concurrent appenders
/// to one queue race on the expected last subject sequence), and each
/// acknowledged number holds the payload its task appended, after a reopen.
async fn concurrent_appends_get_dense_numbers_that_survive_reopen(h: &mut Harness) {
    let store = Arc::new(h.open().await);
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let queue = format!("q{}", i % 4);
            let seq = store.append(&queue, i.to_be_bytes().to_vec(), 1).await.unwrap();
            (queue, seq, i)
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await.unwrap());
    }
    Arc::into_inner(store).expect("no other owner").close().await;
    h.crash_backend();

    let store = h.open().await;
    for q in 0..4 {
        let queue = format!("q{q}");
        let messages = store.read(&queue, 0, 1000).await.unwrap();
        assert_eq!(seqs(&messages), (1..=50).collect::<Vec<u64>>(), "{queue}");
    }
    for (queue, seq, i) in &acked {
        let m = store.read(queue, seq - 1, 1).await.unwrap();
        assert_eq!(m[0].payload, i.to_be_bytes(), "{queue} seq {seq}");
    }
    store.close().await;
}

async fn acknowledged_appends_survive_an_abrupt_drop(h: &mut Harness) {
    // Abandoned without close: its connection or thread is never shut down
    // (as if the process froze), yet everything acknowledged must be kept;
    // then the backend itself is killed (NATS: SIGKILL of nats-server).
    let store = Arc::new(h.open().await);
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move { store.append("q", i.to_be_bytes().to_vec(), 1).await }));
    }
    let mut acked = 0;
    for task in tasks {
        task.await.unwrap().unwrap();
        acked += 1;
    }
    store.put("k", b"v".to_vec()).await.unwrap();
    std::mem::forget(store);
    h.crash_backend();

    // Plain drop, without close, right after a write is acknowledged.
    let store = h.open().await;
    assert_eq!(store.read("q", 0, 1000).await.unwrap().len(), acked);
    assert_eq!(store.append("q", b"last".to_vec(), 2).await.unwrap(), 51);
    drop(store);
    h.crash_backend();

    let store = h.open().await;
    let messages = store.read("q", 0, 1000).await.unwrap();
    assert_eq!(seqs(&messages), (1..=51).collect::<Vec<u64>>());
    assert_eq!(store.get("k").await.unwrap().map(|(v, _)| v), Some(b"v".to_vec()));
    store.close().await;
}

async fn a_failed_request_does_not_spoil_its_batch(h: &mut Harness) {
    let store = Arc::new(h.open().await);
    let mut creates = Vec::new();
    let mut appends = Vec::new();
    for i in 0..50u32 {
        let s = Arc::clone(&store);
        creates.push(tokio::spawn(async move { s.cas("owner", None, i.to_be_bytes().to_vec()).await }));
        let s = Arc::clone(&store);
        appends.push(tokio::spawn(async move { s.append("q", i.to_be_bytes().to_vec(), 1).await }));
    }
    let mut winners = Vec::new();
    for (i, task) in creates.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(revision) => winners.push((i, revision)),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create-if-absent wins");
    for task in appends {
        task.await.unwrap().unwrap();
    }
    let (i, revision) = winners[0];
    let i = u32::try_from(i).unwrap();
    assert_eq!(store.get("owner").await.unwrap(), Some((i.to_be_bytes().to_vec(), revision)));
    assert_eq!(store.read("q", 0, 1000).await.unwrap().len(), 50);
    if let Some(sqlite) = store.as_sqlite() {
        // Group commit: the failed requests shared transactions with the others.
        assert!(sqlite.commits() < 100, "{} commits for 100 requests", sqlite.commits());
    }
    Arc::into_inner(store).unwrap().close().await;
}

/// Names NATS subjects cannot carry as they are (dots, wildcards, spaces,
/// the empty string, non-ASCII) work as queue names and keys, and stay
/// apart from each other.
async fn any_queue_name_and_key_works(h: &mut Harness) {
    let store = h.open().await;
    let names = ["", "a.b", "a", "*", ">", "room/x y", "é\u{10FFFF}", "a.>"];
    for (i, name) in names.iter().enumerate() {
        assert_eq!(store.append(name, vec![u8::try_from(i).unwrap()], 1).await.unwrap(), 1, "{name:?}");
        store.put(name, vec![u8::try_from(i).unwrap()]).await.unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        let m = store.read(name, 0, 10).await.unwrap();
        assert_eq!(m.len(), 1, "{name:?}");
        assert_eq!(m[0].payload, vec![u8::try_from(i).unwrap()]);
        assert_eq!(store.get(name).await.unwrap().unwrap().0, vec![u8::try_from(i).unwrap()]);
    }
    let mut sorted: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    sorted.sort();
    assert_eq!(store.keys("", "", 100).await.unwrap(), sorted, "the first page starts at the prefix");
    assert_eq!(store.keys("a", "", 100).await.unwrap(), vec!["a", "a.>", "a.b"]);
    let expired = store.expire(2, 100).await.unwrap();
    let queues: BTreeSet<String> = expired.into_iter().map(|e| e.queue).collect();
    assert_eq!(queues, names.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>());
    store.close().await;
}

/// Cursors and acknowledgements that fall inside a queue interleaved with
/// another (on NATS: a search over stream sequences), then a full ack and
/// appends after it.
async fn reads_and_acks_from_the_middle_of_a_long_queue(h: &mut Harness) {
    let store = h.open().await;
    for i in 1..=100u64 {
        assert_eq!(store.append("long", i.to_be_bytes().to_vec(), i).await.unwrap(), i);
        store.append(&format!("other{}", i % 3), b"x".to_vec(), i).await.unwrap();
    }
    for after in [0u64, 1, 37, 63, 98, 99, 100, 150] {
        let got = store.read("long", after, 5).await.unwrap();
        let want: Vec<u64> = (after + 1..=100).take(5).collect();
        assert_eq!(seqs(&got), want, "after {after}");
        for m in &got {
            assert_eq!(m.payload, m.seq.to_be_bytes());
            assert_eq!(m.appended_ms, m.seq);
        }
    }
    assert_eq!(store.ack("long", 41).await.unwrap(), 41);
    assert_eq!(store.queue_stats("long").await.unwrap(), QueueStats { messages: 59, bytes: 59 * 8 });
    assert_eq!(seqs(&store.read("long", 0, 3).await.unwrap()), vec![42, 43, 44]);
    assert_eq!(seqs(&store.read("long", 50, 2).await.unwrap()), vec![51, 52]);
    assert_eq!(store.ack("long", 41).await.unwrap(), 0, "again: nothing left to delete");
    assert_eq!(store.ack("long", 90).await.unwrap(), 49);
    assert_eq!(store.ack("long", 1000).await.unwrap(), 10);
    assert_eq!(store.queue_stats("long").await.unwrap(), QueueStats::default());
    assert!(store.read("long", 0, 10).await.unwrap().is_empty());
    assert_eq!(store.append("long", b"next".to_vec(), 200).await.unwrap(), 101);
    assert_eq!(seqs(&store.read("long", 0, 10).await.unwrap()), vec![101]);
    assert_eq!(store.queue_stats("long").await.unwrap(), QueueStats { messages: 1, bytes: 4 });
    store.close().await;
}

/// Set in the child process of the SIGKILL test: the database path it appends to.
const CRASH_CHILD_ENV: &str = "CIPHERLINE_STORE_CRASH_CHILD";

/// Child mode: appends from several tasks until killed, printing `ACK queue
/// seq` for each append the store acknowledged. Parent mode: runs the child,
/// kills it with SIGKILL mid-flood, reopens the file and checks that every
/// acknowledged append is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_appends_survive_sigkill() {
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        let store = Arc::new(open(Path::new(&path)).await);
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let queue = format!("q{t}");
                // Bounded, in case the parent never kills this process.
                for i in 0..20_000u32 {
                    let seq = store.append(&queue, i.to_be_bytes().to_vec(), 1).await.unwrap();
                    println!("ACK {queue} {seq}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        return;
    }

    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_appends_survive_sigkill", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let lines = std::io::BufReader::new(stdout).lines();
    let mut killed = false;
    for line in lines {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (queue, seq) = rest.split_once(' ').unwrap();
            acked.push((queue.to_owned(), seq.parse().unwrap()));
        }
        if !killed && acked.len() >= 2000 {
            child.kill().unwrap(); // SIGKILL on Unix
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed && !status.success(), "the child must be killed mid-flood: {status:?}");

    let store = open(&path).await;
    let mut lost = 0usize;
    for (queue, seq) in &acked {
        let m = store.read(queue, seq - 1, 1).await.unwrap();
        if m.first().map(|m| m.seq) != Some(*seq) {
            lost += 1;
        }
    }
    println!("SIGKILL: {} appends acknowledged, {lost} lost", acked.len());
    assert_eq!(lost, 0, "acknowledged appends lost after SIGKILL");
    store.close().await;
}

// NATS only: what the NATS server holds or allows is checked, never trusted.

/// A server whose `max_payload` cannot carry the store's largest payload is
/// refused at open, with the setting to change in the message.
#[tokio::test]
async fn nats_open_refuses_a_server_whose_max_payload_is_too_small() {
    let server = common::NatsServer::start();
    let options = cipherline_store::NatsOptions { max_payload_bytes: 8 * 1024 * 1024, ..Default::default() };
    let err = cipherline_store::NatsStore::connect(server.url(), options).await.unwrap_err();
    assert!(matches!(err, StoreError::Nats(_)), "{err:?}");
    assert!(err.to_string().contains("max_payload"), "{err}");
}

/// A stream of the store's name made by something else (other subjects)
/// is refused rather than written into.
#[tokio::test]
async fn nats_open_refuses_a_foreign_stream_of_its_name() {
    let server = common::NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CIPHERLINE_KV".to_owned(),
        subjects: vec!["elsewhere.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = cipherline_store::NatsStore::connect(server.url(), Default::default()).await.unwrap_err();
    assert!(err.to_string().contains("CIPHERLINE_KV"), "{err}");
}

/// On NATS, `expire` walks the stream in append order and stops at a
/// record appended more than a minute after the cutoff (later ones are
/// younger unless clocks disagree): an older message appended after it
/// waits. SQLite, which indexes by time, would take it at once.
#[tokio::test]
async fn nats_expiry_walks_in_append_order_and_stops_far_past_the_cutoff() {
    let h = Harness::nats();
    let store = h.open().await;
    store.append("a", b"old".to_vec(), 1).await.unwrap();
    store.append("b", b"much younger".to_vec(), 10_000_000).await.unwrap();
    store.append("c", b"old but later".to_vec(), 1).await.unwrap();
    let expired = store.expire(100, 10).await.unwrap();
    assert_eq!(expired.iter().map(|e| e.queue.as_str()).collect::<Vec<_>>(), vec!["a"]);
    // Once time passes "b", the walk goes on to "c".
    let expired = store.expire(10_000_001, 10).await.unwrap();
    assert_eq!(expired.iter().map(|e| e.queue.as_str()).collect::<Vec<_>>(), vec!["b", "c"]);
    store.close().await;
}

/// Records in the queue stream that this store did not write (no headers,
/// a malformed number) make calls fail with an error, never a panic or a
/// made-up sequence number.
#[tokio::test]
async fn nats_foreign_records_in_a_queue_are_errors() {
    let h = Harness::nats();
    let Harness::Nats(server) = &h else { unreachable!() };
    let store = h.open().await;
    store.append("good", b"x".to_vec(), 1).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // Queue "q" is subject cipherline.q.h71; "r" is h72.
    js.publish("cipherline.q.h71", "no headers".into()).await.unwrap().await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Cl-Seq", "1x");
    headers.insert("Cl-Ms", "1");
    headers.insert("Cl-Cum", "1");
    js.publish_with_headers("cipherline.q.h72", headers, "bad number".into()).await.unwrap().await.unwrap();
    for queue in ["q", "r"] {
        assert!(matches!(store.read(queue, 0, 10).await, Err(StoreError::Nats(_))), "{queue}");
        assert!(matches!(store.append(queue, b"y".to_vec(), 1).await, Err(StoreError::Nats(_))), "{queue}");
        assert!(matches!(store.queue_stats(queue).await, Err(StoreError::Nats(_))), "{queue}");
    }
    // Other queues are unaffected.
    assert_eq!(store.read("good", 0, 10).await.unwrap().len(), 1);
    // Records above the reading store's bounds are refused, not passed on.
    store.append("big", vec![1; 100], 1).await.unwrap();
    store.put("big", vec![2; 100]).await.unwrap();
    let small =
        h.open_with(Bounds { max_payload_bytes: 16, max_value_bytes: 8, max_name_bytes: 64, max_read: 10 }).await;
    assert!(matches!(small.read("big", 0, 10).await, Err(StoreError::Nats(_))));
    assert!(matches!(small.get("big").await, Err(StoreError::Nats(_))));
    assert_eq!(small.read("good", 0, 10).await.unwrap().len(), 1);
    small.close().await;
    store.close().await;
}

/// Set in the child process of the NATS SIGKILL test: the server URL.
const NATS_CRASH_CHILD_ENV: &str = "CIPHERLINE_STORE_NATS_CRASH_CHILD";

/// As [`acknowledged_appends_survive_sigkill`], on NATS: the process holding
/// the store (a relay) is killed mid-flood; every append JetStream
/// acknowledged is there, under its number, and nothing acknowledged is
/// numbered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_acknowledged_appends_survive_sigkill_of_the_writer() {
    if let Ok(url) = std::env::var(NATS_CRASH_CHILD_ENV) {
        let store = Arc::new(cipherline_store::NatsStore::connect(&url, Default::default()).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                // Two tasks per queue, so appends race on each queue.
                let queue = format!("q{}", t % 4);
                for i in 0..20_000u32 {
                    let payload = format!("{t}-{i}").into_bytes();
                    let seq = store.append(&queue, payload, 1).await.unwrap();
                    println!("ACK {queue} {seq} {t}-{i}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        return;
    }

    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let server = common::NatsServer::start();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "nats_acknowledged_appends_survive_sigkill_of_the_writer", "--nocapture", "--test-threads=1"])
        .env(NATS_CRASH_CHILD_ENV, server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(String, u64, String)> = Vec::new();
    let mut killed = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut parts = rest.split(' ');
            let (queue, seq, payload) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            acked.push((queue.to_owned(), seq.parse().unwrap(), payload.to_owned()));
        }
        if !killed && acked.len() >= 1000 {
            child.kill().unwrap(); // SIGKILL on Unix
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed && !status.success(), "the child must be killed mid-flood: {status:?}");

    let store = cipherline_store::NatsStore::connect(server.url(), Default::default()).await.unwrap();
    let mut lost = 0usize;
    for (queue, seq, payload) in &acked {
        let m = store.read(queue, seq - 1, 1).await.unwrap();
        if m.first().map(|m| (m.seq, m.payload.as_slice())) != Some((*seq, payload.as_bytes())) {
            lost += 1;
        }
    }
    for q in 0..4 {
        let queue = format!("q{q}");
        let all = store.read(&queue, 0, 1000).await.unwrap();
        let numbers = seqs(&all);
        let dense: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, dense, "{queue}: numbers start at 1 with no gap or repeat");
    }
    println!("NATS, SIGKILL of the writer: {} appends acknowledged, {lost} lost", acked.len());
    assert_eq!(lost, 0, "acknowledged appends lost after SIGKILL");
    store.close().await;
}
