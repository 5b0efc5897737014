//! `cipherline chat` with many lines at once, room changes and names in
//! another case (issue 13, the chat review): every pasted or piped line is
//! sent, paced to the server's rate; the lines after a `/join` go to the
//! room joined; `/verify BOB` and `/trust BOB` act on what was seen for
//! `bob`; `General` and `general` are one room; chat ends quietly when
//! its output is closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;
use rexpect::session::{PtySession, spawn_command};

/// A `chat` as `name` on pipes, once it is in its room.
fn chat(server: &Server, name: &str, extra: &[&str]) -> (Child, Receiver<String>, ChildStdin) {
    let mut child =
        server.client("chat", name).args(extra).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let lines = line_channel(&mut child);
    let input = child.stdin.take().unwrap();
    wait_for_line(&lines, "in room ");
    (child, lines, input)
}

/// The texts `from` said in `room`, in the lines seen until one contains
/// `last` (or 20 s pass).
fn said_in(lines: &Receiver<String>, room: &str, from: &str, last: &str) -> Vec<String> {
    wait_for_line(lines, last)
        .iter()
        .map(|l| untimed(l))
        .filter(|l| l.starts_with(&format!("[{room}] {from}")))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect()
}

/// Asks `/who` until `name` is in the lobby (so it receives what is said).
fn wait_until_present(lines: &Receiver<String>, input: &mut ChildStdin, name: &str) {
    for _ in 0..80 {
        writeln!(input, "/who").unwrap();
        if wait_for_line(lines, "in lobby:").pop().unwrap().split([' ', ',']).any(|n| n == name) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{name} never joined the lobby");
}

fn sixty() -> Vec<String> {
    (1..=60).map(|i| format!("line {i:02}")).collect()
}

#[test]
fn sixty_piped_lines_all_reach_a_listener_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut bob, bob_lines, mut bob_in) = chat(&server, "bob", &[]);
    let (mut alice, _alice_lines, mut alice_in) = chat(&server, "alice", &[]);
    wait_for_line(&bob_lines, "alice joined lobby");
    // One write: more lines than the server's burst (40) allows at once.
    alice_in.write_all(format!("{}\n", sixty().join("\n")).as_bytes()).unwrap();
    assert_eq!(said_in(&bob_lines, "lobby", "alice", "line 60"), sixty(), "every line, in order");
    // The end of input quits once everything was sent.
    drop(alice_in);
    assert!(alice.wait().unwrap().success());
    writeln!(bob_in, "/quit").unwrap();
    assert!(bob.wait().unwrap().success());
}

#[test]
fn the_lines_after_join_go_to_the_room_joined() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (_bob, bob_lines, _bob_in) = chat(&server, "bob", &[]);
    let (_carol, carol_lines, _carol_in) = chat(&server, "carol", &["--room", "b"]);
    let (_alice, alice_lines, mut alice_in) = chat(&server, "alice", &[]);
    wait_until_present(&alice_lines, &mut alice_in, "bob");
    // In one write, as a script or a paste delivers them.
    alice_in.write_all(b"/join b\nx\n/msg bob done\n").unwrap();
    assert_eq!(said_in(&carol_lines, "b", "alice", ": x"), ["x"], "x goes to the room joined");
    let bob_saw = wait_for_line(&bob_lines, "done");
    assert!(!bob_saw.iter().any(|l| l.ends_with(": x")), "x must not reach the lobby: {bob_saw:?}");
}

#[test]
fn verify_and_trust_in_capitals_act_on_the_changed_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // Alice remembers another key for bob than the one he has now, in a
    // known_peers file from before the local store (imported on first use).
    let alice_home = common::home_of(&server, "alice");
    std::fs::create_dir_all(&alice_home).unwrap();
    let old = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    std::fs::write(alice_home.join("known_peers"), format!("{} bob {old}\n", server.addr)).unwrap();
    let (_bob, _bob_lines, _bob_in) = chat(&server, "bob", &[]);
    let (mut alice, lines, mut input) = chat(&server, "alice", &[]);
    writeln!(input, "/whois bob").unwrap();
    let seen = wait_for_line(&lines, "* bob: ").pop().unwrap();
    assert!(seen.contains("CHANGED"), "{seen}");
    let new = seen.split_whitespace().find(|w| w.starts_with("SHA256:")).unwrap().to_owned();
    assert_ne!(new, old);

    writeln!(input, "/verify BOB").unwrap();
    let code = wait_for_line(&lines, "safety code with BOB").pop().unwrap();
    assert!(code.contains(&format!("(NEW key {new})")), "the code for the new key: {code}");
    wait_for_line(&lines, "if it matches");
    // Confirming now would mark the OLD key verified from the new key's code.
    writeln!(input, "/verify BOB confirm").unwrap();
    let refused = wait_for_line(&lines, "BOB").pop().unwrap();
    assert!(refused.contains("key changed"), "refused until /trust: {refused}");

    writeln!(input, "/trust BOB").unwrap();
    let trusted = wait_for_line(&lines, "BOB").pop().unwrap();
    assert!(trusted.contains(&format!("identity key is now {new}")), "{trusted}");
    writeln!(input, "/verify BOB").unwrap();
    let code = wait_for_line(&lines, "safety code with BOB").pop().unwrap();
    assert!(code.contains(&format!("({new})")), "{code}");
    wait_for_line(&lines, "if it matches");
    writeln!(input, "/verify BOB confirm").unwrap();
    let done = wait_for_line(&lines, "BOB").pop().unwrap();
    assert!(done.contains(&format!("key {new} is now verified")), "{done}");
    writeln!(input, "/quit").unwrap();
    assert!(alice.wait().unwrap().success());
    // The legacy file was imported, and bob has one record, under the
    // folded name whatever the case typed.
    assert!(alice_home.join("known_peers.migrated").exists());
    let rows = common::peer_rows(&alice_home);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].1.as_str(), rows[0].2.as_str(), rows[0].3), ("bob", new.as_str(), true), "{rows:?}");
}

