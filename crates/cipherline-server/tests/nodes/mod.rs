//! Relay nodes sharing one store, and the cluster scenarios that run the
//! same on an in-process bus (`tests/cluster.rs`) and on a real
//! nats-server (`tests/cluster_nats.rs`) (docs/cluster.md, step 2).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::Client;
use cipherline_proto::app::{ServerMessage, Target};
use cipherline_server::cluster::Bus;
use cipherline_server::{Identities, Limits, NatsStore, RunOptions, SqliteStore};
use cipherline_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::common::{connect_as, key};

pub mod fanout;

/// A running relay node.
pub struct Node {
    pub addr: String,
    /// The node's name bindings, as it knows them.
    pub identities: Arc<Identities>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Node {
    /// A node on `sqlite` (and `nats` for queues and keys, if given),
    /// talking to the others over `bus` (the NATS default if `None`).
    pub async fn start(sqlite: Arc<SqliteStore>, nats: Option<Arc<NatsStore>>, bus: Option<Arc<dyn Bus>>) -> Node {
        Node::start_limited(sqlite, nats, bus, Limits::default()).await
    }

    /// [`Node::start`] with `limits` (the per-address ones lifted).
    pub async fn start_limited(
        sqlite: Arc<SqliteStore>,
        nats: Option<Arc<NatsStore>>,
        bus: Option<Arc<dyn Bus>>,
        limits: Limits,
    ) -> Node {
        let identities = Arc::new(Identities::open_in_memory());
        let options = RunOptions {
            identities: identities.clone(),
            store: Some(sqlite),
            nats_store: nats,
            cluster: bus,
            ..RunOptions::default()
        };
        let (addr, stop, task) = crate::common::start_node(crate::common::node_limits(limits), options).await;
        Node { addr, identities, stop: Some(stop), task }
    }

    /// Stops the node gracefully.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        timeout(Duration::from_secs(15), self.task).await.unwrap().unwrap();
    }
}

/// A name bound through node `a` is known on node `b` within seconds,
/// before anything there asked for it (`<prefix>.bound`, docs/cluster.md
/// step 1c); a name bound nowhere is not.
pub async fn a_binding_made_on_one_node_is_learned_by_another(a: &Node, b: &Node) {
    assert!(!b.identities.is_owned("zed"), "not bound yet");
    let _zed = connect_as(&a.addr, "Zed", Some(key(61))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.identities.is_owned("zed") {
        assert!(Instant::now() < deadline, "node b never learned zed's binding");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _keyless = connect_as(&a.addr, "yan", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.identities.is_owned("yan"), "a client without a key binds nothing");
}

/// A keyed (stored) user connected and resumed from the start.
pub async fn user(addr: &str, name: &str, seed: u8) -> Client {
    let mut c = connect_as(addr, name, Some(key(seed))).await.unwrap();
    c.resume(0).await.unwrap();
    // Resume has no answer: a ping round trip makes sure the server has
    // handled it (and so subscribed to the user's wakes) before going on.
    ping(&mut c).await;
    c
}

async fn ping(c: &mut Client) {
    c.ping(7).await.unwrap();
    loop {
        if let ServerMessage::Pong { .. } = timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap() {
            return;
        }
    }
}

/// The next chat message within `within`, as (text, seq).
async fn message_within(c: &mut Client, within: Duration) -> Option<(String, u64)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => return None,
            Ok(m) => {
                if let ServerMessage::Message(d) = m.unwrap() {
                    return Some((d.text, d.seq));
                }
            }
        }
    }
}

async fn stored(store: &impl Store, queue: &str) -> u64 {
    store.queue_stats(queue).await.unwrap().messages
}

/// alice on node `a` gets at once what bob sends her on node `b`: each of
/// three messages well within the 5 s re-read that covers lost wakes (a
/// re-read can cover at most one of them), so only the wake explains it.
pub async fn a_message_sent_on_one_node_reaches_the_recipient_on_another_at_once(a: &str, b: &str) {
    let mut alice = user(a, "alice", 1).await;
    let mut bob = user(b, "bob", 2).await;
    for i in 0..3 {
        let started = Instant::now();
        bob.send_acked(Target::User("alice".into()), &format!("hi {i}")).await.unwrap();
        let got = message_within(&mut alice, Duration::from_millis(1200)).await;
        let (text, seq) = got.unwrap_or_else(|| panic!("message {i} woke alice's node at once"));
        assert_eq!(text, format!("hi {i}"));
        alice.handled(seq).await.unwrap();
        alice.flush_received().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        // Spread the sends over more than one re-read period.
        tokio::time::sleep(Duration::from_millis(2000)).await;
    }
}

