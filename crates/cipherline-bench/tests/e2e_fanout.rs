//! `e2e-fanout` against an in-process server with a store on 127.0.0.1:0:
//! every group message reaches every other member of the end-to-end room.
//! A correctness test; no timing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cipherline_keys::Fingerprint;
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_server::{Limits, RunOptions, Settings, SqliteOptions, SqliteStore};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_message_reaches_every_other_member() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.sqlite3"), SqliteOptions::default()).await.unwrap());
    let key = Arc::new(ServerKey::x25519_from_bytes(&[0x42; 32]).unwrap());
    let fingerprint = Fingerprint::from_bytes(key.public_key().fingerprint()).to_string();
    // All generator connections come from 127.0.0.1, as in smoke.rs.
    let limits = Limits {
        messages_per_sec: 10_000,
        burst: 10_000,
        max_handshakes_per_ip: 1024,
        max_sessions_per_ip: 100_000,
        reserved_for_new_addresses_percent: 0,
        new_connections_per_ip_per_sec: 1_000_000,
        new_connections_burst_per_ip: 1_000_000,
        ..Limits::default()
    };
    // Identity keys asked for, as `cipherline serve` does: a keyed user
    // owns its name and has a stored queue.
    let protocol = cipherline_proto::ServerConfig {
        client_auth: cipherline_proto::message::ClientAuthRequest::Optional,
        ..cipherline_proto::ServerConfig::new(key)
    };
    let settings = Settings { protocol: Arc::new(protocol), limits };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let options = RunOptions { store: Some(store), ..RunOptions::default() };
    tokio::spawn(cipherline_server::run_with(listener, settings, options, std::future::pending::<()>()));

    // Twice: the second run needs a fresh room (names cannot be reused),
    // finds the first run's members' queues drained, and has 10 members,
    // invited by two commits (8 and 1).
    for (clients, messages) in [(3u64, 5u64), (10, 2)] {
        let (n, m) = (clients.to_string(), messages.to_string());
        let home = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cipherline-bench"))
            .args(["e2e-fanout", "--clients", &n, "--messages", &m, "--json", "--server", &addr])
            .args(["--server-fingerprint", &fingerprint, "--server-pid", &std::process::id().to_string()])
            .env("CIPHERLINE_HOME", home.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = timeout(Duration::from_secs(60), out).await.expect("the run stops by itself").unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        let json: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        println!("{json}");
        assert_eq!(json["ok"], true, "{json}");
        assert_eq!(json["mode"], "e2e-fanout");
        assert_eq!(json["deliveries"], clients * messages * (clients - 1), "{json}");
        assert_eq!(json["shortfall"], 0);
        assert_eq!(json["queue_full"], 0);
        assert_eq!(json["payload_bytes"], 270);
        for f in ["deliveries_per_sec", "p50_ms", "p99_ms", "server_cpu_us_per_delivery"] {
            assert!(json.get(f).is_some_and(|v| !v.is_null()), "missing {f} in {json}");
        }
    }
}
