//! `cipherline daemon --socket PATH` (issue 17) against a real server:
//! the socket is private (0600); every client gets the notifications and
//! only its own responses; a message that arrives while no client is
//! connected waits for the next one, and is acknowledged only then (a
//! daemon killed before that gets it again after a restart); a stale
//! socket is replaced, a live one or a regular file refused; SIGTERM
//! removes the socket; a client over the limit is refused; a client that
//! never reads its big answers keeps the daemon's memory bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

/// Starts `daemon --socket PATH` as `name` and waits until the socket
/// answers.
fn start(server: &Server, name: &str, path: &Path) -> Child {
    let mut child = server
        .client("daemon", name)
        .arg("--socket")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(path).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited early");
        assert!(Instant::now() < deadline, "the socket never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Runs `cipherline send` as `name` with `args`; asserts it was stored.
fn send(server: &Server, name: &str, args: &[&str]) {
    let out = server.client("send", name).args(args).output().unwrap();
    assert!(out.status.success(), "send failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits for a child to exit (20 s at most); its exit code.
fn exit_code(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kill -TERM`.
fn term(child: &Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// One client of the socket: lines written, every line read kept.
struct Client {
    stream: UnixStream,
    lines: Receiver<String>,
    next_id: u64,
    /// Every line read so far, parsed.
    seen: Vec<Value>,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Client { stream, lines, next_id: 0, seen: Vec::new() }
    }

    /// Connects and waits for the connection state `connected` (the first
    /// line every client gets once the daemon is connected).
    fn connected(path: &Path) -> Client {
        let mut client = Client::connect(path);
        client.wait(|v| v["method"] == "connection" && v["params"]["state"] == "connected");
        client
    }

    /// Reads until a line for which `want` holds (20 s at most).
    fn wait(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| want(v)) {
            return v.clone();
        }
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line =
                self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("nothing more in time: {:?}", self.seen));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            self.seen.push(v.clone());
            if want(&v) {
                return v;
            }
        }
    }

    /// The `message` notification with `text` (20 s at most).
    fn message(&mut self, text: &str) -> Value {
        self.wait(|v| v["method"] == "message" && v["params"]["text"] == text)["params"].clone()
    }

    /// Writes a request; its id.
    fn ask(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let line = json!({ "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params });
        self.stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.next_id
    }

    /// The response to request `id`.
    fn response(&mut self, id: u64) -> Value {
        self.wait(|v| v.get("method").is_none() && v["id"] == id)
    }
}

impl Drop for Client {
    /// Closes the connection (the reading thread's clone of it too).
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("bob.sock")
}

#[test]
fn the_socket_is_private_and_every_client_gets_notifications_and_only_its_own_responses() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let path = socket_in(dir.path());
    let mut daemon = start(&server, "bob", &path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket's mode");

    let mut one = Client::connected(&path);
    let mut two = Client::connected(&path);
    send(&server, "alice", &["--to", "bob", "hello both"]);
    let a = one.message("hello both");
    let b = two.message("hello both");
    assert_eq!(a, b);
    assert_eq!(a["from"], "alice");

    // Requests with the same id from both: each gets its own answer only.
    // (Both number from 1; `one` asks twice, so its id 2 is not `two`'s.)
    let first = one.ask("status", json!({}));
    let status = one.response(first);
    assert_eq!(status["result"]["name"], "bob", "{status}");
    let join = one.ask("join", json!({ "room": "dev" }));
    assert_eq!(one.response(join)["result"], json!({}));
    let theirs = two.ask("status", json!({}));
    assert_eq!(two.response(theirs)["result"]["rooms"], json!(["dev"]));
    // A marker after everything: `two` saw no response but its own.
    send(&server, "alice", &["--to", "bob", "marker"]);
    two.message("marker");
    let responses: Vec<&Value> = two.seen.iter().filter(|v| v.get("method").is_none()).collect();
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert!(responses[0]["result"]["rooms"].is_array(), "{responses:?}");
    one.message("marker");

    term(&daemon);
    assert_eq!(exit_code(&mut daemon), Some(0));
    assert!(!path.exists(), "the socket was not removed at SIGTERM");
}

#[test]
fn a_message_waits_for_a_client_and_is_acknowledged_only_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let path = socket_in(dir.path());
    let mut daemon = start(&server, "bob", &path);
    // bob is connected (and has published his end-to-end keys) before
    // alice writes; then nobody is connected to the socket.
    drop(Client::connected(&path));

    send(&server, "alice", &["--to", "bob", "while nobody listened"]);
    std::thread::sleep(Duration::from_secs(1));
    let mut later = Client::connected(&path);
    assert_eq!(later.message("while nobody listened")["from"], "alice");
    drop(later);
    // The daemon must have seen that client go before the next message
    // arrives: written into the socket of a client that closed it but
    // was not yet noticed, a message counts as written (docs/daemon.md),
    // and would not come again after the crash below.
    std::thread::sleep(Duration::from_secs(1));

    // This one reaches the daemon, which holds it for a client; killed
    // before one connects, the daemon never acknowledged it.
    send(&server, "alice", &["--to", "bob", "through a crash"]);
    std::thread::sleep(Duration::from_secs(2));
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(path.exists(), "SIGKILL leaves the socket behind");
    // The stale socket is replaced.
    let mut daemon = start(&server, "bob", &path);
    let mut again = Client::connected(&path);
    assert_eq!(again.message("through a crash")["from"], "alice");
    // The first one was acknowledged: it does not come again.
    send(&server, "alice", &["--to", "bob", "marker"]);
    again.message("marker");
    let old = again.seen.iter().filter(|v| v["params"]["text"] == "while nobody listened").count();
    assert_eq!(old, 0, "{:?}", again.seen);
    term(&daemon);
    assert_eq!(exit_code(&mut daemon), Some(0));
}

#[test]
fn a_regular_file_or_a_live_socket_is_refused_and_a_client_over_the_limit_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let path = socket_in(dir.path());
    let refused = |path: &Path| {
        let out = server.client("daemon", "bob").arg("--socket").arg(path).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    std::fs::write(&path, "keep me").unwrap();
    let err = refused(&path);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    std::fs::remove_file(&path).unwrap();

    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = refused(&path);
    assert!(err.contains("in use"), "{err}");
    drop(live);
    // Now stale (nobody listens): replaced.
    let mut daemon = start(&server, "bob", &path);
    let clients: Vec<Client> = (0..16).map(|_| Client::connected(&path)).collect();
    let mut extra = Client::connect(&path);
    let busy = extra.wait(|v| v.get("error").is_some());
    assert_eq!(busy["error"]["code"], -32004, "{busy}");
    drop(clients);
    term(&daemon);
    assert_eq!(exit_code(&mut daemon), Some(0));
    assert!(!path.exists());
}

#[test]
fn exactly_one_transport_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let none = server.client("daemon", "bob").stdin(Stdio::null()).output().unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", String::from_utf8_lossy(&none.stderr));
    let both = server.client("daemon", "bob").args(["--stdio", "--socket", "x.sock"]).output().unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", String::from_utf8_lossy(&both.stderr));
}

/// The resident memory of process `pid`, in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kb.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A client that asks for big answers and never reads them holds the
/// daemon to the `--stdio` bound (docs/daemon.md): 16 MiB of lines plus
/// the results of its 32 requests under way before JSON escaping (here
/// at most 16 + 32 x 2.5 MiB), not a queue of 256 answers of 6 MiB each;
/// and it is disconnected, the daemon going on for the others.
#[test]
fn a_client_that_never_reads_big_answers_stays_bounded_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("messages_per_sec = 1000\nburst = 1000\n"));
    let path = socket_in(dir.path());
    let mut daemon = start(&server, "bob", &path);
    let mut filler = Client::connected(&path);
    let join = filler.ask("join", json!({ "room": "lobby" }));
    assert_eq!(filler.response(join)["result"], json!({}));
    for i in 0..24 {
        let sent = filler.ask("send", json!({ "room": "lobby", "text": format!("{i}{}", "\u{1}".repeat(40_000)) }));
        assert!(filler.response(sent)["result"]["id"].is_u64());
    }
    drop(filler);
    let idle = rss_kb(daemon.id());
    let mut silent = UnixStream::connect(&path).unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..120 {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"history","params":{{"room":"lobby","limit":500}}}}"#);
            if writeln!(silent, "{line}").is_err() {
                return;
            }
        }
        // Kept open, never read, until the daemon gives up on it.
        std::thread::sleep(Duration::from_secs(8));
    });
    // Less than the 5 s a write may wait before the client is dropped.
    std::thread::sleep(Duration::from_secs(4));
    let stalled = rss_kb(daemon.id());
    if let (Some(idle), Some(stalled)) = (idle, stalled) {
        eprintln!("{idle} kB idle, {stalled} kB with answers held for a client that does not read");
        assert!(stalled < idle + 96 * 1024, "{stalled} kB resident with answers held ({idle} kB idle)");
    }
    // The daemon goes on for another client.
    let mut other = Client::connected(&path);
    let status = other.ask("status", json!({}));
    assert_eq!(other.response(status)["result"]["name"], "bob");
    writer.join().unwrap();
    term(&daemon);
    assert_eq!(exit_code(&mut daemon), Some(0));
}
