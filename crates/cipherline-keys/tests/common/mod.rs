//! Helpers shared by the integration tests: external tools (skipped with a
//! printed reason when absent) and file modes.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// Whether `openssl` runs; prints why the caller skips if not.
pub fn have_openssl(test: &str) -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("SKIP {test}: `openssl` is not on PATH");
    }
    ok
}

/// Whether `python3` can import `cryptography`; prints why the caller skips
/// if not. (Tests never install it.)
pub fn have_python_cryptography(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("SKIP {test}: `python3` with the `cryptography` package is not available");
    }
    ok
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Sets a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The fingerprint of a key file computed by OpenSSL alone: `openssl pkey
/// -pubout -outform DER | openssl dgst -sha256 -binary | openssl base64`,
/// without the `=` padding, behind `SHA256:`.
pub fn openssl_fingerprint(key: &Path, public: bool, passphrase_file: Option<&Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let der = dir.path().join("spki.der");
    let hash = dir.path().join("hash.bin");
    let mut pkey = Command::new("openssl");
    pkey.arg("pkey");
    if public {
        pkey.arg("-pubin");
    }
    pkey.arg("-in").arg(key).args(["-pubout", "-outform", "DER", "-out"]).arg(&der);
    if let Some(p) = passphrase_file {
        pkey.arg("-passin").arg(format!("file:{}", p.display()));
    }
    run(&mut pkey);
    run(Command::new("openssl").args(["dgst", "-sha256", "-binary", "-out"]).arg(&hash).arg(&der));
    let b64 = run(Command::new("openssl").args(["base64", "-A", "-in"]).arg(&hash));
    format!("SHA256:{}", String::from_utf8(b64).unwrap().trim().trim_end_matches('='))
}
