//! Key files: reading (size-limited, permission-checked, every PEM format
//! people already have) and writing (mode 0600, atomically, no clobbering).
//!
//! Accepted PEM blocks, one per file (text before the block is ignored, as
//! `openssl` writes it with `-text`):
//!
//! | label                   | content                                          |
//! |-------------------------|--------------------------------------------------|
//! | `RSA PRIVATE KEY`       | PKCS#1 (`openssl genrsa` on 1.x, Python `TraditionalOpenSSL`) |
//! | `PRIVATE KEY`           | PKCS#8: RSA, X25519 or Ed25519 (RFC 8410)        |
//! | `ENCRYPTED PRIVATE KEY` | PKCS#8 encrypted with PBES2 (scrypt or PBKDF2)   |
//! | `PUBLIC KEY`            | SubjectPublicKeyInfo: RSA, X25519 or Ed25519     |
//! | `RSA PUBLIC KEY`        | PKCS#1 RSA public key                            |

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};
use cipherline_proto::crypto::sign::IdentityKey;
use zeroize::Zeroizing;

use crate::encryption;
use crate::error::{Error, KeyProblem};
use crate::key::PublicKey;
use crate::passphrase::Passphrase;
use crate::private_key::PrivateKey;

/// Largest key file read: far above an RSA-4096 PEM (about 3.3 KB).
pub const MAX_KEY_FILE: usize = 64 * 1024;

/// The start of a PEM boundary line.
const BEGIN: &[u8] = b"-----BEGIN ";

/// How to load a private key file.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    passphrase: Option<&'a Passphrase>,
    allow_insecure_permissions: bool,
}

impl<'a> LoadOptions<'a> {
    /// No passphrase; insecure file permissions refused.
    #[must_use]
    pub fn new() -> Self {
        LoadOptions::default()
    }

    /// The passphrase for an encrypted key (ignored for an unencrypted one).
    #[must_use]
    pub fn passphrase(mut self, passphrase: Option<&'a Passphrase>) -> Self {
        self.passphrase = passphrase;
        self
    }

    /// Accepts a private key file that group or others may access. Off by
    /// default, as in ssh: such a file may already be someone else's copy.
    #[must_use]
    pub fn allow_insecure_permissions(mut self, allow: bool) -> Self {
        self.allow_insecure_permissions = allow;
        self
    }
}

/// What a key file holds.
pub enum KeyFile {
    /// A private key (decrypted, if it was encrypted).
    Private(PrivateKey),
    /// A public key.
    Public(PublicKey),
}

impl KeyFile {
    /// The public key: the file's own, or the private key's public half.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        match self {
            KeyFile::Private(key) => key.public_key(),
            KeyFile::Public(key) => key,
        }
    }
}

/// Reads a private or public key file in any supported format.
pub fn read_key_file(path: &Path, options: &LoadOptions<'_>) -> Result<KeyFile, Error> {
    read(path, options, Accept::Any)
}

/// Which keys a read accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Private or public.
    Any,
    /// Public only: a private key is refused before it is decoded.
    Public,
}

fn read(path: &Path, options: &LoadOptions<'_>, accept: Accept) -> Result<KeyFile, Error> {
    let problem = |problem| Error::KeyFile { path: path.to_owned(), problem };
    let (bytes, mode) = read_limited(path)?;
    let (label, der) = decode_pem(&bytes).map_err(problem)?;
    let is_private = label.ends_with("PRIVATE KEY");
    if is_private && accept == Accept::Public {
        return Err(problem(KeyProblem::ExpectedPublicKey));
    }
    // Checked before anything is decrypted or parsed: a private key others
    // can read may already be compromised, and the user must know.
    if is_private && !options.allow_insecure_permissions {
        check_private_mode(path, mode)?;
    }
    parse_block(label, &der, options.passphrase).map_err(problem)
}

