//! Fuzz driver for the key-file parsers of `cipherline-keys`.
//!
//! Also compiled into `crates/cipherline-keys/tests/fuzz_regressions.rs`,
//! so committed inputs run through the same code path in CI.

use cipherline_keys::{KeyFile, PublicKey, parse_key_file};

/// PEM labels a key file may carry (and two it must refuse).
const LABELS: [&str; 7] =
    ["RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "PUBLIC KEY", "RSA PUBLIC KEY", "EC PRIVATE KEY", "X"];

/// Key files: the first byte picks how the rest is read. Mode 0 parses it
/// as a whole key file (PEM text); mode 1 wraps it as the DER content of a
/// PEM block with one of [`LABELS`], so the fuzzer works on DER directly;
/// mode 2 gives it to the DER public key parsers. No passphrase is given:
/// an encrypted key is refused before any key derivation runs (whose cost
/// the parser bounds, but which would make each run take seconds).
///
/// Every key that parses must survive its own round trip: its PEM parses
/// back to the same public key, and its canonical SubjectPublicKeyInfo too.
pub fn key_file(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    match sel % 3 {
        0 => check(parse_key_file(rest, None).ok()),
        1 => {
            let label = LABELS.get(usize::from(sel / 3) % LABELS.len()).copied().unwrap_or("X");
            if let Ok(pem) = pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, rest) {
                check(parse_key_file(pem.as_bytes(), None).ok());
            }
        }
        _ => {
            if let Ok(key) = PublicKey::from_spki_der(rest) {
                check_public(&key);
            }
            if let Ok(key) = PublicKey::from_pkcs1_der(rest) {
                check_public(&key);
            }
        }
    }
}

fn check(parsed: Option<KeyFile>) {
    match parsed {
        Some(KeyFile::Private(key)) => {
            let _ = (key.to_server_key(), key.to_identity_key());
            let pem = key.to_pem(None).expect("a parsed private key encodes");
            match parse_key_file(pem.as_bytes(), None) {
                Ok(KeyFile::Private(again)) => {
                    assert!(again.public_key() == key.public_key(), "private key round trip")
                }
                _ => panic!("a private key's own PEM does not parse"),
            }
            check_public(key.public_key());
        }
        Some(KeyFile::Public(key)) => check_public(&key),
        None => {}
    }
}

fn check_public(key: &PublicKey) {
    let again = PublicKey::from_spki_der(key.spki_der()).expect("a canonical SPKI parses");
    assert!(again == *key, "public key round trip");
    assert_eq!(again.spki_der(), key.spki_der(), "canonical SPKI is stable");
    let pem = key.to_pem().expect("a parsed public key encodes");
    match parse_key_file(pem.as_bytes(), None) {
        Ok(KeyFile::Public(again)) => assert!(again == *key, "public key PEM round trip"),
        _ => panic!("a public key's own PEM does not parse"),
    }
    // What the protocol core makes of it must agree on the bytes.
    if let Ok(server) = key.to_server_public_key() {
        assert_eq!(server.spki(), key.spki_der(), "the core keeps the canonical SPKI");
    }
    let _ = key.to_identity_public_key();
}
