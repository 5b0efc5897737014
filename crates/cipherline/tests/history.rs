//! `cipherline history` with the real binary (issue 14): the local store
//! seeded through the library, then shown as lines and as `listen --json`
//! objects, filtered, limited, and escaped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::process::Output;

use cipherline_client::local::{Direction, FILE_NAME, LocalStore, Msg};
use cipherline_proto::app::Target;
use serde_json::json;

const SERVER: &str = "127.0.0.1:7878";
/// 2023-11-14 22:13:20 UTC.
const T0: u64 = 1_700_000_000_000;

fn received(id: u64, from: &str, to: Target, text: &str, label: &str) -> Msg {
    Msg {
        server: SERVER.to_owned(),
        id,
        seq: id,
        timestamp_ms: T0 + id * 60_000,
        from: from.to_owned(),
        target: to,
        text: text.to_owned(),
        direction: Direction::In,
        label: label.to_owned(),
        e2e: false,
    }
}

fn room(r: &str) -> Target {
    Target::Room(r.to_owned())
}

fn user(u: &str) -> Target {
    Target::User(u.to_owned())
}

/// A data directory whose store holds a few messages, one from another server.
fn seeded(dir: &Path) -> std::path::PathBuf {
    let home = dir.join("home");
    let store = LocalStore::open(&home.join(FILE_NAME)).unwrap();
    for m in [
        received(1, "alice", room("lobby"), "morning all", "known"),
        received(2, "bob", user("me"), "are you there?", "verified"),
        Msg::sent(SERVER, "me", 3, T0 + 3 * 60_000, &user("bob"), "yes"),
        received(4, "carol", room("lobby"), "hi", "unsigned"),
        received(5, "alice", room("dev"), "build is green", "new"),
        Msg { server: "10.0.0.1:1".to_owned(), ..received(6, "zed", room("lobby"), "elsewhere", "known") },
    ] {
        assert!(store.record(&m).unwrap());
    }
    home
}

fn history(home: &Path, args: &[&str]) -> Output {
    common::bin()
        .env("TZ", "UTC")
        .args(["history", "--server", SERVER, "--data-dir", home.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn plain_lines_read_like_listen_oldest_first_for_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let home = seeded(dir.path());
    assert_eq!(
        stdout_lines(&history(&home, &[])),
        [
            "22:14 [lobby] alice: morning all",
            "22:15 bob (verified) -> you: are you there?",
            "22:16 me -> bob: yes",
            "22:17 [lobby] carol (unsigned): hi",
            "22:18 [dev] alice (new key): build is green",
        ]
    );
}

#[test]
fn filters_and_limit_pick_the_newest_of_one_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let home = seeded(dir.path());
    let lobby = stdout_lines(&history(&home, &["--room", "LOBBY"]));
    assert_eq!(lobby, ["22:14 [lobby] alice: morning all", "22:17 [lobby] carol (unsigned): hi"]);
    let bob = stdout_lines(&history(&home, &["--with", "bob"]));
    assert_eq!(bob, ["22:15 bob (verified) -> you: are you there?", "22:16 me -> bob: yes"]);
    let last = stdout_lines(&history(&home, &["--limit", "2"]));
    assert_eq!(last, ["22:17 [lobby] carol (unsigned): hi", "22:18 [dev] alice (new key): build is green"]);
    assert!(stdout_lines(&history(&home, &["--with", "nobody"])).is_empty());
    let both = history(&home, &["--room", "lobby", "--with", "bob"]);
    assert_eq!(both.status.code(), Some(2), "--room and --with are exclusive");
}

#[test]
fn json_objects_have_exactly_the_fields_of_listen_json() {
    let dir = tempfile::tempdir().unwrap();
    let home = seeded(dir.path());
    let lines = stdout_lines(&history(&home, &["--json", "--limit", "3"]));
    let objects: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The objects `listen --json` prints (crates/cipherline/src/listen.rs
    // documents them): id, from, room or to, text, timestamp, verified, e2e.
    assert_eq!(
        objects,
        [
            json!({ "id": 3, "from": "me", "to": "bob", "text": "yes", "timestamp": T0 + 180_000, "verified": "own", "e2e": false }),
            json!({ "id": 4, "from": "carol", "room": "lobby", "text": "hi", "timestamp": T0 + 240_000,
                    "verified": "unsigned", "e2e": false }),
            json!({ "id": 5, "from": "alice", "room": "dev", "text": "build is green", "timestamp": T0 + 300_000,
                    "verified": "new", "e2e": false }),
        ]
    );
}

#[test]
fn hostile_names_and_texts_are_escaped_in_lines_and_exact_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let store = LocalStore::open(&home.join(FILE_NAME)).unwrap();
    // A text that would clear the screen and forge a second message line,
    // from a sender and in a room whose names carry terminal controls.
    let text = "ok\n22:59 [lobby] alice: pay mallory\u{1b}[2J";
    store.record(&received(1, "mal\u{1b}[31mlory", room("lob\u{202e}by"), text, "key-changed")).unwrap();
    let lines = stdout_lines(&history(&home, &[]));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}') && !l.contains('\u{202e}')), "{lines:?}");
    assert!(lines[0].starts_with("22:14 [lob") && lines[0].contains("KEY CHANGED"), "{lines:?}");
    assert!(lines[1].starts_with("  | "), "a continuation, not a message line: {lines:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout_lines(&history(&home, &["--json"]))[0]).unwrap();
    assert_eq!((json["text"].as_str(), json["from"].as_str()), (Some(text), Some("mal\u{1b}[31mlory")));
}

#[test]
fn no_database_or_an_empty_one_prints_nothing_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = history(&home, &[]);
    assert!(stdout_lines(&out).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no history yet"));
    assert!(!home.join(FILE_NAME).exists(), "looking does not create it");
    drop(LocalStore::open(&home.join(FILE_NAME)).unwrap());
    let out = history(&home, &["--json"]);
    assert!(stdout_lines(&out).is_empty());
}

#[test]
fn a_bad_legacy_known_peers_file_stops_history_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    // A data directory from before the store, where a chat already
    // refused the file: it left an empty client.db, still to be set up.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bad = format!("{SERVER} alice SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU extra\n");
    std::fs::write(home.join("known_peers"), &bad).unwrap();
    std::fs::write(home.join(FILE_NAME), b"").unwrap();
    let out = history(&home, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("line 1") && err.contains("hint:"), "{err}");
    assert!(!err.contains("47DEQ"), "never echoes the file: {err}");
    assert_eq!(std::fs::read_to_string(home.join("known_peers")).unwrap(), bad);
}
