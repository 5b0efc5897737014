//! Blobs at the relay (PROTOCOL.md §13.12.3): the sealed bytes of
//! end-to-end files, uploaded by their sender in order (resuming where the
//! relay's copy ends), fetched by the members of the conversation (also
//! while the upload is in progress), deleted by their owner, let go by
//! members who are done with them, and expired.
//!
//! The relay never sees a file key: a blob is ciphertext to it. Logs carry
//! owners, shortened blob ids and sizes, never blob bytes.
//!
//! A fetch that finds nothing new on a blob still being uploaded is held
//! (at most one per connection, [`Held`]) until the upload moves on or
//! [`HOLD`] passes: the connection watches the blob's [`Progress`] in its
//! select loop, so the client's other traffic keeps flowing to it, and its
//! later requests wait behind the held one (requests are answered in
//! order). With a store shared by several relay nodes (blobs on NATS
//! JetStream), the upload may arrive at another node: a held fetch then
//! also re-reads the blob's stored progress every [`POLL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherline_proto::app::{
    BlobEvent, BlobId, BlobRequest, BlobStatus, ErrorCode, MAX_BLOB_DATA, ServerMessage, fold_name,
};
use cipherline_store::{
    BlobCreated, BlobFinished, BlobQuota, BlobRead, BlobRecord, BlobStore as _, BlobWrite, MemberDone, NewBlob,
    QuotaScope,
};
use tokio::sync::watch;

use crate::Limits;
use crate::hub::{Hub, Me, Refusal};
use crate::mail::{Mail, now_ms};

/// Longest a fetch waits for an upload in progress to move on.
pub(crate) const HOLD: Duration = Duration::from_secs(10);

/// How often a held fetch looks at the stored progress when other nodes
/// share the store (see [`Held::ready`]).
const POLL: Duration = Duration::from_millis(200);

/// Expired blobs deleted per store call.
const EXPIRE_BATCH: usize = 500;

/// Longest any blob store call may take, but finishing.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest finishing a blob may take: it flushes the file's last unflushed
/// bytes to disk (the store flushes as the upload goes, so this is at most
/// some tens of MiB, but disks can be slow).
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);

/// A store call, bounded in time; errors become `store_failed` (logged,
/// never with blob bytes).
async fn bounded<T>(call: impl Future<Output = Result<T, cipherline_store::StoreError>>) -> Result<T, Refusal> {
    bounded_for(STORE_TIMEOUT, call).await
}

async fn bounded_for<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, cipherline_store::StoreError>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "blob store request failed");
            Err(refused(ErrorCode::StoreFailed, "the relay could not keep or read this file right now; try again"))
        }
        Err(_) => {
            tracing::error!("blob store request timed out");
            Err(refused(ErrorCode::StoreFailed, "the relay's store did not answer in time; try again"))
        }
    }
}

/// A blob id shortened for logs.
fn short(id: &BlobId) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn refused(code: ErrorCode, text: impl Into<String>) -> Refusal {
    (code, text.into())
}

fn no_blob() -> Refusal {
    refused(ErrorCode::NoBlob, "no such file at the relay (it was deleted or expired, or is not yours to fetch)")
}

fn state(request: u64, rec: &BlobRecord) -> ServerMessage {
    let status = if rec.complete { BlobStatus::Complete } else { BlobStatus::Uploading };
    ServerMessage::Blob(BlobEvent::State { request, blob: rec.id, status, size: rec.size, stored: rec.stored })
}

fn gone(request: u64, rec: &BlobRecord) -> ServerMessage {
    ServerMessage::Blob(BlobEvent::State {
        request,
        blob: rec.id,
        status: BlobStatus::Gone,
        size: rec.size,
        stored: rec.stored,
    })
}

/// Where each blob that a held fetch waits on stands: rung by every piece
/// appended. Only blobs with a held fetch have an entry (at most one per
/// connection).
#[derive(Default)]
pub(crate) struct Progress {
    watchers: Mutex<HashMap<BlobId, watch::Sender<u64>>>,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, watch::Sender<u64>>> {
        self.watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts watching `blob`: the receiver sees every change after this.
    fn watch(&self, blob: BlobId) -> watch::Receiver<u64> {
        self.lock().entry(blob).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// `blob` moved on (bytes arrived, or it is gone).
    fn moved(&self, blob: &BlobId, stored: u64) {
        let mut watchers = self.lock();
        if let Some(tx) = watchers.get(blob) {
            if tx.receiver_count() == 0 {
                watchers.remove(blob);
            } else {
                tx.send_replace(stored);
            }
        }
    }

    /// Drops `blob`'s entry if nobody watches it any more.
    fn release(&self, blob: &BlobId) {
        let mut watchers = self.lock();
        if watchers.get(blob).is_some_and(|tx| tx.receiver_count() == 0) {
            watchers.remove(blob);
        }
    }
}

/// A fetch waiting for an upload in progress to move on.
pub(crate) struct Held {
    mail: Arc<Mail>,
    request: u64,
    blob: BlobId,
    offset: u64,
    max: u32,
    until: tokio::time::Instant,
    progress: Option<watch::Receiver<u64>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.progress.take());
        self.mail.progress.release(&self.blob);
    }
}

