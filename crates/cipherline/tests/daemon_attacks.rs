//! `cipherline daemon --stdio` attacked, sentence by sentence of
//! docs/daemon.md and SECURITY.md's daemon paragraph, against a real
//! server: hostile peer texts carried exactly and JSON-escaped, request
//! ids of every JSON type, batches and notifications, params of the wrong
//! types and sizes, a flood with standard output not read (input stops
//! being read, every request answered once), answers written after
//! standard input ends, a stalled reader that blocks nobody else, and a
//! daemon killed with notifications unwritten (each notified again after
//! a restart, nothing twice, everything in the history), and a history of big messages answered in
//! pages of bounded size that lose nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::Server;
use common::daemon::Daemon;
use serde_json::{Value, json};

/// A daemon driven at the byte level: raw lines in, raw lines out, with
/// the reading of its standard output able to be held.
struct Raw {
    child: Child,
    input: Option<ChildStdin>,
    lines: Receiver<String>,
    /// While true the reader thread does not read standard output.
    hold: Arc<AtomicBool>,
}

impl Raw {
    fn start(server: &Server, name: &str, extra: &[&str]) -> Raw {
        let mut command = server.client("daemon", name);
        command.arg("--stdio").args(extra).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let mut out = BufReader::with_capacity(1024, child.stdout.take().unwrap());
        let hold = Arc::new(AtomicBool::new(false));
        let held = hold.clone();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            loop {
                while held.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut line = String::new();
                match out.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        assert!(line.ends_with('\n'), "a line cut short: {line:?}");
                        line.pop();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let input = child.stdin.take();
        Raw { child, input, lines, hold }
    }

    fn write(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(line.as_bytes()).unwrap();
        input.write_all(b"\n").unwrap();
        input.flush().unwrap();
    }

    fn request(&mut self, id: Value, method: &str, params: Value) {
        self.write(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string());
    }

    /// The next raw line, within `left`.
    fn next(&self, left: Duration) -> Option<String> {
        // Timed out, or the daemon's output ended.
        self.lines.recv_timeout(left).ok()
    }

    /// Every line until one satisfies `done` (20 s at most), that one last.
    fn until(&self, done: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next(left).unwrap_or_else(|| panic!("nothing more in time; saw {seen:?}"));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            let stop = done(&v);
            seen.push((line, v));
            if stop {
                return seen;
            }
        }
    }

    /// Every line written within `quiet` of the last one.
    fn drain(&self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(line) = self.next(quiet) {
            out.push(serde_json::from_str(&line).unwrap());
        }
        out
    }

    fn wait_connected(&self) {
        self.until(|v| v["method"] == "connection" && v["params"]["state"] == "connected");
    }

