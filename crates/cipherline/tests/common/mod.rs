//! Running the real `cipherline` binary: a server on a free loopback port,
//! and client commands against it.
#![allow(dead_code)]

pub mod daemon;
pub mod offers;
pub mod transfers;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `cipherline serve` process and what its banner said.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub fingerprint: String,
    pub lines: Vec<String>,
    /// The arguments it was started with (for [`Server::restart`]).
    args: Vec<String>,
    /// Names this server's client data directories ([`home_of`]): unique in
    /// the test process, unlike the port, which a parallel test may take
    /// while this server is down for a restart.
    serial: u64,
}

/// The next [`Server::serial`].
static SERIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The binary, with a data directory private to this test process (so
/// tests never touch the real per-user one); a test may override it.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cipherline"));
    let home = std::env::temp_dir().join(format!("cipherline-test-home-{}", std::process::id()));
    c.env("CIPHERLINE_HOME", home).env_remove("RUST_LOG").env_remove("CIPHERLINE_PASSWORD");
    c
}

impl Server {
    /// Starts `cipherline serve ARGS` and reads the banner.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, |_| {})
    }

    /// Like [`Server::start`], with the command adjusted first (its
    /// environment, where its standard error goes: null by default).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let mut command = bin();
        command.arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::null());
        adjust(&mut command);
        let mut child = command.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut addr, mut fingerprint, mut lines) = (String::new(), String::new(), Vec::new());
        // The banner ends with the line telling clients what to check.
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "server exited early: {lines:?}");
            if let Some(a) = line.strip_prefix("cipherline server listening on ") {
                addr = a.trim().to_owned();
            }
            if let Some(f) = line.strip_prefix("fingerprint: ") {
                fingerprint = f.trim().to_owned();
            }
            let done = line.starts_with("clients check") || line.starts_with("password-only mode");
            lines.push(line);
            if done {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in out.lines() {});
        let serial = SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Server { child, addr, fingerprint, lines, args: args.iter().map(|a| (*a).to_owned()).collect(), serial }
    }

    /// A server with an X25519 key (fast to create) in `dir`.
    pub fn quick(dir: &Path) -> Server {
        Server::quick_with_limits(dir, None)
    }

    /// Like [`Server::quick`], with `[limits]` lines (`key = value` each)
    /// written to a configuration file in `dir`.
    pub fn quick_with_limits(dir: &Path, limits: Option<&str>) -> Server {
        let args = quick_args(dir, limits);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start(&args)
    }

    /// Like [`Server::quick`], logging at trace level (`RUST_LOG=trace`)
    /// to the file `log`.
    pub fn quick_logged(dir: &Path, log: &Path) -> Server {
        Server::quick_logged_with_limits(dir, None, log)
    }

    /// Like [`Server::quick_with_limits`], logging at trace level to the
    /// file `log`.
    pub fn quick_logged_with_limits(dir: &Path, limits: Option<&str>, log: &Path) -> Server {
        let args = quick_args(dir, limits);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = std::fs::File::create(log).unwrap();
        Server::start_with(&args, |c| {
            c.env("RUST_LOG", "trace").stderr(log);
        })
    }

    /// A client command with --server, a pinned fingerprint, and a data
    /// directory (so an identity key) of its own per name.
    pub fn client(&self, subcommand: &str, name: &str) -> Command {
        let mut c = bin();
        c.env("CIPHERLINE_HOME", home_of(self, name));
        c.args([subcommand, "--server", &self.addr, "--name", name, "--server-fingerprint", &self.fingerprint]);
        c
    }

    /// Ends the server at once with SIGKILL: no goodbye to anyone, as in a
    /// crash or a power cut.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the server again (after [`Server::kill`] or [`Server::stop`])
    /// with the same arguments, so the same data directory and key files,
    /// on the same address; the fingerprint is the one it announces now.
    pub fn restart(&mut self) {
        let listen = self.args.iter().position(|a| a == "--listen").unwrap();
        let mut args = self.args.clone();
        args.get_mut(listen + 1).unwrap().clone_from(&self.addr);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The old port may take a moment to be free again.
        let mut tries = 0;
        let mut again = loop {
            match std::panic::catch_unwind(|| Server::start(&args)) {
                Ok(server) => break server,
                Err(_) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        };
        assert_eq!(again.addr, self.addr, "the server came back on another address");
        // The clients' data directories stay this server's; the old
        // process is already gone: dropping it only reaps it.
        std::mem::swap(&mut again.serial, &mut self.serial);
        drop(std::mem::replace(self, again));
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("the server did not exit within 10 s of SIGTERM");
    }
}

