//! Blobs on NATS JetStream (docs/cluster.md, step 8), so that every relay
//! node sharing the store serves every end-to-end file.
//!
//! # What maps to what
//!
//! - **Bytes**: a stream of their own (`<prefix>_BLOBS`, subjects
//!   `<subject>.b.>`), one subject per blob (`<subject>.b.<hex id>`), one
//!   message per appended piece, carrying its offset (`Cl-Off`). An append
//!   publishes with `Nats-Expected-Last-Subject-Sequence` set to the
//!   blob's last piece, so two appenders cannot both extend it; the bytes
//!   held are the last piece's end. A read finds the piece holding its
//!   offset by bisecting the subject's stream sequences (pieces of one
//!   blob are in offset order), then reads on piece by piece.
//!   JetStream's object store was not used: an object is readable only
//!   once it is complete, cannot be appended to after an interruption, and
//!   cannot be read from an offset, while a blob here is fetched while it
//!   is being uploaded and an upload resumes where the relay's copy ends.
//! - **Records** live in the key-value map: `blob/rec/<hex id>` (owner,
//!   group, size, creation time, complete, who waits), written by
//!   compare-and-set; `blob/time/<20-digit ms>.<hex id>` (empty) orders
//!   blobs by creation for expiry; `blob/use/<owner>` and `blob/all` count
//!   blobs and bytes (at full size) for quotas, so quotas hold per cluster.
//! - **Deletion** is decided by a conditional delete of the record
//!   (`delete_if` on the revision read): of several nodes deleting one blob
//!   at once (its owner, the last member done, expiry) exactly one wins
//!   and then purges the bytes, drops the time key and takes the blob off
//!   the counts.
//!
//! # Where it differs from the SQLite blob store
//!
//! - Every piece is durable when `blob_append` returns (JetStream's
//!   acknowledgement), not only after `blob_finish`.
//! - Quota checks read the counts first, so concurrent creations on
//!   several nodes can take a limit a little past (as queue quotas on
//!   NATS). A crash between creating a record and counting it, or between
//!   deleting it and purging its bytes or uncounting it, leaves the counts
//!   off by that blob or its bytes in the stream until an operator purges
//!   them (logged).
//! - Expiry lists every time key (its cost grows with the number of blobs).

use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::RawMessageErrorKind;
use bytes::Bytes;

use super::{NatsStore, bounded, header_u64};
use crate::blob::hex;
use crate::{
    BlobCreated, BlobFinished, BlobId, BlobQuota, BlobRead, BlobRecord, BlobUsage, BlobWrite, MAX_BLOB_READ,
    MAX_WAITING, MemberDone, NewBlob, QuotaScope, Result, StoreError,
};

/// Header: the offset of a piece's first byte in its blob.
const OFFSET_HEADER: &str = "Cl-Off";
/// Record format version.
const RECORD_VERSION: u8 = 1;
/// Compare-and-set retries before a blob call gives up.
const MAX_ATTEMPTS: usize = 32;
/// The key counting all blobs.
const ALL_KEY: &str = "blob/all";

fn record_key(id: &BlobId) -> String {
    format!("blob/rec/{}", hex(id))
}

fn time_key(created_ms: u64, id: &BlobId) -> String {
    format!("blob/time/{created_ms:020}.{}", hex(id))
}

fn usage_key(owner: &str) -> String {
    format!("blob/use/{owner}")
}

fn damaged(what: &str) -> StoreError {
    StoreError::Nats(format!("stored blob record is damaged: {what}"))
}

/// A blob's record as kept (`stored` is not kept: the pieces say it).
struct Kept {
    rec: BlobRecord,
    /// How many waited for it at creation (a complete blob that everyone
    /// gave up on before it was complete is deleted when finished).
    waited: u32,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths were checked against the store's name limit (at most 1 KiB
    // by `NatsOptions`' doc); a longer one is cut to what fits, never
    // written wrongly: `encode` is only given checked records.
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or_default());
}

