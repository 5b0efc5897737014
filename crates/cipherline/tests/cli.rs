//! The `cipherline` binary, run as a user would: keygen, fingerprint and
//! known-servers, their files, output, exit codes and error hints. Standard
//! input is never a terminal here, so nothing prompts.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cipherline_keys::{Fingerprint, LoadOptions, Passphrase, read_key_file};

fn cipherline(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cipherline"));
    cmd.args(args).stdin(Stdio::null()).env_remove("CIPHERLINE_HOME");
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with `code`; returns its stderr.
fn fails(cmd: &mut Command, code: i32) -> String {
    let out = output(cmd);
    assert_eq!(out.status.code(), Some(code), "{cmd:?}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn pub_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", path.display()))
}

fn library_fingerprint(path: &Path, passphrase: Option<&Passphrase>) -> String {
    read_key_file(path, &LoadOptions::new().passphrase(passphrase)).unwrap().public_key().fingerprint().to_string()
}

/// The `Fingerprint: ...` line keygen prints.
fn printed_fingerprint(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("Fingerprint: ")).unwrap().to_owned()
}

#[test]
fn help_on_every_subcommand() {
    for args in [
        &["--help"][..],
        &["keygen", "--help"],
        &["fingerprint", "--help"],
        &["known-servers", "--help"],
        &["known-servers", "list", "--help"],
        &["known-servers", "add", "--help"],
        &["known-servers", "remove", "--help"],
    ] {
        let out = ok(&mut cipherline(args));
        assert!(out.contains("Usage:"), "{args:?}");
    }
}

#[test]
fn keygen_writes_a_private_0600_and_a_public_file_for_each_type() {
    let dir = tempfile::tempdir().unwrap();
    for (ty, kind) in [("rsa", "RSA-2048"), ("x25519", "X25519"), ("ed25519", "Ed25519")] {
        let out = dir.path().join(format!("key_{ty}"));
        let mut cmd = cipherline(&["keygen", "--type", ty, "--out", s(&out)]);
        if ty == "rsa" {
            cmd.args(["--bits", "2048"]);
        }
        let stdout = ok(&mut cmd);
        assert_eq!(mode(&out), 0o600, "{ty}");
        assert_eq!(mode(&pub_of(&out)), 0o644, "{ty}");
        let private = std::fs::read_to_string(&out).unwrap();
        let public = std::fs::read_to_string(pub_of(&out)).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{ty}");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{ty}");
        assert!(stdout.contains(&format!("Key type:    {kind}")), "{stdout}");
        let printed = printed_fingerprint(&stdout);
        assert_eq!(printed, library_fingerprint(&out, None));
        assert_eq!(printed, library_fingerprint(&pub_of(&out), None));
        // Nothing secret on the terminal.
        assert!(!stdout.contains("BEGIN"));
    }
}

#[test]
fn keygen_defaults_to_rsa_3072_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(cipherline(&["keygen"]).current_dir(dir.path()));
    assert!(stdout.contains("Key type:    RSA-3072"), "{stdout}");
    assert_eq!(mode(&dir.path().join("cipherline_rsa")), 0o600);
    assert!(dir.path().join("cipherline_rsa.pub").is_file());
    ok(cipherline(&["keygen", "--type", "x25519"]).current_dir(dir.path()));
    assert!(dir.path().join("cipherline_x25519").is_file());
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    ok(&mut cipherline(&["keygen", "--type", "ed25519", "--out", s(&out)]));
    let before = std::fs::read(&out).unwrap();

    let err = fails(&mut cipherline(&["keygen", "--type", "ed25519", "--out", s(&out)]), 1);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);

    // Only the .pub existing is enough to refuse.
    let lone = dir.path().join("lone");
    std::fs::write(pub_of(&lone), "x").unwrap();
    let err = fails(&mut cipherline(&["keygen", "--type", "ed25519", "--out", s(&lone)]), 1);
    assert!(err.contains("lone.pub already exists"), "{err}");
    assert!(!lone.exists());

    // --force replaces both, and the new private key is 0600 even if the old
    // file was readable by others.
    chmod(&out, 0o644);
    let stdout = ok(&mut cipherline(&["keygen", "--type", "ed25519", "--out", s(&out), "--force"]));
    assert_ne!(std::fs::read(&out).unwrap(), before);
    assert_eq!(mode(&out), 0o600);
    assert_eq!(printed_fingerprint(&stdout), library_fingerprint(&pub_of(&out), None));
}

