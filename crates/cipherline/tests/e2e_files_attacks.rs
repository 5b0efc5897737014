//! End-to-end files under attack, with the real binary and a real relay
//! (issue 16; PROTOCOL.md §13.12): a relay that alters, truncates,
//! extends, swaps, substitutes or withholds a blob (its `blobs/` files and
//! records edited between upload and download), also in the middle of a
//! resumed download; and a hostile sender (the client library, announcing
//! whatever it likes) with hostile names and sizes. In every case the
//! receiver never saves anything under the file's name that is not the
//! sender's file, never writes outside its directory or over a file,
//! deletes the partial file and says so (`file_failed` with `--json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::conversations::Conversations;
use cipherline_client::{Client, LocalStore, Options};
use cipherline_proto::ClientConfig;
use cipherline_proto::app::{BlobRequest, ClientMessage, FileAnnouncement, MAX_BLOB_DATA};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::filestream::{FILE_KEY_LEN, FileCipher, SEALED_CHUNK_SIZE, chunk_len, sealed_size};
use common::Server;
use common::transfers::{MANY_CONNECTIONS, Running, events, files, json_lines, publish};
use serde_json::Value;

fn run(server: &Server, subcommand: &str, name: &str, args: &[&str]) -> Output {
    server.client(subcommand, name).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    common::succeeded(out)
}

/// `size` bytes that differ everywhere, starting with `marker`.
fn content(size: usize, marker: &[u8]) -> Vec<u8> {
    let mut data: Vec<u8> = (0..size).map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    let n = marker.len().min(size);
    data[..n].copy_from_slice(&marker[..n]);
    data
}

/// The blob files the relay holds.
fn blobs(dir: &Path) -> BTreeSet<PathBuf> {
    let blobs = dir.join("server-data").join("blobs");
    if !blobs.is_dir() {
        return BTreeSet::new();
    }
    common::files_under(&blobs).into_iter().collect()
}

/// The names in `dir`.
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// A running client whose stdout lines are read as they come.
/// `listen --accept-files INBOX --json` as bob.
fn listener(server: &Server, inbox: &Path, extra: &[&str]) -> Running {
    let mut command = server.client("listen", "bob");
    command.args(["--accept-files", inbox.to_str().unwrap(), "--json"]).args(extra);
    Running::start(command)
}

/// Each ended download's saved path or `file_failed` reason, by id.
type Ends = HashMap<String, Result<PathBuf, String>>;

/// How many downloads ended (saved or failed).
fn ended(seen: &[Value]) -> usize {
    events(seen, "file_saved").len() + events(seen, "file_failed").len()
}

