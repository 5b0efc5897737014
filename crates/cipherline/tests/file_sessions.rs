//! File transfers when one identity key has several sessions, driven
//! through the real binary (issue 13): a `listen` beside a `chat` must not
//! decline the chat's offers, and a session that leaves ends its own
//! transfers even though another session of its name stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;

use common::*;

/// A `listen` without `--accept-files`, its standard error (where it
/// reports offers) as lines. Returns once it is connected (it shows a
/// message sent to it).
fn listen(server: &Server, name: &str) -> (Child, Receiver<String>) {
    let mut child = server.client("listen", name).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = line_channel(&mut child);
    let err = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Messages to the name reach every session: once this one shows one,
    // it is connected and will get the offer too. Until then, send again.
    for _ in 0..30 {
        let sent = server.client("send", "carol").args(["--to", name, "are you there"]).output().unwrap();
        assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
        while let Ok(line) = out.recv_timeout(std::time::Duration::from_secs(1)) {
            if line.contains("are you there") {
                return (child, rx);
            }
        }
    }
    panic!("listen never connected");
}

#[test]
fn a_listen_beside_a_chat_does_not_decline_the_chats_offers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let mut alice = Chat::start(&server, "alice", &["--download-dir", downloads.to_str().unwrap()]);
    // Same name, so the same data directory and identity key: a second session.
    let (mut alice_listen, listen_err) = listen(&server, "alice");
    // Without an identity key: a version-1 offer (a keyed chat sends
    // direct files end to end).
    let mut bob = Chat::start(&server, "bob", &["--no-identity"]);
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "for alice's chat").unwrap();

    bob.type_line(&format!("/send-file alice {}", file.display()));
    let offer = alice.wait("bob offers notes.txt").pop().unwrap();
    // The listening session had the offer too, and left it alone.
    let shown = wait_for_line(&listen_err, "offers notes.txt").pop().unwrap();
    assert!(shown.contains("not answering"), "{shown:?}");
    alice.type_line(&format!("/accept {}", offer_id(&offer)));
    bob.wait("notes.txt delivered and verified");
    alice.wait("received");
    assert_eq!(std::fs::read_to_string(downloads.join("notes.txt")).unwrap(), "for alice's chat");

    alice_listen.kill().unwrap();
    alice_listen.wait().unwrap();
    alice.quit();
    bob.quit();
}

#[test]
fn a_chat_that_leaves_ends_its_offer_though_another_session_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut alice = Chat::start(&server, "alice", &[]);
    let (mut alice_listen, _listen_err) = listen(&server, "alice");
    let bob = Chat::start(&server, "bob", &[]);
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "never sent").unwrap();

    // Into the lobby, an open room: a version-1 offer, live.
    alice.type_line(&format!("/send-file #lobby {}", file.display()));
    bob.wait("alice offers notes.txt");
    // The offering session vanishes (killed: it cannot cancel politely);
    // alice's listen stays connected. The offer must end now, not linger
    // until it expires.
    alice.kill();
    let line = bob.wait("notes.txt from alice failed").pop().unwrap();
    assert!(line.contains("the sender disconnected"), "{line:?}");

    alice_listen.kill().unwrap();
    alice_listen.wait().unwrap();
    bob.quit();
}
