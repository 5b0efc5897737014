//! `fanout`: N clients join one room, each sends M messages, every client
//! counts what it receives. Latency comes from a send timestamp inside each
//! message; the run ends when all N·M·(N−1) deliveries arrived or the
//! timeout hit (then the shortfall is reported and the run is not ok).
//!
//! The load pattern (text, pacing, counting, the report) is shared with the
//! IRC mode in [`crate::irc`]; this module has the cipherline side.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::{Client, ClientReader, ClientWriter, Options};
use cipherline_proto::app::{ErrorCode, ServerMessage, Target as To};
use cipherline_proto::crypto::kem::ServerPublicKey;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, timeout_at};

use crate::stats::{Latencies, cpu_secs_of, own_cpu_secs, rss_kib};
use crate::{BenchError, Report, Target, round3};

/// Connections set up at once before the load starts.
const SETUP_CONCURRENCY: usize = 8;
/// Delay before re-sending a message the server refused as rate-limited.
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// The load pattern, the same for cipherline and IRC.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Clients in the room.
    pub clients: usize,
    /// Messages each client sends.
    pub messages: usize,
    /// Bytes of text per message (the timestamp included).
    pub size: usize,
    /// Messages per second per client; 0 sends as fast as the connection
    /// takes them (flood).
    pub rate: f64,
    /// The whole run (setup excluded) must finish within this.
    pub timeout: Duration,
    /// The room (for IRC, the channel without `#`).
    pub room: String,
    /// Client names are this plus a number.
    pub name_prefix: String,
}

/// Shortest text that holds a timestamp.
pub const MIN_SIZE: usize = 17;

/// The message text: microseconds since `epoch`, zero-padded to 16 digits,
/// then padding up to `size` bytes.
#[must_use]
pub fn message_text(epoch: Instant, size: usize) -> String {
    let mut text = format!("{:016} ", epoch.elapsed().as_micros());
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text
}

/// The latency of a message whose text `message_text` made.
#[must_use]
pub fn latency_micros(epoch: Instant, text: &str) -> Option<u64> {
    let sent: u64 = text.get(..16)?.parse().ok()?;
    let now = u64::try_from(epoch.elapsed().as_micros()).ok()?;
    Some(now.saturating_sub(sent))
}

/// When message `k` of paced sender `i` of `n` is due. The senders' phases
/// are spread evenly over one interval, as independent people's would be,
/// instead of all `n` sending in the same instant.
#[must_use]
pub fn due(start: Instant, rate: f64, i: usize, n: usize, k: usize) -> Option<Instant> {
    (rate > 0.0).then(|| start + Duration::from_secs_f64((k as f64 + i as f64 / n.max(1) as f64) / rate))
}

/// What one receiving client saw.
#[derive(Debug, Default)]
pub struct Received {
    /// Deliveries from the other clients.
    pub count: u64,
    /// Their latencies.
    pub latencies: Latencies,
    /// When the last one arrived.
    pub last: Option<Instant>,
    /// The error that stopped this client early, if any.
    pub error: Option<String>,
    /// Messages the server refused as rate-limited (each was sent again).
    pub retries: u64,
}

