//! The relay's check of uploaded key packages: ours are accepted with the
//! identity they state; tampered, foreign and garbage ones are refused,
//! and nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_e2e::{E2eError, Suite, inspect_key_package, inspect_key_package_info};
use common::member;
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
use mls_rs::{CipherSuite, CipherSuiteProvider, Client, CryptoProvider, ExtensionList};
use mls_rs_crypto_awslc::AwsLcCryptoProvider;
use proptest::prelude::*;

/// A key package from plain mls-rs, with any name and suite.
fn foreign_key_package(name: &[u8], suite: CipherSuite) -> Vec<u8> {
    let crypto = AwsLcCryptoProvider::new();
    let provider = crypto.cipher_suite_provider(suite).unwrap();
    let (secret, public) = provider.signature_key_generate().unwrap();
    let identity = SigningIdentity::new(BasicCredential::new(name.to_vec()).into_credential(), public);
    let client = Client::builder()
        .crypto_provider(crypto)
        .identity_provider(BasicIdentityProvider)
        .signing_identity(identity, secret, suite)
        .build();
    client
        .generate_key_package_message(ExtensionList::default(), ExtensionList::default(), None)
        .unwrap()
        .to_bytes()
        .unwrap()
}

#[test]
fn our_key_packages_are_accepted_with_their_identity() {
    for suite in [Suite::XWing, Suite::Interop] {
        let bob = member("Bob", 2, suite);
        let kp = bob.key_packages(1).unwrap().remove(0);
        let info = inspect_key_package_info(&kp).unwrap();
        assert_eq!(&info.identity, bob.identity());
        assert_eq!(info.suite, suite);
        assert!(!info.last_resort);
        assert_eq!(inspect_key_package(&kp).unwrap().name, "Bob");
        let last = inspect_key_package_info(&bob.last_resort_key_package().unwrap()).unwrap();
        assert!(last.last_resort);
        assert_eq!(&last.identity, bob.identity());
    }
}

#[test]
fn a_tampered_signature_is_refused() {
    let kp = member("bob", 2, Suite::XWing).key_packages(1).unwrap().remove(0);
    // The key package's signature is its last field; the leaf node's
    // signature and the name lie earlier.
    for i in [kp.len() - 1, kp.len() - 40] {
        let mut bad = kp.clone();
        bad[i] ^= 0x01;
        assert!(inspect_key_package(&bad).is_err(), "a flipped bit at {i}");
    }
    let name_at = kp.windows(3).position(|w| w == b"bob").unwrap();
    let mut renamed = kp.clone();
    renamed[name_at] = b'r'; // "rob": the signatures no longer match
    assert!(inspect_key_package(&renamed).is_err(), "a renamed credential");
}

#[test]
fn foreign_suites_credentials_and_garbage_are_refused() {
    let p256 = foreign_key_package(b"bob", CipherSuite::P256_AES128);
    assert!(matches!(inspect_key_package(&p256), Err(E2eError::Suite(2))));
    let bad_name = foreign_key_package(b"bad name", CipherSuite::CURVE25519_AES128);
    assert!(matches!(inspect_key_package(&bad_name), Err(E2eError::BadCredential)));
    let plain = foreign_key_package(b"bob", CipherSuite::CURVE25519_AES128);
    assert_eq!(inspect_key_package(&plain).unwrap().name, "bob", "a valid name and Ed25519 key is ours");
    assert!(inspect_key_package(b"").is_err());
    assert!(inspect_key_package(&[0u8; 64]).is_err());
    assert!(inspect_key_package(&vec![0xff; 20_000]).is_err(), "too large");
    // A Welcome is not a key package.
    let alice = member("alice", 1, Suite::XWing);
    let mut conv = alice.create().unwrap();
    let welcome = conv.add(&member("bob", 2, Suite::XWing).key_packages(1).unwrap()).unwrap().welcome.unwrap();
    assert!(matches!(inspect_key_package(&welcome), Err(E2eError::Unexpected(_)) | Err(E2eError::Mls(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = inspect_key_package(&bytes);
    }

    #[test]
    fn random_edits_of_a_real_key_package_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        thread_local! {
            static KP: Vec<u8> = member("bob", 2, Suite::Interop).key_packages(1).unwrap().remove(0);
        }
        let mut kp = KP.with(Clone::clone);
        for (at, value) in edits {
            let i = at % kp.len();
            kp[i] = value;
        }
        kp.truncate(cut % (kp.len() + 1) + 1);
        let _ = inspect_key_package(&kp);
    }
}
