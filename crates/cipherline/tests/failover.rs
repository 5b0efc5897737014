//! Client failover (docs/cluster.md step 10): a `listen --reconnect` given
//! `--server A --server B` (two `serve --store nats://…` nodes with one
//! key) goes on on B when A dies with SIGKILL in the middle of a flood, and
//! shows every acknowledged message exactly once. Needs `nats-server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cipherline_testkit::NatsServer;
use common::{Server, bin, home_of, line_channel};

/// Messages the sender sends; the node is killed after `KILL_AFTER` shown.
const FLOOD: usize = 40;
const KILL_AFTER: usize = 10;

fn relay(key: &Path, data: &Path, nats: &NatsServer) -> Server {
    // One one-shot send per message, all from 127.0.0.1 within seconds:
    // lift the per-address connection rate (tested on its own in
    // cipherline-server's tests/admission.rs).
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        "[limits]\nnew_connections_per_ip_per_sec = 1000000\nnew_connections_burst_per_ip = 1000000\n",
    )
    .unwrap();
    common::nats_node(key, data, nats.url(), &["--config", config.to_str().unwrap()])
}

#[test]
fn a_listener_fails_over_to_the_next_node_and_shows_every_acknowledged_message_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = common::x25519_key(dir.path());
    let mut a = relay(&key, &dir.path().join("node-a"), &nats);
    let b = relay(&key, &dir.path().join("node-b"), &nats);
    assert_eq!(a.fingerprint, b.fingerprint, "one key, one fingerprint");

    // bob listens with A first (home) and B second.
    let mut bob = bin()
        .env("CIPHERLINE_HOME", home_of(&a, "bob"))
        .args(["listen", "--server", &a.addr, "--server", &b.addr, "--name", "bob"])
        .args(["--server-fingerprint", &a.fingerprint, "--reconnect", "--timeout", "120"])
        .args(["--count", &FLOOD.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut bob);

    // alice sends through B (which stays up), each message acknowledged
    // before the next; A is killed once bob has shown KILL_AFTER of them.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut acked = Vec::new();
    let mut killed = false;
    for i in 0..FLOOD {
        let text = format!("flood-{i:03}");
        // Until bob's listen has published his keys, a send is refused
        // (and nothing is kept): asked again then.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let out = loop {
            let out = b.client("send", "alice").args(["--to", "bob", &text]).output().unwrap();
            let refused = String::from_utf8_lossy(&out.stderr).contains("no end-to-end key package yet");
            if !refused || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        acked.push(text);
        while let Ok(line) = lines.try_recv() {
            if let Some(m) = line.split_whitespace().last().filter(|w| w.starts_with("flood-")) {
                *seen.entry(m.to_owned()).or_default() += 1;
            }
        }
        if !killed && seen.len() >= KILL_AFTER {
            a.kill();
            killed = true;
        }
    }
    assert!(killed, "bob never showed {KILL_AFTER} messages through A");
    // Everything else arrives through B after the failover.
    while seen.len() < FLOOD {
        let line = lines.recv_timeout(Duration::from_secs(90)).expect("bob stopped before every message");
        if let Some(m) = line.split_whitespace().last().filter(|w| w.starts_with("flood-")) {
            *seen.entry(m.to_owned()).or_default() += 1;
        }
    }
    assert!(bob.wait().unwrap().success(), "listen --count ends well");
    for text in &acked {
        assert_eq!(seen.get(text), Some(&1), "{text} shown exactly once: {seen:?}");
    }
}

/// A refused key at one address ends the attempt: the client does not go
/// on to the next address, since every node of one relay presents the same
/// key and a different one is an attack, not a node that is down (exit 3).
/// Without the pin's refusal the same command succeeds on the right node.
#[test]
fn a_refused_key_at_one_address_is_not_passed_over_for_the_next() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (right, other) = (Server::quick(dir_a.path()), Server::quick(dir_b.path()));
    assert_ne!(right.fingerprint, other.fingerprint);
    let listen = |first: &str, second: &str| {
        bin()
            .env("CIPHERLINE_HOME", home_of(&right, "carl"))
            .args(["listen", "--name", "carl", "--no-identity", "--timeout", "1"])
            .args(["--server", first, "--server", second, "--server-fingerprint", &right.fingerprint])
            .output()
            .unwrap()
    };
    let out = listen(&other.addr, &right.addr);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = listen(&right.addr, &other.addr);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Each address is trusted on its own: the relay's key, known at one node's
/// address, is a first contact at another's, refused without `--accept-new`
/// (or a pin) even though it is the same key (exit 3).
#[test]
fn a_known_key_at_a_new_address_is_a_first_contact_there() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::x25519_key(dir.path());
    let node = |name: &str| {
        let data = dir.path().join(name);
        Server::start(&[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
    };
    let (a, b) = (node("node-a"), node("node-b"));
    assert_eq!(a.fingerprint, b.fingerprint);
    let listen = |server: &Server, trust: &[&str]| {
        bin()
            .env("CIPHERLINE_HOME", home_of(&a, "dora"))
            .args(["listen", "--name", "dora", "--no-identity", "--timeout", "1", "--server", &server.addr])
            .args(trust)
            .output()
            .unwrap()
    };
    assert_eq!(listen(&a, &["--accept-new"]).status.code(), Some(0), "first contact at a, accepted");
    assert_eq!(listen(&a, &[]).status.code(), Some(0), "known at a");
    let out = listen(&b, &[]);
    assert_eq!(out.status.code(), Some(3), "same key, new address: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listen(&b, &["--accept-new"]).status.code(), Some(0), "accepted at b too");
}
