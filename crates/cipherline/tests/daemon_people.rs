//! The daemon's methods for people and rooms (issue 17) against a real
//! server, two daemons: an end-to-end room created, a member invited and
//! kicked, members with their key states, safety codes compared and a key
//! confirmed, contacts and whois agreeing, a changed key trusted, history
//! kept across a restart and read while reconnecting, a public room joined
//! and left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use common::Server;
use common::daemon::Daemon;
use serde_json::{Value, json};

/// The result of `method`, which must succeed.
fn ok(daemon: &mut Daemon, method: &str, params: Value) -> Value {
    let answer = daemon.request(method, params.clone());
    assert!(answer.get("error").is_none(), "{method} {params}: {answer}");
    answer["result"].clone()
}

/// The error code `method` answers with (it must fail).
fn error_code(daemon: &mut Daemon, method: &str, params: Value) -> i64 {
    let answer = daemon.request(method, params.clone());
    answer["error"]["code"].as_i64().unwrap_or_else(|| panic!("{method} {params} did not fail: {answer}"))
}

/// `room`'s members as (name, key state), sorted by name.
fn members(daemon: &mut Daemon, room: &str) -> Vec<(String, String)> {
    let result = ok(daemon, "members", json!({ "room": room }));
    let mut list: Vec<(String, String)> = result["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), m["key"].as_str().unwrap().to_owned()))
        .collect();
    list.sort();
    list
}

fn pair(name: &str, state: &str) -> (String, String) {
    (name.to_owned(), state.to_owned())
}

/// The texts of a history answer, with whether each was outgoing.
fn texts(history: &Value) -> Vec<(String, bool)> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["text"].as_str().unwrap().to_owned(), m["outgoing"].as_bool().unwrap()))
        .collect()
}

/// The conversations listed, as `room:NAME` or `user:NAME` with `e2e`.
fn conversations(daemon: &mut Daemon) -> Vec<(String, bool)> {
    let result = ok(daemon, "conversations", json!({}));
    result["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = match (c.get("room"), c.get("user")) {
                (Some(r), None) => format!("room:{}", r.as_str().unwrap()),
                (None, Some(u)) => format!("user:{}", u.as_str().unwrap()),
                _ => panic!("neither room nor user: {c}"),
            };
            (name, c["e2e"].as_bool().unwrap())
        })
        .collect()
}

/// Rewrites `home`'s record of `name`'s key (`real`) to another key,
/// verified: a key change as the next look at `name`'s key will see it.
fn remember_another_key(home: &std::path::Path, name: &str, real: &str) {
    let (head, tail) = real.split_at("SHA256:".len());
    let first = if tail.starts_with('A') { "B" } else { "A" };
    let other = format!("{head}{first}{}", &tail[1..]);
    let db = rusqlite::Connection::open(home.join("client.db")).unwrap();
    let changed = db
        .execute("UPDATE peers SET fingerprint = ?1, verified = 1 WHERE folded = ?2", [other.as_str(), name])
        .unwrap();
    assert_eq!(changed, 1);
}

