//! Credentials: who a leaf of a group is, the rules every credential in
//! our groups follows, and the check the relay runs on uploaded key
//! packages.

use cipherline_proto::app::{MAX_NAME, fold_name, valid_name};
use mls_rs::client_builder::{BaseConfig, WithCryptoProvider, WithIdentityProvider, WithMlsRules};
use mls_rs::extension::ExtensionType;
use mls_rs::identity::basic::BasicCredential;
use mls_rs::identity::{CredentialType, SigningIdentity};
use mls_rs::time::MlsTime;
use mls_rs::{Client, CryptoProvider, ExtensionList, IdentityProvider, MlsMessage};
use mls_rs_core::identity::MemberValidationContext;
use mls_rs_crypto_awslc::AwsLcCryptoProvider;

use crate::rules::Rules;
use crate::{E2eError, Result, Suite};

/// The identity of a member as its MLS credential states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its name (as the member spelled it; compare with
    /// [`fold_name`]).
    pub name: String,
    /// Its Ed25519 identity key (32 bytes, raw).
    pub key: [u8; 32],
}

/// The identity a credential states, if it is one of ours: a basic
/// credential holding a name in the name grammar, and a 32-byte (Ed25519)
/// signature key.
pub(crate) fn identity_of(signing: &SigningIdentity) -> Result<Identity> {
    let basic = signing.credential.as_basic().ok_or(E2eError::BadCredential)?;
    let name = std::str::from_utf8(basic.identifier()).map_err(|_| E2eError::BadCredential)?;
    if !valid_name(name, MAX_NAME) {
        return Err(E2eError::BadCredential);
    }
    let key: [u8; 32] = signing.signature_key.as_ref().try_into().map_err(|_| E2eError::BadCredential)?;
    Ok(Identity { name: name.to_owned(), key })
}

/// The credential of `name` with the public half of its identity key.
pub(crate) fn signing_identity(name: &str, public: &[u8; 32]) -> SigningIdentity {
    let credential = BasicCredential::new(name.as_bytes().to_vec()).into_credential();
    SigningIdentity::new(credential, public.to_vec().into())
}

/// A credential mls-rs was asked to accept is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("not a cipherline credential")]
pub struct CredentialRefused;

impl mls_rs::error::IntoAnyError for CredentialRefused {
    fn into_dyn_error(self) -> std::result::Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(Box::new(self))
    }
}

/// The identity rules mls-rs applies to every leaf, key package and
/// commit: only our credentials (a basic credential with a name in the
/// grammar and a 32-byte Ed25519 key); a member is known by
/// its folded name (so `Bob` and `bob` cannot both be in one group); and a
/// member's successor leaf (an update, a resync) must keep both its name
/// and its key, so a key change is never silent inside a group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Names;

impl IdentityProvider for Names {
    type Error = CredentialRefused;

    fn validate_member(
        &self,
        signing_identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _context: MemberValidationContext<'_>,
    ) -> std::result::Result<(), Self::Error> {
        identity_of(signing_identity).map(|_| ()).map_err(|_| CredentialRefused)
    }

    fn validate_external_sender(
        &self,
        _signing_identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _extensions: Option<&ExtensionList>,
    ) -> std::result::Result<(), Self::Error> {
        // Nobody outside a group may propose in it (the relay in
        // particular): our groups have no external senders.
        Err(CredentialRefused)
    }

    fn identity(
        &self,
        signing_identity: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> std::result::Result<Vec<u8>, Self::Error> {
        let id = identity_of(signing_identity).map_err(|_| CredentialRefused)?;
        Ok(fold_name(&id.name).into_bytes())
    }

    fn valid_successor(
        &self,
        predecessor: &SigningIdentity,
        successor: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> std::result::Result<bool, Self::Error> {
        let before = identity_of(predecessor).map_err(|_| CredentialRefused)?;
        let after = identity_of(successor).map_err(|_| CredentialRefused)?;
        Ok(fold_name(&before.name) == fold_name(&after.name) && before.key == after.key)
    }

    fn supported_types(&self) -> Vec<CredentialType> {
        vec![BasicCredential::credential_type()]
    }
}

/// Largest key package [`inspect_key_package`] looks at: an X-Wing key
/// package is about 1.5 KiB; anything much larger is not one of ours.
pub const MAX_KEY_PACKAGE: usize = 16 * 1024;

/// What [`inspect_key_package_info`] found in a key package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageInfo {
    /// Whose it is.
    pub identity: Identity,
    /// Its ciphersuite.
    pub suite: Suite,
    /// Whether it is marked last resort (reusable; RFC 9420 extension
    /// `last_resort`, 0x000A).
    pub last_resort: bool,
}

/// For the relay: parses an `MLSMessage` holding a KeyPackage, checks its
/// signatures and that it is one of ours (a suite we support, a basic
/// credential with a valid name, an Ed25519 32-byte key, a current
/// lifetime); returns the identity it states.
pub fn inspect_key_package(bytes: &[u8]) -> Result<Identity> {
    inspect_key_package_info(bytes).map(|info| info.identity)
}

/// [`inspect_key_package`], also saying the suite and whether the package
/// is marked last resort.
pub fn inspect_key_package_info(bytes: &[u8]) -> Result<KeyPackageInfo> {
    if bytes.len() > MAX_KEY_PACKAGE {
        return Err(E2eError::Unexpected("a key package too large"));
    }
    let message = MlsMessage::from_bytes(bytes)?;
    let key_package = message.as_key_package().ok_or(E2eError::Unexpected("not a key package"))?;
    let suite =
        Suite::from_code(key_package.cipher_suite).ok_or(E2eError::Suite(key_package.cipher_suite.raw_value()))?;
    let identity = identity_of(key_package.signing_identity())?;
    let last_resort = key_package.extensions.has_extension(ExtensionType::LAST_RESORT_KEY_PACKAGE);
    // mls-rs validates a key package (both signatures, the lifetime, the
    // capabilities, the credential) when it is added to a group, and has no
    // other public entry point for it: so add it to a throwaway group of a
    // throwaway client and drop the commit. No MLS code of our own.
    let probe = probe_client(suite)?;
    let mut group = probe.create_group(ExtensionList::default(), ExtensionList::default(), None)?;
    group.commit_builder().add_member(message)?.build()?;
    Ok(KeyPackageInfo { identity, suite, last_resort })
}

type ProbeConfig =
    WithMlsRules<Rules, WithIdentityProvider<Names, WithCryptoProvider<AwsLcCryptoProvider, BaseConfig>>>;

/// An in-memory client with a fixed, public key: it only ever builds a
/// commit nobody sees.
fn probe_client(suite: Suite) -> Result<Client<ProbeConfig>> {
    let crypto = AwsLcCryptoProvider::new();
    let provider = crypto.cipher_suite_provider(suite.code()).ok_or(E2eError::Suite(suite.code().raw_value()))?;
    let (secret, public) = mls_rs::CipherSuiteProvider::signature_key_generate(&provider)
        .map_err(|_| E2eError::Suite(suite.code().raw_value()))?;
    let public: [u8; 32] = public.as_ref().try_into().map_err(|_| E2eError::NotEd25519)?;
    Ok(Client::builder()
        .crypto_provider(crypto)
        .identity_provider(Names)
        .mls_rules(Rules)
        .extension_type(crate::rules::PUBLIC_GROUP)
        .signing_identity(signing_identity("probe", &public), secret, suite.code())
        .build())
}
