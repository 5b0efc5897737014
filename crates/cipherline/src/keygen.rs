//! `cipherline keygen`: make a new key pair.

use std::path::PathBuf;

use cipherline_keys::{Error as KeysError, KeyKind, PrivateKey, public_key_path, write_key_pair};
use clap::{Args, ValueEnum};

use crate::error::CliError;
use crate::passphrase::PassphraseArgs;

/// The kinds of key `keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// RSA: a server key (RSA-OAEP, the default) or an identity key (RSA-PSS).
    Rsa,
    /// X25519: a server key (smaller and faster than RSA).
    X25519,
    /// Ed25519: a client identity (signing) key.
    Ed25519,
}

/// Generate a key pair (RSA, X25519 or Ed25519) and print its fingerprint.
///
/// Writes PATH (the private key, PKCS#8 PEM, file mode 0600) and PATH.pub (the
/// public key, SubjectPublicKeyInfo PEM, to hand out), refusing to replace
/// existing files unless --force is given. With --passphrase-file or --passphrase-prompt the private key is
/// encrypted (PKCS#8 with PBES2: scrypt N=2^14 r=8 p=8 and AES-256-CBC), which
/// OpenSSL and Python `cryptography` can also read.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The kind of key: rsa (server or identity), x25519 (server) or ed25519
    /// (identity).
    #[arg(long = "type", value_enum, default_value_t = KeyType::Rsa)]
    pub key_type: KeyType,

    /// RSA modulus size in bits: 2048, 3072 or 4096 [default: 3072]. Only
    /// for --type rsa.
    #[arg(long, value_name = "BITS", value_parser = parse_bits)]
    pub bits: Option<usize>,

    /// Where to write the private key; the public key goes to PATH.pub.
    /// (default: ./cipherline_TYPE, e.g. ./cipherline_rsa)
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// Replace PATH and PATH.pub if they exist.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// Accepts only the RSA sizes cipherline uses, with a message saying why.
fn parse_bits(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(bits @ (2048 | 3072 | 4096)) => Ok(bits),
        Ok(bits) if bits < 2048 => Err(format!("{bits}-bit RSA is too weak; use 2048, 3072 (the default) or 4096")),
        Ok(bits) if bits > 4096 => {
            Err(format!("cipherline servers accept RSA keys of at most 4096 bits, not {bits}; use 2048, 3072 or 4096"))
        }
        _ => Err("use 2048, 3072 (the default) or 4096".to_owned()),
    }
}

/// Runs `cipherline keygen`.
pub fn run(args: &KeygenArgs) -> Result<(), CliError> {
    let kind = match (args.key_type, args.bits) {
        (KeyType::Rsa, bits) => KeyKind::Rsa { bits: bits.unwrap_or(3072) },
        (other, Some(_)) => {
            return Err(CliError::usage(
                format!(
                    "--bits applies to RSA keys only, not {}",
                    other.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
                ),
                "leave out --bits, or use --type rsa",
            ));
        }
        (KeyType::X25519, None) => KeyKind::X25519,
        (KeyType::Ed25519, None) => KeyKind::Ed25519,
    };
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("cipherline_{}", kind.algorithm_name())));
    let pub_out = public_key_path(&out);
    // Checked before the (slow) generation and the passphrase prompt; the
    // write itself still refuses to replace a file that appears meanwhile.
    if !args.force {
        for path in [&out, &pub_out] {
            if path.symlink_metadata().is_ok() {
                return Err(KeysError::AlreadyExists { path: path.clone() }.into());
            }
        }
    }
    let passphrase = args.passphrase.for_new_key()?;
    if matches!(kind, KeyKind::Rsa { .. }) {
        eprintln!("Generating an {kind} key pair (this can take a few seconds)...");
    }
    let key = PrivateKey::generate(kind)?;
    write_key_pair(&key, &out, passphrase.as_ref(), args.force)?;
    let protection = if passphrase.is_some() { "encrypted with your passphrase" } else { "not encrypted" };
    println!("Private key: {} (PKCS#8, mode 0600, {protection})", out.display());
    println!("Public key:  {}", pub_out.display());
    println!("Key type:    {kind}");
    println!("Fingerprint: {}", key.fingerprint());
    println!("Short form:  {}", key.fingerprint().short());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_parser_explains_refusals() {
        assert_eq!(parse_bits("3072"), Ok(3072));
        assert!(parse_bits("1024").is_err_and(|e| e.contains("too weak")));
        assert!(parse_bits("8192").is_err_and(|e| e.contains("at most 4096")));
        assert!(parse_bits("3000").is_err());
        assert!(parse_bits("many").is_err());
    }
}
