//! What `listen` said before it ran on the client engine, and says again
//! (issue 17): a message of ours that expired unread, the sender's signed
//! send time on a plain line, and an unsigned message under a name whose
//! key is remembered marked as such (not as a changed key). A real server;
//! the peers are library clients, so they can sign with a chosen time or
//! not sign at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use cipherline_client::{Client, Options};
use cipherline_proto::ClientConfig;
use cipherline_proto::app::{ClientMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::signature::sign;
use common::daemon::Daemon;
use common::{Chat, Server, home_of, line_channel, wait_for_line};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A library client named `name`, signing with `identity` (if any).
async fn connect(server: &Server, name: &str, identity: Option<Arc<IdentityKey>>) -> Client {
    let options =
        Options { config: Arc::new(ClientConfig { identity, ..ClientConfig::default() }), ..Options::default() };
    let any = |_: &str, _: &ServerPublicKey| Ok(());
    Client::connect(&server.addr, name, &options, &any).await.unwrap()
}

/// The lines a child writes to standard error.
fn stderr_channel(child: &mut Child) -> Receiver<String> {
    let err = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `listen` as `name` for `secs` seconds with `extra` arguments;
/// returns (exit code, standard output, standard error).
fn listen_for(server: &Server, name: &str, secs: u64, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = server.client("listen", name).args(["--timeout", &secs.to_string()]).args(extra).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The identity key the CLI made for `name`.
fn identity_of(server: &Server, name: &str) -> Arc<IdentityKey> {
    let path = home_of(server, name).join("identity");
    Arc::new(cipherline_keys::load_identity_key(&path, &cipherline_keys::LoadOptions::new()).unwrap())
}

/// alice (with her own key) sends `text` to bob, who is away, and leaves:
/// the expiry waits in her queue. The message's server id.
async fn send_unread(server: &Server, identity: &Arc<IdentityKey>, text: &str) -> u64 {
    let mut alice = connect(server, "alice", Some(identity.clone())).await;
    let id = alice.send_acked(Target::User("bob".into()), text).await.unwrap();
    alice.close().await.unwrap();
    id
}

/// carol, in the lobby, sends a message signed with a send time twelve
/// hours from the server's clock (UTC: the two cannot show the same
/// HH:MM), then one unsigned: only the name matches the key the receiver
/// remembers by then. Her client (kept connected) and the signed hour.
async fn carol_signs_then_does_not(server: &Server) -> (Client, u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let hour = (now / 3_600_000 + 12) % 24;
    let sent_at = 1_577_836_800_000 + hour * 3_600_000 + 33 * 60_000; // 2020-01-01 HH:33 UTC
    let lobby = Target::Room("lobby".into());
    let key = Arc::new(IdentityKey::ed25519_from_seed(&[0x5c; 32]).unwrap());
    let mut carol = connect(server, "carol", Some(key.clone())).await;
    carol.join("lobby").await.unwrap();
    let text = "from the past";
    let id = carol.writer().next_id();
    let signed = Some(sign(&key, "carol", &lobby, id, sent_at, text).unwrap());
    carol.send_message(&ClientMessage::Send { id, to: lobby.clone(), text: text.into(), signed }).await.unwrap();
    let id = carol.writer().next_id();
    let unsigned = ClientMessage::Send { id, to: lobby, text: "no signature".into(), signed: None };
    carol.send_message(&unsigned).await.unwrap();
    (carol, hour)
}

#[test]
fn a_plain_line_shows_the_signed_send_time_and_an_unsigned_message_under_a_remembered_name_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = server
        .client("listen", "bob")
        .args(["--count", "2", "--timeout", "30"])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut bob);
    let notes = stderr_channel(&mut bob);
    wait_for_line(&notes, "is not end-to-end encrypted");

    let rt = runtime();
    let (_carol, hour) = rt.block_on(carol_signs_then_does_not(&server));

    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        first,
        format!("{hour:02}:33 [lobby] carol (new key): from the past"),
        "the signed time, not the server's"
    );
    let second = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        second.ends_with(
            " [lobby] carol (UNSIGNED, but a key is remembered for this name: maybe not them): no signature"
        ),
        "{second}"
    );
    assert!(!second.contains("KEY CHANGED"), "no other key was seen: {second}");
    assert!(bob.wait().unwrap().success());
}

