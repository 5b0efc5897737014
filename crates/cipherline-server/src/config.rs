//! Server settings: the limits and their defaults (PROTOCOL.md §13.5).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The smallest `max_message_bytes` allowed: 17 KiB, so that a FileChunk
/// with a full [`cipherline_proto::app::MAX_CHUNK`] of data (1 + 8 + 2 +
/// 16384 = 16395 bytes) always fits, with room to spare.
pub const MIN_MESSAGE_BYTES: usize = 17 * 1024;

/// Every limit the server enforces. Each field is also a key of the
/// `[limits]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; more are refused with `server_busy`.
    pub max_connections: usize,
    /// Connections from one address (IPv6: /64) that may be in the handshake (or
    /// waiting for Hello) at once; more from that address are refused with
    /// `server_busy`, so that handshakes nobody finishes cannot fill every
    /// slot.
    pub max_handshakes_per_ip: usize,
    /// Seconds for the whole handshake plus the Hello that follows it.
    pub handshake_timeout_secs: u64,
    /// Seconds without any message from a client before it is dropped
    /// (clients send Ping to stay connected; Welcome tells them this value).
    pub idle_timeout_secs: u64,
    /// Largest application message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Sustained messages per second per client.
    pub messages_per_sec: u32,
    /// Messages a client may send in a burst above the sustained rate.
    pub burst: u32,
    /// Rooms one client may be in at once.
    pub max_rooms_per_client: usize,
    /// Longest display name or room name, in bytes.
    pub max_name_len: usize,
    /// Messages queued for one client before it counts as too slow and is dropped.
    pub queue_len: usize,
    /// Seconds a write to one client may take before it counts as too slow.
    pub write_timeout_secs: u64,
    /// Seconds graceful shutdown waits for connections to finish.
    pub shutdown_grace_secs: u64,
    /// Password mode: failed password attempts one address (IPv6: /64) may
    /// make within `password_failure_window_secs`; further connections from
    /// it get the `too_many_attempts` alert until the oldest attempt is out
    /// of the window. Every password handshake counts as failed from its
    /// start until the client's Finished verifies, so one that is abandoned
    /// (or never finished) counts too.
    pub max_password_failures: u32,
    /// The window for `max_password_failures`, in seconds.
    pub password_failure_window_secs: u64,
    /// File transfers one client may have in progress as the sender
    /// (offered and not yet ended, cancelled or abandoned by every receiver).
    pub max_transfers_per_client: usize,
    // --- admission (issue 12, items 4, 6 and 10): keep this block together.
    /// Password mode: failed password attempts all addresses together may
    /// make per minute (a budget that refills continuously); once it is
    /// spent, every new connection gets `too_many_attempts` until it has
    /// refilled. Every password handshake counts as failed until the
    /// client's Finished verifies, so successful logins do not spend it.
    pub max_password_failures_per_minute: u32,
    /// Connections one address (an IPv6 address: its /64) may hold at once,
    /// in the handshake or established; more get `server_busy`.
    pub max_sessions_per_ip: usize,
    /// Percent of `max_connections` kept for addresses holding no
    /// connection: once no more than this share is free, an address that
    /// already holds one gets `server_busy`. 0 turns the reserve off.
    pub reserved_for_new_addresses_percent: u8,
    /// New connections one address (IPv6: /64) may open per second,
    /// sustained; faster ones get `server_busy` (each costs the server a
    /// private-key operation).
    pub new_connections_per_ip_per_sec: u32,
    /// New connections one address may open at once above that rate.
    pub new_connections_burst_per_ip: u32,
    /// Offer recipients one client may have at once across its transfers
    /// (each recipient of each transfer, offered, accepting or owing a
    /// receipt); an offer that would exceed it is refused with `rate_limited`.
    pub max_offer_recipients_per_client: usize,
    /// Seconds an offer waits for answers; recipients that have not
    /// answered by then are told it expired and are forgotten.
    pub offer_timeout_secs: u64,
    /// Bytes queued for one client before it counts as too slow and is
    /// dropped (like a full `queue_len`).
    pub max_queued_bytes_per_client: usize,
    /// Bytes queued for all clients together; a message shared by a room
    /// counts once. Chat messages and file data are refused or held back
    /// beyond three quarters of it; a client whose message does not fit in
    /// the rest is dropped as too slow.
    pub max_queued_bytes_total: usize,
    /// Sustained relay work per client, in bytes per second: a message
    /// costs its size times its number of recipients.
    pub bytes_per_sec: u64,
    /// Relay work a client may do in a burst, in bytes; a message whose
    /// cost exceeds it is always refused with `rate_limited`.
    pub bytes_burst: u64,
    /// Open policy: names one identity key may bind.
    pub max_names_per_key: usize,
    /// Open policy: names that clients from one address (IPv6: one /64)
    /// may bind within 24 hours.
    pub name_bindings_per_ip_per_day: u32,
    /// Open policy: name bindings kept in all; when reached, no new name is
    /// bound (bound names keep working).
    pub max_name_bindings: usize,
    // --- store-and-forward (issue 14, PROTOCOL.md §13.9).
    /// Seconds a stored message waits for its recipient before it expires
    /// (default 30 days).
    pub message_ttl_secs: u64,
    /// Most messages kept waiting for one recipient.
    pub max_queued_messages_per_recipient: u64,
    /// Most bytes kept waiting for one recipient.
    pub max_queued_store_bytes_per_recipient: u64,
    /// Most bytes of stored messages, for all recipients together.
    pub max_store_bytes: u64,
    // --- blobs of end-to-end files (issue 16, PROTOCOL.md §13.12).
    /// Most bytes of blobs one user may have at the relay, each counted at
    /// its full size from its BlobUpload on, until it is deleted or expires
    /// (default 4 GiB); a new blob beyond it gets `blob_quota`.
    pub max_blob_bytes_per_user: u64,
    /// Most bytes of blobs for all users together, counted the same way
    /// (default 16 GiB).
    pub max_blob_store_bytes: u64,
    /// Seconds after its creation that a blob is deleted, complete or not
    /// (default 7 days).
    pub blob_ttl_secs: u64,
    /// Most blobs one user may have at the relay, complete or not (default
    /// 1000): each costs a record, a waiting list and a file whatever its
    /// size, so tiny blobs are bounded by number, not only by bytes.
    pub max_blobs_per_user: u64,
    /// Most blobs of all users together (default 100,000).
    pub max_blobs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_handshakes_per_ip: 16,
            handshake_timeout_secs: 30,
            idle_timeout_secs: 300,
            max_message_bytes: 64 * 1024,
            messages_per_sec: 20,
            burst: 40,
            max_rooms_per_client: 32,
            max_name_len: 32,
            queue_len: 256,
            write_timeout_secs: 10,
            shutdown_grace_secs: 5,
            max_password_failures: 5,
            password_failure_window_secs: 60,
            max_transfers_per_client: 16,
            max_password_failures_per_minute: 60,
            max_sessions_per_ip: 32,
            reserved_for_new_addresses_percent: 10,
            new_connections_per_ip_per_sec: 4,
            new_connections_burst_per_ip: 16,
            max_offer_recipients_per_client: 256,
            offer_timeout_secs: 300,
            max_queued_bytes_per_client: 8 << 20,
            max_queued_bytes_total: 512 << 20,
            bytes_per_sec: 1 << 20,
            bytes_burst: 8 << 20,
            max_names_per_key: 8,
            name_bindings_per_ip_per_day: 50,
            max_name_bindings: 100_000,
            message_ttl_secs: 30 * 24 * 60 * 60,
            max_queued_messages_per_recipient: 10_000,
            max_queued_store_bytes_per_recipient: 64 << 20,
            max_store_bytes: 4 << 30,
            max_blob_bytes_per_user: 4 << 30,
            max_blob_store_bytes: 16 << 30,
            blob_ttl_secs: 7 * 24 * 60 * 60,
            max_blobs_per_user: 1000,
            max_blobs: 100_000,
        }
    }
}

