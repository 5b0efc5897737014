//! The blob messages of end-to-end files (PROTOCOL.md §13.12): a sender
//! uploads a file's sealed chunks (the format of [`crate::filestream`]) to
//! the relay as one *blob*, resuming where the relay's copy ends; members
//! of the conversation fetch byte ranges of it, also while it is still
//! being uploaded; the owner deletes it, and members say they are done
//! with it.
//!
//! To the relay a blob is opaque bytes: the file key travels only inside
//! the MLS message announcing the file, so the relay stores and forwards
//! ciphertext it cannot open.

use super::{get_data, get_u64, put_data, put_u64};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Error};

/// Bytes of a blob id (random, chosen by the uploader).
pub const BLOB_ID_LEN: usize = 16;
/// Most bytes of blob data in one BlobChunk or BlobData.
pub const MAX_BLOB_DATA: usize = super::MAX_CHUNK;
/// Most bytes one BlobFetch asks for.
pub const MAX_BLOB_FETCH: u32 = 1 << 20;
/// The smallest blob: one sealed empty chunk (its 16-byte tag).
pub const MIN_BLOB_SIZE: u64 = 16;

/// A blob's id.
pub type BlobId = [u8; BLOB_ID_LEN];

/// A blob request from a client (types 0x19 to 0x1c).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRequest {
    /// Create a blob of `size` bytes for a group, or learn how much of an
    /// existing one (the sender's own) the relay holds, to resume (0x19).
    Upload {
        /// Chosen by the client; answered by BlobState (or Error) with it.
        request: u64,
        /// The blob.
        blob: BlobId,
        /// The conversation (MLS group) whose members may fetch it.
        group_id: Vec<u8>,
        /// Its total size in bytes (at least [`MIN_BLOB_SIZE`]).
        size: u64,
    },
    /// The next bytes of an upload, at `offset` = the bytes stored (0x1a).
    Chunk {
        /// The blob.
        blob: BlobId,
        /// Where the bytes go.
        offset: u64,
        /// 1 to [`MAX_BLOB_DATA`] bytes.
        data: Vec<u8>,
    },
    /// Ask for at most `max` bytes from `offset` (0x1b).
    Fetch {
        /// Chosen by the client; the answer's BlobData and BlobState carry it.
        request: u64,
        /// The blob.
        blob: BlobId,
        /// The first byte wanted.
        offset: u64,
        /// 1 to [`MAX_BLOB_FETCH`].
        max: u32,
    },
    /// The owner deletes the blob; another member is done with it (0x1c).
    Delete {
        /// Chosen by the client; answered by BlobState (or Error) with it.
        request: u64,
        /// The blob.
        blob: BlobId,
    },
}

/// Where a blob stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobStatus {
    /// Being uploaded: `stored` bytes so far.
    Uploading,
    /// Complete and durable: all `size` bytes are stored.
    Complete,
    /// Deleted (or, after a member's delete, nothing more of it is kept
    /// for this client).
    Gone,
}

impl BlobStatus {
    fn to_u8(self) -> u8 {
        match self {
            BlobStatus::Uploading => 0,
            BlobStatus::Complete => 1,
            BlobStatus::Gone => 2,
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(BlobStatus::Uploading),
            1 => Ok(BlobStatus::Complete),
            2 => Ok(BlobStatus::Gone),
            _ => Err(DecodeError::IllegalValue),
        }
    }
}

/// A blob message from the server (types 0x9a and 0x9b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobEvent {
    /// A blob's state: the answer to BlobUpload and BlobDelete, the end of
    /// a BlobFetch's answer, and (with `request` 0) the news that an upload
    /// is complete and durable (0x9a).
    State {
        /// The request answered, or 0.
        request: u64,
        /// The blob.
        blob: BlobId,
        /// Where it stands.
        status: BlobStatus,
        /// Its total size.
        size: u64,
        /// The bytes the relay holds.
        stored: u64,
    },
    /// Bytes of a blob, answering a BlobFetch (0x9b).
    Data {
        /// The fetch answered.
        request: u64,
        /// The blob.
        blob: BlobId,
        /// Where these bytes are in it.
        offset: u64,
        /// 1 to [`MAX_BLOB_DATA`] bytes.
        data: Vec<u8>,
    },
}

/// Blob data: as `data` (§13.1), but never empty.
fn put_blob_data(w: &mut Writer, data: &[u8]) -> Result<(), Error> {
    if data.is_empty() {
        return Err(Error::ApiMisuse("blob data must not be empty"));
    }
    put_data(w, data)
}

