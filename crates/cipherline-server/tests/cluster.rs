//! Two relay nodes in one process on one `SqliteStore`, talking over an
//! in-process bus: every routing step of docs/cluster.md's step 2 without
//! a nats-server (`tests/cluster_nats.rs` repeats them on one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;
mod nodes;

use std::sync::Arc;

use cipherline_server::cluster::LocalNet;
use cipherline_server::{SqliteOptions, SqliteStore};

use nodes::Node;

async fn two_nodes(dir: &std::path::Path) -> (Arc<SqliteStore>, Node, Node) {
    let store = Arc::new(SqliteStore::open(dir.join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let net = LocalNet::new();
    let a = Node::start(store.clone(), None, Some(Arc::new(net.bus()))).await;
    let b = Node::start(store.clone(), None, Some(Arc::new(net.bus()))).await;
    (store, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_on_one_node_reaches_the_recipient_on_another_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, a, b) = two_nodes(dir.path()).await;
    nodes::a_message_sent_on_one_node_reaches_the_recipient_on_another_at_once(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_on_one_node_does_not_delete_what_a_session_on_another_has_not() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a, b) = two_nodes(dir.path()).await;
    nodes::received_on_one_node_does_not_delete_what_a_session_on_another_has_not(&a.addr, &b.addr, &*store).await;
    a.stop().await;
    b.stop().await;
}
