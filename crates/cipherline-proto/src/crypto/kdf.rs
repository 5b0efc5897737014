//! HKDF-SHA256 key derivation, the transcript hash and Finished MACs
//! (PROTOCOL.md §6).

use aws_lc_rs::{digest, hkdf, hmac};
use zeroize::Zeroizing;

use crate::Error;

/// Bytes in a SHA-256 output, a secret and a Finished MAC.
pub const HASH_LEN: usize = 32;

/// Every label starts with this, binding derived keys to the protocol version.
pub const LABEL_PREFIX: &[u8] = b"cipherline1 ";

/// A 32-byte secret that is erased when dropped and never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; HASH_LEN]>);

impl Secret {
    /// Wraps secret bytes.
    #[must_use]
    pub fn new(bytes: [u8; HASH_LEN]) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The secret's bytes. Callers must not log or copy them out of a
    /// zeroizing container.
    #[must_use]
    pub fn expose(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

/// An output length for aws-lc-rs's HKDF-Expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Extract(salt, ikm), returned as a pseudorandom key to expand from.
#[must_use]
pub fn extract(salt: &[u8], ikm: &[u8]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm)
}

/// Treats a 32-byte secret as an HKDF pseudorandom key (for secrets that are
/// themselves HKDF outputs, as in TLS 1.3).
#[must_use]
pub fn prk(secret: &Secret) -> hkdf::Prk {
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret.expose())
}

/// The HKDF info for a label:
/// `u16 length || u8 len || "cipherline1 " || label || u8 len || context`.
fn label_info(label: &[u8], context: &[u8], len: usize) -> Result<Vec<u8>, Error> {
    let out_len = u16::try_from(len).map_err(|_| Error::ApiMisuse("hkdf output too long"))?;
    let full_len =
        u8::try_from(LABEL_PREFIX.len() + label.len()).map_err(|_| Error::ApiMisuse("hkdf label too long"))?;
    let ctx_len = u8::try_from(context.len()).map_err(|_| Error::ApiMisuse("hkdf context too long"))?;
    let mut info = Vec::with_capacity(4 + usize::from(full_len) + context.len());
    info.extend_from_slice(&out_len.to_be_bytes());
    info.push(full_len);
    info.extend_from_slice(LABEL_PREFIX);
    info.extend_from_slice(label);
    info.push(ctx_len);
    info.extend_from_slice(context);
    Ok(info)
}

/// HKDF-Expand-Label(prk, label, context, out.len()).
pub fn expand_label_into(prk: &hkdf::Prk, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let info = label_info(label, context, out.len())?;
    let info_parts = [info.as_slice()];
    prk.expand(&info_parts, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| Error::Internal)
}

/// HKDF-Expand-Label with a 32-byte output.
pub fn expand_label(prk: &hkdf::Prk, label: &[u8], context: &[u8]) -> Result<Secret, Error> {
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    expand_label_into(prk, label, context, &mut out[..])?;
    Ok(Secret(out))
}

/// The running SHA-256 hash over every handshake message sent or received.
#[derive(Clone)]
pub struct Transcript(digest::Context);

impl Transcript {
    /// An empty transcript.
    #[must_use]
    pub fn new() -> Self {
        Transcript(digest::Context::new(&digest::SHA256))
    }

    /// Adds one handshake message, exactly as encoded on the wire.
    pub fn add(&mut self, message: &[u8]) {
        self.0.update(message);
    }

    /// The hash of everything added so far.
    #[must_use]
    pub fn hash(&self) -> [u8; HASH_LEN] {
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(self.0.clone().finish().as_ref());
        out
    }
}

impl Default for Transcript {
    fn default() -> Self {
        Transcript::new()
    }
}

/// SHA-256 of the empty string (the context of "derived" labels).
#[must_use]
pub fn empty_hash() -> [u8; HASH_LEN] {
    Transcript::new().hash()
}

/// HMAC-SHA256(key, data).
#[must_use]
pub fn hmac(key: &Secret, data: &[u8]) -> [u8; HASH_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(hmac::sign(&key, data).as_ref());
    out
}

/// Checks `tag == HMAC-SHA256(key, data)` in constant time.
#[must_use]
pub fn hmac_verify(key: &Secret, data: &[u8], tag: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    hmac::verify(&key, data, tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_info_layout() {
        let info = label_info(b"key", b"", 32).unwrap();
        let mut expected = vec![0x00, 0x20, 15];
        expected.extend_from_slice(b"cipherline1 key");
        expected.push(0);
        assert_eq!(info, expected);
    }

    #[test]
    fn expand_depends_on_label_and_context() {
        let p = extract(&[], b"ikm");
        let a = expand_label(&p, b"a", b"").unwrap();
        let b = expand_label(&p, b"b", b"").unwrap();
        let c = expand_label(&p, b"a", b"x").unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
    }
}
