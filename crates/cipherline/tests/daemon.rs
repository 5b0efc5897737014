//! `cipherline daemon --stdio` (issue 17) against a real server: sends a
//! direct message end to end and a room message and gets their ids;
//! receives messages as `message` notifications; comes back after a
//! server restart with what was sent meanwhile, once; answers bad input
//! with JSON-RPC errors and keeps running; `session` shows the server key
//! and the handshake hash, and `rekey` keeps the connection working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::daemon::Daemon;
use serde_json::json;

/// Sends `args` as `name` until the server acknowledges it (the server may
/// still be coming up): a minute at most.
fn send_until_acked(server: &Server, name: &str, args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server.client("send", name).args(args).output().unwrap();
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "never acknowledged: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_daemon_sends_direct_and_room_messages_and_notifies_what_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // bob's daemon publishes his end-to-end keys as it connects: alice's
    // direct message to him goes end to end.
    let mut bob = Daemon::start(&server, "bob", &["--room", "lobby"]);
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let status = alice.request("status", json!({}));
    assert_eq!(status["result"]["name"], "alice", "{status}");
    assert_eq!(status["result"]["connected"], true, "{status}");
    assert_eq!(status["result"]["rooms"], json!(["lobby"]), "{status}");

    let dm = alice.request("send", json!({ "to": "bob", "text": "hello bob" }));
    let dm_id = dm["result"]["id"].as_u64().unwrap_or_else(|| panic!("no id: {dm}"));
    assert_eq!(dm["result"]["e2e"], true, "{dm}");
    let got = bob.wait_for("message", |p| p["text"] == "hello bob");
    assert_eq!(got["id"], dm_id, "{got}");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["to"], "bob");
    assert!(got.get("room").is_none(), "{got}");
    assert_eq!(got["e2e"], true);
    assert_eq!(got["verified"], "new", "first contact: {got}");
    assert!(got["timestamp"].as_u64().unwrap() > 1_600_000_000_000, "{got}");

    let room = alice.request("send", json!({ "room": "lobby", "text": "hello room" }));
    let room_id = room["result"]["id"].as_u64().unwrap_or_else(|| panic!("no id: {room}"));
    assert_ne!(room_id, dm_id);
    assert_eq!(room["result"]["e2e"], false, "{room}");
    let got = bob.wait_for("message", |p| p["text"] == "hello room");
    assert_eq!(got["id"], room_id);
    assert_eq!(got["room"], "lobby");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["e2e"], false);
    assert_eq!(got["verified"], "known", "alice's key is remembered by now: {got}");

    // A receipt for the stored direct message, once bob's client took it.
    let receipt = alice.wait_for("delivered", |p| p["id"] == dm_id);
    assert_eq!(receipt["by"], "bob");

    // join and leave answer; a room left is no longer in the status.
    assert_eq!(alice.request("join", json!({ "room": "dev" }))["result"], json!({}));
    assert_eq!(alice.request("leave", json!({ "room": "dev" }))["result"], json!({}));
    let status = alice.request("status", json!({}));
    assert_eq!(status["result"]["rooms"], json!(["lobby"]), "{status}");

    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn bad_requests_get_json_rpc_errors_and_the_daemon_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut alice = Daemon::start(&server, "alice", &[]);
    alice.write_line("{this is not json");
    assert_eq!(alice.response(&json!(null))["error"]["code"], -32700);
    let unknown = alice.request("fly", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let both = alice.request("send", json!({ "to": "bob", "room": "lobby", "text": "x" }));
    assert_eq!(both["error"]["code"], -32602, "{both}");
    let empty = alice.request("send", json!({ "to": "bob" }));
    assert_eq!(empty["error"]["code"], -32602, "{empty}");
    // A line over 1 MiB is refused, not kept.
    alice.write_line(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"status\",\"x\":\"{}\"}}",
        "a".repeat(1 << 21)
    ));
    let long = alice.response(&json!(null));
    assert_eq!(long["error"]["code"], -32600, "{long}");
    // The server refusing (no such user) is ours, with its reason.
    let nobody = alice.request("send", json!({ "room": "nowhere-joined", "text": "x" }));
    assert!(nobody.get("error").is_some(), "{nobody}");
    let status = alice.request("status", json!({}));
    assert_eq!(status["result"]["connected"], true, "still running: {status}");
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn the_daemon_reconnects_after_a_server_restart_and_gets_what_was_sent_meanwhile_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    // bob's name is bound to his key first: his one-shot sends are kept.
    send_until_acked(&server, "bob", &["--room", "lobby", "bob was here"]);
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    server.kill();
    let lost = alice.wait_for("connection", |p| p["state"] == "reconnecting");
    assert!(lost["retry_in"].as_f64().unwrap() >= 1.0, "{lost}");
    server.restart();
    // Sent while alice may still be away: kept for her, delivered on Resume.
    send_until_acked(&server, "bob", &["--to", "alice", "while you were away"]);
    let back = alice.wait_for("message", |p| p["text"] == "while you were away");
    assert_eq!(back["from"], "bob");
    assert_eq!(back["to"], "alice");
    let states: Vec<_> = alice
        .notifications
        .iter()
        .filter(|n| n["method"] == "connection")
        .map(|n| n["params"]["state"].clone())
        .collect();
    let reconnecting = states.iter().position(|s| s == "reconnecting").unwrap();
    assert!(states.iter().skip(reconnecting).any(|s| s == "connected"), "no `connected` after the restart: {states:?}");
    // Back in the lobby: a room message arrives, and the direct message
    // was notified once (a marker sent after it has arrived by now).
    send_until_acked(&server, "bob", &["--room", "lobby", "marker"]);
    alice.wait_for("message", |p| p["text"] == "marker");
    let status = alice.request("status", json!({}));
    assert_eq!(status["result"]["connected"], true, "{status}");
    assert_eq!(alice.messages_with("while you were away"), 1, "{:?}", alice.notifications);
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn a_final_refusal_stops_the_daemon_with_a_connection_notification() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // No pinned key and no terminal to ask: never trusted, never retried.
    let mut child = common::bin()
        .env("CIPHERLINE_HOME", dir.path().join("home"))
        .args(["daemon", "--stdio", "--server", &server.addr, "--name", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = common::line_channel(&mut child);
    let mut states = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["method"], "connection", "{v}");
        states.push(v["params"]["state"].as_str().unwrap().to_owned());
        if states.last().is_some_and(|s| s == "stopped") {
            assert!(v["params"]["reason"].as_str().unwrap().contains("known_servers"), "{v}");
            break;
        }
    }
    assert_eq!(states, ["connecting", "stopped"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
}

#[test]
fn sends_the_server_refuses_as_too_fast_are_sent_again_sealed_once() {
    let dir = tempfile::tempdir().unwrap();
    // Few bytes a second: the server refuses some of these long messages
    // with rate_limited; the engine sends the same sealed message again.
    let limits = "max_message_bytes = 17408\nbytes_burst = 17408\nbytes_per_sec = 10000\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);
    let texts: Vec<String> = (1..=20).map(|i| format!("{i:02} {}", "y".repeat(1000))).collect();
    for text in &texts {
        let sent = alice.request("send", json!({ "to": "bob", "text": text }));
        assert!(sent["result"]["id"].is_u64(), "{}: {sent}", &text[..2]);
    }
    bob.wait_for("message", |p| p["text"] == texts[19].as_str());
    let got: Vec<&str> = bob
        .notifications
        .iter()
        .filter(|n| n["method"] == "message")
        .map(|n| n["params"]["text"].as_str().unwrap())
        .collect();
    assert!(got == texts, "every message, in order, once: got {} messages", got.len());
    // Sealing again would have shown bob a gap in alice's counter (a
    // `group` notice after the message).
    let groups: Vec<&str> = bob
        .notifications
        .iter()
        .filter(|n| n["method"] == "group")
        .map(|n| n["params"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["alice started an end-to-end conversation"]);
}

#[test]
fn session_shows_the_server_key_and_handshake_hash_and_rekey_keeps_the_connection_working() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);
    let session = alice.request("session", json!({}));
    let result = &session["result"];
    assert_eq!(result["name"], "alice", "{session}");
    // The server's key, as `cipherline fingerprint` prints it (and as the
    // server's banner does).
    let printed = common::bin().args(["fingerprint", dir.path().join("server_x25519").to_str().unwrap()]).output();
    let printed = String::from_utf8(printed.unwrap().stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(result["server_fingerprint"], lines[0], "{session}");
    assert_eq!(result["server_fingerprint"], server.fingerprint.as_str(), "{session}");
    let short = result["server_short"].as_str().unwrap_or_else(|| panic!("{session}"));
    assert!(lines[1].starts_with(short), "{short} is not the short form in {printed}");
    assert!(result["suite"].as_str().unwrap().starts_with("X25519+"), "{session}");
    let hash = result["handshake_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{session}");
    assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{session}");
    // Each connection has its own.
    let theirs = bob.request("session", json!({}));
    assert_ne!(theirs["result"]["handshake_hash"], hash, "{theirs}");

    // Keys ratcheted (both directions, a few times): the same connection
    // goes on, and messages pass both ways.
    for _ in 0..3 {
        assert_eq!(alice.request("rekey", json!({}))["result"], json!({}));
    }
    let sent = alice.request("send", json!({ "to": "bob", "text": "after rekey" }));
    assert!(sent["result"]["id"].is_u64(), "{sent}");
    bob.wait_for("message", |p| p["text"] == "after rekey");
    let back = bob.request("send", json!({ "to": "alice", "text": "heard you" }));
    assert!(back["result"]["id"].is_u64(), "{back}");
    alice.wait_for("message", |p| p["text"] == "heard you");
    let again = alice.request("session", json!({}));
    assert_eq!(again["result"]["handshake_hash"], hash, "a rekey is not a new connection: {again}");
    assert!(
        !alice.notifications.iter().any(|n| n["method"] == "connection" && n["params"]["state"] == "reconnecting"),
        "{:?}",
        alice.notifications
    );
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}
