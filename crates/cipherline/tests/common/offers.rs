//! Helpers of the version-1 file tests against a daemon
//! (`daemon_offers.rs`, `offers_attacks.rs`): a raw client to play the
//! other side, its file messages, a transfer's end, a directory's names.

use std::path::Path;
use std::time::Duration;

use cipherline_client::{Client, Options};
use cipherline_proto::app::ServerMessage;
use cipherline_proto::crypto::kem::ServerPublicKey;
use serde_json::Value;

use super::Server;
use super::daemon::Daemon;

/// The `transfer` notification that ends `transfer` (done, failed or
/// cancelled).
pub fn ended(daemon: &mut Daemon, transfer: &str) -> Value {
    daemon.wait_for("transfer", |p| {
        p["transfer"] == transfer && matches!(p["state"].as_str(), Some("done" | "failed" | "cancelled"))
    })
}

/// The entries of `dir` (names), sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A raw client without an identity key, in the lobby.
pub async fn raw(server: &Server, name: &str) -> Client {
    let want = server.fingerprint.clone();
    let pin = move |_: &str, key: &ServerPublicKey| {
        let got = cipherline_keys::Fingerprint::of_server_key(key).to_string();
        if got == want { Ok(()) } else { Err(format!("fingerprint {got} is not {want}")) }
    };
    let mut client = Client::connect(&server.addr, name, &Options::default(), &pin).await.unwrap();
    client.join("lobby").await.unwrap();
    client
}

/// The next file message the raw client gets (within 20 s); others are
/// skipped.
pub async fn next_file(client: &mut Client) -> ServerMessage {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), client.recv()).await.expect("no file message").unwrap();
        if matches!(
            msg,
            ServerMessage::FileOffered { .. }
                | ServerMessage::FileAnswered { .. }
                | ServerMessage::FileData { .. }
                | ServerMessage::FileDone { .. }
                | ServerMessage::FileCancelled { .. }
                | ServerMessage::FileAcked { .. }
        ) {
            return msg;
        }
    }
}