#[test]
fn a_message_of_ours_that_expired_unread_is_reported_as_json_and_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("message_ttl_secs = 1"));
    // Both have identity keys (and bob a queue on the relay).
    for name in ["alice", "bob"] {
        assert_eq!(listen_for(&server, name, 1, &[]).0, Some(0));
    }
    let identity = identity_of(&server, "alice");
    let rt = runtime();
    let send = |text: &str| rt.block_on(send_unread(&server, &identity, text));

    let id = send("too late");
    let want = serde_json::json!({ "expired": { "id": id, "to": "bob" } });
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (code, out, err) = listen_for(&server, "alice", 2, &["--json"]);
        assert_eq!(code, Some(0), "{err}");
        seen.extend(out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
        if seen.contains(&want) {
            break;
        }
    }
    assert!(seen.contains(&want), "{seen:?}");

    let id = send("too late again");
    let want = format!("your message to bob expired on the server unread (id {id})");
    let mut said = String::new();
    for _ in 0..10 {
        let (code, out, err) = listen_for(&server, "alice", 2, &[]);
        assert_eq!(code, Some(0), "{err}");
        assert!(!out.contains("expired"), "a notice, on standard error: {out}");
        said.push_str(&err);
        if said.contains(&want) {
            break;
        }
    }
    assert!(said.lines().any(|l| l == want), "{said}");
    // Acknowledged once said: the next run does not say it again.
    let (_, _, err) = listen_for(&server, "alice", 2, &[]);
    assert!(!err.contains("expired"), "{err}");
}

#[test]
fn the_daemon_notifies_an_expired_message_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("message_ttl_secs = 1"));
    for name in ["alice", "bob"] {
        assert_eq!(listen_for(&server, name, 1, &[]).0, Some(0));
    }
    let identity = identity_of(&server, "alice");
    let rt = runtime();
    let id = rt.block_on(send_unread(&server, &identity, "too late"));
    // Expired within about a second: from the queue, or live.
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let expired = alice.wait_for("expired", |p| p["id"] == id);
    assert_eq!(expired, serde_json::json!({ "id": id, "to": "bob" }));
    // Confirmed like a message: the engine goes on to what comes next.
    alice.wait_for("connection", |p| p["state"] == "connected");
    let _carol = rt.block_on(async {
        let mut carol = connect(&server, "carol", None).await;
        carol.join("lobby").await.unwrap();
        carol.send(Target::Room("lobby".into()), "after").await.unwrap();
        carol
    });
    let after = alice.wait_for("message", |p| p["text"] == "after");
    assert_eq!(after["signed"], false, "{after}");
    assert_eq!(after["sent"], serde_json::Value::Null, "nothing vouches for an unsigned message's time: {after}");
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn chat_says_a_message_of_ours_expired_unread() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("message_ttl_secs = 1"));
    for name in ["alice", "bob"] {
        assert_eq!(listen_for(&server, name, 1, &[]).0, Some(0));
    }
    let identity = identity_of(&server, "alice");
    let id = runtime().block_on(send_unread(&server, &identity, "too late"));
    let chat = Chat::start(&server, "alice", &[]);
    chat.wait(&format!("your message to bob expired on the server unread (id {id})"));
    chat.quit();
}

#[test]
fn chat_shows_the_signed_send_time_and_marks_an_unsigned_message_under_a_remembered_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut command = server.client("chat", "bob");
    command.env("TZ", "UTC");
    let chat = Chat::spawn(command);
    let rt = runtime();
    let (_carol, hour) = rt.block_on(carol_signs_then_does_not(&server));
    let first = chat.wait("from the past");
    let first = first.last().unwrap();
    assert!(first.contains(&format!("{hour:02}:33 [lobby] carol (new key): from the past")), "{first}");
    let second = chat.wait("no signature");
    let second = second.last().unwrap();
    assert!(
        second.contains("carol (UNSIGNED, but a key is remembered for this name: maybe not them): no signature"),
        "{second}"
    );
    chat.quit();
}
