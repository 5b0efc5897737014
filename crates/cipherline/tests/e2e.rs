//! End-to-end conversations with the real binary (issue 15): a direct
//! message to an offline user, an invite-only room created, joined by
//! invitation and spoken in, a public room joined by external commit, and
//! what non-members get.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use common::transfers::{json_lines, publish};

use std::process::Output;

use common::Server;

fn run(server: &Server, subcommand: &str, name: &str, args: &[&str]) -> Output {
    if subcommand == "room" {
        return common::room_command(server, name, args);
    }
    server.client(subcommand, name).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    common::succeeded(out)
}

#[test]
fn a_direct_message_to_an_offline_user_is_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    publish(&server, "bob");
    ok(&run(&server, "send", "alice", &["--to", "bob", "hello bob, marker-dm-7f3a"]));
    ok(&run(&server, "send", "alice", &["--to", "bob", "second"]));
    let got = json_lines(&ok(&run(&server, "listen", "bob", &["--json", "--count", "2", "--timeout", "20"])));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["text"], "hello bob, marker-dm-7f3a");
    assert_eq!(got[0]["from"], "alice");
    assert_eq!(got[0]["to"], "bob");
    assert_eq!(got[0]["e2e"], true);
    assert_eq!(got[0]["verified"], "new");
    assert_eq!(got[1]["text"], "second");
    assert_eq!(got[1]["verified"], "known");
    // And back, in the same conversation.
    ok(&run(&server, "send", "bob", &["--to", "alice", "hi alice"]));
    let back = json_lines(&ok(&run(&server, "listen", "alice", &["--json", "--count", "1", "--timeout", "20"])));
    assert_eq!(back[0]["text"], "hi alice");
    assert_eq!(back[0]["e2e"], true);
    // The server's files never held the text.
    for entry in common::files_under(&dir.path().join("server-data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!common::holds(&bytes, b"marker-dm-7f3a"), "{} holds the plaintext", entry.display());
    }
    // bob's history says how each message came; alice's how she sent it.
    for (name, with) in [("bob", "alice"), ("alice", "bob")] {
        let out = common::bin()
            .env("CIPHERLINE_HOME", common::home_of(&server, name))
            .args(["history", "--server", &server.addr, "--with", with, "--json"])
            .output()
            .unwrap();
        let kept = json_lines(&ok(&out));
        assert!(!kept.is_empty() && kept.iter().all(|m| m["e2e"] == true), "{name}: {kept:?}");
    }
}

#[test]
fn a_user_without_key_packages_cannot_be_messaged_and_the_sender_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // carol owns her name (she connected once with a key) but never
    // published key packages: an old client. Here: a one-shot send.
    ok(&run(&server, "send", "carol", &["--room", "lobby", "hi"]));
    let out = run(&server, "send", "alice", &["--to", "carol", "hello"]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key package"), "{err}");
}

