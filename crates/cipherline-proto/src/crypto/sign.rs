//! Identity signatures: Ed25519 and RSA-PSS-SHA256 (PROTOCOL.md §7.4).

use core::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicEncryptingKey;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};

use super::sha256;
use crate::error::{DecodeError, Error, Incompatibility};

use super::kem::{RSA_MAX_BITS, RSA_MIN_BITS};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// Largest identity SubjectPublicKeyInfo accepted.
pub const MAX_SPKI_LEN: usize = 1024;
/// Largest signature accepted (RSA-4096).
pub const MAX_SIGNATURE_LEN: usize = 512;

/// A signature algorithm code point (the TLS SignatureScheme values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// Ed25519 (RFC 8032), code 0x0807.
    Ed25519,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, code 0x0804.
    RsaPssSha256,
}

impl SignatureAlgorithm {
    /// The code on the wire.
    #[must_use]
    pub fn to_u16(self) -> u16 {
        match self {
            SignatureAlgorithm::Ed25519 => 0x0807,
            SignatureAlgorithm::RsaPssSha256 => 0x0804,
        }
    }

    /// Parses a code; `None` if unknown.
    #[must_use]
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            0x0807 => Some(SignatureAlgorithm::Ed25519),
            0x0804 => Some(SignatureAlgorithm::RsaPssSha256),
            _ => None,
        }
    }
}

/// A client's identity private key. No `Debug`; AWS-LC cleanses it on drop.
pub struct IdentityKey {
    inner: IdentityInner,
    public: IdentityPublicKey,
}

enum IdentityInner {
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl IdentityKey {
    /// Loads an Ed25519 key from PKCS#8 DER (v1 or v2).
    pub fn ed25519_from_pkcs8(der: &[u8]) -> Result<Self, Error> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| Error::InvalidConfig("not an Ed25519 PKCS#8 private key"))?;
        Self::from_ed25519(pair)
    }

    /// Builds an Ed25519 key from its 32-byte seed.
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<Self, Error> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::Internal)?;
        Self::from_ed25519(pair)
    }

    fn from_ed25519(pair: Ed25519KeyPair) -> Result<Self, Error> {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let public = IdentityPublicKey::from_spki(SignatureAlgorithm::Ed25519, &spki)?;
        Ok(IdentityKey { inner: IdentityInner::Ed25519(pair), public })
    }

    /// Loads an RSA key (2048 to 4096 bits) from PKCS#8 DER, for RSA-PSS.
    pub fn rsa_from_pkcs8(der: &[u8]) -> Result<Self, Error> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(|_| Error::InvalidConfig("not an RSA PKCS#8 private key"))?;
        let bits = pair.public_modulus_len() * 8;
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(Error::InvalidConfig("RSA key must be 2048 to 4096 bits"));
        }
        let spki = pair.public_key().as_der().map_err(|_| Error::Internal)?;
        let public = IdentityPublicKey::from_spki(SignatureAlgorithm::RsaPssSha256, spki.as_ref())?;
        Ok(IdentityKey { inner: IdentityInner::Rsa(pair), public })
    }

    /// The Ed25519 private key in the form an MLS signer takes it (the
    /// 32-byte seed, then the 32-byte public key), for the end-to-end layer,
    /// whose credentials are this same key; `None` for an RSA key (the MLS
    /// suites sign with Ed25519). Erased from memory when dropped.
    #[must_use]
    pub fn ed25519_mls_secret(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        use aws_lc_rs::encoding::{AsBigEndian as _, Curve25519SeedBin};
        let IdentityInner::Ed25519(pair) = &self.inner else { return None };
        let seed = pair.seed().ok()?;
        let bin: Curve25519SeedBin<'_> = seed.as_be_bytes().ok()?;
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(64));
        out.extend_from_slice(bin.as_ref());
        out.extend_from_slice(pair.public_key().as_ref());
        Some(out)
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &IdentityPublicKey {
        &self.public
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.inner {
            IdentityInner::Ed25519(pair) => Ok(pair.try_sign(msg).map_err(|_| Error::Internal)?.as_ref().to_vec()),
            IdentityInner::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                // aws-lc-rs draws the PSS salt from its own DRBG; the RNG
                // argument is required by the signature but not used.
                let rng = aws_lc_rs::rand::SystemRandom::new();
                pair.sign(&signature::RSA_PSS_SHA256, &rng, msg, &mut sig).map_err(|_| Error::Internal)?;
                Ok(sig)
            }
        }
    }
}

/// An identity public key: algorithm plus DER SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityPublicKey {
    algorithm: SignatureAlgorithm,
    spki: Vec<u8>,
}

impl IdentityPublicKey {
    /// Parses and checks a public key for `algorithm`.
    pub fn from_spki(algorithm: SignatureAlgorithm, spki: &[u8]) -> Result<Self, Error> {
        if spki.len() > MAX_SPKI_LEN {
            return Err(DecodeError::KeyEncoding.into());
        }
        match algorithm {
            SignatureAlgorithm::Ed25519 => {
                let raw = spki.strip_prefix(&ED25519_SPKI_PREFIX[..]).ok_or(DecodeError::KeyEncoding)?;
                if raw.len() != 32 {
                    return Err(DecodeError::KeyEncoding.into());
                }
            }
            SignatureAlgorithm::RsaPssSha256 => {
                let key = PublicEncryptingKey::from_der(spki).map_err(|_| DecodeError::KeyEncoding)?;
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&key.key_size_bits()) {
                    return Err(Incompatibility::UnsupportedSignature.into());
                }
                let canonical = key.as_der().map_err(|_| Error::Internal)?;
                if canonical.as_ref() != spki {
                    return Err(DecodeError::KeyEncoding.into());
                }
            }
        }
        Ok(IdentityPublicKey { algorithm, spki: spki.to_vec() })
    }

    /// The Ed25519 key with these 32 raw bytes (as an MLS credential
    /// carries it).
    #[must_use]
    pub fn ed25519_from_raw(raw: &[u8; 32]) -> Self {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(raw);
        IdentityPublicKey { algorithm: SignatureAlgorithm::Ed25519, spki }
    }

    /// The raw 32 bytes of an Ed25519 key; `None` for RSA.
    #[must_use]
    pub fn ed25519_raw(&self) -> Option<[u8; 32]> {
        match self.algorithm {
            SignatureAlgorithm::Ed25519 => self.spki.get(ED25519_SPKI_PREFIX.len()..)?.try_into().ok(),
            SignatureAlgorithm::RsaPssSha256 => None,
        }
    }

    /// The signature algorithm.
    #[must_use]
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// The DER SubjectPublicKeyInfo.
    #[must_use]
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo.
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        sha256(&self.spki)
    }

    /// Checks `sig` over `msg`.
    #[must_use]
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self.algorithm {
            SignatureAlgorithm::Ed25519 => {
                let raw = self.spki.get(ED25519_SPKI_PREFIX.len()..).unwrap_or_default();
                UnparsedPublicKey::new(&signature::ED25519, raw).verify(msg, sig).is_ok()
            }
            SignatureAlgorithm::RsaPssSha256 => {
                UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, &self.spki).verify(msg, sig).is_ok()
            }
        }
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({:?}, sha256:", self.algorithm)?;
        for b in &self.fingerprint()[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_sign_verify_and_reject_tamper() {
        let key = IdentityKey::ed25519_from_seed(&[5; 32]).unwrap();
        let sig = key.sign(b"hello").unwrap();
        assert!(key.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hellp", &sig));
    }
}
