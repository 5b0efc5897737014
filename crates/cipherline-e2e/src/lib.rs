//! # cipherline-e2e: end-to-end conversations on MLS
//!
//! The glue between cipherline identities and Messaging Layer Security
//! (RFC 9420), through `mls-rs` with the aws-lc-rs provider and mls-rs's
//! SQLite state storage. No MLS of our own: this crate only builds mls-rs
//! clients from cipherline identity keys, moves MLS messages in and out as
//! bytes (RFC 9420 `MLSMessage` encodings, opaque to the relay), keeps the
//! state in one SQLite file, and says who sent what.
//!
//! # Contract
//!
//! - **Identity.** A member's MLS credential is a basic credential holding
//!   its name; its MLS signature key is its cipherline Ed25519 identity key
//!   (the key ClientAuth proves to the server), so a remembered key, a
//!   safety code and a key-change warning mean the same thing here as for
//!   signed messages. An RSA identity key cannot sign in MLS: [`Member::new`]
//!   refuses it. Inside a group a member's name (folded) and key never
//!   change: a new key is a new member.
//! - **Suites.** [`Suite::XWing`] (the default: ML-KEM-768 + X25519, code
//!   point 0xFE4C = 65100, a draft code point, with AES-128-GCM, SHA-256 and
//!   Ed25519) so recorded conversations resist a future quantum computer as
//!   the transport does; [`Suite::Interop`] is the registered
//!   `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (1) for other MLS
//!   software.
//! - **State.** [`Member::open`] keeps group state, key package secrets and
//!   this crate's own bookkeeping in one SQLite file (mode 0600). Every
//!   change (a message encrypted, a message received, a commit built,
//!   confirmed or abandoned, a join) is written before the call returns, so
//!   a killed process loses nothing it handed out or acknowledged, and never
//!   reuses a message key. The file holds every group's secrets and, in
//!   each group's state, the Ed25519 identity signing key (mls-rs stores
//!   the signer with the group): only its mode protects it. Deleted
//!   secrets (past epochs beyond the three mls-rs keeps for late messages,
//!   used key packages, superseded states) are zeroed in the file.
//! - **Commits.** A commit is built ([`Conversation::add`],
//!   [`Conversation::remove`], [`Conversation::update`]) but not applied:
//!   the relay accepts exactly one commit per epoch, and the caller then
//!   [`Conversation::confirm`]s or [`Conversation::abandon`]s it. Commits
//!   from members are `PrivateMessage`s (the relay learns nothing from
//!   them); external commits (joins to public groups) are `PublicMessage`s,
//!   as RFC 9420 requires. Removals, updates and external joins carry a
//!   path (a fresh leaf key for the committer), add-only commits none;
//!   Welcomes carry the ratchet tree.
//! - **Senders.** Every decrypted message comes with the sender's name and
//!   identity key as its credential in the group says, which mls-rs has
//!   checked against the group's signatures; names outside the name grammar
//!   are refused, never shown.
//! - Everything a peer sends is parsed by mls-rs and refused with an
//!   [`E2eError`] if malformed, forged or replayed; nothing here panics on
//!   peer input. Plaintexts are returned in buffers erased on drop.
//!
//! # Modules
//!
//! - [`identity`]: credentials (who a leaf is), the rules a credential must
//!   follow, and [`inspect_key_package`] for the relay.
//! - `rules`: the group policy mls-rs applies (paths, public groups,
//!   encrypted commits, padding).
//! - `store`: the SQLite file and this crate's own table in it.
//! - [`member`]: a user as an MLS client ([`Member`]).
//! - [`conversation`]: one group ([`Conversation`]) and what comes out of it.

#![forbid(unsafe_code)]

pub mod conversation;
pub mod identity;
pub mod member;
mod rules;
mod store;

pub use conversation::{Change, Conversation, Incoming, Pending, Received};
pub use identity::{Identity, KeyPackageInfo, inspect_key_package, inspect_key_package_info};
pub use member::Member;
pub use rules::Label;

use mls_rs::CipherSuite;

/// After this long with the same own leaf key, a member should send an
/// update commit ([`Conversation::needs_update`]): post-compromise
/// security heals no faster than leaves are updated.
pub const UPDATE_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
/// After this many messages sent with the same own leaf key, a member
/// should send an update commit ([`Conversation::needs_update`]).
pub const UPDATE_AFTER_MESSAGES: u64 = 100;

/// Everything that can go wrong end to end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// The identity key cannot sign in MLS (only Ed25519 can).
    #[error("end-to-end encryption needs an Ed25519 identity key (an RSA key cannot sign MLS messages)")]
    NotEd25519,
    /// The name is outside the name grammar.
    #[error("not a valid name for an end-to-end credential")]
    InvalidName,
    /// The crypto provider does not offer the suite, or a peer used one we
    /// do not.
    #[error("the MLS ciphersuite {0} is not available")]
    Suite(u16),
    /// mls-rs refused something (malformed, forged, replayed, out of epoch).
    #[error("MLS: {0}")]
    Mls(#[from] mls_rs::error::MlsError),
    /// A message decoded to something other than what was expected.
    #[error("unexpected MLS message: {0}")]
    Unexpected(&'static str),
    /// The sender's credential is not one of ours (not a basic credential
    /// with a valid name and an Ed25519 key).
    #[error("the sender's credential is not a cipherline identity")]
    BadCredential,
    /// A message this member sent itself came back (the relay echoed it):
    /// nothing to do.
    #[error("a message from this member itself")]
    FromSelf,
    /// No member of the group has that name.
    #[error("no member named {0} in the conversation")]
    NoSuchMember(String),
    /// [`Conversation::confirm`] or [`Conversation::abandon`] without a
    /// pending commit.
    #[error("no commit is pending")]
    NoPendingCommit,
    /// The group is not public: it has no GroupInfo for external joins.
    #[error("the conversation is not public")]
    NotPublic,
    /// The state file could not be opened, read or written.
    #[error("end-to-end state file: {0}")]
    Store(String),
    /// A Welcome to a group this member already holds (replayed by the
    /// relay, which would otherwise roll the group back).
    #[error("an invitation to a conversation this client is already in")]
    AlreadyJoined,
}

impl From<rusqlite::Error> for E2eError {
    fn from(e: rusqlite::Error) -> Self {
        E2eError::Store(e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = E2eError> = std::result::Result<T, E>;

/// The MLS ciphersuites cipherline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Suite {
    /// X-Wing (ML-KEM-768 + X25519) with AES-128-GCM, SHA-256, Ed25519.
    #[default]
    XWing,
    /// `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`, for interop.
    Interop,
}

impl Suite {
    fn code(self) -> CipherSuite {
        match self {
            Suite::XWing => CipherSuite::ML_KEM_768_X25519,
            Suite::Interop => CipherSuite::CURVE25519_AES128,
        }
    }

    fn from_code(code: CipherSuite) -> Option<Suite> {
        [Suite::XWing, Suite::Interop].into_iter().find(|s| s.code() == code)
    }
}