/// alice is connected on both nodes; what her session on `a` acknowledges
/// stays stored until her session on `b` has it too; then it goes.
pub async fn received_on_one_node_does_not_delete_what_a_session_on_another_has_not(
    a: &str,
    b: &str,
    store: &impl Store,
) {
    let mut on_a = user(a, "carol", 3).await;
    let mut on_b = user(b, "carol", 3).await;
    let mut dave = user(a, "dave", 4).await;
    for i in 0..3 {
        dave.send_acked(Target::User("carol".into()), &format!("m{i}")).await.unwrap();
    }
    let mut last = 0;
    for i in 0..3 {
        let (text, seq) = message_within(&mut on_a, Duration::from_secs(10)).await.expect("carol on a");
        assert_eq!(text, format!("m{i}"));
        last = seq;
    }
    on_a.handled(last).await.unwrap();
    on_a.flush_received().await.unwrap();
    ping(&mut on_a).await;
    assert_eq!(stored(store, "inbox/carol").await, 3, "carol's session on b has not acknowledged them");
    for i in 0..3 {
        let (text, seq) = message_within(&mut on_b, Duration::from_secs(10)).await.expect("carol on b");
        assert_eq!(text, format!("m{i}"));
        last = seq;
    }
    on_b.handled(last).await.unwrap();
    on_b.flush_received().await.unwrap();
    ping(&mut on_b).await;
    assert_eq!(stored(store, "inbox/carol").await, 0, "both sessions have them: deleted");

    // A session that ends takes its node's floor with it: what carol's
    // session on `a` acknowledges next is deleted at once.
    drop(on_b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.keys("floor/carol/", "", 10).await.unwrap().len() > 1 {
        assert!(Instant::now() < deadline, "the ended session's floor entry goes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dave.send_acked(Target::User("carol".into()), "m3").await.unwrap();
    let (_, seq) = message_within(&mut on_a, Duration::from_secs(10)).await.expect("m3 on a");
    on_a.handled(seq).await.unwrap();
    on_a.flush_received().await.unwrap();
    ping(&mut on_a).await;
    assert_eq!(stored(store, "inbox/carol").await, 0, "no floor left on b to hold it");
}

fn name_taken(r: &Result<Client, cipherline_client::ClientError>) -> bool {
    matches!(r, Err(cipherline_client::ClientError::Refused { code: cipherline_proto::app::ErrorCode::NameTaken, .. }))
}

/// Connects `name` (keyless) to `addr` until it is accepted or `within`
/// has passed.
pub async fn accepted_within(addr: &str, name: &str, within: Duration) -> Option<Client> {
    let deadline = Instant::now() + within;
    loop {
        match connect_as(addr, name, None).await {
            Ok(c) => return Some(c),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(_) => return None,
        }
    }
}

/// A keyless name live on `a` is taken on `b`, in any spelling and as a
/// look-alike; once it leaves `a`, `b` may use it.
pub async fn a_name_live_on_one_node_is_taken_on_another(a: &str, b: &str) {
    let guest = connect_as(a, "guest", None).await.unwrap();
    assert!(name_taken(&connect_as(b, "guest", None).await), "guest on b");
    assert!(name_taken(&connect_as(b, "Guest", None).await), "Guest on b");
    let ollie = connect_as(a, "ollie", None).await.unwrap();
    assert!(name_taken(&connect_as(b, "0llie", None).await), "a look-alike on b");
    drop((guest, ollie));
    accepted_within(b, "guest", Duration::from_secs(5)).await.expect("guest on b once it left a");
    accepted_within(b, "0llie", Duration::from_secs(5)).await.expect("0llie on b once ollie left a");
}

/// Names used and left leave nothing in the store: a client connecting
/// under many throwaway names cannot grow it (claims and look-alike
/// skeletons are deleted with the last session, presence entries too).
pub async fn names_left_leave_no_keys_behind(a: &str, b: &str, store: &impl Store) {
    for i in 0..20 {
        let addr = if i % 2 == 0 { a } else { b };
        let c = connect_as(addr, &format!("throwaway{i}"), None).await.unwrap();
        drop(c);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = Vec::new();
        for prefix in ["claim/throwaway", "alike/", "presence/throwaway"] {
            left.extend(store.keys(prefix, "", 100).await.unwrap());
        }
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "keys left behind after every session ended: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the names are free, on either node.
    drop(connect_as(b, "throwaway0", None).await.unwrap());
    drop(connect_as(a, "throwaway1", None).await.unwrap());
}

/// `a1ice` is refused on `b` while `alice` (keyed) is live on `a`: as a
/// look-alike of a live name (`name_taken`), or, once `b` has learned
/// alice's binding from the bus, of a bound one (`identity_mismatch`).
pub async fn a_look_alike_of_a_keyed_user_live_on_one_node_is_refused_on_another(a: &str, b: &str) {
    use cipherline_client::ClientError::Refused;
    use cipherline_proto::app::ErrorCode::IdentityMismatch;
    let _alice = user(a, "alice", 1).await;
    let r = connect_as(b, "a1ice", Some(key(5))).await;
    let bound = matches!(&r, Err(Refused { code: IdentityMismatch, .. }));
    assert!(name_taken(&r) || bound, "a1ice on b: {:?}", r.err());
}

/// One key has at most four sessions of a name across all nodes.
pub async fn sessions_of_a_name_are_counted_across_nodes(a: &str, b: &str) {
    let mut held = Vec::new();
    for addr in [a, b, a, b] {
        held.push(connect_as(addr, "erin", Some(key(6))).await.unwrap());
    }
    assert!(name_taken(&connect_as(a, "erin", Some(key(6))).await), "a fifth on a");
    assert!(name_taken(&connect_as(b, "erin", Some(key(6))).await), "a fifth on b");
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect_as(a, "erin", Some(key(6))).await {
            Ok(_) => break,
            Err(_) => assert!(Instant::now() < deadline, "a fourth again once one left"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
