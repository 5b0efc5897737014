//! `bulk`: one client streams a file transfer (PROTOCOL.md §13.6) through
//! the relay to another; throughput is measured from the first chunk sent
//! to FileDone at the receiver.
//!
//! The data is one 16 KiB pattern repeated (nothing touches a disk). The
//! sender computes the SHA-256 a real sender sends; the receiver counts the
//! bytes and acknowledges them every 256 KiB, as a real receiver does, and
//! checks the total at the end (it does not re-hash: the relay never looks
//! at the hash either, and hashing twice on the generator's core would only
//! slow the generator down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::transfer::{ACK_EVERY, Outgoing};
use cipherline_client::{ClientReader, ClientWriter};
use cipherline_proto::app::{ClientMessage, MAX_CHUNK, ServerMessage, Target as To};
use tokio::sync::mpsc;
use tokio::time::timeout_at;

use crate::fanout::connect;
use crate::stats::{cpu_secs, own_cpu_secs};
use crate::{BenchError, Report, Target, round3};

/// The transfer id the sender uses.
const TRANSFER: u64 = 1;

/// Runs the bulk relay benchmark: `bytes` from one client to another.
pub async fn run(
    target: Arc<Target>,
    bytes: u64,
    limit: Duration,
    name_prefix: &str,
    server_pid: Option<u32>,
) -> Result<Report, BenchError> {
    let tx_name = format!("{name_prefix}tx");
    let rx_name = format!("{name_prefix}rx");
    let sender = connect(&target, &tx_name).await?;
    let receiver = connect(&target, &rx_name).await?;
    let deadline = tokio::time::Instant::now() + limit;
    let (tx_reader, mut tx_writer, _) = sender.split();
    let (rx_reader, rx_writer, _) = receiver.split();

    tx_writer
        .send_message(&ClientMessage::FileOffer {
            transfer: TRANSFER,
            to: To::User(rx_name.clone()),
            name: "bench.bin".into(),
            size: bytes,
        })
        .await?;
    let receiving = tokio::spawn(receive(rx_reader, rx_writer, tx_name, bytes, deadline));
    let (events_tx, events) = mpsc::unbounded_channel();
    let acks = tokio::spawn(sender_events(tx_reader, events_tx, deadline));
    let (server_cpu0, own_cpu0) = (server_pid.and_then(cpu_secs), own_cpu_secs());
    let sent = send(&mut tx_writer, events, &rx_name, bytes, deadline).await;
    let received = receiving.await.map_err(|e| BenchError::Usage(format!("receiver failed: {e}")))?;
    let server_cpu = server_pid.and_then(cpu_secs).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    acks.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), tx_writer.close()).await;

    let mut report = Report::new();
    report.set("mode", "bulk");
    let (first_chunk, error) = match sent {
        Ok(t) => (Some(t), received.error),
        Err(e) => (None, Some(e.to_string())),
    };
    let secs = match (first_chunk, received.done) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let mb_per_sec = if secs > 0.0 { received.bytes as f64 / secs / 1e6 } else { 0.0 };
    report
        .set("mb_per_sec", round3(mb_per_sec))
        .set("gbit_per_sec", round3(mb_per_sec * 8.0 / 1000.0))
        .set("bytes", received.bytes)
        .set("expected", bytes)
        .set("secs", round3(secs))
        .set("generator_cpu_secs", own_cpu.map(round3));
    if let Some(cpu) = server_cpu {
        report.set("server_cpu_secs", round3(cpu));
        if cpu > 0.0 {
            report.set("mb_per_server_cpu_sec", round3(received.bytes as f64 / cpu / 1e6));
        }
    }
    report.ok = error.is_none() && received.bytes == bytes && received.done.is_some();
    if let Some(e) = error {
        report.set("first_error", e);
    }
    Ok(report)
}

/// What the sender hears back.
enum Event {
    Answered(String, bool),
    Acked(String, u64),
    Cancelled(String),
}

