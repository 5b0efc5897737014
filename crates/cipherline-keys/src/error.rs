//! The one error type of the keys crate.
//!
//! Variants are grouped by what went wrong: a key file's content
//! ([`Error::KeyFile`], detailed by [`KeyProblem`]), the filesystem
//! ([`Error::Read`], [`Error::Write`], [`Error::Lock`],
//! [`Error::AlreadyExists`], [`Error::InsecurePermissions`]), something the
//! user typed ([`Error::InvalidFingerprint`], [`Error::InvalidServerAddress`],
//! [`Error::InvalidRsaBits`], [`Error::InvalidPassphrase`]), the known-servers
//! file ([`Error::KnownServersSyntax`]), or a trust decision that refuses a
//! server ([`Error::UnknownServer`], [`Error::ServerRejected`],
//! [`Error::ServerKeyChanged`], [`Error::PinMismatch`],
//! [`Error::PinnedServerHasNoKey`], [`Error::PasswordOnlyNotRequested`],
//! [`Error::KeyNotExpected`]).
//!
//! Messages are short and lowercase and name the file involved; none carries
//! key bytes, passphrases or raw file content. What the user should do about
//! an error is the CLI's job (it adds a hint per variant).

use std::io;
use std::path::PathBuf;

use crate::address::ServerAddr;
use crate::fingerprint::Fingerprint;
use crate::key::KeyKind;
use crate::known_servers::ServerAuth;

/// Everything that can go wrong in the keys crate.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file was read but its content is unusable.
    #[error("{}: {problem}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyProblem,
    },

    /// A key that did not come from a file is unusable.
    #[error("key: {0}")]
    Key(KeyProblem),

    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },

    /// A file or directory could not be created or written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },

    /// The lock that serialises writers of a file could not be taken.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },

    /// Refused to overwrite an existing file.
    #[error("{} already exists", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },

    /// A private key file that group or others may access (as ssh refuses).
    #[error("{} holds a private key but group or others can access it (mode {mode:04o})", path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// An RSA key size other than 2048, 3072 or 4096 bits was asked for.
    #[error("RSA keys must be 2048, 3072 or 4096 bits, not {bits}")]
    InvalidRsaBits {
        /// The size asked for.
        bits: usize,
    },

    /// A passphrase is unusable (for example empty).
    #[error("passphrase{}: {reason}", from.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default())]
    InvalidPassphrase {
        /// The passphrase file, if it came from one.
        from: Option<PathBuf>,
        /// Why.
        reason: &'static str,
    },

    /// Text that should be a `SHA256:...` fingerprint is not one.
    #[error("invalid fingerprint: {reason} (expected SHA256: followed by 43 Base64 characters)")]
    InvalidFingerprint {
        /// Why.
        reason: &'static str,
    },

    /// Text that should be a `host:port` server address is not one.
    #[error("invalid server address {input:?}: {reason}")]
    InvalidServerAddress {
        /// What was given (never secret).
        input: String,
        /// Why.
        reason: &'static str,
    },

    /// A line of the known-servers file does not parse.
    #[error("{}:{line}: {reason}", path.display())]
    KnownServersSyntax {
        /// The known-servers file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// Why.
        reason: &'static str,
    },

    /// First contact with a server, and nothing allowed trusting it: no
    /// `--accept-new`, no pin, and no terminal to ask on.
    #[error("server {server} is not in {} and there is no terminal to ask whether to trust its key {fingerprint}", known_servers.display())]
    UnknownServer {
        /// The server.
        server: ServerAddr,
        /// The fingerprint of the key it presented.
        fingerprint: Fingerprint,
        /// The known-servers file that was consulted.
        known_servers: PathBuf,
    },

    /// First contact with a server, and the user answered no.
    #[error("you did not accept the key {fingerprint} of server {server}")]
    ServerRejected {
        /// The server.
        server: ServerAddr,
        /// The fingerprint of the key it presented.
        fingerprint: Fingerprint,
    },

    /// A known server presented a different key than the one recorded
    /// (boxed: it is the largest variant).
    #[error("{0}")]
    ServerKeyChanged(Box<KeyChange>),

    /// The server's key does not match the key pinned for this connection.
    #[error("server {server} presented key {presented}, but {pinned} was pinned for this connection")]
    PinMismatch {
        /// The server.
        server: ServerAddr,
        /// The pinned fingerprint.
        pinned: Fingerprint,
        /// The fingerprint of the key the server presented.
        presented: Fingerprint,
    },

    /// A key was pinned for this connection and the server presented none
    /// (a password-only server, or a man in the middle who knows the
    /// password and dropped the key).
    #[error("server {server} presented no key (password-only), but key {pinned} was pinned for this connection")]
    PinnedServerHasNoKey {
        /// The server.
        server: ServerAddr,
        /// The pinned fingerprint.
        pinned: Fingerprint,
    },

    /// The server presented no key, the user did not ask for password-only
    /// mode, and the known-servers file does not record it as password-only.
    #[error("server {server} presented no key (password-only), and password-only mode was not asked for")]
    PasswordOnlyNotRequested {
        /// The server.
        server: ServerAddr,
    },

    /// The user asked for password-only mode (no server key expected) and
    /// the server presented a key that nothing records.
    #[error("server {server} presented key {fingerprint}, but password-only mode (no key) was asked for")]
    KeyNotExpected {
        /// The server.
        server: ServerAddr,
        /// The fingerprint of the key it presented.
        fingerprint: Fingerprint,
    },

    /// Asking the user whether to trust a server failed.
    #[error("cannot ask whether to trust the server: {0}")]
    Prompt(io::Error),

    /// No data directory was given and none could be derived from the
    /// environment (no home directory).
    #[error("cannot find a data directory: no home directory is known")]
    NoDataDir,

    /// The crypto provider failed where it should not (e.g. no randomness).
    #[error("internal crypto failure: {0}")]
    Internal(&'static str),
}