/// Parses the content of a key file already in memory, exactly as
/// [`read_key_file`] parses a file once it has read it (same size limit,
/// same PEM and key parsers), but without the file's permission check.
///
/// For callers that hold key bytes rather than a path, such as the fuzz
/// targets (`fuzz/`); code that reads key files should use
/// [`read_key_file`], which also refuses private keys others can read.
pub fn parse_key_file(bytes: &[u8], passphrase: Option<&Passphrase>) -> Result<KeyFile, KeyProblem> {
    if bytes.len() > MAX_KEY_FILE {
        return Err(KeyProblem::TooLarge { limit: MAX_KEY_FILE });
    }
    let (label, der) = decode_pem(bytes)?;
    parse_block(label, &der, passphrase)
}

/// Decodes the one PEM block of a key file: its label and DER content.
fn decode_pem(bytes: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), KeyProblem> {
    match pem_rfc7468::decode_vec(bytes) {
        Ok((label, der)) => Ok((label.to_owned(), Zeroizing::new(der))),
        Err(pem_rfc7468::Error::HeaderDisallowed) => Err(KeyProblem::LegacyEncryptedPem),
        Err(e) => {
            // Counting boundary lines is not parsing: it only picks the
            // clearer of two messages for a file the PEM parser refused.
            let count = bytes.windows(BEGIN.len()).filter(|w| *w == BEGIN).count();
            Err(if count > 1 {
                KeyProblem::SeveralPemBlocks { count }
            } else {
                KeyProblem::NotPem { reason: e.to_string() }
            })
        }
    }
}

/// Parses a PEM block's DER content according to its label.
fn parse_block(label: String, der: &[u8], passphrase: Option<&Passphrase>) -> Result<KeyFile, KeyProblem> {
    match label.as_str() {
        "RSA PRIVATE KEY" => PrivateKey::from_pkcs1_der(der).map(KeyFile::Private),
        "PRIVATE KEY" => PrivateKey::from_pkcs8_der(der).map(KeyFile::Private),
        "ENCRYPTED PRIVATE KEY" => encryption::decrypt(der, passphrase)
            .and_then(|pkcs8| PrivateKey::from_pkcs8_der(&pkcs8))
            .map(KeyFile::Private),
        "PUBLIC KEY" => PublicKey::from_spki_der(der).map(KeyFile::Public),
        "RSA PUBLIC KEY" => PublicKey::from_pkcs1_der(der).map(KeyFile::Public),
        "EC PRIVATE KEY" | "EC PUBLIC KEY" => Err(KeyProblem::UnsupportedAlgorithm("EC (ECDSA/ECDH)".to_owned())),
        _ => Err(KeyProblem::UnsupportedLabel { label }),
    }
}

/// Reads a private key file (any supported private format).
pub fn load_private_key(path: &Path, options: &LoadOptions<'_>) -> Result<PrivateKey, Error> {
    match read_key_file(path, options)? {
        KeyFile::Private(key) => Ok(key),
        KeyFile::Public(_) => Err(Error::KeyFile { path: path.to_owned(), problem: KeyProblem::ExpectedPrivateKey }),
    }
}

/// Reads a server's static private key (RSA 2048–4096 or X25519).
pub fn load_server_key(path: &Path, options: &LoadOptions<'_>) -> Result<ServerKey, Error> {
    load_private_key(path, options)?.to_server_key().map_err(|e| with_path(e, path))
}

/// Reads a client's identity private key (Ed25519, or RSA 2048–4096).
pub fn load_identity_key(path: &Path, options: &LoadOptions<'_>) -> Result<IdentityKey, Error> {
    load_private_key(path, options)?.to_identity_key().map_err(|e| with_path(e, path))
}

/// Reads a public key file of any supported kind (`PUBLIC KEY` or `RSA
/// PUBLIC KEY`). A private key file is refused: public key files are what
/// gets handed around, and a private key should not be.
pub fn load_any_public_key(path: &Path) -> Result<PublicKey, Error> {
    match read(path, &LoadOptions::new(), Accept::Public)? {
        KeyFile::Public(key) => Ok(key),
        KeyFile::Private(_) => Err(Error::KeyFile { path: path.to_owned(), problem: KeyProblem::ExpectedPublicKey }),
    }
}

