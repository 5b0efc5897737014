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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_live_on_one_node_is_taken_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, a, b) = two_nodes(dir.path()).await;
    nodes::a_name_live_on_one_node_is_taken_on_another(&a.addr, &b.addr).await;
    nodes::a_look_alike_of_a_keyed_user_live_on_one_node_is_refused_on_another(&a.addr, &b.addr).await;
    nodes::sessions_of_a_name_are_counted_across_nodes(&a.addr, &b.addr).await;
    nodes::a_binding_made_on_one_node_is_learned_by_another(&a, &b).await;
    a.stop().await;
    b.stop().await;
}

/// A node that dies (its runtime dropped: no goodbye, nothing cleaned up)
/// frees its names within 20 s: its heartbeat ages out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_frees_its_names_within_20_s() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let net = LocalNet::new();
    let a = Node::start(store.clone(), None, Some(Arc::new(net.bus()))).await;
    let doomed = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (bus, on_b) = (net.bus(), store.clone());
    let b = doomed.spawn(async move { Node::start(on_b, None, Some(Arc::new(bus))).await }).await.unwrap();
    let guest = common::connect_as(&b.addr, "guest", None).await.unwrap();
    assert!(nodes::accepted_within(&a.addr, "guest", std::time::Duration::ZERO).await.is_none(), "taken on b");
    std::mem::forget((b, guest));
    let died = std::time::Instant::now();
    doomed.shutdown_background();
    // Refused for a while after (the dead node's entries stay until its
    // heartbeat ages out), then free.
    assert!(
        nodes::accepted_within(&a.addr, "guest", std::time::Duration::ZERO).await.is_none(),
        "not freed by a goodbye"
    );
    nodes::accepted_within(&a.addr, "guest", std::time::Duration::from_secs(20)).await.expect("free within 20 s");
    assert!(died.elapsed() < std::time::Duration::from_secs(21));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_left_leave_no_keys_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a, b) = two_nodes(dir.path()).await;
    nodes::names_left_leave_no_keys_behind(&a.addr, &b.addr, &*store).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_room_message_reaches_members_on_three_nodes_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let net = LocalNet::new();
    let a = Node::start(store.clone(), None, Some(Arc::new(net.bus()))).await;
    let b = Node::start(store.clone(), None, Some(Arc::new(net.bus()))).await;
    let c = Node::start(store.clone(), None, Some(Arc::new(net.bus()))).await;
    nodes::fanout::an_open_room_message_reaches_members_on_three_nodes_once_each(&a.addr, &b.addr, &c.addr).await;
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_reaches_a_live_only_user_on_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, a, b) = two_nodes(dir.path()).await;
    nodes::fanout::a_direct_message_reaches_a_live_only_user_on_another_node(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_crosses_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, a, b) = two_nodes(dir.path()).await;
    nodes::fanout::delivered_crosses_nodes(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_offer_to_other_nodes_only_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, a, b) = two_nodes(dir.path()).await;
    nodes::fanout::a_v1_offer_to_other_nodes_only_is_refused(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_is_charged_for_members_on_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let net = LocalNet::new();
    let limits = nodes::fanout::tight_bytes();
    let a = Node::start_limited(store.clone(), None, Some(Arc::new(net.bus())), limits.clone()).await;
    let b = Node::start_limited(store.clone(), None, Some(Arc::new(net.bus())), limits).await;
    nodes::fanout::a_room_message_is_charged_for_members_on_other_nodes(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
}
