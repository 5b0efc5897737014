//! `e2e-fanout`: the load of [`crate::fanout`] (N clients, M messages each,
//! every client counts what it receives) in an end-to-end room (issue 19).
//!
//! The relay treats MLS as opaque bytes (PROTOCOL.md §13.11): it sequences
//! commits by epoch, routes them by the names in the request, and fans out
//! each group message through every other member's stored queue. It never
//! parses a commit, a Welcome or an application message (only uploaded
//! KeyPackages, which this mode does not use). So the payloads here are
//! **not real MLS**: they are bytes of the sizes real MLS messages have,
//! and the relay does exactly the work it does for real ones: the same
//! authorization, the same store writes, the same frames to each member.
//! What is left out is client work (encrypting, decrypting), which is not
//! what this measures; keeping it out keeps the generator from being the
//! bottleneck.
//!
//! Setup (not measured): N keyed clients (only users with a stored queue
//! take part in end-to-end conversations) connect; the first creates an
//! invite-only room, unique to the run (a room name is never reused), and
//! invites the others by commits of [`INVITE_BATCH`] names each; each
//! member then reads its Welcome and the commits that followed it. The run:
//! each client sends M group messages of the size an MLS PrivateMessage of
//! S bytes of text has ([`private_message_len`]), with its send time in
//! clear in the first bytes; each member counts the deliveries and
//! acknowledges them as a real client does (`Received` every few), so
//! queues drain and the per-recipient quota is not hit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cipherline_client::delivery::CommitOutcome;
use cipherline_client::{Client, ClientReader, ClientWriter};
use cipherline_proto::app::{
    ClientMessage, CommitRequest, ErrorCode, GroupEvent, GroupRequest, PayloadKind, RoomKind, ServerMessage,
};
use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout, timeout_at};

use crate::durable::connect_keyed;
use crate::fanout::{FanoutOptions, Received, due, latency_micros, message_text, report};
use crate::stats::{Latencies, cpu_secs, own_cpu_secs};
use crate::{BenchError, Report, Target};

/// Members invited by one commit while setting up.
pub const INVITE_BATCH: usize = 8;
/// Size of an add-only commit per member it adds: BENCHMARKS.md "End-to-end
/// conversations", X-Wing, "add 1: commit" (the new member's KeyPackage).
const COMMIT_PER_INVITED: usize = 2_894;
/// Size of a Welcome per member of the group it opens (it carries the
/// ratchet tree): the same table, 16 KiB for 10 members.
const WELCOME_PER_MEMBER: usize = 1_640;
/// A setup commit and its Welcome together are capped below the server's
/// default largest message (64 KiB; a real client would need more
/// commits): the relay's cost does not depend on their content, and setup
/// is not measured.
const SETUP_PAYLOAD_CAP: usize = 48 * 1024;

/// The sizes of the setup commit inviting `invited` more members, and of
/// its Welcome to a group of `members`; together within the cap.
fn setup_sizes(invited: usize, members: usize) -> (usize, usize) {
    let commit = (COMMIT_PER_INVITED * invited).min(SETUP_PAYLOAD_CAP / 2);
    (commit, (WELCOME_PER_MEMBER * members).min(SETUP_PAYLOAD_CAP - commit))
}
/// Longest wait for one setup delivery.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting writer acknowledges what its reader handled.
const ACK_TICK: Duration = Duration::from_millis(20);
/// Delay before re-sending a message the server refused as rate-limited.
const RETRY_DELAY: Duration = Duration::from_millis(50);
/// Longest room name a server takes by default (`max_name_len`).
const MAX_ROOM: usize = 32;

/// The QUIC-style variable-length integer's size (RFC 9420 §2.1.2).
fn varint_len(n: usize) -> usize {
    match n {
        0..=63 => 1,
        64..=16_383 => 2,
        _ => 4,
    }
}

/// mls-rs 0.57's `PaddingMode::Padme` (what cipherline-e2e sets): rounds
/// the content up so only the top bits of its length show.
fn padme(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let e = len.ilog2();
    let s = e.ilog2() + 1;
    let mask = (1usize << (e - s)) - 1;
    (len + mask) & !mask
}

