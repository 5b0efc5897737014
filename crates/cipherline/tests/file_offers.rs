//! File offers in `chat` and `send --file`, driven through the real binary
//! (issue 13, item 4): offer ids a receiver can tell apart, a decline that
//! frees the sender, and paths that are not regular files refused before
//! anything is offered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn offers_from_two_senders_get_distinct_ids_and_accept_takes_the_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let mut bob = Chat::start(&server, "bob", &["--download-dir", downloads.to_str().unwrap()]);
    // alice and carol do the same things in the same order, so each picks
    // the same transfer id for its offer: only the sender tells them apart.
    // Without identity keys: their files go the version-1 way (a keyed
    // chat sends direct files end to end, tests/chat_files.rs).
    let mut alice = Chat::start(&server, "alice", &["--no-identity"]);
    let mut carol = Chat::start(&server, "carol", &["--no-identity"]);
    let from_alice = write(dir.path(), "from-alice.txt", "alice's file");
    let from_carol = write(dir.path(), "from-carol.txt", "carol's file, longer");

    alice.type_line(&format!("/send-file bob {from_alice}"));
    let alice_offer = bob.wait("alice offers from-alice.txt").pop().unwrap();
    carol.type_line(&format!("/send-file bob {from_carol}"));
    let carol_offer = bob.wait("carol offers from-carol.txt").pop().unwrap();
    let (alice_id, carol_id) = (offer_id(&alice_offer), offer_id(&carol_offer));
    assert_ne!(alice_id, carol_id, "two offers, two ids: {alice_offer:?} / {carol_offer:?}");

    // The older offer, named by its id, not the newest one.
    bob.type_line(&format!("/accept {alice_id}"));
    bob.wait("receiving from-alice.txt (12 bytes) from alice");
    bob.wait("received");
    alice.wait("* bob accepted from-alice.txt");
    alice.wait("from-alice.txt delivered and verified");
    assert_eq!(std::fs::read_to_string(downloads.join("from-alice.txt")).unwrap(), "alice's file");
    assert!(!downloads.join("from-carol.txt").exists(), "carol's offer is still waiting");

    bob.type_line(&format!("/accept {carol_id}"));
    bob.wait("receiving from-carol.txt (20 bytes) from carol");
    carol.wait("from-carol.txt delivered and verified");
    assert_eq!(std::fs::read_to_string(downloads.join("from-carol.txt")).unwrap(), "carol's file, longer");

    // Both ids are used up.
    bob.type_line(&format!("/accept {alice_id}"));
    bob.wait("no file offer");
    alice.quit();
    carol.quit();
    bob.quit();
}

#[test]
fn after_a_decline_the_sender_can_offer_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let mut bob = Chat::start(&server, "bob", &["--download-dir", downloads.to_str().unwrap()]);
    let mut alice = Chat::start(&server, "alice", &["--no-identity"]);
    let file = write(dir.path(), "notes.txt", "some notes");

    alice.type_line(&format!("/send-file bob {file}"));
    alice.wait("offered notes.txt");
    let first = offer_id(&bob.wait("alice offers notes.txt").pop().unwrap());
    bob.type_line("/decline");
    alice.wait("bob declined notes.txt");

    // The declined transfer no longer occupies the sender.
    alice.type_line(&format!("/send-file bob {file}"));
    let line = alice.wait_any(&["offered notes.txt", "already being sent"]);
    assert!(line.contains("offered"), "the sender is still blocked after a decline: {line:?}");
    let second = offer_id(&bob.wait("alice offers notes.txt").pop().unwrap());
    assert_ne!(first, second, "an id is never reused in a session");
    // Nor does it on the receiver's side: the declined id is gone.
    bob.type_line(&format!("/accept {first}"));
    bob.wait("no file offer");
    bob.type_line(&format!("/accept {second}"));
    bob.wait("receiving notes.txt");
    alice.wait("notes.txt delivered and verified");
    assert_eq!(std::fs::read_to_string(downloads.join("notes.txt")).unwrap(), "some notes");
    alice.quit();
    bob.quit();
}

