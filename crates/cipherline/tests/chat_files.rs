//! `cipherline chat`'s files end to end (issue 16), driving the real
//! binary over standard input: `/send-file` to a keyed user or an
//! end-to-end room uploads in the background and announces the file,
//! the receiver's chat offers it with a number, `/accept` saves it once
//! verified, `/decline` forgets it, `/cancel N` deletes an upload at the
//! relay; an accepted download cut off when chat is killed resumes when
//! chat starts again; texts keep flowing while a file uploads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::{Chat, Server, offer_id};

/// A file of `size` bytes that differs in every 64 KiB chunk (a misplaced
/// chunk changes it), starting with `marker`.
fn make_file(path: &Path, size: usize, marker: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(marker.as_bytes()).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut written = marker.len();
    let mut block = [0u8; 8];
    while written < size {
        // xorshift: cheap, never repeating within any size used here.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        block.copy_from_slice(&state.to_le_bytes());
        let take = (size - written).min(8);
        f.write_all(&block[..take]).unwrap();
        written += take;
    }
    f.flush().unwrap();
}

/// A download directory for `name` under the test's directory.
fn downloads(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("downloads-{name}"));
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn chat_saving(server: &Server, name: &str, into: &Path) -> Chat {
    Chat::start(server, name, &["--download-dir", into.to_str().unwrap()])
}

/// The files in `dir`, by name.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// No file of the server's data directory holds `marker`.
fn server_never_held(dir: &Path, marker: &str) {
    for entry in common::files_under(&dir.join("server-data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!common::holds(&bytes, marker.as_bytes()), "{} holds the plaintext", entry.display());
    }
}

#[test]
fn a_direct_file_is_offered_accepted_and_saved_byte_identical_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let into = downloads(dir.path(), "bob");
    let mut bob = chat_saving(&server, "bob", &into);
    let mut alice = Chat::start(&server, "alice", &[]);
    let file = dir.path().join("report.pdf");
    make_file(&file, 300_000, "marker-chat-file-7a21");

    alice.type_line(&format!("/send-file bob {}", file.display()));
    let started = alice.wait("* sending report.pdf to bob");
    assert!(started.last().unwrap().contains("(end to end, 293 KiB): /cancel "), "{started:?}");
    let offer = bob.wait("alice offers report.pdf").pop().unwrap();
    assert!(offer.contains("(300000 bytes, end to end): /accept "), "{offer}");
    let sent = alice.wait("report.pdf sent to bob").pop().unwrap();
    assert!(sent.contains("(end to end, 293 KiB in "), "{sent}");

    bob.type_line(&format!("/accept {}", offer_id(&offer)));
    let receiving = bob.wait("* receiving report.pdf from alice").pop().unwrap();
    assert!(receiving.contains("(end to end, 293 KiB) into "), "{receiving}");
    let saved = bob.wait("* saved report.pdf from alice").pop().unwrap();
    assert!(saved.contains(", verified; end to end) in "), "{saved}");
    assert_eq!(std::fs::read(into.join("report.pdf")).unwrap(), std::fs::read(&file).unwrap());
    // Only the file: its partial file is gone.
    assert_eq!(names_in(&into), ["report.pdf"]);
    // The number is used up.
    bob.type_line(&format!("/accept {}", offer_id(&offer)));
    bob.wait("no file offer");
    alice.quit();
    bob.quit();
    server_never_held(dir.path(), "marker-chat-file-7a21");
}

#[test]
fn an_offer_left_unanswered_is_listed_again_when_chat_starts_and_can_be_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let into = downloads(dir.path(), "bob");
    let bob = chat_saving(&server, "bob", &into);
    let mut alice = Chat::start(&server, "alice", &[]);
    let file = dir.path().join("notes.txt");
    make_file(&file, 5_000, "marker-chat-file-3c90");
    alice.type_line(&format!("/send-file bob {}", file.display()));
    let offer = bob.wait("alice offers notes.txt").pop().unwrap();
    alice.wait("notes.txt sent to bob");
    // bob leaves without answering, and comes back.
    bob.quit();
    let mut bob = chat_saving(&server, "bob", &into);
    let again = bob.wait("still waiting").pop().unwrap();
    assert!(again.contains("alice offers notes.txt (4.9 KiB, end to end)"), "{again}");
    assert_eq!(offer_id(&again), offer_id(&offer), "the same id as when it was offered: {again}");
    bob.type_line(&format!("/accept {}", offer_id(&again)));
    bob.wait("* saved notes.txt from alice");
    assert_eq!(std::fs::read(into.join("notes.txt")).unwrap(), std::fs::read(&file).unwrap());
    alice.quit();
    bob.quit();
}

