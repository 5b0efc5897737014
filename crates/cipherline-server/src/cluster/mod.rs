//! Several relay nodes on one store (docs/cluster.md, steps 2 to 4):
//! waking a stored user's sessions on other nodes, an ack floor that no
//! node lowers below what another node's sessions have read, and names in
//! use on any node.
//!
//! - **Wake.** After a message is appended to `inbox/<folded>`, this node
//!   publishes `<prefix>.wake.<hex of the folded name>` on the [`Bus`]; a
//!   node with a session of that stored user subscribes (from the
//!   session's first [`Watch`] to its last) and rings the sessions'
//!   `Notify` on a message. The bus delivers at most once, so every 5 s
//!   each watched user's sessions are rung anyway and re-read their queue
//!   if their window has room: a lost wake delays a message, never loses it.
//! - **Ack floor.** Each node writes `floor/<folded>/<node>` (its resumed
//!   sessions' minimum acknowledged position, and when) on every Resume
//!   and Received, and acknowledges the queue only up to the minimum over
//!   the floors of live nodes. A node is live while its heartbeat key
//!   `node/<node>` (written every [`HEARTBEAT`]) is younger than
//!   [`NODE_TTL`]; a dead node's floor entries are deleted by whoever reads
//!   them. A node's floor entry of a name goes when its last session of
//!   the name ends.
//!
//! - **Presence** (step 3, `presence`): a name in use on one node is
//!   taken on every node; see that module.
//! - **Live fan-out** (step 4, `fanout` and `roster`): open-room messages,
//!   direct messages to live-only users and Delivered receipts reach
//!   sessions on other nodes over `<prefix>.room.<hex>` and
//!   `<prefix>.user.<hex>`, at most once; member lists merge every node's.
//!
//! Node ids are random 64-bit numbers in hex, taken at each start and
//! never reused, so nothing a stopped node left behind is mistaken for a
//! live node's.

mod bus;
mod fanout;
mod presence;
mod roster;

pub use bus::{Bus, Incoming, LocalBus, LocalNet, NatsBus};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cipherline_proto::app::fold_name;
use cipherline_store::Store as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Me, Refusal};
use crate::mail::{Db, bounded, now_ms};

/// How often a node writes its heartbeat and re-reads its watched users'
/// queues.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose heartbeat is older than this is dead: its floors no longer
/// hold acknowledgements back. Three heartbeats, so one slow store write
/// does not kill a node; node clocks must agree to well within the
/// difference (10 s).
pub(crate) const NODE_TTL: Duration = Duration::from_secs(15);
/// A dead node's heartbeat key is deleted after this (by any node).
const NODE_FORGET: Duration = Duration::from_secs(120);
/// Bus messages waiting to be handled before more are dropped.
const INCOMING: usize = 4096;
/// Keys listed per store call.
const PAGE: usize = 256;
/// Per-node entries under one prefix read at most (far more nodes than
/// anyone runs); past it, acknowledging waits for floor entries to go.
const MAX_NODES: usize = 1024;
/// Stripes of the lock that orders a node's floor writes and deletes.
const STRIPES: usize = 64;