impl Held {
    /// Resolves once the blob moved on or the hold is over (cancel-safe:
    /// it changes nothing but the watch's seen mark).
    pub(crate) async fn ready(&mut self) {
        let Some(rx) = self.progress.as_mut() else { return };
        if !self.mail.shared {
            let _ = tokio::time::timeout_at(self.until, rx.changed()).await;
            return;
        }
        // With a store shared by several nodes the upload may be going
        // through another node, whose pieces do not ring this one's
        // watch (until the bus carries `cipherline.blob.<hex id>`): look
        // at the stored progress every POLL as well.
        loop {
            let next = self.until.min(tokio::time::Instant::now() + POLL);
            if tokio::time::timeout_at(next, rx.changed()).await.is_ok() || next >= self.until {
                return;
            }
            match tokio::time::timeout(STORE_TIMEOUT, self.mail.blobs.blob_get(self.blob)).await {
                Ok(Ok(Some(rec))) if !rec.complete && rec.stored <= self.offset => {}
                // Moved on, gone, or the store failed: the answer says which.
                _ => return,
            }
        }
    }

    /// The answer now: what is there, then the state.
    pub(crate) async fn answer(self, me: &Me) -> Vec<ServerMessage> {
        let (request, blob, offset, max) = (self.request, self.blob, self.offset, self.max);
        let mail = self.mail.clone();
        drop(self);
        match fetch(&mail, me, request, blob, offset, max, false).await {
            Ok(Answer::Now(msgs)) => msgs,
            Ok(Answer::Hold(_)) => Vec::new(),
            Err(r) => vec![error(r, request)],
        }
    }
}

/// How a blob request is answered.
pub(crate) enum Answer {
    /// With these messages (possibly none), now.
    Now(Vec<ServerMessage>),
    /// Later: a fetch held until the upload moves on.
    Hold(Held),
}

fn error((code, text): Refusal, client_id: u64) -> ServerMessage {
    ServerMessage::Error { code, client_id, text }
}

/// Handles one blob request from a client that has a stored queue
/// (`stored`) or not.
pub(crate) async fn handle(req: BlobRequest, me: &Me, hub: &Hub, limits: &Limits, stored: bool) -> Answer {
    let request = req.request();
    let Some(mail) = hub.mail.clone() else {
        return Answer::Now(vec![error(
            refused(ErrorCode::NotAllowed, "files at the relay need a server with a store; this one has none"),
            request,
        )]);
    };
    if !stored {
        return Answer::Now(vec![error(
            refused(
                ErrorCode::NotAllowed,
                "files at the relay are for users whose name an identity key owns: connect with your identity key",
            ),
            request,
        )]);
    }
    let result = match req {
        BlobRequest::Upload { request, blob, group_id, size } => {
            upload(&mail, me, limits, request, blob, group_id, size).await.map(|m| Answer::Now(vec![m]))
        }
        BlobRequest::Chunk { blob, offset, data } => chunk(&mail, me, blob, offset, &data).await.map(Answer::Now),
        BlobRequest::Fetch { request, blob, offset, max } => fetch(&mail, me, request, blob, offset, max, true).await,
        BlobRequest::Delete { request, blob } => delete(&mail, me, request, blob).await.map(|m| Answer::Now(vec![m])),
    };
    result.unwrap_or_else(|r| Answer::Now(vec![error(r, request)]))
}

/// Whether `me` may see `rec`: its owner, or a current member of its group.
async fn may_fetch(mail: &Mail, me: &Me, rec: &BlobRecord) -> Result<bool, Refusal> {
    if rec.owner == fold_name(&me.name) {
        return Ok(true);
    }
    Ok(crate::groups::read_group(mail, &rec.group).await?.is_some_and(|(g, _)| g.is_member(&me.name)))
}

