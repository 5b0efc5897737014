//! End-to-end files through `cipherline daemon --stdio` (issue 17) against
//! a real server: alice's daemon sends a file to bob's; bob's daemon
//! notifies the offer, fetches it on `files.get` with `transfer`
//! notifications ending in `done`, and the saved file is the one sent;
//! at most three downloads run at once; an interrupted download resumes
//! at start with `--resume-downloads` only;
//! an offer is cancelled, and a download while it runs (nothing left
//! behind); bad paths and ids get clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;

use common::Server;
use common::daemon::Daemon;
use serde_json::{Value, json};

/// A file of `len` bytes that no two offsets of a chunk repeat.
fn write_file(path: &Path, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// The `transfer` notifications for `transfer`, in order.
fn transfers<'a>(daemon: &'a Daemon, transfer: &str) -> Vec<&'a Value> {
    daemon
        .notifications
        .iter()
        .filter(|n| n["method"] == "transfer" && n["params"]["transfer"] == transfer)
        .map(|n| &n["params"])
        .collect()
}

/// The daemon's transfer id in a `files.send` or `files.get` response.
fn transfer_id(response: &Value) -> String {
    response["result"]["transfer"].as_str().unwrap_or_else(|| panic!("no transfer id: {response}")).to_owned()
}

/// Waits for the last `transfer` notification of `transfer` (done,
/// failed or cancelled).
fn ended(daemon: &mut Daemon, transfer: &str) -> Value {
    daemon.wait_for("transfer", |p| {
        p["transfer"] == transfer && matches!(p["state"].as_str(), Some("done" | "failed" | "cancelled"))
    })
}

#[test]
fn a_file_goes_from_one_daemon_to_another_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // bob's daemon publishes his end-to-end keys as it connects.
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);
    // Several 64 KiB chunks and a short last one.
    let sent = dir.path().join("report.bin");
    let data = write_file(&sent, 300_000);

    let started = alice.request("files.send", json!({ "to": "bob", "path": sent.to_str().unwrap() }));
    let upload = transfer_id(&started);
    let end = ended(&mut alice, &upload);
    assert_eq!(end["state"], "done", "{end}");
    assert_eq!((end["done"].as_u64(), end["total"].as_u64()), (Some(300_000), Some(300_000)), "{end}");
    assert_eq!(end["name"], "report.bin");

    let offer = bob.wait_for("file", |p| p["name"] == "report.bin");
    assert_eq!(offer["from"], "alice", "{offer}");
    assert_eq!(offer["to"], "bob", "{offer}");
    assert_eq!(offer["size"], 300_000, "{offer}");
    assert_eq!(offer["e2e"], true, "{offer}");
    // Recorded: listed as offered before anyone asks for it.
    let listed = bob.request("files.list", json!({}));
    let offered: Vec<_> = listed["result"]["transfers"].as_array().unwrap().iter().collect();
    assert!(
        offered.iter().any(|t| t["state"] == "offered" && t["name"] == "report.bin" && t["from"] == "alice"),
        "{listed}"
    );

    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let got = bob.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() }));
    let download = transfer_id(&got);
    assert!(download.starts_with('d'), "a download's id is as `files list` names it: {got}");
    let end = ended(&mut bob, &download);
    assert_eq!(end["state"], "done", "{end}");
    let states: Vec<_> = transfers(&bob, &download).iter().map(|p| p["state"].clone()).collect();
    assert_eq!(states.first(), Some(&json!("running")), "{states:?}");
    let saved = Path::new(end["path"].as_str().unwrap_or_else(|| panic!("no saved path: {end}")));
    assert_eq!(saved, inbox.canonicalize().unwrap().join("report.bin"));
    let received = std::fs::read(saved).unwrap();
    assert_eq!(
        cipherline_proto::crypto::sha256(&received),
        cipherline_proto::crypto::sha256(&data),
        "the saved file is the one sent"
    );
    // Nothing left: the list no longer has it.
    let listed = bob.request("files.list", json!({}));
    assert_eq!(listed["result"]["transfers"], json!([]), "{listed}");
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn an_offer_is_cancelled_and_bad_paths_and_ids_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &["--room", "lobby"]);
    let mut alice = Daemon::start(&server, "alice", &[]);

    // A path that is not there, and a directory: refused at once, naming
    // the path.
    let missing = dir.path().join("nope.pdf");
    let refused = alice.request("files.send", json!({ "to": "bob", "path": missing.to_str().unwrap() }));
    assert_eq!(refused["error"]["code"], -32003, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("nope.pdf") && message.contains("No such file"), "{refused}");
    let folder = alice.request("files.send", json!({ "to": "bob", "path": dir.path().to_str().unwrap() }));
    assert!(folder["error"]["message"].as_str().unwrap().contains("not a regular file"), "{folder}");
    // Files never go the open way.
    let sent = dir.path().join("notes.txt");
    write_file(&sent, 1000);
    let open = alice.request("files.send", json!({ "room": "lobby", "path": sent.to_str().unwrap() }));
    assert_eq!(open["error"]["code"], -32002, "{open}");

    let started = alice.request("files.send", json!({ "to": "bob", "path": sent.to_str().unwrap() }));
    let upload = transfer_id(&started);
    assert_eq!(ended(&mut alice, &upload)["state"], "done");
    let offer = bob.wait_for("file", |p| p["name"] == "notes.txt");

    // A directory that is not there.
    let nowhere = dir.path().join("no-such-dir");
    let bad_dir = bob.request("files.get", json!({ "id": offer["id"], "dir": nowhere.to_str().unwrap() }));
    assert!(bad_dir["error"]["message"].as_str().unwrap().contains("no-such-dir"), "{bad_dir}");
    // An offer that does not exist, a transfer id that does not exist.
    let unknown = bob.request("files.get", json!({ "id": 12345, "dir": dir.path().to_str().unwrap() }));
    assert_eq!(unknown["error"]["code"], -32003, "{unknown}");
    let unknown = bob.request("files.cancel", json!({ "transfer": "d999" }));
    assert!(unknown["error"]["message"].as_str().unwrap().contains("no file transfer d999"), "{unknown}");

    // Cancelled: a `cancelled` notification, gone from the list, and
    // asking for it afterwards is refused.
    let listed = bob.request("files.list", json!({}));
    let id = listed["result"]["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "notes.txt")
        .unwrap_or_else(|| panic!("not listed: {listed}"))["transfer"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(bob.request("files.cancel", json!({ "transfer": id }))["result"], json!({}));
    let end = ended(&mut bob, &id);
    assert_eq!(end["state"], "cancelled", "{end}");
    let listed = bob.request("files.list", json!({}));
    assert_eq!(listed["result"]["transfers"], json!([]), "{listed}");
    let again = bob.request("files.get", json!({ "id": offer["id"], "dir": dir.path().to_str().unwrap() }));
    assert!(again.get("error").is_some(), "a cancelled offer is not fetched: {again}");
    assert!(
        !dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("cipherline-part")),
        "no partial file left"
    );
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));
}

