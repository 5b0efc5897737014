//! `cipherline serve` as a user runs it: zero config, key reuse, a config
//! file, a seed user's PKCS#1 key, clients chatting, and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cipherline_client::{Client, Options};
use cipherline_proto::app::{ErrorCode, ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use common::Server as Running;
use tokio::time::timeout;

fn start(args: &[&str]) -> Running {
    Running::start(args)
}

async fn client(server: &Running, name: &str) -> Client {
    let want = server.fingerprint.clone();
    let pin = move |_: &str, key: &ServerPublicKey| {
        let got = cipherline_keys::Fingerprint::of_server_key(key).to_string();
        if got == want { Ok(()) } else { Err(format!("fingerprint {got} is not {want}")) }
    };
    Client::connect(&server.addr, name, &Options::default(), &pin).await.unwrap()
}

/// The suites a server lists in its ServerIdentity.
async fn offered_suites(addr: &str) -> Vec<u16> {
    use tokio::io::AsyncReadExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut frames = cipherline_proto::Deframer::new();
    let mut buf = [0u8; 4096];
    let frame = loop {
        if let Some(frame) = frames.next_frame().unwrap() {
            break frame;
        }
        let n = timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the server closed before ServerIdentity");
        frames.push(&buf[..n]);
    };
    let (_, body) = cipherline_proto::message::split_message(&frame.body).unwrap();
    cipherline_proto::message::ServerIdentity::decode(body).unwrap().suites
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_server_chats_reuses_its_key_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut server = start(&["--data-dir", data_arg, "--listen", "127.0.0.1:0"]);
    assert!(server.lines[0].starts_with("created a new RSA-3072 server key"), "{:?}", server.lines);
    assert!(server.fingerprint.starts_with("SHA256:"));
    let suites = offered_suites(&server.addr).await;
    assert_eq!(suites, [0x0111, 0x0112, 0x0121, 0x0122], "forward-secret suites only, never 0x0101 (PROTOCOL.md §5.3)");

    let mut alice = client(&server, "alice").await;
    let mut bob = client(&server, "bob").await;
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    alice.send_acked(Target::Room("lobby".into()), "hi bob").await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), bob.recv()).await.unwrap().unwrap() {
            ServerMessage::Message(d) => {
                assert_eq!((d.from.as_str(), d.text.as_str()), ("alice", "hi bob"));
                break;
            }
            ServerMessage::Notice { .. } => {}
            other => panic!("{other:?}"),
        }
    }

    let status = server.stop();
    assert!(status.success(), "exit 0 after a graceful shutdown, got {status}");
    let mut told = false;
    while let Ok(Ok(msg)) = timeout(Duration::from_secs(5), alice.recv()).await {
        told |= matches!(msg, ServerMessage::Error { code: ErrorCode::ShuttingDown, .. });
    }
    assert!(told, "clients are told the server is shutting down");

    // A second start reuses the key: same fingerprint, no "created".
    let mut again = start(&["--data-dir", data_arg, "--listen", "127.0.0.1:0"]);
    assert_eq!(again.fingerprint, server.fingerprint);
    assert!(!again.lines[0].starts_with("created"));
    assert!(again.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_and_a_seed_users_pkcs1_key() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("SKIP: openssl is not installed; cannot make a PKCS#1 key the way seed users do");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server_private_key.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out", key.to_str().unwrap(), "2048"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    set_mode(&key, 0o600);
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nkey = {:?}\n[limits]\nmax_connections = 1\n",
            dir.path().join("d"),
            key
        ),
    )
    .unwrap();
    let mut server = start(&["--config", config.to_str().unwrap()]);
    assert!(server.lines.iter().any(|l| l.contains("(RSA-2048)")), "{:?}", server.lines);
    // The limit from the file applies: one client at a time.
    let a = client(&server, "a").await;
    let err = Client::connect(&server.addr, "b", &Options::default(), &|_: &str, _: &ServerPublicKey| Ok(()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("server_busy"), "{err}");
    drop(a);
    assert!(server.stop().success());
}

#[test]
fn bad_configuration_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[limits]\nmax_conections = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cipherline"))
        .args(["serve", "--config", config.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_conections") && err.contains("hint:"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_cipherline"))
        .args(["serve", "--listen", "nonsense", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an address"));
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}
