//! Interoperability with OpenSSL: key files OpenSSL writes, in every format
//! cipherline accepts, load with the right fingerprint; key files cipherline
//! writes load in OpenSSL with the same fingerprint. Skipped (with a printed
//! reason) when `openssl` is not on PATH.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cipherline_keys::{
    Error, KeyFile, KeyKind, KeyProblem, LoadOptions, Passphrase, load_any_public_key, load_identity_key,
    load_public_key, load_server_key, public_key_path, read_key_file, write_key_pair,
};
use common::{chmod, have_openssl, openssl_fingerprint, run};

const PASSPHRASE: &str = "correct horse battery staple";

struct Fixture {
    dir: tempfile::TempDir,
    pass_file: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pass_file = dir.path().join("pass.txt");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
        Fixture { dir, pass_file }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `openssl ARGS... -out NAME` and makes the result private.
    fn openssl(&self, name: &str, args: &[&str]) -> PathBuf {
        let out = self.path(name);
        run(Command::new("openssl").args(args).arg("-out").arg(&out));
        chmod(&out, 0o600);
        out
    }

    fn passin(&self) -> String {
        format!("file:{}", self.pass_file.display())
    }

    fn passphrase(&self) -> Passphrase {
        Passphrase::from_file(&self.pass_file).unwrap()
    }
}

fn label(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().find(|l| l.starts_with("-----BEGIN ")).unwrap();
    first.trim_start_matches("-----BEGIN ").trim_end_matches('-').to_owned()
}

fn fingerprint_of(path: &Path, passphrase: Option<&Passphrase>) -> String {
    read_key_file(path, &LoadOptions::new().passphrase(passphrase)).unwrap().public_key().fingerprint().to_string()
}

