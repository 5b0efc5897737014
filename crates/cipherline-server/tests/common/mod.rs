//! A relay server run in-process on a free loopback port, and clients
//! pinned to its key: the harness the server's integration tests share.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherline_client::{Client, ClientError, Options};
use cipherline_keys::Fingerprint;
use cipherline_proto::app::Delivery;
use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::message::ClientAuthRequest;
use cipherline_proto::{ClientConfig, ServerConfig};
use cipherline_server::{Identities, Limits, RunOptions, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A running server.
pub struct Server {
    pub addr: String,
    pub fingerprint: [u8; 32],
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(limits: Limits) -> Server {
        let key = Arc::new(ServerKey::x25519_from_bytes(&[0x5a; 32]).unwrap());
        let fingerprint = key.public_key().fingerprint();
        let settings = Settings { protocol: Arc::new(cipherline_proto::ServerConfig::new(key)), limits };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            cipherline_server::run(listener, settings, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server { addr: addr.to_string(), fingerprint, stop: Some(stop), task }
    }

    pub async fn client(&self, name: &str) -> Result<Client, ClientError> {
        let fp = self.fingerprint;
        let pin = move |_: &str, key: &ServerPublicKey| {
            if key.fingerprint() == fp { Ok(()) } else { Err("fingerprint mismatch".to_owned()) }
        };
        Client::connect(&self.addr, name, &Options::default(), &pin).await
    }

    /// A client that must connect.
    pub async fn connect(&self, name: &str) -> Client {
        self.client(name).await.unwrap()
    }

    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        timeout(Duration::from_secs(10), self.task).await.expect("shutdown within its grace period").unwrap();
    }
}

/// Identity key number `seed` (Ed25519, the same for the same seed).
pub fn key(seed: u8) -> Arc<IdentityKey> {
    Arc::new(IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap())
}

/// The fingerprint of an identity key.
pub fn fp(k: &IdentityKey) -> Fingerprint {
    Fingerprint::from_bytes(k.public_key().fingerprint())
}

/// Re-signs a relayed message with the relay's own identity key (seed 66),
/// as a relay forging a message under someone else's name would.
pub fn resign_as_relay(d: &mut Delivery) {
    let relay = IdentityKey::ed25519_from_seed(&[66; 32]).unwrap();
    let sig = cipherline_proto::signature::sign(&relay, &d.from, &d.to, 1, 1, &d.text).unwrap();
    d.signed = Some(cipherline_proto::app::Signed {
        client_id: 1,
        sent_at_ms: sig.sent_at_ms,
        algorithm: relay.public_key().algorithm().to_u16(),
        sender_key: relay.public_key().spki().to_vec(),
        signature: sig.signature,
    });
}

/// A relay with these identities, client-auth request, limits and tamper
/// hook (the malicious relay of the tests) on a free loopback port; it
/// stops when the sender is used or dropped.
pub async fn start_relay(
    identities: Arc<Identities>,
    auth: ClientAuthRequest,
    limits: Limits,
    tamper: Option<fn(&mut Delivery)>,
) -> (String, oneshot::Sender<()>, JoinHandle<()>) {
    let server_key = Arc::new(ServerKey::x25519_from_bytes(&[9; 32]).unwrap());
    let protocol = ServerConfig { client_auth: auth, ..ServerConfig::new(server_key) };
    let settings = Settings { protocol: Arc::new(protocol), limits };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = RunOptions { identities, dangerous_tamper_for_testing_only: tamper, ..RunOptions::default() };
    let task = tokio::spawn(async move {
        cipherline_server::run_with(listener, settings, options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, task)
}

/// `limits` lifted for relay nodes of the multi-node tests, whose clients
/// all come from 127.0.0.1, quickly.
pub fn node_limits(limits: Limits) -> Limits {
    Limits {
        new_connections_per_ip_per_sec: 1000,
        new_connections_burst_per_ip: 1000,
        max_sessions_per_ip: 1000,
        name_bindings_per_ip_per_day: 1000,
        ..limits
    }
}

/// A relay node of the multi-node tests (one X25519 key for every node,
/// client authentication optional) with `options` (its stores, bus,
/// identities) on a free loopback port; it stops when the sender is used
/// or dropped.
pub async fn start_node(limits: Limits, options: RunOptions) -> (String, oneshot::Sender<()>, JoinHandle<()>) {
    let server_key = Arc::new(ServerKey::x25519_from_bytes(&[9; 32]).unwrap());
    let protocol = ServerConfig { client_auth: ClientAuthRequest::Optional, ..ServerConfig::new(server_key) };
    let settings = Settings { protocol: Arc::new(protocol), limits };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cipherline_server::run_with(listener, settings, options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, task)
}

/// A client with `identity` (or none) that accepts any server key: these
/// tests are about what the relay does, not about trusting it.
pub async fn connect_as(addr: &str, name: &str, identity: Option<Arc<IdentityKey>>) -> Result<Client, ClientError> {
    let options =
        Options { config: Arc::new(ClientConfig { identity, ..ClientConfig::default() }), ..Options::default() };
    let any = |_: &str, _: &ServerPublicKey| Ok(());
    Client::connect(addr, name, &options, &any).await
}

/// A server with a store and a names file in `dir`, so that what it keeps
/// (stored messages, name bindings, room members) outlives it: start it
/// again on the same `dir` for a restart.
pub async fn start_stored(dir: &std::path::Path, limits: Limits) -> Server {
    start_stored_with(dir, limits, None).await
}

/// Like [`start_stored`], with a relay that tampers with end-to-end
/// messages (`RunOptions::dangerous_group_tamper_for_testing_only`).
pub async fn start_stored_with(
    dir: &std::path::Path,
    limits: Limits,
    group_tamper: Option<cipherline_server::GroupTamper>,
) -> Server {
    let server_key = Arc::new(ServerKey::x25519_from_bytes(&[0x5a; 32]).unwrap());
    let fingerprint = server_key.public_key().fingerprint();
    let protocol = ServerConfig { client_auth: ClientAuthRequest::Optional, ..ServerConfig::new(server_key) };
    let settings = Settings { protocol: Arc::new(protocol), limits };
    let policy = cipherline_server::IdentityPolicy::Open { names_file: Some(dir.join("names")) };
    let identities = Arc::new(Identities::load(policy).unwrap());
    let store =
        cipherline_server::SqliteStore::open(dir.join("store.sqlite3"), cipherline_server::SqliteOptions::default())
            .await
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = RunOptions {
        identities,
        store: Some(Arc::new(store)),
        dangerous_group_tamper_for_testing_only: group_tamper,
        ..RunOptions::default()
    };
    let task = tokio::spawn(async move {
        cipherline_server::run_with(listener, settings, options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server { addr, fingerprint, stop: Some(stop), task }
}
