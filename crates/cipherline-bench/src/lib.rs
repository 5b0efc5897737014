//! # cipherline-bench: a load generator for cipherline servers
//!
//! Talks to a running server over TCP and measures what issue 9 asks for:
//! full handshakes per second per suite, room fan-out (deliveries per
//! second and latency), bulk file relay (throughput) and idle connections
//! (held open so a harness can read the server's memory). The fan-out mode
//! also speaks plain IRC (NICK/USER/JOIN/PRIVMSG) with exactly the same
//! load pattern, so cipherline and an IRC server are compared on the same
//! work by the same generator. `bench/compare.sh` runs everything against
//! the anchors (OpenSSL, ngircd, iperf3) and BENCHMARKS.md holds the
//! results.
//!
//! Contract:
//!
//! - Loopback only unless told otherwise: a target that does not resolve to
//!   127.0.0.0/8 or ::1 is refused without `--allow-remote`.
//! - Every load is bounded in count and in time and stops by itself; every
//!   network wait has a timeout.
//! - The server's key is checked like any client does (`--accept-new`,
//!   `--server-key`, `--server-fingerprint`, or the known-servers file), once
//!   per run; every later connection must present the same key.
//! - Each mode returns one [`Report`]: a flat JSON object. A run that fell
//!   short (missing deliveries, failed handshakes) is still reported, with
//!   `ok: false`, and the binary exits non-zero.
//! - Measurements, not assertions: nothing here is a timed test.
//!
//! Modules: [`target`] (address, loopback check, trust), [`stats`]
//! (percentiles, /proc readings), [`handshake`], [`fanout`] (cipherline),
//! [`irc`] (the same fan-out over IRC), [`bulk`], [`idle`], [`durable`]
//! (acknowledged durable messages/s, and the same load on NATS JetStream),
//! [`e2e_fanout`] (the fan-out in an end-to-end room), [`privop`]
//! (the server key's private-operation rate, the handshake ceiling),
//! [`error`].

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod bulk;
pub mod durable;
pub mod e2e_fanout;
pub mod error;
pub mod fanout;
pub mod handshake;
pub mod idle;
pub mod irc;
pub mod privop;
pub mod stats;
pub mod target;

pub use error::BenchError;
pub use target::{Target, Trust, TrustArgs};

use serde_json::{Map, Value};

/// One mode's result: a flat JSON object and whether the run reached its
/// goal (all deliveries arrived, no handshake failed, ...).
#[derive(Debug, Clone)]
pub struct Report {
    /// The fields, in insertion order of the JSON object.
    pub fields: Map<String, Value>,
    /// False when the run fell short; the binary then exits non-zero.
    pub ok: bool,
}

impl Report {
    /// An empty, successful report.
    #[must_use]
    pub fn new() -> Self {
        Report { fields: Map::new(), ok: true }
    }

    /// Adds a field.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// The report as one JSON object.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut fields = self.fields.clone();
        fields.insert("ok".to_owned(), Value::Bool(self.ok));
        Value::Object(fields).to_string()
    }

    /// The report as `key: value` lines, for people.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push_str(&format!("ok: {}\n", self.ok));
        out
    }
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

/// Rounds to three decimals for the report (microsecond resolution in ms).
#[must_use]
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
