//! Passphrase protection of private keys: encrypted PKCS#8 (PBES2, RFC 8018).
//!
//! Writing always uses scrypt (memory-hard) and AES-256-CBC. Reading accepts
//! PBES2 with scrypt or with PBKDF2-HMAC-SHA-2 (what `openssl pkcs8 -topk8
//! -v2 aes256` and Python `cryptography`'s `BestAvailableEncryption` write),
//! after checking that the key-derivation cost is bounded, so that a crafted
//! file cannot make us allocate gigabytes or spin for hours.

use der::SecretDocument;
use pkcs8::pkcs5::{self, pbes2};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use crate::error::KeyProblem;
use crate::passphrase::Passphrase;

/// scrypt cost `N = 2^14`, with `r = 8`: 16 MiB of memory per lane. This is
/// the largest `N` that OpenSSL (and so Python `cryptography`) will read with
/// its default 32 MiB scrypt memory cap, so files stay readable by them.
pub const SCRYPT_LOG_N: u8 = 14;
/// scrypt block size `r`.
pub const SCRYPT_R: u32 = 8;
/// scrypt parallelism `p = 8`: eight sequential 16 MiB lanes, which gives the
/// same memory-time cost per guess as `N = 2^17, p = 1` (RustCrypto's
/// recommendation) without exceeding OpenSSL's memory cap.
pub const SCRYPT_P: u32 = 8;

/// Largest scrypt memory (`128 * r * N` bytes) accepted when reading: 256 MiB.
const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
/// Largest scrypt work (`N * r * p`) accepted when reading: 64 times ours.
const MAX_SCRYPT_WORK: u64 = 1 << 26;
/// Largest PBKDF2 iteration count accepted when reading.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Encrypts a DER PKCS#8 `PrivateKeyInfo` under `passphrase` and returns the
/// DER `EncryptedPrivateKeyInfo`.
pub(crate) fn encrypt(pkcs8: &[u8], passphrase: &Passphrase) -> Result<SecretDocument, KeyProblem> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeyProblem::Rejected)?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| KeyProblem::Rejected)?;
    let params = pkcs5::scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        .map_err(|_| KeyProblem::UnsupportedEncryption("scrypt parameters"))?;
    let scheme = pbes2::Parameters::generate_scrypt_aes256cbc(params, &salt, iv)
        .map_err(|_| KeyProblem::UnsupportedEncryption("scrypt parameters"))?;
    let info = parse_pkcs8(pkcs8)?;
    info.encrypt_with_params(scheme, passphrase.as_bytes()).map_err(|_| KeyProblem::Malformed("PKCS#8 private key"))
}

/// Decrypts a DER `EncryptedPrivateKeyInfo`; returns the DER PKCS#8
/// `PrivateKeyInfo` inside.
pub(crate) fn decrypt(der: &[u8], passphrase: Option<&Passphrase>) -> Result<Zeroizing<Vec<u8>>, KeyProblem> {
    let info = EncryptedPrivateKeyInfoRef::try_from(der)
        .map_err(|_| KeyProblem::Malformed("encrypted PKCS#8 private key (or unsupported encryption)"))?;
    let params = match &info.encryption_algorithm {
        pkcs5::EncryptionScheme::Pbes2(params) => params,
        pkcs5::EncryptionScheme::Pbes1(_) => {
            return Err(KeyProblem::UnsupportedEncryption("PBES1 (single DES or RC2, broken)"));
        }
        _ => return Err(KeyProblem::UnsupportedEncryption("unknown scheme")),
    };
    check_kdf_cost(&params.kdf)?;
    // Only asked for once the file is known to be well-formed and affordable.
    let passphrase = passphrase.ok_or(KeyProblem::PassphraseRequired)?;
    let plain = params.decrypt(passphrase.as_bytes(), info.encrypted_data.as_bytes()).map_err(|e| match e {
        pkcs5::Error::UnsupportedAlgorithm { .. } => KeyProblem::UnsupportedEncryption("cipher or PRF"),
        _ => KeyProblem::WrongPassphrase,
    })?;
    let plain = Zeroizing::new(plain);
    // A wrong passphrase that happens to give valid CBC padding yields
    // garbage: it fails to parse here.
    parse_pkcs8(&plain).map_err(|_| KeyProblem::WrongPassphrase)?;
    Ok(plain)
}

/// Refuses key-derivation parameters that would cost too much to try.
fn check_kdf_cost(kdf: &pbes2::Kdf) -> Result<(), KeyProblem> {
    match kdf {
        pbes2::Kdf::Scrypt(p) => {
            let n = p.cost_parameter;
            let r = u64::from(p.block_size);
            let p = u64::from(p.parallelization);
            let memory = n.checked_mul(r).and_then(|v| v.checked_mul(128));
            let work = n.checked_mul(r).and_then(|v| v.checked_mul(p));
            if memory.is_none_or(|m| m > MAX_SCRYPT_MEMORY) {
                return Err(KeyProblem::KdfTooCostly("scrypt memory over 256 MiB"));
            }
            if work.is_none_or(|w| w > MAX_SCRYPT_WORK) {
                return Err(KeyProblem::KdfTooCostly("scrypt N*r*p over 2^26"));
            }
            Ok(())
        }
        pbes2::Kdf::Pbkdf2(p) => {
            if p.iteration_count > MAX_PBKDF2_ITERATIONS {
                return Err(KeyProblem::KdfTooCostly("PBKDF2 iterations over 10 million"));
            }
            Ok(())
        }
        _ => Err(KeyProblem::UnsupportedEncryption("unknown key derivation function")),
    }
}

/// Parses a DER PKCS#8 `PrivateKeyInfo`.
fn parse_pkcs8(der: &[u8]) -> Result<PrivateKeyInfoRef<'_>, KeyProblem> {
    PrivateKeyInfoRef::try_from(der).map_err(|_| KeyProblem::Malformed("PKCS#8 private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned()).unwrap()
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let key = crate::private_key::PrivateKey::generate(crate::key::KeyKind::Ed25519).unwrap();
        let enc = encrypt(key.pkcs8_der(), &passphrase("correct horse")).unwrap();
        let dec = decrypt(enc.as_bytes(), Some(&passphrase("correct horse"))).unwrap();
        assert_eq!(&*dec, key.pkcs8_der());
        assert_eq!(
            decrypt(enc.as_bytes(), Some(&passphrase("battery staple"))).err(),
            Some(KeyProblem::WrongPassphrase)
        );
        assert_eq!(decrypt(enc.as_bytes(), None).err(), Some(KeyProblem::PassphraseRequired));
    }

    #[test]
    fn refuses_costly_scrypt_before_asking_for_the_passphrase() {
        let params = pkcs5::scrypt::Params::new(22, 8, 1).unwrap();
        let scheme = pbes2::Parameters::generate_scrypt_aes256cbc(params, &[1; 16], [2; 16]).unwrap();
        assert!(matches!(check_kdf_cost(&scheme.kdf), Err(KeyProblem::KdfTooCostly(_))));
        let ours = pkcs5::scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P).unwrap();
        let scheme = pbes2::Parameters::generate_scrypt_aes256cbc(ours, &[1; 16], [2; 16]).unwrap();
        assert!(check_kdf_cost(&scheme.kdf).is_ok());
    }
}