/// BlobUpload: create, or resume.
async fn upload(
    mail: &Mail,
    me: &Me,
    limits: &Limits,
    request: u64,
    blob: BlobId,
    group_id: Vec<u8>,
    size: u64,
) -> Result<ServerMessage, Refusal> {
    let Some((group, _)) = crate::groups::read_group(mail, &group_id).await? else {
        return Err(refused(ErrorCode::NotAllowed, "no such conversation"));
    };
    if !group.is_member(&me.name) {
        return Err(refused(ErrorCode::NotAllowed, "you are not a member of this conversation"));
    }
    let owner = fold_name(&me.name);
    let per_user = limits.max_blob_bytes_per_user;
    if size > per_user || i64::try_from(size).is_err() {
        return Err(refused(
            ErrorCode::BlobQuota,
            format!("a file of {size} bytes is over the per-user limit of {per_user} bytes for files at the relay"),
        ));
    }
    let waiting = group.members.iter().filter(|m| **m != owner).cloned().collect();
    let new = NewBlob { id: blob, owner: owner.clone(), group: group_id.clone(), size, created_ms: now_ms(), waiting };
    let quota = BlobQuota {
        per_owner: per_user,
        total: limits.max_blob_store_bytes,
        per_owner_blobs: limits.max_blobs_per_user,
        total_blobs: limits.max_blobs,
    };
    match bounded(mail.blobs.blob_create(new, quota)).await? {
        BlobCreated::Created(rec) => {
            tracing::info!(owner = %owner, blob = %short(&blob), size, waiting = rec.waiting.len(), "blob created");
            Ok(state(request, &rec))
        }
        BlobCreated::Exists(rec) if rec.owner == owner && rec.group == group_id && rec.size == size => {
            // Every byte arrived but the blob was never made durable (the
            // relay stopped in between, or the flush failed): do it now.
            if !rec.complete && rec.stored == rec.size {
                return finish(mail, request, blob).await;
            }
            tracing::debug!(owner = %owner, blob = %short(&blob), size, stored = rec.stored, "blob upload resumed");
            Ok(state(request, &rec))
        }
        BlobCreated::Exists(_) => Err(refused(
            ErrorCode::NotAllowed,
            "that file id is in use at the relay (for another file or by someone else): choose a fresh random one",
        )),
        BlobCreated::OverQuota { scope, used, limit } => {
            let would = used.saturating_add(size);
            tracing::info!(owner = %owner, blob = %short(&blob), size, used, limit, ?scope, "blob refused: over quota");
            Err(refused(
                ErrorCode::BlobQuota,
                match scope {
                    QuotaScope::Owner => format!(
                        "your files waiting at the relay would take {would} bytes, over the per-user limit of {limit} \
                         bytes: cancel some with `cipherline files cancel` or wait for them to be fetched or expire"
                    ),
                    QuotaScope::Total => format!(
                        "the relay's files would take {would} bytes, over its limit of {limit} bytes for all users: \
                         try again later"
                    ),
                    QuotaScope::OwnerBlobs => format!(
                        "you have {used} files waiting at the relay, its per-user limit of {limit} files: cancel some \
                         with `cipherline files cancel` or wait for them to be fetched or expire"
                    ),
                    QuotaScope::TotalBlobs => format!(
                        "the relay holds {used} files, its limit of {limit} files for all users: try again later"
                    ),
                },
            ))
        }
    }
}

/// Makes a blob that holds all its bytes durable; the state to send.
async fn finish(mail: &Mail, request: u64, blob: BlobId) -> Result<ServerMessage, Refusal> {
    // If this runs out, the blob stays whole but not complete, and the
    // owner's next BlobUpload (a resume) finishes it.
    match bounded_for(FINISH_TIMEOUT, mail.blobs.blob_finish(blob)).await? {
        BlobFinished::Complete(rec) => {
            tracing::info!(owner = %rec.owner, blob = %short(&blob), size = rec.size, "blob complete");
            Ok(state(request, &rec))
        }
        BlobFinished::Deleted(rec) => {
            tracing::info!(owner = %rec.owner, blob = %short(&blob), size = rec.size, "blob complete, and nobody waits for it: deleted");
            mail.progress.moved(&blob, rec.size);
            Ok(gone(request, &rec))
        }
        BlobFinished::NoBlob => Err(no_blob()),
    }
}

/// BlobChunk: the next bytes, from the owner, at the offset the relay holds.
async fn chunk(mail: &Mail, me: &Me, blob: BlobId, offset: u64, data: &[u8]) -> Result<Vec<ServerMessage>, Refusal> {
    let bad = |text: String| Err(refused(ErrorCode::BadRequest, text));
    match bounded(mail.blobs.blob_append(blob, &fold_name(&me.name), offset, data)).await? {
        BlobWrite::Written { stored, size } => {
            mail.progress.moved(&blob, stored);
            if stored < size {
                return Ok(Vec::new());
            }
            // The last piece: durable now, and the owner's connection told.
            Ok(vec![finish(mail, 0, blob).await?])
        }
        BlobWrite::NoBlob => Err(no_blob()),
        BlobWrite::NotOwner => bad("only the file's sender uploads to it".into()),
        BlobWrite::WrongOffset { stored } => bad(format!(
            "the relay holds {stored} bytes of this file: the next chunk goes at offset {stored}, not {offset}"
        )),
        BlobWrite::TooLong { stored, size } => bad(format!(
            "the relay holds {stored} of this file's {size} bytes: a chunk of {} bytes at offset {offset} does not fit",
            data.len()
        )),
    }
}