#[test]
fn an_invite_only_room_is_read_by_its_members_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    publish(&server, "bob");
    ok(&run(&server, "room", "alice", &["create", "secret"]));
    // Creating it again, or over the lobby, is refused.
    assert!(!run(&server, "room", "mallory", &["create", "secret"]).status.success());
    assert!(!run(&server, "room", "alice", &["create", "lobby"]).status.success());
    ok(&run(&server, "room", "alice", &["invite", "secret", "bob"]));
    ok(&run(&server, "send", "alice", &["--room", "secret", "for members only, marker-room-91c2"]));
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--room", "secret", "--json", "--count", "1", "--timeout", "20"],
    )));
    assert_eq!(got[0]["text"], "for members only, marker-room-91c2");
    assert_eq!(got[0]["room"], "secret");
    assert_eq!(got[0]["e2e"], true);
    // bob answers in the room.
    ok(&run(&server, "send", "bob", &["--room", "secret", "got it"]));
    let back = json_lines(&ok(&run(
        &server,
        "listen",
        "alice",
        &["--room", "secret", "--json", "--count", "1", "--timeout", "20"],
    )));
    assert_eq!(back[0]["text"], "got it");
    // Members as the group states them.
    let members = json_lines(&ok(&run(&server, "room", "alice", &["members", "secret", "--json"])));
    let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob"]);
    // Each with the key the group holds, judged: this user's own, and
    // bob's remembered from his first message.
    assert_eq!(members[0]["key"], "you");
    assert_eq!(members[1]["key"], "known");
    assert!(members.iter().all(|m| m["e2e"] == true && m["fingerprint"].as_str().unwrap().starts_with("SHA256:")));
    // A non-member can neither speak nor listen there.
    publish(&server, "mallory");
    assert!(!run(&server, "send", "mallory", &["--room", "secret", "let me in"]).status.success());
    let out = run(&server, "listen", "mallory", &["--room", "secret", "--timeout", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invite"), "{}", String::from_utf8_lossy(&out.stderr));
    // Removed, bob reads nothing new.
    ok(&run(&server, "room", "alice", &["kick", "secret", "bob"]));
    ok(&run(&server, "send", "alice", &["--room", "secret", "after bob left"]));
    let out = run(&server, "listen", "bob", &["--room", "secret", "--json", "--timeout", "3"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("after bob left"));
    for entry in common::files_under(&dir.path().join("server-data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!common::holds(&bytes, b"marker-room-91c2"), "{} holds the plaintext", entry.display());
    }
}

#[test]
fn a_public_room_is_joined_by_external_commit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    ok(&run(&server, "room", "alice", &["create", "town", "--public"]));
    publish(&server, "bob");
    ok(&run(&server, "room", "bob", &["join", "town"]));
    ok(&run(&server, "send", "bob", &["--room", "town", "hello town"]));
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "alice",
        &["--room", "town", "--json", "--count", "1", "--timeout", "20"],
    )));
    assert_eq!(got[0]["text"], "hello town");
    assert_eq!(got[0]["e2e"], true);
}

/// Three people join a public room at the same moment: their external
/// commits race for one epoch, each loser is told Stale and joins again
/// from the new epoch, and all three end up members (with three joiners
/// none loses more than twice, within the engine's retries).
#[test]
fn people_joining_a_public_room_at_once_all_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    ok(&run(&server, "room", "alice", &["create", "fair", "--public"]));
    let joiners = ["bob", "carol", "dave"];
    for name in joiners {
        publish(&server, name);
    }
    let joins: Vec<_> = joiners
        .map(|name| {
            common::bin()
                .env("CIPHERLINE_HOME", common::home_of(&server, name))
                .args(["room", "join", "--server", &server.addr, "--name", name])
                .args(["--server-fingerprint", &server.fingerprint, "fair"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .into_iter()
        .collect();
    for join in joins {
        ok(&join.wait_with_output().unwrap());
    }
    let members = json_lines(&ok(&run(&server, "room", "alice", &["members", "fair", "--json"])));
    let mut names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob", "carol", "dave"]);
}

/// An invitation whose commit would be larger than the server accepts
/// (its Welcome carries the ratchet tree, PROTOCOL.md §13.11) is refused
/// before it is sent, saying what limits the room; the room is unchanged
/// and a smaller invitation still works.
#[test]
fn an_invitation_too_large_for_the_server_says_how_many_members_a_room_takes() {
    let dir = tempfile::tempdir().unwrap();
    let limits =
        "max_message_bytes = 17408\nnew_connections_per_ip_per_sec = 1000\nnew_connections_burst_per_ip = 1000\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let names: Vec<String> = (0..16).map(|i| format!("m{i:02}")).collect();
    let publishing: Vec<_> = names
        .iter()
        .map(|name| {
            let mut listen = server.client("listen", name);
            listen.args(["--timeout", "3"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
            listen.spawn().unwrap()
        })
        .collect();
    for mut listen in publishing {
        assert!(listen.wait().unwrap().success());
    }
    ok(&run(&server, "room", "alice", &["create", "big"]));
    let mut invite = vec!["invite", "big"];
    invite.extend(names.iter().map(String::as_str));
    let out = run(&server, "room", "alice", &invite);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("ratchet tree") && err.contains("takes about 12 members"), "{err}");
    ok(&run(&server, "room", "alice", &["invite", "big", "m00"]));
    let members = json_lines(&ok(&run(&server, "room", "alice", &["members", "big", "--json"])));
    let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "m00"]);
}

#[test]
fn an_open_room_is_marked_and_readable_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    ok(&run(&server, "room", "alice", &["create", "plaza", "--open"]));
    let listener = server
        .client("listen", "bob")
        .args(["--room", "plaza", "--json", "--count", "1", "--timeout", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    ok(&run(&server, "send", "alice", &["--room", "plaza", "open text"]));
    let out = listener.wait_with_output().unwrap();
    let got = json_lines(&ok(&out));
    assert_eq!(got[0]["text"], "open text");
    assert_eq!(got[0]["e2e"], false);
}

#[test]
fn a_member_who_left_is_removed_from_the_group_by_the_next_sender() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    publish(&server, "bob");
    publish(&server, "carol");
    ok(&run(&server, "room", "alice", &["create", "crew"]));
    ok(&run(&server, "room", "alice", &["invite", "crew", "bob", "carol"]));
    // bob takes his invitation, then leaves.
    ok(&run(&server, "listen", "bob", &["--room", "crew", "--timeout", "2"]));
    ok(&run(&server, "room", "bob", &["leave", "crew"]));
    let out = run(&server, "send", "alice", &["--room", "crew", "bob is gone"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(err.contains("removed bob from crew"), "{err}");
    let members = json_lines(&ok(&run(&server, "room", "alice", &["members", "crew", "--json"])));
    let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "carol"]);
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "carol",
        &["--room", "crew", "--json", "--count", "1", "--timeout", "20"],
    )));
    assert_eq!(got[0]["text"], "bob is gone");
}

