//! A cipherline user as an MLS client: its key packages, and the groups
//! it creates, joins, keeps and forgets.

use std::path::Path;

use cipherline_proto::app::{MAX_NAME, valid_name};
use cipherline_proto::crypto::sign::IdentityKey;
use mls_rs::client_builder::{BaseSqlConfig, ClientBuilder, WithCryptoProvider, WithIdentityProvider, WithMlsRules};
use mls_rs::error::MlsError;
use mls_rs::extension::ExtensionType;
use mls_rs::extension::recommended::LastResortKeyPackageExt;
use mls_rs::storage_provider::sqlite::SqLiteDataStorageEngine;
use mls_rs::{CipherSuiteProvider, Client, CryptoProvider, Extension, ExtensionList, MlsMessage};
use mls_rs_crypto_awslc::AwsLcCryptoProvider;

use crate::conversation::{Conversation, Pending};
use crate::identity::{Identity, Names, signing_identity};
use crate::rules::{CONVERSATION, Label, PUBLIC_GROUP, Rules};
use crate::store::{Location, Store};
use crate::{E2eError, Result, Suite};

/// The mls-rs configuration: our identity rules and group rules, the
/// aws-lc provider, SQLite state.
pub(crate) type Config =
    WithMlsRules<Rules, WithIdentityProvider<Names, WithCryptoProvider<AwsLcCryptoProvider, BaseSqlConfig>>>;

/// Most key packages one call of [`Member::key_packages`] makes.
pub const MAX_KEY_PACKAGES_AT_ONCE: usize = 1000;

/// Length of the random group ids [`Member::create`] picks.
pub const GROUP_ID_LEN: usize = 16;

/// One cipherline user as an MLS client.
pub struct Member {
    client: Client<Config>,
    me: Identity,
    suite: Suite,
    store: Store,
}

impl Member {
    /// An MLS client for `name` signing with `identity` (Ed25519 only),
    /// its state in the SQLite file at `path` (created with mode 0600 if
    /// missing). Groups and unused key packages stored there by an earlier
    /// run are there again.
    pub fn open(path: &Path, name: &str, identity: &IdentityKey, suite: Suite) -> Result<Member> {
        let (engine, store) = Store::open(path)?;
        Self::build(engine, store, name, identity, suite)
    }

    /// [`Member::open`] with the state in memory, gone on drop (tests).
    pub fn new(name: &str, identity: &IdentityKey, suite: Suite) -> Result<Self> {
        let (engine, store) = Store::memory()?;
        Self::build(engine, store, name, identity, suite)
    }

    fn build(
        engine: SqLiteDataStorageEngine<Location>,
        store: Store,
        name: &str,
        identity: &IdentityKey,
        suite: Suite,
    ) -> Result<Self> {
        if !valid_name(name, MAX_NAME) {
            return Err(E2eError::InvalidName);
        }
        let secret = identity.ed25519_mls_secret().ok_or(E2eError::NotEd25519)?;
        let public: [u8; 32] = secret.get(32..).and_then(|p| p.try_into().ok()).ok_or(E2eError::NotEd25519)?;
        let crypto = AwsLcCryptoProvider::new();
        if crypto.cipher_suite_provider(suite.code()).is_none() {
            return Err(E2eError::Suite(suite.code().raw_value()));
        }
        let client = ClientBuilder::new_sqlite(engine)
            .map_err(|e| E2eError::Store(e.to_string()))?
            .crypto_provider(crypto)
            .identity_provider(Names)
            .mls_rules(Rules)
            .extension_types([PUBLIC_GROUP, CONVERSATION, ExtensionType::LAST_RESORT_KEY_PACKAGE])
            .signing_identity(signing_identity(name, &public), secret.to_vec().into(), suite.code())
            .build();
        // Key packages nobody used before their lifetime ended: their
        // private keys serve no one any more.
        client.key_package_store().delete_expired().map_err(|e| E2eError::Store(e.to_string()))?;
        Ok(Member { client, me: Identity { name: name.to_owned(), key: public }, suite, store })
    }

    /// This member's identity.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// This member's ciphersuite.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// `n` fresh one-time KeyPackages (`MLSMessage`s) others use to add
    /// this member; their secrets are stored until used or expired.
    pub fn key_packages(&self, n: usize) -> Result<Vec<Vec<u8>>> {
        if n > MAX_KEY_PACKAGES_AT_ONCE {
            return Err(E2eError::Unexpected("too many key packages at once"));
        }
        (0..n).map(|_| self.key_package()).collect()
    }

    /// One fresh one-time KeyPackage (an `MLSMessage`).
    pub fn key_package(&self) -> Result<Vec<u8>> {
        let kp = self.client.generate_key_package_message(ExtensionList::default(), ExtensionList::default(), None)?;
        Ok(kp.to_bytes()?)
    }

