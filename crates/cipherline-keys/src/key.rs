//! Key kinds and public keys: SubjectPublicKeyInfo parsing and
//! canonicalisation, and the conversions into the protocol core's types.

use core::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::PublicEncryptingKey;
use cipherline_proto::crypto::kem::{RSA_MAX_BITS, RSA_MIN_BITS, ServerPublicKey};
use cipherline_proto::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, UintRef};
use der::{Decode as _, Encode as _};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::error::KeyProblem;
use crate::fingerprint::Fingerprint;

/// rsaEncryption (PKCS#1, RFC 8017).
pub(crate) const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-X25519 (RFC 8410).
pub(crate) const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
/// id-Ed25519 (RFC 8410).
pub(crate) const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// What a key is: its algorithm and, for RSA, its size.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA with a modulus of `bits` bits (2048 to 4096 accepted): a server
    /// key (RSA-OAEP) or an identity key (RSA-PSS).
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// X25519: a server key only.
    X25519,
    /// Ed25519: an identity (signing) key only.
    Ed25519,
}

impl KeyKind {
    /// Whether a server can use this kind of key as its static key.
    #[must_use]
    pub fn is_server_key(self) -> bool {
        matches!(self, KeyKind::Rsa { .. } | KeyKind::X25519)
    }

    /// Whether a client can use this kind of key as its identity key.
    #[must_use]
    pub fn is_identity_key(self) -> bool {
        matches!(self, KeyKind::Rsa { .. } | KeyKind::Ed25519)
    }

