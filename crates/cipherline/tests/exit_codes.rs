//! README.md's table of exit codes, checked against the real binary: one
//! test per reachable code, for every subcommand where the code can
//! happen, and `send`'s pacing (issue 13, items 5 and 6).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write as _;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Waits until `name` is connected (and in the lobby: `listen` joins
/// before it reads): a direct message to it is refused as `unknown_user`
/// until then. The one that gets through arrives as a message, first.
fn wait_until_connected(server: &Server, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = server.client("send", "probe").args(["--to", name, "ready?"]).output().unwrap();
        if out.status.success() {
            return;
        }
        assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{name} did not connect within 30 s");
}

/// Runs a command and returns its output, stdin closed.
fn run(command: &mut std::process::Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `listen --json` client that has connected; the probe message is read.
fn listener(server: &Server, name: &str, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = server
        .client("listen", name)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(&mut child);
    wait_until_connected(server, name);
    let probe = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(probe.contains("ready?"), "{probe}");
    (child, lines)
}

/// The issue's `seq 1 100 | cipherline send`: with the default limits (20
/// messages per second, bursts of 40) the old `send` delivered 39 lines
/// and exited 5. All 100 must arrive, in order, and `send` exit 0.
#[test]
fn send_paces_a_long_pipe_to_the_servers_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut listen, lines) = listener(&server, "bob", &["--count", "101", "--timeout", "120"]);

    let mut send = server.client("send", "alice").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let numbers: String = (1..=100).map(|n| format!("{n}\n")).collect();
    send.stdin.take().unwrap().write_all(numbers.as_bytes()).unwrap();
    let out = send.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let mut got = Vec::new();
    for _ in 0..100 {
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["from"], "alice");
        got.push(v["text"].as_str().unwrap().to_owned());
    }
    let want: Vec<String> = (1..=100).map(|n| n.to_string()).collect();
    assert_eq!(got, want, "every line, once, in order");
    assert_eq!(listen.wait().unwrap().code(), Some(0));
}

/// The pacer does not model the server's second bucket (bytes times
/// recipients, which depends on a room's audience), so the server can
/// still say `rate_limited`: `send` waits and sends that same line again.
/// With 17,408 bytes of burst and 20,000 bytes a second of relay work,
/// only two 8,000-byte lines fit at once; the old `send` stopped at the
/// third with exit 5.
#[test]
fn send_retries_a_line_refused_as_too_fast() {
    let dir = tempfile::tempdir().unwrap();
    let limits = "max_message_bytes = 17408\nbytes_burst = 17408\nbytes_per_sec = 20000\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let (mut listen, lines) = listener(&server, "bob", &["--count", "7", "--timeout", "120"]);

    let mut send = server
        .client("send", "alice")
        .args(["--to", "bob"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = (1..=6).map(|n| format!("{n}{}\n", "x".repeat(8_000))).collect();
    send.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = send.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for n in 1..=6 {
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["text"].as_str().unwrap().starts_with(&format!("{n}x")), "line {n} in order");
    }
    assert_eq!(listen.wait().unwrap().code(), Some(0));
}

/// A line the server refuses (here: longer than its 64 KiB limit) is
/// named by its number, with how many lines before it were delivered.
#[test]
fn send_names_the_line_that_was_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut send = server.client("send", "alice").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let input = format!("one\n\ntwo\n{}\nfive\n", "x".repeat(70_000));
    send.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = send.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "the server refused it: {err}");
    assert!(
        err.contains("line 4 of standard input was not delivered (every line before it with text was delivered)"),
        "{err}"
    );
}

