//! Two `cipherline serve --store nats://…` processes on one nats-server
//! are nodes of one cluster with no further option (docs/cluster.md,
//! steps 2 and 3): a message sent through one reaches its recipient on the
//! other at once, a name in use on one is taken on the other, and a node
//! killed with SIGKILL frees its names within 20 s. Needs `nats-server`: a
//! missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::{Client, ClientError, Options};
use cipherline_proto::ClientConfig;
use cipherline_proto::app::{ErrorCode, ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_testkit::NatsServer;
use tokio::time::timeout;

async fn connect(addr: &str, name: &str, seed: Option<u8>) -> Result<Client, ClientError> {
    let identity = seed.map(|s| Arc::new(IdentityKey::ed25519_from_seed(&[s; 32]).unwrap()));
    let options =
        Options { config: Arc::new(ClientConfig { identity, ..ClientConfig::default() }), ..Options::default() };
    let any = |_: &str, _: &ServerPublicKey| Ok(());
    Client::connect(addr, name, &options, &any).await
}

fn taken(r: &Result<Client, ClientError>) -> bool {
    matches!(r, Err(ClientError::Refused { code: ErrorCode::NameTaken, .. }))
}

#[test]
fn two_serve_processes_on_one_nats_wake_each_other_share_names_and_a_killed_one_frees_them() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = common::x25519_key(dir.path());
    let mut a = common::nats_node(&key, &dir.path().join("node-a"), nats.url(), &[]);
    let b = common::nats_node(&key, &dir.path().join("node-b"), nats.url(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut bob = connect(&b.addr, "bob", Some(2)).await.unwrap();
        bob.resume(0).await.unwrap();
        let mut alice = connect(&a.addr, "alice", Some(1)).await.unwrap();
        // Let bob's Resume (and so his node's subscription) land first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.send_acked(Target::User("bob".into()), "across nodes").await.unwrap();
        // Well within the 5 s re-read: the wake crossed NATS.
        loop {
            match timeout(Duration::from_millis(1500), bob.recv()).await.expect("at once").unwrap() {
                ServerMessage::Message(d) => {
                    assert_eq!(d.text, "across nodes");
                    break;
                }
                _ => continue,
            }
        }
        let guest = connect(&a.addr, "guest", None).await.unwrap();
        assert!(taken(&connect(&b.addr, "guest", None).await), "guest is in use on a");
        std::mem::forget(guest);
    });
    a.kill();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match connect(&b.addr, "guest", None).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "guest still taken 20 s after a died: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
