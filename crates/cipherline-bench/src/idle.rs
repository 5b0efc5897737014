//! `idle`: opens N authenticated connections (handshake and Hello), reports
//! once all are up, then holds them until told to stop (SIGINT, SIGTERM,
//! end of standard input) or until `hold` runs out, so a harness can read
//! the server's memory meanwhile. Each connection pings at half the
//! server's idle timeout, so holding longer than that timeout is fine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cipherline_client::Client;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::fanout::connect;
use crate::stats::rss_kib;
use crate::{BenchError, Report, Target, round3};

/// What to hold.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// Connections to open.
    pub connections: usize,
    /// Handshakes in flight at once while opening them.
    pub concurrency: usize,
    /// Longest time to hold them.
    pub hold: Duration,
    /// Client names are this plus a number.
    pub name_prefix: String,
}

/// Resolves when the connections should be closed: a signal, standard
/// input reaching its end (when `watch_stdin`), or `hold` elapsed.
async fn stop_signal(hold: Duration, watch_stdin: bool) {
    let stdin = async {
        if watch_stdin {
            let mut sink = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = stdin => {}
        () = tokio::time::sleep(hold) => {}
    }
}

/// Keeps one connection alive until `stop`: reads (and drops) whatever the
/// server sends and pings when the connection has been quiet.
async fn hold_one(mut client: Client, stop: CancellationToken, dropped: Arc<AtomicU64>) {
    let interval = Duration::from_secs(u64::from(client.idle_timeout_secs().max(2) / 2));
    let mut nonce = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            msg = client.recv() => if msg.is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
                return;
            },
            () = tokio::time::sleep(interval) => {
                nonce += 1;
                if client.ping(nonce).await.is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
}

/// Opens the connections, calls `ready` with the report once all are up,
/// then holds them until stopped. Returns the final report (with the count
/// dropped by the server while held).
pub async fn run(
    target: Arc<Target>,
    opts: &IdleOptions,
    server_pid: Option<u32>,
    watch_stdin: bool,
    ready: impl FnOnce(&Report),
) -> Result<Report, BenchError> {
    let rss_before = server_pid.and_then(rss_kib);
    // The first connection alone: the trust decision fails fast.
    let first = connect(&target, &format!("{}0", opts.name_prefix)).await?;
    let stop = CancellationToken::new();
    let dropped = Arc::new(AtomicU64::new(0));
    let mut holders = vec![tokio::spawn(hold_one(first, stop.clone(), dropped.clone()))];
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut opening = Vec::with_capacity(opts.connections);
    for i in 1..opts.connections {
        let permit = permits.clone().acquire_owned().await.map_err(|e| BenchError::Usage(e.to_string()))?;
        let (target, stop, dropped) = (target.clone(), stop.clone(), dropped.clone());
        let name = format!("{}{i}", opts.name_prefix);
        // Local: the client library's trust callback is not Sync.
        opening.push(tokio::task::spawn_local(async move {
            let result = connect(&target, &name).await;
            drop(permit);
            let client = result?;
            Ok::<_, BenchError>(tokio::spawn(hold_one(client, stop, dropped)))
        }));
    }
    let (mut failed, mut first_error) = (0u64, None);
    for task in opening {
        match task.await {
            Ok(Ok(holder)) => holders.push(holder),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let setup = start.elapsed().as_secs_f64();
    // Let the server finish its share of the last handshakes before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server_pid.and_then(rss_kib);

    let mut report = Report::new();
    report
        .set("mode", "idle")
        .set("connections", opts.connections)
        .set("established", holders.len())
        .set("failed", failed)
        .set("setup_secs", round3(setup));
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per_conn = after.saturating_sub(before) as f64 * 1024.0 / holders.len().max(1) as f64;
        report
            .set("server_rss_before_kib", before)
            .set("server_rss_kib", after)
            .set("server_rss_per_conn_bytes", per_conn.round());
    }
    if let Some(e) = first_error {
        report.set("first_error", e);
    }
    report.ok = failed == 0;
    ready(&report);

    stop_signal(opts.hold, watch_stdin).await;
    stop.cancel();
    for h in holders {
        let _ = h.await;
    }
    report.set("dropped_while_held", dropped.load(Ordering::Relaxed));
    Ok(report)
}