#[test]
fn a_room_file_reaches_two_members_from_one_upload() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (bob_dir, carol_dir) = (downloads(dir.path(), "bob"), downloads(dir.path(), "carol"));
    let mut bob = chat_saving(&server, "bob", &bob_dir);
    let mut carol = chat_saving(&server, "carol", &carol_dir);
    let mut alice = Chat::start(&server, "alice", &[]);
    alice.type_line("/create club");
    alice.wait("created club (end-to-end encrypted, invite-only)");
    alice.type_line("/invite bob carol");
    alice.wait("added bob, carol to club");
    let file = dir.path().join("minutes.txt");
    make_file(&file, 150_000, "marker-chat-room-file-c3d4");

    // The current room, without `#`.
    alice.type_line(&format!("/send-file club {}", file.display()));
    alice.wait("* sending minutes.txt to #club (end to end");
    let sent = alice.wait("minutes.txt sent to #club").pop().unwrap();
    assert!(sent.contains("(end to end, "), "{sent}");
    for (chat, into) in [(&mut bob, &bob_dir), (&mut carol, &carol_dir)] {
        let offer = chat.wait("alice offers minutes.txt").pop().unwrap();
        assert!(offer.contains("(150000 bytes, end to end) in #club: /accept "), "{offer}");
        chat.type_line("/accept");
        chat.wait("* saved minutes.txt from alice");
        assert_eq!(std::fs::read(into.join("minutes.txt")).unwrap(), std::fs::read(&file).unwrap());
    }
    alice.quit();
    bob.quit();
    carol.quit();
    server_never_held(dir.path(), "marker-chat-room-file-c3d4");
}

#[test]
fn a_declined_file_is_forgotten_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let into = downloads(dir.path(), "bob");
    let mut bob = chat_saving(&server, "bob", &into);
    let mut alice = Chat::start(&server, "alice", &[]);
    let file = dir.path().join("unwanted.bin");
    make_file(&file, 70_000, "unwanted");

    alice.type_line(&format!("/send-file bob {}", file.display()));
    let offer = bob.wait("alice offers unwanted.bin").pop().unwrap();
    let id = offer_id(&offer);
    bob.type_line(&format!("/decline {id}"));
    bob.wait("* declined unwanted.bin from alice");
    bob.type_line(&format!("/accept {id}"));
    bob.wait("no file offer");
    alice.wait("unwanted.bin sent to bob");
    alice.quit();
    bob.quit();
    assert!(names_in(&into).is_empty(), "nothing saved: {:?}", names_in(&into));
    // Nor offered again when bob's chat starts again.
    let bob = chat_saving(&server, "bob", &into);
    let mut alice = Chat::start(&server, "alice", &[]);
    alice.type_line("/msg bob sync-after-decline");
    let seen = bob.wait("sync-after-decline");
    assert!(!seen.iter().any(|l| l.contains("unwanted.bin")), "{seen:?}");
    alice.quit();
    bob.quit();
}

