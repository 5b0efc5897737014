//! Issue 12, items 1 and 7e, against the real binary: what a hostile peer
//! sends cannot forge lines on another user's terminal (`listen`, `chat`,
//! `send --wait-reply`), `--json` keeps it exact, and `listen
//! --accept-files` refuses files over its size limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::*;

/// The attack texts a peer sends (each one message).
const ATTACKS: [&str; 5] = [
    // A newline that starts a line looking like a signed message from alice.
    "see you\n[lobby] alice: please pay mallory",
    // Carriage return and "erase line" to wipe the real prefix.
    "x\r\u{1b}[2K[lobby] alice: hi",
    // An OSC sequence setting the terminal title.
    "\u{1b}]0;pwned\u{7}title",
    // A bidi override in a name-like position, and in a file name.
    "\u{202e}[lobby] ecila: gnirts, invoice\u{202e}fdp.exe",
    // CRLF, a line separator, a zero-width space and a BOM.
    "one\r\ntwo\u{2028}three\u{200b}\u{feff}",
];

/// Asserts that `out` (everything a front-end printed) shows the attacks
/// escaped, each on a line of `sender`'s (whatever mark follows the name)
/// with every continuation line marked.
fn assert_escaped(out: &str, sender: &str) {
    for bad in ['\u{1b}', '\u{7}', '\r', '\u{202e}', '\u{2028}', '\u{200b}', '\u{feff}'] {
        assert!(!out.contains(bad), "raw {bad:?} reached the terminal: {out:?}");
    }
    for line in out.lines() {
        assert!(!common::untimed(line).starts_with("[lobby] alice"), "a forged line from alice: {out}");
    }
    let prefix = format!("[lobby] {sender}");
    let first =
        |text: &str| out.lines().any(|l| common::untimed(l).starts_with(&prefix) && l.ends_with(&format!(": {text}")));
    let next = |text: &str| out.lines().any(|l| l == format!("  | {text}"));
    assert!(first("see you") && next("[lobby] alice: please pay mallory"), "continuation marked: {out}");
    assert!(first("x\\r\\x1b[2K[lobby] alice: hi"), "{out}");
    assert!(first("\\x1b]0;pwned\\x07title"), "{out}");
    assert!(first("\\u{202e}[lobby] ecila: gnirts, invoice\\u{202e}fdp.exe"), "{out}");
    assert!(first("one") && next("two\\u{2028}three\\u{200b}\\u{feff}"), "{out}");
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn peer_text_cannot_forge_lines_in_listen_chat_or_send_wait_reply() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // dave watches in chat; his join notices tell when the others are in.
    let mut dave = server.client("chat", "dave").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let dave_lines = line_channel(&mut dave);
    let mut dave_in = dave.stdin.take().unwrap();
    wait_for_line(&dave_lines, "in room lobby");

    let n = ATTACKS.len().to_string();
    let bob = server
        .client("listen", "bob")
        .args(["--count", &n, "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(&dave_lines, "bob joined lobby");
    let carol = server
        .client("listen", "carol")
        .args(["--json", "--count", &n, "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(&dave_lines, "carol joined lobby");

    for text in ATTACKS {
        let out = server.client("send", "mallory").arg(text).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // listen, plain: every attack escaped, continuation lines marked.
    let bob = finish(bob);
    assert_escaped(&String::from_utf8(bob.stdout).unwrap(), "mallory");

    // listen --json: the exact text, byte for byte.
    let carol = finish(carol);
    let texts: Vec<String> = String::from_utf8(carol.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ATTACKS, "--json round-trips the exact text");

    // chat shows the same, escaped (wait for the last attack's last line).
    let mut seen = wait_for_line(&dave_lines, "  | two\\u{2028}");
    // send --wait-reply: erin asks, dave answers with controls.
    let erin = server
        .client("send", "erin")
        .args(["--wait-reply", "8", "anyone?"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    seen.extend(wait_for_line(&dave_lines, "] erin (new key): anyone?"));
    writeln!(dave_in, "x\r\u{1b}[2K[lobby] alice: hi").unwrap();
    writeln!(dave_in, "/quit").unwrap();
    assert!(dave.wait().unwrap().success());
    let chat: String = seen.iter().map(|l| format!("{l}\n")).collect();
    assert_escaped(&chat, "mallory");
    let erin = String::from_utf8(finish(erin).stdout).unwrap();
    assert!(!erin.contains(['\r', '\u{1b}']), "{erin:?}");
    assert!(
        erin.lines()
            .any(|l| common::untimed(l).starts_with("[lobby] dave") && l.ends_with(": x\\r\\x1b[2K[lobby] alice: hi")),
        "{erin:?}"
    );
}

/// Sends `file` to bob, retrying while bob is not connected yet (exit 5).
/// Without an identity key: a direct file then goes the version-1 way,
/// offered live, whose limits this tests.
fn send_file_to_bob(server: &Server, file: &std::path::Path) -> Output {
    for _ in 0..100 {
        let out = server
            .client("send", "alice")
            .args(["--no-identity", "--to", "bob", "--file", file.to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.code() != Some(5) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("bob never connected");
}

#[test]
fn listen_declines_files_over_its_size_limits_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let mut bob = server
        .client("listen", "bob")
        .args(["--json", "--timeout", "60", "--accept-files", downloads.to_str().unwrap()])
        .args(["--max-file-size", "1K", "--max-total", "1500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut bob);
    let write = |name: &str, len: usize| {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![7u8; len]).unwrap();
        path
    };

    // Over --max-file-size: the sender is told why, nothing is written.
    let out = send_file_to_bob(&server, &write("big.bin", 2000));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too large") && err.contains("1024 bytes"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&lines.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(v["file_declined"]["name"], "big.bin");
    assert_eq!(v["file_declined"]["size"], 2000);
    assert!(v["file_declined"]["reason"].as_str().unwrap().contains("too large"));
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0, "nothing written");

    // Within both limits: accepted.
    let out = send_file_to_bob(&server, &write("ok.bin", 1000));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&lines.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(v["file"]["size"], 1000);

    // Over --max-total for the run (1000 + 1000 > 1500): declined.
    let out = send_file_to_bob(&server, &write("more.bin", 1000));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quota") && err.contains("500 of 1500 bytes left"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&lines.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(v["file_declined"]["name"], "more.bin");

    let _ = bob.kill();
    let _ = bob.wait();
    let names: Vec<_> = std::fs::read_dir(&downloads).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["ok.bin"], "only the accepted file, no partial files");
}

#[test]
fn listen_rejects_a_malformed_size() {
    let out = bin().args(["listen", "--max-file-size", "1.5G"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}
