//! End-to-end file encryption (PROTOCOL.md §13.12): a file is cut into
//! fixed-size chunks, each sealed with AES-256-GCM under a key derived from
//! a fresh per-file key, with a nonce made of the chunk's index and a flag
//! marking the last chunk — the STREAM construction of age — so chunks
//! cannot be reordered, dropped, repeated, truncated or extended without
//! the receiver noticing.
//!
//! Sans-IO: the caller supplies the file key (from its RNG) and moves the
//! chunks; nothing here reads files, clocks or randomness. A receiver
//! knows the file's size (it came inside the authenticated MLS message
//! with the key), so it knows how many chunks there are and which one is
//! last; chunks may be opened in any order (a resumed download), each by
//! its index.

use zeroize::Zeroizing;

use crate::Error;
use crate::crypto::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::crypto::kdf;
use crate::suite::Aead;

/// Plaintext bytes in every chunk but the last (64 KiB).
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Ciphertext bytes of a full chunk.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
/// Bytes of a file key.
pub const FILE_KEY_LEN: usize = 32;
/// The largest file size this format describes (2^64 − 1 bytes would
/// overflow nothing, but a chunk index must fit the nonce's 8 low bytes;
/// this bound keeps every count in `u64`).
pub const MAX_FILE_SIZE: u64 = u64::MAX - CHUNK_SIZE as u64;

/// HKDF label of the payload key (PROTOCOL.md §13.12).
const PAYLOAD_LABEL: &[u8] = b"file payload";

/// How many chunks a file of `size` bytes has: at least one (an empty
/// file is one empty last chunk).
#[must_use]
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// The bytes of a file of `size` bytes once sealed (what the relay
/// stores): the plaintext plus a 16-byte tag per chunk; `None` beyond
/// [`MAX_FILE_SIZE`].
#[must_use]
pub fn sealed_size(size: u64) -> Option<u64> {
    if size > MAX_FILE_SIZE {
        return None;
    }
    size.checked_add(chunk_count(size).checked_mul(TAG_LEN as u64)?)
}

/// The plaintext length of chunk `index` of a file of `size` bytes, or
/// `None` if there is no such chunk.
#[must_use]
pub fn chunk_len(size: u64, index: u64) -> Option<usize> {
    let count = chunk_count(size);
    if index >= count {
        return None;
    }
    if index + 1 < count {
        return Some(CHUNK_SIZE);
    }
    let before = index.checked_mul(CHUNK_SIZE as u64)?;
    usize::try_from(size - before).ok()
}

/// The nonce of chunk `index`: 11 bytes of big-endian index (the top three
/// always zero) and one byte, 1 for the last chunk, else 0.
#[must_use]
pub fn nonce(index: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    for (byte, value) in n.iter_mut().skip(3).zip(index.to_be_bytes()) {
        *byte = value;
    }
    if let Some(flag) = n.last_mut() {
        *flag = u8::from(last);
    }
    n
}

/// A file's payload key, derived from its file key; sealing and opening
/// chunks. Erased on drop (aws-lc-rs holds the key schedule), no `Debug`.
pub struct FileCipher {
    key: AeadKey,
    size: u64,
}

impl FileCipher {
    /// The cipher for a file of `size` bytes with this file key.
    pub fn new(file_key: &[u8; FILE_KEY_LEN], size: u64) -> Result<Self, Error> {
        if size > MAX_FILE_SIZE {
            return Err(Error::ApiMisuse("file too large"));
        }
        let prk = kdf::extract(&[], file_key);
        let payload = kdf::expand_label(&prk, PAYLOAD_LABEL, &[])?;
        let key = AeadKey::new(Aead::Aes256Gcm, payload.expose())?;
        Ok(FileCipher { key, size })
    }

    /// How many chunks the file has.
    #[must_use]
    pub fn chunks(&self) -> u64 {
        chunk_count(self.size)
    }

    /// Seals chunk `index`, whose plaintext must be exactly
    /// [`chunk_len`] bytes; returns the ciphertext (plaintext + 16).
    pub fn seal(&self, index: u64, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let want = chunk_len(self.size, index).ok_or(Error::ApiMisuse("no such chunk"))?;
        if plaintext.len() != want {
            return Err(Error::ApiMisuse("chunk of the wrong length"));
        }
        let last = index + 1 == self.chunks();
        let mut out = Vec::with_capacity(want + TAG_LEN);
        out.extend_from_slice(plaintext);
        self.key.seal(nonce(index, last), &[], &mut out)?;
        Ok(out)
    }

    /// Opens chunk `index`: its ciphertext must be exactly the sealed
    /// length of that chunk and verify under the index and the last flag
    /// the file's size implies. Every failure is [`Error::DecryptFailed`]:
    /// a chunk altered, out of place, or of another file. The plaintext
    /// is erased on drop.
    pub fn open(&self, index: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let want = chunk_len(self.size, index).ok_or(Error::DecryptFailed)?;
        if sealed.len() != want + TAG_LEN {
            return Err(Error::DecryptFailed);
        }
        let last = index + 1 == self.chunks();
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = self.key.open(nonce(index, last), &[], &mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_arithmetic() {
        assert_eq!(chunk_count(0), 1);
        assert_eq!(chunk_len(0, 0), Some(0));
        assert_eq!(chunk_len(0, 1), None);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64 + 1), 2);
        assert_eq!(chunk_len(CHUNK_SIZE as u64 + 1, 0), Some(CHUNK_SIZE));
        assert_eq!(chunk_len(CHUNK_SIZE as u64 + 1, 1), Some(1));
        assert_eq!(chunk_count(MAX_FILE_SIZE), MAX_FILE_SIZE.div_ceil(CHUNK_SIZE as u64));
        assert_eq!(nonce(0x0102, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1]);
    }
}
