//! The example bot (examples/bot.py, issue 17) against a real server: it
//! answers a direct message and a room message, its commands, and never
//! its own messages nor replies of its kind; once over a daemon it starts
//! (`--stdio`), once over a daemon's socket. It needs python3 on PATH:
//! without it the test fails (CI installs it), it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::Server;
use common::daemon::Daemon;
use serde_json::json;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/bot.py")
}

/// `python3 examples/bot.py BOT_ARGS`, with the environment of `like`
/// (the client's data directory), its standard error read as lines.
fn bot(like: &Command, bot_args: &[std::ffi::OsString]) -> (Child, Receiver<String>) {
    let mut command = Command::new("python3");
    command.arg(script()).args(bot_args);
    for (key, value) in like.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("python3 is needed for this test: {e}"));
    // The bot's log is on standard error: read it as lines.
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a log line containing `needle` (20 s at most).
fn wait_log(lines: &Receiver<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains(needle) {
            return;
        }
        seen.push(line);
    }
    panic!("the bot never said {needle:?}: {seen:?}");
}

/// Ends the bot with SIGINT; it must exit cleanly.
fn interrupt(mut child: Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the bot did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// The texts alice received from the bot, in order.
fn from_bot(alice: &Daemon) -> Vec<String> {
    alice
        .notifications
        .iter()
        .filter(|n| n["method"] == "message" && n["params"]["from"] == "echobot")
        .map(|n| n["params"]["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_bot_answers_direct_and_room_messages_over_a_daemon_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let daemon = server.client("daemon", "echobot");
    // The daemon's flags (server, name, pinned key) after `--`.
    let mut args: Vec<std::ffi::OsString> = vec!["--cipherline".into(), env!("CARGO_BIN_EXE_cipherline").into()];
    args.push("--".into());
    args.extend(daemon.get_args().skip(1).map(ToOwned::to_owned));
    args.extend(["--room".into(), "lobby".into()]);
    let (child, log) = bot(&daemon, &args);
    wait_log(&log, "connected as 'echobot'");

    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let sent = alice.request("send", json!({ "to": "echobot", "text": "hello bot" }));
    assert!(sent["result"]["id"].is_u64(), "{sent}");
    let reply = alice.wait_for("message", |p| p["from"] == "echobot" && p["text"] == "echo: hello bot");
    assert_eq!(reply["to"], "alice", "a direct answer: {reply}");

    alice.request("send", json!({ "room": "lobby", "text": "hello room" }));
    let reply = alice.wait_for("message", |p| p["from"] == "echobot" && p["room"] == "lobby");
    assert_eq!(reply["text"], "echo: hello room");

    // A command, and a text like one of its replies (left unanswered).
    alice.request("send", json!({ "to": "echobot", "text": "echo: are you a bot?" }));
    alice.request("send", json!({ "to": "echobot", "text": "!help" }));
    let help = alice.wait_for("message", |p| p["from"] == "echobot" && p["text"].as_str().unwrap().contains("!time"));
    assert!(help["text"].as_str().unwrap().starts_with("bot: "), "{help}");
    // A marker last: by its answer, everything before it was answered.
    alice.request("send", json!({ "room": "lobby", "text": "marker" }));
    alice.wait_for("message", |p| p["from"] == "echobot" && p["text"] == "echo: marker");
    let texts = from_bot(&alice);
    // Its own room messages came back to it and were not answered.
    assert!(!texts.iter().any(|t| t.starts_with("echo: echo:")), "{texts:?}");
    assert_eq!(texts.len(), 4, "one answer each, nothing for the reply-like text: {texts:?}");
    interrupt(child);
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn the_bot_answers_over_a_daemon_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let path = dir.path().join("echobot.sock");
    let mut daemon = server.client("daemon", "echobot");
    daemon.arg("--socket").arg(&path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut running = daemon.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        assert!(Instant::now() < deadline, "the daemon's socket never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let args: Vec<std::ffi::OsString> = vec!["--socket".into(), path.clone().into(), "--join".into(), "lobby".into()];
    let (child, log) = bot(&daemon, &args);
    wait_log(&log, "connected as 'echobot'");

    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    alice.request("send", json!({ "to": "echobot", "text": "over the socket" }));
    alice.wait_for("message", |p| p["from"] == "echobot" && p["text"] == "echo: over the socket");
    alice.request("send", json!({ "room": "lobby", "text": "room too" }));
    alice.wait_for("message", |p| p["from"] == "echobot" && p["text"] == "echo: room too");
    interrupt(child);
    assert!(running.try_wait().unwrap().is_none(), "the daemon outlives its client");
    let _ = running.kill();
    let _ = running.wait();
    assert_eq!(alice.finish(), Some(0));
}
