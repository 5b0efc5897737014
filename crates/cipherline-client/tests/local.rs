//! The client's local store (issue 14, client side): history with the seen
//! message ids, its bound, the file's privacy, schema versions, importing
//! the legacy known_peers file, cursors, and two processes on one file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::path::{Path, PathBuf};

use cipherline_client::ClientError;
use cipherline_client::local::{Direction, FILE_NAME, Filter, LocalStore, Msg, OWN_LABEL, StoreOptions};
use cipherline_client::peers::Peers;
use cipherline_keys::Fingerprint;
use cipherline_proto::app::Target;

const SERVER: &str = "127.0.0.1:7878";

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(FILE_NAME)
}

fn msg(id: u64, from: &str, to: Target, text: &str) -> Msg {
    Msg {
        server: SERVER.to_owned(),
        id,
        seq: id,
        timestamp_ms: 1_700_000_000_000 + id,
        from: from.to_owned(),
        target: to,
        text: text.to_owned(),
        direction: Direction::In,
        label: "known".to_owned(),
        e2e: false,
    }
}

fn room(r: &str) -> Target {
    Target::Room(r.to_owned())
}

fn user(u: &str) -> Target {
    Target::User(u.to_owned())
}

fn texts(v: &[Msg]) -> Vec<&str> {
    v.iter().map(|m| m.text.as_str()).collect()
}

#[test]
fn a_message_id_is_recorded_once_per_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&db(&dir)).unwrap();
    let m = msg(7, "alice", room("lobby"), "hello");
    assert!(store.record(&m).unwrap(), "first time: show it");
    assert!(!store.record(&m).unwrap(), "redelivered: already shown");
    // Even if the redelivery differs, the first record stands.
    assert!(!store.record(&msg(7, "mallory", room("lobby"), "other")).unwrap());
    // The same id from another server is another message.
    let elsewhere = Msg { server: "10.0.0.1:1".to_owned(), ..m.clone() };
    assert!(store.record(&elsewhere).unwrap());
    assert_eq!(store.history(SERVER, &Filter::All, 10).unwrap(), vec![m]);
    assert_eq!(store.history("10.0.0.1:1", &Filter::All, 10).unwrap(), vec![elsewhere]);
}

#[test]
fn history_filters_by_room_or_person_newest_n_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&db(&dir)).unwrap();
    store.record(&msg(1, "alice", room("lobby"), "l1")).unwrap();
    store.record(&msg(2, "bob", user("me"), "bob to me")).unwrap();
    store.record(&msg(3, "carol", room("General"), "g1")).unwrap();
    store.record(&Msg::sent(SERVER, "me", 4, 5, &user("Bob"), "me to bob")).unwrap();
    store.record(&msg(5, "bob", room("lobby"), "l2")).unwrap();
    store.record(&msg(6, "carol", user("me"), "carol to me")).unwrap();
    store.record(&msg(7, "alice", room("lobby"), "l3")).unwrap();

    let all = store.history(SERVER, &Filter::All, 50).unwrap();
    assert_eq!(texts(&all), ["l1", "bob to me", "g1", "me to bob", "l2", "carol to me", "l3"]);
    let lobby = store.history(SERVER, &Filter::Room("LOBBY".into()), 50).unwrap();
    assert_eq!(texts(&lobby), ["l1", "l2", "l3"], "rooms compared ignoring case");
    assert_eq!(texts(&store.history(SERVER, &Filter::Room("general".into()), 50).unwrap()), ["g1"]);
    // Both directions of the conversation with bob, not his room messages.
    let bob = store.history(SERVER, &Filter::With("bob".into()), 50).unwrap();
    assert_eq!(texts(&bob), ["bob to me", "me to bob"]);
    assert_eq!(bob[1].direction, Direction::Out);
    assert_eq!(bob[1].label, OWN_LABEL);
    // The newest N, still oldest first.
    assert_eq!(texts(&store.history(SERVER, &Filter::All, 2).unwrap()), ["carol to me", "l3"]);
    assert_eq!(texts(&store.history(SERVER, &Filter::Room("lobby".into()), 2).unwrap()), ["l2", "l3"]);
    assert!(store.history(SERVER, &Filter::All, 0).unwrap().is_empty());
    assert!(store.history("other:1", &Filter::All, 50).unwrap().is_empty());
}

#[test]
fn a_message_from_this_user_in_another_session_is_recorded_as_sent() {
    let d = cipherline_proto::app::Delivery {
        id: 9,
        timestamp_ms: 1,
        from: "ME".into(),
        to: user("bob"),
        text: "from my other window".into(),
        signed: None,
        seq: 3,
    };
    let m = Msg::received(SERVER, "me", &d, &cipherline_client::peers::MessageStatus::Unsigned);
    assert_eq!((m.direction, m.label.as_str(), m.seq), (Direction::Out, OWN_LABEL, 3));
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&db(&dir)).unwrap();
    store.record(&m).unwrap();
    assert_eq!(store.history(SERVER, &Filter::With("bob".into()), 5).unwrap(), vec![m], "in the chat with bob");
}

