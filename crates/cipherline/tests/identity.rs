//! Identity keys and names as people use them (issue 13, items 7 and 8),
//! against a real `cipherline serve` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::process::Stdio;

use common::*;

/// `keygen --passphrase-file` makes an encrypted identity key; `send`
/// uses it with `--identity-passphrase-file`, reports a wrong passphrase
/// clearly, and without a terminal or the file names the flag to use.
/// (Before, send rejected the key with a hint naming keygen's flags.)
#[test]
fn an_encrypted_identity_key_is_usable_by_send() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let key = dir.path().join("id_ed25519");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let made = bin()
        .args(["keygen", "--type", "ed25519", "--out", key.to_str().unwrap(), "--passphrase-file"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stdout).contains("encrypted with your passphrase"));

    let ok = server
        .client("send", "alice")
        .arg("--identity")
        .arg(&key)
        .arg("--identity-passphrase-file")
        .arg(&pass)
        .arg("hello")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let out = server
        .client("send", "alice")
        .arg("--identity")
        .arg(&key)
        .arg("--identity-passphrase-file")
        .arg(&wrong)
        .arg("hello")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("wrong passphrase for the identity key"), "{err}");
    assert!(err.contains(wrong.to_str().unwrap()), "the hint names the file: {err}");

    // No terminal (stdin is not one) and no file: the error names the flag.
    let out =
        server.client("send", "alice").arg("--identity").arg(&key).arg("hello").stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is encrypted") && err.contains("no terminal"), "{err}");
    assert!(err.contains("--identity-passphrase-file"), "{err}");
    assert!(!err.contains("--passphrase-prompt"), "no flag send does not have: {err}");
}

/// Names as people type them (PROTOCOL.md §13.4): while alice chats, a
/// second `chat` with her identity key (same data directory) joins as
/// another session and both get a direct message; `Alice` and `a1ice`
/// with other keys are refused as taken (exit 6) with a message saying
/// why. Before, the second session was told to choose another name and
/// `Alice` was a different user.
#[test]
fn names_ignore_case_refuse_look_alikes_and_one_key_may_chat_twice() {
    use std::io::Write as _;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let spawn_chat = || {
        let mut chat = server.client("chat", "alice").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let lines = line_channel(&mut chat);
        let input = chat.stdin.take().unwrap();
        wait_for_line(&lines, "in room lobby");
        (chat, lines, input)
    };
    let (mut first, first_lines, mut first_in) = spawn_chat();
    let (mut second, second_lines, mut second_in) = spawn_chat();

    let out = server.client("send", "bob").args(["--to", "ALICE", "hello both"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Both sessions share one local store: whichever judges first
    // records bob's key as new, the other finds it recorded (never
    // overwritten) and shows it as known.
    wait_for_line(&first_lines, "-> you: hello both");
    wait_for_line(&second_lines, "-> you: hello both");

    for (name, why) in [("Alice", "is in use as \"alice\""), ("a1ice", "looks too much like \"alice\"")] {
        let out = server.client("send", name).arg("hi").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{name}: {err}");
        assert!(err.contains(why), "{name}: {err}");
    }

    writeln!(first_in, "/quit").unwrap();
    assert!(first.wait().unwrap().success());
    writeln!(second_in, "/quit").unwrap();
    assert!(second.wait().unwrap().success());
}

/// Runs `cipherline ARGS` on a pseudo-terminal (util-linux `script`, so no
/// pty crate is needed), types `typed` once the passphrase prompt shows,
/// and returns the exit code and everything the terminal showed.
fn on_a_terminal(home: &std::path::Path, args: &[&str], typed: &str, piped: Option<&str>) -> (Option<i32>, String) {
    use std::io::{Read as _, Write as _};

    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let command: Vec<String> =
        std::iter::once(env!("CARGO_BIN_EXE_cipherline")).chain(args.iter().copied()).map(quote).collect();
    // With `piped`, standard input is a pipe while the terminal is still
    // there (`seq 1 3 | cipherline send` typed at a prompt).
    let command = match piped {
        Some(text) => format!("printf '%s\\n' {} | {}", quote(text), command.join(" ")),
        None => command.join(" "),
    };
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CIPHERLINE_HOME", home)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux `script` runs the command on a pseudo-terminal");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut input = child.stdin.take();
    // Kept open until the command ends: `script` stops at the end of its input.
    let mut typed_into = None;
    let mut exited = None;
    while std::time::Instant::now() < deadline {
        if let Ok(bytes) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            shown.extend(bytes);
        }
        if String::from_utf8_lossy(&shown).contains("Passphrase for the private key:")
            && let Some(mut stdin) = input.take()
        {
            stdin.write_all(typed.as_bytes()).unwrap();
            stdin.flush().unwrap();
            typed_into = Some(stdin);
        }
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
    }
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("still running after 30 s; showed {:?}", String::from_utf8_lossy(&shown));
    };
    drop(typed_into);
    while let Ok(bytes) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        shown.extend(bytes);
    }
    (status.code(), String::from_utf8_lossy(&shown).into_owned())
}

/// On a terminal, `send` asks for an encrypted identity key's passphrase
/// (once) and uses it; a wrong one fails with a clear message.
#[test]
fn on_a_terminal_send_asks_for_the_identity_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let key = dir.path().join("id_ed25519");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "tr0ub4dor&3\n").unwrap();
    let made = bin()
        .args(["keygen", "--type", "ed25519", "--out", key.to_str().unwrap(), "--passphrase-file"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(made.status.success());
    let home = temp_home(dir.path());
    let args = |name: &'static str| {
        vec![
            "send".to_owned(),
            "--server".to_owned(),
            server.addr.clone(),
            "--server-fingerprint".to_owned(),
            server.fingerprint.clone(),
            "--name".to_owned(),
            name.to_owned(),
            "--identity".to_owned(),
            key.to_str().unwrap().to_owned(),
            "hello".to_owned(),
        ]
    };
    let ok = args("alice");
    let (code, shown) = on_a_terminal(&home, &ok.iter().map(String::as_str).collect::<Vec<_>>(), "tr0ub4dor&3\n", None);
    assert_eq!(code, Some(0), "{shown}");
    // Standard input a pipe, the terminal still there: asked all the same.
    let mut piped = args("alice");
    piped.pop();
    let (code, shown) = on_a_terminal(
        &home,
        &piped.iter().map(String::as_str).collect::<Vec<_>>(),
        "tr0ub4dor&3\n",
        Some("from a pipe"),
    );
    assert_eq!(code, Some(0), "{shown}");
    let wrong = args("alice");
    let (code, shown) = on_a_terminal(&home, &wrong.iter().map(String::as_str).collect::<Vec<_>>(), "guess\n", None);
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("wrong passphrase for the identity key"), "{shown}");
    assert_eq!(shown.matches("Passphrase for the private key:").count(), 1, "asked once: {shown}");
}