#[test]
fn an_interrupted_download_resumes_at_start_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);
    let sent = dir.path().join("later.bin");
    let data = write_file(&sent, 150_000);
    let started = alice.request("files.send", json!({ "to": "bob", "path": sent.to_str().unwrap() }));
    assert_eq!(ended(&mut alice, &transfer_id(&started))["state"], "done");
    bob.wait_for("file", |p| p["name"] == "later.bin");
    assert_eq!(bob.finish(), Some(0));

    // As if bob had asked for it and was cut off before the first chunk:
    // accepted into `inbox`, nothing fetched yet.
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let db = rusqlite::Connection::open(common::home_of(&server, "bob").join("client.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE file_downloads SET state = 'active', dir = ?1 WHERE name = 'later.bin'",
            [inbox.as_os_str().as_encoded_bytes()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    // Without --resume-downloads it stays where it is.
    let mut bob = Daemon::start(&server, "bob", &[]);
    let listed = bob.request("files.list", json!({}));
    let item = &listed["result"]["transfers"][0];
    assert_eq!((item["name"].as_str(), item["state"].as_str()), (Some("later.bin"), Some("paused")), "{listed}");
    assert_eq!(bob.finish(), Some(0));

    // With it, it is fetched into the directory it started in.
    let mut bob = Daemon::start(&server, "bob", &["--resume-downloads"]);
    let end = bob.wait_for("transfer", |p| p["name"] == "later.bin" && p["state"] != "running");
    assert_eq!(end["state"], "done", "{end}");
    let saved = std::fs::read(inbox.join("later.bin")).unwrap();
    assert_eq!(cipherline_proto::crypto::sha256(&saved), cipherline_proto::crypto::sha256(&data));
    assert_eq!(bob.finish(), Some(0));
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn at_most_three_downloads_run_at_once_and_the_others_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);
    let mut sent = Vec::new();
    for n in 0..4 {
        let path = dir.path().join(format!("part{n}.bin"));
        let mut data = write_file(&path, 1 << 20);
        data[0] = n;
        std::fs::write(&path, &data).unwrap();
        let started = alice.request("files.send", json!({ "to": "bob", "path": path.to_str().unwrap() }));
        assert_eq!(ended(&mut alice, &transfer_id(&started))["state"], "done");
        sent.push(data);
    }
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut offers = Vec::new();
    for n in 0..4 {
        offers.push(bob.wait_for("file", |p| p["name"] == format!("part{n}.bin"))["id"].clone());
    }
    // Asked for at once (requests without an id: not answered), so three
    // are running when the fourth is asked for.
    let burst: Vec<String> = offers
        .iter()
        .map(|id| {
            json!({ "jsonrpc": "2.0", "method": "files.get", "params": { "id": id, "dir": inbox.to_str().unwrap() } })
                .to_string()
        })
        .collect();
    bob.write_line(&burst.join("\n"));
    for n in 0..4 {
        let end = bob.wait_for("transfer", |p| {
            p["name"] == format!("part{n}.bin") && p["state"] != "running" && p["state"] != "queued"
        });
        assert_eq!(end["state"], "done", "{end}");
    }
    // In the order written: never more than three running at once, and
    // the fourth (asked for while three ran) waited its turn.
    let mut running = std::collections::BTreeSet::new();
    let mut queued = false;
    for n in bob.notifications.iter().filter(|n| n["method"] == "transfer") {
        let (id, state) = (n["params"]["transfer"].as_str().unwrap(), n["params"]["state"].as_str().unwrap());
        match state {
            "running" => {
                running.insert(id.to_owned());
            }
            "queued" => queued = true,
            _ => {
                running.remove(id);
            }
        }
        assert!(running.len() <= 3, "more than three downloads at once: {:?}", bob.notifications);
    }
    assert!(queued, "no download waited: {:?}", bob.notifications);
    for (n, data) in sent.iter().enumerate() {
        assert_eq!(&std::fs::read(inbox.join(format!("part{n}.bin"))).unwrap(), data);
    }
    assert_eq!(bob.finish(), Some(0));
    assert_eq!(alice.finish(), Some(0));
}

/// "files.cancel: ... a download's partial file is deleted and the relay
/// told": a download cancelled while it runs (progress shown, the file
/// not whole yet) ends `cancelled`, leaves nothing in its directory and
/// nothing in `files.list`; the upload on the other side ends too.
#[test]
fn a_running_download_is_cancelled_and_leaves_nothing_behind() {
    // Large enough that the cancel arrives while the download runs: 32 MiB
    // crossed the relay faster than a request's round trip in CI.
    const SIZE: usize = 256 << 20;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Daemon::start(&server, "bob", &[]);
    let mut alice = Daemon::start(&server, "alice", &[]);
    let sent = dir.path().join("big.bin");
    write_file(&sent, SIZE);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();

    // Asked for as soon as it is offered: the download follows the upload,
    // so it cannot end before the whole file went up.
    let started = alice.request("files.send", json!({ "to": "bob", "path": sent.to_str().unwrap() }));
    let upload = transfer_id(&started);
    let offer = bob.wait_for("file", |p| p["name"] == "big.bin");
    let got = bob.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() }));
    let download = transfer_id(&got);
    let progress = bob.wait_for("transfer", |p| {
        p["transfer"] == download.as_str() && (p["done"].as_u64().unwrap_or(0) > 0 || p["state"] != "running")
    });
    assert_eq!(progress["state"], "running", "the download ended before it could be cancelled: {progress}");
    assert!(progress["done"].as_u64().unwrap() < SIZE as u64, "{progress}");
    eprintln!("cancelling at {} of {SIZE} bytes", progress["done"]);
    let cancelled = bob.request("files.cancel", json!({ "transfer": download }));
    assert_eq!(cancelled["result"], json!({}), "{cancelled}");
    let end = ended(&mut bob, &download);
    assert_eq!(end["state"], "cancelled", "{end}");
    // Only that one end: no `done` (or anything) after it.
    let states: Vec<_> = transfers(&bob, &download).iter().map(|p| p["state"].clone()).collect();
    assert_eq!(states.iter().filter(|s| *s != "running" && *s != "queued").count(), 1, "{states:?}");
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0, "a partial or whole file left in the inbox");
    let listed = bob.request("files.list", json!({}));
    assert_eq!(listed["result"]["transfers"], json!([]), "{listed}");
    let again = bob.request("files.get", json!({ "id": offer["id"], "dir": inbox.to_str().unwrap() }));
    assert!(again.get("error").is_some(), "a cancelled download is not fetched again: {again}");

    // The sending side ends as well, and lists nothing.
    let sent_end = ended(&mut alice, &upload);
    assert!(["done", "failed"].contains(&sent_end["state"].as_str().unwrap()), "{sent_end}");
    eprintln!("the upload ended: {sent_end}");
    let listed = alice.request("files.list", json!({}));
    assert_eq!(listed["result"]["transfers"], json!([]), "{listed}");
    assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 0);
    assert_eq!(bob.finish(), Some(0));
    assert_eq!(alice.finish(), Some(0));
}