/// Sums the clients' results into the report both protocols give.
pub fn report(
    protocol: &str,
    opts: &FanoutOptions,
    start: Instant,
    results: Vec<Received>,
    writer_errors: Vec<String>,
    server_cpu: Option<f64>,
    own_cpu: Option<f64>,
) -> Report {
    let wall = start.elapsed().as_secs_f64();
    let n = opts.clients as u64;
    let expected = n * opts.messages as u64 * n.saturating_sub(1);
    let mut latencies = Latencies::with_capacity(usize::try_from(expected).unwrap_or(0));
    let (mut count, mut retries, mut last, mut first_error) = (0, 0, None::<Instant>, None);
    let per_client = opts.messages as u64 * n.saturating_sub(1);
    let clients_short = results.iter().filter(|r| r.count < per_client).count();
    for r in results {
        count += r.count;
        retries += r.retries;
        last = last.max(r.last);
        latencies.merge(r.latencies);
        first_error = first_error.or(r.error);
    }
    let writer_failures = writer_errors.len();
    first_error = first_error.or(writer_errors.into_iter().next());
    let secs = last.map_or(0.0, |l| l.saturating_duration_since(start).as_secs_f64());
    let (p50, p99, max) = latencies.summary_ms();
    let mut report = Report::new();
    report
        .set("mode", "fanout")
        .set("protocol", protocol)
        .set("deliveries_per_sec", if secs > 0.0 { round3(count as f64 / secs) } else { 0.0 })
        .set("p50_ms", p50)
        .set("p99_ms", p99)
        .set("max_ms", max)
        .set("deliveries", count)
        .set("expected", expected)
        .set("shortfall", expected.saturating_sub(count))
        .set("clients_short", clients_short)
        .set("clients", opts.clients)
        .set("messages", opts.messages)
        .set("size", opts.size)
        .set("rate", opts.rate)
        .set("secs", round3(secs))
        .set("wall_secs", round3(wall))
        .set("writer_failures", writer_failures)
        .set("retries", retries)
        .set("generator_cpu_secs", own_cpu.map(round3));
    if let Some(cpu) = server_cpu {
        report.set("server_cpu_secs", round3(cpu));
        if count > 0 {
            report.set("server_cpu_us_per_delivery", round3(cpu * 1e6 / count as f64));
        }
    }
    if let Some(e) = first_error {
        report.set("first_error", e);
    }
    report.ok = count == expected;
    report
}

/// Runs the fan-out benchmark against a cipherline server (its nodes'
/// processes `server_pids`, for CPU time and memory).
pub async fn run(target: Arc<Target>, opts: &FanoutOptions, server_pids: &[u32]) -> Result<Report, BenchError> {
    let epoch = Instant::now();
    let clients = connect_all(&target, opts).await?;

    let per_client = (opts.messages * opts.clients.saturating_sub(1)) as u64;
    let (server_cpu0, own_cpu0) = (cpu_secs_of(server_pids), own_cpu_secs());
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (reader, writer, _) = client.split();
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let room = opts.room.clone();
        let messages = opts.messages as u64;
        readers.push(tokio::spawn(read_loop(reader, room, epoch, per_client, messages, retry_tx, deadline)));
        writers.push(tokio::spawn(write_loop(writer, opts.clone(), i, epoch, start, retry_rx, deadline)));
    }
    let mut results = Vec::new();
    for r in readers {
        results.push(r.await.map_err(|e| BenchError::Usage(format!("reader failed: {e}")))?);
    }
    let server_cpu = cpu_secs_of(server_pids).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    let rss = nodes_rss_kib(server_pids);
    let mut writer_errors = Vec::new();
    for w in writers {
        match w.await {
            Ok(Ok(mut writer)) => {
                let _ = timeout(Duration::from_secs(2), writer.close()).await;
            }
            Ok(Err(e)) => writer_errors.push(e),
            Err(e) => writer_errors.push(e.to_string()),
        }
    }
    let mut report = report("cipherline", opts, start, results, writer_errors, server_cpu, own_cpu);
    if let Some(rss) = rss {
        report.set("server_rss_kib_per_node", rss);
    }
    Ok(report)
}

/// Each node's resident memory in KiB, read while its clients are still
/// connected; `None` without processes.
pub(crate) fn nodes_rss_kib(pids: &[u32]) -> Option<Vec<u64>> {
    (!pids.is_empty()).then(|| pids.iter().map(|&pid| rss_kib(pid).unwrap_or(0)).collect())
}

/// Connects and joins every client, a few at a time.
async fn connect_all(target: &Arc<Target>, opts: &FanoutOptions) -> Result<Vec<Client>, BenchError> {
    let mut clients = Vec::with_capacity(opts.clients);
    let mut i = 0;
    while i < opts.clients {
        let batch: Vec<_> = (i..opts.clients.min(i + SETUP_CONCURRENCY))
            .map(|k| {
                let (target, room) = (target.clone(), opts.room.clone());
                let name = format!("{}{k}", opts.name_prefix);
                // Local: the client library's trust callback is not Sync.
                tokio::task::spawn_local(async move {
                    let mut c = connect_at(&target, k, &name).await?;
                    c.join(&room).await?;
                    Ok::<Client, BenchError>(c)
                })
            })
            .collect();
        i += batch.len();
        for task in batch {
            clients.push(task.await.map_err(|e| BenchError::Usage(format!("setup failed: {e}")))??);
        }
    }
    Ok(clients)
}

