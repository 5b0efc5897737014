//! The key-value map on the key-value stream: one subject per key, one
//! message kept per subject, revisions are stream sequences (see the module
//! doc of [`super`]).

use std::collections::BTreeSet;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use futures_util::StreamExt;

use super::{NatsStore, TOMB_HEADER, bounded};
use crate::{Result, StoreError};

impl NatsStore {
    /// The value and revision of the key at `subject`, from the stream
    /// leader; a tombstone (see [`NatsStore::kv_delete_if`]) is no value.
    async fn current(&self, subject: &str) -> Result<Option<(Vec<u8>, u64)>> {
        Ok(self.kv_last(subject).await?.and_then(|(value, revision, tomb)| (!tomb).then_some((value, revision))))
    }

    /// The last record at `subject`: its payload, its stream sequence and
    /// whether it is a tombstone.
    async fn kv_last(&self, subject: &str) -> Result<Option<(Vec<u8>, u64, bool)>> {
        let get = self.kv.raw_message_builder().last_by_subject(subject).send();
        match tokio::time::timeout(self.options.timeout, get).await {
            // This store never writes a larger value: refuse, do not pass on.
            Ok(Ok(message)) if message.payload.len() > self.options.max_value_bytes => Err(StoreError::Nats(format!(
                "stored value of {} bytes exceeds the store's value limit",
                message.payload.len()
            ))),
            Ok(Ok(message)) => {
                let tomb = message.headers.get(TOMB_HEADER).is_some();
                Ok(Some((message.payload.into(), message.sequence, tomb)))
            }
            Ok(Err(e)) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Ok(Err(e)) => Err(StoreError::Nats(format!("read a key: {e}"))),
            Err(_) => Err(StoreError::Nats("read a key: no answer in time".to_owned())),
        }
    }

    pub(super) async fn kv_get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
        self.check_name("key", key)?;
        self.current(&self.key_subject(key)).await
    }

    pub(super) async fn kv_put(&self, key: &str, value: Vec<u8>) -> Result<u64> {
        self.check_name("key", key)?;
        self.check_len("value", value.len(), self.options.max_value_bytes)?;
        let message = PublishMessage::build().payload(value.into());
        self.publish(self.key_subject(key), message)
            .await?
            .ok_or_else(|| StoreError::Nats("put refused by the server".to_owned()))
    }

    pub(super) async fn kv_cas(&self, key: &str, expected: Option<u64>, value: Vec<u8>) -> Result<u64> {
        self.check_name("key", key)?;
        self.check_len("value", value.len(), self.options.max_value_bytes)?;
        let subject = self.key_subject(key);
        // JetStream reads an expected last subject sequence of 0 as "no
        // message"; no revision is 0, so `Some(0)` can only conflict.
        if expected != Some(0) {
            let message = PublishMessage::build()
                .payload(value.clone().into())
                .expected_last_subject_sequence(expected.unwrap_or(0));
            if let Some(revision) = self.publish(subject.clone(), message).await? {
                return Ok(revision);
            }
        }
        let found = match self.kv_last(&subject).await? {
            // A tombstone left by a `delete_if` not yet purged (or whose
            // purge a crash stopped) is an absent key: creating writes over
            // it, conditionally on it, so a concurrent writer still conflicts.
            Some((_, tomb_seq, true)) if expected.is_none() => {
                let message = PublishMessage::build().payload(value.into()).expected_last_subject_sequence(tomb_seq);
                if let Some(revision) = self.publish(subject.clone(), message).await? {
                    return Ok(revision);
                }
                self.current(&subject).await?.map(|(_, revision)| revision)
            }
            Some((_, _, true)) | None => None,
            Some((_, revision, false)) => Some(revision),
        };
        Err(StoreError::Conflict { key: key.to_owned(), expected, found })
    }

    /// Deletes the key only if `revision` is still its last record: a
    /// tombstone published on that condition replaces it (or nothing
    /// happens), then the subject is purged up to the tombstone only, so a
    /// value written right after it survives.
    pub(super) async fn kv_delete_if(&self, key: &str, revision: u64) -> Result<bool> {
        self.check_name("key", key)?;
        // 0 would mean "no message" to JetStream; no revision is 0.
        if revision == 0 {
            return Ok(false);
        }
        let subject = self.key_subject(key);
        let tombstone = PublishMessage::build().header(TOMB_HEADER, "1").expected_last_subject_sequence(revision);
        let Some(tomb_seq) = self.publish(subject.clone(), tombstone).await? else { return Ok(false) };
        let purge = self.kv.purge().filter(subject).sequence(tomb_seq.saturating_add(1));
        // The tombstone already made the key absent, so a failed purge
        // leaves only a listed key behind: the deletion took effect.
        if let Err(e) = bounded(self.options.timeout, "purge a deleted key", async { purge.await }).await {
            tracing::warn!(error = %e, "a conditionally deleted key stays listed until written again");
        }
        Ok(true)
    }

    pub(super) async fn kv_delete(&self, key: &str) -> Result<bool> {
        self.check_name("key", key)?;
        // A purge leaves no tombstone: the subject is as if never written,
        // and the stream sequence (the revision) is never reused.
        let purge = self.kv.purge().filter(self.key_subject(key));
        let response = bounded(self.options.timeout, "delete a key", async { purge.await }).await?;
        Ok(response.purged > 0)
    }

    pub(super) async fn kv_keys(&self, prefix: &str, after: &str, max: usize) -> Result<Vec<String>> {
        self.check_name("key prefix", prefix)?;
        self.check_name("key", after)?;
        let max = max.min(self.options.max_read);
        if max == 0 {
            return Ok(Vec::new());
        }
        let filter = self.key_filter(prefix);
        let mut subjects = bounded(self.options.timeout, "list keys", self.kv.info_with_subjects(filter)).await?;
        // The `max` smallest matching keys, never more in memory.
        let mut page: BTreeSet<String> = BTreeSet::new();
        loop {
            let next = tokio::time::timeout(self.options.timeout, subjects.next())
                .await
                .map_err(|_| StoreError::Nats("list keys: no answer in time".to_owned()))?;
            let Some(item) = next else { break };
            let (subject, _) = item.map_err(|e| StoreError::Nats(format!("list keys: {e}")))?;
            let key = self
                .subject_key(&subject)
                .ok_or_else(|| StoreError::Nats(format!("key-value stream holds a foreign subject {subject:?}")))?;
            // As SQLite's: a page starts after `after` when that lies past
            // the prefix, else at the prefix itself.
            if key.starts_with(prefix) && (after <= prefix || key.as_str() > after) {
                page.insert(key);
                if page.len() > max {
                    page.pop_last();
                }
            }
        }
        Ok(page.into_iter().collect())
    }
}