    /// The response to `id` (notifications before it are dropped).
    fn response(&self, id: &Value) -> Value {
        self.until(|v| v.get("method").is_none() && &v["id"] == id).pop().unwrap().1
    }

    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.request(json!(id), method, params);
        self.response(&json!(id))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.hold.store(false, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Texts a hostile peer sends: terminal escapes, bidi overrides, line and
/// paragraph separators, NUL, quotes, a forged JSON-RPC line, and a big one.
fn hostile_texts() -> Vec<String> {
    let mut big = String::new();
    while big.len() < 30_000 {
        big.push_str("é\u{1b}[31m\u{202e}\"\\\n\u{0}\u{7f}\u{2028}");
    }
    vec![
        "\u{1b}[2J\u{1b}]0;owned\u{7}clear".to_owned(),
        "\u{202e}txt.exe\u{2066}\u{2069}\u{200f}".to_owned(),
        "one\ntwo\r\nthree\rfour".to_owned(),
        "\u{2028}\u{2029}\u{85}\u{1c}\u{1d}\u{1e}".to_owned(),
        "quote\" back\\slash \\u0041 /".to_owned(),
        "nul\u{0}inside".to_owned(),
        "\u{feff}bom \u{fffd} \u{10ffff} 🦀".to_owned(),
        "\"}}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"id\":1,\"e2e\":true}}".to_owned(),
        big,
    ]
}

/// docs/daemon.md: "Peer strings (`from`, `text`, room names) are passed
/// on raw"; SECURITY.md: "JSON-escaped only"; "one JSON object per line".
#[test]
fn hostile_peer_texts_arrive_exact_and_json_escaped_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Raw::start(&server, "bob", &["--room", "lobby"]);
    bob.wait_connected();
    let mut alice = Daemon::start(&server, "alice", &["--room", "lobby"]);
    let texts = hostile_texts();
    for text in &texts {
        for params in [json!({ "to": "bob", "text": text }), json!({ "room": "lobby", "text": text })] {
            let answer = alice.request("send", params);
            assert!(answer["result"]["id"].is_u64(), "{answer}");
        }
    }
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.values().sum::<usize>() < 2 * texts.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = bob.next(left).unwrap_or_else(|| panic!("missing messages; got {got:?}"));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["method"] == "message" {
            *got.entry(v["params"]["text"].as_str().unwrap().to_owned()).or_default() += 1;
            lines.push(line);
        }
    }
    for text in &texts {
        assert_eq!(got.get(text), Some(&2), "{text:?} did not arrive exactly, once direct and once in the room");
    }
    for line in &lines {
        // serde escapes every control character: nothing in a line can end
        // it early or act on a terminal that shows the raw JSON.
        assert!(line.bytes().all(|b| b >= 0x20), "a raw control byte: {line:?}");
        assert!(!line.contains('\u{1b}') && !line.contains('\n') && !line.contains('\0'));
    }
    // The history gives the same texts back, exactly.
    let history = bob.call(1, "history", json!({ "user": "alice", "limit": 500 }));
    let stored: Vec<&str> =
        history["result"]["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(stored, texts.iter().map(String::as_str).collect::<Vec<_>>(), "history of alice");
}

/// JSON-RPC 2.0 ids: a string, an integer or null are echoed exactly;
/// anything else is refused with id null; a batch (an array) is refused
/// as one invalid request; a request without id is never answered.
#[test]
fn ids_of_every_json_type_batches_and_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut d = Raw::start(&server, "bot", &[]);
    d.wait_connected();
    let status = |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"status"}}"#);
    // (line, the raw id the answer must carry, whether it is an error)
    let cases: Vec<(String, &str, bool)> = vec![
        (status(r#""s-1""#), r#""s-1""#, false),
        (status(r#""\u0000\n\u202e""#), r#""\u0000\n\u202e""#, false),
        (status("7"), "7", false),
        (status("-3"), "-3", false),
        (status("0"), "0", false),
        (status("18446744073709551615"), "18446744073709551615", false),
        (status("-9223372036854775808"), "-9223372036854775808", false),
        // Numbers a reply cannot echo exactly, refused rather than changed.
        (status("18446744073709551616"), "null", true),
        (status("1.5"), "null", true),
        (status("1e3"), "null", true),
        (status("{}"), "null", true),
        (status("[1]"), "null", true),
        (status("true"), "null", true),
        // Batches are not supported: one invalid request, id null.
        (format!("[{}]", status("9")), "null", true),
        ("[]".to_owned(), "null", true),
        ("\"status\"".to_owned(), "null", true),
        ("{nope".to_owned(), "null", true),
        // Nested past any parser's depth: refused, not a stack overflow.
        ("[".repeat(100_000), "null", true),
        (format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000)), "null", true),
        // A lone surrogate is not Unicode: not JSON the daemon accepts.
        (
            r#"{"jsonrpc":"2.0","id":"sur","method":"send","params":{"to":"x","text":"\ud800"}}"#.to_owned(),
            "null",
            true,
        ),
    ];
    for (line, _, _) in &cases {
        d.write(line);
    }
    // Notifications (no id): never answered, whatever they hold.
    for line in [
        r#"{"jsonrpc":"2.0","method":"status"}"#,
        r#"{"jsonrpc":"2.0","method":"fly"}"#,
        r#"{"jsonrpc":"2.0","method":"send","params":{"to":"nobody"}}"#,
        r#"{"jsonrpc":"2.0","method":"history","params":[1]}"#,
    ] {
        d.write(line);
    }
    d.write(&status(r#""end""#));
    let mut answers: Vec<(String, Value)> = d.until(|v| v["id"] == "end");
    answers.extend(d.drain(Duration::from_millis(1500)).into_iter().map(|v| (v.to_string(), v)));
    let answers: Vec<(String, Value)> = answers.into_iter().filter(|(_, v)| v.get("method").is_none()).collect();
    assert_eq!(
        answers.len(),
        cases.len() + 1,
        "one answer per request with an id, none for notifications: {answers:?}"
    );
    // A number as its exact text, anything else as serde writes it.
    let canonical = |raw: &str| -> String {
        let v: Value = serde_json::from_str(raw).unwrap();
        if v.is_number() { raw.to_owned() } else { v.to_string() }
    };
    let mut want: Vec<(String, bool)> = cases.iter().map(|(_, id, err)| (canonical(id), *err)).collect();
    want.push((r#""end""#.to_owned(), false));
    // The raw text of each answer's id (exactly as written).
    let mut have: Vec<(String, bool)> = answers
        .iter()
        .map(|(line, v)| {
            let start = line.find("\"id\":").unwrap() + 5;
            let rest = &line[start..];
            let raw = serde_json::Deserializer::from_str(rest).into_iter::<Value>().next().unwrap().unwrap();
            let raw_text = if raw.is_number() { canonical(&rest[..raw.to_string().len()]) } else { raw.to_string() };
            (raw_text, v.get("error").is_some())
        })
        .collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    for (_, v) in &answers {
        if let Some(code) = v.pointer("/error/code") {
            assert!([-32700, -32600].contains(&code.as_i64().unwrap()), "{v}");
        }
    }
}

/// Params of wrong types and sizes are refused with -32602 (the daemon
/// goes on); things never had are answered, not failed or hung.
#[test]
fn bad_params_are_refused_and_nothing_never_had_is_invented() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut d = Raw::start(&server, "bot", &["--room", "lobby"]);
    d.wait_connected();
    let users: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    let invalid = [
        ("history", json!({ "room": "lobby", "limit": 1_000_000_000u64 })),
        ("history", json!({ "room": "lobby", "limit": u64::MAX })),
        ("history", json!({ "room": "lobby", "limit": -1 })),
        ("history", json!({ "room": "lobby", "limit": 2.5 })),
        ("history", json!({ "room": "lobby", "limit": "10" })),
        ("history", json!({ "room": "lobby", "limit": 0 })),
        ("history", json!({ "room": "lobby", "before": "123" })),
        ("history", json!({ "room": "lobby", "before": -5 })),
        ("history", json!({ "room": "lobby", "before": 1.5 })),
        ("history", json!({ "room": 5 })),
        ("history", json!({})),
        ("history", json!([{ "room": "lobby" }])),
        ("history", json!("lobby")),
        ("send", json!({ "to": null, "text": "x" })),
        ("send", json!({ "to": "bob", "text": "" })),
        ("send", json!({ "to": "bob", "text": ["x"] })),
        ("invite", json!({ "room": "r", "users": users })),
        ("invite", json!({ "room": "r", "users": "alice" })),
        ("kick", json!({ "room": "r", "users": [] })),
        ("kick", json!({ "room": "r", "users": [1] })),
        ("verify", json!({ "user": "alice", "confirm": "true" })),
        ("verify", json!({ "user": "alice", "confirm": 1 })),
        ("create", json!({ "room": "r", "kind": 1 })),
    ];
    let mut id = 0;
    for (method, params) in &invalid {
        id += 1;
        let answer = d.call(id, method, params.clone());
        assert_eq!(answer["error"]["code"], -32602, "{method} {params}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.len() < 200, "an error message echoing the input: {message}");
    }
    // Unknown fields are ignored.
    id += 1;
    let answer = d.call(id, "status", json!({ "verbose": true, "x": [1, 2] }));
    assert_eq!(answer["result"]["name"], "bot", "{answer}");
    // History of a conversation never had: empty, for a room and a user,
    // and with a `before` that was never an id.
    for params in [
        json!({ "user": "never-met", "limit": 500 }),
        json!({ "room": "nowhere" }),
        json!({ "room": "lobby", "before": u64::MAX }),
        json!({ "user": "\u{202e}\u{0}", "before": 0 }),
    ] {
        id += 1;
        let answer = d.call(id, "history", params.clone());
        assert_eq!(answer["result"], json!({ "messages": [] }), "{params}: {answer}");
    }
    // A confirmation without the code asked for first is refused, and so
    // is trusting a key that never changed.
    id += 1;
    let answer = d.call(id, "verify", json!({ "user": "alice", "confirm": true }));
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    id += 1;
    let answer = d.call(id, "trust", json!({ "user": "alice" }));
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    id += 1;
    let answer = d.call(id, "contacts", json!({}));
    assert_eq!(answer["result"], json!({ "contacts": [] }), "nothing was verified or trusted: {answer}");
    // A name far beyond any the server allows: an error, not a crash.
    let long = "n".repeat(10_000);
    for method in ["whois", "verify", "trust"] {
        id += 1;
        let answer = d.call(id, method, json!({ "user": long }));
        assert!(answer.get("error").is_some(), "{method}: {answer}");
        assert!(answer.to_string().len() < 1000, "{method}: the error echoes the input");
    }
    // A line over 1 MiB: refused with id null, and the daemon goes on.
    d.write(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"send","params":{{"to":"a","text":"{}"}}}}"#,
        "x".repeat(1 << 20)
    ));
    let answer = d.response(&Value::Null);
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    id += 1;
    let answer = d.call(id, "status", json!({}));
    assert_eq!(answer["result"]["connected"], true, "{answer}");
}

/// "at most 32 requests run at once" and "a slow reader slows the daemon,
/// it does not grow its memory": with standard output not read, the
/// daemon stops reading standard input; once read again, every request is
/// answered exactly once.
#[test]
fn a_flood_with_output_unread_stops_input_and_every_request_is_answered_once() {
    const FLOOD: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("messages_per_sec = 1000\nburst = 1000\n"));
    let mut d = Raw::start(&server, "bot", &[]);
    d.wait_connected();
    d.hold.store(true, Ordering::SeqCst);
    let written = Arc::new(AtomicUsize::new(0));
    let mut input = d.input.take().unwrap();
    let count = written.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..FLOOD {
            // Slow ones (a server round trip) among quick ones.
            let method = if i % 100 == 0 { r#""whois","params":{"user":"nobody"}"# } else { r#""status""# };
            let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":{method}}}\n");
            if input.write_all(line.as_bytes()).is_err() {
                return;
            }
            count.fetch_add(1, Ordering::SeqCst);
        }
        let _ = input.flush();
        drop(input);
    });
    // Wait until the writer stops making progress.
    let mut last = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = written.load(Ordering::SeqCst);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let stalled_at = written.load(Ordering::SeqCst);
    assert!(stalled_at < FLOOD / 2, "the daemon read {stalled_at} requests with nobody reading its answers");
    let rss = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap_or_default();
    if let Some(kb) = rss.lines().find_map(|l| l.strip_prefix("VmRSS:")) {
        let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap();
        assert!(kb < 256 * 1024, "{kb} kB resident while stalled");
    }
    d.hold.store(false, Ordering::SeqCst);
    let mut answered = vec![0u8; FLOOD];
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen < FLOOD {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = d.next(left).unwrap_or_else(|| panic!("only {seen} of {FLOOD} answered"));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.get("method").is_some() {
            continue;
        }
        let i = usize::try_from(v["id"].as_u64().unwrap()).unwrap();
        answered[i] += 1;
        seen += 1;
        if i % 100 == 0 {
            assert!(v.get("error").is_some(), "whois of nobody: {v}");
        } else {
            assert_eq!(v["result"]["name"], "bot", "{v}");
        }
    }
    writer.join().unwrap();
    assert!(answered.iter().all(|&n| n == 1), "a request answered twice");
    assert!(d.drain(Duration::from_millis(500)).iter().all(|v| v.get("method").is_some()), "extra answers");
}