/// The details of [`Error::ServerKeyChanged`]: another key, a key where
/// the file says password-only, or no key where the file records one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key of server {server} has changed: {} line {line} records {known}, the server presented {presented}",
    path.display()
)]
pub struct KeyChange {
    /// The server.
    pub server: ServerAddr,
    /// The known-servers file.
    pub path: PathBuf,
    /// The line (1-based) that records the old key (or password-only).
    pub line: usize,
    /// What the file records.
    pub known: ServerAuth,
    /// What the server presented.
    pub presented: ServerAuth,
}

/// What is wrong with a key's content.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Larger than any key file could be.
    #[error("too large to be a key file (over {limit} bytes)")]
    TooLarge {
        /// The size limit in bytes.
        limit: usize,
    },

    /// No valid PEM block.
    #[error("not a PEM key file ({reason})")]
    NotPem {
        /// What the PEM parser refused (never file content).
        reason: String,
    },

    /// Several PEM blocks where one key was expected (e.g. `EC PARAMETERS`
    /// before a key, or a key and a certificate).
    #[error("holds {count} PEM blocks; a key file must hold exactly one key")]
    SeveralPemBlocks {
        /// How many `-----BEGIN` lines there are.
        count: usize,
    },

    /// An OpenSSL "traditional" encrypted PEM (`Proc-Type`/`DEK-Info`
    /// headers), which uses a weak MD5-based key derivation.
    #[error("old-style OpenSSL encrypted PEM (Proc-Type/DEK-Info headers) is not supported")]
    LegacyEncryptedPem,

    /// A PEM block of a type that is not a supported key.
    #[error("unsupported PEM block type \"{label}\"")]
    UnsupportedLabel {
        /// The PEM type label.
        label: String,
    },

    /// The DER inside does not parse.
    #[error("malformed {0}")]
    Malformed(&'static str),

    /// A key algorithm cipherline does not use.
    #[error("unsupported key algorithm: {0}")]
    UnsupportedAlgorithm(String),

    /// An RSA key outside 2048 to 4096 bits.
    #[error("the RSA key has {bits} bits; cipherline accepts 2048 to 4096")]
    RsaKeySize {
        /// The modulus size in bits.
        bits: usize,
    },

    /// A key of a kind that cannot serve here.
    #[error("this is an {found} key but {wanted} is needed")]
    WrongKind {
        /// The kind of key found.
        found: KeyKind,
        /// What was needed, in words.
        wanted: &'static str,
    },

    /// A public key was needed and the file holds a private key.
    #[error("this is a private key; a public key file is needed")]
    ExpectedPublicKey,

    /// A private key was needed and the file holds a public key.
    #[error("this is a public key; a private key file is needed")]
    ExpectedPrivateKey,

    /// The key is encrypted and no passphrase was given.
    #[error("the private key is encrypted and no passphrase was given")]
    PassphraseRequired,

    /// Decryption failed: wrong passphrase (or a damaged file).
    #[error("wrong passphrase, or the file is damaged")]
    WrongPassphrase,

    /// An encryption scheme that is not supported (or too weak to accept).
    #[error("unsupported key encryption: {0}")]
    UnsupportedEncryption(&'static str),

    /// Key-derivation parameters so costly that decrypting could exhaust
    /// memory or time.
    #[error("the key derivation parameters are too costly to try ({0})")]
    KdfTooCostly(&'static str),

    /// A public key embedded next to the private key does not match it.
    #[error("the embedded public key does not match the private key")]
    PublicKeyMismatch,

    /// The crypto provider refused the key's values as inconsistent.
    #[error("the key's values are invalid or inconsistent")]
    Rejected,
}

/// The crate's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