/// 2: a command line clap rejects, in every subcommand, and a value that
/// makes no sense.
#[test]
fn usage_errors_exit_2_in_every_subcommand() {
    for sub in
        [&["chat"][..], &["send"], &["listen"], &["serve"], &["keygen"], &["fingerprint"], &["known-servers", "list"]]
    {
        let out = run(bin().args(sub).arg("--no-such-flag"));
        assert_eq!(out.status.code(), Some(2), "{sub:?}: {}", stderr(&out));
    }
    let out = run(bin().args(["listen", "--accept-files", "/nonexistent/cipherline-test-dir"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// 1: anything else, e.g. a key file that does not exist.
#[test]
fn other_failures_exit_1() {
    let out = run(bin().args(["fingerprint", "/nonexistent/cipherline-test-key"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// 3 (the server's key is not trusted) and 4 (unreachable) from each
/// client subcommand.
#[test]
fn untrusted_and_unreachable_exit_3_and_4_in_every_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let home = temp_home(dir.path());
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    for sub in ["chat", "send", "listen"] {
        let out = run(bin()
            .args([sub, "--server", &server.addr, "--name", "eve", "--server-fingerprint", wrong])
            .env("CIPHERLINE_HOME", &home));
        assert_eq!(out.status.code(), Some(3), "{sub}: {}", stderr(&out));
        let out =
            run(bin().args([sub, "--server", &free, "--name", "eve", "--accept-new"]).env("CIPHERLINE_HOME", &home));
        assert_eq!(out.status.code(), Some(4), "{sub}: {}", stderr(&out));
    }
}

/// 5 (the server refused) and 6 (the name is taken, from every client).
#[test]
fn refused_exits_5_and_name_taken_exits_6() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let out = run(server.client("send", "alice").args(["--to", "nobody", "hello?"]));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    let (mut bob, _lines) = listener(&server, "bob", &["--timeout", "120"]);
    for sub in ["chat", "send", "listen"] {
        // Without an identity key: the same key may open another session
        // of its name (PROTOCOL.md §13.4); anyone else is refused.
        let mut command = server.client(sub, "bob");
        command.arg("--no-identity");
        if sub == "send" {
            command.arg("hi");
        }
        let out = run(&mut command);
        assert_eq!(out.status.code(), Some(6), "{sub}: {}", stderr(&out));
        assert!(stderr(&out).contains("--name"), "{sub}: the hint names the flag");
    }
    bob.kill().unwrap();
    bob.wait().unwrap();
}

/// 8: `send --wait-delivered` exits 0 once the recipient's client has
/// confirmed the message, and 8 when the recipient is offline: stored (and
/// delivered later), but not confirmed in time.
#[test]
fn send_wait_delivered_exits_0_when_confirmed_and_8_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let (mut bob, lines) = listener(&server, "bob", &["--timeout", "120"]);
    let out = run(server.client("send", "alice").args(["--to", "bob", "--wait-delivered", "30", "confirmed?"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(got.contains("confirmed?"), "{got}");
    bob.kill().unwrap();
    bob.wait().unwrap();

    let out = run(server.client("send", "alice").args(["--to", "bob", "--wait-delivered", "1", "later"]));
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("not confirmed"), "{}", stderr(&out));
    // Stored all the same: bob's next listen gets it.
    let out = run(server.client("listen", "bob").args(["--count", "1", "--timeout", "30"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice -> you: later"));
}

/// 7: `listen --timeout` ran out before `--count` messages (the old code
/// exited 1).
#[test]
fn listen_timeout_before_count_exits_7() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let out = run(server.client("listen", "bob").args(["--count", "2", "--timeout", "1"]));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("only 0 of 2 messages arrived"), "{}", stderr(&out));
}

/// 7, and --timeout bounds the whole run: `listen --reconnect --timeout 4`
/// with no server used to keep retrying (1, 2, 4 s pauses) well past the
/// 4 s and then exit with code 1; now it stops when the 4 s are up. The
/// bound is generous: it checks that the pauses stop at the deadline, not
/// how fast anything is.
#[test]
fn listen_reconnect_timeout_bounds_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let home = temp_home(dir.path());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = run(bin()
        .args(["listen", "--server", &free, "--name", "bob", "--accept-new", "--reconnect", "--timeout", "4"])
        .env("CIPHERLINE_HOME", &home));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(took < Duration::from_millis(6500), "ran {took:?} with --timeout 4");
    assert!(stderr(&out).contains("--timeout 4 s ran out"), "{}", stderr(&out));
}

/// 7 after a lost connection: the server goes away while `listen
/// --reconnect --count 2 --timeout 6` waits; the count is not reached and
/// the reconnection pauses stop at the deadline.
#[test]
fn listen_reconnect_after_a_lost_server_stops_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let started = Instant::now();
    let (bob, _lines) = listener(&server, "bob", &["--count", "3", "--reconnect", "--timeout", "6"]);
    server.stop();
    let out = bob.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(7));
    assert!(took < Duration::from_secs(30), "ran {took:?} with --timeout 6");
}

/// README.md's table, `cipherline --help` and the codes the tests above
/// check are the same list: one row per code 0 to 8 in each.
#[test]
fn readme_and_help_list_the_same_exit_codes() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let table = readme.split("## Exit codes").nth(1).expect("README has an Exit codes section");
    let table = table.split("\n## ").next().unwrap();
    let rows: Vec<u8> =
        table.lines().filter_map(|l| l.strip_prefix("| ")).filter_map(|l| l.split(' ').next()?.parse().ok()).collect();
    assert_eq!(rows, (0..=8).collect::<Vec<u8>>(), "README rows");

    let out = run(bin().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<u8> = help
        .split("Exit codes")
        .nth(1)
        .expect("--help lists the exit codes")
        .lines()
        .filter_map(|l| l.trim_start().split("  ").next()?.parse().ok())
        .collect();
    assert_eq!(listed, rows, "--help rows: {help}");
}
