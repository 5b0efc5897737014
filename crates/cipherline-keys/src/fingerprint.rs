//! Key fingerprints: SHA-256 of the DER SubjectPublicKeyInfo.

use core::fmt;
use core::str::FromStr;

use base64ct::{Base64Unpadded, Encoding as _};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sha256;

use crate::error::Error;

/// The prefix of the text form, as OpenSSH prints it.
const PREFIX: &str = "SHA256:";
/// Bytes of the fingerprint shown in the [short form](Fingerprint::short).
const SHORT_BYTES: usize = 16;

/// The SHA-256 of a key's DER SubjectPublicKeyInfo: what people compare and
/// pin. The same key always has the same fingerprint, and it is the hash of
/// exactly the bytes a cipherline server sends in its ServerIdentity message.
///
/// Its text form (`Display`, `FromStr`) is OpenSSH's: `SHA256:` followed by
/// the 43-character Base64 encoding of the hash without `=` padding, e.g.
/// `SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU`. For an RSA key this
/// is the same value as `openssl pkey -pubin -outform DER | openssl sha256
/// -binary | base64`, minus the trailing `=`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER SubjectPublicKeyInfo.
    #[must_use]
    pub fn of_spki(spki: &[u8]) -> Self {
        Fingerprint(sha256(spki))
    }

    /// The fingerprint of a server's public key.
    #[must_use]
    pub fn of_server_key(key: &ServerPublicKey) -> Self {
        Fingerprint(key.fingerprint())
    }

    /// Wraps a raw SHA-256 value.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The raw SHA-256 value.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for reading aloud or comparing at a glance: the first 128
    /// bits of the hash as eight groups of four lowercase hex digits, e.g.
    /// `e3b0 c442 98fc 1c14 9afb f4c8 996f b924`.
    ///
    /// Forging a key whose short form matches a given server's still takes
    /// about 2^128 work, so comparing it is safe; the full `SHA256:` form is
    /// what files and flags use.
    #[must_use]
    pub fn short(&self) -> String {
        let mut out = String::with_capacity(SHORT_BYTES * 5 / 2);
        for (i, pair) in self.0.chunks_exact(2).take(SHORT_BYTES / 2).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            for b in pair {
                out.push_str(&format!("{b:02x}"));
            }
        }
        out
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(&Base64Unpadded::encode_string(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Parses `SHA256:<base64>`; the Base64 may carry its one `=` of padding
    /// (as `base64` prints it) or not (as OpenSSH prints it).
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let b64 =
            s.strip_prefix(PREFIX).ok_or(Error::InvalidFingerprint { reason: "it does not start with SHA256:" })?;
        let b64 = b64.strip_suffix('=').unwrap_or(b64);
        let mut out = [0u8; 32];
        let decoded = Base64Unpadded::decode(b64, &mut out)
            .map_err(|_| Error::InvalidFingerprint { reason: "the part after SHA256: is not valid Base64" })?;
        if decoded.len() != out.len() {
            return Err(Error::InvalidFingerprint { reason: "the hash is not 32 bytes long" });
        }
        Ok(Fingerprint(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_hash_matches_openssh_style() {
        // SHA-256 of the empty string, a value anyone can check.
        let fp = Fingerprint::of_spki(b"");
        assert_eq!(fp.to_string(), "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
        assert_eq!(fp.short(), "e3b0 c442 98fc 1c14 9afb f4c8 996f b924");
    }

    #[test]
    fn parses_its_own_output_with_or_without_padding() {
        let fp = Fingerprint::of_spki(b"some spki");
        let text = fp.to_string();
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(format!("{text}=").parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in
            ["", "SHA256:", "MD5:abc", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "SHA256:47DEQ", "SHA256:!!!"]
        {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
        // 33 bytes.
        let long = format!("SHA256:{}", Base64Unpadded::encode_string(&[1u8; 33]));
        assert!(long.parse::<Fingerprint>().is_err());
    }
}