#[test]
fn rooms_members_keys_and_history_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);

    // An end-to-end, invite-only room; bob is added from a key package.
    assert_eq!(ok(&mut alice, "create", json!({ "room": "team" })), json!({}));
    assert_eq!(members(&mut alice, "team"), [pair("alice", "known")], "the creator alone");
    assert_eq!(ok(&mut alice, "invite", json!({ "room": "team", "users": ["bob"] })), json!({}));
    bob.wait_for("group", |p| p["text"].as_str().is_some_and(|t| t.contains("added to team")));
    // alice saw bob's key in his key package; bob sees alice's now, first.
    assert_eq!(members(&mut alice, "team"), [pair("alice", "known"), pair("bob", "known")]);
    assert_eq!(members(&mut bob, "team"), [pair("alice", "new"), pair("bob", "known")]);
    assert_eq!(members(&mut bob, "team"), [pair("alice", "known"), pair("bob", "known")], "remembered now");

    // Messages both ways: in the room, and directly.
    let sent = ok(&mut alice, "send", json!({ "room": "team", "text": "hello team" }));
    assert_eq!(sent["e2e"], true, "the room is end to end: {sent}");
    bob.wait_for("message", |p| p["text"] == "hello team" && p["room"] == "team");
    let dm = ok(&mut bob, "send", json!({ "to": "alice", "text": "hi alice" }));
    alice.wait_for("message", |p| p["id"] == dm["id"]);

    // Safety codes: the same on both sides; a confirmation needs the code
    // asked for first, then marks the key verified.
    assert_eq!(error_code(&mut bob, "verify", json!({ "user": "alice", "confirm": true })), -32003);
    let theirs = ok(&mut bob, "verify", json!({ "user": "alice" }));
    let mine = ok(&mut alice, "verify", json!({ "user": "bob" }));
    let code = mine["code"].as_str().unwrap();
    assert_eq!(code.split(' ').count(), 12, "{mine}");
    assert_eq!(mine["code"], theirs["code"], "both sides see the same code");
    assert_eq!(ok(&mut alice, "verify", json!({ "user": "bob", "confirm": true })), json!({}));
    assert_eq!(members(&mut alice, "team"), [pair("alice", "known"), pair("bob", "verified")]);
    // Nothing changed, so there is nothing to trust.
    assert_eq!(error_code(&mut alice, "trust", json!({ "user": "bob" })), -32003);

    // Contacts and whois agree on bob's key.
    let contacts = ok(&mut alice, "contacts", json!({}));
    let listed = contacts["contacts"].as_array().unwrap();
    let bob_contact = listed.iter().find(|c| c["name"] == "bob").unwrap_or_else(|| panic!("{contacts}"));
    assert_eq!(bob_contact["verified"], true, "{contacts}");
    let whois = ok(&mut alice, "whois", json!({ "user": "bob" }));
    assert_eq!(whois["fingerprint"], bob_contact["fingerprint"], "{whois} vs {contacts}");
    assert!(whois["fingerprint"].as_str().unwrap().starts_with("SHA256:"), "{whois}");
    assert_eq!(error_code(&mut alice, "whois", json!({ "user": "nobody" })), -32000, "the server knows no nobody");

    // A public room bob joins and leaves: its group is gone for him.
    assert_eq!(ok(&mut alice, "create", json!({ "room": "pub", "kind": "public" })), json!({}));
    assert_eq!(ok(&mut bob, "join", json!({ "room": "pub" })), json!({}));
    assert!(conversations(&mut bob).contains(&("room:pub".to_owned(), true)));
    assert_eq!(ok(&mut bob, "leave", json!({ "room": "pub" })), json!({}));
    let after = conversations(&mut bob);
    assert!(!after.iter().any(|(n, _)| n == "room:pub"), "left, yet listed: {after:?}");
    assert!(after.contains(&("room:team".to_owned(), true)), "{after:?}");
    assert!(after.contains(&("user:alice".to_owned(), true)), "{after:?}");

    // An open room is created and joined.
    assert_eq!(ok(&mut alice, "create", json!({ "room": "plain", "kind": "open" })), json!({}));
    let status = ok(&mut alice, "status", json!({}));
    assert_eq!(status["rooms"], json!(["plain"]), "{status}");

    // Kicked: bob is told, and the group lists alice alone.
    assert_eq!(ok(&mut alice, "kick", json!({ "room": "team", "users": ["bob"] })), json!({}));
    bob.wait_for("group", |p| p["text"].as_str().is_some_and(|t| t.contains("removed you from team")));
    assert_eq!(members(&mut alice, "team"), [pair("alice", "known")]);
    assert_eq!(error_code(&mut bob, "members", json!({ "room": "team" })), -32000, "not in it any more");

    // History survives a restart of the daemon, newest last, both ways.
    // Meanwhile alice's record of bob's key is made another key's, as if
    // bob's key changed since: what is remembered decides.
    assert_eq!(alice.finish(), Some(0));
    let real = bob_contact["fingerprint"].as_str().unwrap().to_owned();
    remember_another_key(&common::home_of(&server, "alice"), "bob", &real);
    let mut alice = Daemon::start(&server, "alice", &[]);
    let room = ok(&mut alice, "history", json!({ "room": "team" }));
    assert_eq!(texts(&room), [("hello team".to_owned(), true)], "{room}");
    assert_eq!(room["messages"][0]["e2e"], true);
    let direct = ok(&mut alice, "history", json!({ "user": "bob", "limit": 10 }));
    assert_eq!(texts(&direct), [("hi alice".to_owned(), false)], "{direct}");
    assert_eq!(direct["messages"][0]["id"], dm["id"], "the server's id");
    assert_eq!(direct["messages"][0]["from"], "bob");
    let older = ok(&mut alice, "history", json!({ "user": "bob", "before": dm["id"] }));
    assert_eq!(texts(&older), [], "nothing before the first message");
    let list = conversations(&mut alice);
    assert!(
        list.contains(&("room:team".to_owned(), true)) && list.contains(&("user:bob".to_owned(), true)),
        "{list:?}"
    );
    // Newest first: bob's direct message came after the room's.
    let team = list.iter().position(|(n, _)| n == "room:team").unwrap();
    let with_bob = list.iter().position(|(n, _)| n == "user:bob").unwrap();
    assert!(with_bob < team, "{list:?}");

    // The key the server holds is not the one remembered: the code is for
    // the new key, and it cannot be confirmed until it is trusted.
    assert_eq!(ok(&mut alice, "whois", json!({ "user": "bob" }))["fingerprint"], real.as_str());
    let new_code = ok(&mut alice, "verify", json!({ "user": "bob" }));
    assert_eq!(new_code["code"], mine["code"], "the code for bob's real key");
    assert_eq!(error_code(&mut alice, "verify", json!({ "user": "bob", "confirm": true })), -32003, "change pending");
    assert_eq!(ok(&mut alice, "trust", json!({ "user": "bob" })), json!({}));
    let contacts = ok(&mut alice, "contacts", json!({}));
    assert_eq!(contacts["contacts"], json!([{ "name": "bob", "fingerprint": real, "verified": false }]), "{contacts}");
    // The code shown before the trust no longer confirms anything.
    assert_eq!(error_code(&mut alice, "verify", json!({ "user": "bob", "confirm": true })), -32003);
    ok(&mut alice, "verify", json!({ "user": "bob" }));
    assert_eq!(ok(&mut alice, "verify", json!({ "user": "bob", "confirm": true })), json!({}));
    let contacts = ok(&mut alice, "contacts", json!({}));
    assert_eq!(contacts["contacts"][0]["verified"], true, "{contacts}");

    // While reconnecting, the local methods answer; the others cannot.
    server.kill();
    alice.wait_for("connection", |p| p["state"] == "reconnecting");
    let offline = ok(&mut alice, "history", json!({ "user": "bob" }));
    assert_eq!(texts(&offline), [("hi alice".to_owned(), false)]);
    assert_eq!(ok(&mut alice, "contacts", json!({}))["contacts"], contacts["contacts"]);
    assert_eq!(error_code(&mut alice, "members", json!({ "room": "team" })), -32001);
    assert_eq!(alice.finish(), Some(0));
    drop(bob);
}