#[test]
fn the_bound_deletes_the_oldest_messages_of_that_server_only() {
    let dir = tempfile::tempdir().unwrap();
    let small = StoreOptions { max_messages: 3, ..StoreOptions::default() };
    let store = LocalStore::open_with(&db(&dir), &small).unwrap();
    let other = Msg { server: "10.0.0.1:1".to_owned(), ..msg(1, "zed", room("z"), "other server") };
    store.record(&other).unwrap();
    for id in 1..=5 {
        store.record(&msg(id, "alice", room("lobby"), &format!("m{id}"))).unwrap();
    }
    assert_eq!(texts(&store.history(SERVER, &Filter::All, 50).unwrap()), ["m3", "m4", "m5"]);
    assert_eq!(store.history("10.0.0.1:1", &Filter::All, 50).unwrap(), vec![other]);
    // A lower bound on the next open trims down to it at the next record.
    drop(store);
    let tiny = StoreOptions { max_messages: 1, ..StoreOptions::default() };
    let store = LocalStore::open_with(&db(&dir), &tiny).unwrap();
    store.record(&msg(6, "alice", room("lobby"), "m6")).unwrap();
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM history WHERE server = ?1", [SERVER], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "only the newest is kept");
    assert_eq!(texts(&store.history(SERVER, &Filter::All, 50).unwrap()), ["m6"]);
}

#[cfg(unix)]
#[test]
fn the_database_and_its_journal_are_private_even_if_made_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join(FILE_NAME);
    let store = LocalStore::open(&path).unwrap();
    store.record(&msg(1, "alice", room("lobby"), "secret")).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&path.with_file_name("client.db-wal")), 0o600, "SQLite copies the mode to its journal");
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    LocalStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600, "tightened on open");
}

#[test]
fn a_database_from_a_newer_cipherline_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // As a newer version might leave it: another journal mode, version 3.
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    conn.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE future (x); PRAGMA user_version = 4;").unwrap();
    drop(conn);
    let e = LocalStore::open(&db(&dir)).unwrap_err();
    assert!(matches!(e, ClientError::LocalStoreTooNew { found: 4, supported: 3, .. }), "{e}");
    assert!(e.to_string().contains("newer cipherline"), "{e}");
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 4, "not downgraded");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "not even the journal mode changed");
}

#[test]
fn a_good_known_peers_file_is_imported_once_and_kept_as_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Fingerprint::from_bytes([1; 32]), Fingerprint::from_bytes([2; 32]));
    let text = format!("# peers\n{SERVER} alice {a} verified\n{SERVER} Bob {b}\nother.example:1 alice {b}\n");
    let legacy = dir.path().join("known_peers");
    std::fs::write(&legacy, &text).unwrap();
    let peers = Peers::load(SERVER, Some(&db(&dir))).unwrap();
    assert_eq!(peers.remembered("alice"), Some(a));
    assert!(peers.is_verified("alice"));
    assert_eq!(peers.remembered("bob"), Some(b));
    assert!(!peers.is_verified("bob"));
    assert_eq!(Peers::load("other.example:1", Some(&db(&dir))).unwrap().remembered("alice"), Some(b));
    assert!(!legacy.exists(), "renamed");
    assert_eq!(std::fs::read_to_string(dir.path().join("known_peers.migrated")).unwrap(), text, "kept as it was");
    // A known_peers file appearing later (an old cipherline still running)
    // is not imported over the store's records.
    std::fs::write(&legacy, format!("{SERVER} alice {b}\n")).unwrap();
    assert_eq!(Peers::load(SERVER, Some(&db(&dir))).unwrap().remembered("alice"), Some(a));
}

#[test]
fn a_bad_known_peers_file_refuses_the_open_with_its_line_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Fingerprint::from_bytes([1; 32]), Fingerprint::from_bytes([2; 32]));
    let bad = format!("{SERVER} alice {a}\n{SERVER} bob {b}\n{SERVER} alice {b} {a}\n");
    let legacy = dir.path().join("known_peers");
    std::fs::write(&legacy, &bad).unwrap();
    let e = LocalStore::open(&db(&dir)).unwrap_err().to_string();
    assert!(e.contains("line 3"), "{e}");
    assert!(!e.contains(&b.to_string()) && !e.contains("alice"), "never echoes the content: {e}");
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), bad, "left as it was");
    assert!(!dir.path().join("known_peers.migrated").exists());
    // Nothing was imported: once the file is fixed, the next open imports it.
    std::fs::write(&legacy, format!("{SERVER} alice {a}\n")).unwrap();
    let peers = Peers::load(SERVER, Some(&db(&dir))).unwrap();
    assert_eq!((peers.remembered("alice"), peers.remembered("bob")), (Some(a), None));
}

