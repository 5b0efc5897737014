//! `durable`: acknowledged durable messages per second (issue 19).
//!
//! Against a cipherline server: `recipients` users with identity keys
//! visit once (so the server keeps a stored queue for each and stores
//! their messages while they are away), then `senders` keyed clients each
//! send `messages` direct messages of `size` bytes to them in turn, with at
//! most `window` unacknowledged at a time per connection. The server
//! acknowledges a message only once it is durably stored for its
//! recipient, so Acks per second is the figure. Each Ack must say the
//! message was stored (`queued` ≥ 1); one that was not makes the run not
//! ok. Afterwards the recipients read their queues empty, so the next run
//! starts from the same state (and per-recipient quotas are not hit).
//!
//! The anchor, [`run_nats`]: the same load (connections, window, payload
//! size, subjects per recipient) as JetStream publishes to a file-storage
//! stream with one replica, counting publish acknowledgements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use cipherline_client::{Client, ClientReader, ClientWriter, Options};
use cipherline_proto::ClientConfig;
use cipherline_proto::app::{ErrorCode, ServerMessage, Target as To};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use tokio::sync::Semaphore;
use tokio::time::{timeout, timeout_at};

use crate::stats::{cpu_secs, cpu_secs_of, own_cpu_secs};
use crate::{BenchError, Report, Target, round3};

/// The JetStream stream the anchor publishes to (created if missing,
/// purged before each run).
pub const NATS_STREAM: &str = "CIPHERLINE_BENCH_DURABLE";
/// Its subjects: `bench.durable.<recipient>`.
const NATS_SUBJECTS: &str = "bench.durable.>";
/// How long the drain after a run waits for the next stored message.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// Delay before re-sending a message the server refused as rate-limited.
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// The load, the same for cipherline and the NATS anchor.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// Sending connections.
    pub senders: usize,
    /// Messages each sender sends.
    pub messages: usize,
    /// Bytes of text (payload) per message.
    pub size: usize,
    /// Unacknowledged messages one connection may have in flight.
    pub window: usize,
    /// Recipients (offline, with stored queues); senders go round them.
    pub recipients: usize,
    /// The whole run (setup and drain excluded) must finish within this.
    pub timeout: Duration,
    /// Names are this plus `s` or `r` and a number.
    pub name_prefix: String,
}

/// A deterministic identity key for a bench user, so a rerun against the
/// same server proves the same key for the same name (names are bound to
/// the first key that used them). Not a secret: bench users only.
pub(crate) fn bench_identity(name: &str) -> Result<Arc<IdentityKey>, BenchError> {
    let mut seed = [0u8; 32];
    for (i, b) in format!("cipherline-bench durable {name}").bytes().enumerate() {
        if let Some(s) = seed.get_mut(i % 32) {
            *s = s.wrapping_mul(31).wrapping_add(b);
        }
    }
    IdentityKey::ed25519_from_seed(&seed)
        .map(Arc::new)
        .map_err(|e| BenchError::Usage(format!("cannot make a bench identity key: {e}")))
}

/// Connects `name` with its bench identity key, checking the server's key.
pub(crate) async fn connect_keyed(target: &Target, name: &str) -> Result<Client, BenchError> {
    connect_keyed_at(target, 0, name).await
}

/// [`connect_keyed`] to the node of client `i` ([`Target::at`]).
pub(crate) async fn connect_keyed_at(target: &Target, i: usize, name: &str) -> Result<Client, BenchError> {
    let identity = bench_identity(name)?;
    let options = Options {
        config: Arc::new(ClientConfig { identity: Some(identity), ..ClientConfig::default() }),
        ..Options::default()
    };
    let check = |_: &str, key: &ServerPublicKey| target.trust.check(key);
    match Client::connect(&target.at(i).to_string(), name, &options, &check).await {
        Ok(c) => Ok(c),
        Err(cipherline_client::ClientError::Untrusted(why)) => Err(BenchError::Untrusted(why)),
        Err(e) => Err(e.into()),
    }
}

