//! The record layer: AEAD-protected, padded records with implicit sequence
//! numbers and a one-way key ratchet (PROTOCOL.md §8).
//!
//! A record is a frame of kind 0x17 whose body is
//! `AEAD-Seal(key, nonce = iv XOR seq, aad = frame header, inner plaintext)`,
//! where the inner plaintext is `content || content type || zeros` padded to
//! one of the bucket sizes in [`BUCKETS`]. Sequence numbers are never sent: a
//! dropped, replayed or reordered record is opened with the wrong nonce and
//! fails authentication.

use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::aead::{AeadKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::crypto::kdf::{self, Secret};
use crate::error::{DecodeError, Error, Misbehavior};
use crate::frame::{self, FrameKind, HEADER_LEN};
use crate::suite::Aead;

/// Sizes the inner plaintext is padded to: powers of two from 32 to 16384.
pub const BUCKETS: [usize; 10] = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
/// Largest inner plaintext (content, type byte and padding).
pub const MAX_INNER: usize = 16384;
/// Most content bytes one record carries (one byte goes to the content type).
pub const MAX_CONTENT: usize = MAX_INNER - 1;
/// Largest record body on the wire.
pub const MAX_CIPHERTEXT: usize = MAX_INNER + TAG_LEN;
/// A receiver refuses more records than this under one key: the peer must
/// have updated its keys long before (AES-GCM's safety margin, see §8.6).
pub const HARD_RECORD_LIMIT: u64 = 1 << 24;

/// Whether `len` is a legal record body length (a bucket plus the tag).
#[must_use]
pub fn is_valid_ciphertext_len(len: usize) -> bool {
    len.checked_sub(TAG_LEN).is_some_and(|inner| BUCKETS.contains(&inner))
}

/// The smallest bucket holding `content_len` bytes of content plus the type byte.
#[must_use]
pub fn padded_len(content_len: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| b > content_len)
}

/// Bytes of the frames [`Session::send`](crate::Session::send) makes of
/// `data_len` bytes of application data (records of [`MAX_CONTENT`], the last
/// one padded), plus room for two key updates.
pub(crate) fn frames_len(data_len: usize) -> usize {
    const FRAME: usize = HEADER_LEN + MAX_INNER + TAG_LEN;
    let (full, rest) = (data_len / MAX_CONTENT, data_len % MAX_CONTENT);
    let last = if rest == 0 && full > 0 { 0 } else { padded_len(rest).unwrap_or(MAX_INNER) + HEADER_LEN + TAG_LEN };
    let key_updates = 2 * (HEADER_LEN + padded_len(1).unwrap_or(MAX_INNER) + TAG_LEN);
    full.saturating_mul(FRAME).saturating_add(last).saturating_add(key_updates)
}

/// What a record's content is (the byte after the content, inside the AEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// An alert code (close_notify or an error).
    Alert,
    /// An encrypted handshake message (Finished, ClientAuth).
    Handshake,
    /// Application data.
    ApplicationData,
    /// A key update.
    KeyUpdate,
}

impl ContentType {
    /// The type's byte.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        match self {
            ContentType::Alert => 0x15,
            ContentType::Handshake => 0x16,
            ContentType::ApplicationData => 0x17,
            ContentType::KeyUpdate => 0x18,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0x15 => Some(ContentType::Alert),
            0x16 => Some(ContentType::Handshake),
            0x17 => Some(ContentType::ApplicationData),
            0x18 => Some(ContentType::KeyUpdate),
            _ => None,
        }
    }
}

/// When a sender ratchets its keys forward on its own (PROTOCOL.md §8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUpdatePolicy {
    /// Records sealed under one key before an update (at most 2^23).
    pub max_records: u64,
    /// Content bytes sealed under one key before an update.
    pub max_bytes: u64,
    /// Time a key is used before an update (checked when sealing and by
    /// `handle_timeout`).
    pub max_age: Duration,
}

impl Default for KeyUpdatePolicy {
    fn default() -> Self {
        KeyUpdatePolicy { max_records: 1 << 20, max_bytes: 1 << 30, max_age: Duration::from_secs(3600) }
    }
}

impl KeyUpdatePolicy {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_records == 0 || self.max_records > HARD_RECORD_LIMIT / 2 || self.max_bytes == 0 {
            return Err(Error::InvalidConfig("key update limits must be positive and at most 2^23 records"));
        }
        Ok(())
    }
}

/// One direction's keys: the traffic secret and what is derived from it.
struct DirectionKeys {
    aead: Aead,
    secret: Secret,
    key: AeadKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    bytes: u64,
    keyed_at: Instant,
}

