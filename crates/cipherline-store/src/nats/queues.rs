//! Queues on the queue stream: records, appends with the expected last
//! subject sequence, prefix purges behind markers, counts from the first
//! and last records (see the module doc of [`super`]).

use std::collections::{HashMap, HashSet};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::RawMessageErrorKind;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{CUM_HEADER, MARK_HEADER, MS_HEADER, NatsStore, SEQ_HEADER, bounded, decode, header_u64};
use crate::{Appended, ExpiredMessage, QueueStats, Quota, Result, StoreError, StoredMessage, to_i64};

/// How often an append (or a marker) is retried when another writer got
/// in first, before the call fails.
const MAX_ATTEMPTS: usize = 200;

/// A record appended this long after the cutoff ends an `expire` scan: the
/// records after it (append order) are younger still, unless clocks
/// disagree by more than this. Without it every call would read
/// `max_expire_scan` records even when nothing is due.
const EXPIRE_SCAN_SLACK_MS: u64 = 60_000;

/// Queues `append_each` counts or appends to at once (one room message to
/// many members would otherwise wait for one round trip after another).
const CONCURRENCY: usize = 32;

/// One record of a queue subject: a message or a marker.
#[derive(Debug)]
struct Record {
    /// Its subject (the queue, encoded).
    subject: String,
    /// Its stream sequence.
    stream_seq: u64,
    /// Its queue sequence number (a marker: the last message's).
    seq: u64,
    /// The `now_ms` given to `append`.
    ms: u64,
    /// Payload bytes ever appended to the queue through this record.
    cum: u64,
    /// A marker, not a message.
    mark: bool,
    payload: Bytes,
}

impl Record {
    /// A record as the server sent it; one larger than `max_payload` (this
    /// store never writes one) is refused rather than passed on.
    fn parse(message: StreamMessage, max_payload: usize) -> Result<Self> {
        if message.payload.len() > max_payload {
            return Err(StoreError::Nats(format!(
                "stored record of {} bytes exceeds the store's payload limit",
                message.payload.len()
            )));
        }
        let mark = message.headers.get(MARK_HEADER).is_some();
        Ok(Record {
            subject: message.subject.as_str().to_owned(),
            stream_seq: message.sequence,
            seq: header_u64(&message.headers, SEQ_HEADER)?,
            ms: header_u64(&message.headers, MS_HEADER)?,
            cum: header_u64(&message.headers, CUM_HEADER)?,
            mark,
            payload: message.payload,
        })
    }

    /// The number of the queue's first message if this record is its first
    /// record, and the running total just before it.
    fn base(&self) -> (u64, u64) {
        if self.mark {
            (self.seq.saturating_add(1), self.cum)
        } else {
            (self.seq, self.cum.saturating_sub(self.payload.len() as u64))
        }
    }

    fn into_message(self) -> StoredMessage {
        StoredMessage { seq: self.seq, payload: self.payload.into(), appended_ms: self.ms }
    }
}

/// What a queue holds, from its first and last records: numbers are dense
/// and deletions take prefixes, so no scan is needed.
fn stats_between(first: &Record, last: &Record) -> QueueStats {
    let (base_seq, base_cum) = first.base();
    QueueStats {
        messages: last.seq.saturating_add(1).saturating_sub(base_seq),
        bytes: last.cum.saturating_sub(base_cum),
    }
}

impl NatsStore {
    /// The last record of `subject`, from the stream leader.
    async fn last_record(&self, subject: &str) -> Result<Option<Record>> {
        let get = self.queues.raw_message_builder().last_by_subject(subject).send();
        match tokio::time::timeout(self.options.timeout, get).await {
            Ok(Ok(message)) => Record::parse(message, self.options.max_payload_bytes).map(Some),
            Ok(Err(e)) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Ok(Err(e)) => Err(StoreError::Nats(format!("read a queue's last record: {e}"))),
            Err(_) => Err(StoreError::Nats("read a queue's last record: no answer in time".to_owned())),
        }
    }

    /// The first record matching `filter` at stream sequence `from` or later.
    async fn next_record(&self, filter: &str, from: u64) -> Result<Option<Record>> {
        let get = self.queues.raw_message_builder().sequence(from.max(1)).next_by_subject(filter).send();
        match tokio::time::timeout(self.options.timeout, get).await {
            Ok(Ok(message)) => Record::parse(message, self.options.max_payload_bytes).map(Some),
            Ok(Err(e)) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Ok(Err(e)) => Err(StoreError::Nats(format!("read a queue record: {e}"))),
            Err(_) => Err(StoreError::Nats("read a queue record: no answer in time".to_owned())),
        }
    }