/// Connects one named client, checking the server's key.
pub async fn connect(target: &Target, name: &str) -> Result<Client, BenchError> {
    connect_at(target, 0, name).await
}

/// Connects one named client to the node of client `i`
/// ([`Target::at`]), checking the server's key.
pub async fn connect_at(target: &Target, i: usize, name: &str) -> Result<Client, BenchError> {
    let check = |_: &str, key: &ServerPublicKey| target.trust.check(key);
    match Client::connect(&target.at(i).to_string(), name, &Options::default(), &check).await {
        Ok(c) => Ok(c),
        Err(cipherline_client::ClientError::Untrusted(why)) => Err(BenchError::Untrusted(why)),
        Err(e) => Err(e.into()),
    }
}

/// Sends this client's messages, then re-sends any the server refused as
/// rate-limited until every one was accepted or the deadline passed.
async fn write_loop(
    mut writer: ClientWriter,
    opts: FanoutOptions,
    index: usize,
    epoch: Instant,
    start: Instant,
    mut retries: mpsc::UnboundedReceiver<Control>,
    deadline: tokio::time::Instant,
) -> Result<ClientWriter, String> {
    let to = To::Room(opts.room.clone());
    let failed = |e: cipherline_client::ClientError| format!("sending: {e}");
    for k in 0..opts.messages {
        if let Some(at) = due(start, opts.rate, index, opts.clients, k) {
            sleep_until(at.into()).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("the deadline passed while sending".into());
        }
        writer.send(to.clone(), &message_text(epoch, opts.size)).await.map_err(failed)?;
    }
    loop {
        match timeout_at(deadline, retries.recv()).await {
            Ok(Some(Control::Retry)) => {
                tokio::time::sleep(RETRY_DELAY).await;
                writer.send(to.clone(), &message_text(epoch, opts.size)).await.map_err(failed)?;
            }
            Ok(Some(Control::AllAccepted) | None) | Err(_) => return Ok(writer),
        }
    }
}

/// From a client's reader to its writer.
enum Control {
    /// One message was refused as rate-limited: send another.
    Retry,
    /// Every message was acknowledged.
    AllAccepted,
}

/// Counts deliveries and acknowledgements until both are complete or the
/// deadline passes.
async fn read_loop(
    mut reader: ClientReader,
    room: String,
    epoch: Instant,
    expected: u64,
    messages: u64,
    control: mpsc::UnboundedSender<Control>,
    deadline: tokio::time::Instant,
) -> Received {
    let mut got =
        Received { latencies: Latencies::with_capacity(usize::try_from(expected).unwrap_or(0)), ..Received::default() };
    let mut acked = 0;
    while got.count < expected || acked < messages {
        let msg = match timeout_at(deadline, reader.recv()).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(e)) => {
                got.error = Some(e.to_string());
                break;
            }
            Err(_) => break,
        };
        match msg {
            ServerMessage::Message(d) if matches!(&d.to, To::Room(r) if *r == room) => {
                if let Some(us) = latency_micros(epoch, &d.text) {
                    got.latencies.push_micros(us);
                }
                got.count += 1;
                got.last = Some(Instant::now());
            }
            ServerMessage::Ack { .. } => {
                acked += 1;
                if acked == messages {
                    let _ = control.send(Control::AllAccepted);
                }
            }
            ServerMessage::Error { code: ErrorCode::RateLimited, .. } => {
                got.retries += 1;
                let _ = control.send(Control::Retry);
            }
            ServerMessage::Error { code, text, .. } => {
                got.error = Some(format!("server error {code:?}: {text}"));
                break;
            }
            _ => {}
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_carries_its_send_time() {
        let epoch = Instant::now() - Duration::from_millis(5);
        let text = message_text(epoch, 100);
        assert_eq!(text.len(), 100);
        let us = latency_micros(epoch, &text).unwrap();
        assert!(us < 1_000_000);
        assert_eq!(message_text(epoch, 3).len(), 17, "never shorter than the timestamp");
        assert!(latency_micros(epoch, "hello").is_none());
    }

    #[test]
    fn pacing() {
        let s = Instant::now();
        assert_eq!(due(s, 0.0, 0, 1, 5), None);
        assert_eq!(due(s, 20.0, 0, 2, 20), Some(s + Duration::from_secs(1)));
        assert_eq!(due(s, 20.0, 1, 2, 0), Some(s + Duration::from_millis(25)));
    }
}
