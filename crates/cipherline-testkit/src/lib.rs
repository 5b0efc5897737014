//! Test support shared by cipherline's integration tests, a
//! dev-dependency only (never linked into a binary).
//!
//! Contract: [`NatsServer`] starts a real `nats-server` with JetStream on a
//! free 127.0.0.1 port (chosen by the server itself, `port: -1`, and read
//! back from its ports file), with its store in a temporary directory, and
//! kills it on drop. A missing `nats-server` binary panics with a message
//! saying how to install it: tests that need NATS must fail in CI without
//! it, never skip. Being test code, failures here panic with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` with JetStream on 127.0.0.1, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    url: String,
    dir: tempfile::TempDir,
    /// More configuration (a cluster member's name and routes).
    extra: String,
}

/// The `nats-server` binary: `$NATS_SERVER`, else `nats-server` on the
/// path, else Debian's /usr/sbin/nats-server.
///
/// # Panics
/// When none is found, saying how to install it.
#[must_use]
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    let found = on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "nats-server not found (not on PATH, not /usr/sbin/nats-server, NATS_SERVER unset): \
             these tests need it (apt-get install nats-server; .ci/run does)"
        )
    })
}

impl NatsServer {
    /// Starts one server and waits (at most 20 s) until it listens.
    ///
    /// # Panics
    /// When the binary is missing, exits at start, or never listens.
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for nats-server");
        let mut server = NatsServer { child: None, url: String::new(), dir, extra: String::new() };
        server.spawn();
        server
    }

    /// Its client URL, `nats://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its directory (config, ports file, JetStream store).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let root = self.dir.path();
        let ports = root.join("ports");
        std::fs::create_dir_all(&ports).unwrap();
        for old in std::fs::read_dir(&ports).unwrap() {
            std::fs::remove_file(old.unwrap().path()).unwrap();
        }
        let config = root.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "host: 127.0.0.1\nport: -1\nmax_payload: 4MB\njetstream {{\n  store_dir: {:?}\n}}\n{}",
                root.join("js").display().to_string(),
                self.extra
            ),
        )
        .unwrap();
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&config)
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let pid = child.id();
        let child = self.child.insert(child);
        self.url = wait_for_port(&ports.join(format!("nats-server_{pid}.ports")), child);
    }

    /// SIGKILL, then start again on the same store directory. The port
    /// may change: read [`NatsServer::url`] again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL (and reap) the server; a no-op when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (at most 20 s) for the server's ports file; returns its client URL.
fn wait_for_port(path: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let ports = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
        if let Some(url) = ports.get("nats").and_then(|n| n.get(0)).and_then(serde_json::Value::as_str) {
            return url.to_owned();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("nats-server exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Three `nats-server`s with JetStream clustered on 127.0.0.1 (cluster
/// `cipherline-test`, servers `n0`..`n2`, routes on ports picked free just
/// before the start), each with its own store directory; all killed on drop.
/// JetStream needs a few seconds after the start to elect its meta leader:
/// callers retry their first JetStream request (bounded).
pub struct NatsCluster {
    servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the three servers and waits until each listens for clients.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    #[must_use]
    pub fn start() -> Self {
        // Route ports must be known to every member before any starts: take
        // three free ones from the kernel (a race with other programs is
        // possible, and would fail the start loudly).
        let routes: Vec<u16> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let urls: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let servers = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let dir = tempfile::tempdir().expect("a temporary directory for nats-server");
                let extra = format!(
                    "server_name: n{i}\ncluster {{\n  name: cipherline-test\n  listen: 127.0.0.1:{port}\n  routes: [{}]\n}}\n",
                    urls.join(", ")
                );
                let mut server = NatsServer { child: None, url: String::new(), dir, extra };
                server.spawn();
                server
            })
            .collect();
        NatsCluster { servers }
    }

    /// The client URLs of all three, comma-separated (for `--store`).
    #[must_use]
    pub fn urls(&self) -> String {
        self.servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// Server `i` (0, 1 or 2).
    ///
    /// # Panics
    /// When `i` is 3 or more.
    pub fn server(&mut self, i: usize) -> &mut NatsServer {
        self.servers.get_mut(i).expect("a cluster of three")
    }
}
