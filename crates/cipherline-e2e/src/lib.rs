//! # cipherline-e2e: end-to-end conversations on MLS
//!
//! The glue between cipherline identities and Messaging Layer Security
//! (RFC 9420), through `mls-rs` with the aws-lc-rs provider. No MLS of our
//! own: this crate only builds mls-rs clients from cipherline identity
//! keys, moves MLS messages in and out as bytes (RFC 9420 `MLSMessage`
//! encodings, opaque to the relay), and says who sent what.
//!
//! # Contract
//!
//! - **Identity.** A member's MLS credential is a basic credential holding
//!   its name; its MLS signature key is its cipherline Ed25519 identity key
//!   (the key ClientAuth proves to the server), so a remembered key, a
//!   safety code and a key-change warning mean the same thing here as for
//!   signed messages. An RSA identity key cannot sign in MLS: [`Member::new`]
//!   refuses it.
//! - **Suites.** [`Suite::XWing`] (the default: ML-KEM-768 + X25519, code
//!   point 0xFEB4 = 65100, a draft code point, with AES-128-GCM, SHA-256 and
//!   Ed25519) so recorded conversations resist a future quantum computer as
//!   the transport does; [`Suite::Interop`] is the registered
//!   `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (1) for other MLS
//!   software.
//! - **Senders.** Every decrypted message comes with the sender's name and
//!   identity key as its credential in the group says, which mls-rs has
//!   checked against the group's signatures; names outside the name grammar
//!   are refused, never shown.
//! - Everything a peer sends is parsed by mls-rs and refused with an
//!   [`E2eError`] if malformed, forged or replayed; nothing here panics on
//!   peer input. Plaintexts are returned in buffers erased on drop.
//!
//! This first step keeps group state in memory; the delivery service on
//! the relay, stored group state and the CLI come next (issue 15).

#![forbid(unsafe_code)]

use cipherline_proto::app::{MAX_NAME, valid_name};
use cipherline_proto::crypto::sign::IdentityKey;
use mls_rs::client_builder::{BaseConfig, WithCryptoProvider, WithIdentityProvider};
use mls_rs::group::ReceivedMessage;
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
use mls_rs::{CipherSuite, Client, CryptoProvider, ExtensionList, Group, MlsMessage};
use mls_rs_crypto_awslc::AwsLcCryptoProvider;
use zeroize::Zeroizing;

/// Everything that can go wrong end to end.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    /// The identity key cannot sign in MLS (only Ed25519 can).
    #[error("end-to-end encryption needs an Ed25519 identity key (an RSA key cannot sign MLS messages)")]
    NotEd25519,
    /// The name is outside the name grammar.
    #[error("not a valid name for an end-to-end credential")]
    InvalidName,
    /// The crypto provider does not offer the suite.
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
}

/// The identity of a member as its MLS credential states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its name.
    pub name: String,
    /// Its Ed25519 identity key (32 bytes, raw).
    pub key: [u8; 32],
}

fn identity_of(signing: &SigningIdentity) -> Result<Identity> {
    let basic = signing.credential.as_basic().ok_or(E2eError::BadCredential)?;
    let name = std::str::from_utf8(basic.identifier()).map_err(|_| E2eError::BadCredential)?;
    if !valid_name(name, MAX_NAME) {
        return Err(E2eError::BadCredential);
    }
    let key: [u8; 32] = signing.signature_key.as_ref().try_into().map_err(|_| E2eError::BadCredential)?;
    Ok(Identity { name: name.to_owned(), key })
}

/// For the relay: parses an `MLSMessage` holding a KeyPackage, checks its
/// signature, suite and lifetime fields as mls-rs validates them, and that
/// its credential is a cipherline identity (a basic credential with a
/// valid name and a 32-byte Ed25519 key); returns that identity. The relay
/// compares it with the uploading session's proven name and key.
pub fn inspect_key_package(bytes: &[u8]) -> Result<Identity> {
    let message = MlsMessage::from_bytes(bytes)?;
    let validator = mls_rs::external_client::ExternalClient::builder()
        .crypto_provider(AwsLcCryptoProvider::new())
        .identity_provider(BasicIdentityProvider)
        .build();
    let package = validator.validate_key_package(message, None)?;
    if ![Suite::XWing.code(), Suite::Interop.code()].contains(&package.cipher_suite()) {
        return Err(E2eError::Suite(package.cipher_suite().raw_value()));
    }
    identity_of(package.signing_identity())
}

/// The mls-rs configuration: basic credentials, the aws-lc provider,
/// in-memory state.
type Config = WithIdentityProvider<BasicIdentityProvider, WithCryptoProvider<AwsLcCryptoProvider, BaseConfig>>;

/// One cipherline user as an MLS client.
pub struct Member {
    client: Client<Config>,
    me: Identity,
}