impl DirectionKeys {
    fn new(aead: Aead, secret: Secret, now: Instant) -> Result<Self, Error> {
        let prk = kdf::prk(&secret);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        kdf::expand_label_into(&prk, b"key", b"", &mut key[..])?;
        let mut iv = [0u8; NONCE_LEN];
        kdf::expand_label_into(&prk, b"iv", b"", &mut iv)?;
        Ok(DirectionKeys { aead, key: AeadKey::new(aead, &key[..])?, secret, iv, seq: 0, bytes: 0, keyed_at: now })
    }

    /// Ratchets to the next traffic secret; the old secret and key are
    /// dropped (and erased) here, so they cannot open later records.
    fn update(&mut self, now: Instant) -> Result<(), Error> {
        let next = kdf::expand_label(&kdf::prk(&self.secret), b"traffic upd", b"")?;
        *self = DirectionKeys::new(self.aead, next, now)?;
        Ok(())
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce.iter_mut().skip(NONCE_LEN - 8).zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// Seals outgoing records.
pub struct RecordSealer(DirectionKeys);

impl RecordSealer {
    /// Keys a sealer from a traffic secret.
    pub fn new(aead: Aead, secret: Secret, now: Instant) -> Result<Self, Error> {
        Ok(RecordSealer(DirectionKeys::new(aead, secret, now)?))
    }

    /// Seals one record (content at most [`MAX_CONTENT`]) into a whole frame.
    pub fn seal(&mut self, ty: ContentType, content: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.seal_into(ty, content, &mut out)?;
        Ok(out)
    }

    /// Seals one record and appends the whole frame to `out`: the
    /// plaintext is written once, into `out`, and encrypted there in place,
    /// so no other copy of it is made and nothing is allocated when `out`
    /// has room. On an error `out` is left as it was.
    pub fn seal_into(&mut self, ty: ContentType, content: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.seal_parts_into(ty, &[content], out)
    }

    /// [`RecordSealer::seal_into`] for content given in pieces (together at
    /// most [`MAX_CONTENT`]), as one record: several small messages share a
    /// record without first being copied together.
    pub fn seal_parts_into(&mut self, ty: ContentType, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Error> {
        let content_len = parts.iter().map(|p| p.len()).fold(0usize, usize::saturating_add);
        let inner_len = padded_len(content_len).ok_or(Error::ApiMisuse("record content too long"))?;
        let keys = &mut self.0;
        if keys.seq >= HARD_RECORD_LIMIT {
            return Err(Error::ApiMisuse("key used for too many records; update keys first"));
        }
        let header = frame::header_for(FrameKind::Record, inner_len + TAG_LEN);
        let start = out.len();
        out.reserve(HEADER_LEN + inner_len + TAG_LEN);
        out.extend_from_slice(&header);
        for part in parts {
            out.extend_from_slice(part);
        }
        out.push(ty.to_u8());
        out.resize(start + HEADER_LEN + inner_len, 0);
        let sealed = match out.get_mut(start + HEADER_LEN..) {
            Some(inner) => keys.key.seal_separate(keys.nonce(), &header, inner),
            None => Err(Error::Internal),
        };
        match sealed {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(e) => {
                // Erase the plaintext written above before giving `out` back.
                if let Some(tail) = out.get_mut(start..) {
                    tail.zeroize();
                }
                out.truncate(start);
                return Err(e);
            }
        }
        keys.seq += 1;
        keys.bytes = keys.bytes.saturating_add(content_len as u64);
        Ok(())
    }

    /// Records sealed under the current key.
    #[must_use]
    pub fn records_under_key(&self) -> u64 {
        self.0.seq
    }

    pub(crate) fn needs_update(&self, policy: &KeyUpdatePolicy, now: Instant) -> bool {
        let k = &self.0;
        k.seq >= policy.max_records
            || k.bytes >= policy.max_bytes
            || now.saturating_duration_since(k.keyed_at) >= policy.max_age
    }

    pub(crate) fn update_due_at(&self, policy: &KeyUpdatePolicy) -> Option<Instant> {
        self.0.keyed_at.checked_add(policy.max_age)
    }

    /// Ratchets the sending key forward.
    pub fn update(&mut self, now: Instant) -> Result<(), Error> {
        self.0.update(now)
    }
}

/// Opens incoming records.
pub struct RecordOpener(DirectionKeys);

impl RecordOpener {
    /// Keys an opener from a traffic secret.
    pub fn new(aead: Aead, secret: Secret, now: Instant) -> Result<Self, Error> {
        Ok(RecordOpener(DirectionKeys::new(aead, secret, now)?))
    }

    /// Authenticates and decrypts one record frame; returns its content type
    /// and content. The sequence number advances only on success.
    pub fn open(&mut self, header: &[u8; HEADER_LEN], body: &[u8]) -> Result<(ContentType, Vec<u8>), Error> {
        self.open_owned(header, body.to_vec())
    }

    /// [`RecordOpener::open`], decrypting `body` in place (no copy).
    pub fn open_owned(&mut self, header: &[u8; HEADER_LEN], body: Vec<u8>) -> Result<(ContentType, Vec<u8>), Error> {
        if !is_valid_ciphertext_len(body.len()) {
            return Err(DecodeError::FrameLength.into());
        }
        let keys = &mut self.0;
        if keys.seq >= HARD_RECORD_LIMIT {
            return Err(Misbehavior::KeyUsageExceeded.into());
        }
        let mut buf = body;
        let inner_len = keys.key.open(keys.nonce(), header, &mut buf)?.len();
        keys.seq += 1;
        buf.truncate(inner_len);
        // The content type is the last non-zero byte; everything after it is
        // padding. An all-zero inner plaintext has no type and is invalid.
        let type_pos = buf.iter().rposition(|&b| b != 0).ok_or(DecodeError::BadInnerPlaintext)?;
        let ty = buf.get(type_pos).copied().and_then(ContentType::from_u8).ok_or(DecodeError::BadInnerPlaintext)?;
        buf.truncate(type_pos);
        keys.bytes = keys.bytes.saturating_add(type_pos as u64);
        Ok((ty, buf))
    }

    /// Ratchets the receiving key forward (after the peer's KeyUpdate).
    pub fn update(&mut self, now: Instant) -> Result<(), Error> {
        self.0.update(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(aead: Aead) -> (RecordSealer, RecordOpener) {
        let now = Instant::now();
        let s = Secret::new([9; 32]);
        (RecordSealer::new(aead, s.clone(), now).unwrap(), RecordOpener::new(aead, s, now).unwrap())
    }

    fn split(frame: &[u8]) -> ([u8; 3], Vec<u8>) {
        (frame[..3].try_into().unwrap(), frame[3..].to_vec())
    }

    #[test]
    fn seal_into_appends_the_same_frame_seal_makes() {
        let (mut a, mut opener) = pair(Aead::Aes256Gcm);
        let (mut b, _) = pair(Aead::Aes256Gcm);
        let mut out = b"already here".to_vec();
        a.seal_into(ContentType::ApplicationData, b"hello", &mut out).unwrap();
        let whole = b.seal(ContentType::ApplicationData, b"hello").unwrap();
        assert_eq!(&out[..12], b"already here");
        assert_eq!(&out[12..], &whole[..], "same key and sequence number: same frame");
        let (header, body) = split(&out[12..]);
        let (ty, content) = opener.open(&header, &body).unwrap();
        assert_eq!((ty, content.as_slice()), (ContentType::ApplicationData, &b"hello"[..]));
    }

    #[test]
    fn frames_len_covers_every_size() {
        for len in [0, 1, 30, 31, 32, MAX_CONTENT - 1, MAX_CONTENT, MAX_CONTENT + 1, 3 * MAX_CONTENT, 100_000] {
            let (mut s, _) = pair(Aead::Aes256Gcm);
            let data = vec![7u8; len];
            let mut out = Vec::new();
            let mut chunks = data.chunks(MAX_CONTENT).peekable();
            if chunks.peek().is_none() {
                s.seal_into(ContentType::ApplicationData, &[], &mut out).unwrap();
            }
            for chunk in chunks {
                s.seal_into(ContentType::ApplicationData, chunk, &mut out).unwrap();
            }
            let bound = frames_len(len);
            assert!(out.len() <= bound && bound - out.len() <= 2 * 51, "{len}: {} vs {bound}", out.len());
        }
    }

    #[test]
    fn padding_buckets() {
        assert_eq!(padded_len(0), Some(32));
        assert_eq!(padded_len(31), Some(32));
        assert_eq!(padded_len(32), Some(64));
        assert_eq!(padded_len(MAX_CONTENT), Some(16384));
        assert_eq!(padded_len(MAX_CONTENT + 1), None);
    }

    #[test]
    fn round_trip_and_trailing_zero_content_survives() {
        for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
            let (mut s, mut o) = pair(aead);
            for content in [&b""[..], b"hi", b"ends with zeros\0\0", &[0u8; 100]] {
                let f = s.seal(ContentType::ApplicationData, content).unwrap();
                let (h, b) = split(&f);
                let (ty, got) = o.open(&h, &b).unwrap();
                assert_eq!((ty, got.as_slice()), (ContentType::ApplicationData, content));
            }
        }
    }

    #[test]
    fn updated_keys_differ_and_old_key_cannot_open() {
        let (mut s, mut o) = pair(Aead::Aes256Gcm);
        let mut stale = RecordOpener::new(Aead::Aes256Gcm, Secret::new([9; 32]), Instant::now()).unwrap();
        s.update(Instant::now()).unwrap();
        let f = s.seal(ContentType::ApplicationData, b"after update").unwrap();
        let (h, b) = split(&f);
        assert_eq!(stale.open(&h, &b).unwrap_err(), Error::DecryptFailed);
        o.update(Instant::now()).unwrap();
        assert_eq!(o.open(&h, &b).unwrap().1.as_slice(), b"after update");
    }
}
