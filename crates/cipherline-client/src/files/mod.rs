//! End-to-end files for a client (PROTOCOL.md §13.12): uploading a file's
//! sealed chunks to the relay as a blob and announcing it to a
//! conversation ([`upload`]), fetching, opening, checking and saving an
//! announced one ([`download`]), and the local records that let both
//! resume after a restart ([`records`]).
//!
//! # Contract
//!
//! - Each transfer runs over a connection of its own (a [`Client`] the
//!   caller connected for it): blob messages on it are consumed, anything
//!   else is kept for the caller as [`Client::recv`] keeps it. The caller's
//!   message connection stays free.
//! - Constant memory for any size: one 64 KiB chunk in hand at a time, at
//!   most two 1 MiB fetches outstanding (the bytes arrive 16 KiB at a time).
//! - Every wait is bounded: each answer by the client's reply timeout (a
//!   fetch following an upload by the relay's 10 s hold plus that), a
//!   transfer that makes no progress by [`STALL_LIMIT`].
//! - A received file appears under its (sanitised) name only after every
//!   chunk opened and its size and SHA-256 are the announced ones, and
//!   never over an existing file; a chunk that does not open deletes the
//!   partial file.
//! - Progress goes to a callback (bytes, total); nothing here prints.
//!
//! For front-ends (chat's `/send-file` and `/accept`): start an upload
//! with [`upload::upload`] (after resolving the conversation's group with
//! `Conversations::direct` or `Conversations::room`), a download with
//! [`download::download`] on a record from
//! [`crate::LocalStore::download_of`] (the announcement's message id) or
//! [`crate::LocalStore::downloads`]; cancel with [`upload::cancel`] and
//! [`download::cancel`]. Both are futures: run them on a task of their
//! own and drop them to stop (what was done is kept and resumes).

pub mod download;
pub mod pending;
pub mod records;
pub mod upload;

use std::time::Duration;

use cipherline_proto::app::{BlobEvent, BlobId, BlobRequest, BlobStatus, ClientMessage, ErrorCode, ServerMessage};

use crate::client::Client;
use crate::error::ClientError;

pub use pending::{MAX_DOWNLOADS, Pending, Ticker, TransferId, pending};
pub use records::{DownloadRecord, DownloadState, UploadRecord, blob_hex};

/// A transfer that makes no progress for this long stops (it resumes later).
pub const STALL_LIMIT: Duration = Duration::from_secs(120);
/// How long the relay holds a fetch that is caught up with an upload.
pub const FETCH_HOLD: Duration = Duration::from_secs(10);

/// Progress of a transfer: plaintext bytes done and the total.
pub type Progress<'a> = dyn FnMut(u64, u64) + Send + 'a;

/// A blob's state as the relay reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobState {
    /// Where it stands.
    pub status: BlobStatus,
    /// Its size.
    pub size: u64,
    /// The bytes the relay holds.
    pub stored: u64,
}

/// A refusal of a blob request in the user's terms.
pub(crate) fn blob_error(e: ClientError) -> ClientError {
    match e {
        ClientError::Refused { code: ErrorCode::BlobQuota, text } => ClientError::BlobQuota(text),
        ClientError::Refused { code: ErrorCode::NoBlob, .. } => ClientError::BlobGone,
        ClientError::Refused { code: ErrorCode::NotAllowed, text } => ClientError::BlobNotAllowed(text),
        other => other,
    }
}

/// Sends a blob request that the relay answers with one BlobState (upload,
/// delete) and waits for it.
async fn state_request(client: &mut Client, request: BlobRequest) -> Result<BlobState, ClientError> {
    let id = request.request();
    let blob = match &request {
        BlobRequest::Upload { blob, .. } | BlobRequest::Delete { blob, .. } => *blob,
        _ => return Err(ClientError::Unexpected),
    };
    client.send_message(&ClientMessage::Blob(request)).await.map_err(blob_error)?;
    let want = |m: &ServerMessage| matches!(m, ServerMessage::Blob(BlobEvent::State { request, blob: b, .. }) if *request == id && *b == blob);
    match client.reply(want, |c| c == id).await.map_err(blob_error)? {
        ServerMessage::Blob(BlobEvent::State { status, size, stored, .. }) => Ok(BlobState { status, size, stored }),
        _ => Err(ClientError::Unexpected),
    }
}

/// Creates the blob `blob` of `size` sealed bytes for `group_id`, or (one
/// of this user's) learns how much of it the relay holds.
pub async fn blob_upload(
    client: &mut Client,
    blob: BlobId,
    group_id: &[u8],
    size: u64,
) -> Result<BlobState, ClientError> {
    let request = client.writer().next_id();
    state_request(client, BlobRequest::Upload { request, blob, group_id: group_id.to_vec(), size }).await
}

/// Deletes `blob` (its owner), or says this member is done with it.
pub async fn blob_delete(client: &mut Client, blob: BlobId) -> Result<BlobState, ClientError> {
    let request = client.writer().next_id();
    state_request(client, BlobRequest::Delete { request, blob }).await
}
