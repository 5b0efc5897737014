//! Key encapsulation: the server's static KEM (RSA-OAEP-SHA256 or X25519) and
//! the ephemeral KEM (X25519 or X25519MLKEM768) (PROTOCOL.md §5, §6).

use core::fmt;

use aws_lc_rs::agreement::{self, UnparsedPublicKey, X25519};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use zeroize::Zeroizing;

use super::kdf::{HASH_LEN, Secret};
use super::{Rng, random_array, sha256};
use crate::error::{DecodeError, Error, Incompatibility};
use crate::suite::{EphemeralKem, StaticKem};

/// Bytes in an X25519 public key, private key and shared secret.
pub const X25519_LEN: usize = 32;
/// Bytes in an ML-KEM-768 encapsulation key.
pub const MLKEM768_EK_LEN: usize = 1184;
/// Bytes in an ML-KEM-768 ciphertext.
pub const MLKEM768_CT_LEN: usize = 1088;
/// Smallest accepted RSA modulus.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus.
pub const RSA_MAX_BITS: usize = 4096;
/// The OAEP label: binds the encrypted secret to this protocol and its use.
pub const RSA_OAEP_LABEL: &[u8] = b"cipherline1 static kem";
/// Largest SubjectPublicKeyInfo accepted for a server key (RSA-4096 is 550).
pub const MAX_SPKI_LEN: usize = 1024;

/// DER prefix of an X25519 SubjectPublicKeyInfo (RFC 8410); the key follows.
const X25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00];

fn x25519_private(bytes: &[u8; X25519_LEN]) -> Result<agreement::PrivateKey, Error> {
    agreement::PrivateKey::from_private_key(&X25519, bytes).map_err(|_| Error::Internal)
}

fn x25519_public(private: &agreement::PrivateKey) -> Result<[u8; X25519_LEN], Error> {
    let public = private.compute_public_key().map_err(|_| Error::Internal)?;
    public.as_ref().try_into().map_err(|_| Error::Internal)
}

/// X25519 with a peer public key; refuses the all-zero output that a
/// low-order peer key would force (RFC 7748 §6.1).
pub fn x25519_agree(private: &agreement::PrivateKey, peer: &[u8]) -> Result<Secret, Error> {
    if peer.len() != X25519_LEN {
        return Err(DecodeError::KeyEncoding.into());
    }
    let secret = agreement::agree(
        private,
        UnparsedPublicKey::new(&X25519, peer),
        Error::Decode(DecodeError::KeyEncoding),
        |ss| {
            let mut out = [0u8; HASH_LEN];
            if ss.len() != HASH_LEN {
                return Err(Error::Internal);
            }
            out.copy_from_slice(ss);
            Ok(Secret::new(out))
        },
    )?;
    // aws-lc already refuses an all-zero result; checked again because the
    // protocol's security depends on it.
    if secret.expose().iter().all(|&b| b == 0) {
        return Err(DecodeError::KeyEncoding.into());
    }
    Ok(secret)
}

/// A server's long-term public key as carried in ServerIdentity: its DER
/// SubjectPublicKeyInfo, which is also what its fingerprint hashes.
#[derive(Clone)]
pub struct ServerPublicKey {
    spki: Vec<u8>,
    inner: PublicInner,
}

#[derive(Clone)]
enum PublicInner {
    Rsa(PublicEncryptingKey, usize),
    X25519([u8; X25519_LEN]),
}

