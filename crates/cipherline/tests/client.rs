//! The client subcommands as people and scripts use them, against a real
//! `cipherline serve` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::Stdio;

use common::*;

#[test]
fn send_and_listen_round_trip_with_json_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut listener = server
        .client("listen", "bob")
        .args(["--json", "--count", "3", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut listener);
    // Wait until bob is in the lobby (alice sees him via /who in send's join).
    std::thread::sleep(std::time::Duration::from_millis(500));

    let out = server.client("send", "alice").args(["hello", "bob"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut piped = server.client("send", "carol").stdin(Stdio::piped()).spawn().unwrap();
    piped.stdin.take().unwrap().write_all(b"first line\n\nsecond line\n").unwrap();
    assert!(piped.wait().unwrap().success());

    let mut got = Vec::new();
    for _ in 0..3 {
        let line = lines.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["room"], "lobby");
        assert!(v["id"].as_u64().unwrap() > 0);
        assert!(v["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        got.push((v["from"].as_str().unwrap().to_owned(), v["text"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        got,
        vec![
            ("alice".to_owned(), "hello bob".to_owned()),
            ("carol".to_owned(), "first line".to_owned()),
            ("carol".to_owned(), "second line".to_owned()),
        ],
        "arguments joined into one message; stdin one message per non-empty line"
    );
    assert!(listener.wait().unwrap().success(), "listen exits 0 after --count messages");
}

#[test]
fn two_scripted_chats_talk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = server.client("chat", "bob").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let bob_lines = line_channel(&mut bob);
    let mut bob_in = bob.stdin.take().unwrap();
    wait_for_line(&bob_lines, "in room lobby");

    let mut alice = server
        .client("chat", "alice")
        .args(["--quit-word", "thanks"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let alice_lines = line_channel(&mut alice);
    let mut alice_in = alice.stdin.take().unwrap();
    wait_for_line(&alice_lines, "in room lobby");
    wait_for_line(&bob_lines, "alice joined lobby");

    writeln!(alice_in, "hi bob, how are you?").unwrap();
    // A first message is from a key seen for the first time: marked new, not verified.
    wait_for_line(&bob_lines, "[lobby] alice (new key): hi bob, how are you?");
    writeln!(bob_in, "/msg alice fine, privately").unwrap();
    wait_for_line(&alice_lines, "bob (new key) -> you: fine, privately");
    writeln!(alice_in, "/who").unwrap();
    wait_for_line(&alice_lines, "in lobby: alice, bob");
    // Identity keys: alice looks up bob's, and both get the same safety code.
    writeln!(alice_in, "/whois bob").unwrap();
    wait_for_line(&alice_lines, "bob: identity key SHA256:");
    writeln!(alice_in, "/verify bob").unwrap();
    let alice_code = wait_for_line(&alice_lines, "safety code with bob (").pop().unwrap();
    writeln!(bob_in, "/verify alice").unwrap();
    let bob_code = wait_for_line(&bob_lines, "safety code with alice (").pop().unwrap();
    let code = |l: &str| l.rsplit(": ").next().unwrap().to_owned();
    assert_eq!(code(&alice_code), code(&bob_code), "both ends compute the same code");
    writeln!(alice_in, "/fingerprint").unwrap();
    wait_for_line(&alice_lines, &server.fingerprint);
    writeln!(alice_in, "/rekey").unwrap();
    wait_for_line(&alice_lines, "ratcheted");
    writeln!(alice_in, "still works after rekey").unwrap();
    wait_for_line(&bob_lines, "alice: still works after rekey");
    writeln!(alice_in, "/msg nobody hello?").unwrap();
    wait_for_line(&alice_lines, "nobody");
    // The seed's quit word ends alice's session cleanly.
    writeln!(alice_in, "thanks").unwrap();
    assert!(alice.wait().unwrap().success());
    // Quitting is not leaving: alice's key owns her name, so what is said
    // to her or in her room while she is away waits for her (§13.9).
    writeln!(bob_in, "/msg alice see you later").unwrap();
    writeln!(bob_in, "said while alice is away").unwrap();
    writeln!(bob_in, "/quit").unwrap();
    assert!(bob.wait().unwrap().success());
    let out = server.client("listen", "alice").args(["--count", "2", "--timeout", "20"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("bob -> you: see you later"), "{text}");
    assert!(text.contains("[lobby] bob: said while alice is away"), "{text}");
}

#[test]
fn a_50_mib_file_arrives_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let file = dir.path().join("big.bin");
    // Deterministic pseudo-random content (no two chunks alike).
    let mut data = Vec::with_capacity(50 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 50 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&file, &data).unwrap();

    let mut listener = server
        .client("listen", "bob")
        .args(["--json", "--count", "1", "--timeout", "120", "--accept-files", downloads.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut listener);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Without an identity key, a direct file goes the version-1 way (live,
    // relayed): the path this test measures (end-to-end files: e2e_files.rs).
    let out = server
        .client("send", "alice")
        .args(["--no-identity", "--to", "bob", "--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = lines.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["file"]["from"], "alice");
    assert_eq!(v["file"]["size"], 50 << 20);
    let received = std::fs::read(downloads.join("big.bin")).unwrap();
    assert!(received == data, "byte-identical");
    assert_eq!(v["file"]["sha256"].as_str().unwrap(), hex(&cipherline_proto::crypto::sha256(&data)));
    assert!(listener.wait().unwrap().success());
    // No partial files left behind.
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 1);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn refused_trust_unreachable_server_and_unknown_user_exit_with_clear_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let home = temp_home(dir.path());

    // First contact, no terminal, no --accept-new: refused before anything is sent.
    let out = bin()
        .args(["send", "--server", &server.addr, "--name", "eve", "hello"])
        .env("CIPHERLINE_HOME", &home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--accept-new") && err.contains("hint:"), "{err}");

    // A wrong pinned fingerprint: refused, both fingerprints shown.
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let out = bin()
        .args(["send", "--server", &server.addr, "--name", "eve", "--server-fingerprint", wrong, "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(wrong) && err.contains(&server.fingerprint), "{err}");

    // --accept-new records the key; the next run needs no flag.
    let ok = bin()
        .args(["send", "--server", &server.addr, "--name", "eve", "--accept-new", "hi"])
        .env("CIPHERLINE_HOME", &home)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let ok = bin()
        .args(["send", "--server", &server.addr, "--name", "eve", "again"])
        .env("CIPHERLINE_HOME", &home)
        .output()
        .unwrap();
    assert!(ok.status.success());

    // Unknown user.
    let out = server.client("send", "dave").args(["--to", "nobody", "hello?"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));

    // Unreachable server (a port nothing listens on).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = bin()
        .args(["send", "--server", &free.to_string(), "--accept-new", "x"])
        .env("CIPHERLINE_HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cipherline serve"));
}

#[test]
fn shared_password_mode_like_seed_002() {
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, "hello\n").unwrap();
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
        "--password-file",
        pw_file.to_str().unwrap(),
        "--password-only",
    ]);
    assert!(server.fingerprint.is_empty(), "no key in password-only mode");
    let mut bob = bin()
        .args(["listen", "--server", &server.addr, "--name", "bob", "--count", "2", "--timeout", "30"])
        .arg("--password-only")
        .env("CIPHERLINE_PASSWORD", "hello")
        .env("CIPHERLINE_HOME", dir.path().join("home"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut bob);
    std::thread::sleep(std::time::Duration::from_millis(500));
    for text in ["hi", "hi"] {
        let out = bin()
            .args(["send", "--server", &server.addr, "--name", "alice", "--password-only", "--password-file"])
            .arg(&pw_file)
            .arg(text)
            .env("CIPHERLINE_HOME", dir.path().join("home"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The first from a key not seen before, then the remembered key.
    for expected in ["[lobby] alice (new key): hi", "[lobby] alice: hi"] {
        assert_eq!(common::untimed(&lines.recv_timeout(std::time::Duration::from_secs(20)).unwrap()), expected);
    }
    assert!(bob.wait().unwrap().success());

    // Alice with the wrong password: a clear error, exit 3.
    let out = bin()
        .args(["send", "--server", &server.addr, "--name", "alice", "--password-only", "hi"])
        .env("CIPHERLINE_PASSWORD", "hellO")
        .env("CIPHERLINE_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong password") && err.contains("hint:"), "{err}");
    // No password at all: told the server needs one.
    let out = bin()
        .args(["send", "--server", &server.addr, "--name", "carol", "hi"])
        .env("CIPHERLINE_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires a password"));
}

/// A one-shot `send --room` into a room the sender was not in leaves it
/// again: otherwise the room's traffic would be stored for the script's
/// name from then on (room membership outlives connections, §13.10).
#[test]
fn a_one_shot_send_into_a_room_does_not_keep_the_sender_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let out = server.client("send", "alice").args(["--room", "side", "one-shot"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.client("send", "bob").args(["--room", "side", "after alice left"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.client("listen", "alice").args(["--count", "1", "--timeout", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "nothing was kept for alice: {}", String::from_utf8_lossy(&out.stdout));
}
