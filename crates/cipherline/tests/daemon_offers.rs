//! Version-1 files through `cipherline daemon --stdio` (issue 17) against
//! a real server: offered live in an open room (the lobby) or by a user
//! without an Ed25519 identity key, readable by the relay (`e2e: false`).
//! A file in the lobby arrives byte-identical; a decline tells the
//! sender; a cancel mid-way stops both sides and leaves no partial file;
//! a hostile name is saved sanitised inside the directory; a user
//! without an Ed25519 key sends one to a user; a signature that does not
//! verify deletes the file; a lost connection ends the transfers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use cipherline_client::{Client, Options};
use cipherline_proto::app::{ClientMessage, ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use common::Server;
use common::daemon::Daemon;
use common::offers::{ended, entries, next_file, raw};
use serde_json::{Value, json};

/// A version-1 offer's id is a multiple of this (engine/offers.rs).
const OFFER_ID_STEP: u64 = 1 << 40;

fn write_file(path: &Path, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(path, &data).unwrap();
    data
}

fn transfer_id(response: &Value) -> String {
    response["result"]["transfer"].as_str().unwrap_or_else(|| panic!("no transfer id: {response}")).to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_file_in_the_lobby_arrives_byte_identical_and_the_sender_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &["--room", "lobby"]);
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    // Several 16 KiB chunks, past the 2 MiB window, and a short last one.
    let sent = dir.path().join("photo.bin");
    let data = write_file(&sent, 3 * 1024 * 1024 + 123);

    let started = alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() }));
    let upload = transfer_id(&started);
    assert!(upload.starts_with('o'), "a version-1 send is an `o` transfer: {started}");

    let offer = bob.wait_for("file", |p| p["name"] == "photo.bin");
    assert_eq!(offer["e2e"], false, "{offer}");
    assert_eq!((offer["from"].as_str(), offer["room"].as_str()), (Some("alice"), Some("lobby")), "{offer}");
    assert_eq!(offer["size"], data.len(), "{offer}");
    let id = offer["id"].as_u64().unwrap();
    assert!(id != 0 && id.is_multiple_of(OFFER_ID_STEP), "an engine offer id, never a server message id: {id}");
    // Listed as offered, under an `o` transfer.
    let listed = bob.request("files.list", json!({}));
    let item = listed["result"]["transfers"].as_array().unwrap().iter().find(|t| t["name"] == "photo.bin").cloned();
    let item = item.unwrap_or_else(|| panic!("not listed: {listed}"));
    assert_eq!((item["state"].as_str(), item["direction"].as_str()), (Some("offered"), Some("in")), "{item}");
    assert!(item["transfer"].as_str().unwrap().starts_with('o'), "{item}");

    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = bob.request("files.get", json!({ "id": id, "dir": inbox.to_str().unwrap() }));
    let download = transfer_id(&got);
    let end = ended(&mut bob, &download);
    assert_eq!(end["state"], "done", "{end}");
    let saved = Path::new(end["path"].as_str().unwrap_or_else(|| panic!("no saved path: {end}")));
    assert_eq!(saved, inbox.canonicalize().unwrap().join("photo.bin"));
    assert_eq!(
        cipherline_proto::crypto::sha256(&std::fs::read(saved).unwrap()),
        cipherline_proto::crypto::sha256(&data),
        "the saved file is the one sent"
    );
    assert_eq!(entries(&inbox), ["photo.bin"], "no partial file left");
    // The sender's transfer ends once bob's receipt came.
    let end = ended(&mut alice, &upload);
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(end["done"], data.len(), "{end}");
    // Nothing left on either side.
    assert_eq!(bob.request("files.list", json!({}))["result"]["transfers"], json!([]));
    assert_eq!(alice.request("files.list", json!({}))["result"]["transfers"], json!([]));
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn a_decline_tells_the_sender_and_one_file_is_sent_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &["--room", "lobby"]);
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let sent = dir.path().join("notes.txt");
    write_file(&sent, 1000);
    let upload = transfer_id(&alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() })));
    // A second file while the first is offered: a clear error.
    let second = alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() }));
    let message = second["error"]["message"].as_str().unwrap_or_else(|| panic!("not refused: {second}"));
    assert!(message.contains("still being sent") && message.contains(&upload), "{second}");

    bob.wait_for("file", |p| p["name"] == "notes.txt");
    let listed = bob.request("files.list", json!({}));
    let offered = listed["result"]["transfers"][0]["transfer"].as_str().unwrap().to_owned();
    // files.cancel of an offer declines it.
    assert_eq!(bob.request("files.cancel", json!({ "transfer": offered }))["result"], json!({}));
    assert_eq!(ended(&mut bob, &offered)["state"], "cancelled");
    let end = ended(&mut alice, &upload);
    assert_eq!(end["state"], "failed", "{end}");
    assert_eq!(end["reason"], "declined by bob", "{end}");
    // Free again: the next file is offered.
    let again = alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() }));
    assert!(transfer_id(&again).starts_with('o'), "{again}");
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn a_cancel_mid_way_stops_both_sides_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let rt = runtime();
    let mut mallory = rt.block_on(raw(&server, "mallory"));

    // alice sends; mallory accepts and never acknowledges, so alice stops
    // at the flow-control window, mid-way; then alice cancels.
    let sent = dir.path().join("big.bin");
    write_file(&sent, 5 * 1024 * 1024);
    let upload = transfer_id(&alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() })));
    let got = rt.block_on(async {
        let ServerMessage::FileOffered { transfer, from, .. } = next_file(&mut mallory).await else {
            panic!("no offer")
        };
        mallory.send_message(&ClientMessage::FileAnswer { transfer, sender: from, accept: true }).await.unwrap();
        let mut got = 0usize;
        while got < 1024 * 1024 {
            match next_file(&mut mallory).await {
                ServerMessage::FileData { data, .. } => got += data.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    });
    assert!(got < 5 * 1024 * 1024);
    assert_eq!(alice.request("files.cancel", json!({ "transfer": upload }))["result"], json!({}));
    assert_eq!(ended(&mut alice, &upload)["state"], "cancelled");
    let told = rt.block_on(async {
        loop {
            if let ServerMessage::FileCancelled { by, .. } = next_file(&mut mallory).await {
                return by;
            }
        }
    });
    assert_eq!(told, "alice", "the receiver is told the sender stopped");

    // mallory sends; alice accepts, gets part of it and cancels: the
    // partial file is gone and mallory is told.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let transfer = rt.block_on(async {
        let transfer = mallory.writer().next_id();
        let offer = ClientMessage::FileOffer {
            transfer,
            to: Target::Room("lobby".into()),
            name: "part.bin".into(),
            size: 1 << 20,
        };
        mallory.send_message(&offer).await.unwrap();
        transfer
    });
    let offer = alice.wait_for("file", |p| p["name"] == "part.bin");
    let download =
        transfer_id(&alice.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() })));
    rt.block_on(async {
        assert!(matches!(next_file(&mut mallory).await, ServerMessage::FileAnswered { accept: true, .. }));
        for _ in 0..8 {
            let chunk = ClientMessage::FileChunk { transfer, data: vec![7; 16 * 1024] };
            mallory.send_message(&chunk).await.unwrap();
        }
    });
    // Wait until alice has some of it on disk.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = alice.request("files.list", json!({}));
        let done = listed["result"]["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["transfer"] == download.as_str())
            .map_or(0, |t| t["done"].as_u64().unwrap());
        if done == 8 * 16 * 1024 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the data never arrived: {listed}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(entries(&inbox).len(), 1, "a partial file while receiving");
    assert_eq!(alice.request("files.cancel", json!({ "transfer": download }))["result"], json!({}));
    assert_eq!(ended(&mut alice, &download)["state"], "cancelled");
    assert_eq!(entries(&inbox), Vec::<String>::new(), "the partial file was deleted");
    let told = rt.block_on(async {
        loop {
            if let ServerMessage::FileCancelled { by, transfer: t, .. } = next_file(&mut mallory).await
                && t == transfer
            {
                return by;
            }
        }
    });
    assert_eq!(told, "alice", "the sender is told the receiver stopped");
    assert_eq!(alice.request("files.list", json!({}))["result"]["transfers"], json!([]));
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn a_hostile_name_is_saved_sanitised_inside_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let rt = runtime();
    let mut mallory = rt.block_on(raw(&server, "mallory"));
    let lobby = Target::Room("lobby".into());
    // A path or control characters: the relay refuses the offer itself
    // (the receiver's own rules are unit-tested in transfer.rs).
    let refused = rt.block_on(async {
        let transfer = mallory.writer().next_id();
        let name = "../x\u{1b}[31m".to_owned();
        mallory.send_message(&ClientMessage::FileOffer { transfer, to: lobby.clone(), name, size: 3 }).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), mallory.recv()).await.unwrap().unwrap();
            if let ServerMessage::Error { client_id, .. } = msg
                && client_id == transfer
            {
                return true;
            }
        }
    });
    assert!(refused);
    // A name the relay lets through that would be hidden (a shell's
    // start-up file in a home directory), with a file of that name there.
    let data = b"not what it seems".to_vec();
    let hostile = " . .bashrc";
    let transfer = rt.block_on(async {
        let transfer = mallory.writer().next_id();
        let offer =
            ClientMessage::FileOffer { transfer, to: lobby.clone(), name: hostile.into(), size: data.len() as u64 };
        mallory.send_message(&offer).await.unwrap();
        transfer
    });
    let offer = alice.wait_for("file", |p| p["from"] == "mallory");
    // Raw in the notification (a front-end escapes it for its medium).
    assert_eq!(offer["name"], hostile, "{offer}");
    assert_eq!(offer["verified"], "unsigned", "{offer}");
    assert_eq!(alice.notifications.iter().filter(|n| n["method"] == "file").count(), 1, "the refused one never came");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("bashrc"), b"already here").unwrap();
    let download =
        transfer_id(&alice.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() })));
    rt.block_on(async {
        assert!(matches!(next_file(&mut mallory).await, ServerMessage::FileAnswered { accept: true, .. }));
        mallory.send_message(&ClientMessage::FileChunk { transfer, data: data.clone() }).await.unwrap();
        let sha = cipherline_proto::crypto::sha256(&data);
        mallory.file_end(transfer, &lobby, hostile, data.len() as u64, sha).await.unwrap();
        // The receipt: the whole file, checked.
        loop {
            if let ServerMessage::FileAcked { received, .. } = next_file(&mut mallory).await
                && received == data.len() as u64
            {
                break;
            }
        }
    });
    let end = ended(&mut alice, &download);
    assert_eq!(end["state"], "done", "{end}");
    let saved = Path::new(end["path"].as_str().unwrap());
    // Inside the directory, not hidden, and the file already there is
    // not overwritten.
    assert_eq!(saved.parent().unwrap(), inbox.canonicalize().unwrap());
    assert_eq!(saved.file_name().unwrap().to_str().unwrap(), "bashrc (1)");
    assert_eq!(std::fs::read(saved).unwrap(), data);
    assert_eq!(std::fs::read(inbox.join("bashrc")).unwrap(), b"already here");
    assert_eq!(entries(&inbox), ["bashrc", "bashrc (1)"], "nothing else written, nothing hidden");
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn a_user_without_an_ed25519_key_sends_a_file_to_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut carol = Daemon::start(&server, "carol", &["--no-identity"]);
    let sent = dir.path().join("hello.txt");
    let data = write_file(&sent, 70_000);
    let upload = transfer_id(&carol.request("files.send", json!({ "to": "bob", "path": sent.to_str().unwrap() })));
    assert!(upload.starts_with('o'), "no end-to-end engine: the version-1 way");
    let offer = bob.wait_for("file", |p| p["name"] == "hello.txt");
    assert_eq!((offer["from"].as_str(), offer["to"].as_str()), (Some("carol"), Some("bob")), "{offer}");
    assert_eq!(offer["e2e"], false, "{offer}");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let download = transfer_id(&bob.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() })));
    assert_eq!(ended(&mut bob, &download)["state"], "done");
    assert_eq!(std::fs::read(inbox.join("hello.txt")).unwrap(), data);
    assert_eq!(ended(&mut carol, &upload)["state"], "done");
    assert_eq!(carol.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn a_lost_connection_ends_version_1_transfers_and_forgets_offers() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let mut bob = Daemon::start(&server, "bob", &["--room", "lobby"]);
    let rt = runtime();
    let mut mallory = rt.block_on(raw(&server, "mallory"));
    let lobby = Target::Room("lobby".into());

    // bob receives part of mallory's file.
    let transfer = rt.block_on(async {
        let transfer = mallory.writer().next_id();
        let offer = ClientMessage::FileOffer { transfer, to: lobby.clone(), name: "part.bin".into(), size: 1 << 20 };
        mallory.send_message(&offer).await.unwrap();
        transfer
    });
    let offer = bob.wait_for("file", |p| p["name"] == "part.bin");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let download = transfer_id(&bob.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() })));
    rt.block_on(async {
        assert!(matches!(next_file(&mut mallory).await, ServerMessage::FileAnswered { accept: true, .. }));
        for _ in 0..4 {
            mallory.send_message(&ClientMessage::FileChunk { transfer, data: vec![1; 16 * 1024] }).await.unwrap();
        }
    });
    // alice sends to the lobby: mallory accepts and never acknowledges;
    // bob is offered it and does not answer.
    let sent = dir.path().join("big.bin");
    write_file(&sent, 5 * 1024 * 1024);
    let upload = transfer_id(&alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() })));
    rt.block_on(async {
        loop {
            match next_file(&mut mallory).await {
                ServerMessage::FileOffered { transfer, from, .. } if from == "alice" => {
                    let answer = ClientMessage::FileAnswer { transfer, sender: from, accept: true };
                    mallory.send_message(&answer).await.unwrap();
                }
                ServerMessage::FileData { .. } => break,
                _ => {}
            }
        }
    });
    let pending = bob.wait_for("file", |p| p["name"] == "big.bin");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while entries(&inbox).is_empty() {
        assert!(std::time::Instant::now() < deadline, "bob never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }

    server.kill();
    let end = ended(&mut alice, &upload);
    assert_eq!(end["state"], "failed", "{end}");
    assert!(end["reason"].as_str().unwrap().contains("the connection was lost"), "{end}");
    let end = ended(&mut bob, &download);
    assert_eq!(end["state"], "failed", "{end}");
    assert!(end["reason"].as_str().unwrap().contains("the connection was lost"), "{end}");
    assert_eq!(entries(&inbox), Vec::<String>::new(), "the partial file was deleted");

    // Back: the offer did not survive the reconnection.
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = bob.request("files.list", json!({}));
        if listed.get("result").is_some() {
            break listed;
        }
        assert!(std::time::Instant::now() < deadline, "bob did not reconnect: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed["result"]["transfers"], json!([]), "{listed}");
    let gone = bob.request("files.get", json!({ "id": pending["id"], "dir": inbox.to_str().unwrap() }));
    assert!(gone["error"]["message"].as_str().unwrap().contains("end with the connection"), "{gone}");
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn a_file_whose_signature_does_not_verify_is_deleted() {
    use cipherline_proto::ClientConfig;
    use cipherline_proto::crypto::sign::IdentityKey;
    use cipherline_proto::signature::{FileFacts, sign_file};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let rt = runtime();
    let identity = std::sync::Arc::new(IdentityKey::ed25519_from_seed(&[0x6d; 32]).unwrap());
    let mut mallory = rt.block_on(async {
        let options = Options {
            config: std::sync::Arc::new(ClientConfig { identity: Some(identity.clone()), ..ClientConfig::default() }),
            ..Options::default()
        };
        let any = |_: &str, _: &ServerPublicKey| Ok(());
        let mut client = Client::connect(&server.addr, "mallory", &options, &any).await.unwrap();
        client.join("lobby").await.unwrap();
        client
    });
    let lobby = Target::Room("lobby".into());
    let data = b"signed for another file".to_vec();
    let transfer = rt.block_on(async {
        let transfer = mallory.writer().next_id();
        let offer =
            ClientMessage::FileOffer { transfer, to: lobby.clone(), name: "sig.txt".into(), size: data.len() as u64 };
        mallory.send_message(&offer).await.unwrap();
        transfer
    });
    let offer = alice.wait_for("file", |p| p["name"] == "sig.txt");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let download =
        transfer_id(&alice.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() })));
    let reason = rt.block_on(async {
        assert!(matches!(next_file(&mut mallory).await, ServerMessage::FileAnswered { accept: true, .. }));
        mallory.send_message(&ClientMessage::FileChunk { transfer, data: data.clone() }).await.unwrap();
        let sha256 = cipherline_proto::crypto::sha256(&data);
        // A valid signature by mallory's key, over another name than the
        // one offered: as if the relay had swapped the offer.
        let facts = FileFacts {
            sender: "mallory",
            to: &lobby,
            transfer,
            name: "other.txt",
            size: data.len() as u64,
            sha256: &sha256,
        };
        let signature = Some(sign_file(&identity, &facts).unwrap());
        mallory.send_message(&ClientMessage::FileEnd { transfer, sha256, signature }).await.unwrap();
        loop {
            if let ServerMessage::FileCancelled { reason, by, .. } = next_file(&mut mallory).await {
                assert_eq!(by, "alice");
                return reason;
            }
        }
    });
    assert!(reason.contains("signature is invalid"), "the sender is told why: {reason}");
    let end = ended(&mut alice, &download);
    assert_eq!(end["state"], "failed", "{end}");
    assert!(end["reason"].as_str().unwrap().contains("signature is invalid"), "{end}");
    assert_eq!(entries(&inbox), Vec::<String>::new(), "nothing kept");
    assert_eq!(alice.finish(), Some(0));
}
