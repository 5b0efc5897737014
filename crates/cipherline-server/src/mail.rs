//! Store-and-forward (PROTOCOL.md §13.9): every user whose name an identity
//! key owns has a stored queue (`inbox/<folded name>`); messages for it are
//! committed to the store before the sender's Ack, read from the queue by
//! each of the user's connections in order, and deleted only when a client
//! sends Received. Room membership of such users is kept in the store's
//! key-value map (`room/<folded room>`), so it outlasts their connections.
//!
//! A stored message is the encoded Message frame with `seq` 0, after one
//! flag byte (bit 0: the sender asked for a delivery receipt). The frame's
//! last eight bytes are the `seq` field, filled in on the way out.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cipherline_proto::app::{ErrorCode, GroupEvent, MAX_MEMBERS, PayloadKind, ServerMessage, fold_name, valid_name};
use cipherline_store::{AnyStore, Appended, Quota, Store, StoreError, StoredMessage};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Me, Refusal};

/// The store engine in use.
pub(crate) type Db = AnyStore;

/// Stored room members: folded room name to member names.
pub(crate) type RoomMembers = HashMap<String, BTreeSet<String>>;

/// Stored messages a connection may have been sent and not yet
/// acknowledged; it is sent more as Received frees the window.
pub(crate) const WINDOW: usize = 256;

const ROOM_PREFIX: &str = "room/";
const EPOCH_KEY: &str = "server/epoch";
/// Message ids are the run's epoch above this many bits of count.
const ID_BITS: u32 = 40;
/// The highest queue position the store can hold (SQLite's signed range).
const MAX_SEQ: u64 = i64::MAX as u64;

/// The next count of `counter` below 2^40 that is not 0 (a count that
/// wraps skips 0, so no id is a multiple of 2^40).
pub(crate) fn counted_id(counter: &AtomicU64) -> u64 {
    loop {
        let n = (counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1)) & ((1 << ID_BITS) - 1);
        if n != 0 {
            return n;
        }
    }
}

/// Flag byte of a stored message: the sender wants a receipt.
const WANTS_RECEIPT: u8 = 1;

/// How long any one store call may take before the request is answered
/// with an error (the call itself may still complete later).
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters for logs.
#[derive(Default)]
pub(crate) struct Counters {
    /// Copies not stored because a queue or the store was full.
    pub(crate) full: AtomicU64,
    /// Copies deleted unread because their time to live ran out.
    pub(crate) expired: AtomicU64,
}

/// The server's store-and-forward layer.
pub(crate) struct Mail {
    pub(crate) store: Arc<Db>,
    /// Blobs: in the SQLite store and its blob directory, or on NATS
    /// JetStream with the queues (docs/cluster.md, step 8): the same
    /// store as `store`.
    pub(crate) blobs: Arc<Db>,
    quota: Quota,
    epoch: u64,
    next: AtomicU64,
    pub(crate) counters: Counters,
    /// The delivery service of end-to-end conversations.
    pub(crate) groups: crate::groups::Groups,
    /// Test-only: a relay that tampers with group messages (`RunOptions`).
    pub(crate) group_tamper: Option<crate::GroupTamper>,
    /// Where the blobs that held fetches wait on stand (§13.12).
    pub(crate) progress: crate::blobs::Progress,
    /// Other servers share the store (`RunOptions::shared_store`).
    pub(crate) shared: bool,
}

/// The queue holding `name`'s stored messages.
pub(crate) fn inbox_queue(name: &str) -> String {
    format!("inbox/{}", fold_name(name))
}

fn room_key(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

fn store_failed(e: &StoreError) -> Refusal {
    tracing::error!(error = %e, "store request failed");
    (ErrorCode::StoreFailed, "the server could not store your message; it was not delivered".into())
}

fn timed_out() -> Refusal {
    tracing::error!("store request timed out");
    (ErrorCode::StoreFailed, "the server's store did not answer in time; the message may not be delivered".into())
}

pub(crate) async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, Refusal> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_failed(&e)),
        Err(_) => Err(timed_out()),
    }
}

