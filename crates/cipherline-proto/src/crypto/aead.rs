//! AEAD sealing and opening (AES-256-GCM, ChaCha20-Poly1305).

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::Error;
use crate::suite::Aead;

/// Bytes in an AEAD key (both AEADs use 256-bit keys).
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes in an authentication tag.
pub const TAG_LEN: usize = 16;

/// A keyed AEAD. aws-lc-rs owns and cleanses the key schedule; it has no `Debug`.
pub struct AeadKey {
    key: LessSafeKey,
}

impl AeadKey {
    /// Keys `alg` with `key` (exactly [`KEY_LEN`] bytes).
    pub fn new(alg: Aead, key: &[u8]) -> Result<Self, Error> {
        let algorithm = match alg {
            Aead::Aes256Gcm => &aead::AES_256_GCM,
            Aead::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let unbound = UnboundKey::new(algorithm, key).map_err(|_| Error::ApiMisuse("aead key length"))?;
        Ok(AeadKey { key: LessSafeKey::new(unbound) })
    }

    /// Encrypts `in_out` in place and appends the tag.
    pub fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), Error> {
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::Internal)
    }

    /// Encrypts `in_out` in place and returns the tag (for a caller that
    /// places it itself, as a record sealed into a larger buffer).
    pub fn seal_separate(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::Internal)?;
        tag.as_ref().try_into().map_err(|_| Error::Internal)
    }

    /// Checks the tag and decrypts in place; returns the plaintext prefix.
    /// Every failure is the same [`Error::DecryptFailed`].
    pub fn open<'a>(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        self.key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Error::DecryptFailed)
    }
}
