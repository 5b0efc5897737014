//! # cipherline-keys: key files, fingerprints and server trust
//!
//! Everything cipherline does with keys outside the wire protocol: reading
//! the key files people already have, writing new ones, fingerprints, and
//! deciding whether to trust a server's key the way OpenSSH does. It sits
//! beside the sans-IO core (`cipherline-proto`), not in its hot path: it does
//! file IO and reads OS randomness, and hands the core ready
//! [`ServerKey`](cipherline_proto::crypto::kem::ServerKey),
//! [`ServerPublicKey`](cipherline_proto::crypto::kem::ServerPublicKey) and
//! [`IdentityKey`](cipherline_proto::crypto::sign::IdentityKey) values.
//!
//! ## Contract
//!
//! - Key files in the formats people have load as they are: PKCS#1
//!   `RSA PRIVATE KEY` (`openssl genrsa` on OpenSSL 1.x, Python
//!   `cryptography`'s `TraditionalOpenSSL`), PKCS#8 `PRIVATE KEY`, encrypted
//!   PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2 with scrypt or PBKDF2-SHA-2),
//!   SubjectPublicKeyInfo `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`, and RFC 8410
//!   Ed25519/X25519 keys. All parsing is done by the RustCrypto `pem-rfc7468`,
//!   `der`, `spki`, `pkcs1`, `pkcs8` and `pkcs5` crates and by aws-lc-rs;
//!   nothing here parses DER or PEM by hand.
//! - RSA keys must be 2048 to 4096 bits. A private key file that group or
//!   others may access is refused unless the caller explicitly allows it.
//! - Keys are written as PKCS#8 PEM with mode 0600 (encrypted with scrypt
//!   when a passphrase is given) and SubjectPublicKeyInfo PEM, atomically and
//!   never over an existing file unless asked.
//! - A fingerprint is the SHA-256 of the canonical DER SubjectPublicKeyInfo
//!   (the bytes a server sends in ServerIdentity), printed as OpenSSH does:
//!   `SHA256:<base64 without padding>`.
//! - A changed server key is always refused; nothing in this crate overwrites
//!   a recorded key.
//! - Private keys and passphrases are zeroized on drop and implement neither
//!   `Debug` nor `Display`; no error carries key bytes, passphrases or file
//!   content. Every file error names the file.
//!
//! ## Modules
//!
//! - [`key`]: key kinds and public keys.
//! - [`private_key`]: private keys: generation, decoding, encoding.
//! - [`encryption`]: passphrase-encrypted PKCS#8 (PBES2 with scrypt).
//! - [`passphrase`]: passphrase handling.
//! - [`keyfile`]: reading and writing key files.
//! - [`fingerprint`]: fingerprints and their text forms.
//! - [`address`]: `host:port` server addresses.
//! - [`known_servers`]: the known-servers file (its line format is there).
//! - [`trust`]: the trust decision (pin, known, changed, first contact).
//! - [`data_dir`]: where the known-servers file lives.
//! - [`error`]: the crate's one error type.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod address;
pub mod data_dir;
pub mod encryption;
pub mod error;
pub mod fingerprint;
pub mod key;
pub mod keyfile;
pub mod known_servers;
pub mod passphrase;
pub mod private_key;
pub mod trust;

pub use address::ServerAddr;
pub use data_dir::{DataDir, HOME_ENV};
pub use error::{Error, KeyChange, KeyProblem};
pub use fingerprint::Fingerprint;
pub use key::{KeyKind, PublicKey};
pub use keyfile::{
    KeyFile, LoadOptions, load_any_public_key, load_identity_key, load_private_key, load_public_key, load_server_key,
    parse_key_file, public_key_path, read_key_file, write_key_pair,
};
pub use known_servers::{Added, KnownServer, KnownServers, Lookup, ServerAuth};
pub use passphrase::Passphrase;
pub use private_key::PrivateKey;
pub use trust::{Approval, FirstContact, Prompt, TrustPolicy, Trusted, describe_server_key};