/// A message received in a conversation.
pub struct Received {
    /// Who sent it, as its credential in the group states.
    pub sender: Identity,
    /// What it says; erased on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl Member {
    /// An MLS client for `name` signing with `identity` (Ed25519 only).
    pub fn new(name: &str, identity: &IdentityKey, suite: Suite) -> Result<Self> {
        if !valid_name(name, MAX_NAME) {
            return Err(E2eError::InvalidName);
        }
        let secret = identity.ed25519_mls_secret().ok_or(E2eError::NotEd25519)?;
        let public: [u8; 32] = secret.get(32..).and_then(|p| p.try_into().ok()).ok_or(E2eError::NotEd25519)?;
        let crypto = AwsLcCryptoProvider::new();
        if crypto.cipher_suite_provider(suite.code()).is_none() {
            return Err(E2eError::Suite(suite.code().raw_value()));
        }
        let credential = BasicCredential::new(name.as_bytes().to_vec()).into_credential();
        let signing = SigningIdentity::new(credential, public.to_vec().into());
        let client = Client::builder()
            .crypto_provider(crypto)
            .identity_provider(BasicIdentityProvider)
            .signing_identity(signing, secret.to_vec().into(), suite.code())
            .build();
        Ok(Member { client, me: Identity { name: name.to_owned(), key: public } })
    }

    /// This member's identity.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// A fresh KeyPackage (an `MLSMessage`) others use to add this member.
    pub fn key_package(&self) -> Result<Vec<u8>> {
        let kp = self.client.generate_key_package_message(ExtensionList::default(), ExtensionList::default(), None)?;
        Ok(kp.to_bytes()?)
    }

    /// Starts a conversation with the owners of `key_packages`: a new group
    /// with them added; returns it and the Welcome (an `MLSMessage`) to
    /// deliver to them.
    pub fn start(&self, key_packages: &[Vec<u8>]) -> Result<(Conversation, Vec<u8>)> {
        let mut group = self.client.create_group(ExtensionList::default(), ExtensionList::default(), None)?;
        let mut commit = group.commit_builder();
        for kp in key_packages {
            commit = commit.add_member(MlsMessage::from_bytes(kp)?)?;
        }
        let output = commit.build()?;
        group.apply_pending_commit()?;
        let welcome = output.welcome_messages.first().ok_or(E2eError::Unexpected("no Welcome"))?.to_bytes()?;
        Ok((Conversation { group }, welcome))
    }

    /// Joins the conversation a Welcome (an `MLSMessage`) invites to.
    pub fn join(&self, welcome: &[u8]) -> Result<Conversation> {
        let (group, _) = self.client.join_group(None, &MlsMessage::from_bytes(welcome)?, None)?;
        Ok(Conversation { group })
    }
}

/// One end-to-end conversation (an MLS group) as one member holds it.
pub struct Conversation {
    group: Group<Config>,
}

impl Conversation {
    /// Encrypts `plaintext` for the other members (an `MLSMessage`).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let msg = self.group.encrypt_application_message(plaintext, Vec::new())?;
        Ok(msg.to_bytes()?)
    }

    /// Processes an `MLSMessage` from the group: an application message is
    /// returned with its sender; a commit is applied (`None`).
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<Received>> {
        let msg = MlsMessage::from_bytes(bytes)?;
        match self.group.process_incoming_message(msg)? {
            ReceivedMessage::ApplicationMessage(app) => {
                let member = self
                    .group
                    .roster()
                    .member_with_index(app.sender_index)
                    .map_err(|_| E2eError::Unexpected("a sender not in the group"))?;
                let sender = identity_of(&member.signing_identity)?;
                Ok(Some(Received { sender, plaintext: Zeroizing::new(app.data().to_vec()) }))
            }
            ReceivedMessage::Commit(_) => Ok(None),
            _ => Err(E2eError::Unexpected("not an application message or a commit")),
        }
    }

    /// Removes the member named `name`; returns the commit (an
    /// `MLSMessage`) for the others. After it, the removed member can
    /// decrypt nothing new.
    pub fn remove(&mut self, name: &str) -> Result<Vec<u8>> {
        let index = self
            .members()?
            .into_iter()
            .find(|(_, id)| id.name == name)
            .map(|(index, _)| index)
            .ok_or(E2eError::Unexpected("no such member"))?;
        let output = self.group.commit_builder().remove_member(index)?.build()?;
        self.group.apply_pending_commit()?;
        Ok(output.commit_message.to_bytes()?)
    }

    /// The members, by leaf index, as their credentials state them.
    pub fn members(&self) -> Result<Vec<(u32, Identity)>> {
        self.group.roster().members_iter().map(|m| Ok((m.index, identity_of(&m.signing_identity)?))).collect()
    }

    /// The group's current epoch.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.group.current_epoch()
    }
}
