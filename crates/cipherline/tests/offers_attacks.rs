//! Version-1 file offers (engine/offers.rs) attacked through a real
//! server by a hand-driven sender (a raw `Client` sending FileOffer,
//! FileChunk, FileEnd and FileCancel as it likes) against
//! `cipherline daemon --stdio`: hundreds of offers keep 64, the oldest
//! declined; at most 16 are received at once; an unknown id and a second
//! accept are refused; data past the announced size, an end before all
//! the data, a wrong SHA-256, a cancel mid-way with chunks after it and a
//! sender that leaves with transfers open each end the transfer with no
//! file and no partial file left; a name that is taken is saved beside
//! it; the daemon answers throughout. (A sender that goes silent is given
//! up on after 60 s: unit test `engine::offers::tests::
//! a_silent_sender_is_given_up_on`, not waited for here.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cipherline_proto::app::{ClientMessage, ServerMessage, Target};
use common::Server;
use common::daemon::Daemon;
use common::offers::{ended, entries, next_file, raw};
use serde_json::json;

/// Offers mallory makes: far past the 64 kept.
const OFFERS: usize = 300;
const KEPT: usize = 64;
const RECEIVING: usize = 16;

#[test]
fn a_hostile_sender_cannot_pile_up_offers_or_leave_files_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Limits raised so that the server lets hundreds of offers through:
    // the engine's own bounds are what is attacked.
    let limits = "max_transfers_per_client = 1000\nmax_offer_recipients_per_client = 100000\n\
                  messages_per_sec = 100000\nburst = 100000\nqueue_len = 4096\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut mallory = rt.block_on(raw(&server, "mallory"));
    let lobby = Target::Room("lobby".into());

    // 300 offers of 10 bytes: alice keeps the newest 64 and declines the
    // rest, oldest first.
    let transfers: BTreeMap<String, u64> = rt.block_on(async {
        let mut transfers = BTreeMap::new();
        for i in 0..OFFERS {
            let transfer = mallory.writer().next_id();
            let name = format!("f{i:03}.bin");
            let offer = ClientMessage::FileOffer { transfer, to: lobby.clone(), name: name.clone(), size: 10 };
            mallory.send_message(&offer).await.unwrap();
            transfers.insert(name, transfer);
        }
        let mut declined = Vec::new();
        while declined.len() < OFFERS - KEPT {
            match next_file(&mut mallory).await {
                ServerMessage::FileAnswered { transfer, by, accept: false } if by == "alice" => declined.push(transfer),
                other => panic!("unexpected {other:?}"),
            }
        }
        let oldest: Vec<u64> = (0..OFFERS - KEPT).map(|i| transfers[&format!("f{i:03}.bin")]).collect();
        assert_eq!(declined, oldest, "the oldest offers are declined, in order");
        transfers
    });
    let last = alice.wait_for("file", |p| p["name"] == format!("f{:03}.bin", OFFERS - 1));
    assert_eq!((last["e2e"].as_bool(), last["from"].as_str()), (Some(false), Some("mallory")), "{last}");
    let ids: BTreeMap<String, u64> = alice
        .notifications
        .iter()
        .filter(|n| n["method"] == "file")
        .map(|n| (n["params"]["name"].as_str().unwrap().to_owned(), n["params"]["id"].as_u64().unwrap()))
        .collect();
    assert_eq!(ids.len(), OFFERS, "every offer was notified once");
    let listed = alice.request("files.list", json!({}));
    let mut held: Vec<String> = listed["result"]["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "offered", "{t}");
            t["name"].as_str().unwrap().to_owned()
        })
        .collect();
    held.sort();
    let newest: Vec<String> = (OFFERS - KEPT..OFFERS).map(|i| format!("f{i:03}.bin")).collect();
    assert_eq!(held, newest, "the newest 64 are kept");

    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let inbox_str = inbox.to_str().unwrap();
    // A forgotten offer, an id never given, a transfer never named: refused.
    let gone = alice.request("files.get", json!({ "id": ids["f000.bin"], "dir": inbox_str }));
    assert!(gone["error"]["message"].as_str().unwrap().contains("end with the connection"), "{gone}");
    let never = alice.request("files.get", json!({ "id": 999_999u64 << 40, "dir": inbox_str }));
    assert!(never.get("error").is_some(), "{never}");
    let unknown = alice.request("files.cancel", json!({ "transfer": "o999999" }));
    assert!(unknown.get("error").is_some(), "{unknown}");

    // 16 accepted; the 17th is refused (and stays offered); an accepted
    // offer cannot be accepted again.
    let accepted: Vec<String> = newest.iter().take(RECEIVING).cloned().collect();
    let mut downloads = BTreeMap::new();
    for name in &accepted {
        let got = alice.request("files.get", json!({ "id": ids[name], "dir": inbox_str }));
        let transfer = got["result"]["transfer"].as_str().unwrap_or_else(|| panic!("{got}")).to_owned();
        downloads.insert(name.clone(), transfer);
    }
    let seventeenth = &newest[RECEIVING];
    let refused = alice.request("files.get", json!({ "id": ids[seventeenth], "dir": inbox_str }));
    assert!(refused["error"]["message"].as_str().unwrap().contains("16 files are being received"), "{refused}");
    let twice = alice.request("files.get", json!({ "id": ids[&accepted[0]], "dir": inbox_str }));
    assert!(twice.get("error").is_some(), "a second accept of one offer: {twice}");
    assert_eq!(entries(&inbox).len(), RECEIVING, "one hidden partial file per accepted offer");

    // A file of the first accepted name is there already.
    let good = &accepted[0];
    std::fs::write(inbox.join(good), b"mine").unwrap();
    let data = b"0123456789".to_vec();
    let sha = cipherline_proto::crypto::sha256(&data);
    rt.block_on(async {
        let mut answered = 0;
        while answered < RECEIVING {
            if let ServerMessage::FileAnswered { accept: true, .. } = next_file(&mut mallory).await {
                answered += 1;
            }
        }
        let send = |t: &str| ClientMessage::FileChunk { transfer: transfers[t], data: data.clone() };
        // 0: honest (no signature: mallory has no key) → saved beside "mine".
        mallory.send_message(&send(&accepted[0])).await.unwrap();
        mallory
            .send_message(&ClientMessage::FileEnd { transfer: transfers[&accepted[0]], sha256: sha, signature: None })
            .await
            .unwrap();
        // 1: the wrong SHA-256.
        mallory.send_message(&send(&accepted[1])).await.unwrap();
        let end = ClientMessage::FileEnd { transfer: transfers[&accepted[1]], sha256: [7; 32], signature: None };
        mallory.send_message(&end).await.unwrap();
        // 2: the end after 5 of the 10 bytes.
        let half = ClientMessage::FileChunk { transfer: transfers[&accepted[2]], data: data[..5].to_vec() };
        mallory.send_message(&half).await.unwrap();
        let end = ClientMessage::FileEnd {
            transfer: transfers[&accepted[2]],
            sha256: cipherline_proto::crypto::sha256(&data[..5]),
            signature: None,
        };
        mallory.send_message(&end).await.unwrap();
        // 3: more data than announced (after 5 bytes, 10 more).
        let over = transfers[&accepted[3]];
        mallory.send_message(&ClientMessage::FileChunk { transfer: over, data: data[..5].to_vec() }).await.unwrap();
        mallory.send_message(&ClientMessage::FileChunk { transfer: over, data: data.clone() }).await.unwrap();
        // 4: a cancel mid-way, then chunks and an end as if nothing happened.
        let cancelled = transfers[&accepted[4]];
        mallory
            .send_message(&ClientMessage::FileChunk { transfer: cancelled, data: data[..3].to_vec() })
            .await
            .unwrap();
        let cancel = ClientMessage::FileCancel { transfer: cancelled, sender: String::new(), reason: "oops".into() };
        mallory.send_message(&cancel).await.unwrap();
        mallory
            .send_message(&ClientMessage::FileChunk { transfer: cancelled, data: data[..7].to_vec() })
            .await
            .unwrap();
        mallory
            .send_message(&ClientMessage::FileEnd { transfer: cancelled, sha256: sha, signature: None })
            .await
            .unwrap();
        // Chunks and an end for an offer never accepted, and for the honest
        // one after its end.
        let never = transfers[seventeenth];
        mallory.send_message(&ClientMessage::FileChunk { transfer: never, data: data.clone() }).await.unwrap();
        mallory.send_message(&ClientMessage::FileEnd { transfer: never, sha256: sha, signature: None }).await.unwrap();
        mallory.send_message(&send(&accepted[0])).await.unwrap();
    });
    let end = ended(&mut alice, &downloads[good]);
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!(
        Path::new(end["path"].as_str().unwrap()).file_name().unwrap().to_str().unwrap(),
        good.replace(".bin", " (1).bin")
    );
    let end = ended(&mut alice, &downloads[&accepted[1]]);
    assert_eq!(end["state"], "failed", "{end}");
    assert!(end["reason"].as_str().unwrap().contains("SHA-256"), "{end}");
    let end = ended(&mut alice, &downloads[&accepted[2]]);
    assert_eq!(end["state"], "failed", "{end}");
    assert!(end["reason"].as_str().unwrap().contains("size"), "{end}");
    for name in &accepted[3..5] {
        let end = ended(&mut alice, &downloads[name]);
        assert_eq!(end["state"], "failed", "{name}: {end}");
    }
    // The daemon still answers, and mallory's leaving ends the 11 still
    // open (each silent since its accept).
    let listed = alice.request("files.list", json!({}));
    let running = listed["result"]["transfers"].as_array().unwrap().iter().filter(|t| t["state"] == "running").count();
    assert_eq!(running, RECEIVING - 5, "{listed}");
    drop(mallory);
    drop(rt);
    for name in &accepted[5..] {
        let end = ended(&mut alice, &downloads[name]);
        assert_eq!(end["state"], "failed", "{name}: {end}");
    }
    assert_eq!(
        entries(&inbox),
        // Sorted: " (" before ".".
        [good.replace(".bin", " (1).bin"), good.clone()],
        "no partial file, nothing else written"
    );
    assert_eq!(std::fs::read(inbox.join(good)).unwrap(), b"mine", "the file there is untouched");
    assert_eq!(std::fs::read(inbox.join(good.replace(".bin", " (1).bin"))).unwrap(), data);
    // The offers left are withdrawn with mallory: nothing is listed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = alice.request("files.list", json!({}));
        if listed["result"]["transfers"] == json!([]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "offers of a sender gone still listed: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(alice.finish(), Some(0));
}
