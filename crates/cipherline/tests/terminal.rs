//! `cipherline chat` on a real pseudo-terminal, and the small things users
//! hit (issue 13 items 1, 2, 3 and 9): the terminal restored on every way
//! out, typed-ahead and pasted lines all sent, too-long lines refused
//! locally, the room in the prompt, `/join` usage, message times,
//! `--version`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rexpect::session::{PtySession, spawn_command};

/// Generous: the CI machine is small and busy.
const TIMEOUT_MS: u64 = 30_000;

/// Runs `chat` (as `cmd` would) on a pty inside `sh`, which first makes the
/// terminal a normal one (`stty sane`: rexpect turns echo off) and, after
/// chat exits, prints chat's exit code and `stty -a` in the same terminal.
fn chat_on_pty(cmd: &Command) -> PtySession {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"echo "sh-pid=$$"; stty sane; "$@"; echo "chat-exit=$?"; stty -a; echo "stty-done""#)
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    spawn_command(sh, Some(TIMEOUT_MS)).unwrap()
}

/// Waits for chat to exit and asserts the terminal is back in canonical
/// mode with echo (as `stty -a` shows it: `-icanon`/`-echo` when not).
fn assert_terminal_restored(p: &mut PtySession, how: &str) {
    p.exp_string("chat-exit=").unwrap();
    let stty = p.exp_string("stty-done").unwrap();
    let flags: Vec<&str> = stty.split_whitespace().collect();
    assert!(flags.contains(&"icanon"), "after {how}, the terminal is left without icanon: {stty}");
    assert!(flags.contains(&"echo"), "after {how}, the terminal is left without echo: {stty}");
}

/// Writes `keys` to the terminal at once (rexpect buffers until a flush).
fn type_in(p: &mut PtySession, keys: &str) {
    p.send(keys).unwrap();
    p.flush().unwrap();
}

/// Asks `/who` until `name` is in the lobby (so it receives what is said).
fn wait_until_present(p: &mut PtySession, name: &str) {
    for _ in 0..80 {
        type_in(p, "/who\r");
        let (_, line) = p.exp_regex(r"in lobby: [^\r\n]*").unwrap();
        if line.split([' ', ',']).any(|n| n == name) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{name} never joined the lobby");
}

#[test]
fn quit_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut p = chat_on_pty(&server.client("chat", "alice"));
    p.exp_string("lobby> ").unwrap();
    type_in(&mut p, "/quit\r");
    assert_terminal_restored(&mut p, "/quit");
}

#[test]
fn quit_word_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut p = chat_on_pty(server.client("chat", "alice").args(["--quit-word", "thanks"]));
    p.exp_string("lobby> ").unwrap();
    type_in(&mut p, "thanks\r");
    assert_terminal_restored(&mut p, "a quit word");
}

/// A server shutdown no longer ends chat (it reconnects by itself, issue
/// 14): /quit typed while it is away does, and restores the terminal.
#[test]
fn quit_while_reconnecting_after_a_server_shutdown_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let mut p = chat_on_pty(&server.client("chat", "alice"));
    p.exp_string("lobby> ").unwrap();
    server.stop();
    p.exp_string("reconnecting in").unwrap();
    type_in(&mut p, "/quit\r");
    assert_terminal_restored(&mut p, "a server shutdown and /quit while reconnecting");
}

#[test]
fn sigterm_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut p = chat_on_pty(&server.client("chat", "alice"));
    let (_, sh) = p.exp_regex(r"sh-pid=[0-9]+").unwrap();
    let sh = sh.trim_start_matches("sh-pid=").to_owned();
    p.exp_string("lobby> ").unwrap();
    // chat is the only child of this pty's sh: signal exactly that process.
    let out = Command::new("pgrep").args(["-P", &sh]).output().unwrap();
    let chat = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!chat.is_empty() && !chat.contains('\n'), "chat is sh's one child: {chat:?}");
    assert!(Command::new("kill").args(["-TERM", &chat]).status().unwrap().success());
    assert_terminal_restored(&mut p, "SIGTERM");
}

/// A `listen` for `count` messages, its stdout as lines.
fn listener(server: &Server, count: usize) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = server
        .client("listen", "bob")
        .args(["--count", &count.to_string(), "--timeout", "60"])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut child);
    (child, lines)
}

fn received(lines: &std::sync::mpsc::Receiver<String>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let line = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("message {i} missing"));
            untimed(&line).to_owned()
        })
        .collect()
}

