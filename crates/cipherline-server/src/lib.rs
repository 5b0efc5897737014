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
//! Contract: bounded everything. Connections are capped (excess ones get the
//! `server_busy` alert at once); every wait has a timeout (handshake, idle,
//! write); each client's outgoing queue is bounded and a client that cannot
//! keep up is dropped rather than allowed to slow anyone else; messages are
//! size- and rate-limited; file transfers are bounded in number per sender
//! and by a flow-control window each. Logs carry connection ids, names, key
//! fingerprints and transfer ids and sizes, never message text, file names,
//! file data or key material.
//!
//! Modules: [`config`] (limits), `hub` (rooms and delivery), `transfer`
//! (file transfers in progress), `connection` (one client), [`error`].

#![forbid(unsafe_code)]

mod attempts;
pub mod config;
mod connection;
pub mod error;
mod hub;
mod transfer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cipherline_proto::AlertCode;
use cipherline_proto::handshake::alert_frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Limits, Settings};
pub use error::ServerError;

/// Serves `listener` until `shutdown` resolves, then shuts down gracefully.
pub async fn run(listener: TcpListener, settings: Settings, shutdown: impl Future) -> Result<(), ServerError> {
    settings.limits.validate().map_err(ServerError::Config)?;
    // Fail now, not on the first connection, if no suite fits the key.
    cipherline_proto::handshake::server::ExpectClientHello::new(settings.protocol.clone())?;
    let settings = Arc::new(settings);
    let hub = Arc::new(hub::Hub::default());
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(settings.limits.max_connections));
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
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (settings, hub, token) = (settings.clone(), hub.clone(), token.clone());
                tracker.spawn(async move {
                    connection::serve(id, stream, peer, settings, hub, token).await;
                    drop(permit);
                });
            }
            Err(_) => {
                // At the limit: say so in one small write and close, instead
                // of leaving the client waiting in the accept backlog.
                tracing::warn!(conn = id, %peer, limit = settings.limits.max_connections, "connection limit reached; refusing");
                tracker.spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        let _ = stream.write_all(&alert_frame(AlertCode::ServerBusy)).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
            }
        }
    }

    tracing::info!(
        connections = hub.user_count(),
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
