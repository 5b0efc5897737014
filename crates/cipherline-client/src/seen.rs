//! The message ids a client has already shown, so that a message the
//! server delivers again (it was not yet acknowledged when the connection
//! dropped: at-least-once on the wire, PROTOCOL.md §13.9) is shown once.

use std::collections::{HashSet, VecDeque};

/// The most recent ids remembered; older ones are forgotten first. A
/// redelivery comes from the unacknowledged tail of a queue (at most the
/// server's window of 256 per connection), so this is ample.
pub const CAPACITY: usize = 8192;

/// A bounded set of recently seen message ids.
#[derive(Debug, Default)]
pub struct Seen {
    ids: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `id` was recorded.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// Records `id`; returns whether it is new (not seen before).
    pub fn insert(&mut self, id: u64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_is_new_once_and_memory_is_bounded() {
        let mut seen = Seen::new();
        assert!(seen.insert(7));
        assert!(!seen.insert(7), "a redelivery is not new");
        for id in 100..100 + CAPACITY as u64 {
            assert!(seen.insert(id));
        }
        assert_eq!(seen.ids.len(), CAPACITY);
        assert!(seen.insert(7), "the oldest id was forgotten first");
    }
}