/// Size of the `MLSMessage` a cipherline client sends for `text_len` bytes
/// of text in a room (X-Wing suite: AES-128-GCM, Ed25519), computed from
/// RFC 9420 §6.3 and the client's content encoding; the unit test
/// `payload_size_is_a_real_private_message` checks it against what
/// cipherline-e2e produces (270 bytes for 100 bytes of text).
///
/// - plaintext: `E2eContent` = kind (1) + counter (8) + sent_at_ms (8) + text;
/// - PrivateMessageContent: application_data<V> + signature<V> (64 bytes),
///   padded (Padme), sealed with a 16-byte tag;
/// - MLSMessage: version (2) + wire_format (2) + group_id<V> (16 bytes)
///   + epoch (8) + content_type (1) + authenticated_data<V> (empty)
///   + encrypted_sender_data<V> (12 + 16 bytes) + ciphertext<V>.
#[must_use]
pub fn private_message_len(text_len: usize) -> usize {
    let plain = 1 + 8 + 8 + text_len;
    let content = varint_len(plain) + plain + 1 + 64;
    let sealed = padme(content) + 16;
    2 + 2 + (1 + 16) + 8 + 1 + 1 + (1 + 12 + 16) + varint_len(sealed) + sealed
}

/// The opaque payload: the send time in clear in its first 17 bytes (as
/// [`message_text`] writes it), then filler up to `len` bytes.
#[must_use]
pub fn payload(epoch: Instant, len: usize) -> Vec<u8> {
    message_text(epoch, len).into_bytes()
}

/// The latency of a payload [`payload`] made.
#[must_use]
pub fn payload_latency_micros(epoch: Instant, payload: &[u8]) -> Option<u64> {
    latency_micros(epoch, std::str::from_utf8(payload.get(..16)?).ok()?)
}

/// A room name and 16-byte group id unique to this run (a room name can
/// never be used again on a server): `nonce` from the clock and the pid.
#[must_use]
pub fn room_and_group(prefix: &str, nonce: u64) -> (String, Vec<u8>) {
    let suffix = format!("-{nonce:x}");
    let keep = prefix.len().min(MAX_ROOM.saturating_sub(suffix.len()));
    let room = format!("{}{suffix}", prefix.get(..keep).unwrap_or("e2e"));
    let mut group = nonce.to_be_bytes().to_vec();
    group.extend_from_slice(&(!nonce).rotate_left(17).to_be_bytes());
    (room, group)
}

fn run_nonce() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Truncation is fine: uniqueness per run, not a count.
    (nanos as u64) ^ (u64::from(std::process::id()) << 40)
}

/// Between one client's reader and writer. Counters, not a queue: what a
/// server sends cannot make it grow.
#[derive(Default)]
struct Shared {
    /// The highest queue position the reader handled.
    handled: AtomicU64,
    /// Sends refused as rate-limited, owed again.
    retries: AtomicU64,
    /// The reader finished.
    done: AtomicBool,
    wake: Notify,
}

/// Runs the benchmark against a cipherline server.
pub async fn run(target: Arc<Target>, opts: &FanoutOptions, server_pid: Option<u32>) -> Result<Report, BenchError> {
    let epoch = Instant::now();
    let (room, group_id) = room_and_group(&opts.room, run_nonce());
    let names: Vec<String> = (0..opts.clients).map(|k| format!("{}{k}", opts.name_prefix)).collect();
    let mut clients = Vec::with_capacity(opts.clients);
    for name in &names {
        let c = connect_keyed(&target, name).await?;
        if c.info().queue.is_none() {
            return Err(BenchError::Usage(
                "the server keeps no stored queue for a keyed user: it has no end-to-end conversations".into(),
            ));
        }
        clients.push(c);
    }
    let batches = set_up_room(&mut clients, &names, &room, &group_id).await?;
    for (i, c) in clients.iter_mut().enumerate() {
        // The creator gets nothing; member i (invited in batch b) its
        // Welcome and the commits of the later batches.
        let setup = if i == 0 { 0 } else { batches - (i - 1) / INVITE_BATCH };
        read_setup(c, &group_id, setup).await?;
    }

    let len = private_message_len(opts.size);
    let per_client = (opts.messages * opts.clients.saturating_sub(1)) as u64;
    let (server_cpu0, own_cpu0) = (server_pid.and_then(cpu_secs), own_cpu_secs());
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + opts.timeout);
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (reader, writer, _) = client.split();
        let shared = Arc::new(Shared::default());
        let g = group_id.clone();
        let r = tokio::spawn(read_loop(
            reader,
            g.clone(),
            epoch,
            per_client,
            opts.messages as u64,
            shared.clone(),
            deadline,
        ));
        let w = tokio::spawn(write_loop(writer, opts.clone(), i, g, len, epoch, start, shared, deadline));
        tasks.push((r, w));
    }
    let mut results = Vec::new();
    let mut writer_errors = Vec::new();
    let mut queue_full = 0;
    for (r, w) in tasks {
        let (got, full) = r.await.map_err(|e| BenchError::Usage(format!("reader failed: {e}")))?;
        queue_full += full;
        results.push(got);
        match w.await {
            Ok(Ok(mut writer)) => {
                let _ = timeout(Duration::from_secs(2), writer.close()).await;
            }
            Ok(Err(e)) => writer_errors.push(e),
            Err(e) => writer_errors.push(e.to_string()),
        }
    }
    let server_cpu = server_pid.and_then(cpu_secs).zip(server_cpu0).map(|(b, a)| b - a);
    let own_cpu = own_cpu_secs().zip(own_cpu0).map(|(b, a)| b - a);
    let mut r = report("cipherline", opts, start, results, writer_errors, server_cpu, own_cpu);
    r.set("mode", "e2e-fanout").set("room", room).set("payload_bytes", len).set("queue_full", queue_full);
    r.ok = r.ok && queue_full == 0;
    Ok(r)
}

