//! Name bindings in a store shared by several servers (docs/cluster.md):
//! two servers on one `SqliteStore` stand in for two relay nodes on one
//! JetStream. Exactly one of two racing bindings of a name wins, both
//! servers then agree on it, and it outlives the servers; a names file is
//! copied into the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherline_client::ClientError;
use cipherline_proto::app::ErrorCode;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_server::{Identities, IdentityPolicy, Limits, RunOptions, SqliteOptions, SqliteStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use common::{connect_as, fp, key};

/// A server on `store` with these identities; stops when the sender is
/// used or dropped.
async fn node(identities: Identities, store: Arc<SqliteStore>) -> (String, oneshot::Sender<()>, JoinHandle<()>) {
    let limits = common::node_limits(Limits { max_names_per_key: 100, ..Limits::default() });
    common::start_node(
        limits,
        RunOptions { identities: Arc::new(identities), store: Some(store), ..RunOptions::default() },
    )
    .await
}

fn mismatch(r: &Result<cipherline_client::Client, ClientError>) -> bool {
    matches!(r, Err(ClientError::Refused { code: ErrorCode::IdentityMismatch, .. }))
}

/// Whether `name` with `identity` is refused as bound to another key on
/// `addr`. A session of the name that a test just dropped may still be
/// closing on the server, which refuses the name as in use meanwhile: that
/// answer is asked again (for 5 s at most), any other is final.
async fn refused_as_bound(addr: &str, name: &str, identity: Option<Arc<IdentityKey>>) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = connect_as(addr, name, identity.clone()).await;
        match r {
            Err(ClientError::Refused { code: ErrorCode::NameTaken, .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return mismatch(&other),
        }
    }
}

async fn stop(stop: oneshot::Sender<()>, task: JoinHandle<()>) {
    stop.send(()).unwrap();
    timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_racing_to_bind_one_name_agree_on_one_key_that_outlives_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let (a, stop_a, task_a) = node(Identities::open_in_memory(), store.clone()).await;
    let (b, stop_b, task_b) = node(Identities::open_in_memory(), store.clone()).await;

    // Each round, key 1 claims a fresh name on one server and key 2 the same
    // name on the other, at once.
    let mut winners = Vec::new();
    for round in 0..8 {
        let name = format!("user{round}");
        let (on_a, on_b) = tokio::join!(connect_as(&a, &name, Some(key(1))), connect_as(&b, &name, Some(key(2))));
        let won = match (&on_a, &on_b) {
            (Ok(_), r) if mismatch(r) => 1,
            (r, Ok(_)) if mismatch(r) => 2,
            _ => panic!("round {round}: exactly one must win, the other be refused: {:?} {:?}", on_a.err(), on_b.err()),
        };
        drop((on_a, on_b));
        // Both servers now hold the winner's binding, whichever made it.
        let loser = 3 - won;
        for server in [&a, &b] {
            assert!(refused_as_bound(server, &name, Some(key(loser))).await, "{name}: the loser, anywhere");
            assert!(refused_as_bound(server, &name, None).await, "{name}: no key, anywhere");
            connect_as(server, &name, Some(key(won))).await.expect("the winner, anywhere");
        }
        winners.push((name, won));
    }
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;

    // A restart (fresh identities, no names file) keeps every binding: the
    // store holds them.
    let (c, stop_c, task_c) = node(Identities::open_in_memory(), store.clone()).await;
    for (name, won) in &winners {
        assert!(refused_as_bound(&c, name, Some(key(3 - won))).await, "{name} after a restart");
        // A look-alike of a bound name is refused from the loaded table too
        // (asked before the owner connects: while the owner's session is
        // still closing, the look-alike would be refused as in use instead).
        let like = name.replace('u', "U").replace('1', "l");
        assert!(refused_as_bound(&c, &like, Some(key(9))).await, "{like}");
        connect_as(&c, name, Some(key(*won))).await.expect("the owner after a restart");
    }
    stop(stop_c, task_c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_names_file_is_copied_into_the_store_and_the_store_wins_a_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    // Bound in the store first, through a server without a names file.
    let (a, stop_a, task_a) = node(Identities::open_in_memory(), store.clone()).await;
    connect_as(&a, "dave", Some(key(4))).await.unwrap();
    stop(stop_a, task_a).await;

    // An old names file binds carol to key 3, and dave to key 5.
    let names = dir.path().join("names");
    let text = format!("carol {}\ndave {}\n", fp(&key(3)), fp(&key(5)));
    std::fs::write(&names, &text).unwrap();
    let ids = Identities::load(IdentityPolicy::Open { names_file: Some(names.clone()) }).unwrap();
    let (b, stop_b, task_b) = node(ids, store.clone()).await;
    connect_as(&b, "carol", Some(key(3))).await.expect("carol, from the names file");
    connect_as(&b, "dave", Some(key(4))).await.expect("dave: the store's binding holds");
    assert!(refused_as_bound(&b, "dave", Some(key(5))).await, "dave: not the file's key");
    connect_as(&b, "erin", Some(key(6))).await.unwrap();
    stop(stop_b, task_b).await;
    assert_eq!(std::fs::read_to_string(&names).unwrap(), text, "the file is read, never written, with a store");

    // A server without the file knows carol and erin: they are in the store.
    let (c, stop_c, task_c) = node(Identities::open_in_memory(), store.clone()).await;
    assert!(refused_as_bound(&c, "carol", Some(key(7))).await);
    assert!(refused_as_bound(&c, "erin", Some(key(7))).await);
    connect_as(&c, "carol", Some(key(3))).await.unwrap();
    stop(stop_c, task_c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_racing_to_bind_two_look_alike_names_to_two_keys_bind_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let (a, stop_a, task_a) = node(Identities::open_in_memory(), store.clone()).await;
    let (b, stop_b, task_b) = node(Identities::open_in_memory(), store.clone()).await;
    for round in 0..8 {
        // `kim3` and `kirn3` look alike ("rn" passes for "m").
        let (one, two) = (format!("kim{round}"), format!("kirn{round}"));
        let (on_a, on_b) = tokio::join!(connect_as(&a, &one, Some(key(1))), connect_as(&b, &two, Some(key(2))));
        let won = match (&on_a, &on_b) {
            (Ok(_), r) if mismatch(r) => 1,
            (r, Ok(_)) if mismatch(r) => 2,
            _ => panic!("round {round}: exactly one must win: {:?} {:?}", on_a.err(), on_b.err()),
        };
        drop((on_a, on_b));
        // The winner may still use a look-alike of its own name; the loser
        // gets neither, on either server.
        let (mine, theirs) = if won == 1 { (&two, &one) } else { (&one, &two) };
        for server in [&a, &b] {
            assert!(refused_as_bound(server, theirs, Some(key(3 - won))).await, "{theirs}");
            assert!(refused_as_bound(server, mine, Some(key(3 - won))).await, "{mine}");
        }
        connect_as(&b, mine, Some(key(won))).await.expect("the winner's own look-alike");
    }
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_bound_through_one_server_is_refused_to_keyless_clients_of_another_started_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let (a, stop_a, task_a) = node(Identities::open_in_memory(), store.clone()).await;
    let (b, stop_b, task_b) = node(Identities::open_in_memory(), store.clone()).await;
    // B loaded its table before zed was bound through A.
    connect_as(&a, "zed", Some(key(1))).await.unwrap();
    assert!(refused_as_bound(&b, "zed", None).await, "the name itself");
    assert!(refused_as_bound(&b, "ZED", None).await, "another spelling");
    connect_as(&a, "wanda", Some(key(1))).await.unwrap();
    assert!(refused_as_bound(&b, "vvanda", None).await, "a look-alike (vv for w)");
    connect_as(&b, "guest", None).await.expect("an unbound name");
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_names_file_is_copied_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let names = dir.path().join("names");
    // More names than one batch of creations, one key each (fingerprints
    // need not belong to real keys here).
    let text: String = (0..1500u32)
        .map(|i| {
            let mut fp = [0u8; 32];
            fp[..4].copy_from_slice(&i.to_be_bytes());
            format!("n{i} {}\n", cipherline_keys::Fingerprint::from_bytes(fp))
        })
        .collect();
    std::fs::write(&names, text).unwrap();
    let ids = Identities::load(IdentityPolicy::Open { names_file: Some(names) }).unwrap();
    let any = Arc::new(cipherline_server::AnyStore::Sqlite(store.clone()));
    assert_eq!(ids.use_store(any).await.unwrap(), 1500);
    // A server without the file refuses each of them to another key.
    let (c, stop_c, task_c) = node(Identities::open_in_memory(), store.clone()).await;
    for name in ["n0", "n255", "n256", "n1499"] {
        assert!(refused_as_bound(&c, name, Some(key(7))).await, "{name}");
    }
    stop(stop_c, task_c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_user_bound_through_another_server_since_the_start_is_stored() {
    use cipherline_proto::app::{ServerMessage, Target};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let (a, stop_a, task_a) = node(Identities::open_in_memory(), store.clone()).await;
    let (b, stop_b, task_b) = node(Identities::open_in_memory(), store.clone()).await;
    // zed is bound through A, after B loaded its table, and goes offline.
    connect_as(&a, "zed", Some(key(1))).await.unwrap().close().await.unwrap();
    let mut yan = connect_as(&b, "yan", Some(key(2))).await.unwrap();
    yan.send_acked(Target::User("Zed".into()), "for zed").await.expect("B finds zed in the store and stores it");
    // zed reads it through A: the queue is the shared store's.
    let mut zed = connect_as(&a, "zed", Some(key(1))).await.unwrap();
    zed.resume(0).await.unwrap();
    let text = loop {
        if let ServerMessage::Message(d) = timeout(Duration::from_secs(5), zed.recv()).await.unwrap().unwrap() {
            break d.text;
        }
    };
    assert_eq!(text, "for zed");
    // A name bound nowhere is still unknown.
    let err = yan.send_acked(Target::User("nobody".into()), "?").await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::UnknownUser, .. }), "{err:?}");
    stop(stop_a, task_a).await;
    stop(stop_b, task_b).await;
}