#[test]
fn a_room_joined_in_another_case_is_one_room_and_leaving_it_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut alice, lines, mut input) = chat(&server, "alice", &["--room", "general"]);
    writeln!(input, "/join General").unwrap();
    wait_for_line(&lines, "* joined General");
    writeln!(input, "/leave").unwrap();
    wait_for_line(&lines, "* left General");
    // Alice is in no room now: `general` must not linger as the current room.
    writeln!(input, "hello").unwrap();
    let after = wait_for_line(&lines, "!").pop().unwrap();
    assert!(after.contains("you are in no room"), "{after}");
    writeln!(input, "/quit").unwrap();
    assert!(alice.wait().unwrap().success());
}

/// Generous: the CI machine is small and busy.
const TIMEOUT_MS: u64 = 30_000;

/// Runs `cmd` on a pty inside `sh`, which first makes the terminal a normal
/// one (`stty sane`: rexpect turns echo off).
fn on_pty(cmd: &Command) -> PtySession {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(r#"stty sane; "$@"; echo "chat-exit=$?""#).arg("sh").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    spawn_command(sh, Some(TIMEOUT_MS)).unwrap()
}

#[test]
fn a_bracketed_paste_of_sixty_lines_then_a_join_sends_every_line_where_it_belongs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (_bob, bob_lines, _bob_in) = chat(&server, "bob", &[]);
    let (_carol, carol_lines, _carol_in) = chat(&server, "carol", &["--room", "b"]);
    let mut p = on_pty(&server.client("chat", "alice"));
    p.exp_string("lobby> ").unwrap();
    wait_for_line(&bob_lines, "alice joined lobby");
    // A terminal wraps a paste in ESC[200~ … ESC[201~; Enter sends it.
    let paste = format!("{}\r/join b\rx", sixty().join("\r"));
    p.send(&format!("\x1b[200~{paste}\x1b[201~\r")).unwrap();
    p.flush().unwrap();
    assert_eq!(said_in(&bob_lines, "lobby", "alice", "line 60"), sixty(), "every line, in order");
    assert_eq!(said_in(&carol_lines, "b", "alice", ": x"), ["x"], "x goes to the room joined");
    p.exp_string("b> ").unwrap();
    p.send("/quit\r").unwrap();
    p.flush().unwrap();
    p.exp_string("chat-exit=0").unwrap();
}

#[test]
fn lines_the_server_still_refuses_as_too_fast_are_sent_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Few bytes a second: chat paces messages by count (Welcome's message
    // rate), not by bytes times recipients, so the server refuses some of
    // these long lines with rate_limited and chat must send them again.
    let limits = "max_message_bytes = 17408\nbytes_burst = 17408\nbytes_per_sec = 10000\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let (_bob, bob_lines, _bob_in) = chat(&server, "bob", &[]);
    let (mut alice, alice_lines, mut alice_in) = chat(&server, "alice", &[]);
    wait_for_line(&bob_lines, "alice joined lobby");
    let lines: Vec<String> = (1..=30).map(|i| format!("{i:02} {}", "y".repeat(1000))).collect();
    alice_in.write_all(format!("{}\n", lines.join("\n")).as_bytes()).unwrap();
    assert_eq!(said_in(&bob_lines, "lobby", "alice", "30 yyy"), lines, "every line, in order");
    drop(alice_in);
    assert!(alice.wait().unwrap().success());
    let alice_saw: Vec<String> = alice_lines.try_iter().collect();
    assert!(!alice_saw.iter().any(|l| l.contains("not sent")), "{alice_saw:?}");
}

#[test]
fn chat_ends_quietly_when_its_output_is_closed() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = server
        .client("chat", "bob")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _bob_in = bob.stdin.take().unwrap();
    let mut out = BufReader::new(bob.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("in room lobby") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "chat ended before joining");
    }
    // Whoever read chat's output goes away (`cipherline chat | head`)...
    drop(out);
    // ...and something arrives to be shown.
    let (mut alice, _alice_lines, mut alice_in) = chat(&server, "alice", &[]);
    writeln!(alice_in, "are you there?").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = bob.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "chat went on with nobody reading its output");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut bob.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "chat panicked: {err}");
    assert!(status.success(), "chat ended with {status}: {err}");
    writeln!(alice_in, "/quit").unwrap();
    assert!(alice.wait().unwrap().success());
}