#[test]
fn keygen_refuses_bad_sizes_and_flags_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let err = fails(&mut cipherline(&["keygen", "--bits", "1024", "--out", s(&out)]), 2);
    assert!(err.contains("1024-bit RSA is too weak"), "{err}");
    let err = fails(&mut cipherline(&["keygen", "--bits", "8192", "--out", s(&out)]), 2);
    assert!(err.contains("at most 4096"), "{err}");
    let err = fails(&mut cipherline(&["keygen", "--type", "x25519", "--bits", "2048", "--out", s(&out)]), 2);
    assert!(err.contains("--bits applies to RSA keys only"), "{err}");
    let err = fails(&mut cipherline(&["keygen", "--passphrase-prompt", "--out", s(&out)]), 1);
    assert!(err.contains("no terminal") && err.contains("--passphrase-file"), "{err}");
    // The passphrase never comes from the command line.
    let err = fails(&mut cipherline(&["keygen", "--passphrase", "x", "--out", s(&out)]), 2);
    assert!(err.contains("unexpected argument"), "{err}");
    assert!(!out.exists());
}

#[test]
fn passphrase_protected_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret phrase\n").unwrap();
    let stdout = ok(&mut cipherline(&["keygen", "--type", "x25519", "--out", s(&out), "--passphrase-file", s(&pass)]));
    assert!(stdout.contains("encrypted with your passphrase"), "{stdout}");
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));

    let err = fails(&mut cipherline(&["fingerprint", s(&out)]), 1);
    assert!(err.contains("encrypted") && err.contains("--passphrase-file"), "{err}");
    assert!(!err.contains("s3cret"));
    let fp = ok(&mut cipherline(&["fingerprint", s(&out), "--passphrase-file", s(&pass)]));
    assert_eq!(fp.lines().next().unwrap(), printed_fingerprint(&stdout));

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let err = fails(&mut cipherline(&["fingerprint", s(&out), "--passphrase-file", s(&wrong)]), 1);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!err.contains("not it"));
}

#[test]
fn fingerprint_matches_the_library_and_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let stdout = ok(&mut cipherline(&["keygen", "--bits", "2048", "--out", s(&out)]));
    let from_keygen = printed_fingerprint(&stdout);
    for path in [out.clone(), pub_of(&out)] {
        let fp = ok(&mut cipherline(&["fingerprint", s(&path)]));
        let lines: Vec<&str> = fp.lines().collect();
        assert_eq!(lines.len(), 2, "{fp}");
        assert_eq!(lines[0], from_keygen);
        assert_eq!(lines[0], library_fingerprint(&path, None));
        let parsed: Fingerprint = lines[0].parse().unwrap();
        assert_eq!(lines[1], format!("{} (RSA-2048)", parsed.short()));
    }
    // Independently: openssl's SHA-256 of the DER SubjectPublicKeyInfo.
    let openssl_ok = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !openssl_ok {
        println!("SKIP openssl comparison: `openssl` is not on PATH");
        return;
    }
    let der = dir.path().join("spki.der");
    let hash = dir.path().join("hash");
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        o.stdout
    };
    run(&["pkey", "-in", s(&out), "-pubout", "-outform", "DER", "-out", s(&der)]);
    run(&["dgst", "-sha256", "-binary", "-out", s(&hash), s(&der)]);
    let b64 = String::from_utf8(run(&["base64", "-A", "-in", s(&hash)])).unwrap();
    assert_eq!(from_keygen, format!("SHA256:{}", b64.trim().trim_end_matches('=')));
}

#[test]
fn fingerprint_refuses_a_private_key_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    ok(&mut cipherline(&["keygen", "--type", "ed25519", "--out", s(&out)]));
    chmod(&out, 0o644);
    let err = fails(&mut cipherline(&["fingerprint", s(&out)]), 1);
    assert!(err.contains("group or others can access it (mode 0644)"), "{err}");
    assert!(err.contains("chmod 600") && err.contains("--insecure-key-permissions"), "{err}");
    ok(&mut cipherline(&["fingerprint", s(&out), "--insecure-key-permissions"]));
    // A public key may be world-readable.
    ok(&mut cipherline(&["fingerprint", s(&pub_of(&out))]));
}

