//! Helpers of the end-to-end file tests: `cipherline files`, publishing
//! key packages, JSON lines, and a running client read line by line.

use std::process::{Child, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Server, bin, home_of, line_channel, succeeded};

/// `[limits]` lines for a relay that a test reaches through many short
/// connections from 127.0.0.1 (each `send --file` opens two): the per-address
/// connection rate and count would otherwise refuse some, depending on
/// timing.
pub const MANY_CONNECTIONS: &str =
    "new_connections_per_ip_per_sec = 1000\nnew_connections_burst_per_ip = 1000\nmax_sessions_per_ip = 1000\n";

/// `cipherline files SUB ARGS...` as `name`.
pub fn files(server: &Server, name: &str, sub: &str, args: &[&str]) -> Output {
    bin()
        .env("CIPHERLINE_HOME", home_of(server, name))
        .args(["files", sub, "--server", &server.addr, "--name", name])
        .args(["--server-fingerprint", &server.fingerprint])
        .args(args)
        .output()
        .unwrap()
}

/// A client runs once, so the server holds its key packages. Retried with
/// a longer run when the machine is too busy (the 1 GiB test runs beside
/// the others) for `listen` to connect within the first.
pub fn publish(server: &Server, name: &str) {
    for secs in ["1", "5"] {
        if server.client("listen", name).args(["--timeout", secs]).output().unwrap().status.success() {
            return;
        }
    }
    succeeded(&server.client("listen", name).args(["--timeout", "20"]).output().unwrap());
}

/// The JSON objects among `text`'s lines.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The objects of `lines` whose `event` is `event`.
pub fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

/// A running client whose stdout lines are read as they come; killed when
/// dropped.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    /// The JSON lines read so far.
    pub seen: Vec<Value>,
}

impl Running {
    pub fn start(mut command: std::process::Command) -> Running {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let lines = line_channel(&mut child);
        Running { child, lines, seen: Vec::new() }
    }

    /// Reads one line if one comes within 100 ms.
    fn read(&mut self) -> Option<Value> {
        let line = self.lines.recv_timeout(Duration::from_millis(100)).ok()?;
        let v = serde_json::from_str::<Value>(&line).ok()?;
        self.seen.push(v.clone());
        Some(v)
    }

    /// Waits (up to `limit`) for a JSON line `accept` takes.
    pub fn wait(&mut self, limit: Duration, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(v) = self.read()
                && accept(&v)
            {
                return v;
            }
        }
        panic!("no such line within {limit:?}; saw {:?}", self.seen);
    }

    /// Waits (up to `limit`) until `done` holds for the lines seen.
    pub fn until(&mut self, limit: Duration, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            assert!(Instant::now() < deadline, "not within {limit:?}; saw {:?}", self.seen);
            self.read();
        }
    }

    /// Reads what comes for `length`.
    pub fn for_a_while(&mut self, length: Duration) {
        let end = Instant::now() + length;
        while Instant::now() < end {
            self.read();
        }
    }

    /// SIGKILL, no goodbye (as in a crash); returns the lines seen.
    pub fn kill(mut self) -> Vec<Value> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
