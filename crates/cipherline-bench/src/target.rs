//! Which server to load, the loopback rule, and trusting its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use cipherline_keys::{DataDir, Fingerprint, ServerAddr, TrustPolicy, load_public_key};
use cipherline_proto::crypto::kem::ServerPublicKey;
use clap::Args;

use crate::BenchError;

/// How the generator decides to trust the server's key: the same flags as
/// the `cipherline` client commands.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// At first contact, record the server's key in the known-servers file
    /// without asking (trust on first use). A changed key is still refused.
    #[arg(long)]
    pub accept_new: bool,

    /// Trust only the server key in this PEM public key file.
    #[arg(long, value_name = "PATH", conflicts_with = "server_fingerprint")]
    pub server_key: Option<PathBuf>,

    /// Trust only a server key with this fingerprint (SHA256:...).
    #[arg(long, value_name = "SHA256:...")]
    pub server_fingerprint: Option<Fingerprint>,

    /// Directory holding the known_servers file (default: $CIPHERLINE_HOME,
    /// else the per-user data directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The trust decision for one run: made once through the client's
/// [`TrustPolicy`] (pin, known servers, `--accept-new`; never a prompt),
/// then every later connection must present the same key.
pub struct Trust {
    policy: TrustPolicy,
    server: ServerAddr,
    accepted: Mutex<Option<Fingerprint>>,
}

impl Trust {
    /// The policy the flags describe, for `server` (HOST:PORT).
    pub fn new(args: &TrustArgs, server: &str) -> Result<Self, BenchError> {
        let server: ServerAddr = server.parse()?;
        let pin = match &args.server_key {
            Some(path) => Some(Fingerprint::of_server_key(&load_public_key(path)?)),
            None => args.server_fingerprint,
        };
        let known = DataDir::resolve(args.data_dir.as_deref())?.known_servers();
        let policy = TrustPolicy::new(known).accept_new(args.accept_new).pin(pin);
        Ok(Trust { policy, server, accepted: Mutex::new(None) })
    }

    /// Whether to go on with a server that presented `key`.
    pub fn check(&self, key: &ServerPublicKey) -> Result<(), String> {
        let presented = Fingerprint::of_server_key(key);
        // Held across the first decision so concurrent first connections
        // do not each record the key.
        let mut accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        match *accepted {
            Some(fp) if fp == presented => Ok(()),
            Some(fp) => Err(format!("the server's key changed during the run (was {fp}, now {presented})")),
            None => {
                self.policy.check(&self.server, key, None).map_err(|e| e.to_string())?;
                *accepted = Some(presented);
                Ok(())
            }
        }
    }
}

/// A resolved server address and the trust decision for it.
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Further nodes of the same relay (one key): clients that take an
    /// index ([`Target::at`]) are spread over `addr` and these in turn.
    pub nodes: Vec<SocketAddr>,
    /// HOST:PORT as given (the known-servers entry).
    pub name: String,
    /// The trust decision.
    pub trust: Trust,
}

impl Target {
    /// Resolves `server`, refusing anything but loopback unless
    /// `allow_remote`.
    pub async fn resolve(server: &str, trust: &TrustArgs, allow_remote: bool) -> Result<Self, BenchError> {
        let addr = resolve_addr(server, allow_remote).await?;
        Ok(Target { addr, nodes: Vec::new(), name: server.to_owned(), trust: Trust::new(trust, server)? })
    }

    /// Adds further nodes of the same relay (HOST:PORT each), under the
    /// same loopback rule.
    pub async fn with_nodes(mut self, nodes: &[String], allow_remote: bool) -> Result<Self, BenchError> {
        for node in nodes {
            self.nodes.push(resolve_addr(node, allow_remote).await?);
        }
        Ok(self)
    }

    /// The address of the `i`th client: `addr`, then each further node, in
    /// turn.
    #[must_use]
    pub fn at(&self, i: usize) -> SocketAddr {
        match i % (self.nodes.len() + 1) {
            0 => self.addr,
            k => self.nodes.get(k - 1).copied().unwrap_or(self.addr),
        }
    }
}

/// Resolves HOST:PORT to its first address; every address it resolves to
/// must be loopback unless `allow_remote`.
pub async fn resolve_addr(server: &str, allow_remote: bool) -> Result<SocketAddr, BenchError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server)
        .await
        .map_err(|e| BenchError::Usage(format!("cannot resolve {server}: {e}")))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(BenchError::Usage(format!("{server} resolves to no address")));
    };
    // A load generator aimed at someone else's machine is an attack: only
    // this machine unless the operator says otherwise.
    if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(BenchError::Usage(format!(
            "{server} is not a loopback address; pass --allow-remote to load a server you run elsewhere"
        )));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_are_spread_over_the_nodes_in_turn() {
        let trust = TrustArgs { accept_new: false, server_key: None, server_fingerprint: None, data_dir: None };
        let one = Target::resolve("127.0.0.1:1", &trust, false).await.unwrap();
        assert_eq!(one.at(5).port(), 1, "one node takes every client");
        let three = one.with_nodes(&["127.0.0.1:2".into(), "127.0.0.1:3".into()], false).await.unwrap();
        let ports: Vec<u16> = (0..6).map(|i| three.at(i).port()).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        assert!(three.with_nodes(&["192.0.2.1:4".into()], false).await.is_err(), "loopback only");
    }

    #[tokio::test]
    async fn only_loopback_without_allow_remote() {
        assert!(resolve_addr("127.0.0.1:5555", false).await.is_ok());
        assert!(resolve_addr("[::1]:5555", false).await.is_ok());
        assert!(matches!(resolve_addr("192.0.2.1:5555", false).await, Err(BenchError::Usage(_))));
        assert!(resolve_addr("192.0.2.1:5555", true).await.is_ok());
    }
}