#[test]
fn an_accepted_download_cut_off_resumes_when_chat_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let into = downloads(dir.path(), "bob");
    let mut bob = chat_saving(&server, "bob", &into);
    let mut alice = Chat::start(&server, "alice", &[]);
    let file = dir.path().join("big.bin");
    // Large enough to be killed mid-way at the first progress line on a
    // fast machine (64 MiB crosses the relay in well under a second).
    make_file(&file, 256 << 20, "big");

    alice.type_line(&format!("/send-file bob {}", file.display()));
    let offer = bob.wait("alice offers big.bin").pop().unwrap();
    bob.type_line(&format!("/accept {}", offer_id(&offer)));
    // Under way: a progress line (at a tenth of the file, or after 5 s).
    bob.wait_within("* receiving big.bin from alice: ", 60);
    bob.kill();
    let partial: Vec<String> = names_in(&into);
    assert!(
        partial.len() == 1 && partial[0].ends_with(".cipherline-part"),
        "only the partial file, killed mid-way: {partial:?}"
    );
    let had = std::fs::metadata(into.join(&partial[0])).unwrap().len();
    assert!(had > 0 && had < 256 << 20, "{had}");
    alice.wait_within("big.bin sent to bob", 120);

    let bob = chat_saving(&server, "bob", &into);
    let resumed = bob.wait("* resuming big.bin from alice").pop().unwrap();
    assert!(resumed.contains("interrupted when chat last ran"), "{resumed}");
    let saved = bob.wait_within("* saved big.bin from alice", 120).pop().unwrap();
    assert!(saved.contains("verified"), "{saved}");
    assert_eq!(names_in(&into), ["big.bin"]);
    assert!(std::fs::read(into.join("big.bin")).unwrap() == std::fs::read(&file).unwrap(), "byte for byte");
    alice.quit();
    bob.quit();
}

#[test]
fn texts_keep_flowing_while_a_file_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);
    let file = dir.path().join("large.bin");
    make_file(&file, 256 << 20, "large");

    alice.type_line(&format!("/send-file bob {}", file.display()));
    alice.type_line("/msg bob while-uploading-5e1f");
    alice.type_line("/fingerprint");
    // Chat answered both while the upload went on: before it finished.
    let lines = alice.wait_within("large.bin sent to bob", 120);
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let sent = at("large.bin sent to bob").unwrap();
    assert!(at("suite ").is_some_and(|i| i < sent), "{lines:?}");
    assert!(at("messages with bob are end-to-end encrypted").is_some_and(|i| i < sent), "{lines:?}");
    let seen = bob.wait("while-uploading-5e1f");
    if !seen.iter().any(|l| l.contains("alice offers large.bin")) {
        bob.wait("alice offers large.bin");
    }
    alice.quit();
    bob.quit();
}

#[test]
fn a_cancelled_upload_is_deleted_at_the_relay_and_its_offer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let into = downloads(dir.path(), "bob");
    let mut bob = chat_saving(&server, "bob", &into);
    let mut alice = Chat::start(&server, "alice", &[]);
    let file = dir.path().join("draft.bin");
    // Large enough that the upload is still going at its first progress
    // line (every 250 ms): 64 MiB went through the relay in 0.4 s in CI.
    make_file(&file, 512 << 20, "draft");

    alice.type_line(&format!("/send-file bob {}", file.display()));
    let started = alice.wait("* sending draft.bin to bob").pop().unwrap();
    let id = started.rsplit("/cancel ").next().unwrap().split_whitespace().next().unwrap().to_owned();
    // Under way (the announcement went first), then cancelled.
    alice.wait_within("* sending draft.bin to bob: ", 60);
    alice.type_line(&format!("/cancel {id}"));
    alice.wait("* cancelled draft.bin to bob (the relay deletes what it had)");
    // The upload is forgotten here.
    let listed = common::bin()
        .env("CIPHERLINE_HOME", common::home_of(&server, "alice"))
        .args(["files", "list", "--server", &server.addr, "--name", "alice"])
        .args(["--server-fingerprint", &server.fingerprint])
        .output()
        .unwrap();
    assert!(!common::succeeded(&listed).contains("draft.bin"), "no pending upload");
    // bob was told of the file, but the relay no longer has it.
    let offer = bob.wait("alice offers draft.bin").pop().unwrap();
    bob.type_line(&format!("/accept {}", offer_id(&offer)));
    let failed = bob.wait("draft.bin from alice failed").pop().unwrap();
    assert!(failed.contains("no longer on the relay"), "{failed}");
    assert!(names_in(&into).is_empty(), "{:?}", names_in(&into));
    alice.quit();
    bob.quit();
}
