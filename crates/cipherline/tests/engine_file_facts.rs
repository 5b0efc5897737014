//! The engine's file facts that `listen` words its lines by (issue 17):
//! `RefuseFile` (a version-1 offer declined with a reason its sender is
//! told), `Received` (a version-1 file's SHA-256 and verdict, after its
//! end) and `Download` (an end-to-end record: none without an end-to-end
//! engine), against the real server and a real `send`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use cipherline_client::engine::{
    Command, ConnectFailure, Connecting, ConnectionState, Connector, Engine, Event, FileRef, Reply, Session,
    TransferState, Verified,
};
use cipherline_client::peers::Peers;
use cipherline_client::{Client, Options};
use cipherline_proto::crypto::kem::ServerPublicKey;
use common::Server;
use tokio::sync::mpsc;

/// Connects as `alice` with the server's key pinned, no identity key (so
/// every file goes the version-1 way) and no local store.
struct Pinned {
    addr: String,
    fingerprint: String,
}

impl Connector for Pinned {
    fn connect(&self, _first: bool) -> Connecting<'_> {
        Box::pin(async move {
            let want = self.fingerprint.clone();
            let pin = move |_: &str, key: &ServerPublicKey| {
                let got = cipherline_keys::Fingerprint::of_server_key(key).to_string();
                if got == want { Ok(()) } else { Err(format!("fingerprint {got} is not {want}")) }
            };
            let client = Client::connect(&self.addr, "alice", &Options::default(), &pin)
                .await
                .map_err(|e| ConnectFailure { reason: e.to_string(), passing: false })?;
            let peers = Peers::load(&self.addr, None).unwrap();
            Ok(Session { client, peers, e2e: None })
        })
    }
}

/// SHA-256 of a file by the system's sha256sum (not the client's code).
fn sha256_hex(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

/// The next version-1 offer's id (other events skipped), within a minute.
async fn next_offer(events: &mut mpsc::Receiver<Event>) -> (u64, String, u64) {
    let wait = async {
        loop {
            match events.recv().await.unwrap() {
                Event::FileOffered { id, name, size, e2e: false, .. } => return (id, name, size),
                Event::Connection(ConnectionState::Stopped { reason }) => panic!("{reason}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("no offer came")
}

#[test]
fn a_refused_offer_tells_its_sender_why_and_a_received_file_has_its_facts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"twelve bytes").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(tokio::task::LocalSet::new().run_until(async {
        let connector = Pinned { addr: server.addr.clone(), fingerprint: server.fingerprint.clone() };
        let (engine, handle, mut events) = Engine::new(connector, server.addr.clone(), &["lobby".to_owned()]);
        let engine = tokio::task::spawn_local(engine.run());
        loop {
            match events.recv().await.unwrap() {
                Event::Connection(ConnectionState::Connected { .. }) => break,
                Event::Connection(ConnectionState::Stopped { reason }) => panic!("{reason}"),
                _ => {}
            }
        }
        // No end-to-end engine: no end-to-end record to read.
        assert!(handle.run(Command::Download(FileRef::Offer(1))).await.is_err());
        assert!(handle.run(Command::Received("o99".into())).await.is_err(), "nothing received yet");

        // Refused with a reason: the sender is told that reason.
        let send = server
            .client("send", "bob")
            .args(["--room", "lobby", "--file", small.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (id, name, size) = next_offer(&mut events).await;
        assert_eq!((name.as_str(), size), ("small.txt", 12));
        let reason = "too large: this receiver accepts files of at most 5 bytes";
        let reply = handle.run(Command::RefuseFile { id, reason: reason.to_owned() }).await.unwrap();
        assert_eq!(reply, Reply::Done);
        let out = tokio::task::spawn_blocking(move || send.wait_with_output().unwrap()).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(reason), "the sender is told why: {err}");
        assert!(handle.run(Command::GetFile { id, dir: inbox.clone() }).await.is_err(), "the offer is gone");

        // Accepted: once its end is reported, its facts are there.
        let send =
            server.client("send", "bob").args(["--room", "lobby", "--file", small.to_str().unwrap()]).spawn().unwrap();
        let (id, _, _) = next_offer(&mut events).await;
        let Reply::Transfer { transfer } = handle.run(Command::GetFile { id, dir: inbox.clone() }).await.unwrap()
        else {
            panic!("no transfer")
        };
        let path = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match events.recv().await.unwrap() {
                    Event::Transfer { transfer: t, state: TransferState::Done, path, .. } if t == transfer => {
                        return path.unwrap();
                    }
                    Event::Transfer { transfer: t, state: TransferState::Failed { why, .. }, .. } if t == transfer => {
                        panic!("{why}")
                    }
                    _ => {}
                }
            }
        })
        .await
        .unwrap();
        let Reply::Received(facts) = handle.run(Command::Received(transfer.clone())).await.unwrap() else {
            panic!("no facts")
        };
        assert_eq!((facts.transfer.as_str(), facts.from.as_str(), facts.size), (transfer.as_str(), "bob", 12));
        assert_eq!(facts.path, path);
        let hex: String = facts.sha256.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, sha256_hex(&small));
        assert_eq!(hex, sha256_hex(&path), "the file saved is the file sent");
        // bob's identity key signed it, seen here for the first time.
        assert!(matches!(facts.verified, Verified::New | Verified::Unsigned), "{:?}", facts.verified);
        assert_eq!(facts.new_key.is_some(), facts.verified == Verified::New);
        let _ = tokio::task::spawn_blocking(move || send.wait_with_output()).await;
        drop(handle);
        drop(events);
        let _ = tokio::time::timeout(Duration::from_secs(5), engine).await;
    }));
}
