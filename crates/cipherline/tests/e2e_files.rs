//! End-to-end files with the real binary and a real relay (issue 16): a
//! file sent to an offline user and saved later, a room file fetched by
//! two members from one upload, hostile names, never replacing a file,
//! uploads and downloads killed in the middle and resumed, `files
//! list|get|cancel`, and the 1 GiB kill-and-resume transfer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::Server;
use common::transfers::{MANY_CONNECTIONS, Running, events, files, json_lines, publish};
use serde_json::Value;

fn run(server: &Server, subcommand: &str, name: &str, args: &[&str]) -> Output {
    if subcommand == "room" {
        return common::room_command(server, name, args);
    }
    server.client(subcommand, name).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    common::succeeded(out)
}

/// SHA-256 of a file, in hex (by the system's sha256sum: the test checks
/// the client's hashing, it does not use it).
fn sha256_hex(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

/// Writes a file of `size` bytes of a pattern that differs everywhere
/// (so a misplaced chunk changes the hash), with `marker` at the start;
/// constant memory.
fn make_file(path: &Path, size: u64, marker: &[u8]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    f.write_all(marker).unwrap();
    written += marker.len() as u64;
    let mut block = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while written < size {
        for (i, b) in block.iter_mut().enumerate() {
            *b = ((n.wrapping_mul(2_654_435_761) >> 7) as u8) ^ (i as u8);
        }
        n += 1;
        let take = (size - written).min(block.len() as u64) as usize;
        f.write_all(&block[..take]).unwrap();
        written += take as u64;
    }
    f.flush().unwrap();
}

fn saved_path(v: &Value) -> PathBuf {
    PathBuf::from(v["path"].as_str().unwrap())
}

/// Files in `dir` whose names start with a dot (partial files).
fn hidden_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn a_file_to_an_offline_user_is_saved_later_by_listen() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("report.txt");
    make_file(&file, 200_000, b"marker-file-5e1d ");
    let sent =
        json_lines(&ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap(), "--json"])));
    let done = events(&sent, "file_sent");
    assert_eq!(done.len(), 1, "{sent:?}");
    assert_eq!(done[0]["sha256"], sha256_hex(&file));
    assert_eq!(done[0]["resumed"], false);
    // bob comes online later and saves it.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "60"],
    )));
    let offered = events(&got, "file_offered");
    assert_eq!(offered.len(), 1, "{got:?}");
    assert_eq!((offered[0]["from"].as_str(), offered[0]["name"].as_str()), (Some("alice"), Some("report.txt")));
    let saved = events(&got, "file_saved");
    assert_eq!(saved.len(), 1, "{got:?}");
    assert_eq!(saved_path(saved[0]), inbox.join("report.txt"));
    assert_eq!(saved[0]["sha256"], sha256_hex(&file));
    assert_eq!(std::fs::read(inbox.join("report.txt")).unwrap(), std::fs::read(&file).unwrap());
    assert!(hidden_in(&inbox).is_empty(), "no partial file left");
    // Only ciphertext reached the relay.
    for entry in common::files_under(&dir.path().join("server-data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!common::holds(&bytes, b"marker-file-5e1d"), "{} holds the plaintext", entry.display());
    }
    // Done: not pending any more.
    assert_eq!(ok(&files(&server, "bob", "list", &["--json"])), "");
}

/// Sends `file` as `name` with `--json`, kills the sender once it reported
/// `at` bytes sent, and returns the bytes it had reported.
fn kill_sender_at(server: &Server, name: &str, args: &[&str], at: u64, limit: Duration) -> u64 {
    let mut command = server.client("send", name);
    command.args(args).arg("--json");
    let mut sender = Running::start(command);
    let v = sender.wait(limit, |v| v["event"] == "file_progress" && v["bytes"].as_u64().unwrap() >= at);
    let bytes = v["bytes"].as_u64().unwrap();
    assert!(bytes < v["total"].as_u64().unwrap(), "the upload finished before it could be killed");
    sender.kill();
    bytes
}