/// Two names in one data directory share one identity key, and MLS puts a
/// key in a conversation once: the sender is told why and what to do.
#[test]
fn two_names_sharing_an_identity_key_are_told_to_use_two_data_directories() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let home = dir.path().join("shared-home");
    let as_name = |sub: &str, name: &str, args: &[&str]| {
        common::bin()
            .env("CIPHERLINE_HOME", &home)
            .args([sub, "--server", &server.addr, "--name", name, "--server-fingerprint", &server.fingerprint])
            .args(args)
            .output()
            .unwrap()
    };
    ok(&as_name("listen", "bob", &["--timeout", "1"]));
    let out = as_name("send", "alice", &["--to", "bob", "see you tomorrow"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("your own identity key") && err.contains("--data-dir"), "{err}");
}

/// Post-compromise security: after 100 messages a sender's client renews
/// its leaf key by an update commit, which the other side processes.
#[test]
fn the_sender_renews_its_keys_after_100_messages() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    publish(&server, "bob");
    let mut send = server
        .client("send", "alice")
        .args(["--to", "bob"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = (1..=101).map(|n| format!("line {n}\n")).collect();
    send.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    ok(&send.wait_with_output().unwrap());
    let out = run(&server, "listen", "bob", &["--json", "--count", "101", "--timeout", "60"]);
    let got = json_lines(&ok(&out));
    assert_eq!(got.len(), 101);
    assert_eq!(got[100]["text"], "line 101", "in order, none missing");
    assert!(got.iter().all(|m| m.get("e2e_notice").is_none()), "no gap reported");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alice renewed their keys"), "{err}");
}

/// A member offline through several commits (others invited, one
/// removed) catches up in order and reads what follows.
#[test]
fn a_member_offline_through_several_commits_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    for name in ["bob", "carol", "dave"] {
        publish(&server, name);
    }
    ok(&run(&server, "room", "alice", &["create", "ops"]));
    ok(&run(&server, "room", "alice", &["invite", "ops", "bob"]));
    ok(&run(&server, "send", "alice", &["--room", "ops", "one"]));
    // bob is away: carol and dave join, carol is removed again.
    ok(&run(&server, "room", "alice", &["invite", "ops", "carol"]));
    ok(&run(&server, "room", "alice", &["invite", "ops", "dave"]));
    ok(&run(&server, "room", "alice", &["kick", "ops", "carol"]));
    ok(&run(&server, "send", "alice", &["--room", "ops", "two"]));
    let out = run(&server, "listen", "bob", &["--room", "ops", "--json", "--count", "2", "--timeout", "20"]);
    let got = json_lines(&ok(&out));
    let texts: Vec<&str> = got.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    let err = String::from_utf8_lossy(&out.stderr);
    for change in ["+carol", "+dave", "-carol"] {
        assert!(err.contains(change), "{change} in {err}");
    }
    let members = json_lines(&ok(&run(&server, "room", "bob", &["members", "ops", "--json"])));
    let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "dave"]);
}
