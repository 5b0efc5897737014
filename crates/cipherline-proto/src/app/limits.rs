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