/// Creates the room and invites everyone else; returns how many commits
/// (batches) it took.
async fn set_up_room(
    clients: &mut [Client],
    names: &[String],
    room: &str,
    group_id: &[u8],
) -> Result<usize, BenchError> {
    let Some(creator) = clients.first_mut() else { return Err(BenchError::Usage("no clients".into())) };
    creator.create_room(room, RoomKind::Invite, group_id.to_vec()).await?;
    let mut epoch = 0;
    let mut members = 1;
    for batch in names.get(1..).unwrap_or_default().chunks(INVITE_BATCH) {
        members += batch.len();
        let (commit_len, welcome_len) = setup_sizes(batch.len(), members);
        let commit = CommitRequest {
            request: 0,
            group_id: group_id.to_vec(),
            epoch,
            external: false,
            commit: vec![0; commit_len],
            welcome: Some(vec![0; welcome_len]),
            group_info: None,
            invited: batch.to_vec(),
            removed: Vec::new(),
        };
        match creator.commit(commit).await? {
            CommitOutcome::Committed(e) => epoch = e,
            CommitOutcome::Stale(e) => {
                return Err(BenchError::Usage(format!("the room's commit was stale (epoch {e}): a name clash?")));
            }
        }
    }
    Ok(usize::try_from(epoch).unwrap_or(0))
}

/// Asks for the stored queue and reads `want` setup deliveries of the
/// group (Welcome, commits), acknowledging them.
async fn read_setup(client: &mut Client, group_id: &[u8], want: usize) -> Result<(), BenchError> {
    client.resume(0).await?;
    let mut got = 0;
    while got < want {
        let msg = timeout(SETUP_WAIT, client.recv()).await.map_err(|_| BenchError::Timeout("reading the setup"))??;
        if let ServerMessage::Group(GroupEvent::Message(d)) = msg {
            if d.group_id == group_id && d.kind != PayloadKind::Application {
                got += 1;
            }
            client.handled(d.seq).await?;
        }
    }
    client.flush_received().await?;
    Ok(())
}

/// Sends one group message of `len` bytes stamped with the time now.
async fn send(
    writer: &mut ClientWriter,
    group_id: &[u8],
    epoch: Instant,
    len: usize,
) -> Result<(), cipherline_client::ClientError> {
    let id = writer.next_id();
    let request = GroupRequest::Send { id, group_id: group_id.to_vec(), payload: payload(epoch, len) };
    writer.send_message(&ClientMessage::Group(request)).await
}

/// Sends this client's messages (paced or not), acknowledging what its
/// reader handled as it goes, then re-sends refused ones until the reader
/// is done or the deadline passed.
#[allow(clippy::too_many_arguments)]
async fn write_loop(
    mut writer: ClientWriter,
    opts: FanoutOptions,
    index: usize,
    group_id: Vec<u8>,
    len: usize,
    epoch: Instant,
    start: Instant,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
) -> Result<ClientWriter, String> {
    let failed = |e: cipherline_client::ClientError| format!("sending: {e}");
    for k in 0..opts.messages {
        if let Some(at) = due(start, opts.rate, index, opts.clients, k) {
            sleep_until(at.into()).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("the deadline passed while sending".into());
        }
        send(&mut writer, &group_id, epoch, len).await.map_err(failed)?;
        writer.handled(shared.handled.load(Ordering::Relaxed)).await.map_err(failed)?;
    }
    loop {
        // Woken by the reader (a retry owed, or done), or every tick to
        // acknowledge what it handled meanwhile.
        let _ = timeout(ACK_TICK, shared.wake.notified()).await;
        let late = tokio::time::Instant::now() >= deadline;
        writer.handled(shared.handled.load(Ordering::Relaxed)).await.map_err(failed)?;
        for _ in 0..shared.retries.swap(0, Ordering::Relaxed) {
            tokio::time::sleep(RETRY_DELAY).await;
            send(&mut writer, &group_id, epoch, len).await.map_err(failed)?;
        }
        if shared.done.load(Ordering::Relaxed) || late {
            writer.flush_received().await.map_err(failed)?;
            return Ok(writer);
        }
    }
}

