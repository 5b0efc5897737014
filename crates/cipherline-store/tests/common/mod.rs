//! One test suite, two backends: each test body takes a [`Harness`] and is
//! run once on SQLite (a temporary directory) and once on NATS JetStream (a
//! real `nats-server -js` this harness starts on a free loopback port with a
//! temporary store directory, killed on drop). A missing `nats-server`
//! fails the NATS tests loudly: CI must not pass without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cipherline_store::{AnyStore, NatsOptions, NatsStore, SqliteOptions, SqliteStore};

/// The bounds a test opens its store with (both backends take them).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_payload_bytes: usize,
    pub max_value_bytes: usize,
    pub max_name_bytes: usize,
    pub max_read: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        let d = SqliteOptions::default();
        Bounds {
            max_payload_bytes: d.max_payload_bytes,
            max_value_bytes: d.max_value_bytes,
            max_name_bytes: d.max_name_bytes,
            max_read: d.max_read,
        }
    }
}

/// Where a test's store lives.
pub enum Harness {
    Sqlite(tempfile::TempDir),
    Nats(NatsServer),
}

impl Harness {
    pub fn sqlite() -> Self {
        Harness::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn nats() -> Self {
        Harness::Nats(NatsServer::start())
    }

    pub fn is_nats(&self) -> bool {
        matches!(self, Harness::Nats(_))
    }

    pub async fn open(&self) -> AnyStore {
        self.open_with(Bounds::default()).await
    }

    pub async fn open_with(&self, bounds: Bounds) -> AnyStore {
        match self {
            Harness::Sqlite(dir) => {
                let options = SqliteOptions {
                    max_payload_bytes: bounds.max_payload_bytes,
                    max_value_bytes: bounds.max_value_bytes,
                    max_name_bytes: bounds.max_name_bytes,
                    max_read: bounds.max_read,
                    channel_capacity: 2,
                    max_batch: 2,
                };
                let options = if bounds.max_read == SqliteOptions::default().max_read {
                    SqliteOptions { channel_capacity: 4096, max_batch: 1024, ..options }
                } else {
                    options
                };
                AnyStore::Sqlite(std::sync::Arc::new(
                    SqliteStore::open(dir.path().join("store.sqlite3"), options).await.unwrap(),
                ))
            }
            Harness::Nats(server) => {
                let options = NatsOptions {
                    max_payload_bytes: bounds.max_payload_bytes,
                    max_value_bytes: bounds.max_value_bytes,
                    max_name_bytes: bounds.max_name_bytes,
                    max_read: bounds.max_read,
                    ..NatsOptions::default()
                };
                AnyStore::Nats(std::sync::Arc::new(NatsStore::connect(&server.url, options).await.unwrap()))
            }
        }
    }

    /// The backend dies abruptly and comes back on the same data: nothing
    /// for SQLite (the file is all there is); SIGKILL and a restart on the
    /// same store directory for NATS.
    pub fn crash_backend(&mut self) {
        if let Harness::Nats(server) = self {
            server.restart();
        }
    }
}

/// A `nats-server` with JetStream on 127.0.0.1, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub url: String,
    dir: tempfile::TempDir,
}

/// The `nats-server` binary: `$NATS_SERVER`, else `nats-server` on the
/// path, else Debian's /usr/sbin/nats-server.
fn nats_server_binary() -> PathBuf {
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
             the NATS store tests need it (apt-get install nats-server)"
        )
    })
}

impl NatsServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = NatsServer { child: None, url: String::new(), dir };
        server.spawn();
        server
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
                "host: 127.0.0.1\nport: -1\nmax_payload: 4MB\njetstream {{\n  store_dir: {:?}\n}}\n",
                root.join("js").display().to_string()
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
        self.child = Some(child);
        self.url = wait_for_port(&ports.join(format!("nats-server_{pid}.ports")), self.child.as_mut().unwrap());
    }

    /// SIGKILL, then start again on the same store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
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
        if let Some(url) = ports["nats"][0].as_str() {
            return url.to_owned();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("nats-server exited at start: {status}");
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs each named test body (an `async fn(&mut Harness)`) on both backends:
/// `<name>::sqlite` and `<name>::nats`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name(&mut $crate::common::Harness::sqlite()).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn nats() {
                    super::$name(&mut $crate::common::Harness::nats()).await;
                }
            }
        )*
    };
}
