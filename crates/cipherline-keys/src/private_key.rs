//! Private keys: generation, PKCS#1 and PKCS#8 decoding, PKCS#8 (optionally
//! encrypted) encoding, and conversion into the protocol core's key types.
//!
//! Every private key is normalised to a PKCS#8 v1 `PrivateKeyInfo` held in a
//! zeroizing buffer; RSA keys go through aws-lc-rs, which checks that their
//! values are consistent.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_proto::crypto::sign::IdentityKey;
use der::asn1::{OctetStringRef, UintRef};
use der::{Decode as _, Encode as _};
use pkcs8::PrivateKeyInfoRef;
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use crate::encryption;
use crate::error::{Error, KeyProblem};
use crate::fingerprint::Fingerprint;
use crate::key::{ED25519_OID, KeyKind, PublicKey, RSA_OID, X25519_OID, algorithm_name, check_rsa_bits, uint_bits};
use crate::passphrase::Passphrase;

/// A private key of any kind cipherline uses. It has no `Debug` and no
/// `Display`; its bytes are zeroized on drop.
pub struct PrivateKey {
    /// Canonical DER PKCS#8 v1 `PrivateKeyInfo`.
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a fresh key from the operating system's randomness: RSA of
    /// 2048, 3072 or 4096 bits, X25519 or Ed25519.
    pub fn generate(kind: KeyKind) -> Result<Self, Error> {
        match kind {
            KeyKind::Rsa { bits } => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    _ => return Err(Error::InvalidRsaBits { bits }),
                };
                let pair = RsaKeyPair::generate(size).map_err(|_| Error::Internal("RSA key generation failed"))?;
                let pkcs8 = pair.as_der().map_err(|_| Error::Internal("RSA key encoding failed"))?;
                Self::from_pkcs8_der(pkcs8.as_ref()).map_err(Error::Key)
            }
            KeyKind::X25519 => {
                let mut raw = Zeroizing::new([0u8; 32]);
                aws_lc_rs::rand::fill(raw.as_mut()).map_err(|_| Error::Internal("no system randomness"))?;
                Self::from_x25519_bytes(&raw).map_err(Error::Key)
            }
            KeyKind::Ed25519 => {
                let pair = Ed25519KeyPair::generate().map_err(|_| Error::Internal("Ed25519 key generation failed"))?;
                let pkcs8 = pair.to_pkcs8v1().map_err(|_| Error::Internal("Ed25519 key encoding failed"))?;
                Self::from_pkcs8_der(pkcs8.as_ref()).map_err(Error::Key)
            }
        }
    }

    /// Decodes a DER PKCS#1 `RSAPrivateKey` (the body of an `RSA PRIVATE
    /// KEY` PEM block).
    pub(crate) fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyProblem> {
        let rsa = pkcs1::RsaPrivateKey::<UintRef<'_>>::from_der(der)
            .map_err(|_| KeyProblem::Malformed("PKCS#1 RSA private key"))?;
        if rsa.other_prime_infos.is_some() {
            return Err(KeyProblem::UnsupportedAlgorithm("multi-prime RSA".to_owned()));
        }
        // Checked before aws-lc sees the key, so that a small key gets a
        // message saying so rather than a generic rejection.
        check_rsa_bits(uint_bits(rsa.modulus))?;
        let pair = RsaKeyPair::from_der(der).map_err(|_| KeyProblem::Rejected)?;
        let pkcs8 = pair.as_der().map_err(|_| KeyProblem::Rejected)?;
        let spki = pair.public_key().as_der().map_err(|_| KeyProblem::Rejected)?;
        let public = PublicKey::from_spki_der(spki.as_ref())?;
        Ok(PrivateKey { pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()), public })
    }

    /// Decodes a DER PKCS#8 `PrivateKeyInfo` (v1 or v2) holding an RSA,
    /// X25519 or Ed25519 key.
    pub(crate) fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyProblem> {
        let info = PrivateKeyInfoRef::try_from(der).map_err(|_| KeyProblem::Malformed("PKCS#8 private key"))?;
        let oid = info.algorithm.oid;
        if oid == RSA_OID {
            if info.algorithm.parameters.is_some_and(|p| !p.is_null()) {
                return Err(KeyProblem::Malformed("RSA private key parameters"));
            }
            return Self::from_pkcs1_der(info.private_key.as_bytes());
        }
        if oid != X25519_OID && oid != ED25519_OID {
            return Err(KeyProblem::UnsupportedAlgorithm(algorithm_name(oid)));
        }
        if info.algorithm.parameters.is_some() {
            return Err(KeyProblem::Malformed("RFC 8410 private key parameters"));
        }
        // RFC 8410: the private key field holds a CurvePrivateKey, itself an
        // OCTET STRING of the 32 raw bytes.
        let inner = <&OctetStringRef>::from_der(info.private_key.as_bytes())
            .map_err(|_| KeyProblem::Malformed("RFC 8410 private key"))?;
        let raw: Zeroizing<[u8; 32]> = Zeroizing::new(
            inner.as_bytes().try_into().map_err(|_| KeyProblem::Malformed("RFC 8410 private key length"))?,
        );
        let key = if oid == X25519_OID { Self::from_x25519_bytes(&raw)? } else { Self::from_ed25519_seed(&raw)? };
        // A PKCS#8 v2 file may carry the public key too; it must match.
        if let Some(embedded) = info.public_key {
            let embedded = embedded.as_bytes().ok_or(KeyProblem::Malformed("embedded public key"))?;
            let expected = PublicKey::from_raw_rfc8410(
                key.kind(),
                embedded.try_into().map_err(|_| KeyProblem::PublicKeyMismatch)?,
            )?;
            if expected != key.public {
                return Err(KeyProblem::PublicKeyMismatch);
            }
        }
        Ok(key)
    }

    /// Builds an X25519 key from its 32 private bytes.
    fn from_x25519_bytes(raw: &[u8; 32]) -> Result<Self, KeyProblem> {
        let server = ServerKey::x25519_from_bytes(raw).map_err(|_| KeyProblem::Rejected)?;
        let public = PublicKey::from_spki_der(server.public_key().spki())?;
        let inner = Zeroizing::new(
            OctetStringRef::new(raw)
                .and_then(|o| o.to_der())
                .map_err(|_| KeyProblem::Malformed("X25519 private key"))?,
        );
        let algorithm = AlgorithmIdentifierRef { oid: X25519_OID, parameters: None };
        let octets = OctetStringRef::new(&inner).map_err(|_| KeyProblem::Malformed("X25519 private key"))?;
        let pkcs8 = PrivateKeyInfoRef::new(algorithm, octets)
            .to_der()
            .map_err(|_| KeyProblem::Malformed("X25519 private key"))?;
        Ok(PrivateKey { pkcs8: Zeroizing::new(pkcs8), public })
    }

    /// Builds an Ed25519 key from its 32-byte seed.
    fn from_ed25519_seed(seed: &[u8; 32]) -> Result<Self, KeyProblem> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyProblem::Rejected)?;
        let raw_public: &[u8; 32] = pair.public_key().as_ref().try_into().map_err(|_| KeyProblem::Rejected)?;
        let public = PublicKey::from_raw_rfc8410(KeyKind::Ed25519, raw_public)?;
        let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyProblem::Rejected)?;
        Ok(PrivateKey { pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()), public })
    }

    /// What kind of key this is.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.public.kind()
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The fingerprint of the public key.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint()
    }

    /// The canonical DER PKCS#8 v1 encoding.
    #[cfg(test)]
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as PEM text: `PRIVATE KEY` (PKCS#8) without a passphrase, or
    /// `ENCRYPTED PRIVATE KEY` (PKCS#8 encrypted with PBES2: scrypt and
    /// AES-256-CBC) with one. LF line endings.
    pub fn to_pem(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>, Error> {
        let lf = pem_rfc7468::LineEnding::LF;
        match passphrase {
            None => pem_rfc7468::encode_string("PRIVATE KEY", lf, &self.pkcs8)
                .map(Zeroizing::new)
                .map_err(|_| Error::Internal("PEM encoding failed")),
            Some(passphrase) => {
                let encrypted = encryption::encrypt(&self.pkcs8, passphrase).map_err(Error::Key)?;
                encrypted.to_pem("ENCRYPTED PRIVATE KEY", lf).map_err(|_| Error::Internal("PEM encoding failed"))
            }
        }
    }

    /// The key as a server's static key (RSA for RSA-OAEP, or X25519).
    pub fn to_server_key(&self) -> Result<ServerKey, Error> {
        match self.kind() {
            KeyKind::Rsa { .. } => ServerKey::rsa_from_pkcs8(&self.pkcs8).map_err(|_| Error::Key(KeyProblem::Rejected)),
            KeyKind::X25519 => {
                let raw = self.rfc8410_private_bytes().map_err(Error::Key)?;
                ServerKey::x25519_from_bytes(&raw).map_err(|_| Error::Key(KeyProblem::Rejected))
            }
            found => Err(Error::Key(KeyProblem::WrongKind { found, wanted: "an RSA or X25519 server key" })),
        }
    }

    /// The key as a client identity key (Ed25519, or RSA for RSA-PSS).
    pub fn to_identity_key(&self) -> Result<IdentityKey, Error> {
        let result = match self.kind() {
            KeyKind::Rsa { .. } => IdentityKey::rsa_from_pkcs8(&self.pkcs8),
            KeyKind::Ed25519 => IdentityKey::ed25519_from_pkcs8(&self.pkcs8),
            found => return Err(Error::Key(KeyProblem::WrongKind { found, wanted: "an Ed25519 or RSA identity key" })),
        };
        result.map_err(|_| Error::Key(KeyProblem::Rejected))
    }

    /// The 32 raw private bytes of an X25519 or Ed25519 key.
    fn rfc8410_private_bytes(&self) -> Result<Zeroizing<[u8; 32]>, KeyProblem> {
        let info = PrivateKeyInfoRef::try_from(self.pkcs8.as_slice()).map_err(|_| KeyProblem::Rejected)?;
        let inner = <&OctetStringRef>::from_der(info.private_key.as_bytes()).map_err(|_| KeyProblem::Rejected)?;
        Ok(Zeroizing::new(inner.as_bytes().try_into().map_err(|_| KeyProblem::Rejected)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pkcs8() {
        for kind in [KeyKind::X25519, KeyKind::Ed25519, KeyKind::Rsa { bits: 2048 }] {
            let key = PrivateKey::generate(kind).unwrap();
            assert_eq!(key.kind(), kind);
            let again = PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
            assert_eq!(again.pkcs8_der(), key.pkcs8_der());
            assert_eq!(again.public_key(), key.public_key());
            assert_eq!(kind.is_server_key(), key.to_server_key().is_ok());
            assert_eq!(kind.is_identity_key(), key.to_identity_key().is_ok());
        }
    }

    #[test]
    fn server_key_public_half_matches() {
        let key = PrivateKey::generate(KeyKind::X25519).unwrap();
        let server = key.to_server_key().unwrap();
        assert_eq!(server.public_key().spki(), key.public_key().spki_der());
        assert_eq!(Fingerprint::of_server_key(server.public_key()), key.fingerprint());
    }

    #[test]
    fn odd_rsa_sizes_are_refused_for_generation() {
        for bits in [1024, 2047, 8192] {
            assert!(matches!(PrivateKey::generate(KeyKind::Rsa { bits }), Err(Error::InvalidRsaBits { .. })));
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x00", &[0xff; 40]] {
            assert!(PrivateKey::from_pkcs8_der(input).is_err());
            assert!(PrivateKey::from_pkcs1_der(input).is_err());
        }
    }
}
