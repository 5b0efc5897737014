//! The relay never holds end-to-end plaintext (issue 15, security property
//! 1). With the real binary: a server logging at trace level carries an
//! end-to-end direct message, an end-to-end room message and an open-room
//! message, each with a unique marker, and every one is received. Then,
//! while the server still runs, its whole readable memory
//! (`/proc/PID/maps` + `/proc/PID/mem`), every file of its data directory
//! and its log are scanned: the end-to-end markers are nowhere; the
//! open-room marker is found in memory and in the store, and a marker the
//! server legitimately logs (a room's name) in the log, which shows each
//! scan can find what is there.
//!
//! The same for end-to-end files (issue 16): a file full of a marker, with
//! a marker in its name, sent in a direct conversation and in an
//! end-to-end room and saved by the recipient, is nowhere in the relay's
//! memory, data directory (its `blobs/` included) or log; the same kind of
//! file sent the version-1 way in an open room is found in its memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::process::Output;

use common::Server;
use serde_json::Value;

fn room(server: &Server, name: &str, args: &[&str]) -> Output {
    common::room_command(server, name, args)
}

fn run(server: &Server, subcommand: &str, name: &str, args: &[&str]) -> Output {
    server.client(subcommand, name).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    common::succeeded(out)
}

/// The single message `listen ARGS --json --count 1` received.
fn received(server: &Server, name: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--json", "--count", "1", "--timeout", "30"]);
    let out = ok(&run(server, "listen", name, &all));
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{out}");
    lines.into_iter().next().unwrap()
}

/// 24 random hex digits (so a marker is found only where it was put).
fn random_hex() -> String {
    let state = RandomState::new();
    let a = state.hash_one(std::time::SystemTime::now());
    let b = state.hash_one(std::process::id());
    format!("{a:016x}{b:08x}").chars().take(24).collect()
}

/// Whether `needle` (ASCII) occurs in `haystack`. Through a lossy UTF-8
/// view so the search runs in the (optimized) standard library: an ASCII
/// byte is never swallowed by the replacement of an invalid sequence.
fn contains(haystack: &[u8], needle: &str) -> bool {
    common::holds(haystack, needle.as_bytes())
}

/// What the scan of the server's memory found.
struct MemoryScan {
    found: Vec<bool>,
    bytes: u64,
    regions: usize,
}

/// Reads every readable region of process `pid` and looks for each of
/// `needles`; `None` if its memory cannot be opened (not Linux, or no
/// permission to read another process's memory).
fn scan_memory(pid: u32, needles: &[&str]) -> Option<MemoryScan> {
    const CHUNK: u64 = 16 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let overlap = needles.iter().map(|n| n.len()).max().unwrap_or(1) as u64;
    let mut scan = MemoryScan { found: vec![false; needles.len()], bytes: 0, regions: 0 };
    let mut buf = Vec::new();
    for line in maps.lines() {
        // "start-end perms offset dev inode [path]"
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with('r') {
            continue;
        }
        let path = fields.nth(3).unwrap_or("");
        // The kernel's shared pages hold nothing of the process (and
        // [vvar] may not be readable at all).
        if path == "[vvar]" || path == "[vsyscall]" || path == "[vvar_vclock]" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let mut at = start;
        let mut read_any = false;
        while at < end {
            let len = (end - at).min(CHUNK + overlap);
            buf.resize(usize::try_from(len).unwrap(), 0);
            if mem.seek(SeekFrom::Start(at)).is_err() || mem.read_exact(&mut buf).is_err() {
                // A region that went away or cannot be read: go on.
                break;
            }
            read_any = true;
            scan.bytes += len;
            for (found, needle) in scan.found.iter_mut().zip(needles) {
                *found = *found || contains(&buf, needle);
            }
            at += CHUNK;
        }
        scan.regions += usize::from(read_any);
    }
    Some(scan)
}

/// The files of `files` that contain `needle`.
fn holding(files: &[PathBuf], needle: &str) -> Vec<PathBuf> {
    files.iter().filter(|f| contains(&std::fs::read(f).unwrap(), needle)).cloned().collect()
}