/// The size of the files the kill-midway tests send: large enough that
/// the transfer is still going when the process is killed at its first
/// progress lines (96 MiB finished between a progress line and the kill
/// once the relay got faster).
const KILLED_MIDWAY: u64 = 512 << 20;

/// Listens with `--accept-files DIR --json` as `name`, kills it once it
/// reported `at` bytes received, and returns the bytes it had reported.
fn kill_listener_at(server: &Server, name: &str, dir: &Path, at: u64, limit: Duration) -> u64 {
    let mut command = server.client("listen", name);
    command.args(["--accept-files", dir.to_str().unwrap(), "--json"]);
    let mut listener = Running::start(command);
    let v = listener.wait(limit, |v| v["event"] == "file_progress" && v["bytes"].as_u64().unwrap() >= at);
    let bytes = v["bytes"].as_u64().unwrap();
    assert!(bytes < v["total"].as_u64().unwrap(), "the download finished before it could be killed");
    listener.kill();
    bytes
}

#[test]
fn an_upload_killed_midway_resumes_when_the_command_is_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("big.bin");
    make_file(&file, KILLED_MIDWAY, b"");
    let args = ["--to", "bob", "--file", file.to_str().unwrap()];
    let before = kill_sender_at(&server, "alice", &args, 4 << 20, Duration::from_secs(60));
    // The relay kept what arrived; alice's data directory remembers the upload.
    let pending = json_lines(&ok(&files(&server, "alice", "list", &["--json"])));
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["direction"], "out");
    // The same command again continues, it does not start over.
    let again = json_lines(&ok(&server.client("send", "alice").args(args).arg("--json").output().unwrap()));
    let started = events(&again, "file_started");
    assert_eq!(started[0]["resumed"], true, "{again:?}");
    let from = started[0]["from"].as_u64().unwrap();
    // Resumed, not started over; where exactly depends on how much reached
    // the relay between the last progress line and the kill, which a busy
    // machine stretches (the whole file's hash is checked below).
    assert!(from > 0 && from < KILLED_MIDWAY, "resumed at {from}, {before} reported sent before the kill");
    assert_eq!(events(&again, "file_sent")[0]["sha256"], sha256_hex(&file));
    // One announcement only, and the file arrives whole.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "120"],
    )));
    assert_eq!(events(&got, "file_offered").len(), 1, "{got:?}");
    assert_eq!(sha256_hex(&inbox.join("big.bin")), sha256_hex(&file));
    assert_eq!(ok(&files(&server, "alice", "list", &["--json"])), "", "the upload is finished");
}