#[test]
fn a_cancelled_offer_frees_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &["--no-identity"]);
    let file = write(dir.path(), "draft.txt", "draft");

    // The sender withdraws an offer the receiver has not answered: the
    // receiver is told, and the id stops working.
    alice.type_line(&format!("/send-file bob {file}"));
    let id = offer_id(&bob.wait("alice offers draft.txt").pop().unwrap());
    alice.type_line("/cancel");
    alice.wait("cancelled draft.txt");
    bob.wait(&format!("offer {id} is no longer open"));
    bob.type_line(&format!("/accept {id}"));
    bob.wait("no file offer");

    // A room offer: the engine asked who is in the room, so once every
    // member declined the offer is over, and the sender is free again.
    alice.type_line(&format!("/send-file #lobby {file}"));
    bob.wait("alice offers draft.txt");
    bob.type_line("/decline");
    alice.wait("bob declined draft.txt");
    alice.type_line(&format!("/send-file bob {file}"));
    let line = alice.wait_any(&["offered draft.txt", "still being sent"]);
    assert!(line.contains("offered"), "{line:?}");
    alice.type_line("/cancel");
    alice.wait("cancelled draft.txt");
    alice.quit();
    bob.quit();
}

/// Waits up to 20 s for a process that must exit on its own.
fn exits_within_20_s(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("still running after 20 s (blocked opening the path?)");
}

#[test]
fn a_directory_or_other_non_file_is_refused_and_nothing_is_offered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);
    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.jpg"), b"jpeg").unwrap();

    alice.type_line(&format!("/send-file bob {}", folder.display()));
    alice.wait("photos is a directory");
    // A character device is no regular file either (it would be offered
    // as an empty file, or read forever).
    alice.type_line("/send-file bob /dev/zero");
    alice.wait("/dev/zero is not a regular file");
    alice.type_line("/msg bob marker one");
    let seen = bob.wait("marker one");
    assert!(!seen.iter().any(|l| l.contains("offers")), "nothing was offered: {seen:?}");

    // `send --file` refuses the same paths before connecting, exit code 2.
    let out = server
        .client("send", "carol")
        .args(["--to", "bob", "--answer-timeout", "3", "--file", folder.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("photos is a directory"), "{stderr}");
    // A FIFO: opening it would wait for a writer forever.
    let fifo = dir.path().join("pipe");
    if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let mut send = server
            .client("send", "carol")
            .args(["--to", "bob", "--answer-timeout", "3", "--file", fifo.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exits_within_20_s(&mut send);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut send.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("pipe is not a regular file"), "{stderr}");
    }
    alice.type_line("/msg bob marker two");
    let seen = bob.wait("marker two");
    assert!(!seen.iter().any(|l| l.contains("offers")), "nothing was offered: {seen:?}");
    alice.quit();
    bob.quit();
}

/// Starts `send` as alice with `args`, standard error piped.
fn start_send(server: &Server, args: &[&str]) -> Child {
    server.client("send", "alice").args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until `send` exits (20 s at most); its exit code and standard error.
fn finished(mut send: Child) -> (Option<i32>, String) {
    let code = exits_within_20_s(&mut send).code();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut send.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}

#[test]
fn send_file_waits_answer_timeout_for_an_accept_then_reports_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let mut bob = Chat::start(&server, "bob", &["--download-dir", downloads.to_str().unwrap()]);
    let file = write(dir.path(), "memo.txt", "a version-1 memo");

    // Nobody answers: `send` gives up after --answer-timeout (the
    // engine's own wait is 60 s), exit code 1.
    let send = start_send(&server, &["--no-identity", "--to", "bob", "--answer-timeout", "2", "--file", &file]);
    bob.wait("alice offers memo.txt");
    let (code, stderr) = finished(send);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not end-to-end encrypted"), "{stderr}");
    assert!(stderr.contains("offered memo.txt (16 bytes)"), "{stderr}");
    assert!(stderr.contains("memo.txt was not sent: nobody accepted in time (waited 2 s)"), "{stderr}");

    // Accepted: sent, and said so.
    let send = start_send(&server, &["--no-identity", "--to", "bob", "--answer-timeout", "30", "--file", &file]);
    let offer = bob.wait("alice offers memo.txt").pop().unwrap();
    bob.type_line(&format!("/accept {}", offer_id(&offer)));
    bob.wait("received");
    let (code, stderr) = finished(send);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("sent memo.txt (16 bytes)"), "{stderr}");
    assert!(stderr.contains("bob accepted memo.txt"), "each receiver's answer is shown: {stderr}");
    assert_eq!(std::fs::read_to_string(downloads.join("memo.txt")).unwrap(), "a version-1 memo");

    // Declined: said by whom, and not sent.
    let send = start_send(&server, &["--no-identity", "--to", "bob", "--answer-timeout", "30", "--file", &file]);
    let offer = bob.wait("alice offers memo.txt").pop().unwrap();
    bob.type_line(&format!("/decline {}", offer_id(&offer)));
    let (code, stderr) = finished(send);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("bob declined memo.txt"), "{stderr}");
    bob.quit();
}