#[test]
fn fingerprint_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = fails(&mut cipherline(&["fingerprint", s(&missing)]), 1);
    assert!(err.contains(s(&missing)), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a key\n").unwrap();
    let err = fails(&mut cipherline(&["fingerprint", s(&junk)]), 1);
    assert!(err.contains(s(&junk)) && err.contains("hint:"), "{err}");
}

#[test]
fn known_servers_add_list_remove_and_changed_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("server");
    ok(&mut cipherline(&["keygen", "--type", "x25519", "--out", s(&key)]));
    let fp = library_fingerprint(&key, None);
    let d = ["--data-dir", s(&data)];

    let out =
        ok(cipherline(&["known-servers", "add", "chat.example.org:7878", "--server-key"]).arg(pub_of(&key)).args(d));
    assert!(out.contains("Recorded"), "{out}");
    let list = ok(cipherline(&["known-servers", "list"]).args(d));
    assert_eq!(list, format!("chat.example.org:7878 {fp}\n"));
    assert_eq!(mode(&data), 0o700);

    // The private key is refused as --server-key.
    let err = fails(cipherline(&["known-servers", "add", "x.example:1", "--server-key", s(&key)]).args(d), 1);
    assert!(err.contains("private key") && err.contains(".pub"), "{err}");

    // Another key for the same server is refused loudly, with the remedy
    // (exit 3, as for every refused server key).
    let other = Fingerprint::of_spki(b"another key").to_string();
    let err = fails(
        cipherline(&["known-servers", "add", "chat.example.org:7878", "--server-fingerprint", &other]).args(d),
        3,
    );
    assert!(err.contains("HAS CHANGED") && err.contains(&fp) && err.contains(&other), "{err}");
    assert!(err.contains("cipherline known-servers remove chat.example.org:7878 --data-dir"), "{err}");

    let out = ok(cipherline(&["known-servers", "remove", "chat.example.org:7878"]).args(d));
    assert!(out.contains("Removed 1"), "{out}");
    ok(cipherline(&["known-servers", "add", "chat.example.org:7878", "--server-fingerprint", &other]).args(d));
    let list = ok(cipherline(&["known-servers", "list"]).args(d));
    assert_eq!(list, format!("chat.example.org:7878 {other}\n"));

    // A cluster's nodes share one key: one add records every address.
    let out = ok(cipherline(&["known-servers", "add", "a.example:1", "b.example:2", "--server-key"])
        .arg(pub_of(&key))
        .args(d));
    assert_eq!(out.matches("Recorded").count(), 2, "{out}");
    let list = ok(cipherline(&["known-servers", "list"]).args(d));
    assert!(list.contains(&format!("a.example:1 {fp}\n")) && list.contains(&format!("b.example:2 {fp}\n")), "{list}");
}

#[test]
fn data_dir_flag_beats_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (env_dir, flag_dir) = (dir.path().join("env"), dir.path().join("flag"));
    let fp = Fingerprint::of_spki(b"k").to_string();
    let add = |extra: &[&str]| {
        let mut cmd = cipherline(&["known-servers", "add", "a.example:1", "--server-fingerprint", &fp]);
        cmd.env("CIPHERLINE_HOME", &env_dir).args(extra);
        ok(&mut cmd);
    };
    add(&[]);
    assert!(env_dir.join("known_servers").is_file());
    add(&["--data-dir", s(&flag_dir)]);
    assert!(flag_dir.join("known_servers").is_file());
}

#[test]
fn concurrent_processes_do_not_corrupt_the_file() {
    const N: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let children: Vec<_> = (0..N)
        .map(|i| {
            let fp = Fingerprint::of_spki(format!("key {i}").as_bytes()).to_string();
            cipherline(&["known-servers", "add", &format!("host{i}.example:7878"), "--server-fingerprint", &fp])
                .args(["--data-dir", s(&data)])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let list = ok(&mut cipherline(&["known-servers", "list", "--data-dir", s(&data)]));
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<String> = (0..N)
        .map(|i| format!("host{i}.example:7878 {}", Fingerprint::of_spki(format!("key {i}").as_bytes())))
        .collect();
    want.sort_unstable();
    assert_eq!(lines, want);
}
