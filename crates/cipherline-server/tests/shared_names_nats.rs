//! Name bindings shared through a real NATS JetStream (docs/cluster.md):
//! two relay nodes, each with its own data directory, on one `nats-server
//! -js`. A missing nats-server fails the test (CI installs it): a skip
//! would let CI pass without ever running it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cipherline_client::ClientError;
use cipherline_proto::app::ErrorCode;
use cipherline_server::{Identities, Limits, NatsOptions, NatsStore, RunOptions, SqliteOptions, SqliteStore};
use tokio::sync::oneshot;

use cipherline_testkit::NatsServer;
use common::{connect_as, key};

/// A relay node: its own SQLite store (blobs) in `dir`, queues and keys on NATS.
async fn node(dir: &std::path::Path, url: &str) -> (String, oneshot::Sender<()>) {
    let sqlite = Arc::new(SqliteStore::open(dir.join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let nats = Arc::new(NatsStore::connect(url, NatsOptions::default()).await.unwrap());
    let options = RunOptions {
        identities: Arc::new(Identities::open_in_memory()),
        store: Some(sqlite),
        nats_store: Some(nats),
        ..RunOptions::default()
    };
    let (addr, stop, _task) = common::start_node(common::node_limits(Limits::default()), options).await;
    (addr, stop)
}

fn mismatch(r: &Result<cipherline_client::Client, ClientError>) -> bool {
    matches!(r, Err(ClientError::Refused { code: ErrorCode::IdentityMismatch, .. }))
}

fn in_use(r: &Result<cipherline_client::Client, ClientError>) -> bool {
    matches!(r, Err(ClientError::Refused { code: ErrorCode::NameTaken, .. }))
}

/// The loser's key is refused the name: while a session of the winner may
/// still be live on a node (nodes share presence, docs/cluster.md step 3)
/// as in use, then as bound to another key.
async fn loser_refused(server: &str, name: &str, loser: u8) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = connect_as(server, name, Some(key(loser))).await;
        if !in_use(&r) || std::time::Instant::now() > deadline {
            return mismatch(&r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_jetstream_racing_to_bind_one_name_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let url = nats.url().to_owned();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let (a, _stop_a) = node(&da, &url).await;
    let (b, _stop_b) = node(&db, &url).await;
    for round in 0..4 {
        let name = format!("user{round}");
        let (on_a, on_b) = tokio::join!(connect_as(&a, &name, Some(key(1))), connect_as(&b, &name, Some(key(2))));
        let won = match (&on_a, &on_b) {
            // The loser is refused as bound to another key, or as in use
            // when the winner's session is live on the other node.
            (Ok(_), r) if mismatch(r) || in_use(r) => 1,
            (r, Ok(_)) if mismatch(r) || in_use(r) => 2,
            _ => panic!("round {round}: exactly one must win: {:?} {:?}", on_a.err(), on_b.err()),
        };
        drop((on_a, on_b));
        for server in [&a, &b] {
            assert!(loser_refused(server, &name, 3 - won).await, "{name}: the loser, anywhere");
            connect_as(server, &name, Some(key(won))).await.expect("the winner, anywhere");
        }
    }
}
