//! `cipherline fingerprint`: show a key's fingerprint.

use std::path::PathBuf;

use cipherline_keys::{Error as KeysError, KeyFile, KeyProblem, LoadOptions, read_key_file};
use clap::Args;

use crate::error::CliError;
use crate::passphrase::{PassphraseArgs, ask_existing, have_tty};

/// Print the fingerprint of a private or public key file.
///
/// The first line is `SHA256:` and the Base64 (without padding) of the
/// SHA-256 of the key's DER SubjectPublicKeyInfo, as OpenSSH prints
/// fingerprints; this is what --server-fingerprint and the known_servers file
/// take. The second line is a short form for comparing by eye or reading
/// aloud: the first 128 bits of the same hash as eight groups of four hex
/// digits, followed by the key type.
///
/// Accepts PKCS#1 (RSA PRIVATE KEY, RSA PUBLIC KEY), PKCS#8 (PRIVATE KEY,
/// ENCRYPTED PRIVATE KEY) and SubjectPublicKeyInfo (PUBLIC KEY) PEM files
/// with RSA, X25519 or Ed25519 keys.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// The key file (private or public).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    #[command(flatten)]
    pub passphrase: PassphraseArgs,

    /// Read a private key file even if group or others can access it.
    #[arg(long)]
    pub insecure_key_permissions: bool,
}

/// Runs `cipherline fingerprint`.
pub fn run(args: &FingerprintArgs) -> Result<(), CliError> {
    let mut passphrase = args.passphrase.for_existing_key()?;
    let file = loop {
        let options = LoadOptions::new()
            .passphrase(passphrase.as_ref())
            .allow_insecure_permissions(args.insecure_key_permissions);
        match read_key_file(&args.path, &options) {
            // An encrypted key and nobody said how to get its passphrase:
            // ask, if there is someone to ask.
            Err(KeysError::KeyFile { problem: KeyProblem::PassphraseRequired, .. })
                if passphrase.is_none() && have_tty() =>
            {
                passphrase = Some(ask_existing()?);
            }
            other => break other?,
        }
    };
    let public = match &file {
        KeyFile::Private(key) => key.public_key(),
        KeyFile::Public(key) => key,
    };
    let fp = public.fingerprint();
    println!("{fp}");
    println!("{} ({})", fp.short(), public.kind());
    Ok(())
}
