//! Operating NATS under a relay (issue 18, docs/cluster.md step 11): a
//! relay on a three-server JetStream cluster gives its streams three
//! replicas (moving streams made with one), and keeps storing, delivering
//! and binding names after one nats-server is killed with SIGKILL; the
//! config file's `store` key does what `--store` does. Needs `nats-server`:
//! a missing one fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::{Client, ClientError, Options};
use cipherline_proto::ClientConfig;
use cipherline_proto::app::{ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_server::{NatsOptions, NatsStore};
use cipherline_testkit::{NatsCluster, NatsServer};
use common::{Server, bin};
use tokio::time::timeout;

/// The streams the store makes (default prefix).
const STREAMS: [&str; 3] = ["CIPHERLINE_QUEUES", "CIPHERLINE_KV", "CIPHERLINE_BLOBS"];

fn x25519_key(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("server_x25519");
    let made =
        bin().args(["keygen", "--type", "x25519", "--out", key.to_str().unwrap()]).stdout(Stdio::null()).status();
    assert!(made.unwrap().success());
    key
}

async fn connect(addr: &str, name: &str, seed: u8) -> Result<Client, ClientError> {
    let identity = Arc::new(IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap());
    let options = Options {
        config: Arc::new(ClientConfig { identity: Some(identity), ..ClientConfig::default() }),
        ..Options::default()
    };
    // This test is about the store, not about trusting the server.
    let any = |_: &str, _: &ServerPublicKey| Ok(());
    Client::connect(addr, name, &options, &any).await
}

/// Retries `what` until it succeeds or `limit` passes (JetStream elects
/// leaders for a few seconds after a start or a kill).
async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    limit: Duration,
    mut what: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match timeout(Duration::from_secs(15), what()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(e)) => assert!(Instant::now() < deadline, "still failing after {limit:?}: {e:?}"),
            Err(_) => assert!(Instant::now() < deadline, "still no answer after {limit:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each store stream's replica count, read from the cluster.
async fn replica_counts(urls: &str) -> Vec<usize> {
    let addrs: Vec<async_nats::ServerAddr> = urls.split(',').map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(addrs).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut counts = Vec::new();
    for name in STREAMS {
        // Fetched now: its info is the cluster's current view.
        let stream = retry(Duration::from_secs(30), || js.get_stream(name)).await;
        counts.push(stream.cached_info().config.num_replicas);
    }
    counts
}

/// Sends `text` from `from` to `to` until the server acknowledges it
/// (a store call may fail while JetStream moves a leader).
async fn send_until_acked(from: &mut Client, to: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        match timeout(Duration::from_secs(20), from.send_acked(Target::User(to.into()), text)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => assert!(Instant::now() < deadline, "not acknowledged in 40 s: {e:?}"),
            Err(_) => assert!(Instant::now() < deadline, "no answer in 40 s"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Resumes `who` from 0 and returns the texts of the first `n` messages.
async fn receive(who: &mut Client, n: usize) -> Vec<String> {
    who.resume(0).await.unwrap();
    let mut texts = Vec::new();
    while texts.len() < n {
        if let ServerMessage::Message(d) = timeout(Duration::from_secs(30), who.recv()).await.unwrap().unwrap() {
            who.handled(d.seq).await.unwrap();
            texts.push(d.text);
        }
    }
    texts
}

#[test]
fn a_relay_on_three_nats_servers_uses_three_replicas_and_survives_one_killed() {
    let mut cluster = NatsCluster::start();
    let urls = cluster.urls();
    let dir = tempfile::tempdir().unwrap();
    let key = x25519_key(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Streams made earlier with one replica (as by a relay on a lone
    // server before the cluster grew): the relay moves them to three.
    runtime.block_on(async {
        let one = NatsOptions { replicas: Some(1), ..NatsOptions::default() };
        let store = retry(Duration::from_secs(60), || NatsStore::connect(&urls, one.clone())).await;
        store.close().await;
        assert_eq!(replica_counts(&urls).await, vec![1, 1, 1]);
    });

    let relay = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("node").to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--store",
        &urls,
    ]);
    runtime.block_on(async {
        // The banner comes before the store opens: wait (bounded) for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while replica_counts(&urls).await != vec![3, 3, 3] {
            assert!(Instant::now() < deadline, "streams not moved to min(3, cluster of 3) replicas in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        connect(&relay.addr, "bob", 2).await.unwrap().close().await.unwrap();
        let mut alice = connect(&relay.addr, "alice", 1).await.unwrap();
        send_until_acked(&mut alice, "bob", "before the kill").await;
        alice.close().await.unwrap();
    });

    cluster.server(0).kill();

    runtime.block_on(async {
        // Append (a new name bound on the way: carol's first visit), read,
        // acknowledge, all with one NATS server of three gone.
        let mut carol = retry(Duration::from_secs(40), || connect(&relay.addr, "carol", 3)).await;
        send_until_acked(&mut carol, "bob", "after the kill").await;
        let mut bob = retry(Duration::from_secs(40), || connect(&relay.addr, "bob", 2)).await;
        assert_eq!(receive(&mut bob, 2).await, vec!["before the kill", "after the kill"]);
        bob.close().await.unwrap();
        // carol's name is bound to her key: another key is refused it.
        assert!(connect(&relay.addr, "carol", 4).await.is_err(), "carol's binding survived");
        carol.close().await.unwrap();
    });
}

#[test]
fn the_config_files_store_key_starts_a_node_on_nats() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = x25519_key(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("store = {:?}\n\n[nats]\nreplicas = 1\n", nats.url())).unwrap();
    let relay = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("node").to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        connect(&relay.addr, "bob", 2).await.unwrap().close().await.unwrap();
        let mut alice = connect(&relay.addr, "alice", 1).await.unwrap();
        send_until_acked(&mut alice, "bob", "via the config file").await;
        alice.close().await.unwrap();
        // The message is in JetStream, not in the node's SQLite store.
        assert_eq!(replica_counts(nats.url()).await, vec![1, 1, 1]);
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut queues = js.get_stream("CIPHERLINE_QUEUES").await.unwrap();
        assert!(queues.info().await.unwrap().state.messages >= 1, "the message is stored in NATS");
    });
}

#[test]
fn bad_nats_options_are_refused_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.creds");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--store".into(),
                "nats://127.0.0.1:4222".into(),
                "--nats-creds".into(),
                missing.display().to_string(),
            ],
            "cannot read the NATS credentials file",
        ),
        (vec!["--nats-tls-required".into()], "without a NATS store"),
    ];
    for (args, needle) in cases {
        let out = bin().args(["serve", "--check-config"]).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // The same from the config file, with a certificate but no key.
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "store = \"nats://127.0.0.1:4222\"\n[nats]\ntls_cert = \"/etc/hostname\"\n").unwrap();
    let out = bin().args(["serve", "--check-config", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("go together"));
    // A creds file that is not one: `serve` itself says so, and exits.
    let creds = dir.path().join("bad.creds");
    std::fs::write(&creds, "not a creds file\n").unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("node"))
        .args(["--store", "nats://127.0.0.1:1", "--nats-creds"])
        .arg(&creds)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials file"), "{err}");
}

#[test]
fn the_contrib_cluster_relay_configs_pass_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let key = x25519_key(dir.path());
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/cluster");
    for n in 1..=3 {
        let config = contrib.join(format!("relay-{n}.toml"));
        let out = bin()
            .args(["serve", "--check-config", "--data-dir"])
            .arg(dir.path().join("state"))
            .arg("--key")
            .arg(&key)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "relay-{n}.toml: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("message store: NATS JetStream at nats://nats1.example.net:4222"), "{stdout}");
    }
}