fn recipient(opts: &DurableOptions, k: usize) -> String {
    format!("{}r{}", opts.name_prefix, k % opts.recipients.max(1))
}

/// What one sender saw.
#[derive(Debug, Default)]
struct Sent {
    acked: u64,
    not_stored: u64,
    retries: u64,
    last: Option<Instant>,
    error: Option<String>,
}

/// Runs the benchmark against a cipherline server (its nodes' processes
/// `server_pids`, for CPU time and memory). With several nodes, recipient
/// `r` uses node `r` and sender `s` node `s + 1` (in turn), so messages
/// cross nodes.
pub async fn run(target: Arc<Target>, opts: &DurableOptions, server_pids: &[u32]) -> Result<Report, BenchError> {
    // The recipients' first visit binds their names to their keys; from
    // then on their messages are stored while they are away.
    for r in 0..opts.recipients {
        let client = connect_keyed_at(&target, r, &recipient(opts, r)).await?;
        if client.info().queue.is_none() {
            return Err(BenchError::Usage(
                "the server keeps no stored queue for a keyed user: it does not store messages".into(),
            ));
        }
        let _ = timeout(Duration::from_secs(5), client.close()).await;
    }
    let mut senders = Vec::with_capacity(opts.senders);
    for s in 0..opts.senders {
        senders.push(connect_keyed_at(&target, s + 1, &format!("{}s{s}", opts.name_prefix)).await?);
    }

    let (server_cpu0, own_cpu0) = (cpu_secs_of(server_pids), own_cpu_secs());
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let mut tasks = Vec::new();
    for (s, client) in senders.into_iter().enumerate() {
        let (reader, writer, _) = client.split();
        let window = Arc::new(Semaphore::new(opts.window));
        let (retry_tx, retry_rx) = tokio::sync::mpsc::unbounded_channel();
        let writing = tokio::spawn(write_loop(writer, opts.clone(), s, window.clone(), retry_rx, deadline));
        let reading = tokio::spawn(read_loop(reader, opts.messages as u64, window, retry_tx, deadline));
        tasks.push((writing, reading));
    }
    let mut sent = Vec::new();
    for (writing, reading) in tasks {
        let mut got = reading.await.map_err(|e| BenchError::Usage(format!("reader failed: {e}")))?;
        match writing.await {
            Ok(Ok(mut writer)) => {
                let _ = timeout(Duration::from_secs(2), writer.close()).await;
            }
            Ok(Err(e)) => got.error = got.error.or(Some(e)),
            Err(e) => got.error = got.error.or(Some(e.to_string())),
        }
        sent.push(got);
    }
    let server_cpu = cpu_secs_of(server_pids).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    let mut report = report("cipherline", opts, start, &sent, server_cpu, own_cpu);
    if let Some(rss) = crate::fanout::nodes_rss_kib(server_pids) {
        report.set("server_rss_kib_per_node", rss);
    }
    let drained = drain(&target, opts).await;
    report.set("drained", drained);
    Ok(report)
}

/// Sends this sender's messages, each after taking a window slot (given
/// back by its Ack), then re-sends any refused as rate-limited.
async fn write_loop(
    mut writer: ClientWriter,
    opts: DurableOptions,
    index: usize,
    window: Arc<Semaphore>,
    mut retries: tokio::sync::mpsc::UnboundedReceiver<usize>,
    deadline: tokio::time::Instant,
) -> Result<ClientWriter, String> {
    let failed = |e: cipherline_client::ClientError| format!("sending: {e}");
    let text = payload(opts.size);
    for k in 0..opts.messages {
        match timeout_at(deadline, window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) => return Ok(writer),
            Err(_) => return Err("the deadline passed while sending".into()),
        }
        let to = To::User(recipient(&opts, index + k));
        writer.send(to, &text).await.map_err(failed)?;
    }
    loop {
        match timeout_at(deadline, retries.recv()).await {
            Ok(Some(k)) => {
                tokio::time::sleep(RETRY_DELAY).await;
                writer.send(To::User(recipient(&opts, index + k)), &text).await.map_err(failed)?;
            }
            Ok(None) | Err(_) => return Ok(writer),
        }
    }
}

