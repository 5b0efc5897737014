//! `cipherline serve --store nats://…` (issue 18, first step): queued
//! messages live in NATS JetStream, not in the node's data directory. A
//! message stored for an offline recipient through one relay process is
//! delivered by another relay process with its own, empty data directory
//! on the same NATS server, after the first was killed with SIGKILL.
//! Needs `nats-server` (Debian's package; `.ci/run` installs it): a missing
//! one fails the test, it is not skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherline_client::{Client, Options};
use cipherline_proto::ClientConfig;
use cipherline_proto::app::{ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_testkit::NatsServer;
use common::bin;
use tokio::time::timeout;

/// `serve` with the X25519 key `key`, the data directory `data` and the
/// store on `nats`.
async fn connect(addr: &str, name: &str, seed: u8) -> Client {
    let identity = Arc::new(IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap());
    let options = Options {
        config: Arc::new(ClientConfig { identity: Some(identity), ..ClientConfig::default() }),
        ..Options::default()
    };
    // This test is about the store, not about trusting the server.
    let any = |_: &str, _: &ServerPublicKey| Ok(());
    Client::connect(addr, name, &options, &any).await.unwrap()
}

#[test]
fn a_message_stored_through_one_relay_is_delivered_by_another_on_the_same_nats() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = common::x25519_key(dir.path());
    let mut first = common::nats_node(&key, &dir.path().join("node-a"), nats.url(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // Bob's key owns his name from his first visit; then he is away.
        connect(&first.addr, "bob", 2).await.close().await.unwrap();
        let mut alice = connect(&first.addr, "alice", 1).await;
        alice.send(Target::User("bob".into()), "kept in JetStream").await.unwrap();
        loop {
            match timeout(Duration::from_secs(20), alice.recv()).await.unwrap().unwrap() {
                ServerMessage::Ack { .. } => break,
                ServerMessage::Error { text, .. } => panic!("refused: {text}"),
                _ => {}
            }
        }
    });
    // SIGKILL: the first relay's data directory is left behind, unused.
    first.kill();

    let second = common::nats_node(&key, &dir.path().join("node-b"), nats.url(), &[]);
    runtime.block_on(async {
        let mut bob = connect(&second.addr, "bob", 2).await;
        bob.resume(0).await.unwrap();
        loop {
            if let ServerMessage::Message(d) = timeout(Duration::from_secs(20), bob.recv()).await.unwrap().unwrap() {
                assert_eq!(d.text, "kept in JetStream");
                assert_eq!(d.from, "alice");
                bob.handled(d.seq).await.unwrap();
                break;
            }
        }
        bob.close().await.unwrap();
    });
}

#[test]
fn serve_refuses_a_store_that_is_not_a_nats_address() {
    for bad in ["http://127.0.0.1:4222", "nats://127.0.0.1", "nats://:4222", "nats://a:1,b:2"] {
        let out = bin().args(["serve", "--check-config", "--store", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a NATS address"), "{bad}: {err}");
    }
    // A password in the address would be printed in the banner and logs.
    let out = bin().args(["serve", "--check-config", "--store", "nats://me:secret@127.0.0.1:4222"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no user or password") && !err.contains("secret"), "{err}");
}