    /// Publishes `message` to `subject`; `None` if the server refused it
    /// because the subject's last record is not the expected one.
    pub(super) async fn publish(&self, subject: String, message: PublishMessage) -> Result<Option<u64>> {
        let publish = async { self.context.send_publish(subject, message).await?.await };
        match tokio::time::timeout(self.options.timeout, publish).await {
            Ok(Ok(ack)) => Ok(Some(ack.sequence)),
            Ok(Err(e)) if matches!(e.kind(), PublishErrorKind::WrongLastSequence) => Ok(None),
            Ok(Err(e)) => Err(StoreError::Nats(format!("publish: {e}"))),
            Err(_) => Err(StoreError::Nats("publish: no acknowledgement in time".to_owned())),
        }
    }

    /// Purges `subject`'s records below stream sequence `below`.
    async fn purge_below(&self, subject: &str, below: u64) -> Result<()> {
        let purge = self.queues.purge().filter(subject).sequence(below);
        bounded(self.options.timeout, "purge a queue", async { purge.await }).await?;
        Ok(())
    }

    /// Appends without checks; the caller checked the bounds.
    async fn append_record(&self, queue: &str, payload: Bytes, now_ms: u64) -> Result<u64> {
        let subject = self.queue_subject(queue);
        let len = payload.len() as u64;
        for _ in 0..MAX_ATTEMPTS {
            let (last_seq, last_cum, expect) = match self.last_record(&subject).await? {
                Some(r) => (r.seq, r.cum, r.stream_seq),
                None => (0, 0, 0),
            };
            let seq =
                last_seq.checked_add(1).ok_or(StoreError::OutOfRange { what: "sequence number", value: last_seq })?;
            let message = PublishMessage::build()
                .payload(payload.clone())
                .header(SEQ_HEADER, seq.to_string())
                .header(MS_HEADER, now_ms.to_string())
                .header(CUM_HEADER, last_cum.saturating_add(len).to_string())
                .expected_last_subject_sequence(expect);
            if self.publish(subject.clone(), message).await?.is_some() {
                return Ok(seq);
            }
            // Another writer appended (or emptied the queue) in between: read again.
            tokio::task::yield_now().await;
        }
        Err(StoreError::Nats(format!("append gave up after {MAX_ATTEMPTS} attempts: too many concurrent writers")))
    }