/// Room members as kept in the store: one valid name per line, sorted.
fn parse_members(room: &str, value: &[u8]) -> Result<BTreeSet<String>, String> {
    let text = std::str::from_utf8(value).map_err(|_| format!("members of room {room:?} are not UTF-8"))?;
    let mut members = BTreeSet::new();
    for (i, name) in text.split('\n').filter(|l| !l.is_empty()).enumerate() {
        if !valid_name(name, cipherline_proto::app::MAX_NAME) || !members.insert(name.to_owned()) {
            return Err(format!("member {} of room {room:?} is not a valid name or is listed twice", i + 1));
        }
    }
    Ok(members)
}

fn encode_members(members: &BTreeSet<String>) -> Vec<u8> {
    members.iter().map(String::as_str).collect::<Vec<_>>().join("\n").into_bytes()
}

impl Mail {
    /// Starts a run on `store`: takes the next id epoch and loads every
    /// room's stored members (a damaged entry stops the start).
    pub(crate) async fn open(store: Arc<Db>, limits: &crate::Limits) -> Result<(Self, RoomMembers), String> {
        let err = |e: StoreError| format!("store: {e}");
        let epoch = loop {
            let current = store.get(EPOCH_KEY).await.map_err(err)?;
            let (value, rev) = match current {
                Some((v, rev)) => {
                    let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| "store: damaged id epoch".to_owned())?;
                    (u64::from_be_bytes(bytes), Some(rev))
                }
                // A new store (or one an operator deleted) starts at a random
                // epoch, so its ids do not repeat those of an earlier store
                // that clients remember as shown.
                None => (random_epoch_start()?, None),
            };
            let next = value + 1;
            if next >= 1 << (64 - ID_BITS) {
                return Err("store: message id epochs exhausted".into());
            }
            match store.cas(EPOCH_KEY, rev, next.to_be_bytes().to_vec()).await {
                Ok(_) => break next,
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(err(e)),
            }
        };
        let mut rooms = HashMap::new();
        let mut after = String::new();
        loop {
            let keys = store.keys(ROOM_PREFIX, &after, 500).await.map_err(err)?;
            let Some(last) = keys.last().cloned() else { break };
            for key in keys {
                let room = key.get(ROOM_PREFIX.len()..).unwrap_or_default().to_owned();
                if let Some((value, _)) = store.get(&key).await.map_err(err)? {
                    let members = parse_members(&room, &value).map_err(|e| format!("store: {e}"))?;
                    if !members.is_empty() {
                        rooms.insert(room, members);
                    }
                }
            }
            after = last;
        }
        let quota = Quota {
            max_messages: limits.max_queued_messages_per_recipient,
            max_bytes: limits.max_queued_store_bytes_per_recipient,
            max_total_bytes: limits.max_store_bytes,
        };
        let groups = crate::groups::Groups::load(&store).await?;
        tracing::info!(epoch, rooms = rooms.len(), e2e_rooms = groups.room_count(), "store-and-forward ready");
        Ok((
            Mail {
                blobs: store.clone(),
                store,
                quota,
                epoch,
                next: AtomicU64::new(0),
                counters: Counters::default(),
                groups,
                group_tamper: None,
                progress: crate::blobs::Progress::default(),
                shared: false,
            },
            rooms,
        ))
    }

    /// A server message id, unique across runs of this store.
    /// Never a multiple of 2^40 (PROTOCOL.md: clients name other things
    /// by those).
    pub(crate) fn next_id(&self) -> u64 {
        (self.epoch << ID_BITS) | counted_id(&self.next)
    }

    /// Stores `frame` (an encoded Message with `seq` 0) for each of
    /// `recipients`; returns what happened for each, in order.
    pub(crate) async fn store(
        &self,
        recipients: &[String],
        frame: &[u8],
        wants_receipt: bool,
        now_ms: u64,
    ) -> Result<Vec<Appended>, Refusal> {
        let mut payload = Vec::with_capacity(frame.len() + 1);
        payload.push(if wants_receipt { WANTS_RECEIPT } else { 0 });
        payload.extend_from_slice(frame);
        let queues = recipients.iter().map(|r| inbox_queue(r)).collect();
        let result = bounded(self.store.append_each(queues, payload, now_ms, self.quota)).await?;
        for (name, appended) in recipients.iter().zip(&result) {
            let which = match appended {
                Appended::Stored(_) => continue,
                Appended::QueueFull => "the recipient's queue",
                Appended::StoreFull => "the store",
            };
            let total = self.counters.full.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(recipient = %name, total, "message not stored: {which} is full");
        }
        Ok(result)
    }

    /// `room`'s stored members as the store holds them now (empty: none).
    pub(crate) async fn room_members(&self, room: &str) -> Result<BTreeSet<String>, Refusal> {
        match bounded(self.store.get(&room_key(room))).await? {
            Some((value, _)) => parse_members(room, &value).map_err(|e| {
                tracing::error!("store: {e}");
                (ErrorCode::StoreFailed, "the server could not read the room's members; try again".into())
            }),
            None => Ok(BTreeSet::new()),
        }
    }

    /// Adds `name` to `room`'s stored members (read, change, compare-and-set).
    pub(crate) async fn join_room(&self, room: &str, name: &str) -> Result<(), Refusal> {
        self.update_room(room, |members| {
            if members.len() >= MAX_MEMBERS {
                return Err((
                    ErrorCode::TooManyRooms,
                    format!("room {room:?} has {MAX_MEMBERS} members, the most a room can have"),
                ));
            }
            members.insert(name.to_owned());
            Ok(())
        })
        .await
    }

    /// Takes `name` out of `room`'s stored members.
    pub(crate) async fn leave_room(&self, room: &str, name: &str) -> Result<(), Refusal> {
        self.update_room(room, |members| {
            members.remove(name);
            Ok(())
        })
        .await
    }

    async fn update_room(
        &self,
        room: &str,
        change: impl Fn(&mut BTreeSet<String>) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let key = room_key(room);
        let failed = || (ErrorCode::StoreFailed, "the server could not record the room's members; try again".into());
        // Another node may change the same room meanwhile: retry on a
        // conflict, a few times.
        for _ in 0..8 {
            let found = bounded(self.store.get(&key)).await?;
            let (mut members, rev) = match found {
                Some((value, rev)) => (
                    parse_members(room, &value).map_err(|e| {
                        tracing::error!("store: {e}");
                        failed()
                    })?,
                    Some(rev),
                ),
                None => (BTreeSet::new(), None),
            };
            let before = members.clone();
            change(&mut members)?;
            if members == before {
                return Ok(());
            }
            if members.is_empty() {
                // The last stored member left: the room's key goes, so
                // joining and leaving room after room leaves nothing behind.
                // Only if nobody (on another node) joined meanwhile: a
                // conditional delete, retried on a change like the `cas`.
                let Some(rev) = rev else { return Ok(()) };
                if bounded(self.store.delete_if(&key, rev)).await? {
                    return Ok(());
                }
                continue;
            }
            let value = encode_members(&members);
            match tokio::time::timeout(STORE_TIMEOUT, self.store.cas(&key, rev, value)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(StoreError::Conflict { .. })) => {}
                Ok(Err(e)) => return Err(store_failed(&e)),
                Err(_) => return Err(timed_out()),
            }
        }
        Err(failed())
    }

    /// Deletes the messages older than `ttl`, and tells each one's sender
    /// that has a stored queue with an Expired notice in that queue (so a
    /// sender learns it even if it is offline now); returns how many.
    async fn expire(&self, hub: &Hub, ttl: Duration) -> Result<u64, StoreError> {
        const BATCH: usize = 500;
        let now = now_ms();
        let cutoff = now.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut total = 0u64;
        loop {
            let batch = self.store.expire(cutoff, BATCH).await?;
            let n = batch.len();
            for e in batch {
                total += 1;
                let Some(to) = e.queue.strip_prefix("inbox/") else { continue };
                let Some((_, frame)) = e.message.payload.split_first() else { continue };
                // Only messages are reported (chat and end-to-end
                // application messages); an expired notice just goes.
                let Some(Ok(msg)) = frame.get(4..).map(ServerMessage::decode) else { continue };
                let Some((from, id)) = sender_of(msg) else { continue };
                // Maybe bound through another node since this one started.
                hub.look_up(&from).await;
                if !hub.has_inbox(&from) {
                    continue;
                }
                let notice = ServerMessage::Expired { id, to: to.to_owned(), seq: 0 };
                let Ok(frame) = notice.encode() else { continue };
                let sender = vec![fold_name(&from)];
                if let Ok(result) = self.store(&sender, &frame, false, now).await
                    && result.iter().any(|r| matches!(r, Appended::Stored(_)))
                {
                    hub.wake(&from);
                }
            }
            if n < BATCH {
                break;
            }
        }
        if total > 0 {
            let all = self.counters.expired.fetch_add(total, Ordering::Relaxed) + total;
            tracing::warn!(messages = total, total = all, "stored messages expired unread (message_ttl_secs)");
        }
        Ok(total)
    }
}