/// The offered download ids by name, and the `file_failed` reason or
/// saved path of each id.
fn outcomes(seen: &[Value]) -> (HashMap<String, Vec<String>>, Ends) {
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    for v in events(seen, "file_offered") {
        ids.entry(v["name"].as_str().unwrap().to_owned()).or_default().push(v["id"].as_str().unwrap().to_owned());
    }
    let mut end = HashMap::new();
    for v in events(seen, "file_saved") {
        end.insert(v["id"].as_str().unwrap().to_owned(), Ok(PathBuf::from(v["path"].as_str().unwrap())));
    }
    for v in events(seen, "file_failed") {
        end.insert(v["id"].as_str().unwrap().to_owned(), Err(v["reason"].as_str().unwrap().to_owned()));
    }
    (ids, end)
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Sets a blob's size in the relay's record (the relay is stopped).
fn set_recorded_size(dir: &Path, blob_file: &Path, size: u64) {
    let id = hex_to_bytes(blob_file.file_name().unwrap().to_str().unwrap());
    let db = rusqlite::Connection::open(dir.join("server-data").join("store.sqlite3")).unwrap();
    let n = db.execute("UPDATE blobs SET size = ?1 WHERE id = ?2", rusqlite::params![size as i64, id]).unwrap();
    assert_eq!(n, 1);
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

const SEALED: u64 = SEALED_CHUNK_SIZE as u64;

#[test]
fn a_relay_that_alters_truncates_extends_swaps_or_substitutes_a_blob_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Four chunks each (three whole and a short one).
    let size = 200_000;
    let mut blob_of: HashMap<String, PathBuf> = HashMap::new();
    let sent = |name: &str, data: &[u8]| {
        let path = src.join(name);
        std::fs::write(&path, data).unwrap();
        let before = blobs(dir.path());
        ok(&run(&server, "send", "alice", &["--to", "bob", "--file", path.to_str().unwrap()]));
        let new: Vec<PathBuf> = blobs(dir.path()).difference(&before).cloned().collect();
        assert_eq!(new.len(), 1);
        new.into_iter().next().unwrap()
    };
    for name in ["flipped", "truncated", "shortened", "extended", "lengthened", "swapped", "substituted", "donor"] {
        let blob = sent(&format!("{name}.bin"), &content(size, name.as_bytes()));
        blob_of.insert(name.to_owned(), blob);
    }
    // Two versions of one file: the relay serves the first as the second.
    let v1 = content(size, b"version 1");
    let v2 = content(size, b"version 2");
    blob_of.insert("v1".into(), sent("report.txt", &v1));
    blob_of.insert("v2".into(), sent("report.txt", &v2));
    let sealed = sealed_size(size as u64).unwrap();
    server.stop();

    let b = |name: &str| blob_of[name].clone();
    let mut flipped = std::fs::read(b("flipped")).unwrap();
    flipped[70_000] ^= 1;
    std::fs::write(b("flipped"), &flipped).unwrap();
    // Cut to two whole chunks; the record still says complete with the
    // full size (the relay drops it at start), or says the new size.
    for name in ["truncated", "shortened"] {
        std::fs::OpenOptions::new().write(true).open(b(name)).unwrap().set_len(2 * SEALED).unwrap();
    }
    set_recorded_size(dir.path(), &b("shortened"), 2 * SEALED);
    // A sealed chunk's worth appended; the record unchanged (the relay
    // cuts the file at start), or saying the new size.
    for name in ["extended", "lengthened"] {
        let mut f = std::fs::OpenOptions::new().append(true).open(b(name)).unwrap();
        f.write_all(&vec![0x5a; SEALED_CHUNK_SIZE]).unwrap();
    }
    set_recorded_size(dir.path(), &b("lengthened"), sealed + SEALED);
    let mut swapped = std::fs::read(b("swapped")).unwrap();
    let (first, rest) = swapped.split_at_mut(SEALED_CHUNK_SIZE);
    first.swap_with_slice(&mut rest[..SEALED_CHUNK_SIZE]);
    std::fs::write(b("swapped"), &swapped).unwrap();
    std::fs::copy(b("donor"), b("substituted")).unwrap();
    std::fs::copy(b("v1"), b("v2")).unwrap();
    server.restart();

    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut bob = listener(&server, &inbox, &["--timeout", "60"]);
    bob.until(Duration::from_secs(60), |seen| ended(seen) == 10);
    let seen = bob.kill();
    let (ids, end) = outcomes(&seen);
    let outcome = |name: &str| &end[&ids[name][0]];
    for name in ["flipped", "shortened", "lengthened", "swapped", "substituted"] {
        let why = outcome(&format!("{name}.bin")).as_ref().expect_err(name);
        assert!(why.contains("corrupted or tampered with"), "{name}: {why}");
    }
    let why = outcome("truncated.bin").as_ref().expect_err("truncated");
    assert!(why.contains("no longer on the relay"), "{why}");
    // What the relay repaired itself (it cuts a file longer than its
    // blob), and what was not touched, arrives whole.
    assert_eq!(std::fs::read(inbox.join("extended.bin")).unwrap(), content(size, b"extended"));
    assert_eq!(std::fs::read(inbox.join("donor.bin")).unwrap(), content(size, b"donor"));
    // The first version is saved; the second, served the first's bytes,
    // is refused (another key opens nothing).
    let reports: Vec<_> = ids["report.txt"].iter().map(|id| end[id].clone()).collect();
    assert_eq!(reports.iter().filter(|r| r.is_ok()).count(), 1, "{reports:?}");
    assert!(reports.iter().any(|r| r.as_ref().is_err_and(|why| why.contains("corrupted or tampered with"))));
    assert_eq!(std::fs::read(inbox.join("report.txt")).unwrap(), v1);
    // Nothing else in the directory: no partial file, no tampered file.
    assert_eq!(names_in(&inbox), ["donor.bin", "extended.bin", "report.txt"].map(String::from).into());
    assert_eq!(ok(&files(&server, "bob", "list", &["--json"])), "", "failed downloads are not offered again");
}

#[test]
fn a_tampered_chunk_met_when_a_download_resumes_is_caught_and_the_partial_file_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("big.bin");
    // Large enough to be killed mid-way on a fast machine (96 MiB could
    // finish between a progress line and the kill).
    let size: u64 = 512 << 20;
    std::fs::write(&file, content(size as usize, b"big")).unwrap();
    ok(&run(&server, "send", "alice", &["--to", "bob", "--file", file.to_str().unwrap()]));
    let stored: Vec<PathBuf> = blobs(dir.path()).into_iter().collect();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut bob = listener(&server, &inbox, &[]);
    bob.until(Duration::from_secs(60), |seen| {
        events(seen, "file_progress").iter().any(|v| v["bytes"].as_u64().unwrap() >= 4 << 20)
    });
    let seen = bob.kill();
    assert!(ended(&seen) == 0, "the download finished before it could be killed");
    let partial: Vec<String> = names_in(&inbox).into_iter().filter(|n| n.starts_with('.')).collect();
    assert_eq!(partial.len(), 1, "a partial file is kept");
    // The relay alters a chunk near the end, past what bob holds.
    let sealed = sealed_size(size).unwrap();
    overwrite(&stored[0], sealed - SEALED - 1000, b"tampered");
    let mut bob = listener(&server, &inbox, &[]);
    bob.until(Duration::from_secs(120), |seen| ended(seen) == 1);
    let seen = bob.kill();
    let first = events(&seen, "file_progress")[0]["bytes"].as_u64().unwrap();
    assert!(first >= 4 << 20, "the download resumed (at {first}), it did not start over");
    let failed = events(&seen, "file_failed");
    assert_eq!(failed.len(), 1, "{seen:?}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("corrupted or tampered with"), "{seen:?}");
    assert!(names_in(&inbox).is_empty(), "the partial file is deleted, nothing saved");
}

/// A sender using the client library directly, so it can announce
/// whatever it likes and upload as much of a blob as it likes.
struct Mallory {
    rt: tokio::runtime::Runtime,
    client: Client,
    e2e: Conversations,
    group: Vec<u8>,
    next_blob: u8,
}

impl Mallory {
    fn connect(server: &Server, dir: &Path) -> Mallory {
        let home = dir.join("mallory");
        std::fs::create_dir_all(&home).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let (client, e2e, group) = rt.block_on(async {
            let identity = Arc::new(IdentityKey::ed25519_from_seed(&[0x6d; 32]).unwrap());
            let options = Options {
                config: Arc::new(ClientConfig { identity: Some(identity.clone()), ..ClientConfig::default() }),
                ..Options::default()
            };
            let any = |_: &str, _: &ServerPublicKey| Ok(());
            let mut client = Client::connect(&server.addr, "mallory", &options, &any).await.unwrap();
            let store = LocalStore::in_data_dir(&home).unwrap();
            let e2e = Conversations::open(&home, &server.addr, "mallory", &identity, store).unwrap().unwrap();
            let group = e2e.direct(&mut client, "bob", &mut |_, _| Ok(())).await.unwrap();
            (client, e2e, group)
        });
        Mallory { rt, client, e2e, group, next_blob: 1 }
    }

    /// Creates a blob of `data` sealed under a fresh key and uploads its
    /// first `upload` sealed bytes (all of them if `None`); returns the
    /// blob id and key.
    fn blob(&mut self, data: &[u8], upload: Option<u64>) -> ([u8; 16], [u8; FILE_KEY_LEN]) {
        let blob = [self.next_blob; 16];
        let key = [self.next_blob.wrapping_add(0x80); FILE_KEY_LEN];
        self.next_blob += 1;
        let size = data.len() as u64;
        let cipher = FileCipher::new(&key, size).unwrap();
        let mut sealed = Vec::new();
        let mut at = 0;
        for index in 0..cipher.chunks() {
            let len = chunk_len(size, index).unwrap();
            sealed.extend_from_slice(&cipher.seal(index, &data[at..at + len]).unwrap());
            at += len;
        }
        let upload = upload.unwrap_or(sealed.len() as u64) as usize;
        let (client, group) = (&mut self.client, &self.group);
        self.rt.block_on(async {
            cipherline_client::files::blob_upload(client, blob, group, sealed.len() as u64).await.unwrap();
            let mut offset = 0;
            for piece in sealed[..upload].chunks(MAX_BLOB_DATA) {
                let data = piece.to_vec();
                let chunk = BlobRequest::Chunk { blob, offset: offset as u64, data };
                client.send_message(&ClientMessage::Blob(chunk)).await.unwrap();
                offset += piece.len();
            }
            // Answered in order: the chunks are in once this is answered.
            cipherline_client::files::blob_upload(client, blob, group, sealed.len() as u64).await.unwrap();
        });
        (blob, key)
    }

    /// Announces a file to bob, saying what mallory likes.
    fn announce(&mut self, blob: [u8; 16], key: [u8; FILE_KEY_LEN], size: u64, sha256: [u8; 32], name: &str) {
        let file = FileAnnouncement { blob, key: zeroize::Zeroizing::new(key), size, sha256, name: name.to_owned() };
        let payload = self.e2e.seal_file(&self.group, &file).unwrap();
        let (client, e2e, group) = (&mut self.client, &self.e2e, &self.group);
        self.rt.block_on(async {
            client.group_send_acked(group, payload).await.unwrap();
            e2e.sent(client, group).await;
        });
    }

    /// Uploads `data` whole and announces it under `name`.
    fn send(&mut self, data: &[u8], name: &str) -> [u8; 16] {
        let (blob, key) = self.blob(data, None);
        self.announce(blob, key, data.len() as u64, cipherline_proto::crypto::sha256(data), name);
        blob
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hostile_announcements_never_escape_the_directory_replace_a_file_or_pass_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::quick_logged(dir.path(), &log);
    publish(&server, "bob");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("exists.txt"), b"mine").unwrap();
    let mut m = Mallory::connect(&server, dir.path());
    let small = |tag: &str| content(1000, tag.as_bytes());

    // A download the sender never completes: one chunk of three uploaded.
    let withheld_data = content(140_000, b"withheld");
    let (withheld, key) = m.blob(&withheld_data, Some(SEALED));
    m.announce(withheld, key, 140_000, cipherline_proto::crypto::sha256(&withheld_data), "withheld.bin");
    // The withheld download is bob's first (d1): its partial file's name.
    let partial_name = format!(".{}.1.cipherline-part", hex(&withheld));
    // Hostile names: each is saved inside the directory, sanitised, never
    // over a file (nor over the partial file of another download).
    let bidi_255 = "\u{202e}".repeat(85);
    let names = [
        ("../../x", "x"),
        (".hidden", "hidden"),
        ("a/b", "b"),
        (" .bashrc", "bashrc"),
        ("CON", "CON"),
        ("exists.txt", "exists (1).txt"),
        (partial_name.as_str(), &partial_name[1..]),
        ("\u{202e}\u{200f}\u{1b}", "file"),
        (bidi_255.as_str(), "file (1)"),
    ];
    assert_eq!(bidi_255.len(), 255);
    for (name, _) in &names {
        m.send(&small(name), name);
    }
    // An announced size that is not the blob's.
    let (blob, key) = m.blob(&small("mismatch"), None);
    m.announce(blob, key, 2000, cipherline_proto::crypto::sha256(&small("mismatch")), "mismatch.bin");
    // One blob announced twice, under two names.
    let (blob, key) = m.blob(&small("twice"), None);
    let sha = cipherline_proto::crypto::sha256(&small("twice"));
    m.announce(blob, key, 1000, sha, "twice-a.txt");
    m.announce(blob, key, 1000, sha, "twice-b.txt");
    // Over --max-file-size (150K), and 2^63 bytes (over it, and a size no
    // blob has): shown, not fetched.
    m.send(&content(200_000, b"big"), "big.bin");
    let (blob, key) = m.blob(&small("huge"), None);
    m.announce(blob, key, 1 << 63, sha, "huge.bin");
    // Within --max-file-size each, but past --max-total (400K) together:
    // 140K + 9 x 1000 + 2000 + 2 x 1000 + 2 x 120K = 393K, and 120K more.
    for name in ["fill-1.bin", "fill-2.bin", "fill-3.bin"] {
        m.send(&content(120_000, name.as_bytes()), name);
    }

    let started = Instant::now();
    let mut bob = listener(&server, &inbox, &["--max-file-size", "150K", "--max-total", "400K"]);
    // 9 names, the mismatch, twice, fill-1 and fill-2 end; nothing else.
    bob.until(Duration::from_secs(60), |seen| ended(seen) == 14);
    // The withheld download waits (bounded: held fetches, no busy loop).
    bob.for_a_while(Duration::from_secs(15).saturating_sub(started.elapsed()).max(Duration::from_secs(3)));
    let listened = started.elapsed();
    let seen = bob.kill();
    assert_eq!(ended(&seen), 14, "{seen:?}");
    let (ids, end) = outcomes(&seen);
    let offered: HashMap<String, bool> = events(&seen, "file_offered")
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v["accepting"].as_bool().unwrap()))
        .collect();
    for name in ["big.bin", "huge.bin", "fill-3.bin"] {
        assert_eq!(offered.get(name), Some(&false), "{name} is shown and not fetched: {seen:?}");
        assert!(!end.contains_key(&ids[name][0]));
    }
    assert_eq!(ids["withheld.bin"], ["d1"], "the partial file's name above");
    assert!(!end.contains_key(&ids["withheld.bin"][0]), "the withheld file neither saved nor failed");
    let mismatch = ids.get("mismatch.bin").and_then(|ids| end.get(&ids[0]));
    let why = mismatch.unwrap_or_else(|| panic!("mismatch.bin did not end: {seen:?}")).as_ref().expect_err("mismatch");
    assert!(why.contains("corrupted or tampered with"), "{why}");
    // Every saved file is the sender's content, where expected.
    for (name, saved) in &names {
        let path = end[&ids[*name][0]].clone().unwrap_or_else(|why| panic!("{name:?}: {why}"));
        assert_eq!(path.parent().unwrap(), inbox, "{name:?} saved at {path:?}");
        if !saved.starts_with("file") {
            assert_eq!(path.file_name().unwrap().to_str().unwrap(), *saved, "{name:?}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), small(name), "{name:?}");
    }
    assert_eq!(std::fs::read(inbox.join("exists.txt")).unwrap(), b"mine", "never replaced");
    for name in ["fill-1.bin", "fill-2.bin"] {
        assert_eq!(std::fs::read(inbox.join(name)).unwrap(), content(120_000, name.as_bytes()));
    }
    // The same blob twice: each either saved whole or failed (the relay
    // deleted the blob once bob was done with it), never anything else.
    for name in ["twice-a.txt", "twice-b.txt"] {
        if let Ok(path) = &end[&ids[name][0]] {
            assert_eq!(std::fs::read(path).unwrap(), small("twice"));
        }
    }
    assert!(end[&ids["twice-a.txt"][0]].is_ok() || end[&ids["twice-b.txt"][0]].is_ok());
    // The withheld download's partial file holds the one chunk it could
    // check, under its hidden name; nothing presents it as the file.
    assert_eq!(std::fs::read(inbox.join(&partial_name)).unwrap(), withheld_data[..SEALED_CHUNK_SIZE - 16].to_vec());
    let listed = names_in(&inbox);
    assert!(!listed.contains("withheld.bin") && !listed.iter().any(|n| n.starts_with("big") || n.starts_with("huge")));
    assert!(!listed.contains("fill-3.bin"));
    let hidden: Vec<&String> = listed.iter().filter(|n| n.starts_with('.')).collect();
    assert_eq!(hidden, [&partial_name], "no hidden file but the partial one");
    // Nothing was written outside the directory.
    assert!(!dir.path().join("x").exists() && !dir.path().join("b").exists());
    // The withheld blob was asked for a few times (each fetch held up to
    // 10 s by the relay), not in a busy loop.
    let short = hex(&withheld[..4]);
    let text = std::fs::read_to_string(&log).unwrap();
    let fetches = text.lines().filter(|l| l.contains("blob fetched") && l.contains(&short)).count();
    assert!(fetches >= 1, "bob never asked for the withheld file");
    assert!(fetches <= 3 + 2 * listened.as_secs() as usize / 10, "{fetches} fetches in {listened:?}");

    // `files get` of the 2^63-byte announcement fails cleanly, writing nothing.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let huge = &ids["huge.bin"][0];
    let out = files(&server, "bob", "get", &[huge, "--dir", other.to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    let got = json_lines(&String::from_utf8_lossy(&out.stdout));
    let why = events(&got, "file_failed")[0]["reason"].as_str().unwrap().to_owned();
    assert!(why.contains("corrupted or tampered with"), "{got:?}");
    assert!(names_in(&other).is_empty());
}

#[test]
fn an_upload_resumes_over_a_half_written_blob_file_after_the_relay_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick_with_limits(dir.path(), Some(MANY_CONNECTIONS));
    publish(&server, "bob");
    let file = dir.path().join("big.bin");
    // Large enough to be killed mid-way on a fast machine.
    let data = content(512 << 20, b"half");
    std::fs::write(&file, &data).unwrap();
    let args = ["--to", "bob", "--file", file.to_str().unwrap()];
    let mut command = server.client("send", "alice");
    command.args(args).arg("--json");
    let mut sender = Running::start(command);
    sender.until(Duration::from_secs(60), |seen| {
        events(seen, "file_progress").iter().any(|v| v["bytes"].as_u64().unwrap() >= 4 << 20)
    });
    let seen = sender.kill();
    assert!(events(&seen, "file_sent").is_empty(), "the upload finished before it could be killed");
    // The relay stops with the blob's last piece half written: its file
    // ends in the middle of a piece and of a sealed chunk.
    server.stop();
    let blob = blobs(dir.path()).into_iter().next().unwrap();
    let len = std::fs::metadata(&blob).unwrap().len();
    assert!(len > 2 * SEALED, "{len}");
    let cut = len - 5000;
    std::fs::OpenOptions::new().write(true).open(&blob).unwrap().set_len(cut).unwrap();
    server.restart();
    // The same command continues from what the relay holds, re-sealing
    // the chunk it ends in.
    let again = json_lines(&ok(&server.client("send", "alice").args(args).arg("--json").output().unwrap()));
    let started = events(&again, "file_started");
    assert_eq!(started[0]["resumed"], true, "{again:?}");
    assert!(started[0]["from"].as_u64().unwrap() <= cut, "{again:?}");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut bob = listener(&server, &inbox, &[]);
    bob.until(Duration::from_secs(120), |seen| ended(seen) == 1);
    let seen = bob.kill();
    assert_eq!(events(&seen, "file_saved").len(), 1, "{seen:?}");
    assert!(std::fs::read(inbox.join("big.bin")).unwrap() == data, "the file arrives whole");
}