impl Limits {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_connections == 0 || self.max_handshakes_per_ip == 0 {
            return Err("max_connections and max_handshakes_per_ip must be at least 1");
        }
        if self.handshake_timeout_secs == 0 || self.idle_timeout_secs == 0 || self.write_timeout_secs == 0 {
            return Err("timeouts must be at least 1 second");
        }
        if !(MIN_MESSAGE_BYTES..=cipherline_proto::app::MAX_MESSAGE).contains(&self.max_message_bytes) {
            return Err("max_message_bytes must be between 17408 and 1048576 (a full file chunk must fit)");
        }
        if self.messages_per_sec == 0 || self.burst == 0 {
            return Err("messages_per_sec and burst must be at least 1");
        }
        if self.max_password_failures == 0 || self.password_failure_window_secs == 0 {
            return Err("max_password_failures and password_failure_window_secs must be at least 1");
        }
        if self.max_rooms_per_client == 0 || self.queue_len == 0 || self.max_transfers_per_client == 0 {
            return Err("max_rooms_per_client, queue_len and max_transfers_per_client must be at least 1");
        }
        if self.max_offer_recipients_per_client == 0 || self.offer_timeout_secs == 0 {
            return Err("max_offer_recipients_per_client and offer_timeout_secs must be at least 1");
        }
        if self.max_queued_bytes_per_client < 2 * self.max_message_bytes {
            return Err("max_queued_bytes_per_client must be at least twice max_message_bytes");
        }
        if self.max_queued_bytes_total < self.max_queued_bytes_per_client {
            return Err("max_queued_bytes_total must be at least max_queued_bytes_per_client");
        }
        if self.bytes_per_sec == 0 || self.bytes_burst < u64::try_from(self.max_message_bytes).unwrap_or(u64::MAX) {
            return Err("bytes_per_sec must be at least 1 and bytes_burst at least max_message_bytes");
        }
        if self.max_names_per_key == 0 || self.name_bindings_per_ip_per_day == 0 || self.max_name_bindings == 0 {
            return Err("max_names_per_key, name_bindings_per_ip_per_day and max_name_bindings must be at least 1");
        }
        if !(1..=cipherline_proto::app::MAX_NAME).contains(&self.max_name_len) {
            return Err("max_name_len must be between 1 and 64");
        }
        if self.max_password_failures_per_minute == 0 || self.max_sessions_per_ip == 0 {
            return Err("max_password_failures_per_minute and max_sessions_per_ip must be at least 1");
        }
        if self.reserved_for_new_addresses_percent > 100 {
            return Err("reserved_for_new_addresses_percent must be between 0 and 100");
        }
        if self.new_connections_per_ip_per_sec == 0 || self.new_connections_burst_per_ip == 0 {
            return Err("new_connections_per_ip_per_sec and new_connections_burst_per_ip must be at least 1");
        }
        if !(1..=u64::from(u32::MAX)).contains(&self.message_ttl_secs) {
            return Err("message_ttl_secs must be between 1 and 4294967295");
        }
        if self.max_queued_messages_per_recipient == 0
            || self.max_queued_store_bytes_per_recipient < u64::try_from(self.max_message_bytes).unwrap_or(u64::MAX)
            || self.max_store_bytes < self.max_queued_store_bytes_per_recipient
        {
            return Err(
                "max_queued_messages_per_recipient must be at least 1, max_queued_store_bytes_per_recipient at \
                 least max_message_bytes, and max_store_bytes at least max_queued_store_bytes_per_recipient",
            );
        }
        if self.max_blob_bytes_per_user < cipherline_proto::app::MIN_BLOB_SIZE
            || self.max_blob_store_bytes < self.max_blob_bytes_per_user
        {
            return Err("max_blob_bytes_per_user must be at least 16 and max_blob_store_bytes at least that");
        }
        if !(1..=u64::from(u32::MAX)).contains(&self.blob_ttl_secs) {
            return Err("blob_ttl_secs must be between 1 and 4294967295");
        }
        if self.max_blobs_per_user == 0 || self.max_blobs < self.max_blobs_per_user {
            return Err("max_blobs_per_user must be at least 1 and max_blobs at least that");
        }
        Ok(())
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub(crate) fn password_failure_window(&self) -> Duration {
        Duration::from_secs(self.password_failure_window_secs)
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    pub(crate) fn password_budget(&self) -> crate::attempts::Budget {
        crate::attempts::Budget {
            per_source: self.max_password_failures,
            window: self.password_failure_window(),
            per_minute: self.max_password_failures_per_minute,
        }
    }

    /// At most a century: a larger value lifts the limit, and must not
    /// overflow a deadline computed from it.
    /// What is kept for a recipient with a stored queue (Welcome, §13.9).
    pub(crate) fn queue_limits(&self) -> cipherline_proto::app::QueueLimits {
        cipherline_proto::app::QueueLimits {
            ttl_secs: u32::try_from(self.message_ttl_secs).unwrap_or(u32::MAX),
            max_messages: u32::try_from(self.max_queued_messages_per_recipient).unwrap_or(u32::MAX),
            max_bytes: self.max_queued_store_bytes_per_recipient,
        }
    }

    pub(crate) fn offer_timeout(&self) -> Duration {
        Duration::from_secs(self.offer_timeout_secs.min(100 * 365 * 24 * 60 * 60))
    }
}

/// What [`crate::run`] needs: the protocol configuration (key, suites,
/// client authentication) and the limits.
#[derive(Clone)]
pub struct Settings {
    /// The protocol core's server configuration.
    pub protocol: Arc<cipherline_proto::ServerConfig>,
    /// The limits.
    pub limits: Limits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_chunk_always_fits() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let chunk_message = 1 + 8 + 2 + cipherline_proto::app::MAX_CHUNK;
        assert!(MIN_MESSAGE_BYTES >= chunk_message);
        let small = Limits { max_message_bytes: MIN_MESSAGE_BYTES - 1, ..Limits::default() };
        assert!(small.validate().is_err());
        assert!(Limits { max_transfers_per_client: 0, ..Limits::default() }.validate().is_err());
        assert!(Limits { max_queued_bytes_per_client: 64 * 1024, ..Limits::default() }.validate().is_err());
        assert!(Limits { bytes_burst: 1000, ..Limits::default() }.validate().is_err());
        assert!(Limits { name_bindings_per_ip_per_day: 0, ..Limits::default() }.validate().is_err());
        let lifted = Limits {
            offer_timeout_secs: u64::MAX,
            bytes_per_sec: u64::MAX,
            bytes_burst: u64::MAX,
            max_queued_bytes_per_client: usize::MAX,
            max_queued_bytes_total: usize::MAX,
            max_offer_recipients_per_client: usize::MAX,
            max_names_per_key: usize::MAX,
            name_bindings_per_ip_per_day: u32::MAX,
            max_name_bindings: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(lifted.validate(), Ok(()), "a large value lifts a limit");
        let _ = std::time::Instant::now() + lifted.offer_timeout();
    }