/// "The daemon runs until standard input ends": requests written just
/// before the end are still answered, then it exits 0.
#[test]
fn requests_written_just_before_input_ends_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut d = Raw::start(&server, "bot", &["--room", "lobby"]);
    d.wait_connected();
    for i in 0..20 {
        d.request(json!(i), "send", json!({ "room": "lobby", "text": format!("last words {i}") }));
    }
    d.request(json!(20), "history", json!({ "room": "lobby" }));
    // The last one without its newline: still a line.
    d.input.as_mut().unwrap().write_all(br#"{"jsonrpc":"2.0","id":21,"method":"status"}"#).unwrap();
    drop(d.input.take());
    let mut ids = BTreeSet::new();
    while let Some(line) = d.next(Duration::from_secs(20)) {
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.get("method").is_none() {
            assert!(v.get("result").is_some(), "{v}");
            assert!(ids.insert(v["id"].as_u64().unwrap()), "answered twice: {v}");
        }
    }
    assert_eq!(ids, (0..=21).collect(), "every request answered before the exit");
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A daemon whose standard output is not read blocks nobody else; killed
/// then with notifications unwritten, it notifies after a restart every
/// message whose notification never reached standard output (docs/daemon.md:
/// "acknowledged ... once its notification was written"), none twice, and
/// every message is in its history.
#[test]
fn a_stalled_then_killed_daemon_blocks_nobody_and_notifies_every_message_once() {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("messages_per_sec = 1000\nburst = 1000\n"));
    let mut bob = Raw::start(&server, "bob", &[]);
    bob.wait_connected();
    let mut alice = Daemon::start(&server, "alice", &[]);
    // First contact, so the rest goes end to end quickly.
    let first = alice.request("send", json!({ "to": "bob", "text": "m0" }));
    assert!(first["result"]["id"].is_u64(), "{first}");
    bob.until(|v| v["params"]["text"] == "m0");
    bob.hold.store(true, Ordering::SeqCst);
    let pad = "p".repeat(6000);
    let mut sent = BTreeMap::new();
    for i in 1..N {
        // Sending is never held up by bob's stalled reader.
        let answer = alice.request("send", json!({ "to": "bob", "text": format!("m{i} {pad}") }));
        sent.insert(answer["result"]["id"].as_u64().unwrap_or_else(|| panic!("{answer}")), i);
    }
    // bob's engine takes them (into its queues) meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    bob.child.kill().unwrap();
    bob.child.wait().unwrap();
    bob.hold.store(false, Ordering::SeqCst);
    let notified = |lines: &[Value]| -> Vec<u64> {
        lines.iter().filter(|v| v["method"] == "message").map(|v| v["params"]["id"].as_u64().unwrap()).collect()
    };
    let before = notified(&bob.drain(Duration::from_secs(2)));
    drop(bob);

    let mut again = Raw::start(&server, "bob", &[]);
    again.wait_connected();
    // What was not yet taken before the kill comes now: ask the history
    // until it holds everything (a slow machine), keeping notifications.
    let mut after = notified(&again.drain(Duration::from_secs(2)));
    let mut stored = BTreeSet::new();
    for call in 1..=40u64 {
        again.request(json!(call), "history", json!({ "user": "alice", "limit": 500 }));
        let lines = again.until(|v| v.get("method").is_none() && v["id"] == call);
        let values: Vec<Value> = lines.into_iter().map(|(_, v)| v).collect();
        after.extend(notified(&values));
        let messages = values.last().unwrap()["result"]["messages"].as_array().unwrap().clone();
        stored = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
        if sent.keys().all(|id| stored.contains(id)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    after.extend(notified(&again.drain(Duration::from_secs(1))));
    let mut all: Vec<u64> = before.iter().chain(&after).copied().filter(|id| sent.contains_key(id)).collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "a message notified twice: before {before:?}, after {after:?}");
    // Whatever was not notified is in the history: nothing is lost.
    for id in sent.keys() {
        assert!(stored.contains(id), "message {} is neither notified again nor in the history", sent[id]);
    }
    // The reader stalled for real: most notifications never reached
    // standard output before the kill.
    assert!(before.len() < N / 2, "{} of {} written before the kill: nothing was held back", before.len(), N - 1);
    // Every message whose notification was not written before the kill is
    // notified after the restart: none is only in the history.
    let lost: Vec<usize> =
        sent.iter().filter(|(id, _)| !before.contains(id) && !after.contains(id)).map(|(_, i)| *i).collect();
    eprintln!("{} notified before the kill, {} after the restart", before.len(), after.len());
    assert!(lost.is_empty(), "messages never notified (only in the history): {lost:?}");
}

/// "At most `limit` ... and at most 1 MiB of text": a history of big
/// messages is answered in pages of bounded size, the newest first kept,
/// and paging back with `before` gives every message exactly once.
#[test]
fn a_history_of_big_messages_is_answered_in_bounded_pages_losing_nothing() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("messages_per_sec = 1000\nburst = 1000\n"));
    let mut d = Raw::start(&server, "bot", &["--room", "lobby"]);
    d.wait_connected();
    let mut sent = Vec::new();
    for i in 0..N {
        let text = format!("{i:02}{}", "b".repeat(40_000));
        let answer = d.call(u64::try_from(i).unwrap(), "send", json!({ "room": "lobby", "text": text }));
        sent.push(answer["result"]["id"].as_u64().unwrap_or_else(|| panic!("{answer}")));
    }
    let mut pages = Vec::new();
    let mut before = Value::Null;
    for call in 100.. {
        let answer = d.call(call, "history", json!({ "room": "lobby", "limit": 500, "before": before }));
        let page: Vec<u64> =
            answer["result"]["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
        let bytes: usize =
            answer["result"]["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().len()).sum();
        assert!(bytes <= 1 << 20, "a page of {bytes} bytes of text");
        let Some(&oldest) = page.first() else { break };
        before = json!(oldest);
        pages.push(page);
        assert!(call < 110, "paging does not end: {pages:?}");
    }
    assert!(pages.len() > 1, "{N} messages of 40 kB fit one answer: {pages:?}");
    assert_eq!(pages[0].last(), sent.last(), "the first page ends with the newest");
    let all: Vec<u64> = pages.into_iter().rev().flatten().collect();
    assert_eq!(all, sent, "every message once, in order");
}

/// The resident memory of process `pid`, in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kb.trim().trim_end_matches("kB").trim().parse().ok()
}