/// Counts the group's application messages and the Acks until both are
/// complete or the deadline passes; returns what it saw and how many
/// recipients' queues were full for this client's messages.
async fn read_loop(
    mut reader: ClientReader,
    group_id: Vec<u8>,
    epoch: Instant,
    expected: u64,
    messages: u64,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
) -> (Received, u64) {
    let mut got =
        Received { latencies: Latencies::with_capacity(usize::try_from(expected).unwrap_or(0)), ..Received::default() };
    let (mut acked, mut full) = (0, 0);
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
            ServerMessage::Group(GroupEvent::Message(d)) => {
                if d.group_id == group_id && d.kind == PayloadKind::Application {
                    if let Some(us) = payload_latency_micros(epoch, &d.payload) {
                        got.latencies.push_micros(us);
                    }
                    got.count += 1;
                    got.last = Some(Instant::now());
                }
                // Handled once counted, as a client once it has shown it.
                shared.handled.fetch_max(d.seq, Ordering::Relaxed);
            }
            ServerMessage::Ack { full: f, .. } => {
                acked += 1;
                full += u64::from(f);
            }
            ServerMessage::Error { code: ErrorCode::RateLimited, .. } => {
                got.retries += 1;
                shared.retries.fetch_add(1, Ordering::Relaxed);
                shared.wake.notify_one();
            }
            ServerMessage::Error { code, text, .. } => {
                got.error = Some(format!("server error {code:?}: {text}"));
                break;
            }
            _ => {}
        }
    }
    shared.done.store(true, Ordering::Relaxed);
    shared.wake.notify_one();
    (got, full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padme_matches_the_rule() {
        assert_eq!(padme(1), 1);
        assert_eq!(padme(184), 192);
        assert_eq!(padme(192), 192);
        assert_eq!(padme(1000), 1024);
    }

    #[test]
    fn payload_carries_its_send_time_and_size() {
        let epoch = Instant::now();
        let p = payload(epoch, private_message_len(100));
        assert_eq!(p.len(), 270);
        std::thread::sleep(Duration::from_millis(3));
        let us = payload_latency_micros(epoch, &p).unwrap();
        assert!((3_000..1_000_000).contains(&us), "{us}");
        assert!(payload_latency_micros(epoch, b"short").is_none());
        assert!(payload_latency_micros(epoch, &[0xff; 40]).is_none());
    }

    #[test]
    fn setup_messages_fit_the_default_largest_message() {
        assert_eq!(setup_sizes(1, 2), (2_894, 3_280));
        for members in [2, 9, 50, 1000] {
            let (c, w) = setup_sizes(INVITE_BATCH, members);
            assert!(c + w <= SETUP_PAYLOAD_CAP && SETUP_PAYLOAD_CAP < 64 * 1024 - 1024, "{members}");
        }
    }

    #[test]
    fn rooms_are_unique_and_valid() {
        let (a, ga) = room_and_group("bench", 1);
        let (b, gb) = room_and_group("bench", 2);
        assert_ne!(a, b);
        assert_ne!(ga, gb);
        assert_eq!(ga.len(), 16);
        let (long, _) = room_and_group(&"r".repeat(40), u64::MAX);
        assert!(long.len() <= MAX_ROOM, "{long}");
        for r in [a, b, long] {
            assert!(cipherline_proto::app::valid_name(&r, MAX_ROOM), "{r}");
        }
    }

    /// The size the relay sees is the size a real client sends: one
    /// PrivateMessage from cipherline-e2e, per text size.
    #[test]
    fn payload_size_is_a_real_private_message() {
        use cipherline_e2e::{Member, Suite};
        use cipherline_proto::app::{E2eBody, E2eContent};
        use cipherline_proto::crypto::sign::IdentityKey;
        let key = |b| IdentityKey::ed25519_from_seed(&[b; 32]).unwrap();
        let alice = Member::new("alice", &key(1), Suite::XWing).unwrap();
        let bob = Member::new("bob", &key(2), Suite::XWing).unwrap();
        let mut conv = alice.create().unwrap();
        conv.add(&bob.key_packages(1).unwrap()).unwrap();
        conv.confirm().unwrap();
        for size in [17, 100, 1000, 5000] {
            let content = E2eContent { counter: 1, sent_at_ms: 1, body: E2eBody::Text("x".repeat(size)) };
            let wire = conv.encrypt(&content.encode().unwrap()).unwrap();
            assert_eq!(wire.len(), private_message_len(size), "text of {size} bytes");
        }
    }
}