impl ServerPublicKey {
    /// Parses a DER SubjectPublicKeyInfo holding an RSA (2048–4096 bits) or an
    /// X25519 public key.
    pub fn from_spki(spki: &[u8]) -> Result<Self, Error> {
        if spki.len() > MAX_SPKI_LEN {
            return Err(DecodeError::KeyEncoding.into());
        }
        if let Some(raw) = spki.strip_prefix(&X25519_SPKI_PREFIX[..]) {
            let raw: [u8; X25519_LEN] = raw.try_into().map_err(|_| DecodeError::KeyEncoding)?;
            return Ok(ServerPublicKey { spki: spki.to_vec(), inner: PublicInner::X25519(raw) });
        }
        let public = PublicEncryptingKey::from_der(spki).map_err(|_| DecodeError::KeyEncoding)?;
        let bits = public.key_size_bits();
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(Incompatibility::UnsupportedKey.into());
        }
        // Only a canonical encoding is accepted, so that one key has exactly
        // one fingerprint.
        let canonical = public.as_der().map_err(|_| Error::Internal)?;
        if canonical.as_ref() != spki {
            return Err(DecodeError::KeyEncoding.into());
        }
        Ok(ServerPublicKey { spki: spki.to_vec(), inner: PublicInner::Rsa(public, bits) })
    }

    fn x25519(raw: [u8; X25519_LEN]) -> Self {
        let mut spki = X25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&raw);
        ServerPublicKey { spki, inner: PublicInner::X25519(raw) }
    }

    /// The DER SubjectPublicKeyInfo, exactly as sent on the wire.
    #[must_use]
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo (what people compare and pin).
    #[must_use]
    pub fn fingerprint(&self) -> [u8; 32] {
        sha256(&self.spki)
    }

    /// Which static KEM this key is for.
    #[must_use]
    pub fn static_kem(&self) -> StaticKem {
        match self.inner {
            PublicInner::Rsa(..) => StaticKem::RsaOaepSha256,
            PublicInner::X25519(_) => StaticKem::X25519,
        }
    }

    /// The RSA modulus size in bits, or `None` for X25519.
    #[must_use]
    pub fn rsa_bits(&self) -> Option<usize> {
        match self.inner {
            PublicInner::Rsa(_, bits) => Some(bits),
            PublicInner::X25519(_) => None,
        }
    }

    /// Encapsulates a fresh secret to this key: `(ciphertext, shared secret)`.
    pub(crate) fn encapsulate(&self, rng: &mut dyn Rng) -> Result<(Vec<u8>, Secret), Error> {
        match &self.inner {
            PublicInner::Rsa(public, _) => {
                let key = OaepPublicEncryptingKey::new(public.clone()).map_err(|_| Error::Internal)?;
                let secret = Secret::new(random_array(rng)?);
                let mut ct = vec![0u8; key.ciphertext_size()];
                let written = key
                    .encrypt(&OAEP_SHA256_MGF1SHA256, secret.expose(), &mut ct, Some(RSA_OAEP_LABEL))
                    .map_err(|_| Error::Internal)?
                    .len();
                ct.truncate(written);
                Ok((ct, secret))
            }
            PublicInner::X25519(server) => {
                let eph = x25519_private(&Zeroizing::new(random_array(rng)?))?;
                let ct = x25519_public(&eph)?.to_vec();
                let ss = x25519_agree(&eph, server)?;
                Ok((ct, ss))
            }
        }
    }

    /// The ciphertext length this key's encapsulation produces.
    #[must_use]
    pub fn ciphertext_len(&self) -> usize {
        match &self.inner {
            PublicInner::Rsa(key, _) => key.key_size_bytes(),
            PublicInner::X25519(_) => X25519_LEN,
        }
    }
}

impl PartialEq for ServerPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for ServerPublicKey {}