fn encode(kept: &Kept) -> Vec<u8> {
    let rec = &kept.rec;
    let mut out = Vec::with_capacity(64 + rec.owner.len() + rec.group.len() + 16 * rec.waiting.len());
    out.push(RECORD_VERSION);
    out.push(u8::from(rec.complete));
    out.extend_from_slice(&rec.size.to_be_bytes());
    out.extend_from_slice(&rec.created_ms.to_be_bytes());
    out.extend_from_slice(&kept.waited.to_be_bytes());
    put_bytes(&mut out, rec.owner.as_bytes());
    put_bytes(&mut out, &rec.group);
    out.extend_from_slice(&u32::try_from(rec.waiting.len()).unwrap_or(u32::MAX).to_be_bytes());
    for name in &rec.waiting {
        put_bytes(&mut out, name.as_bytes());
    }
    out
}

/// Reads what [`encode`] wrote, strictly: every length is checked against
/// what is left before anything is taken, and nothing may follow.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| damaged("too short"))?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| damaged("too short"))
    }

    fn string(&mut self) -> Result<String> {
        let len = u16::from_be_bytes(self.array()?);
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| damaged("a name is not UTF-8"))
    }
}

fn decode(id: BlobId, value: &[u8]) -> Result<Kept> {
    let mut r = Reader(value);
    let [version, complete] = r.array()?;
    if version != RECORD_VERSION || complete > 1 {
        return Err(damaged("unknown version or flag"));
    }
    let size = u64::from_be_bytes(r.array()?);
    let created_ms = u64::from_be_bytes(r.array()?);
    let waited = u32::from_be_bytes(r.array()?);
    let owner = r.string()?;
    let group_len = u16::from_be_bytes(r.array()?);
    let group = r.take(usize::from(group_len))?.to_vec();
    let count = u32::from_be_bytes(r.array()?);
    if usize::try_from(count).map_or(true, |c| c > MAX_WAITING) {
        return Err(damaged("waiting list too long"));
    }
    let mut waiting = Vec::new();
    for _ in 0..count {
        waiting.push(r.string()?);
    }
    if !r.0.is_empty() {
        return Err(damaged("trailing bytes"));
    }
    let rec = BlobRecord { id, owner, group, size, stored: 0, complete: complete == 1, created_ms, waiting };
    Ok(Kept { rec, waited })
}

/// One piece of a blob's bytes.
struct Piece {
    seq: u64,
    offset: u64,
    data: Bytes,
}

impl Piece {
    fn end(&self) -> u64 {
        self.offset.saturating_add(self.data.len() as u64)
    }
}

fn usage_value(usage: BlobUsage) -> Vec<u8> {
    let mut out = usage.blobs.to_be_bytes().to_vec();
    out.extend_from_slice(&usage.bytes.to_be_bytes());
    out
}

fn parse_usage(value: &[u8]) -> Result<BlobUsage> {
    let mut r = Reader(value);
    let usage = BlobUsage { blobs: u64::from_be_bytes(r.array()?), bytes: u64::from_be_bytes(r.array()?) };
    if !r.0.is_empty() {
        return Err(damaged("a blob count has trailing bytes"));
    }
    Ok(usage)
}

impl NatsStore {
    fn blob_subject(&self, id: &BlobId) -> String {
        format!("{}.b.{}", self.options.subject_prefix, hex(id))
    }

    fn piece(&self, message: StreamMessage) -> Result<Piece> {
        if message.payload.len() > self.options.max_payload_bytes {
            return Err(StoreError::Nats("stored blob piece exceeds the store's payload limit".to_owned()));
        }
        Ok(Piece { seq: message.sequence, offset: header_u64(&message.headers, OFFSET_HEADER)?, data: message.payload })
    }