#[test]
fn lines_typed_ahead_are_all_sent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut listen, lines) = listener(&server, 5);
    let mut p = chat_on_pty(&server.client("chat", "alice"));
    p.exp_string("lobby> ").unwrap();
    wait_until_present(&mut p, "bob");
    // Five lines in one write, as a fast typist or a paste without
    // bracketed-paste mode delivers them.
    type_in(&mut p, "one\rtwo\rthree\rfour\rfive\r");
    let got = received(&lines, 5);
    // The first message marks alice's key as new; the rest are from the
    // remembered key.
    let want: Vec<String> = ["(new key): one", ": two", ": three", ": four", ": five"]
        .iter()
        .map(|t| format!("[lobby] alice{}{t}", if t.starts_with('(') { " " } else { "" }))
        .collect();
    assert_eq!(got, want);
    assert!(listen.wait().unwrap().success());
    type_in(&mut p, "/quit\r");
    assert_terminal_restored(&mut p, "/quit");
}

#[test]
fn a_bracketed_paste_of_five_lines_is_five_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut listen, lines) = listener(&server, 5);
    let mut p = chat_on_pty(&server.client("chat", "alice"));
    p.exp_string("lobby> ").unwrap();
    wait_until_present(&mut p, "bob");
    // A terminal wraps a paste in ESC[200~ … ESC[201~; Enter sends it.
    type_in(&mut p, "\x1b[200~p1\rp2\rp3\rp4\rp5\x1b[201~\r");
    let got = received(&lines, 5);
    let want: Vec<String> =
        (1..=5).map(|i| format!("[lobby] alice{}: p{i}", if i == 1 { " (new key)" } else { "" })).collect();
    assert_eq!(got, want);
    assert!(listen.wait().unwrap().success());
}

#[test]
fn a_too_long_line_is_refused_locally_and_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut listen, lines) = listener(&server, 1);
    let mut alice = server.client("chat", "alice").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let alice_lines = line_channel(&mut alice);
    let mut alice_in = alice.stdin.take().unwrap();
    wait_for_line(&alice_lines, "in room lobby");
    loop {
        writeln!(alice_in, "/who").unwrap();
        if wait_for_line(&alice_lines, "in lobby:").pop().unwrap().contains("bob") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The server's default max_message is 65536 bytes: the text alone is over.
    writeln!(alice_in, "{}", "x".repeat(70_000)).unwrap();
    let refusal = wait_for_line(&alice_lines, "not sent").pop().unwrap();
    assert!(refusal.contains("at most 65536"), "the refusal names the limit: {refusal}");
    writeln!(alice_in, "still here").unwrap();
    assert_eq!(received(&lines, 1), vec!["[lobby] alice (new key): still here".to_owned()]);
    assert!(listen.wait().unwrap().success());
    writeln!(alice_in, "/quit").unwrap();
    assert!(alice.wait().unwrap().success());
}

#[test]
fn the_prompt_shows_the_current_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut p = chat_on_pty(&server.client("chat", "alice"));
    p.exp_string("lobby> ").unwrap();
    type_in(&mut p, "/join kitchen\r");
    p.exp_string("joined kitchen").unwrap();
    p.exp_string("kitchen> ").unwrap();
    type_in(&mut p, "/quit\r");
    assert_terminal_restored(&mut p, "/quit");
}

#[test]
fn join_without_a_room_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut alice = server.client("chat", "alice").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let alice_lines = line_channel(&mut alice);
    let mut alice_in = alice.stdin.take().unwrap();
    wait_for_line(&alice_lines, "in room lobby");
    writeln!(alice_in, "/join").unwrap();
    writeln!(alice_in, "/quit").unwrap();
    let usage = wait_for_line(&alice_lines, "/join").pop().unwrap();
    assert!(usage.contains("usage: /join ROOM"), "{usage}");
    assert!(alice.wait().unwrap().success());
}

#[test]
fn listen_shows_the_time_a_message_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut listen, lines) = listener(&server, 1);
    // Minutes (UTC, as TZ=UTC makes listen print) around the send.
    let minute = || {
        let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        format!("{:02}:{:02}", s / 3600 % 24, s / 60 % 60)
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = minute();
    let out = server.client("send", "alice").arg("what time is it").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = minute();
    let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time == before || time == after, "local time HH:MM first, got {line:?} (sent {before}-{after})");
    assert_eq!(rest, "[lobby] alice (new key): what time is it");
    assert!(listen.wait().unwrap().success());
}

#[test]
fn version_is_printed() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), format!("cipherline {}", env!("CARGO_PKG_VERSION")));
}