#[test]
fn a_download_killed_midway_resumes_when_listen_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("big.bin");
    make_file(&file, KILLED_MIDWAY, b"");
    ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]));
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let before = kill_listener_at(&server, "bob", &inbox, 4 << 20, Duration::from_secs(60));
    let partial = hidden_in(&inbox);
    assert_eq!(partial.len(), 1, "a partial file is kept");
    assert!(std::fs::metadata(&partial[0]).unwrap().len() >= before);
    // Restarted, listen continues the download by itself, from where it was.
    let mut command = server.client("listen", "bob");
    command.args(["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "120"]);
    let got = json_lines(&ok(&command.output().unwrap()));
    let progress = events(&got, "file_progress");
    let first = progress[0]["bytes"].as_u64().unwrap();
    assert!(first >= before, "restarted at {first}, had {before}: {got:?}");
    let saved = events(&got, "file_saved");
    assert_eq!(saved.len(), 1, "{got:?}");
    assert_eq!(sha256_hex(&saved_path(saved[0])), sha256_hex(&file));
    assert!(hidden_in(&inbox).is_empty(), "the partial file became the file");
}

/// The blob files the relay holds.
fn blobs(dir: &Path) -> Vec<PathBuf> {
    let blobs = dir.join("server-data").join("blobs");
    if !blobs.is_dir() {
        return Vec::new();
    }
    common::files_under(&blobs)
}

#[test]
fn a_room_file_is_fetched_by_two_members_from_one_upload() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    publish(&server, "carol");
    ok(&run(&server, "room", "alice", &["create", "team"]));
    ok(&run(&server, "room", "alice", &["invite", "team", "bob", "carol"]));
    let file = dir.path().join("slides.pdf");
    make_file(&file, 300_000, b"");
    ok(&run(&server, "send", "alice", &["--room", "team", "--file", file.to_str().unwrap()]));
    assert_eq!(blobs(dir.path()).len(), 1, "one upload");
    for name in ["bob", "carol"] {
        let inbox = dir.path().join(format!("inbox-{name}"));
        std::fs::create_dir(&inbox).unwrap();
        let got = json_lines(&ok(&run(
            &server,
            "listen",
            name,
            &["--room", "team", "--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "60"],
        )));
        let offered = events(&got, "file_offered");
        assert_eq!(offered[0]["room"], "team", "{got:?}");
        assert_eq!(sha256_hex(&inbox.join("slides.pdf")), sha256_hex(&file), "{name}");
    }
    // Both said they are done with it: the relay deleted it.
    assert!(blobs(dir.path()).is_empty(), "{:?}", blobs(dir.path()));
}

#[test]
fn a_received_file_never_replaces_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("notes.txt"), b"bob's own notes").unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"alice's notes").unwrap();
    ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]));
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "60"],
    )));
    let saved = events(&got, "file_saved");
    assert_eq!(saved_path(saved[0]), inbox.join("notes (1).txt"), "{got:?}");
    assert_eq!(std::fs::read(inbox.join("notes.txt")).unwrap(), b"bob's own notes");
    assert_eq!(std::fs::read(inbox.join("notes (1).txt")).unwrap(), b"alice's notes");
}

/// A sender announcing a hostile name through the library (the CLI
/// always announces the file's own name).
#[test]
fn a_hostile_file_name_is_saved_sanitised_and_shown_escaped() {
    use std::sync::Arc;

    use cipherline_client::conversations::Conversations;
    use cipherline_client::{Client, LocalStore, Options};
    use cipherline_proto::ClientConfig;
    use cipherline_proto::app::Target;
    use cipherline_proto::crypto::kem::ServerPublicKey;
    use cipherline_proto::crypto::sign::IdentityKey;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("harmless.txt");
    std::fs::write(&file, b"not what the name says").unwrap();
    let hostile = "../../\u{1b}]0;pwned\u{7}.bashrc\u{202e}txt.exe";
    let mallory_dir = dir.path().join("mallory");
    std::fs::create_dir(&mallory_dir).unwrap();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
        let identity = Arc::new(IdentityKey::ed25519_from_seed(&[0x6d; 32]).unwrap());
        let options = Options {
            config: Arc::new(ClientConfig { identity: Some(identity.clone()), ..ClientConfig::default() }),
            ..Options::default()
        };
        let any = |_: &str, _: &ServerPublicKey| Ok(());
        let mut client = Client::connect(&server.addr, "mallory", &options, &any).await.unwrap();
        let store = LocalStore::in_data_dir(&mallory_dir).unwrap();
        let e2e = Conversations::open(&mallory_dir, &server.addr, "mallory", &identity, store).unwrap().unwrap();
        let group = e2e.direct(&mut client, "bob", &mut |_, _| Ok(())).await.unwrap();
        let target = Target::User("bob".into());
        cipherline_client::files::upload::upload_named(
            &e2e,
            &mut client,
            &file,
            Some(hostile),
            &group,
            &target,
            &mut |_| {},
        )
        .await
        .unwrap();
    });
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let out =
        run(&server, "listen", "bob", &["--accept-files", inbox.to_str().unwrap(), "--count", "1", "--timeout", "60"]);
    let shown = format!("{}{}", ok(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!shown.contains('\u{1b}') && !shown.contains('\u{202e}') && !shown.contains('\u{7}'), "{shown:?}");
    // Saved inside the directory, under the name without its path,
    // controls and bidi override, and not hidden.
    let names: Vec<String> =
        std::fs::read_dir(&inbox).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["]0;pwned.bashrctxt.exe"]);
    assert_eq!(std::fs::read(inbox.join(&names[0])).unwrap(), b"not what the name says");
    assert!(!dir.path().join(".bashrc").exists());
}