#[test]
fn rsa_in_every_format() {
    if !have_openssl("rsa_in_every_format") {
        return;
    }
    let f = Fixture::new();
    let pkcs8 = f.openssl("rsa_pkcs8.pem", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let p8 = pkcs8.to_str().unwrap();
    let pkcs1 = f.openssl("rsa_pkcs1.pem", &["pkey", "-in", p8, "-traditional"]);
    let passin = f.passin();
    let scrypt = f.openssl("rsa_scrypt.pem", &["pkcs8", "-topk8", "-in", p8, "-scrypt", "-passout", &passin]);
    let pbkdf2 = f.openssl(
        "rsa_pbkdf2.pem",
        &["pkcs8", "-topk8", "-in", p8, "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-passout", &passin],
    );
    let spki = f.openssl("rsa_spki.pem", &["pkey", "-in", p8, "-pubout"]);
    let pkcs1_pub = f.openssl("rsa_pkcs1_pub.pem", &["rsa", "-in", p8, "-RSAPublicKey_out"]);
    assert_eq!(label(&pkcs1), "RSA PRIVATE KEY");
    assert_eq!(label(&pkcs8), "PRIVATE KEY");
    assert_eq!(label(&scrypt), "ENCRYPTED PRIVATE KEY");
    assert_eq!(label(&pbkdf2), "ENCRYPTED PRIVATE KEY");
    assert_eq!(label(&spki), "PUBLIC KEY");
    assert_eq!(label(&pkcs1_pub), "RSA PUBLIC KEY");

    let expected = openssl_fingerprint(&pkcs8, false, None);
    let pass = f.passphrase();
    for path in [&pkcs1, &pkcs8, &scrypt, &pbkdf2, &spki, &pkcs1_pub] {
        let file = read_key_file(path, &LoadOptions::new().passphrase(Some(&pass))).unwrap();
        assert_eq!(file.public_key().kind(), KeyKind::Rsa { bits: 2048 }, "{path:?}");
        assert_eq!(file.public_key().fingerprint().to_string(), expected, "{path:?}");
    }

    // Usable by the protocol core as a server key and as an identity key.
    let opts = LoadOptions::new();
    let server = load_server_key(&pkcs1, &opts).unwrap();
    assert_eq!(&load_public_key(&spki).unwrap(), server.public_key());
    assert_eq!(&load_public_key(&pkcs1_pub).unwrap(), server.public_key());
    let identity = load_identity_key(&pkcs8, &opts).unwrap();
    let sig = identity.sign(b"hello").unwrap();
    let public = load_any_public_key(&spki).unwrap().to_identity_public_key().unwrap();
    assert!(public.verify(b"hello", &sig));

    // Encrypted files: no passphrase, or the wrong one, is a clear error.
    for path in [&scrypt, &pbkdf2] {
        let problem = |e| match e {
            Error::KeyFile { problem, .. } => problem,
            other => panic!("{other}"),
        };
        let none = read_key_file(path, &LoadOptions::new()).err().map(problem);
        assert_eq!(none, Some(KeyProblem::PassphraseRequired));
        let wrong = Passphrase::new("wrong".to_owned()).unwrap();
        let wrong = read_key_file(path, &LoadOptions::new().passphrase(Some(&wrong))).err().map(problem);
        assert_eq!(wrong, Some(KeyProblem::WrongPassphrase));
    }

    // A private key is refused where a public key is expected.
    assert!(matches!(load_public_key(&pkcs8), Err(Error::KeyFile { problem: KeyProblem::ExpectedPublicKey, .. })));
}

#[test]
fn rfc8410_keys() {
    if !have_openssl("rfc8410_keys") {
        return;
    }
    let f = Fixture::new();
    let ed = f.openssl("ed.pem", &["genpkey", "-algorithm", "ed25519"]);
    let ed_pub = f.openssl("ed.pub.pem", &["pkey", "-in", ed.to_str().unwrap(), "-pubout"]);
    let x = f.openssl("x.pem", &["genpkey", "-algorithm", "x25519"]);
    let x_pub = f.openssl("x.pub.pem", &["pkey", "-in", x.to_str().unwrap(), "-pubout"]);
    let passin = f.passin();
    let x_enc =
        f.openssl("x_enc.pem", &["pkcs8", "-topk8", "-in", x.to_str().unwrap(), "-scrypt", "-passout", &passin]);

    let pass = f.passphrase();
    let ed_fp = openssl_fingerprint(&ed, false, None);
    assert_eq!(fingerprint_of(&ed, None), ed_fp);
    assert_eq!(fingerprint_of(&ed_pub, None), ed_fp);
    let x_fp = openssl_fingerprint(&x, false, None);
    assert_eq!(fingerprint_of(&x, None), x_fp);
    assert_eq!(fingerprint_of(&x_pub, None), x_fp);
    assert_eq!(fingerprint_of(&x_enc, Some(&pass)), x_fp);

    let identity = load_identity_key(&ed, &LoadOptions::new()).unwrap();
    let public = load_any_public_key(&ed_pub).unwrap().to_identity_public_key().unwrap();
    assert!(public.verify(b"msg", &identity.sign(b"msg").unwrap()));
    let server = load_server_key(&x, &LoadOptions::new()).unwrap();
    assert_eq!(&load_public_key(&x_pub).unwrap(), server.public_key());

    // Each kind only where it fits.
    assert!(matches!(
        load_server_key(&ed, &LoadOptions::new()),
        Err(Error::KeyFile { problem: KeyProblem::WrongKind { found: KeyKind::Ed25519, .. }, .. })
    ));
    assert!(load_identity_key(&x, &LoadOptions::new()).is_err());
    assert!(load_public_key(&ed_pub).is_err());
}

#[test]
fn our_files_read_back_in_openssl() {
    if !have_openssl("our_files_read_back_in_openssl") {
        return;
    }
    let f = Fixture::new();
    let pass = f.passphrase();
    for kind in [KeyKind::Rsa { bits: 2048 }, KeyKind::X25519, KeyKind::Ed25519] {
        for encrypted in [false, true] {
            let key = cipherline_keys::PrivateKey::generate(kind).unwrap();
            let path = f.path(&format!("ours_{}_{encrypted}", kind.algorithm_name()));
            let passphrase = encrypted.then_some(&pass);
            write_key_pair(&key, &path, passphrase, false).unwrap();
            let want = key.fingerprint().to_string();
            let pass_file = encrypted.then_some(f.pass_file.as_path());
            assert_eq!(openssl_fingerprint(&path, false, pass_file), want, "{kind} encrypted={encrypted}");
            assert_eq!(openssl_fingerprint(&public_key_path(&path), true, None), want);
            // And back in cipherline.
            match read_key_file(&path, &LoadOptions::new().passphrase(passphrase)).unwrap() {
                KeyFile::Private(again) => assert_eq!(again.public_key(), key.public_key()),
                KeyFile::Public(_) => panic!("expected a private key"),
            }
        }
    }
}

#[test]
fn refusals_say_why() {
    if !have_openssl("refusals_say_why") {
        return;
    }
    let f = Fixture::new();
    let problem_of = |path: &Path, opts: &LoadOptions<'_>| match read_key_file(path, opts) {
        Err(Error::KeyFile { problem, path: p }) => {
            assert_eq!(p, path);
            problem
        }
        Err(other) => panic!("{path:?}: {other}"),
        Ok(_) => panic!("{path:?} loaded"),
    };
    let opts = LoadOptions::new();

    // RSA below 2048 bits, in every RSA format.
    let small = f.openssl("rsa1024.pem", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let s = small.to_str().unwrap();
    let small_p1 = f.openssl("rsa1024_p1.pem", &["pkey", "-in", s, "-traditional"]);
    let small_pub = f.openssl("rsa1024_pub.pem", &["pkey", "-in", s, "-pubout"]);
    for path in [&small, &small_p1, &small_pub] {
        assert_eq!(problem_of(path, &opts), KeyProblem::RsaKeySize { bits: 1024 }, "{path:?}");
    }

    // EC keys are not used by cipherline.
    let ec = f.openssl("ec.pem", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let ec_trad = f.openssl("ec_trad.pem", &["ec", "-in", ec.to_str().unwrap()]);
    for path in [&ec, &ec_trad] {
        assert!(matches!(problem_of(path, &opts), KeyProblem::UnsupportedAlgorithm(_)), "{path:?}");
    }

    // A key file with several PEM blocks (`openssl ecparam -genkey` writes
    // the curve parameters first), and a PEM block that is not a key.
    let two = f.openssl("ec_two_blocks.pem", &["ecparam", "-genkey", "-name", "prime256v1"]);
    assert_eq!(problem_of(&two, &opts), KeyProblem::SeveralPemBlocks { count: 2 });
    let cert = f.path("cert.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").unwrap();
    assert_eq!(problem_of(&cert, &opts), KeyProblem::UnsupportedLabel { label: "CERTIFICATE".to_owned() });

    // Old-style encrypted PEM (Proc-Type/DEK-Info).
    let rsa = f.openssl("rsa.pem", &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let legacy = f.openssl(
        "legacy.pem",
        &["rsa", "-in", rsa.to_str().unwrap(), "-traditional", "-aes256", "-passout", &f.passin()],
    );
    assert_eq!(problem_of(&legacy, &opts), KeyProblem::LegacyEncryptedPem);

    // Not a key at all.
    let junk = f.path("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    chmod(&junk, 0o600);
    assert!(matches!(problem_of(&junk, &opts), KeyProblem::NotPem { .. }));
}