/// "a slow reader slows the daemon, it does not grow its memory", with
/// big answers: many `history` requests of a mebibyte of text each (six
/// as JSON), standard output not read. docs/daemon.md's bound: 16 MiB of
/// lines (a response counted from the moment it is built, and not built
/// until it fits) plus the results of the 32 requests under way before
/// JSON escaping, about 1 MiB of text each: here at most 16 + 32 x 2.5
/// MiB. (Answers built before they were counted held 32 x 6 MiB more.)
#[test]
fn big_answers_to_a_reader_that_stopped_reading_stay_bounded_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick_with_limits(dir.path(), Some("messages_per_sec = 1000\nburst = 1000\n"));
    let mut d = Raw::start(&server, "bot", &["--room", "lobby"]);
    d.wait_connected();
    for i in 0..24 {
        let answer = d.call(i, "send", json!({ "room": "lobby", "text": format!("{i}{}", "\u{1}".repeat(40_000)) }));
        assert!(answer["result"]["id"].is_u64(), "{answer}");
    }
    let idle = rss_kb(d.child.id());
    d.hold.store(true, Ordering::SeqCst);
    let mut input = d.input.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..120 {
            let line =
                format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"history","params":{{"room":"lobby","limit":500}}}}"#);
            if writeln!(input, "{line}").is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(4));
    let stalled = rss_kb(d.child.id());
    if let (Some(idle), Some(stalled)) = (idle, stalled) {
        eprintln!("{idle} kB idle, {stalled} kB with answers held");
        assert!(stalled < idle + 96 * 1024, "{stalled} kB resident with answers held ({idle} kB idle)");
    }
    d.hold.store(false, Ordering::SeqCst);
    let mut answered = 0;
    while answered < 120 {
        let line = d.next(Duration::from_secs(30)).unwrap_or_else(|| panic!("{answered} of 120 answered"));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.get("method").is_none() {
            assert_eq!(v["result"]["messages"].as_array().map(Vec::len), Some(24), "{}", &line[..200]);
            answered += 1;
        }
    }
    writer.join().unwrap();
}