    #[test]
    fn blob_limits_must_be_usable() {
        let d = Limits::default;
        assert_eq!(d().max_blob_bytes_per_user, 4 << 30);
        assert_eq!(d().max_blob_store_bytes, 16 << 30);
        assert_eq!(d().blob_ttl_secs, 604_800);
        assert!(Limits { max_blob_bytes_per_user: 15, ..d() }.validate().is_err());
        assert!(Limits { max_blob_store_bytes: (4 << 30) - 1, ..d() }.validate().is_err());
        let lifted = Limits { max_blob_bytes_per_user: u64::MAX, max_blob_store_bytes: u64::MAX, ..d() };
        assert_eq!(lifted.validate(), Ok(()), "a large value lifts a limit");
        assert!(Limits { blob_ttl_secs: 0, ..d() }.validate().is_err());
        assert_eq!((d().max_blobs_per_user, d().max_blobs), (1000, 100_000));
        assert!(Limits { max_blobs_per_user: 0, ..d() }.validate().is_err());
        assert!(Limits { max_blobs: 999, ..d() }.validate().is_err());
        assert!(Limits { max_blobs_per_user: 1, max_blobs: 1, ..d() }.validate().is_ok());
        assert!(Limits { blob_ttl_secs: u64::from(u32::MAX) + 1, ..d() }.validate().is_err());
        let small = Limits { max_blob_bytes_per_user: 16, max_blob_store_bytes: 16, blob_ttl_secs: 1, ..d() };
        assert_eq!(small.validate(), Ok(()));
    }

    #[test]
    fn admission_limits_must_be_usable() {
        let d = Limits::default;
        assert!(Limits { max_sessions_per_ip: 0, ..d() }.validate().is_err());
        assert!(Limits { max_password_failures_per_minute: 0, ..d() }.validate().is_err());
        assert!(Limits { new_connections_per_ip_per_sec: 0, ..d() }.validate().is_err());
        assert!(Limits { new_connections_burst_per_ip: 0, ..d() }.validate().is_err());
        assert!(Limits { reserved_for_new_addresses_percent: 101, ..d() }.validate().is_err());
        // 0 turns the reserve off; large values lift the others.
        let lifted = Limits {
            reserved_for_new_addresses_percent: 0,
            max_sessions_per_ip: usize::MAX,
            max_password_failures_per_minute: u32::MAX,
            new_connections_per_ip_per_sec: u32::MAX,
            new_connections_burst_per_ip: u32::MAX,
            ..d()
        };
        assert_eq!(lifted.validate(), Ok(()));
    }
}
