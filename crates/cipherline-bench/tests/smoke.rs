//! Each mode of the generator, briefly, against an in-process server on
//! 127.0.0.1:0: the run completes and the JSON has its fields. No timing is
//! asserted. The IRC mode runs only where ngircd is installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cipherline_keys::Fingerprint;
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_server::{Limits, Settings};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::timeout;

struct Server {
    addr: SocketAddr,
    fingerprint: String,
}

async fn start_server() -> Server {
    let key = Arc::new(ServerKey::x25519_from_bytes(&[0x42; 32]).unwrap());
    let fingerprint = Fingerprint::from_bytes(key.public_key().fingerprint()).to_string();
    // Every generator connection comes from 127.0.0.1: lift the
    // per-address limits as a benchmark would.
    let limits = Limits {
        messages_per_sec: 10_000,
        burst: 10_000,
        queue_len: 4096,
        max_handshakes_per_ip: 1024,
        max_sessions_per_ip: 100_000,
        reserved_for_new_addresses_percent: 0,
        new_connections_per_ip_per_sec: 1_000_000,
        new_connections_burst_per_ip: 1_000_000,
        ..Limits::default()
    };
    let settings = Settings { protocol: Arc::new(cipherline_proto::ServerConfig::new(key)), limits };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(cipherline_server::run(listener, settings, std::future::pending::<()>()));
    Server { addr, fingerprint }
}

/// Runs the generator and returns its one JSON object.
async fn bench(server: &Server, args: &[&str]) -> Value {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cipherline-bench"));
    cmd.args(args)
        .args(["--server", &server.addr.to_string(), "--json"])
        .env("CIPHERLINE_HOME", home.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if args[0] != "fanout" || !args.contains(&"irc") {
        cmd.args(["--server-fingerprint", &server.fingerprint]);
    }
    let out = timeout(Duration::from_secs(30), cmd.output()).await.expect("the run stops by itself").unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{args:?}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(json["ok"], true, "{json}");
    json
}

fn has(json: &Value, fields: &[&str]) {
    for f in fields {
        assert!(json.get(f).is_some_and(|v| !v.is_null()), "missing {f} in {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_reports_its_fields() {
    let server = start_server().await;
    let pid = std::process::id().to_string();

    let hs = bench(&server, &["handshake", "--suite", "0x0221", "--duration", "0.3", "--concurrency", "2"]).await;
    has(&hs, &["handshakes_per_sec", "p50_ms", "p99_ms", "suite"]);
    assert_eq!(hs["suite_code"], "0x0221");

    let fan = bench(&server, &["fanout", "--clients", "3", "--messages", "5", "--server-pid", &pid]).await;
    has(&fan, &["deliveries_per_sec", "p50_ms", "p99_ms", "server_cpu_secs"]);
    assert_eq!(fan["deliveries"], 3 * 5 * 2);

    let paced = bench(&server, &["fanout", "--clients", "2", "--messages", "3", "--rate", "50"]).await;
    assert_eq!(paced["shortfall"], 0);

    let bulk = bench(&server, &["bulk", "--bytes", "3000000"]).await;
    has(&bulk, &["mb_per_sec"]);
    assert_eq!(bulk["bytes"], 3_000_000);

    let idle = bench(&server, &["idle", "--connections", "5", "--hold", "0.2", "--server-pid", &pid]).await;
    has(&idle, &["established", "server_rss_kib", "server_rss_per_conn_bytes"]);
    assert_eq!(idle["established"], 5);
}

#[test]
fn private_op_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server");
    let key = cipherline_keys::PrivateKey::generate(cipherline_keys::KeyKind::X25519).unwrap();
    cipherline_keys::write_key_pair(&key, &path, None, false).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cipherline-bench"))
        .args(["private-op", "--duration", "0.1", "--json", "--key"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    has(&json, &["ops_per_sec", "key"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_refused() {
    let server = start_server().await;
    let other = Fingerprint::from_bytes([7; 32]).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_cipherline-bench"))
        .args(["handshake", "--suite", "0x0221", "--duration", "0.2", "--server", &server.addr.to_string()])
        .args(["--server-fingerprint", &other])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not trusted"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_fanout_against_ngircd() {
    let Some(ngircd) = ["/usr/sbin/ngircd", "/usr/bin/ngircd"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        println!("SKIP: ngircd is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let conf = dir.path().join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = bench.invalid\nInfo = bench\nListen = 127.0.0.1\nPorts = {port}\n\
             PidFile = {pid}\nMotdPhrase = bench\n[Limits]\nMaxPenaltyTime = 0\n\
             [Options]\nPAM = no\nIdent = no\nDNS = no\n",
            pid = dir.path().join("ngircd.pid").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(ngircd)
        .arg("--nodaemon")
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = Server { addr, fingerprint: String::new() };
    let irc = bench(&server, &["fanout", "--protocol", "irc", "--clients", "3", "--messages", "5"]).await;
    has(&irc, &["deliveries_per_sec", "p50_ms", "p99_ms"]);
    assert_eq!(irc["deliveries"], 3 * 5 * 2);
    let _ = child.kill().await;
}