/// Who sent a stored message and its id, for a receipt or an Expired
/// notice: a chat message or an end-to-end application message (not a
/// commit, a Welcome or a notice).
fn sender_of(msg: ServerMessage) -> Option<(String, u64)> {
    match msg {
        ServerMessage::Message(d) => Some((d.from, d.id)),
        ServerMessage::Group(GroupEvent::Message(d)) if d.kind == PayloadKind::Application => Some((d.from, d.id)),
        _ => None,
    }
}

/// A random first epoch in the lower half of the range (room for 2^23
/// restarts after it).
fn random_epoch_start() -> Result<u64, String> {
    use cipherline_proto::crypto::Rng as _;
    let mut bytes = [0u8; 8];
    cipherline_proto::crypto::SystemRng
        .try_fill(&mut bytes)
        .map_err(|_| "store: no randomness for the message id epoch".to_owned())?;
    Ok(u64::from_be_bytes(bytes) % (1 << (64 - ID_BITS - 1)))
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Expires stored messages past `ttl` and blobs past `blob_ttl` now and
/// then every minute (every quarter of the shorter time to live if that is
/// shorter, at least every second) until `stop`.
pub(crate) async fn expire_loop(hub: Arc<Hub>, ttl: Duration, blob_ttl: Duration, stop: CancellationToken) {
    let Some(mail) = hub.mail.clone() else { return };
    let every = (ttl.min(blob_ttl) / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = mail.expire(&hub, ttl).await {
                    tracing::error!(error = %e, "expiring stored messages failed");
                }
                if let Err(e) = crate::blobs::expire(&mail, blob_ttl).await {
                    tracing::error!(error = %e, "expiring blobs failed");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// A receipt owed to a sender: its message id and who received it.
pub(crate) struct Receipt {
    pub(crate) sender: String,
    pub(crate) id: u64,
}

/// One connection's reading position in its user's stored queue.
pub(crate) struct Inbox {
    queue: String,
    /// Rung when new messages are stored for the user.
    pub(crate) wake: Arc<Notify>,
    /// With other nodes: keeps the user's wakes coming to this node.
    _watch: Option<crate::cluster::Watch>,
    /// Highest position sent on this connection.
    sent: u64,
    /// Sent and not acknowledged: position and, if the sender wants a
    /// receipt, who sent which id.
    unacked: VecDeque<(u64, Option<(String, u64)>)>,
    /// Whether the client asked for its stored messages (Resume).
    resumed: bool,
}

impl Inbox {
    /// `name`'s queue, not read until the client sends Resume; `watch`
    /// (with other nodes) for as long as the connection lasts.
    pub(crate) fn new(name: &str, wake: Arc<Notify>, watch: Option<crate::cluster::Watch>) -> Self {
        Inbox { queue: inbox_queue(name), wake, _watch: watch, sent: 0, unacked: VecDeque::new(), resumed: false }
    }

    /// Whether the client resumed and the window has room for more.
    pub(crate) fn wants_more(&self) -> bool {
        self.resumed && self.unacked.len() < WINDOW
    }

    /// Resume: delivery starts after `after`, which the client already
    /// has (so it is acknowledged); the first Resume counts, later ones
    /// only acknowledge.
    pub(crate) async fn resume(&mut self, mail: &Mail, hub: &Hub, me: &Me, after: u64) -> Result<(), Refusal> {
        // The store counts positions in a signed 64-bit range.
        let after = after.min(MAX_SEQ);
        if self.resumed {
            // A later Resume only acknowledges, like Received.
            self.received(mail, hub, me, after).await?;
            return Ok(());
        }
        self.resumed = true;
        self.sent = after;
        // With other nodes, this also records where this node's sessions
        // are, so that theirs do not delete what ours have not read.
        let floor = hub.floor(me, after).await?;
        if floor > 0 {
            bounded(mail.store.ack(&self.queue, floor)).await?;
        }
        // Whatever is stored already is there to be read now.
        self.wake.notify_one();
        Ok(())
    }

    /// The next stored messages to send, each with its `seq` filled in.
    pub(crate) async fn fill(&mut self, mail: &Mail) -> Result<Vec<Vec<u8>>, Refusal> {
        let room = WINDOW.saturating_sub(self.unacked.len());
        if room == 0 {
            return Ok(Vec::new());
        }
        let batch: Vec<StoredMessage> = bounded(mail.store.read(&self.queue, self.sent, room)).await?;
        if batch.len() == room {
            // There may be more once the window opens (Received rings again).
            self.wake.notify_one();
        }
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            self.sent = self.sent.max(m.seq);
            let Some((&flags, frame)) = m.payload.split_first() else { continue };
            let mut frame = frame.to_vec();
            let Some(at) = frame.len().checked_sub(8) else { continue };
            if let Some(seq) = frame.get_mut(at..) {
                seq.copy_from_slice(&m.seq.to_be_bytes());
            }
            let receipt = if flags & WANTS_RECEIPT != 0 {
                match frame.get(4..).map(ServerMessage::decode) {
                    Some(Ok(msg)) => sender_of(msg),
                    _ => None,
                }
            } else {
                None
            };
            self.unacked.push_back((m.seq, receipt));
            out.push(frame);
        }
        Ok(out)
    }

    /// The client handled everything up to `upto`: deletes it from the
    /// store; returns the receipts owed. A position beyond what this
    /// connection was sent counts only up to what it was sent.
    pub(crate) async fn received(
        &mut self,
        mail: &Mail,
        hub: &Hub,
        me: &Me,
        upto: u64,
    ) -> Result<Vec<Receipt>, Refusal> {
        let upto = upto.min(self.sent);
        if self.unacked.front().is_none_or(|(seq, _)| *seq > upto) {
            return Ok(Vec::new());
        }
        // Deleted only once every connection of the user that resumed has
        // it: each gets every message stored while it is connected.
        let floor = hub.floor(me, upto).await?;
        if floor > 0 {
            bounded(mail.store.ack(&self.queue, floor)).await?;
        }
        let mut receipts = Vec::new();
        while let Some((seq, receipt)) = self.unacked.front() {
            if *seq > upto {
                break;
            }
            if let Some((sender, id)) = receipt {
                receipts.push(Receipt { sender: sender.clone(), id: *id });
            }
            self.unacked.pop_front();
        }
        // The window has room again.
        self.wake.notify_one();
        Ok(receipts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_parsed_strictly() {
        let ok = parse_members("r", b"alice\nbob").unwrap();
        assert_eq!(ok.into_iter().collect::<Vec<_>>(), vec!["alice", "bob"]);
        assert!(parse_members("r", b"").unwrap().is_empty());
        assert!(parse_members("r", b"alice\nbad name").is_err());
        assert!(parse_members("r", b"alice\nalice").is_err());
        assert!(parse_members("r", &[0xff]).is_err());
        let set: BTreeSet<String> = ["b".to_owned(), "a".to_owned()].into();
        assert_eq!(parse_members("r", &encode_members(&set)).unwrap(), set);
    }

    #[test]
    fn a_count_that_wraps_skips_ids_that_are_multiples_of_2_40() {
        let counter = AtomicU64::new((1 << ID_BITS) - 2);
        assert_eq!(counted_id(&counter), (1 << ID_BITS) - 1);
        // The next count is 2^40: masked it would be 0, so it is skipped.
        assert_eq!(counted_id(&counter), 1);
        let counter = AtomicU64::new(0);
        assert_eq!(counted_id(&counter), 1);
    }
}