#[test]
fn a_cursor_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&db(&dir)).unwrap();
    assert_eq!(store.cursor(SERVER).unwrap(), 0);
    store.set_cursor(SERVER, 10).unwrap();
    store.set_cursor(SERVER, 4).unwrap();
    assert_eq!(store.cursor(SERVER).unwrap(), 10, "never back");
    store.set_cursor(SERVER, u64::MAX).unwrap();
    store.set_cursor(SERVER, 11).unwrap();
    assert_eq!(store.cursor(SERVER).unwrap(), u64::MAX, "the whole u64 range orders right");
    assert_eq!(store.cursor("other:1").unwrap(), 0, "per server");
}

#[test]
fn two_handles_on_one_file_see_each_others_writes() {
    // What a `listen` and a `chat` of one user are: two connections.
    let dir = tempfile::tempdir().unwrap();
    let listen = LocalStore::open(&db(&dir)).unwrap();
    let chat = LocalStore::open(&db(&dir)).unwrap();
    let m = msg(1, "alice", user("me"), "hi");
    assert!(listen.record(&m).unwrap());
    assert!(!chat.record(&m).unwrap(), "the other process already showed it");
    assert_eq!(chat.history(SERVER, &Filter::All, 5).unwrap(), vec![m]);
    chat.set_cursor(SERVER, 5).unwrap();
    assert_eq!(listen.cursor(SERVER).unwrap(), 5);
    let fp = Fingerprint::from_bytes([3; 32]);
    let mut chat_peers = Peers::open(SERVER, chat.clone()).unwrap();
    let listen_peers = Peers::open(SERVER, listen.clone()).unwrap();
    chat_peers.remember("carol", fp).unwrap();
    assert_eq!(listen_peers.remembered("carol"), None, "loaded before");
    assert_eq!(Peers::open(SERVER, listen).unwrap().remembered("carol"), Some(fp), "seen on reload");
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(db(&dir), vec![b'x'; 4096]).unwrap();
    let e = LocalStore::open(&db(&dir)).unwrap_err();
    assert!(matches!(e, ClientError::LocalStore { .. }), "{e}");
}

#[test]
fn processes_opening_a_new_store_at_once_import_known_peers_exactly_once() {
    // Several rounds: the race (two first opens switching the file to WAL
    // and creating the schema) does not happen every time.
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let a = Fingerprint::from_bytes([1; 32]);
        std::fs::write(dir.path().join("known_peers"), format!("{SERVER} alice {a}\n")).unwrap();
        let path = db(&dir);
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || LocalStore::open(&path).map(|s| Peers::open(SERVER, s)))
            })
            .collect();
        for handle in opened {
            let peers = handle.join().unwrap().unwrap().unwrap();
            assert_eq!(peers.remembered("alice"), Some(a), "every opener sees the import");
        }
        assert!(!dir.path().join("known_peers").exists());
        assert!(dir.path().join("known_peers.migrated").exists());
    }
}

#[test]
fn a_version_1_database_gains_the_end_to_end_tables_and_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&db(&dir)).unwrap();
    store.record(&Msg::sent("s", "me", 1, 5, &Target::User("bob".into()), "kept")).unwrap();
    drop(store);
    // Back to what version 1 wrote.
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    conn.execute_batch(
        "DROP TABLE e2e_groups; DROP TABLE e2e_processed; DROP TABLE e2e_counters; DROP TABLE e2e_joined;
         DROP TABLE file_uploads; DROP TABLE file_downloads;
         CREATE TABLE v1 AS SELECT n, server, id, seq, timestamp_ms, sender, target_kind, target, conversation, text,
                                   direction, label FROM history;
         DROP TABLE history; ALTER TABLE v1 RENAME TO history; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = LocalStore::open(&db(&dir)).unwrap();
    assert_eq!(store.history("s", &Filter::All, 10).unwrap().len(), 1);
    assert_eq!(store.next_sent("s", b"group", "me").unwrap(), 1, "the new tables are there");
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 3);
}

#[test]
fn a_version_2_database_gains_the_file_tables_and_keeps_its_outcomes() {
    use cipherline_client::groups::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&db(&dir)).unwrap();
    let joined = Outcome::Joined { target: Target::Room("team".into()), members: "bob".into() };
    store.set_processed("s me", 7, &joined).unwrap();
    drop(store);
    // Back to what version 2 wrote: no file tables, no file column.
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    conn.execute_batch(
        "DROP TABLE file_uploads; DROP TABLE file_downloads;
         ALTER TABLE e2e_processed DROP COLUMN file; PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let store = LocalStore::open(&db(&dir)).unwrap();
    assert_eq!(store.processed("s me", 7).unwrap(), Some(joined), "kept through the rebuild");
    assert!(store.downloads(None, &[]).unwrap().is_empty(), "the new tables are there");
    let conn = rusqlite::Connection::open(db(&dir)).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 3);
}
