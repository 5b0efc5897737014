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