#[test]
fn files_are_listed_fetched_and_cancelled_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    for (name, text) in [("one.txt", "first file"), ("two.txt", "second file")] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]));
    }
    // Without --accept-files, listen shows the offers and keeps them.
    let shown = json_lines(&ok(&run(&server, "listen", "bob", &["--json", "--timeout", "3"])));
    assert_eq!(events(&shown, "file_offered").len(), 2, "{shown:?}");
    let listed = json_lines(&ok(&files(&server, "bob", "list", &["--json"])));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|f| f["state"] == "offered" && f["direction"] == "in" && f["peer"] == "alice"));
    let id = |name: &str| listed.iter().find(|f| f["name"] == name).unwrap()["id"].as_str().unwrap().to_owned();
    let (one, two) = (id("one.txt"), id("two.txt"));
    let text = ok(&files(&server, "bob", "list", &[]));
    assert!(text.contains(&one) && text.contains("one.txt") && text.contains("offered"), "{text}");
    // get: fetched now, into the directory given.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = json_lines(&ok(&files(&server, "bob", "get", &[&one, "--dir", inbox.to_str().unwrap(), "--json"])));
    assert_eq!(saved_path(events(&got, "file_saved")[0]), inbox.join("one.txt"));
    assert_eq!(std::fs::read_to_string(inbox.join("one.txt")).unwrap(), "first file");
    // cancel: forgotten.
    ok(&files(&server, "bob", "cancel", &[&two]));
    assert_eq!(ok(&files(&server, "bob", "list", &["--json"])), "");
    // Ids that are not there, or not ids.
    assert!(!files(&server, "bob", "get", &["d999"]).status.success());
    assert_eq!(files(&server, "bob", "cancel", &["x1"]).status.code(), Some(2));
}

#[test]
fn a_cancelled_upload_is_gone_for_its_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("big.bin");
    make_file(&file, 64 << 20, b"");
    kill_sender_at(
        &server,
        "alice",
        &["--to", "bob", "--file", file.to_str().unwrap()],
        1 << 20,
        Duration::from_secs(60),
    );
    let pending = json_lines(&ok(&files(&server, "alice", "list", &["--json"])));
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with('u'), "{pending:?}");
    ok(&files(&server, "alice", "cancel", &[&id]));
    assert_eq!(ok(&files(&server, "alice", "list", &["--json"])), "");
    assert!(blobs(dir.path()).is_empty(), "the relay deleted it");
    // bob is told, and nothing is left in his directory.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--timeout", "5"],
    )));
    let failed = events(&got, "file_failed");
    assert_eq!(failed.len(), 1, "{got:?}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("no longer on the relay"), "{got:?}");
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
}

/// Writes `size` bytes quickly (a debug build writing 1 GiB byte by byte
/// takes long): a fixed block with a counter every 4 KiB, so no two 64 KiB
/// chunks are alike and a chunk out of place changes the hash.
fn make_big_file(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut written = 0u64;
    let mut n = 0u64;
    while written < size {
        for at in (0..block.len()).step_by(4096) {
            block[at..at + 8].copy_from_slice(&n.to_be_bytes());
            n += 1;
        }
        let take = (size - written).min(block.len() as u64) as usize;
        f.write_all(&block[..take]).unwrap();
        written += take as u64;
    }
    f.flush().unwrap();
}

