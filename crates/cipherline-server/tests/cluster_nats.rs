//! The scenarios of `tests/cluster.rs` on a real nats-server: two relay
//! nodes, each with its own data directory, queues and keys on one
//! `nats-server -js`, waking each other over NATS core (the bus a server
//! on a `NatsStore` uses by default). A missing nats-server fails the test
//! (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;
mod nodes;

use std::sync::Arc;

use cipherline_server::{NatsOptions, NatsStore, SqliteOptions, SqliteStore};
use cipherline_testkit::NatsServer;

use nodes::Node;

async fn node(dir: &std::path::Path, url: &str) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let nats = Arc::new(NatsStore::connect(url, NatsOptions::default()).await.unwrap());
    Node::start(sqlite, Some(nats), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_a_message_sent_on_one_node_reaches_the_recipient_on_another_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let a = node(&dir.path().join("a"), nats.url()).await;
    let b = node(&dir.path().join("b"), nats.url()).await;
    nodes::a_message_sent_on_one_node_reaches_the_recipient_on_another_at_once(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_received_on_one_node_does_not_delete_what_a_session_on_another_has_not() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let a = node(&dir.path().join("a"), nats.url()).await;
    let b = node(&dir.path().join("b"), nats.url()).await;
    let store = NatsStore::connect(nats.url(), NatsOptions::default()).await.unwrap();
    nodes::received_on_one_node_does_not_delete_what_a_session_on_another_has_not(&a.addr, &b.addr, &store).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_a_name_live_on_one_node_is_taken_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let a = node(&dir.path().join("a"), nats.url()).await;
    let b = node(&dir.path().join("b"), nats.url()).await;
    nodes::a_name_live_on_one_node_is_taken_on_another(&a.addr, &b.addr).await;
    nodes::a_look_alike_of_a_keyed_user_live_on_one_node_is_refused_on_another(&a.addr, &b.addr).await;
    nodes::sessions_of_a_name_are_counted_across_nodes(&a.addr, &b.addr).await;
    nodes::a_binding_made_on_one_node_is_learned_by_another(&a, &b).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_names_left_leave_no_keys_behind() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let a = node(&dir.path().join("a"), nats.url()).await;
    let b = node(&dir.path().join("b"), nats.url()).await;
    let store = NatsStore::connect(nats.url(), NatsOptions::default()).await.unwrap();
    nodes::names_left_leave_no_keys_behind(&a.addr, &b.addr, &store).await;
    a.stop().await;
    b.stop().await;
}

/// Step 4 on NATS core: an open room across three nodes, a direct message
/// to a live-only user and a Delivered receipt across two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_live_traffic_crosses_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let a = node(&dir.path().join("a"), nats.url()).await;
    let b = node(&dir.path().join("b"), nats.url()).await;
    let c = node(&dir.path().join("c"), nats.url()).await;
    nodes::fanout::an_open_room_message_reaches_members_on_three_nodes_once_each(&a.addr, &b.addr, &c.addr).await;
    nodes::fanout::a_direct_message_reaches_a_live_only_user_on_another_node(&a.addr, &b.addr).await;
    nodes::fanout::delivered_crosses_nodes(&a.addr, &b.addr).await;
    nodes::fanout::a_v1_offer_to_other_nodes_only_is_refused(&a.addr, &b.addr).await;
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
