//! Bytes waiting in the clients' outgoing queues, counted per client and in
//! total (PROTOCOL.md §13.5), so that memory stays bounded however slowly
//! clients read.
//!
//! A message for a room is encoded once and shared by every recipient's
//! queue ([`Outgoing`]), so it counts once toward the total: the total is
//! what the server really holds. Each recipient's copy ([`Queued`]) counts
//! its full size toward that recipient's own budget, because that is what
//! the recipient is holding up. Both counts fall when the bytes are written
//! or dropped, by `Drop`, so no path can forget to give them back.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The server-wide count and the budgets.
#[derive(Debug)]
pub(crate) struct Backlog {
    total: AtomicUsize,
    /// `max_queued_bytes_total`.
    pub(crate) max_total: usize,
    /// `max_queued_bytes_per_client`.
    pub(crate) per_client: usize,
}

impl Backlog {
    /// Nothing queued yet.
    pub(crate) fn new(max_total: usize, per_client: usize) -> Self {
        Backlog { total: AtomicUsize::new(0), max_total, per_client }
    }

    /// Bytes held in all queues (each shared message once).
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether the total is within the share kept for bulk traffic (chat
    /// messages and file data): three quarters, so that the notices and
    /// answers that keep sessions consistent still fit when it is reached.
    pub(crate) fn bulk_ok(&self) -> bool {
        self.total() <= self.max_total / 4 * 3
    }

    /// Takes ownership of an encoded message and counts it.
    pub(crate) fn share(self: &Arc<Self>, bytes: Vec<u8>) -> Outgoing {
        let bytes = bytes.into_boxed_slice();
        self.total.fetch_add(bytes.len(), Ordering::Relaxed);
        Arc::new(Shared { bytes, backlog: self.clone() })
    }
}

/// An encoded server message, shared by every recipient of a fan-out; its
/// bytes count toward the total until the last copy is gone.
pub(crate) struct Shared {
    bytes: Box<[u8]>,
    backlog: Arc<Backlog>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.backlog.total.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

impl Deref for Shared {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A shared encoded message.
pub(crate) type Outgoing = Arc<Shared>;

/// The bytes queued for one client.
pub(crate) type ClientBytes = Arc<AtomicUsize>;

/// One message in one client's queue; counts toward that client's bytes
/// until written or dropped.
pub(crate) struct Queued {
    msg: Outgoing,
    client: ClientBytes,
}

impl Queued {
    /// Counts `msg` toward `client` and wraps it for the queue.
    pub(crate) fn new(msg: Outgoing, client: &ClientBytes) -> Self {
        client.fetch_add(msg.len(), Ordering::Relaxed);
        Queued { msg, client: client.clone() }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.client.fetch_sub(self.msg.len(), Ordering::Relaxed);
    }
}

impl Deref for Queued {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_message_counts_once_in_total_and_fully_per_client() {
        let backlog = Arc::new(Backlog::new(1000, 100));
        let (a, b): (ClientBytes, ClientBytes) = Default::default();
        let msg = backlog.share(vec![0; 40]);
        let qa = Queued::new(msg.clone(), &a);
        let qb = Queued::new(msg.clone(), &b);
        drop(msg);
        assert_eq!(backlog.total(), 40);
        assert_eq!((a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)), (40, 40));
        drop(qa);
        assert_eq!((a.load(Ordering::Relaxed), backlog.total()), (0, 40));
        drop(qb);
        assert_eq!((b.load(Ordering::Relaxed), backlog.total()), (0, 0));
    }
}