/// The test: a 1 GiB file; the sender is killed in the middle of
/// the upload and run again (it resumes); the receiving `listen` is killed
/// in the middle of the download and started again (it resumes); the
/// file saved is the file sent, byte for byte (by SHA-256).
#[test]
fn a_1_gib_transfer_survives_killing_the_sender_and_then_the_receiver() {
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("huge.bin");
    make_big_file(&file, SIZE);
    let want = sha256_hex(&file);
    let args = ["--to", "bob", "--file", file.to_str().unwrap()];
    let killed_at = kill_sender_at(&server, "alice", &args, SIZE / 3, Duration::from_secs(120));
    // Run again: it resumes (in the background, while bob receives).
    let mut command = server.client("send", "alice");
    command.args(args).arg("--json");
    let mut sender = Running::start(command);
    let started = sender.wait(Duration::from_secs(60), |v| v["event"] == "file_started");
    assert_eq!(started["resumed"], true);
    assert!(started["from"].as_u64().unwrap() + (1 << 20) >= killed_at, "{started}");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    // bob receives while the upload goes on, and is killed midway.
    let had = kill_listener_at(&server, "bob", &inbox, SIZE / 2, Duration::from_secs(180));
    // Started again, bob's listen resumes the download by itself.
    let mut command = server.client("listen", "bob");
    command.args(["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "240"]);
    let got = json_lines(&ok(&command.output().unwrap()));
    let first = events(&got, "file_progress")[0]["bytes"].as_u64().unwrap();
    assert!(first >= had, "the download restarted at {first}, it had {had}");
    let saved = events(&got, "file_saved");
    assert_eq!(saved.len(), 1, "{got:?}");
    sender.wait(Duration::from_secs(60), |v| v["event"] == "file_sent");
    let path = saved_path(saved[0]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE);
    assert_eq!(sha256_hex(&path), want);
    assert_eq!(saved[0]["sha256"], want);
    // Disk: gone as soon as checked.
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&file).unwrap();
}

/// The relay (or whoever can write its disk) alters one byte of a stored
/// file: the receiver refuses the chunk, deletes what it wrote, and says
/// so; nothing is saved under the file's name.
#[test]
fn a_file_altered_at_the_relay_is_refused_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("contract.txt");
    make_file(&file, 200_000, b"");
    ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]));
    let stored = blobs(dir.path());
    assert_eq!(stored.len(), 1);
    let mut bytes = std::fs::read(&stored[0]).unwrap();
    bytes[70_000] ^= 1;
    std::fs::write(&stored[0], &bytes).unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--timeout", "5"],
    )));
    let failed = events(&got, "file_failed");
    assert_eq!(failed.len(), 1, "{got:?}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("corrupted or tampered with"), "{got:?}");
    assert!(events(&got, "file_saved").is_empty());
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0, "the partial file was deleted");
    // And it is not offered again.
    assert_eq!(ok(&files(&server, "bob", "list", &["--json"])), "");
}

#[test]
fn an_empty_file_arrives_empty() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("empty");
    std::fs::write(&file, b"").unwrap();
    ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]));
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = json_lines(&ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "1", "--timeout", "30"],
    )));
    let saved = events(&got, "file_saved");
    assert_eq!(saved[0]["size"], 0, "{got:?}");
    assert_eq!(std::fs::read(inbox.join("empty")).unwrap(), b"");
}

#[test]
fn a_file_over_the_relays_quota_is_refused_with_its_reason_and_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::quick_with_limits(dir.path(), Some(&format!("{MANY_CONNECTIONS}max_blob_bytes_per_user = 100000\n")));
    publish(&server, "bob");
    let file = dir.path().join("big.bin");
    make_file(&file, 200_000, b"");
    let out = run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no room for this file") && err.contains("limit of 100000 bytes"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(ok(&files(&server, "alice", "list", &["--json"])), "", "nothing to resume");
    assert!(blobs(dir.path()).is_empty());
}
