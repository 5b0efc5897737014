//! # cipherline-server: the relay
//!
//! Many clients connect over TCP; each connection runs the cipherline
//! handshake (all crypto is the protocol core's), says Hello with a display
//! name, and then joins rooms, talks in them, sends direct messages and
//! offers files, which the server relays (PROTOCOL.md §13).
//!
//! [`run`] follows mini-redis's `run(listener, shutdown)`: one task per
//! connection; a per-connection failure never stops the server; `shutdown`
//! resolving stops accepting, tells every client, drains and returns within
//! the configured grace period.
//!
//! Contract: bounded everything. Connections are capped, in total and per
//! source address, and so is the rate at which one address may open them
//! (excess ones get the `server_busy` alert at once); in password mode so
//! are failed password attempts, per address and server-wide; every wait
//! has a timeout (handshake, idle, write); each client's outgoing queue is
//! bounded in messages and bytes, all queues together in bytes, and a
//! client that cannot keep up is dropped rather than allowed to slow anyone
//! else; messages are size- and rate-limited, by count and by bytes times
//! recipients; file transfers are bounded in number and recipients per
//! sender, unanswered offers expire, and data is bounded by a flow-control
//! window; name bindings are rationed; the blobs of end-to-end files are
//! bounded by a per-user and a total quota, counted at full size, expire,
//! and a fetch returns at most 1 MiB and waits at most 10 s. Logs carry
//! connection ids, names, key fingerprints, transfer and blob ids and
//! sizes, never message text, file names, file data or key material.
//!
//! Modules: [`config`] (limits), [`identity`] (who may use which name),
//! `source` (the per-address key), `admission` (connections per address),
//! `handshakes` (unfinished handshakes per address), `attempts` (password
//! guesses), `hub` (rooms and delivery), `backlog` (queued bytes), `bucket`
//! (rate limits), `transfer` (file transfers in progress), `mail`
//! (store-and-forward), `groups` (the delivery service of end-to-end
//! conversations: MLS bytes it relays but cannot read), `blobs` (the
//! sealed bytes of end-to-end files, kept for the conversation's members),
//! [`cluster`] (other relay nodes on the same store), `connection` (one
//! client), [`error`].

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod admission;
mod attempts;
mod backlog;
mod blobs;
mod bucket;
pub mod cluster;
pub mod config;
mod connection;
pub mod error;
mod groups;
mod handshakes;
mod hub;
pub mod identity;
mod mail;
mod source;
mod transfer;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_proto::AlertCode;
use cipherline_proto::handshake::alert_frame;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cipherline_store::{AnyStore, NatsConnection, NatsOptions, NatsStore, SqliteOptions, SqliteStore};
pub use config::{Limits, Settings};
pub use error::ServerError;
pub use identity::{Identities, IdentityPolicy};

/// A test-only relay that tampers with end-to-end messages: see
/// [`RunOptions::dangerous_group_tamper_for_testing_only`].
pub type GroupTamper =
    Arc<dyn Fn(cipherline_proto::app::GroupDelivery) -> Vec<cipherline_proto::app::GroupDelivery> + Send + Sync>;