/// `size` bytes of text.
fn payload(size: usize) -> String {
    "x".repeat(size)
}

/// Counts Acks (each frees a window slot) until all arrived or the deadline.
async fn read_loop(
    mut reader: ClientReader,
    messages: u64,
    window: Arc<Semaphore>,
    retry: tokio::sync::mpsc::UnboundedSender<usize>,
    deadline: tokio::time::Instant,
) -> Sent {
    let mut sent = Sent::default();
    while sent.acked < messages {
        let msg = match timeout_at(deadline, reader.recv()).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(e)) => {
                sent.error = Some(e.to_string());
                break;
            }
            Err(_) => break,
        };
        match msg {
            ServerMessage::Ack { queued, .. } => {
                sent.acked += 1;
                if queued == 0 {
                    sent.not_stored += 1;
                }
                sent.last = Some(Instant::now());
                window.add_permits(1);
            }
            ServerMessage::Error { code: ErrorCode::RateLimited, client_id, .. } => {
                sent.retries += 1;
                // Client ids count from 1 in send order; the retry goes to
                // the same recipient (the slot stays taken).
                let k = usize::try_from(client_id.saturating_sub(1)).unwrap_or(0);
                let _ = retry.send(k);
            }
            ServerMessage::Error { code, text, .. } => {
                sent.error = Some(format!("server error {code:?}: {text}"));
                break;
            }
            _ => {}
        }
    }
    // The writer stops waiting for slots.
    window.close();
    sent
}

/// Reads the recipients' queues empty; returns how many messages were read.
async fn drain(target: &Target, opts: &DurableOptions) -> u64 {
    let mut total = 0;
    for r in 0..opts.recipients {
        let Ok(mut client) = connect_keyed_at(target, r, &recipient(opts, r)).await else { continue };
        if client.resume(0).await.is_err() {
            continue;
        }
        while let Ok(Ok(msg)) = timeout(DRAIN_QUIET, client.recv()).await {
            if let ServerMessage::Message(d) = msg {
                total += 1;
                if client.handled(d.seq).await.is_err() {
                    break;
                }
            }
        }
        let _ = client.flush_received().await;
        let _ = timeout(Duration::from_secs(5), client.close()).await;
    }
    total
}

/// Runs the same load as JetStream publishes (the anchor): `url` is the
/// NATS server, `server_pid` nats-server's process for its CPU time.
pub async fn run_nats(url: &str, opts: &DurableOptions, server_pid: Option<u32>) -> Result<Report, BenchError> {
    let nats = |e: &dyn std::fmt::Display| BenchError::Usage(format!("nats: {e}"));
    let mut contexts = Vec::with_capacity(opts.senders);
    for _ in 0..opts.senders {
        let client = async_nats::connect(url).await.map_err(|e| nats(&e))?;
        contexts.push(jetstream::new(client));
    }
    let Some(first) = contexts.first() else { return Err(BenchError::Usage("no senders".into())) };
    let config = stream::Config {
        name: NATS_STREAM.to_owned(),
        subjects: vec![NATS_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..stream::Config::default()
    };
    let created = first.get_or_create_stream(config).await.map_err(|e| nats(&e))?;
    created.purge().await.map_err(|e| nats(&e))?;

    let (server_cpu0, own_cpu0) = (server_pid.and_then(cpu_secs), own_cpu_secs());
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let mut tasks = Vec::new();
    for (s, context) in contexts.into_iter().enumerate() {
        let opts = opts.clone();
        tasks.push(tokio::spawn(publish_loop(context, opts, s, deadline)));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.map_err(|e| BenchError::Usage(format!("publisher failed: {e}")))?);
    }
    let server_cpu = server_pid.and_then(cpu_secs).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    let report = report("nats-jetstream", opts, start, &sent, server_cpu, own_cpu);
    let _ = created.purge().await;
    Ok(report)
}