impl fmt::Debug for ServerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = self.fingerprint();
        write!(f, "ServerPublicKey({:?}, sha256:", self.static_kem())?;
        for b in &fp[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// A server's long-term private key. No `Debug`; AWS-LC cleanses it on drop.
pub struct ServerKey {
    inner: PrivateInner,
    public: ServerPublicKey,
}

enum PrivateInner {
    Rsa(OaepPrivateDecryptingKey),
    X25519(agreement::PrivateKey),
}

impl ServerKey {
    /// Loads an RSA private key from PKCS#8 DER; 2048 to 4096 bits.
    pub fn rsa_from_pkcs8(der: &[u8]) -> Result<Self, Error> {
        let key =
            PrivateDecryptingKey::from_pkcs8(der).map_err(|_| Error::InvalidConfig("not an RSA PKCS#8 private key"))?;
        let bits = key.key_size_bits();
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(Error::InvalidConfig("RSA key must be 2048 to 4096 bits"));
        }
        let spki = key.public_key().as_der().map_err(|_| Error::Internal)?;
        let public = ServerPublicKey::from_spki(spki.as_ref())?;
        let oaep = OaepPrivateDecryptingKey::new(key).map_err(|_| Error::InvalidConfig("RSA key unusable for OAEP"))?;
        Ok(ServerKey { inner: PrivateInner::Rsa(oaep), public })
    }

    /// Builds an X25519 key from its 32 private bytes.
    pub fn x25519_from_bytes(bytes: &[u8; X25519_LEN]) -> Result<Self, Error> {
        let private = x25519_private(bytes)?;
        let public = ServerPublicKey::x25519(x25519_public(&private)?);
        Ok(ServerKey { inner: PrivateInner::X25519(private), public })
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> &ServerPublicKey {
        &self.public
    }

    /// Recovers the client's static secret from its ciphertext.
    ///
    /// For RSA, a ciphertext that fails OAEP decoding does not produce an
    /// error: it produces a random secret (implicit rejection), so the
    /// handshake fails later at the client's Finished check exactly as it
    /// would for any wrong key, and an attacker learns nothing about why
    /// (no padding oracle in the sense of Bleichenbacher or Manger).
    pub fn decapsulate(&self, ct: &[u8], rng: &mut dyn Rng) -> Result<Secret, Error> {
        match &self.inner {
            PrivateInner::Rsa(key) => {
                if ct.len() != key.key_size_bytes() {
                    return Err(DecodeError::KeyEncoding.into());
                }
                let fallback = Secret::new(random_array(rng)?);
                let mut buf = Zeroizing::new(vec![0u8; key.min_output_size()]);
                match key.decrypt(&OAEP_SHA256_MGF1SHA256, ct, &mut buf, Some(RSA_OAEP_LABEL)) {
                    Ok(pt) if pt.len() == HASH_LEN => {
                        let mut out = [0u8; HASH_LEN];
                        out.copy_from_slice(pt);
                        Ok(Secret::new(out))
                    }
                    _ => Ok(fallback),
                }
            }
            PrivateInner::X25519(key) => x25519_agree(key, ct),
        }
    }
}

/// The client's ephemeral private keys, used once and dropped.
pub struct EphemeralSecret {
    x25519: agreement::PrivateKey,
    mlkem: Option<DecapsulationKey>,
}

/// Generates the client's ephemeral key share for `kem`: `(secret, share)`.
/// For [`EphemeralKem::None`] there is no secret and the share is empty.
pub(crate) fn ephemeral_generate(
    kem: EphemeralKem,
    rng: &mut dyn Rng,
) -> Result<(Option<EphemeralSecret>, Vec<u8>), Error> {
    let mlkem = match kem {
        EphemeralKem::None => return Ok((None, Vec::new())),
        EphemeralKem::X25519 => None,
        EphemeralKem::X25519MlKem768 => Some(DecapsulationKey::generate(&ML_KEM_768).map_err(|_| Error::Internal)?),
    };
    let x25519 = x25519_private(&Zeroizing::new(random_array(rng)?))?;
    let mut share = Vec::with_capacity(MLKEM768_EK_LEN + X25519_LEN);
    if let Some(dk) = &mlkem {
        let ek = dk.encapsulation_key().and_then(|ek| ek.key_bytes()).map_err(|_| Error::Internal)?;
        share.extend_from_slice(ek.as_ref());
    }
    share.extend_from_slice(&x25519_public(&x25519)?);
    Ok((Some(EphemeralSecret { x25519, mlkem }), share))
}

/// Expected `(client share, server share)` lengths for `kem`.
#[must_use]
pub fn ephemeral_share_lens(kem: EphemeralKem) -> (usize, usize) {
    match kem {
        EphemeralKem::None => (0, 0),
        EphemeralKem::X25519 => (X25519_LEN, X25519_LEN),
        EphemeralKem::X25519MlKem768 => (MLKEM768_EK_LEN + X25519_LEN, MLKEM768_CT_LEN + X25519_LEN),
    }
}

/// The ephemeral shared secret: ML-KEM's secret then X25519's for the hybrid
/// (the X25519MLKEM768 order), X25519's alone, or 32 zero bytes for none.
/// Erased on drop; no `Debug`.
pub struct EphemeralSharedSecret(Zeroizing<Vec<u8>>);

impl EphemeralSharedSecret {
    /// The 32 zero bytes that stand in for a suite without an ephemeral KEM.
    #[must_use]
    pub fn none() -> Self {
        EphemeralSharedSecret(Zeroizing::new(vec![0u8; HASH_LEN]))
    }

    /// The secret's bytes, for the key schedule.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// Encapsulates to a peer's ML-KEM-768 encapsulation key:
/// `(ciphertext, shared secret)`.
///
/// A key of the wrong length, or one whose coefficients are not reduced
/// modulo q (the FIPS 203 §7.2 modulus check), is refused as
/// [`DecodeError::KeyEncoding`]. aws-lc-rs checks the length when the key is
/// imported but the modulus only inside `encapsulate`, so a failure there is
/// reported as the peer's bad key, not as an internal error
/// (Wycheproof `mlkem_768_encaps_test.json` covers both).
pub fn mlkem768_encapsulate(ek: &[u8]) -> Result<(Vec<u8>, EphemeralSharedSecret), Error> {
    let ek = EncapsulationKey::new(&ML_KEM_768, ek).map_err(|_| DecodeError::KeyEncoding)?;
    let (ct, k) = ek.encapsulate().map_err(|_| DecodeError::KeyEncoding)?;
    Ok((ct.as_ref().to_vec(), EphemeralSharedSecret(Zeroizing::new(k.as_ref().to_vec()))))
}

/// Server side: answers the client's share; returns `(server share, secret)`.
pub(crate) fn ephemeral_respond(
    kem: EphemeralKem,
    client_share: &[u8],
    rng: &mut dyn Rng,
) -> Result<(Vec<u8>, EphemeralSharedSecret), Error> {
    let (client_len, server_len) = ephemeral_share_lens(kem);
    if client_share.len() != client_len {
        return Err(DecodeError::KeyEncoding.into());
    }
    if kem == EphemeralKem::None {
        return Ok((Vec::new(), EphemeralSharedSecret::none()));
    }
    let (mlkem_ek, x_pub) = client_share.split_at(client_len - X25519_LEN);
    let mut share = Vec::with_capacity(server_len);
    let mut ss = Zeroizing::new(Vec::with_capacity(2 * HASH_LEN));
    if kem == EphemeralKem::X25519MlKem768 {
        let (ct, k) = mlkem768_encapsulate(mlkem_ek)?;
        share.extend_from_slice(&ct);
        ss.extend_from_slice(k.expose());
    }
    let eph = x25519_private(&Zeroizing::new(random_array(rng)?))?;
    share.extend_from_slice(&x25519_public(&eph)?);
    ss.extend_from_slice(x25519_agree(&eph, x_pub)?.expose());
    Ok((share, EphemeralSharedSecret(ss)))
}

impl EphemeralSecret {
    /// The ML-KEM-768 decapsulation key in its expanded 2400-byte form, for
    /// publishing test vectors only: it lets a verifier recompute the ML-KEM
    /// shared secret that aws-lc-rs derived with its internal randomness.
    pub fn mlkem_key_bytes_for_testing_only(&self) -> Option<Zeroizing<Vec<u8>>> {
        let dk = self.mlkem.as_ref()?;
        dk.key_bytes().ok().map(|b| Zeroizing::new(b.as_ref().to_vec()))
    }

    /// Client side: combines the server's share with our secret.
    pub(crate) fn finish(self, server_share: &[u8], kem: EphemeralKem) -> Result<EphemeralSharedSecret, Error> {
        let (_, server_len) = ephemeral_share_lens(kem);
        if server_share.len() != server_len || server_len < X25519_LEN {
            return Err(DecodeError::KeyEncoding.into());
        }
        let (mlkem_ct, x_pub) = server_share.split_at(server_len - X25519_LEN);
        let mut ss = Zeroizing::new(Vec::with_capacity(2 * HASH_LEN));
        match (&self.mlkem, kem) {
            (Some(dk), EphemeralKem::X25519MlKem768) => {
                let k = dk.decapsulate(Ciphertext::from(mlkem_ct)).map_err(|_| DecodeError::KeyEncoding)?;
                ss.extend_from_slice(k.as_ref());
            }
            (None, EphemeralKem::X25519) => {}
            _ => return Err(Error::ApiMisuse("ephemeral kem mismatch")),
        }
        ss.extend_from_slice(x25519_agree(&self.x25519, x_pub)?.expose());
        Ok(EphemeralSharedSecret(ss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededRng;

    #[test]
    fn x25519_static_kem_round_trip() {
        let mut rng = SeededRng::new_for_testing_only([3; 32]);
        let key = ServerKey::x25519_from_bytes(&[7; 32]).unwrap();
        let public = ServerPublicKey::from_spki(key.public_key().spki()).unwrap();
        assert_eq!(&public, key.public_key());
        let (ct, ss) = public.encapsulate(&mut rng).unwrap();
        assert_eq!(key.decapsulate(&ct, &mut rng).unwrap().expose(), ss.expose());
    }

    #[test]
    fn ephemeral_kems_agree() {
        let mut rng = SeededRng::new_for_testing_only([4; 32]);
        for kem in [EphemeralKem::X25519, EphemeralKem::X25519MlKem768] {
            let (secret, share) = ephemeral_generate(kem, &mut rng).unwrap();
            assert_eq!(share.len(), ephemeral_share_lens(kem).0);
            let (reply, server_ss) = ephemeral_respond(kem, &share, &mut rng).unwrap();
            let client_ss = secret.unwrap().finish(&reply, kem).unwrap();
            assert_eq!(client_ss.expose(), server_ss.expose());
        }
    }

    #[test]
    fn low_order_x25519_point_is_refused() {
        let key = ServerKey::x25519_from_bytes(&[9; 32]).unwrap();
        let mut rng = SeededRng::new_for_testing_only([0; 32]);
        assert!(key.decapsulate(&[0u8; 32], &mut rng).is_err());
    }
}