    /// The last piece of the blob at `subject`.
    async fn last_piece(&self, subject: &str) -> Result<Option<Piece>> {
        let get = self.blobs.raw_message_builder().last_by_subject(subject).send();
        match tokio::time::timeout(self.options.timeout, get).await {
            Ok(Ok(message)) => self.piece(message).map(Some),
            Ok(Err(e)) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Ok(Err(e)) => Err(StoreError::Nats(format!("read a blob's last piece: {e}"))),
            Err(_) => Err(StoreError::Nats("read a blob's last piece: no answer in time".to_owned())),
        }
    }

    /// The first piece of the blob at `subject` at stream sequence `from`
    /// or later.
    async fn piece_from(&self, subject: &str, from: u64) -> Result<Option<Piece>> {
        let get = self.blobs.raw_message_builder().sequence(from.max(1)).next_by_subject(subject).send();
        match tokio::time::timeout(self.options.timeout, get).await {
            Ok(Ok(message)) => self.piece(message).map(Some),
            Ok(Err(e)) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Ok(Err(e)) => Err(StoreError::Nats(format!("read a blob piece: {e}"))),
            Err(_) => Err(StoreError::Nats("read a blob piece: no answer in time".to_owned())),
        }
    }

    /// The piece holding byte `offset`, which is below the blob's end:
    /// bisection over the stream sequences between the first and the last
    /// piece (`None` if the blob's pieces went meanwhile).
    async fn piece_holding(&self, subject: &str, offset: u64, last: Piece) -> Result<Option<Piece>> {
        if last.offset <= offset {
            return Ok(Some(last));
        }
        let Some(mut low) = self.piece_from(subject, 1).await? else { return Ok(None) };
        // Invariants: `low` starts at or before `offset`; every piece at
        // sequence `high` or later starts after it.
        let mut high = last.seq;
        while low.seq.saturating_add(1) < high {
            let mid = low.seq + (high - low.seq) / 2;
            let Some(probe) = self.piece_from(subject, mid).await? else { return Ok(None) };
            if probe.seq >= high {
                high = mid;
            } else if probe.offset <= offset {
                low = probe;
            } else {
                high = probe.seq;
            }
        }
        Ok((low.end() > offset).then_some(low))
    }

    /// The blob's record and its revision, with `stored` filled in.
    async fn blob_record(&self, id: &BlobId) -> Result<Option<(Kept, u64)>> {
        let Some((value, revision)) = self.kv_get(&record_key(id)).await? else { return Ok(None) };
        let mut kept = decode(*id, &value)?;
        kept.rec.stored = if kept.rec.complete {
            kept.rec.size
        } else {
            let last = self.last_piece(&self.blob_subject(id)).await?;
            last.map_or(0, |p| p.end()).min(kept.rec.size)
        };
        Ok(Some((kept, revision)))
    }

    async fn usage(&self, key: &str) -> Result<BlobUsage> {
        match self.kv_get(key).await? {
            Some((value, _)) => parse_usage(&value),
            None => Ok(BlobUsage::default()),
        }
    }

