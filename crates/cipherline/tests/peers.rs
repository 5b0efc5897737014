//! Peer keys with the real binary (issue 12, items 2 and 3): a key seen
//! first is `new`, then `known`, and `verified` only after the user compared
//! safety codes and confirmed (remembered across runs, in the local store
//! client.db); a tampered known_peers file from before the store is refused
//! when it would be imported; a received file is only "hash matches"
//! unless its sender signed it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{Server, home_of, line_channel, peer_rows, wait_for_line};

/// `listen` as bob, one event, with `extra` arguments.
fn listen(server: &Server, extra: &[&str]) -> (Child, Receiver<String>) {
    let mut child = server
        .client("listen", "bob")
        .args(["--count", "1", "--timeout", "30"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut child);
    (child, lines)
}

/// `send --to bob ARGS` as `name`, retried until bob is connected.
fn send_to_bob(server: &Server, name: &str, args: &[&str]) {
    for _ in 0..80 {
        let out = server.client("send", name).args(["--to", "bob"]).args(args).output().unwrap();
        if out.status.success() {
            return;
        }
        assert_eq!(out.status.code(), Some(5), "only 'bob is not here yet': {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("bob never connected");
}

fn next_json(lines: &Receiver<String>) -> serde_json::Value {
    serde_json::from_str(&lines.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap()
}

/// Bob receives one direct message from alice and returns its label.
fn label_of_next_message(server: &Server, text: &str) -> String {
    let (mut bob, lines) = listen(server, &["--json"]);
    send_to_bob(server, "alice", &[text]);
    let v = next_json(&lines);
    assert_eq!(v["text"], text);
    assert!(bob.wait().unwrap().success());
    v["verified"].as_str().unwrap().to_owned()
}

#[test]
fn labels_go_new_then_known_then_verified_after_confirming_and_verified_persists() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // Each listen is a new process: what it says comes from the store.
    assert_eq!(label_of_next_message(&server, "one"), "new", "a first-seen key is not verified");
    assert_eq!(label_of_next_message(&server, "two"), "known", "remembered, but nobody compared codes");

    let mut chat = server.client("chat", "bob").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let lines = line_channel(&mut chat);
    let mut input = chat.stdin.take().unwrap();
    wait_for_line(&lines, "in room lobby");
    writeln!(input, "/verify alice confirm").unwrap();
    wait_for_line(&lines, "/verify alice first");
    writeln!(input, "/verify alice").unwrap();
    let code = wait_for_line(&lines, "safety code with alice (").pop().unwrap();
    assert!(code.chars().filter(char::is_ascii_digit).count() >= 60, "{code}");
    writeln!(input, "/verify alice confirm").unwrap();
    wait_for_line(&lines, "is now verified");
    writeln!(input, "/quit").unwrap();
    assert!(chat.wait().unwrap().success());

    assert_eq!(label_of_next_message(&server, "three"), "verified", "confirmed, and remembered across runs");
    let bob_home = home_of(&server, "bob");
    let rows = peer_rows(&bob_home);
    assert_eq!(rows.len(), 1, "one record per peer, replaced in place: {rows:?}");
    let (at, name, fp, verified) = &rows[0];
    assert_eq!((at.as_str(), name.as_str(), *verified), (server.addr.as_str(), "alice", true), "{rows:?}");
    assert!(fp.starts_with("SHA256:"), "{rows:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(bob_home.join("client.db")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_known_peers_file_with_a_duplicate_or_an_extra_field_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let bob_home = home_of(&server, "bob");
    std::fs::create_dir_all(&bob_home).unwrap();
    let (real, forged) =
        ("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg");
    for (bad, line) in [
        // What a relay-chosen name "alice SHA256:<key>" used to leave behind.
        (format!("{} alice {real}\n{} alice {forged} {real}\n", server.addr, server.addr), 2),
        // The same name twice: it used to be "last line wins".
        (format!("# peers\n{} alice {real}\n{} alice {forged}\n", server.addr, server.addr), 3),
    ] {
        std::fs::write(bob_home.join("known_peers"), &bad).unwrap();
        let out = server.client("listen", "bob").args(["--count", "1", "--timeout", "5"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "refused to start: {err}");
        assert!(err.contains(&format!("line {line}")), "names the line: {err}");
        assert!(!err.contains(forged), "never echoes the file's content: {err}");
        assert_eq!(std::fs::read_to_string(bob_home.join("known_peers")).unwrap(), bad, "left as it was");
        assert!(!bob_home.join("known_peers.migrated").exists(), "not imported");
    }
}

#[test]
fn a_file_is_known_only_if_its_sender_signed_it_otherwise_only_its_hash_matches() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"the minutes of the meeting").unwrap();
    let accept = ["--accept-files", downloads.to_str().unwrap()];

    // Alice signs: her first message makes her key remembered, and her file,
    // signed with the same key, is from a known sender.
    assert_eq!(label_of_next_message(&server, "sending you the notes"), "new");
    let (mut bob, lines) = listen(&server, &[&["--json"][..], &accept].concat());
    // Signed version-1 files go into open rooms (a direct file to a keyed
    // user is end to end): offered in the lobby once bob is there.
    for _ in 0..80 {
        let out = server
            .client("send", "alice")
            .args(["--room", "lobby", "--file", file.to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let v = next_json(&lines);
    assert_eq!((v["file"]["from"].as_str(), v["file"]["verified"].as_str()), (Some("alice"), Some("known")), "{v}");
    assert!(bob.wait().unwrap().success());

    // Carol has no identity key: the file arrives intact, but nothing shows
    // who sent it.
    let (mut bob, lines) = listen(&server, &accept);
    for _ in 0..80 {
        let out = server
            .client("send", "carol")
            .args(["--no-identity", "--to", "bob", "--file", file.to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(line.starts_with("received ") && line.contains("from carol"), "{line}");
    assert!(line.contains("hash matches (unsigned"), "{line}");
    assert!(!line.contains("verified") && !line.contains("known"), "{line}");
    assert!(bob.wait().unwrap().success());
}