/// Forwards the sender's incoming answers and acknowledgements.
async fn sender_events(mut reader: ClientReader, events: mpsc::UnboundedSender<Event>, deadline: tokio::time::Instant) {
    while let Ok(Ok(msg)) = timeout_at(deadline, reader.recv()).await {
        let event = match msg {
            ServerMessage::FileAnswered { by, accept, .. } => Event::Answered(by, accept),
            ServerMessage::FileAcked { by, received, .. } => Event::Acked(by, received),
            ServerMessage::FileCancelled { by, reason, .. } => Event::Cancelled(format!("{by}: {reason}")),
            ServerMessage::Error { code, text, .. } => Event::Cancelled(format!("server error {code:?}: {text}")),
            _ => continue,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// Streams the file within the flow-control window; returns when the first
/// chunk went out.
async fn send(
    writer: &mut ClientWriter,
    mut events: mpsc::UnboundedReceiver<Event>,
    receiver: &str,
    bytes: u64,
    deadline: tokio::time::Instant,
) -> Result<Instant, BenchError> {
    let pattern: Vec<u8> = (0..MAX_CHUNK).map(|i| (i % 251) as u8).collect();
    let mut out = Outgoing::new(TRANSFER, bytes, [receiver.to_owned()]);
    let mut first = None;
    loop {
        let len = usize::try_from((bytes - out.sent()).min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK);
        // Apply whatever arrived, then wait only if the window is closed.
        let event = if len > 0 && out.window_open(len) {
            events.try_recv().ok()
        } else if len == 0 {
            None
        } else {
            match timeout_at(deadline, events.recv()).await {
                Ok(Some(e)) => Some(e),
                Ok(None) => return Err(BenchError::Usage("the sender's connection closed".into())),
                Err(_) => return Err(BenchError::Timeout("waiting for the receiver")),
            }
        };
        match event {
            Some(Event::Answered(by, accept)) => out.on_answer(&by, accept),
            Some(Event::Acked(by, received)) => {
                out.on_ack(&by, received);
            }
            Some(Event::Cancelled(why)) => return Err(BenchError::Usage(format!("transfer cancelled by {why}"))),
            None if len == 0 => break,
            None => {
                let data = pattern.get(..len).unwrap_or_default().to_vec();
                out.record_chunk(&data);
                first.get_or_insert_with(Instant::now);
                writer.send_message(&ClientMessage::FileChunk { transfer: TRANSFER, data }).await?;
            }
        }
    }
    writer.send_message(&ClientMessage::FileEnd { transfer: TRANSFER, sha256: out.digest(), signature: None }).await?;
    first.ok_or(BenchError::Usage("nothing to send: --bytes must be at least 1".into()))
}

#[derive(Default)]
struct ReceiverResult {
    bytes: u64,
    done: Option<Instant>,
    error: Option<String>,
}

/// Accepts the offer, counts and acknowledges the data, sends the receipt.
async fn receive(
    mut reader: ClientReader,
    mut writer: ClientWriter,
    sender: String,
    size: u64,
    deadline: tokio::time::Instant,
) -> ReceiverResult {
    let mut r = ReceiverResult::default();
    let mut last_ack = 0;
    let result: Result<(), BenchError> = async {
        loop {
            let msg = timeout_at(deadline, reader.recv()).await.map_err(|_| BenchError::Timeout("receiving"))??;
            match msg {
                ServerMessage::FileOffered { transfer, .. } => {
                    let answer = ClientMessage::FileAnswer { transfer, sender: sender.clone(), accept: true };
                    writer.send_message(&answer).await?;
                }
                ServerMessage::FileData { transfer, data, .. } => {
                    r.bytes += data.len() as u64;
                    if r.bytes - last_ack >= ACK_EVERY && r.bytes < size {
                        last_ack = r.bytes;
                        let ack = ClientMessage::FileAck { transfer, sender: sender.clone(), received: r.bytes };
                        writer.send_message(&ack).await?;
                    }
                }
                ServerMessage::FileDone { transfer, .. } => {
                    r.done = Some(Instant::now());
                    if r.bytes != size {
                        return Err(BenchError::Usage(format!("received {} of {size} bytes", r.bytes)));
                    }
                    let receipt = ClientMessage::FileAck { transfer, sender: sender.clone(), received: size };
                    writer.send_message(&receipt).await?;
                    return Ok(());
                }
                ServerMessage::FileCancelled { reason, .. } => {
                    return Err(BenchError::Usage(format!("transfer cancelled: {reason}")));
                }
                _ => {}
            }
        }
    }
    .await;
    r.error = result.err().map(|e| e.to_string());
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.close()).await;
    r
}