#[test]
fn the_relay_holds_no_end_to_end_plaintext_in_memory_store_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::quick_logged(dir.path(), &log);
    let dm = format!("dm-{}", random_hex());
    let e2e_room_text = format!("room-{}", random_hex());
    let open_room_text = format!("open-{}", random_hex());
    // A name the server logs (rooms are named in its logs): the log
    // scan's control. Names are at most 32 characters.
    let logged = format!("r{}", &random_hex()[..20]);

    // An end-to-end direct message (bob has run once, so the server has
    // his key packages).
    ok(&run(&server, "listen", "bob", &["--timeout", "1"]));
    ok(&run(&server, "send", "alice", &["--to", "bob", &format!("direct {dm}")]));
    let got = received(&server, "bob", &[]);
    assert_eq!(got["text"], format!("direct {dm}"));
    assert_eq!(got["e2e"], true);

    // An end-to-end room, named with the log scan's marker.
    ok(&room(&server, "alice", &["create", &logged]));
    ok(&room(&server, "alice", &["invite", &logged, "bob"]));
    ok(&run(&server, "send", "alice", &["--room", &logged, &format!("in the room {e2e_room_text}")]));
    let got = received(&server, "bob", &["--room", &logged]);
    assert_eq!(got["text"], format!("in the room {e2e_room_text}"));
    assert_eq!(got["e2e"], true);

    // An open room: bob listening there, alice speaking.
    ok(&room(&server, "alice", &["create", "plaza", "--open"]));
    let listener = server
        .client("listen", "bob")
        .args(["--room", "plaza", "--json", "--count", "1", "--timeout", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // alice speaks once bob's listen has joined.
    wait_until_member(&server, "plaza", "bob");
    ok(&run(&server, "send", "alice", &["--room", "plaza", &format!("in the open {open_room_text}")]));
    let out = listener.wait_with_output().unwrap();
    let got: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(got["text"], format!("in the open {open_room_text}"));
    assert_eq!(got["e2e"], false);

    // The server's memory, while it runs.
    let needles = [dm.as_str(), e2e_room_text.as_str(), open_room_text.as_str()];
    match scan_memory(server.child.id(), &needles) {
        None => eprintln!(
            "NOTE: skipping the memory scan: /proc/{}/mem cannot be opened here (not Linux, or no permission)",
            server.child.id()
        ),
        Some(scan) => {
            eprintln!("memory scan: {} bytes in {} regions", scan.bytes, scan.regions);
            assert!(scan.bytes > 1 << 20, "read only {} bytes in {} regions", scan.bytes, scan.regions);
            assert!(!scan.found[0], "the direct message's text is in the server's memory");
            assert!(!scan.found[1], "the end-to-end room's text is in the server's memory");
            assert!(
                scan.found[2],
                "the open room's text was not found in the server's memory ({} bytes in {} regions read): the scan \
                 does not work",
                scan.bytes, scan.regions
            );
        }
    }

    // Every file the server keeps.
    let files = common::files_under(&dir.path().join("server-data"));
    assert!(!files.is_empty());
    assert_eq!(holding(&files, &dm), Vec::<PathBuf>::new(), "the direct message's text is stored");
    assert_eq!(holding(&files, &e2e_room_text), Vec::<PathBuf>::new(), "the end-to-end room's text is stored");
    assert!(
        !holding(&files, &open_room_text).is_empty(),
        "the open room's text is in no store file: the scan does not work"
    );

    // Its log, at trace level.
    let logged_text = std::fs::read(&log).unwrap();
    assert!(!contains(&logged_text, &dm), "the direct message's text is logged");
    assert!(!contains(&logged_text, &e2e_room_text), "the end-to-end room's text is logged");
    assert!(contains(&logged_text, &logged), "the room's name is not in the log: the log scan does not work");
    assert!(contains(&logged_text, "TRACE"), "the server did not log at trace level");
    drop(server);
}

/// Waits (20 s at most) until `who` is a member of the open room
/// `room_name` (as its creator, alice, sees it).
fn wait_until_member(server: &Server, room_name: &str, who: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = room(server, "alice", &["members", room_name, "--json"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!("\"{who}\"")) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{who} never joined {room_name}: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Writes a file of about `size` bytes that is `marker` over and over.
fn marker_file(path: &std::path::Path, marker: &str, size: usize) {
    let line = format!("{marker}\n");
    std::fs::write(path, line.repeat(size / line.len() + 1)).unwrap();
}

/// Whether `dir` holds a file `name` with the bytes of `expected`.
fn saved_in(dir: &std::path::Path, name: &str, expected: &std::path::Path) -> bool {
    std::fs::read(dir.join(name)).ok() == Some(std::fs::read(expected).unwrap())
}

#[test]
fn the_relay_holds_no_end_to_end_file_content_or_name_in_memory_disk_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::quick_logged(dir.path(), &log);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Contents and names, each with a marker of its own.
    let (dm_data, room_data, open_data) =
        (format!("dmfile-{}", random_hex()), format!("roomfile-{}", random_hex()), format!("v1file-{}", random_hex()));
    let (dm_name, room_name) = (format!("dmname-{}.txt", random_hex()), format!("roomname-{}.txt", random_hex()));
    let room_label = format!("f{}", &random_hex()[..20]);
    let dm_file = src.join(&dm_name);
    let room_file = src.join(&room_name);
    let open_file = src.join("open.txt");
    marker_file(&dm_file, &dm_data, 2 << 20);
    marker_file(&room_file, &room_data, 2 << 20);
    marker_file(&open_file, &open_data, 2 << 20);

    // End to end: to bob directly, and in a room of alice, bob and carol
    // (carol never fetches, so the relay keeps that blob to the end).
    ok(&run(&server, "listen", "bob", &["--timeout", "1"]));
    ok(&run(&server, "listen", "carol", &["--timeout", "1"]));
    ok(&run(&server, "send", "alice", &["--to", "bob", "--file", dm_file.to_str().unwrap()]));
    ok(&room(&server, "alice", &["create", &room_label]));
    ok(&room(&server, "alice", &["invite", &room_label, "bob", "carol"]));
    ok(&run(&server, "send", "alice", &["--room", &room_label, "--file", room_file.to_str().unwrap()]));
    let data_dir = dir.path().join("server-data");
    let blob_files = common::files_under(&data_dir.join("blobs"));
    assert_eq!(blob_files.len(), 2, "both uploads are at the relay");
    // Both blobs, before anyone fetched them: only ciphertext.
    for needle in [&dm_data, &room_data] {
        assert_eq!(holding(&blob_files, needle), Vec::<PathBuf>::new(), "{needle} is in a blob");
    }
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = ok(&run(
        &server,
        "listen",
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json", "--count", "2", "--timeout", "60"],
    ));
    assert!(saved_in(&inbox, &dm_name, &dm_file), "{got}");
    assert!(saved_in(&inbox, &room_name, &room_file), "{got}");

    // The scan's control: the same kind of file sent the version-1 way in
    // an open room, which the relay relays readable.
    ok(&room(&server, "alice", &["create", "plaza", "--open"]));
    let open_inbox = dir.path().join("open-inbox");
    std::fs::create_dir(&open_inbox).unwrap();
    let listener = server
        .client("listen", "bob")
        .args(["--room", "plaza", "--accept-files", open_inbox.to_str().unwrap(), "--count", "1", "--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_member(&server, "plaza", "bob");
    ok(&run(&server, "send", "alice", &["--room", "plaza", "--file", open_file.to_str().unwrap()]));
    ok(&listener.wait_with_output().unwrap());
    assert!(saved_in(&open_inbox, "open.txt", &open_file));

    let needles = [dm_data.as_str(), room_data.as_str(), dm_name.as_str(), room_name.as_str(), open_data.as_str()];
    match scan_memory(server.child.id(), &needles) {
        None => eprintln!("NOTE: skipping the memory scan: /proc/{}/mem cannot be opened here", server.child.id()),
        Some(scan) => {
            eprintln!("memory scan: {} bytes in {} regions", scan.bytes, scan.regions);
            assert!(scan.bytes > 1 << 20, "read only {} bytes", scan.bytes);
            for (needle, found) in needles.iter().zip(&scan.found).take(4) {
                assert!(!found, "{needle} is in the server's memory");
            }
            assert!(
                scan.found[4],
                "the version-1 file's content was not found in the server's memory ({} bytes read): the scan does \
                 not work",
                scan.bytes
            );
        }
    }
    // Every file the relay keeps, its blobs included (the room's is still
    // there: carol has not fetched it).
    let files = common::files_under(&data_dir);
    assert!(files.iter().any(|f| f.starts_with(data_dir.join("blobs"))), "a blob is still kept: {files:?}");
    for needle in &needles[..4] {
        assert_eq!(holding(&files, needle), Vec::<PathBuf>::new(), "{needle} is on the relay's disk");
    }
    // Its log, at trace level.
    let logged_text = std::fs::read(&log).unwrap();
    for needle in &needles[..4] {
        assert!(!contains(&logged_text, needle), "{needle} is in the relay's log");
    }
    assert!(contains(&logged_text, &room_label), "the room's name is not in the log: the log scan does not work");
    assert!(contains(&logged_text, "blob"), "the relay logged nothing of the blobs");
    drop(server);
}