    /// Adds one blob of `bytes` to the count at `key`, or takes it off.
    async fn count(&self, key: &str, add: bool, bytes: u64) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let (usage, revision) = match self.kv_get(key).await? {
                Some((value, revision)) => (parse_usage(&value)?, Some(revision)),
                None => (BlobUsage::default(), None),
            };
            let next = if add {
                BlobUsage { blobs: usage.blobs.saturating_add(1), bytes: usage.bytes.saturating_add(bytes) }
            } else {
                BlobUsage { blobs: usage.blobs.saturating_sub(1), bytes: usage.bytes.saturating_sub(bytes) }
            };
            match self.kv_cas(key, revision, usage_value(next)).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Nats("blob count: too many concurrent writers".to_owned()))
    }

    /// Deletes the blob if its record is still at `revision`; whether this
    /// call did. The rest (bytes, time key, counts) follows only then, so
    /// it happens once.
    async fn remove(&self, rec: &BlobRecord, revision: u64) -> Result<bool> {
        if !self.kv_delete_if(&record_key(&rec.id), revision).await? {
            return Ok(false);
        }
        let purge = self.blobs.purge().filter(self.blob_subject(&rec.id));
        let rest = async {
            bounded(self.options.timeout, "purge a blob", async { purge.await }).await?;
            self.kv_delete(&time_key(rec.created_ms, &rec.id)).await?;
            self.count(&usage_key(&rec.owner), false, rec.size).await?;
            self.count(ALL_KEY, false, rec.size).await
        };
        if let Err(e) = rest.await {
            // The blob is gone for every reader; what is left is space.
            tracing::error!(error = %e, owner = %rec.owner, "a deleted blob's bytes or counts were not all cleaned up");
        }
        Ok(true)
    }

    pub(super) async fn nats_blob_create(&self, blob: NewBlob, quota: BlobQuota) -> Result<BlobCreated> {
        self.check_name("blob owner", &blob.owner)?;
        self.check_len("group id", blob.group.len(), self.options.max_name_bytes)?;
        self.check_len("waiting list", blob.waiting.len(), MAX_WAITING)?;
        for name in &blob.waiting {
            self.check_name("waiting name", name)?;
        }
        if let Some((kept, _)) = self.blob_record(&blob.id).await? {
            return Ok(BlobCreated::Exists(kept.rec));
        }
        let mine = self.usage(&usage_key(&blob.owner)).await?;
        if mine.blobs >= quota.per_owner_blobs {
            let limit = quota.per_owner_blobs;
            return Ok(BlobCreated::OverQuota { scope: QuotaScope::OwnerBlobs, used: mine.blobs, limit });
        }
        if mine.bytes.saturating_add(blob.size) > quota.per_owner {
            return Ok(BlobCreated::OverQuota { scope: QuotaScope::Owner, used: mine.bytes, limit: quota.per_owner });
        }
        let all = self.usage(ALL_KEY).await?;
        if all.blobs >= quota.total_blobs {
            let limit = quota.total_blobs;
            return Ok(BlobCreated::OverQuota { scope: QuotaScope::TotalBlobs, used: all.blobs, limit });
        }
        if all.bytes.saturating_add(blob.size) > quota.total {
            return Ok(BlobCreated::OverQuota { scope: QuotaScope::Total, used: all.bytes, limit: quota.total });
        }
        let mut waiting = blob.waiting;
        waiting.sort();
        waiting.dedup();
        let rec = BlobRecord {
            id: blob.id,
            owner: blob.owner,
            group: blob.group,
            size: blob.size,
            stored: 0,
            complete: false,
            created_ms: blob.created_ms,
            waiting,
        };
        let kept = Kept { waited: u32::try_from(rec.waiting.len()).unwrap_or(u32::MAX), rec };
        // The time key first: a record is never left without one (expiry
        // drops a time key whose record is missing).
        self.kv_put(&time_key(kept.rec.created_ms, &kept.rec.id), Vec::new()).await?;
        match self.kv_cas(&record_key(&kept.rec.id), None, encode(&kept)).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return match self.blob_record(&kept.rec.id).await? {
                    Some((other, _)) => Ok(BlobCreated::Exists(other.rec)),
                    None => Err(StoreError::Nats("blob created and deleted meanwhile; try again".to_owned())),
                };
            }
            Err(e) => return Err(e),
        }
        self.count(&usage_key(&kept.rec.owner), true, kept.rec.size).await?;
        self.count(ALL_KEY, true, kept.rec.size).await?;
        Ok(BlobCreated::Created(kept.rec))
    }

    pub(super) async fn nats_blob_get(&self, id: BlobId) -> Result<Option<BlobRecord>> {
        Ok(self.blob_record(&id).await?.map(|(kept, _)| kept.rec))
    }

    pub(super) async fn nats_blob_append(
        &self,
        id: BlobId,
        owner: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<BlobWrite> {
        self.check_len("blob piece", data.len(), self.options.max_payload_bytes)?;
        let Some((kept, _)) = self.blob_record(&id).await? else { return Ok(BlobWrite::NoBlob) };
        let rec = kept.rec;
        if rec.owner != owner {
            return Ok(BlobWrite::NotOwner);
        }
        let subject = self.blob_subject(&id);
        let last = if rec.complete { None } else { self.last_piece(&subject).await? };
        let stored = if rec.complete { rec.size } else { last.as_ref().map_or(0, Piece::end) };
        if offset != stored {
            return Ok(BlobWrite::WrongOffset { stored });
        }
        let end = offset.saturating_add(data.len() as u64);
        if rec.complete || end > rec.size {
            return Ok(BlobWrite::TooLong { stored, size: rec.size });
        }
        if data.is_empty() {
            return Ok(BlobWrite::Written { stored, size: rec.size });
        }
        let piece = PublishMessage::build()
            .payload(Bytes::copy_from_slice(data))
            .header(OFFSET_HEADER, offset.to_string())
            .expected_last_subject_sequence(last.map_or(0, |p| p.seq));
        if self.publish(subject.clone(), piece).await?.is_none() {
            // Another session of the owner appended first.
            let stored = self.last_piece(&subject).await?.map_or(0, |p| p.end());
            return Ok(BlobWrite::WrongOffset { stored });
        }
        Ok(BlobWrite::Written { stored: end, size: rec.size })
    }

    pub(super) async fn nats_blob_finish(&self, id: BlobId) -> Result<BlobFinished> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut kept, revision)) = self.blob_record(&id).await? else { return Ok(BlobFinished::NoBlob) };
            if kept.rec.complete {
                return Ok(BlobFinished::Complete(kept.rec));
            }
            if kept.rec.stored < kept.rec.size {
                return Err(StoreError::BlobIncomplete { stored: kept.rec.stored, size: kept.rec.size });
            }
            kept.rec.complete = true;
            // Everyone it was for gave up on it before it was complete.
            if kept.waited > 0 && kept.rec.waiting.is_empty() {
                if self.remove(&kept.rec, revision).await? {
                    return Ok(BlobFinished::Deleted(kept.rec));
                }
                continue;
            }
            match self.kv_cas(&record_key(&id), Some(revision), encode(&kept)).await {
                Ok(_) => return Ok(BlobFinished::Complete(kept.rec)),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Nats("finish a blob: too many concurrent writers".to_owned()))
    }

    pub(super) async fn nats_blob_read(&self, id: BlobId, offset: u64, max: usize) -> Result<Option<BlobRead>> {
        let Some((value, _)) = self.kv_get(&record_key(&id)).await? else { return Ok(None) };
        let rec = decode(id, &value)?.rec;
        let subject = self.blob_subject(&id);
        let Some(last) = self.last_piece(&subject).await? else {
            return Ok(Some(BlobRead { data: Vec::new(), size: rec.size, stored: 0, complete: rec.complete }));
        };
        let stored = last.end().min(rec.size);
        let want = usize::try_from(stored.saturating_sub(offset)).unwrap_or(usize::MAX).min(max).min(MAX_BLOB_READ);
        let mut data = Vec::with_capacity(want);
        if want > 0 {
            let Some(mut piece) = self.piece_holding(&subject, offset, last).await? else { return Ok(None) };
            let mut at = offset;
            loop {
                let skip = usize::try_from(at.saturating_sub(piece.offset)).unwrap_or(usize::MAX);
                let bytes = piece.data.get(skip..).unwrap_or_default();
                let take = bytes.len().min(want - data.len());
                data.extend_from_slice(bytes.get(..take).unwrap_or_default());
                at = at.saturating_add(take as u64);
                if data.len() >= want {
                    break;
                }
                match self.piece_from(&subject, piece.seq.saturating_add(1)).await? {
                    Some(next) if next.offset == at => piece = next,
                    // Deleted meanwhile (purged), or not ours to trust.
                    _ => return Ok(None),
                }
            }
        }
        Ok(Some(BlobRead { data, size: rec.size, stored, complete: rec.complete }))
    }

    pub(super) async fn nats_blob_member_done(&self, id: BlobId, member: &str) -> Result<MemberDone> {
        self.check_name("member name", member)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut kept, revision)) = self.blob_record(&id).await? else { return Ok(MemberDone::NoBlob) };
            let before = kept.rec.waiting.len();
            kept.rec.waiting.retain(|n| n != member);
            if kept.rec.complete && kept.rec.waiting.is_empty() {
                if self.remove(&kept.rec, revision).await? {
                    return Ok(MemberDone::Deleted(kept.rec));
                }
                continue;
            }
            if kept.rec.waiting.len() == before {
                return Ok(MemberDone::Kept(kept.rec));
            }
            match self.kv_cas(&record_key(&id), Some(revision), encode(&kept)).await {
                Ok(_) => return Ok(MemberDone::Kept(kept.rec)),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Nats("blob member done: too many concurrent writers".to_owned()))
    }

    pub(super) async fn nats_blob_delete(&self, id: BlobId) -> Result<Option<BlobRecord>> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((kept, revision)) = self.blob_record(&id).await? else { return Ok(None) };
            if self.remove(&kept.rec, revision).await? {
                return Ok(Some(kept.rec));
            }
        }
        Err(StoreError::Nats("delete a blob: too many concurrent writers".to_owned()))
    }

    pub(super) async fn nats_blob_expire(&self, before_ms: u64, max: usize) -> Result<Vec<BlobRecord>> {
        let max = max.min(self.options.max_read);
        let keys = self.kv_keys("blob/time/", "", max).await?;
        let mut out = Vec::new();
        for key in keys {
            let parsed = key.strip_prefix("blob/time/").and_then(|k| k.split_once('.')).and_then(|(ms, id)| {
                let ms = ms.parse::<u64>().ok()?;
                Some((ms, crate::blob::parse_hex(id)?))
            });
            let Some((ms, id)) = parsed else {
                tracing::warn!(%key, "a blob time key not written by this store: left alone");
                continue;
            };
            // Keys sort by time: the rest are younger.
            if ms >= before_ms {
                break;
            }
            match self.blob_record(&id).await? {
                Some((kept, revision)) if kept.rec.created_ms == ms => {
                    if self.remove(&kept.rec, revision).await? {
                        out.push(kept.rec);
                    }
                }
                // The record went (its time key was left by a crash) or is
                // of a later blob of that id (which has its own key).
                _ => {
                    self.kv_delete(&key).await?;
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn nats_blob_usage(&self, owner: &str) -> Result<(BlobUsage, BlobUsage)> {
        self.check_name("blob owner", owner)?;
        Ok((self.usage(&usage_key(owner)).await?, self.usage(ALL_KEY).await?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let rec = BlobRecord {
            id: [7; 16],
            owner: "alice".into(),
            group: vec![1, 2, 3],
            size: 1 << 40,
            stored: 0,
            complete: true,
            created_ms: 1234,
            waiting: vec!["bob".into(), "carol".into()],
        };
        let bytes = encode(&Kept { rec: rec.clone(), waited: 3 });
        let back = decode([7; 16], &bytes).unwrap();
        assert_eq!((back.rec, back.waited), (rec.clone(), 3));
        for cut in 0..bytes.len() {
            assert!(decode([7; 16], bytes.get(..cut).unwrap()).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode([7; 16], &longer).is_err());
        // A waiting count past the limit is refused before anything is read.
        let none = encode(&Kept { rec: BlobRecord { waiting: Vec::new(), ..rec }, waited: 0 });
        let mut huge = none.clone();
        huge.splice(none.len() - 4.., u32::MAX.to_be_bytes());
        assert!(matches!(decode([7; 16], &huge), Err(StoreError::Nats(t)) if t.contains("too long")));
    }
}
