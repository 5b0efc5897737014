//! Identity keys and names as people use them (issue 13, items 7 and 8),
//! against a real `cipherline serve` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::process::Stdio;

use common::*;

/// `keygen --passphrase-file` makes an encrypted identity key; `send`
/// uses it with `--identity-passphrase-file`, reports a wrong passphrase
/// clearly, and without a terminal or the file names the flag to use.
/// (Before, send rejected the key with a hint naming keygen's flags.)
#[test]
fn an_encrypted_identity_key_is_usable_by_send() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let key = dir.path().join("id_ed25519");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let made = bin()
        .args(["keygen", "--type", "ed25519", "--out", key.to_str().unwrap(), "--passphrase-file"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stdout).contains("encrypted with your passphrase"));

    let ok = server
        .client("send", "alice")
        .arg("--identity")
        .arg(&key)
        .arg("--identity-passphrase-file")
        .arg(&pass)
        .arg("hello")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let out = server
        .client("send", "alice")
        .arg("--identity")
        .arg(&key)
        .arg("--identity-passphrase-file")
        .arg(&wrong)
        .arg("hello")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("wrong passphrase for the identity key"), "{err}");
    assert!(err.contains(wrong.to_str().unwrap()), "the hint names the file: {err}");

    // No terminal (stdin is not one) and no file: the error names the flag.
    let out =
        server.client("send", "alice").arg("--identity").arg(&key).arg("hello").stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is encrypted") && err.contains("no terminal"), "{err}");
    assert!(err.contains("--identity-passphrase-file"), "{err}");
    assert!(!err.contains("--passphrase-prompt"), "no flag send does not have: {err}");
}
