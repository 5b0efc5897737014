//! The message bus between relay nodes (docs/cluster.md, "Core NATS
//! subjects"): publish, subscribe and unsubscribe on subjects, at most once,
//! never waiting. Two implementations: [`NatsBus`] on NATS core, and
//! [`LocalNet`] in one process (a tokio broadcast per subject), so that
//! tests run several servers in one process without a nats-server.
//!
//! Every queue here is bounded: a message that finds one full is dropped,
//! which the callers allow for (a lost wake is made up by a periodic
//! re-read).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// A message received from the bus: its subject and payload.
pub type Incoming = (String, Vec<u8>);

/// Messages one subject may hold for a slow subscriber before it loses
/// some (in-process bus), and messages waiting to be published (NATS).
const DEPTH: usize = 1024;

/// How long subscribing on NATS may take before it is given up (logged).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Publish and subscribe between relay nodes. Delivery is at most once and
/// unordered across subjects; nothing waits on a peer.
pub trait Bus: Send + Sync {
    /// Sends `payload` to every subscriber of `subject` (none: dropped).
    /// Never blocks; a backed-up bus drops the message.
    fn publish(&self, subject: String, payload: Vec<u8>);
    /// Delivers what is published on `subject` into `to` until
    /// [`Bus::unsubscribe`]; a full `to` loses messages. Subscribing again
    /// to the same subject replaces the earlier subscription.
    fn subscribe(&self, subject: &str, to: mpsc::Sender<Incoming>);
    /// Stops delivering `subject`.
    fn unsubscribe(&self, subject: &str);
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing held under these locks can be left half-changed.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The forwarding tasks of one node's subscriptions, by subject.
#[derive(Default)]
struct Subscriptions(Mutex<HashMap<String, JoinHandle<()>>>);

impl Subscriptions {
    fn replace(&self, subject: &str, task: JoinHandle<()>) {
        if let Some(old) = locked(&self.0).insert(subject.to_owned(), task) {
            old.abort();
        }
    }

    fn remove(&self, subject: &str) -> bool {
        locked(&self.0).remove(subject).map(|t| t.abort()).is_some()
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for (_, task) in locked(&self.0).drain() {
            task.abort();
        }
    }
}

/// An in-process network of buses: every [`LocalBus`] made from one
/// `LocalNet` (clones share it) hears what the others publish.
#[derive(Clone, Default)]
pub struct LocalNet {
    subjects: Arc<Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>>,
}

impl LocalNet {
    /// A new, empty network.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One node's bus on this network.
    #[must_use]
    pub fn bus(&self) -> LocalBus {
        LocalBus { net: self.clone(), subs: Subscriptions::default() }
    }
}

/// One node's bus on a [`LocalNet`].
pub struct LocalBus {
    net: LocalNet,
    subs: Subscriptions,
}

impl Bus for LocalBus {
    fn publish(&self, subject: String, payload: Vec<u8>) {
        if let Some(tx) = locked(&self.net.subjects).get(&subject) {
            // No receiver left: dropped, as NATS drops it.
            let _ = tx.send(payload);
        }
    }

    fn subscribe(&self, subject: &str, to: mpsc::Sender<Incoming>) {
        let mut rx = locked(&self.net.subjects)
            .entry(subject.to_owned())
            .or_insert_with(|| broadcast::channel(DEPTH).0)
            .subscribe();
        let name = subject.to_owned();
        self.subs.replace(
            subject,
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(payload) => {
                            if let Err(mpsc::error::TrySendError::Closed(_)) = to.try_send((name.clone(), payload)) {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }),
        );
    }

    fn unsubscribe(&self, subject: &str) {
        if self.subs.remove(subject) {
            // The last subscriber gone: the subject's channel goes too, so
            // the map holds only subjects someone listens to. (An aborted
            // task drops its receiver at its next poll; until then the
            // count may still include it, which only keeps the entry.)
            let mut subjects = locked(&self.net.subjects);
            if subjects.get(subject).is_some_and(|tx| tx.receiver_count() == 0) {
                subjects.remove(subject);
            }
        }
    }
}

/// A bus on NATS core, over a connected client (the one the `NatsStore`
/// uses: one connection per node).
pub struct NatsBus {
    client: async_nats::Client,
    out: mpsc::Sender<Incoming>,
    subs: Subscriptions,
}

impl NatsBus {
    /// A bus on `client`. Must be called within a tokio runtime: a task
    /// publishes what [`Bus::publish`] queues, until the bus is dropped.
    #[must_use]
    pub fn new(client: async_nats::Client) -> Self {
        let (out, mut rx) = mpsc::channel::<Incoming>(DEPTH);
        let publisher = client.clone();
        tokio::spawn(async move {
            while let Some((subject, payload)) = rx.recv().await {
                // async-nats buffers the publish; an error means the client
                // is closed, and the message is lost, as allowed.
                if let Err(e) = publisher.publish(subject, payload.into()).await {
                    tracing::debug!(error = %e, "bus publish failed");
                }
            }
        });
        NatsBus { client, out, subs: Subscriptions::default() }
    }
}

impl Bus for NatsBus {
    fn publish(&self, subject: String, payload: Vec<u8>) {
        let _ = self.out.try_send((subject, payload));
    }

    fn subscribe(&self, subject: &str, to: mpsc::Sender<Incoming>) {
        let client = self.client.clone();
        let name = subject.to_owned();
        self.subs.replace(
            subject,
            tokio::spawn(async move {
                let mut sub = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.subscribe(name.clone())).await {
                    Ok(Ok(sub)) => sub,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "bus subscribe failed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!("bus subscribe timed out");
                        return;
                    }
                };
                // Dropping `sub` (the task ends or is aborted) unsubscribes.
                while let Some(msg) = sub.next().await {
                    if let Err(mpsc::error::TrySendError::Closed(_)) = to.try_send((name.clone(), msg.payload.to_vec()))
                    {
                        return;
                    }
                }
            }),
        );
    }

    fn unsubscribe(&self, subject: &str) {
        self.subs.remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_bus_delivers_to_subscribers_of_the_subject_only_until_they_unsubscribe() {
        let net = LocalNet::new();
        let (a, b) = (net.bus(), net.bus());
        let (tx, mut rx) = mpsc::channel(8);
        b.subscribe("x.wake.61", tx.clone());
        b.subscribe("x.wake.62", tx);
        a.publish("x.wake.61".into(), b"1".to_vec());
        a.publish("x.wake.63".into(), b"3".to_vec());
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(got, ("x.wake.61".to_owned(), b"1".to_vec()));
        b.unsubscribe("x.wake.61");
        a.publish("x.wake.61".into(), b"4".to_vec());
        a.publish("x.wake.62".into(), b"2".to_vec());
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(got, ("x.wake.62".to_owned(), b"2".to_vec()), "nothing after unsubscribing");
        assert!(!locked(&net.subjects).contains_key("x.wake.63"), "no channel for a subject nobody heard");
    }
}