    /// The short lowercase algorithm name used in file names: `rsa`,
    /// `x25519` or `ed25519`.
    #[must_use]
    pub fn algorithm_name(self) -> &'static str {
        match self {
            KeyKind::Rsa { .. } => "rsa",
            KeyKind::X25519 => "x25519",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::X25519 => f.write_str("X25519"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// Checks an RSA modulus size against the protocol's bounds.
pub(crate) fn check_rsa_bits(bits: usize) -> Result<(), KeyProblem> {
    if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) { Ok(()) } else { Err(KeyProblem::RsaKeySize { bits }) }
}

/// The size in bits of a big-endian unsigned integer.
pub(crate) fn uint_bits(n: UintRef<'_>) -> usize {
    let bytes = n.as_bytes();
    match bytes.first() {
        None => 0,
        Some(&first) => bytes.len() * 8 - first.leading_zeros() as usize,
    }
}

/// A public key of any kind cipherline uses, held as its canonical DER
/// SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    spki: Vec<u8>,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo (RSA, X25519 or Ed25519) and
    /// re-encodes it canonically, so that one key has one fingerprint.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyProblem> {
        let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| KeyProblem::Malformed("public key"))?;
        let key_bits = info.subject_public_key.as_bytes().ok_or(KeyProblem::Malformed("public key bit string"))?;
        let oid = info.algorithm.oid;
        if oid == RSA_OID {
            // The parameters of rsaEncryption must be NULL (RFC 8017 A.1);
            // absent ones are tolerated as some encoders omit them.
            if info.algorithm.parameters.is_some_and(|p| !p.is_null()) {
                return Err(KeyProblem::Malformed("RSA public key parameters"));
            }
            Self::from_pkcs1_der(key_bits)
        } else if oid == X25519_OID || oid == ED25519_OID {
            if info.algorithm.parameters.is_some() {
                return Err(KeyProblem::Malformed("RFC 8410 public key parameters"));
            }
            let raw: &[u8; 32] =
                key_bits.try_into().map_err(|_| KeyProblem::Malformed("RFC 8410 public key length"))?;
            let kind = if oid == X25519_OID { KeyKind::X25519 } else { KeyKind::Ed25519 };
            Self::from_raw_rfc8410(kind, raw)
        } else {
            Err(KeyProblem::UnsupportedAlgorithm(algorithm_name(oid)))
        }
    }

    /// Parses a DER PKCS#1 `RSAPublicKey` (the body of an `RSA PUBLIC KEY`
    /// PEM block) and wraps it in a SubjectPublicKeyInfo.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyProblem> {
        let rsa = pkcs1::RsaPublicKey::<UintRef<'_>>::from_der(der)
            .map_err(|_| KeyProblem::Malformed("PKCS#1 RSA public key"))?;
        let bits = uint_bits(rsa.modulus);
        check_rsa_bits(bits)?;
        // Re-encode: the exact PKCS#1 bytes wrapped with NULL parameters,
        // as OpenSSL and aws-lc write it.
        let pkcs1 = rsa.to_der().map_err(|_| KeyProblem::Malformed("PKCS#1 RSA public key"))?;
        let spki = SubjectPublicKeyInfoRef {
            algorithm: AlgorithmIdentifierRef { oid: RSA_OID, parameters: Some(AnyRef::NULL) },
            subject_public_key: BitStringRef::from_bytes(&pkcs1)
                .map_err(|_| KeyProblem::Malformed("RSA public key"))?,
        }
        .to_der()
        .map_err(|_| KeyProblem::Malformed("RSA public key"))?;
        // The protocol core accepts only aws-lc's canonical encoding; check
        // here so that a key that loads also works on the wire.
        let parsed = PublicEncryptingKey::from_der(&spki).map_err(|_| KeyProblem::Rejected)?;
        let canonical = parsed.as_der().map_err(|_| KeyProblem::Rejected)?;
        if canonical.as_ref() != spki.as_slice() {
            return Err(KeyProblem::Malformed("RSA public key (not in canonical form)"));
        }
        Ok(PublicKey { kind: KeyKind::Rsa { bits }, spki })
    }

    /// An X25519 or Ed25519 key from its 32 raw bytes.
    pub(crate) fn from_raw_rfc8410(kind: KeyKind, raw: &[u8; 32]) -> Result<Self, KeyProblem> {
        let oid = match kind {
            KeyKind::X25519 => X25519_OID,
            KeyKind::Ed25519 => ED25519_OID,
            KeyKind::Rsa { .. } => return Err(KeyProblem::Malformed("RFC 8410 public key")),
        };
        let spki = SubjectPublicKeyInfoRef {
            algorithm: AlgorithmIdentifierRef { oid, parameters: None },
            subject_public_key: BitStringRef::from_bytes(raw).map_err(|_| KeyProblem::Malformed("public key"))?,
        }
        .to_der()
        .map_err(|_| KeyProblem::Malformed("public key"))?;
        Ok(PublicKey { kind, spki })
    }

    /// What kind of key this is.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The canonical DER SubjectPublicKeyInfo.
    #[must_use]
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_spki(&self.spki)
    }

    /// The key as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM block, LF line
    /// endings.
    pub fn to_pem(&self) -> Result<String, KeyProblem> {
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &self.spki)
            .map_err(|_| KeyProblem::Malformed("public key"))
    }

    /// The key as a server's static key (RSA or X25519).
    pub fn to_server_public_key(&self) -> Result<ServerPublicKey, KeyProblem> {
        if !self.kind.is_server_key() {
            return Err(KeyProblem::WrongKind { found: self.kind, wanted: "an RSA or X25519 server key" });
        }
        ServerPublicKey::from_spki(&self.spki).map_err(|_| KeyProblem::Rejected)
    }

    /// The key as a client identity key (Ed25519, or RSA for RSA-PSS).
    pub fn to_identity_public_key(&self) -> Result<IdentityPublicKey, KeyProblem> {
        let algorithm = match self.kind {
            KeyKind::Ed25519 => SignatureAlgorithm::Ed25519,
            KeyKind::Rsa { .. } => SignatureAlgorithm::RsaPssSha256,
            KeyKind::X25519 => {
                return Err(KeyProblem::WrongKind { found: self.kind, wanted: "an Ed25519 or RSA identity key" });
            }
        };
        IdentityPublicKey::from_spki(algorithm, &self.spki).map_err(|_| KeyProblem::Rejected)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.kind, self.fingerprint())
    }
}

/// A readable name for a key algorithm cipherline does not support.
pub(crate) fn algorithm_name(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.10045.2.1" => "EC (ECDSA/ECDH)",
        "1.2.840.113549.1.1.10" => "RSA-PSS-only key (RSASSA-PSS OID)",
        "1.2.840.113549.1.1.7" => "RSA-OAEP-only key (RSAES-OAEP OID)",
        "1.3.101.111" => "X448",
        "1.3.101.113" => "Ed448",
        "1.2.840.10040.4.1" => "DSA",
        other => return format!("OID {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_spki_matches_the_protocol_core_encoding() {
        let server = cipherline_proto::crypto::kem::ServerKey::x25519_from_bytes(&[7; 32]).unwrap();
        let spki = server.public_key().spki();
        let parsed = PublicKey::from_spki_der(spki).unwrap();
        assert_eq!(parsed.kind(), KeyKind::X25519);
        assert_eq!(parsed.spki_der(), spki);
        assert_eq!(parsed.to_server_public_key().unwrap(), *server.public_key());
        assert!(parsed.to_identity_public_key().is_err());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x00", &[0xff; 40]] {
            assert!(PublicKey::from_spki_der(input).is_err());
            assert!(PublicKey::from_pkcs1_der(input).is_err());
        }
    }
}