/// Reads a server's public key file (RSA or X25519), such as the
/// `server_public_key.pem` an operator hands out.
pub fn load_public_key(path: &Path) -> Result<ServerPublicKey, Error> {
    load_any_public_key(path)?
        .to_server_public_key()
        .map_err(|problem| Error::KeyFile { path: path.to_owned(), problem })
}

/// Attaches `path` to an error about a key that has none.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Key(problem) => Error::KeyFile { path: path.to_owned(), problem },
        other => other,
    }
}

/// Reads a whole file of at most [`MAX_KEY_FILE`] bytes into a zeroizing
/// buffer; returns it with the file's permission bits (Unix).
fn read_limited(path: &Path) -> Result<(Zeroizing<Vec<u8>>, Option<u32>), Error> {
    let read_err = |source| Error::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_err)?;
    // Metadata of the opened file, not of the path, so that the file checked
    // is the file read.
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE + 1));
    file.take(MAX_KEY_FILE as u64 + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() > MAX_KEY_FILE {
        return Err(Error::KeyFile { path: path.to_owned(), problem: KeyProblem::TooLarge { limit: MAX_KEY_FILE } });
    }
    Ok((buf, file_mode(&meta)))
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Refuses a private key file that group or others may access (as ssh does
/// for `st_mode & 077`).
fn check_private_mode(path: &Path, mode: Option<u32>) -> Result<(), Error> {
    match mode {
        Some(mode) if mode & 0o077 != 0 => Err(Error::InsecurePermissions { path: path.to_owned(), mode }),
        _ => Ok(()),
    }
}

/// The path of the public key written next to a private key: `PATH.pub`.
#[must_use]
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = OsString::from(private.as_os_str());
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes a key pair: `path` (the private key, PKCS#8 PEM, encrypted if a
/// passphrase is given, mode 0600) and `path.pub` (SubjectPublicKeyInfo PEM,
/// mode 0644). Each file is written to a temporary file in the same
/// directory and renamed into place, so no reader ever sees half a key.
///
/// Without `overwrite`, fails with [`Error::AlreadyExists`] if either file
/// exists (and never replaces one that appears meanwhile).
pub fn write_key_pair(
    key: &PrivateKey,
    path: &Path,
    passphrase: Option<&Passphrase>,
    overwrite: bool,
) -> Result<(), Error> {
    let pub_path = public_key_path(path);
    if !overwrite {
        for p in [path, pub_path.as_path()] {
            if p.symlink_metadata().is_ok() {
                return Err(Error::AlreadyExists { path: p.to_owned() });
            }
        }
    }
    let private_pem = key.to_pem(passphrase)?;
    let public_pem = key.public_key().to_pem().map_err(Error::Key)?;
    write_atomic(path, private_pem.as_bytes(), 0o600, overwrite)?;
    if let Err(e) = write_atomic(&pub_path, public_pem.as_bytes(), 0o644, overwrite) {
        if !overwrite {
            // Leave nothing half-done behind: the private key was new.
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory, with permission bits `mode` (Unix), then renames it into place.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<(), Error> {
    let write_err = |source| Error::Write { path: path.to_owned(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates the file with mode 0600 and O_EXCL, so the content is
    // never readable by others, even for a moment.
    let mut tmp = tempfile::Builder::new().prefix(".cipherline-tmp").tempfile_in(dir).map_err(write_err)?;
    set_mode(tmp.as_file(), mode).map_err(write_err)?;
    tmp.write_all(contents).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    let persisted = if overwrite { tmp.persist(path) } else { tmp.persist_noclobber(path) };
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::AlreadyExists { path: path.to_owned() }
        } else {
            write_err(e.error)
        }
    })?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