/// What [`run_with`] takes beyond [`Settings`].
pub struct RunOptions {
    /// Who may use which name; [`run`] uses the open policy in memory.
    pub identities: Arc<Identities>,
    /// For tests of end-to-end signatures only: a relay that alters every
    /// chat message it relays. Never set this in a real server.
    pub dangerous_tamper_for_testing_only: Option<fn(&mut cipherline_proto::app::Delivery)>,
    /// For tests of end-to-end conversations only: a relay that tampers
    /// with the MLS messages it carries (Welcomes, commits, application
    /// messages). It is called once for each group message as the relay
    /// fans it out, before it is stored for its recipients (all of them:
    /// it cannot single one out), and what it returns is stored instead,
    /// in order: nothing (dropped), the message altered, other messages
    /// (forged, replayed, or held back from an earlier call to reorder).
    /// A returned delivery with id 0 gets a fresh server id. Needs a
    /// store. Never set this in a real server.
    pub dangerous_group_tamper_for_testing_only: Option<GroupTamper>,
    /// The store for store-and-forward (PROTOCOL.md §13.9); without one,
    /// delivery is live only, for everyone.
    pub store: Option<Arc<SqliteStore>>,
    /// With [`RunOptions::store`]: keep queues, the key-value map and blobs
    /// in NATS JetStream instead (several relay nodes can share it).
    /// Ignored without `store`.
    pub nats_store: Option<Arc<NatsStore>>,
    /// With [`RunOptions::store`]: the bus to the other relay nodes on the
    /// same store (docs/cluster.md). Without one, a server on
    /// [`RunOptions::nats_store`] uses NATS core on the store's connection;
    /// a server on SQLite alone has no other nodes. Tests give two servers
    /// on one `SqliteStore` buses of one [`cluster::LocalNet`].
    pub cluster: Option<Arc<dyn cluster::Bus>>,
    /// Other servers use the same store (several relay nodes): re-read what
    /// they may change (a room's stored members, end-to-end rooms) where it
    /// matters instead of trusting what this server loaded at start, one
    /// store read each (docs/cluster.md, steps 5 and 6). Always on with
    /// [`RunOptions::nats_store`] or [`RunOptions::cluster`]; off, one
    /// server alone saves the reads.
    pub shared_store: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            identities: Arc::new(Identities::open_in_memory()),
            dangerous_tamper_for_testing_only: None,
            dangerous_group_tamper_for_testing_only: None,
            store: None,
            nats_store: None,
            cluster: None,
            shared_store: false,
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then shuts down gracefully;
/// names follow the open policy, kept in memory.
pub async fn run(listener: TcpListener, settings: Settings, shutdown: impl Future) -> Result<(), ServerError> {
    run_with(listener, settings, RunOptions::default(), shutdown).await
}

/// [`run`] with an identity policy (and test hooks).
pub async fn run_with(
    listener: TcpListener,
    settings: Settings,
    options: RunOptions,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    settings.limits.validate().map_err(ServerError::Config)?;
    // Fail now, not on the first connection, if no suite fits the key.
    cipherline_proto::handshake::server::ExpectClientHello::new(settings.protocol.clone())?;
    let settings = Arc::new(settings);
    let mut cluster = None;
    let mail = match options.store {
        Some(store) => {
            // Another node (a bus, or NATS) means a shared store.
            let shared = options.shared_store || options.nats_store.is_some() || options.cluster.is_some();

            // Nodes on one NATS find each other on it; on the store's
            // connection, under the store's subject prefix.
            let prefix = options.nats_store.as_ref().map_or("cipherline", |n| n.options().subject_prefix.as_str());
            let bus = options.cluster.or_else(|| {
                options
                    .nats_store
                    .as_ref()
                    .map(|n| Arc::new(cluster::NatsBus::new(n.client().clone())) as Arc<dyn cluster::Bus>)
            });
            let prefix = prefix.to_owned();
            let db = Arc::new(match options.nats_store {
                Some(nats) => cipherline_store::AnyStore::Nats(nats),
                None => cipherline_store::AnyStore::Sqlite(store.clone()),
            });
            if let Some(bus) = bus {
                cluster = Some(cluster::Cluster::new(bus, db.clone(), &prefix).map_err(ServerError::Store)?);
            }
            // Open-policy name bindings live in the store, where nodes
            // sharing it agree on them (docs/cluster.md).
            options.identities.use_store(db.clone()).await.map_err(ServerError::Store)?;
            let (mut mail, rooms) = mail::Mail::open(db, &settings.limits).await.map_err(ServerError::Store)?;
            mail.group_tamper = options.dangerous_group_tamper_for_testing_only;
            mail.shared = shared;
            Some((Arc::new(mail), rooms))
        }
        None => None,
    };
    let ttl = Duration::from_secs(settings.limits.message_ttl_secs);
    let mut hub = hub::Hub::new(options.identities, &settings.limits, options.dangerous_tamper_for_testing_only, mail);
    hub.cluster = cluster.as_ref().map(|(c, _)| c.clone());
    let hub = Arc::new(hub);
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    if let Some((cluster, incoming)) = cluster {
        cluster.beat().await;
        tracker.spawn(cluster::run(hub.clone(), cluster, incoming, token.clone()));
    }
    tracker.spawn(hub::expire_offers(hub.clone(), token.clone()));
    if hub.mail.is_some() {
        let blob_ttl = Duration::from_secs(settings.limits.blob_ttl_secs);
        tracker.spawn(mail::expire_loop(hub.clone(), ttl, blob_ttl, token.clone()));
    }
    let permits = Arc::new(Semaphore::new(settings.limits.max_connections));
    let handshakes = Arc::new(handshakes::Handshakes::default());
    let admission = Arc::new(admission::Admission::default());
    let mut next_conn: u64 = 0;
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = Duration::from_millis(10);
                    pair
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait and retry
                    // rather than spin or stop serving.
                    tracing::warn!(error = %e, "accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        next_conn += 1;
        let id = next_conn;
        let limits = &settings.limits;
        // IPv6 addresses count by /64: one host may use any address in it.
        let source = source::Source::of(peer.ip());
        // One address may open connections only so fast, hold only so many,
        // and not the last free slots once it holds one (§13.5). This loop
        // is the only caller, so the free count cannot change under it
        // except upwards.
        let held = match admission.admit(source, limits, permits.available_permits(), Instant::now()) {
            Ok(held) => held,
            Err(why) => {
                tracing::warn!(conn = id, %peer, %source, reason = ?why, "address over its connection limits; refusing");
                refuse_busy(&tracker, stream);
                continue;
            }
        };
        // One address may hold only a few connections in the handshake, so
        // that handshakes nobody finishes cannot take every slot (§13.5).
        let Some(in_handshake) = handshakes.try_enter(source, limits.max_handshakes_per_ip) else {
            tracing::warn!(conn = id, %peer, %source, limit = limits.max_handshakes_per_ip, "too many handshakes from one address; refusing");
            refuse_busy(&tracker, stream);
            continue;
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (settings, hub, token) = (settings.clone(), hub.clone(), token.clone());
                tracker.spawn(async move {
                    connection::serve(id, stream, peer, settings, hub, token, in_handshake).await;
                    drop((permit, held));
                });
            }
            Err(_) => {
                tracing::warn!(conn = id, %peer, limit = limits.max_connections, "connection limit reached; refusing");
                refuse_busy(&tracker, stream);
            }
        }
    }

    tracing::info!(
        users = hub.user_count(),
        transfers = hub.transfer_count(),
        "shutting down: telling clients and draining"
    );
    drop(listener);
    token.cancel();
    tracker.close();
    let grace = Duration::from_secs(settings.limits.shutdown_grace_secs);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not finish within {grace:?}; closing them");
    }
    Ok(())
}

/// Refuses a connection with the `server_busy` alert in one small write and
/// closes it, instead of leaving the client waiting in the accept backlog.
fn refuse_busy(tracker: &TaskTracker, mut stream: TcpStream) {
    tracker.spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(&alert_frame(AlertCode::ServerBusy)).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}
