//! One test suite, two backends: each test body takes a [`Harness`] and is
//! run once on SQLite (a temporary directory) and once on NATS JetStream (a
//! real `nats-server -js` this harness starts on a free loopback port with a
//! temporary store directory, killed on drop). A missing `nats-server`
//! fails the NATS tests loudly: CI must not pass without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs, dead_code)]

use cipherline_store::{AnyStore, NatsOptions, NatsStore, SqliteOptions, SqliteStore};
pub use cipherline_testkit::NatsServer;

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
                AnyStore::Nats(std::sync::Arc::new(NatsStore::connect(server.url(), options).await.unwrap()))
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