    /// A KeyPackage marked last resort (RFC 9420's `last_resort`
    /// extension): joining through it does not use it up, so the relay may
    /// hand it out when the one-time packages run out. Each call makes a
    /// new one; earlier ones stay usable until their lifetime ends.
    pub fn last_resort_key_package(&self) -> Result<Vec<u8>> {
        let mut extensions = ExtensionList::default();
        extensions.set_from(LastResortKeyPackageExt).map_err(|_| E2eError::Unexpected("last resort extension"))?;
        let kp = self.client.generate_key_package_message(extensions, ExtensionList::default(), None)?;
        Ok(kp.to_bytes()?)
    }

    /// A new group with only this member, epoch 0, a random 16-byte id;
    /// invite-only (others join by Welcome).
    pub fn create(&self) -> Result<Conversation> {
        self.create_with(ExtensionList::default())
    }

    /// A new public group: as [`Member::create`], and anyone holding its
    /// GroupInfo ([`Conversation::group_info`]) may also join by external
    /// commit ([`Member::join_external`]).
    pub fn create_public(&self) -> Result<Conversation> {
        let mut extensions = ExtensionList::default();
        extensions.set(Extension::new(PUBLIC_GROUP, Vec::new()));
        self.create_with(extensions)
    }

    /// A new group labelled as what it is ([`Label`], in its group
    /// context: every member agrees on it and the relay cannot change it),
    /// public or not.
    pub fn create_labelled(&self, label: &Label, public: bool) -> Result<Conversation> {
        let mut extensions = ExtensionList::default();
        extensions.set(Extension::new(CONVERSATION, label.encode()));
        if public {
            extensions.set(Extension::new(PUBLIC_GROUP, Vec::new()));
        }
        self.create_with(extensions)
    }

    fn create_with(&self, extensions: ExtensionList) -> Result<Conversation> {
        let crypto = AwsLcCryptoProvider::new();
        let provider =
            crypto.cipher_suite_provider(self.suite.code()).ok_or(E2eError::Suite(self.suite.code().raw_value()))?;
        let id = provider.random_bytes_vec(GROUP_ID_LEN).map_err(|_| E2eError::Unexpected("no randomness"))?;
        let group = self.client.group_builder()?.with_group_id(id).with_group_context_extensions(extensions).build()?;
        Conversation::started(group, self.store.clone())
    }

    /// Starts an invite-only group with the owners of `key_packages`: a
    /// new group, a commit adding them, applied at once (a brand-new group
    /// has no other member whose commit could win its first epoch); returns
    /// the group (at epoch 1) and the Welcome for them. The commit itself
    /// concerns no one else: its only member has applied it. Prefer
    /// [`Member::create`], [`Conversation::add`] and the relay's answer when
    /// the relay sequences the group from epoch 0.
    pub fn start(&self, key_packages: &[Vec<u8>]) -> Result<(Conversation, Vec<u8>)> {
        let mut conversation = self.create()?;
        let pending = conversation.add(key_packages)?;
        conversation.confirm()?;
        let welcome = pending.welcome.ok_or(E2eError::Unexpected("no Welcome"))?;
        Ok((conversation, welcome))
    }

    /// Joins the group a Welcome (an `MLSMessage`) invites to; the Welcome
    /// carries the ratchet tree. A one-time key package it used is deleted.
    pub fn join(&self, welcome: &[u8]) -> Result<Conversation> {
        let (group, _) = self.client.join_group(None, &MlsMessage::from_bytes(welcome)?, None)?;
        // A Welcome to a group held already is a replay (a member removed
        // forgets the group first): storing it would roll the group back.
        if self.load(group.group_id())?.is_some() {
            return Err(E2eError::AlreadyJoined);
        }
        Conversation::started(group, self.store.clone())
    }

    /// Joins a public group by external commit from its GroupInfo (with
    /// the ratchet tree). The commit is already applied here; send
    /// [`Pending::commit`] to the relay. If the relay refuses it (another
    /// commit won the epoch), [`Member::forget`] the group and retry with a
    /// newer GroupInfo.
    pub fn join_external(&self, group_info: &[u8]) -> Result<(Conversation, Pending)> {
        let info = MlsMessage::from_bytes(group_info)?;
        let (group, commit) = self.client.external_commit_builder()?.build(info)?;
        let commit = commit.to_bytes()?;
        let conversation = Conversation::started(group, self.store.clone())?;
        // The commit was built in the GroupInfo's epoch, the one before.
        let epoch = conversation.epoch().saturating_sub(1);
        let group_info = Some(conversation.group_info()?);
        Ok((conversation, Pending { epoch, commit, welcome: None, group_info }))
    }

    /// The stored group `group_id`, if there is one.
    pub fn load(&self, group_id: &[u8]) -> Result<Option<Conversation>> {
        match self.client.load_group(group_id) {
            Ok(group) => Ok(Some(Conversation::loaded(group, self.store.clone()))),
            Err(MlsError::GroupNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes everything stored about group `group_id` (after leaving or
    /// being removed, or when an external join was refused).
    pub fn forget(&self, group_id: &[u8]) -> Result<()> {
        self.store.forget(group_id)
    }

    /// The ids of the stored groups.
    pub fn groups(&self) -> Result<Vec<Vec<u8>>> {
        self.client.group_state_storage().group_ids().map_err(|e| E2eError::Store(e.to_string()))
    }
}