/// BlobFetch: what the relay holds from `offset` on (at most `max`), then
/// the state; held if there is nothing new yet and `may_hold`.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    mail: &Arc<Mail>,
    me: &Me,
    request: u64,
    blob: BlobId,
    offset: u64,
    max: u32,
    may_hold: bool,
) -> Result<Answer, Refusal> {
    // Watched before the first look, so that bytes arriving between that
    // look and the hold still wake it.
    let progress = may_hold.then(|| mail.progress.watch(blob));
    let release = |progress: Option<watch::Receiver<u64>>| {
        if progress.is_some() {
            drop(progress);
            mail.progress.release(&blob);
        }
    };
    let read = match read_allowed(mail, me, blob, offset, max).await {
        Ok(read) => read,
        Err(r) => {
            release(progress);
            return Err(r);
        }
    };
    if read.data.is_empty() && !read.complete && offset < read.size {
        if let Some(progress) = progress {
            return Ok(Answer::Hold(Held {
                mail: mail.clone(),
                request,
                blob,
                offset,
                max,
                until: tokio::time::Instant::now() + HOLD,
                progress: Some(progress),
            }));
        }
    } else {
        release(progress);
    }
    let mut out = Vec::with_capacity(read.data.len().div_ceil(MAX_BLOB_DATA) + 1);
    let mut at = offset;
    for piece in read.data.chunks(MAX_BLOB_DATA) {
        out.push(ServerMessage::Blob(BlobEvent::Data { request, blob, offset: at, data: piece.to_vec() }));
        at = at.saturating_add(u64::try_from(piece.len()).unwrap_or(u64::MAX));
    }
    let status = if read.complete { BlobStatus::Complete } else { BlobStatus::Uploading };
    out.push(ServerMessage::Blob(BlobEvent::State { request, blob, status, size: read.size, stored: read.stored }));
    tracing::trace!(name = %me.name, blob = %short(&blob), offset, sent = at - offset, "blob fetched");
    Ok(Answer::Now(out))
}

/// What `me` may read of `blob` from `offset` (at most `max` bytes): only
/// its owner and current members of its group, and only within its size.
async fn read_allowed(mail: &Mail, me: &Me, blob: BlobId, offset: u64, max: u32) -> Result<BlobRead, Refusal> {
    let rec = bounded(mail.blobs.blob_get(blob)).await?.ok_or_else(no_blob)?;
    if !may_fetch(mail, me, &rec).await? {
        return Err(no_blob());
    }
    if offset > rec.size {
        return Err(refused(ErrorCode::BadRequest, format!("offset {offset} is past the file's {} bytes", rec.size)));
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    bounded(mail.blobs.blob_read(blob, offset, max)).await?.ok_or_else(no_blob)
}

/// BlobDelete: the owner deletes; a member is done with it.
async fn delete(mail: &Mail, me: &Me, request: u64, blob: BlobId) -> Result<ServerMessage, Refusal> {
    let rec = bounded(mail.blobs.blob_get(blob)).await?.ok_or_else(no_blob)?;
    let name = fold_name(&me.name);
    if rec.owner == name {
        let Some(rec) = bounded(mail.blobs.blob_delete(blob)).await? else { return Err(no_blob()) };
        mail.progress.moved(&blob, rec.stored);
        tracing::info!(owner = %rec.owner, blob = %short(&blob), size = rec.size, stored = rec.stored, "blob deleted by its owner");
        return Ok(gone(request, &rec));
    }
    if !may_fetch(mail, me, &rec).await? {
        return Err(no_blob());
    }
    match bounded(mail.blobs.blob_member_done(blob, &name)).await? {
        MemberDone::Kept(rec) => Ok(state(request, &rec)),
        MemberDone::Deleted(rec) => {
            tracing::info!(owner = %rec.owner, blob = %short(&blob), size = rec.size, "blob fetched by everyone: deleted");
            Ok(gone(request, &rec))
        }
        MemberDone::NoBlob => Err(no_blob()),
    }
}

/// Deletes the blobs older than `ttl`; returns how many.
pub(crate) async fn expire(mail: &Mail, ttl: Duration) -> Result<u64, cipherline_store::StoreError> {
    let cutoff = now_ms().saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let mut total = 0u64;
    loop {
        let batch = mail.blobs.blob_expire(cutoff, EXPIRE_BATCH).await?;
        let n = batch.len();
        for rec in &batch {
            mail.progress.moved(&rec.id, rec.stored);
        }
        total += n as u64;
        if n < EXPIRE_BATCH {
            break;
        }
    }
    if total > 0 {
        tracing::info!(blobs = total, "blobs expired (blob_ttl_secs)");
    }
    Ok(total)
}