/// One publisher: at most `window` publishes awaiting their acknowledgement.
async fn publish_loop(
    context: jetstream::Context,
    opts: DurableOptions,
    index: usize,
    deadline: tokio::time::Instant,
) -> Sent {
    let mut sent = Sent::default();
    let body = bytes::Bytes::from(payload(opts.size));
    let mut pending = std::collections::VecDeque::with_capacity(opts.window);
    let mut k = 0;
    while (sent.acked as usize) < opts.messages {
        if k < opts.messages && pending.len() < opts.window {
            let subject = format!("bench.durable.{}", recipient(&opts, index + k));
            match timeout_at(deadline, context.publish(subject, body.clone())).await {
                Ok(Ok(ack)) => pending.push_back(ack),
                Ok(Err(e)) => {
                    sent.error = Some(format!("publish: {e}"));
                    break;
                }
                Err(_) => break,
            }
            k += 1;
            continue;
        }
        let Some(ack) = pending.pop_front() else { break };
        match timeout_at(deadline, ack).await {
            Ok(Ok(_)) => {
                sent.acked += 1;
                sent.last = Some(Instant::now());
            }
            Ok(Err(e)) => {
                sent.error = Some(format!("publish acknowledgement: {e}"));
                break;
            }
            Err(_) => break,
        }
    }
    sent
}

/// The report, the same fields for both.
fn report(
    server: &str,
    opts: &DurableOptions,
    start: Instant,
    sent: &[Sent],
    server_cpu: Option<f64>,
    own_cpu: Option<f64>,
) -> Report {
    let expected = (opts.senders * opts.messages) as u64;
    let acked: u64 = sent.iter().map(|s| s.acked).sum();
    let not_stored: u64 = sent.iter().map(|s| s.not_stored).sum();
    let retries: u64 = sent.iter().map(|s| s.retries).sum();
    let end = sent.iter().filter_map(|s| s.last).max().unwrap_or(start);
    let secs = end.duration_since(start).as_secs_f64();
    let first_error = sent.iter().find_map(|s| s.error.clone());
    let mut r = Report::new();
    r.set("mode", "durable")
        .set("server", server)
        .set("senders", opts.senders)
        .set("messages_per_sender", opts.messages)
        .set("size", opts.size)
        .set("window", opts.window)
        .set("recipients", opts.recipients)
        .set("acked", acked)
        .set("expected", expected)
        .set("not_stored", not_stored)
        .set("retries", retries)
        .set("seconds", round3(secs))
        .set("acked_per_sec", if secs > 0.0 { (acked as f64 / secs).round() } else { 0.0 });
    if let Some(cpu) = server_cpu {
        r.set("server_cpu_secs", round3(cpu));
        if acked > 0 {
            r.set("server_cpu_us_per_message", round3(cpu * 1e6 / acked as f64));
        }
    }
    if let Some(cpu) = own_cpu {
        r.set("generator_cpu_secs", round3(cpu));
    }
    if let Some(e) = &first_error {
        r.set("first_error", e.as_str());
    }
    r.ok = acked == expected && not_stored == 0 && first_error.is_none();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_identities_are_stable_and_distinct() {
        let a = bench_identity("br0").unwrap();
        let a2 = bench_identity("br0").unwrap();
        let b = bench_identity("br1").unwrap();
        assert_eq!(a.public_key().fingerprint(), a2.public_key().fingerprint());
        assert_ne!(a.public_key().fingerprint(), b.public_key().fingerprint());
    }

    #[test]
    fn senders_go_round_the_recipients() {
        let opts = DurableOptions {
            senders: 2,
            messages: 4,
            size: 10,
            window: 1,
            recipients: 3,
            timeout: Duration::from_secs(1),
            name_prefix: "d".into(),
        };
        let names: Vec<String> = (0..4).map(|k| recipient(&opts, k)).collect();
        assert_eq!(names, ["dr0", "dr1", "dr2", "dr0"]);
    }
}