    /// Removes every record of `subject` up to and including `through`. The
    /// subject's last record is not purged: if `through` is it, a marker
    /// takes its place first, so the queue's numbers go on.
    async fn remove_through(&self, subject: &str, through: &Record) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(last) = self.last_record(subject).await? else { return Ok(()) };
            if last.stream_seq > through.stream_seq {
                return self.purge_below(subject, through.stream_seq.saturating_add(1)).await;
            }
            if last.stream_seq < through.stream_seq {
                // Already gone with everything after it.
                return Ok(());
            }
            if last.mark {
                return self.purge_below(subject, last.stream_seq).await;
            }
            let marker = PublishMessage::build()
                .header(SEQ_HEADER, last.seq.to_string())
                .header(MS_HEADER, last.ms.to_string())
                .header(CUM_HEADER, last.cum.to_string())
                .header(MARK_HEADER, "1")
                .expected_last_subject_sequence(last.stream_seq);
            if let Some(marker_seq) = self.publish(subject.to_owned(), marker).await? {
                return self.purge_below(subject, marker_seq).await;
            }
            tokio::task::yield_now().await;
        }
        Err(StoreError::Nats(format!("removal gave up after {MAX_ATTEMPTS} attempts: too many concurrent writers")))
    }

    /// The smallest stream sequence at or after which `subject`'s records
    /// are numbered above `after`, and the record there; `None` if none is.
    async fn boundary(
        &self,
        subject: &str,
        first: &Record,
        last: &Record,
        after: u64,
    ) -> Result<Option<(u64, Record)>> {
        if last.seq <= after {
            return Ok(None);
        }
        if first.base().0 > after || first.seq > after {
            let record = self.next_record(subject, first.stream_seq).await?;
            return Ok(record.map(|r| (first.stream_seq, r)));
        }
        // next(lo) is numbered at most `after`, next(hi) above it; numbers
        // grow with stream sequences, so halve the stream range between.
        let (mut lo, mut hi) = (first.stream_seq, last.stream_seq);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let record = self
                .next_record(subject, mid)
                .await?
                .ok_or_else(|| StoreError::Nats("queue emptied during a lookup".to_owned()))?;
            if record.seq > after {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let record = self.next_record(subject, hi).await?;
        Ok(record.map(|r| (hi, r)))
    }

    /// The counts of the queue at `subject`.
    async fn subject_stats(&self, subject: &str) -> Result<QueueStats> {
        let Some(last) = self.last_record(subject).await? else { return Ok(QueueStats::default()) };
        let Some(first) = self.next_record(subject, 1).await? else { return Ok(QueueStats::default()) };
        Ok(stats_between(&first, &last))
    }

    pub(super) async fn queue_append(&self, queue: &str, payload: Vec<u8>, now_ms: u64) -> Result<u64> {
        self.check_name("queue name", queue)?;
        self.check_len("payload", payload.len(), self.options.max_payload_bytes)?;
        to_i64("time", now_ms)?;
        self.append_record(queue, payload.into(), now_ms).await
    }

    pub(super) async fn queue_append_each(
        &self,
        queues: Vec<String>,
        payload: Vec<u8>,
        now_ms: u64,
        quota: Quota,
    ) -> Result<Vec<Appended>> {
        for queue in &queues {
            self.check_name("queue name", queue)?;
        }
        self.check_len("payload", payload.len(), self.options.max_payload_bytes)?;
        to_i64("time", now_ms)?;
        let payload = Bytes::from(payload);
        let len = payload.len() as u64;
        let mut check_total = quota.max_total_bytes != u64::MAX;
        let check_queue = quota.max_messages != u64::MAX || quota.max_bytes != u64::MAX;
        if check_total {
            // The stream's stored bytes (payloads plus headers and subjects)
            // bound the payload total from above, in one request: if every
            // copy fits even so, the exact count (every queue) is not needed.
            let info = bounded(self.options.timeout, "queue stream info", self.queues.get_info()).await?;
            let all = len.saturating_mul(queues.len() as u64);
            if info.state.bytes.saturating_add(all) <= quota.max_total_bytes {
                check_total = false;
            }
        }
        let mut total = if check_total { self.queue_total_stats().await?.bytes } else { 0 };
        // Counts of each queue named, read concurrently (bounded).
        // (Owned names: the futures must be Send for any lifetime.)
        let mut held: HashMap<String, QueueStats> = HashMap::new();
        if check_queue {
            let distinct: HashSet<String> = queues.iter().cloned().collect();
            let counts: Vec<Result<(String, QueueStats)>> = futures_util::stream::iter(distinct)
                .map(|q: String| async move {
                    let stats = self.subject_stats(&self.queue_subject(&q)).await?;
                    Ok((q, stats))
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for count in counts {
                let (q, stats) = count?;
                held.insert(q, stats);
            }
        }
        // Decide in order, as SQLite does (a queue named twice counts its
        // first copy), then append: queues concurrently, each queue's
        // copies in order.
        let mut out: Vec<Option<Appended>> = Vec::with_capacity(queues.len());
        let mut copies: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, queue) in queues.iter().enumerate() {
            if check_total && total.saturating_add(len) > quota.max_total_bytes {
                out.push(Some(Appended::StoreFull));
                continue;
            }
            if let Some(h) = held.get_mut(queue.as_str()) {
                if h.messages >= quota.max_messages || h.bytes.saturating_add(len) > quota.max_bytes {
                    out.push(Some(Appended::QueueFull));
                    continue;
                }
                h.messages = h.messages.saturating_add(1);
                h.bytes = h.bytes.saturating_add(len);
            }
            out.push(None);
            copies.entry(queue.clone()).or_default().push(i);
            total = total.saturating_add(len);
        }
        let appended: Vec<Result<Vec<(usize, u64)>>> = futures_util::stream::iter(copies)
            .map(|(queue, indices): (String, Vec<usize>)| {
                let payload = payload.clone();
                async move {
                    let mut seqs = Vec::with_capacity(indices.len());
                    for i in indices {
                        seqs.push((i, self.append_record(&queue, payload.clone(), now_ms).await?));
                    }
                    Ok(seqs)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for result in appended {
            for (i, seq) in result? {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(Appended::Stored(seq));
                }
            }
        }
        out.into_iter()
            .map(|a| a.ok_or_else(|| StoreError::Nats("append_each lost track of a copy".to_owned())))
            .collect()
    }

    pub(super) async fn queue_read(&self, queue: &str, after_seq: u64, max: usize) -> Result<Vec<StoredMessage>> {
        self.check_name("queue name", queue)?;
        to_i64("sequence number", after_seq)?;
        let max = max.min(self.options.max_read);
        if max == 0 {
            return Ok(Vec::new());
        }
        let subject = self.queue_subject(queue);
        let Some(last) = self.last_record(&subject).await? else { return Ok(Vec::new()) };
        let Some(first) = self.next_record(&subject, 1).await? else { return Ok(Vec::new()) };
        let Some((_, mut record)) = self.boundary(&subject, &first, &last, after_seq).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(max.min(64));
        loop {
            let next_from = record.stream_seq.saturating_add(1);
            if !record.mark && record.seq > after_seq {
                out.push(record.into_message());
                if out.len() >= max {
                    break;
                }
            }
            match self.next_record(&subject, next_from).await? {
                Some(r) => record = r,
                None => break,
            }
        }
        Ok(out)
    }

    pub(super) async fn queue_ack(&self, queue: &str, upto_seq: u64) -> Result<u64> {
        self.check_name("queue name", queue)?;
        let subject = self.queue_subject(queue);
        let Some(last) = self.last_record(&subject).await? else { return Ok(0) };
        let Some(first) = self.next_record(&subject, 1).await? else { return Ok(0) };
        let (base_seq, _) = first.base();
        if base_seq > upto_seq || (last.mark && first.stream_seq == last.stream_seq) {
            return Ok(0);
        }
        if last.seq <= upto_seq {
            let held = stats_between(&first, &last).messages;
            self.remove_through(&subject, &last).await?;
            return Ok(held);
        }
        match self.boundary(&subject, &first, &last, upto_seq).await? {
            Some((below, record)) => {
                self.purge_below(&subject, below).await?;
                Ok(record.seq.saturating_sub(base_seq))
            }
            None => Ok(0),
        }
    }

    pub(super) async fn queue_expire(&self, before_ms: u64, max: usize) -> Result<Vec<ExpiredMessage>> {
        let max = max.min(self.options.max_read);
        if max == 0 {
            return Ok(Vec::new());
        }
        let filter = format!("{}.q.>", self.options.subject_prefix);
        // Oldest first in append order; a queue whose next message is not
        // expired is blocked for the rest of the pass, so only prefixes go.
        let mut blocked: HashSet<String> = HashSet::new();
        let mut found: Vec<Record> = Vec::new();
        let mut from = 1;
        for _ in 0..self.options.max_expire_scan {
            if found.len() >= max {
                break;
            }
            let Some(record) = self.next_record(&filter, from).await? else { break };
            from = record.stream_seq.saturating_add(1);
            if record.ms >= before_ms.saturating_add(EXPIRE_SCAN_SLACK_MS) {
                break;
            }
            if record.mark || blocked.contains(&record.subject) {
                continue;
            }
            if record.ms < before_ms {
                found.push(record);
            } else {
                blocked.insert(record.subject);
            }
        }
        // Per queue, remove through its last expired record.
        let mut through: HashMap<&str, &Record> = HashMap::new();
        for record in &found {
            through.insert(record.subject.as_str(), record);
        }
        for (subject, record) in through {
            self.remove_through(subject, record).await?;
        }
        let mut out = Vec::with_capacity(found.len());
        for record in found {
            let queue = record.subject.rsplit('.').next().and_then(decode).ok_or_else(|| {
                StoreError::Nats(format!("queue stream holds a foreign subject {:?}", record.subject))
            })?;
            out.push(ExpiredMessage { queue, message: record.into_message() });
        }
        if !out.is_empty() {
            tracing::info!(messages = out.len(), before_ms, "store expired messages");
        }
        Ok(out)
    }

    pub(super) async fn queue_stats_of(&self, queue: &str) -> Result<QueueStats> {
        self.check_name("queue name", queue)?;
        self.subject_stats(&self.queue_subject(queue)).await
    }

    pub(super) async fn queue_total_stats(&self) -> Result<QueueStats> {
        let filter = format!("{}.q.>", self.options.subject_prefix);
        let mut subjects = bounded(self.options.timeout, "list queues", self.queues.info_with_subjects(filter)).await?;
        let mut total = QueueStats::default();
        loop {
            let next = tokio::time::timeout(self.options.timeout, subjects.next())
                .await
                .map_err(|_| StoreError::Nats("list queues: no answer in time".to_owned()))?;
            let Some(item) = next else { break };
            let (subject, _) = item.map_err(|e| StoreError::Nats(format!("list queues: {e}")))?;
            let stats = self.subject_stats(&subject).await?;
            total.messages = total.messages.saturating_add(stats.messages);
            total.bytes = total.bytes.saturating_add(stats.bytes);
        }
        Ok(total)
    }
}