fn get_blob_data(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let data = get_data(r)?;
    if data.is_empty() {
        return Err(DecodeError::IllegalValue);
    }
    Ok(data)
}

fn get_group_id(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.vec8(super::MAX_GROUP_ID)?.to_vec())
}

impl BlobRequest {
    /// Writes the type byte and body.
    pub(super) fn encode_into(&self, w: &mut Writer) -> Result<(), Error> {
        match self {
            BlobRequest::Upload { request, blob, group_id, size } => {
                if *size < MIN_BLOB_SIZE {
                    return Err(Error::ApiMisuse("a blob is at least 16 bytes"));
                }
                w.u8(0x19);
                put_u64(w, *request);
                w.bytes(blob);
                w.vec8(group_id, super::MAX_GROUP_ID)?;
                put_u64(w, *size);
            }
            BlobRequest::Chunk { blob, offset, data } => {
                w.u8(0x1a);
                w.bytes(blob);
                put_u64(w, *offset);
                put_blob_data(w, data)?;
            }
            BlobRequest::Fetch { request, blob, offset, max } => {
                if *max == 0 || *max > MAX_BLOB_FETCH {
                    return Err(Error::ApiMisuse("a fetch asks for 1 byte to 1 MiB"));
                }
                w.u8(0x1b);
                put_u64(w, *request);
                w.bytes(blob);
                put_u64(w, *offset);
                w.bytes(&max.to_be_bytes());
            }
            BlobRequest::Delete { request, blob } => {
                w.u8(0x1c);
                put_u64(w, *request);
                w.bytes(blob);
            }
        }
        Ok(())
    }

    /// Reads the body of a message of type `t` (0x19 to 0x1c).
    pub(super) fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match t {
            0x19 => {
                let request = get_u64(r)?;
                let blob = r.array()?;
                let group_id = get_group_id(r)?;
                let size = get_u64(r)?;
                if size < MIN_BLOB_SIZE {
                    return Err(DecodeError::IllegalValue);
                }
                BlobRequest::Upload { request, blob, group_id, size }
            }
            0x1a => BlobRequest::Chunk { blob: r.array()?, offset: get_u64(r)?, data: get_blob_data(r)? },
            0x1b => {
                let request = get_u64(r)?;
                let blob = r.array()?;
                let offset = get_u64(r)?;
                let max = u32::from_be_bytes(r.array()?);
                if max == 0 || max > MAX_BLOB_FETCH {
                    return Err(DecodeError::IllegalValue);
                }
                BlobRequest::Fetch { request, blob, offset, max }
            }
            0x1c => BlobRequest::Delete { request: get_u64(r)?, blob: r.array()? },
            _ => return Err(DecodeError::UnknownMessageType),
        })
    }

    /// The request id an Error about this message carries (0 for a chunk).
    #[must_use]
    pub fn request(&self) -> u64 {
        match self {
            BlobRequest::Upload { request, .. }
            | BlobRequest::Fetch { request, .. }
            | BlobRequest::Delete { request, .. } => *request,
            BlobRequest::Chunk { .. } => 0,
        }
    }
}

impl BlobEvent {
    /// Writes the type byte and body.
    pub(super) fn encode_into(&self, w: &mut Writer) -> Result<(), Error> {
        match self {
            BlobEvent::State { request, blob, status, size, stored } => {
                w.u8(0x9a);
                put_u64(w, *request);
                w.bytes(blob);
                w.u8(status.to_u8());
                put_u64(w, *size);
                put_u64(w, *stored);
            }
            BlobEvent::Data { request, blob, offset, data } => {
                w.u8(0x9b);
                put_u64(w, *request);
                w.bytes(blob);
                put_u64(w, *offset);
                put_blob_data(w, data)?;
            }
        }
        Ok(())
    }

    /// Reads the body of a message of type `t` (0x9a or 0x9b).
    pub(super) fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match t {
            0x9a => BlobEvent::State {
                request: get_u64(r)?,
                blob: r.array()?,
                status: BlobStatus::from_u8(r.u8()?)?,
                size: get_u64(r)?,
                stored: get_u64(r)?,
            },
            0x9b => {
                BlobEvent::Data { request: get_u64(r)?, blob: r.array()?, offset: get_u64(r)?, data: get_blob_data(r)? }
            }
            _ => return Err(DecodeError::UnknownMessageType),
        })
    }
}
