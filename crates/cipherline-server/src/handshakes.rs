//! Connections per source address (IPv6: /64) that have not yet finished the handshake
//! and Hello (PROTOCOL.md §13.5, `max_handshakes_per_ip`).
//!
//! Without this, one host could hold every connection slot with handshakes
//! it never finishes (each lasting up to `handshake_timeout_secs`), and no
//! one else could connect. With it, such a host holds at most
//! `max_handshakes_per_ip` slots; connections from other addresses are
//! served as usual. Memory is bounded: an address is tracked only while it
//! has a connection in the handshake, so by `max_connections` entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::source::Source;

/// The count of connections in the handshake, per source address.
#[derive(Default)]
pub(crate) struct Handshakes {
    counts: Mutex<HashMap<Source, usize>>,
}

/// One connection's place in [`Handshakes`]; it gives the place back when
/// dropped (the handshake and Hello succeeded, or the connection ended).
pub(crate) struct InHandshake {
    handshakes: Arc<Handshakes>,
    source: Source,
}

impl Handshakes {
    fn lock(&self) -> MutexGuard<'_, HashMap<Source, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection from `source`, or `None` if `source`
    /// already has `max` connections in the handshake.
    pub(crate) fn try_enter(self: &Arc<Self>, source: Source, max: usize) -> Option<InHandshake> {
        let mut counts = self.lock();
        let count = counts.entry(source).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(InHandshake { handshakes: self.clone(), source })
    }

    /// Connections from `source` in the handshake now.
    #[cfg(test)]
    fn count(&self, source: Source) -> usize {
        self.lock().get(&source).copied().unwrap_or(0)
    }
}

impl Drop for InHandshake {
    fn drop(&mut self) {
        let mut counts = self.handshakes.lock();
        if let Some(count) = counts.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_address_separately_and_frees_places() {
        let h = Arc::new(Handshakes::default());
        let (a, b) = (Source::of("127.0.0.2".parse().unwrap()), Source::of("127.0.0.1".parse().unwrap()));
        let first = h.try_enter(a, 2).unwrap();
        let _second = h.try_enter(a, 2).unwrap();
        assert!(h.try_enter(a, 2).is_none(), "a third handshake from one address is refused");
        let _other = h.try_enter(b, 2).expect("another address is not affected");
        drop(first);
        let _third = h.try_enter(a, 2).expect("a finished handshake frees its place");
        drop((_second, _third));
        assert_eq!(h.count(a), 0);
        assert!(h.lock().get(&a).is_none(), "idle addresses are forgotten");
    }
}
