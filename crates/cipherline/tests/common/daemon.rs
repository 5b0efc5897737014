//! A `cipherline daemon --stdio` driven over its pipes: requests written,
//! responses and notifications read as JSON lines.

use std::io::Write as _;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, line_channel};

/// A running daemon and every notification it wrote so far.
pub struct Daemon {
    child: Child,
    input: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
    /// Notifications read so far (responses are returned by `request`).
    pub notifications: Vec<Value>,
}

impl Daemon {
    /// Starts `daemon --stdio` as `name` with `extra` flags and waits until
    /// it is connected.
    pub fn start(server: &Server, name: &str, extra: &[&str]) -> Daemon {
        let mut command = server.client("daemon", name);
        command.arg("--stdio").args(extra).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let lines = line_channel(&mut child);
        let input = child.stdin.take();
        let mut daemon = Daemon { child, input, lines, next_id: 0, notifications: Vec::new() };
        daemon.wait_for("connection", |p| p["state"] == "connected");
        daemon
    }

    /// Writes one raw line.
    pub fn write_line(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(line.as_bytes()).unwrap();
        input.write_all(b"\n").unwrap();
        input.flush().unwrap();
    }

    /// The next line the daemon writes, parsed (within 20 s).
    fn next(&mut self, until: Instant) -> Value {
        let left = until.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!("the daemon wrote nothing more in time; notifications: {:?}", self.notifications)
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
    }

    /// Reads until the response with `id` (notifications are kept).
    pub fn response(&mut self, id: &Value) -> Value {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.next(until);
            assert_eq!(v["jsonrpc"], "2.0", "{v}");
            if v.get("method").is_some() {
                self.notifications.push(v);
            } else if &v["id"] == id {
                return v;
            } else {
                panic!("a response to another id: {v}");
            }
        }
    }

    /// Sends a request and returns its whole response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        let line = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string();
        self.write_line(&line);
        self.response(&id)
    }

    /// The params of the first notification `method` (seen already or
    /// coming within 20 s) for which `want` holds.
    pub fn wait_for(&mut self, method: &str, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(n) = self.notifications.iter().find(|n| n["method"] == method && want(&n["params"])) {
            return n["params"].clone();
        }
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.next(until);
            let hit = v["method"] == method && want(&v["params"]);
            self.notifications.push(v.clone());
            if hit {
                return v["params"].clone();
            }
        }
    }

    /// The `message` notifications whose text is `text`.
    pub fn messages_with(&self, text: &str) -> usize {
        self.notifications.iter().filter(|n| n["method"] == "message" && n["params"]["text"] == text).count()
    }

    /// Closes standard input and returns the exit code.
    pub fn finish(mut self) -> Option<i32> {
        drop(self.input.take());
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < until, "the daemon did not exit after its input ended");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