/// This node's part in a cluster.
pub(crate) struct Cluster {
    bus: Arc<dyn Bus>,
    store: Arc<Db>,
    /// The subject prefix (`cipherline` by default).
    prefix: String,
    /// This node's id, 16 hex digits.
    node: String,
    incoming: mpsc::Sender<Incoming>,
    /// Watched stored users (folded names) with their count of sessions
    /// here.
    watched: Mutex<HashMap<String, usize>>,
    /// Names with sessions here (folded), with their count: what this
    /// node's presence entries must say (step 3).
    present: Mutex<HashMap<String, usize>>,
    /// The user and room subjects this node subscribes to (step 4).
    followed: Mutex<HashSet<String>>,
    /// This node's live members by open room (folded), as its roster
    /// entries must say (step 4).
    rosters: Mutex<HashMap<String, Vec<String>>>,
    /// A floor put and the delete when the name's last session ends must
    /// not overtake each other (a late delete would drop a live floor).
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Lowercase hex of `s`'s bytes: a NATS token for any name.
fn hex(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes().fold(String::with_capacity(s.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The string whose bytes `hex` spells, if it is hex of UTF-8.
fn unhex(hex: &str) -> Option<String> {
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let out: Option<Vec<u8>> = bytes.chunks(2).map(|p| Some((digit(*p.first()?)? << 4) | digit(*p.get(1)?)?)).collect();
    String::from_utf8(out?).ok()
}

fn node_key(node: &str) -> String {
    format!("node/{node}")
}

fn floor_prefix(folded: &str) -> String {
    format!("floor/{folded}/")
}

/// A floor entry: the position, then when it was written (ms), big-endian.
fn encode_floor(floor: u64) -> Vec<u8> {
    [floor.to_be_bytes(), now_ms().to_be_bytes()].concat()
}

fn decode_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

fn random_node_id() -> Result<String, String> {
    use cipherline_proto::crypto::Rng as _;
    let mut bytes = [0u8; 8];
    cipherline_proto::crypto::SystemRng.try_fill(&mut bytes).map_err(|_| "cluster: no randomness for the node id")?;
    Ok(format!("{:016x}", u64::from_be_bytes(bytes)))
}

/// Holds a stored user's subscription on this node while a session of it
/// is connected here; the last one dropped unsubscribes and takes this
/// node's floor entry of the user away.
pub(crate) struct Watch {
    cluster: Arc<Cluster>,
    folded: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let last = {
            let mut watched = locked(&self.cluster.watched);
            let Some(n) = watched.get_mut(&self.folded) else { return };
            *n = n.saturating_sub(1);
            let last = *n == 0;
            if last {
                watched.remove(&self.folded);
            }
            last
        };
        if !last {
            return;
        }
        self.cluster.bus.unsubscribe(&self.cluster.wake_subject(&self.folded));
        let (cluster, folded) = (self.cluster.clone(), self.folded.clone());
        // Drop cannot wait: the delete runs on its own (bounded by the
        // store timeout), ordered with this name's floor puts.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { cluster.forget_floor(&folded).await });
        }
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cluster {
    /// This node's cluster handle on `bus` and `store`; the receiver is
    /// what [`run`] handles.
    pub(crate) fn new(
        bus: Arc<dyn Bus>,
        store: Arc<Db>,
        prefix: &str,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Incoming>), String> {
        let (incoming, rx) = mpsc::channel(INCOMING);
        let node = random_node_id()?;
        tracing::info!(node = %node, "cluster node started");
        let cluster = Cluster {
            bus,
            store,
            prefix: prefix.to_owned(),
            node,
            incoming,
            watched: Mutex::new(HashMap::new()),
            present: Mutex::new(HashMap::new()),
            followed: Mutex::new(HashSet::new()),
            rosters: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        };
        Ok((Arc::new(cluster), rx))
    }

    fn wake_subject(&self, folded: &str) -> String {
        format!("{}.wake.{}", self.prefix, hex(folded))
    }

    fn floor_key(&self, folded: &str) -> String {
        format!("{}{}", floor_prefix(folded), self.node)
    }

    /// Orders this node's floor writes of `folded` (see `stripes`).
    async fn ordered(&self, folded: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let n = folded.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        match self.stripes.get(n % STRIPES) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Something was appended to `name`'s queue: tells the other nodes.
    pub(crate) fn woke(&self, name: &str) {
        self.bus.publish(self.wake_subject(&fold_name(name)), Vec::new());
    }

    /// Watches stored user `name` for as long as the returned guard lives.
    pub(crate) fn watch(self: &Arc<Self>, name: &str) -> Watch {
        let folded = fold_name(name);
        let first = {
            let mut watched = locked(&self.watched);
            let n = watched.entry(folded.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            self.bus.subscribe(&self.wake_subject(&folded), self.incoming.clone());
        }
        Watch { cluster: self.clone(), folded }
    }

    fn watched_names(&self) -> Vec<String> {
        locked(&self.watched).keys().cloned().collect()
    }

    async fn forget_floor(&self, folded: &str) {
        let _order = self.ordered(folded).await;
        // A session of the name that started meanwhile keeps the entry.
        if locked(&self.watched).contains_key(folded) {
            return;
        }
        if let Err((_, why)) = bounded(self.store.delete(&self.floor_key(folded))).await {
            tracing::warn!(node = %self.node, "could not delete a floor entry: {why}");
        }
    }

    /// Records this node's floor `local` of user `folded` and returns how
    /// far its queue may be acknowledged: the minimum over live nodes.
    async fn floor(&self, folded: &str, local: u64) -> Result<u64, Refusal> {
        {
            let _order = self.ordered(folded).await;
            bounded(self.store.put(&self.floor_key(folded), encode_floor(local))).await?;
        }
        let mut min = local;
        let complete = self
            .scan_elsewhere(&floor_prefix(folded), |value| {
                // An entry that vanished meanwhile (its node's last session
                // ended) holds nothing back; a damaged one holds all.
                min = min.min(decode_u64(value).unwrap_or(0));
                true
            })
            .await?;
        if !complete {
            // Cannot see every node: acknowledge nothing more.
            return Ok(0);
        }
        Ok(min)
    }

    /// Calls `each` with the value of every key under `prefix` (one per
    /// node, `prefix<node>`) that another live node wrote, deleting dead
    /// nodes' keys on the way (a dead node never writes again). Stops when
    /// `each` returns false; returns false if there were more than
    /// [`MAX_NODES`] keys, so a caller never acts on a partial view unaware.
    async fn scan_elsewhere(&self, prefix: &str, mut each: impl FnMut(&[u8]) -> bool) -> Result<bool, Refusal> {
        let (mut after, mut seen) = (String::new(), 0usize);
        let mut alive: HashMap<String, bool> = HashMap::new();
        loop {
            let keys = bounded(self.store.keys(prefix, &after, PAGE)).await?;
            let Some(last) = keys.last().cloned() else { return Ok(true) };
            for key in keys {
                seen += 1;
                if seen > MAX_NODES {
                    return Ok(false);
                }
                let Some(node) = key.strip_prefix(prefix) else { continue };
                if node == self.node {
                    continue;
                }
                let live = match alive.get(node) {
                    Some(live) => *live,
                    None => {
                        let live = self.is_live(node).await?;
                        alive.insert(node.to_owned(), live);
                        live
                    }
                };
                if !live {
                    bounded(self.store.delete(&key)).await?;
                    continue;
                }
                // An entry deleted meanwhile is skipped.
                if let Some((value, _)) = bounded(self.store.get(&key)).await?
                    && !each(&value)
                {
                    return Ok(true);
                }
            }
            after = last;
        }
    }

    /// Whether `node`'s heartbeat is younger than [`NODE_TTL`].
    async fn is_live(&self, node: &str) -> Result<bool, Refusal> {
        let beat = bounded(self.store.get(&node_key(node))).await?;
        let at = beat.and_then(|(v, _)| decode_u64(&v)).unwrap_or(0);
        Ok(now_ms().saturating_sub(at) < duration_ms(NODE_TTL))
    }

    /// Writes this node's heartbeat (`node/<node>`, the time in ms). The
    /// server writes the first one before it accepts a connection, so no
    /// floor of this node is ever read while it looks dead.
    pub(crate) async fn beat(&self) {
        if let Err((_, why)) = bounded(self.store.put(&node_key(&self.node), now_ms().to_be_bytes().to_vec())).await {
            tracing::warn!(node = %self.node, "could not write the heartbeat: {why}");
        }
    }

    /// Deletes heartbeat keys of nodes dead for [`NODE_FORGET`].
    async fn forget_dead_nodes(&self) -> Result<(), Refusal> {
        let mut after = String::new();
        loop {
            let keys = bounded(self.store.keys("node/", &after, PAGE)).await?;
            let Some(last) = keys.last().cloned() else { return Ok(()) };
            for key in keys {
                let at = bounded(self.store.get(&key)).await?.and_then(|(v, _)| decode_u64(&v)).unwrap_or(0);
                if now_ms().saturating_sub(at) > duration_ms(NODE_FORGET) {
                    bounded(self.store.delete(&key)).await?;
                }
            }
            after = last;
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Hub {
    /// Something was stored for `name`: tells other nodes, if any.
    pub(crate) fn publish_wake(&self, name: &str) {
        if let Some(cluster) = &self.cluster {
            cluster.woke(name);
        }
    }

    /// With a cluster: watches stored user `name` while the guard lives.
    pub(crate) fn watch(&self, name: &str) -> Option<Watch> {
        self.cluster.as_ref().map(|c| c.watch(name))
    }

    /// Connection `me` acknowledged its user's stored queue up to `upto`;
    /// returns how far the queue may be deleted: every connection of the
    /// user that resumed, here and on every live node, has read that far.
    pub(crate) async fn floor(&self, me: &Me, upto: u64) -> Result<u64, Refusal> {
        let local = self.acknowledged(me, upto);
        match &self.cluster {
            Some(cluster) => cluster.floor(&fold_name(&me.name), local).await,
            None => Ok(local),
        }
    }
}

/// Handles what the bus brings (wakes for watched users) and writes the
/// heartbeat, until `stop`; then takes the heartbeat away, so that other
/// nodes stop counting this one's floors at once.
pub(crate) async fn run(
    hub: Arc<Hub>,
    cluster: Arc<Cluster>,
    mut incoming: mpsc::Receiver<Incoming>,
    stop: CancellationToken,
) {
    let wake_prefix = format!("{}.wake.", cluster.prefix);
    let user_prefix = format!("{}.user.", cluster.prefix);
    let room_prefix = format!("{}.room.", cluster.prefix);
    let beats = {
        let (cluster, hub, stop) = (cluster.clone(), hub.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                cluster.beat().await;
                // The periodic re-read that makes up for lost wakes.
                for name in cluster.watched_names() {
                    hub.ring(&name);
                }
                n += 1;
                if n.is_multiple_of(12)
                    && let Err((_, why)) = cluster.forget_dead_nodes().await
                {
                    tracing::warn!("could not clean up dead nodes: {why}");
                }
            }
        })
    };
    loop {
        tokio::select! {
            msg = incoming.recv() => {
                let Some((subject, payload)) = msg else { break };
                if let Some(name) = subject.strip_prefix(&wake_prefix).and_then(unhex) {
                    hub.ring(&name);
                } else if let Some(name) = subject.strip_prefix(&user_prefix).and_then(unhex) {
                    hub.relayed_to_user(&name, &payload);
                } else if let Some(room) = subject.strip_prefix(&room_prefix).and_then(unhex) {
                    hub.relayed_to_room(&room, &payload);
                }
            }
            () = stop.cancelled() => break,
        }
    }
    beats.abort();
    let _ = bounded(cluster.store.delete(&node_key(&cluster.node))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_travel_in_hex_and_bad_hex_is_refused() {
        assert_eq!(hex("al.ice"), "616c2e696365");
        assert_eq!(unhex(&hex("zoë-1")).as_deref(), Some("zoë-1"));
        assert_eq!(unhex("6"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("ff"), None, "not UTF-8");
    }

    #[test]
    fn floors_decode_strictly_enough() {
        assert_eq!(decode_u64(&encode_floor(42)), Some(42));
        assert_eq!(decode_u64(&[1, 2]), None);
    }
}
