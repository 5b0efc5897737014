//! The rate limits a server announces in Welcome.

/// The per-client rate limits a server announces in Welcome (PROTOCOL.md
/// §13.5), so that a client can pace itself instead of learning them from
/// `rate_limited` errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Messages per second, sustained.
    pub messages_per_sec: u32,
    /// Messages a client may send at once above the sustained rate.
    pub burst: u32,
    /// Relay work per second, in bytes times recipients.
    pub bytes_per_sec: u64,
    /// Relay work a client may cause at once, in bytes times recipients.
    pub bytes_burst: u64,
}

/// What a server keeps for a client whose messages it stores (PROTOCOL.md
/// §13.9), announced in Welcome. A Welcome without it means live delivery
/// only: nothing is kept for this client while it is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueLimits {
    /// Seconds a stored message waits for its recipient before it expires.
    pub ttl_secs: u32,
    /// Most messages kept waiting for one recipient.
    pub max_messages: u32,
    /// Most bytes kept waiting for one recipient.
    pub max_bytes: u64,
}
