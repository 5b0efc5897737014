//! [`AnyStore`]: the SQLite or the NATS store, chosen at run time (the
//! server's `--store` option), behind one type.

use std::sync::Arc;

use crate::{
    Appended, BlobCreated, BlobFinished, BlobId, BlobQuota, BlobRead, BlobRecord, BlobStore, BlobUsage, BlobWrite,
    ExpiredMessage, MemberDone, NatsStore, NewBlob, QueueStats, Quota, Result, SqliteStore, Store, StoredMessage,
};

/// Either [`Store`] (and [`BlobStore`]), delegating every call. Shared
/// handles: the server keeps its SQLite store open whichever holds the
/// queues.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// The embedded one-file store.
    Sqlite(Arc<SqliteStore>),
    /// The store on NATS JetStream.
    Nats(Arc<NatsStore>),
}

impl AnyStore {
    /// Finishes what was sent and closes the store, if this is its last
    /// handle (else the other holders close it).
    pub async fn close(self) {
        match self {
            AnyStore::Sqlite(s) => {
                if let Some(s) = Arc::into_inner(s) {
                    s.close().await;
                }
            }
            AnyStore::Nats(s) => {
                if let Some(s) = Arc::into_inner(s) {
                    s.close().await;
                }
            }
        }
    }

    /// Largest value `put` and `cas` accept, in bytes.
    pub fn max_value_bytes(&self) -> usize {
        match self {
            AnyStore::Sqlite(s) => s.options().max_value_bytes,
            AnyStore::Nats(s) => s.options().max_value_bytes,
        }
    }

    /// The SQLite store, if that is what this is (blobs live there).
    pub fn as_sqlite(&self) -> Option<&SqliteStore> {
        match self {
            AnyStore::Sqlite(s) => Some(s),
            AnyStore::Nats(_) => None,
        }
    }
}

/// Calls `$call` on whichever store this is.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call.await,
            AnyStore::Nats($s) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn append(&self, queue: &str, payload: Vec<u8>, now_ms: u64) -> Result<u64> {
        delegate!(self, s => s.append(queue, payload, now_ms))
    }

    async fn read(&self, queue: &str, after_seq: u64, max: usize) -> Result<Vec<StoredMessage>> {
        delegate!(self, s => s.read(queue, after_seq, max))
    }

    async fn ack(&self, queue: &str, upto_seq: u64) -> Result<u64> {
        delegate!(self, s => s.ack(queue, upto_seq))
    }

    async fn expire(&self, before_ms: u64, max: usize) -> Result<Vec<ExpiredMessage>> {
        delegate!(self, s => s.expire(before_ms, max))
    }

    async fn append_each(
        &self,
        queues: Vec<String>,
        payload: Vec<u8>,
        now_ms: u64,
        quota: Quota,
    ) -> Result<Vec<Appended>> {
        delegate!(self, s => s.append_each(queues, payload, now_ms, quota))
    }

    async fn queue_stats(&self, queue: &str) -> Result<QueueStats> {
        delegate!(self, s => s.queue_stats(queue))
    }

    async fn total_stats(&self) -> Result<QueueStats> {
        delegate!(self, s => s.total_stats())
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        delegate!(self, s => s.get(key))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        delegate!(self, s => s.put(key, value))
    }

    async fn cas(&self, key: &str, expected: Option<u64>, value: Vec<u8>) -> Result<u64> {
        delegate!(self, s => s.cas(key, expected, value))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        delegate!(self, s => s.delete(key))
    }

    async fn delete_if(&self, key: &str, revision: u64) -> Result<bool> {
        delegate!(self, s => s.delete_if(key, revision))
    }

    async fn keys(&self, prefix: &str, after: &str, max: usize) -> Result<Vec<String>> {
        delegate!(self, s => s.keys(prefix, after, max))
    }
}

impl BlobStore for AnyStore {
    async fn blob_create(&self, blob: NewBlob, quota: BlobQuota) -> Result<BlobCreated> {
        delegate!(self, s => s.blob_create(blob, quota))
    }

    async fn blob_get(&self, id: BlobId) -> Result<Option<BlobRecord>> {
        delegate!(self, s => s.blob_get(id))
    }

    async fn blob_append(&self, id: BlobId, owner: &str, offset: u64, data: &[u8]) -> Result<BlobWrite> {
        delegate!(self, s => s.blob_append(id, owner, offset, data))
    }

    async fn blob_finish(&self, id: BlobId) -> Result<BlobFinished> {
        delegate!(self, s => s.blob_finish(id))
    }

    async fn blob_read(&self, id: BlobId, offset: u64, max: usize) -> Result<Option<BlobRead>> {
        delegate!(self, s => s.blob_read(id, offset, max))
    }

    async fn blob_member_done(&self, id: BlobId, member: &str) -> Result<MemberDone> {
        delegate!(self, s => s.blob_member_done(id, member))
    }

    async fn blob_delete(&self, id: BlobId) -> Result<Option<BlobRecord>> {
        delegate!(self, s => s.blob_delete(id))
    }

    async fn blob_expire(&self, before_ms: u64, max: usize) -> Result<Vec<BlobRecord>> {
        delegate!(self, s => s.blob_expire(before_ms, max))
    }

    async fn blob_usage(&self, owner: &str) -> Result<(BlobUsage, BlobUsage)> {
        delegate!(self, s => s.blob_usage(owner))
    }
}