/// Makes an X25519 server key (fast to create) at `dir/server_x25519`;
/// returns its path.
pub fn x25519_key(dir: &Path) -> PathBuf {
    let key = dir.join("server_x25519");
    let made = bin()
        .args(["keygen", "--type", "x25519", "--out", key.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    key
}

/// A node of a relay on NATS: `serve --store NATS_URL` with the relay's
/// one `key`, its own data directory `data`, and `extra` arguments.
pub fn nats_node(key: &Path, data: &Path, nats_url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    args.extend(["--key", key.to_str().unwrap(), "--store", nats_url]);
    args.extend(extra);
    Server::start(&args)
}

/// The arguments of a `serve` with an X25519 key (fast to create) and its
/// data in `dir`, with `[limits]` lines in a configuration file if given.
fn quick_args(dir: &Path, limits: Option<&str>) -> Vec<String> {
    let config = limits.map(|l| {
        let path = dir.join("server.toml");
        std::fs::write(&path, format!("[limits]\n{l}")).unwrap();
        path
    });
    let key = x25519_key(dir);
    let data = dir.join("server-data");
    let mut args =
        vec!["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap(), "--key", key.to_str().unwrap()];
    if let Some(config) = &config {
        args.extend(["--config", config.to_str().unwrap()]);
    }
    args.into_iter().map(str::to_owned).collect()
}

impl Drop for Server {
    /// Ends the server and removes the client data directories
    /// [`Server::client`] made for it (thousands of test runs otherwise
    /// fill the temporary directory).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let prefix = format!("cipherline-test-home-{}-s{}-", std::process::id(), self.serial);
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Reads lines from a child's stdout until one contains `needle` (or 20 s pass).
pub fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    wait_for_line_within(lines, needle, Duration::from_secs(20))
}

/// Like [`wait_for_line`], waiting up to `limit`.
pub fn wait_for_line_within(lines: &std::sync::mpsc::Receiver<String>, needle: &str, limit: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no line containing {needle:?}; saw {seen:?}");
}

/// Streams a child's stdout lines into a channel.
pub fn line_channel(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn temp_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// A message line without its leading `HH:MM ` time (message lines start
/// with the local time they were sent); other lines as they are.
#[allow(clippy::indexing_slicing)]
pub fn untimed(line: &str) -> &str {
    let b = line.as_bytes();
    let timed = b.len() >= 6
        && b[..5].iter().enumerate().all(|(i, c)| if i == 2 { *c == b':' } else { c.is_ascii_digit() })
        && b[5] == b' ';
    if timed { &line[6..] } else { line }
}

/// A scripted `chat` (stdin is a pipe, so it reads plain lines), for the
/// tests that drive chat without a terminal.
pub struct Chat {
    child: Child,
    input: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Chat {
    /// Starts `chat` as `name` on `server` and waits until it is in the lobby.
    pub fn start(server: &Server, name: &str, extra: &[&str]) -> Chat {
        let mut command = server.client("chat", name);
        command.args(extra);
        Chat::spawn(command)
    }

    /// Starts a `chat` command line of the test's own (pipe its standard
    /// error to read it in [`Chat::exit`]) and waits until it is in the lobby.
    pub fn spawn(mut command: Command) -> Chat {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let lines = line_channel(&mut child);
        let input = child.stdin.take().unwrap();
        wait_for_line(&lines, "in room lobby");
        Chat { child, input, lines }
    }

    /// Types one line.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write as _;
        writeln!(self.input, "{line}").unwrap();
    }

    /// The lines up to the first containing `needle`.
    pub fn wait(&self, needle: &str) -> Vec<String> {
        wait_for_line(&self.lines, needle)
    }

    /// The lines up to the first containing `needle`, waiting up to `secs`.
    pub fn wait_within(&self, needle: &str, secs: u64) -> Vec<String> {
        wait_for_line_within(&self.lines, needle, Duration::from_secs(secs))
    }

    /// Waits (60 s at most) for chat to end by itself; returns its exit
    /// code and standard error (if piped).
    pub fn exit(mut self) -> (Option<i32>, String) {
        use std::io::Read as _;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("chat did not exit within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut err).unwrap();
        }
        (status.code(), err)
    }

    /// The first line containing any of `needles` (20 s at most).
    pub fn wait_any(&self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                if needles.iter().any(|n| line.contains(n)) {
                    return line;
                }
                seen.push(line);
            }
        }
        panic!("no line containing any of {needles:?}; saw {seen:?}");
    }

    /// Ends the process at once (no goodbye, no cancel): what a crash or a
    /// lost connection looks like to the server.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Types /quit and expects a clean exit.
    pub fn quit(mut self) {
        self.type_line("/quit");
        assert!(self.child.wait().unwrap().success());
    }
}

/// The id an offer line tells the user to answer with
/// ("* alice offers f (3 bytes): /accept 2 or /decline 2").
pub fn offer_id(line: &str) -> u64 {
    let id = line.rsplit("/decline ").next().unwrap();
    id.trim().parse().unwrap_or_else(|_| panic!("no offer id in {line:?}"))
}

/// The peer records in the local store `client.db` of data directory
/// `home`: (server, name, fingerprint, verified), ordered.
pub fn peer_rows(home: &Path) -> Vec<(String, String, String, bool)> {
    let conn = rusqlite::Connection::open(home.join("client.db")).unwrap();
    let mut stmt =
        conn.prepare("SELECT server, name, fingerprint, verified FROM peers ORDER BY server, folded").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

/// The data directory [`Server::client`] gives `name`.
pub fn home_of(server: &Server, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cipherline-test-home-{}-s{}-{name}", std::process::id(), server.serial))
}

/// `cipherline room SUB ARGS...` as `name` (`room` takes the client flags
/// after its subcommand `args[0]`).
pub fn room_command(server: &Server, name: &str, args: &[&str]) -> std::process::Output {
    bin()
        .env("CIPHERLINE_HOME", home_of(server, name))
        .args(["room", args[0], "--server", &server.addr, "--name", name])
        .args(["--server-fingerprint", &server.fingerprint])
        .args(&args[1..])
        .output()
        .unwrap()
}

/// Standard output of a command that must have succeeded (else its exit
/// code, stdout and stderr in the panic).
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `haystack` holds the bytes `needle`.
pub fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
