//! Key files without external tools: permissions, round trips through our
//! own writer, and refusals to overwrite.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_keys::{
    Error, KeyFile, KeyKind, KeyProblem, LoadOptions, Passphrase, PrivateKey, load_any_public_key, load_identity_key,
    load_private_key, load_public_key, load_server_key, public_key_path, read_key_file, write_key_pair,
};
use common::{chmod, mode};

#[test]
fn private_keys_others_can_access_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    write_key_pair(&PrivateKey::generate(KeyKind::Ed25519).unwrap(), &key, None, false).unwrap();
    for m in [0o644, 0o640, 0o604, 0o660, 0o620] {
        chmod(&key, m);
        match read_key_file(&key, &LoadOptions::new()) {
            Err(Error::InsecurePermissions { path, mode: got }) => {
                assert_eq!(path, key);
                assert_eq!(got, m);
            }
            Err(other) => panic!("{m:o}: {other}"),
            Ok(_) => panic!("mode {m:o} accepted"),
        }
        assert!(load_identity_key(&key, &LoadOptions::new()).is_err());
        // Only an explicit opt-in reads it anyway.
        assert!(read_key_file(&key, &LoadOptions::new().allow_insecure_permissions(true)).is_ok());
    }
    chmod(&key, 0o400);
    assert!(read_key_file(&key, &LoadOptions::new()).is_ok());
    // Public keys are meant to be shared.
    let public = public_key_path(&key);
    chmod(&public, 0o644);
    assert!(load_any_public_key(&public).is_ok());
}

#[test]
fn written_pairs_round_trip_for_every_kind_with_and_without_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new("hunter2 hunter2".to_owned()).unwrap();
    for kind in [KeyKind::Rsa { bits: 2048 }, KeyKind::X25519, KeyKind::Ed25519] {
        let key = PrivateKey::generate(kind).unwrap();
        for passphrase in [None, Some(&pass)] {
            let path = dir.path().join(format!("{}_{}", kind.algorithm_name(), passphrase.is_some()));
            write_key_pair(&key, &path, passphrase, false).unwrap();
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&public_key_path(&path)), 0o644);
            let opts = LoadOptions::new().passphrase(passphrase);
            let loaded = load_private_key(&path, &opts).unwrap();
            assert_eq!(loaded.public_key(), key.public_key());
            assert_eq!(load_any_public_key(&public_key_path(&path)).unwrap(), *key.public_key());
            if kind.is_server_key() {
                let server = load_server_key(&path, &opts).unwrap();
                assert_eq!(&load_public_key(&public_key_path(&path)).unwrap(), server.public_key());
            }
            if kind.is_identity_key() {
                let id = load_identity_key(&path, &opts).unwrap();
                let public = key.public_key().to_identity_public_key().unwrap();
                assert!(public.verify(b"m", &id.sign(b"m").unwrap()));
            }
            // Reading it as a public key never decodes the private key.
            assert!(matches!(
                load_any_public_key(&path),
                Err(Error::KeyFile { problem: KeyProblem::ExpectedPublicKey, .. })
            ));
            assert!(matches!(
                load_private_key(&public_key_path(&path), &opts),
                Err(Error::KeyFile { problem: KeyProblem::ExpectedPrivateKey, .. })
            ));
        }
    }
}

#[test]
fn write_refuses_to_clobber_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let first = PrivateKey::generate(KeyKind::X25519).unwrap();
    let second = PrivateKey::generate(KeyKind::X25519).unwrap();
    write_key_pair(&first, &path, None, false).unwrap();
    assert!(matches!(write_key_pair(&second, &path, None, false), Err(Error::AlreadyExists { .. })));
    let KeyFile::Private(still) = read_key_file(&path, &LoadOptions::new()).unwrap() else { panic!() };
    assert_eq!(still.public_key(), first.public_key());
    write_key_pair(&second, &path, None, true).unwrap();
    let KeyFile::Private(now) = read_key_file(&path, &LoadOptions::new()).unwrap() else { panic!() };
    assert_eq!(now.public_key(), second.public_key());
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn oversized_and_non_regular_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; 70_000]).unwrap();
    assert!(matches!(
        read_key_file(&big, &LoadOptions::new()),
        Err(Error::KeyFile { problem: KeyProblem::TooLarge { .. }, .. })
    ));
    assert!(matches!(read_key_file(dir.path(), &LoadOptions::new()), Err(Error::Read { .. })));
}
