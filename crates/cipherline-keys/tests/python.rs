//! Interoperability with Python's `cryptography` package, which the seed
//! messengers used to write `server_private_key.pem` (TraditionalOpenSSL,
//! i.e. PKCS#1) and `server_public_key.pem` (SubjectPublicKeyInfo). Skipped
//! (with a printed reason) when `python3` cannot import `cryptography`; the
//! tests never install it.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cipherline_keys::{
    Error, KeyKind, KeyProblem, LoadOptions, Passphrase, PrivateKey, load_public_key, load_server_key, public_key_path,
    read_key_file, write_key_pair,
};
use common::{have_python_cryptography, run};

/// Writes every format `cryptography` offers for RSA, Ed25519 and X25519 keys
/// into argv[1] (mode 0600) and prints "name fingerprint" lines, the
/// fingerprint computed by Python from the key's DER SubjectPublicKeyInfo.
const GENERATE: &str = r#"
import base64, hashlib, os, sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519

out, pw = sys.argv[1], sys.argv[2].encode()

def fp(pub):
    der = pub.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")

def write(name, data, f):
    fd = os.open(os.path.join(out, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    os.close(fd)
    print(name, f)

PEM, P8, TRAD = s.Encoding.PEM, s.PrivateFormat.PKCS8, s.PrivateFormat.TraditionalOpenSSL
SPKI = s.PublicFormat.SubjectPublicKeyInfo
keys = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
    "x25519": x25519.X25519PrivateKey.generate(),
}
for name, k in keys.items():
    f = fp(k.public_key())
    write(name + "_pkcs8.pem", k.private_bytes(PEM, P8, s.NoEncryption()), f)
    write(name + "_pkcs8_enc.pem", k.private_bytes(PEM, P8, s.BestAvailableEncryption(pw)), f)
    write(name + "_spki.pem", k.public_key().public_bytes(PEM, SPKI), f)
k = keys["rsa"]
f = fp(k.public_key())
write("rsa_trad.pem", k.private_bytes(PEM, TRAD, s.NoEncryption()), f)
write("rsa_pkcs1_pub.pem", k.public_key().public_bytes(PEM, s.PublicFormat.PKCS1), f)
write("rsa_trad_enc.pem", k.private_bytes(PEM, TRAD, s.BestAvailableEncryption(pw)), f)
"#;

/// Loads each file named on the command line (argv[1] is the passphrase, or
/// "-" for none) and prints its fingerprint.
const READ: &str = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives import serialization as s

pw = None if sys.argv[1] == "-" else sys.argv[1].encode()
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    if b"PRIVATE KEY" in data:
        pub = s.load_pem_private_key(data, password=pw).public_key()
    else:
        pub = s.load_pem_public_key(data)
    der = pub.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo)
    print("SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("="))
"#;

const PASSPHRASE: &str = "tr0ub4dor&3";

fn python(script: &str, args: &[&str]) -> String {
    String::from_utf8(run(Command::new("python3").arg("-c").arg(script).args(args))).unwrap()
}

#[test]
fn python_cryptography_files_load_with_matching_fingerprints() {
    if !have_python_cryptography("python_cryptography_files_load_with_matching_fingerprints") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let listing = python(GENERATE, &[dir.path().to_str().unwrap(), PASSPHRASE]);
    let expected: BTreeMap<&str, &str> = listing.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(expected.len(), 12, "{listing}");
    let pass = Passphrase::new(PASSPHRASE.to_owned()).unwrap();
    for (name, want) in &expected {
        let path = dir.path().join(name);
        if *name == "rsa_trad_enc.pem" {
            // Old-style OpenSSL encryption: refused with a clear reason.
            let err = read_key_file(&path, &LoadOptions::new().passphrase(Some(&pass))).err();
            assert!(matches!(err, Some(Error::KeyFile { problem: KeyProblem::LegacyEncryptedPem, .. })), "{err:?}");
            continue;
        }
        let file =
            read_key_file(&path, &LoadOptions::new().passphrase(Some(&pass))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file.public_key().fingerprint().to_string(), *want, "{name}");
        let kind = file.public_key().kind();
        let want_kind = match name.split('_').next().unwrap() {
            "rsa" => KeyKind::Rsa { bits: 2048 },
            "ed25519" => KeyKind::Ed25519,
            _ => KeyKind::X25519,
        };
        assert_eq!(kind, want_kind, "{name}");
    }
    // The seed messengers' file pair works as a server key pair.
    let server = load_server_key(&dir.path().join("rsa_trad.pem"), &LoadOptions::new()).unwrap();
    assert_eq!(&load_public_key(&dir.path().join("rsa_spki.pem")).unwrap(), server.public_key());
}

#[test]
fn our_files_load_in_python_cryptography() {
    if !have_python_cryptography("our_files_load_in_python_cryptography") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new(PASSPHRASE.to_owned()).unwrap();
    for kind in [KeyKind::Rsa { bits: 2048 }, KeyKind::X25519, KeyKind::Ed25519] {
        let key = PrivateKey::generate(kind).unwrap();
        let plain = dir.path().join(format!("{}_plain", kind.algorithm_name()));
        let encrypted = dir.path().join(format!("{}_enc", kind.algorithm_name()));
        write_key_pair(&key, &plain, None, false).unwrap();
        write_key_pair(&key, &encrypted, Some(&pass), false).unwrap();
        let want = key.fingerprint().to_string();
        let p = |path: &Path| path.to_str().unwrap().to_owned();
        let got = python(READ, &["-", &p(&plain), &p(&public_key_path(&plain))]);
        assert_eq!(got.lines().collect::<Vec<_>>(), [want.as_str(), want.as_str()], "{kind}");
        let got = python(READ, &[PASSPHRASE, &p(&encrypted)]);
        assert_eq!(got.trim(), want, "{kind} encrypted");
    }
}
