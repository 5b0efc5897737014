//! The trust check before an end-to-end conversation starts: a key from a
//! KeyPackage is compared with the one remembered for the name. Every peer
//! string in its refusal is escaped.

use cipherline_client::ClientError;
use cipherline_client::display::escape;
use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_keys::Fingerprint;
use cipherline_proto::crypto::sign::IdentityPublicKey;

/// The trust check before starting a conversation with (or inviting)
/// someone from their KeyPackage: a key different from the one remembered
/// for the name is refused (as a key-change warning would say); a first
/// key is remembered.
pub fn key_check(peers: &mut Peers) -> impl FnMut(&str, &[u8; 32]) -> Result<(), ClientError> + '_ {
    move |name, key| match peers.check_key(name, &IdentityPublicKey::ed25519_from_raw(key)) {
        MessageStatus::KeyChanged { remembered, presented } => Err(ClientError::EndToEnd(format!(
            "the identity key of {} has changed (remembered {remembered}, now {}): not sent. Compare safety codes \
             with them (chat: /verify {0}); if the new key is theirs, /trust {0} in chat forgets the old one",
            escape(name),
            presented.map_or_else(|| "none".to_owned(), |p: Fingerprint| p.to_string())
        ))),
        _ => Ok(()),
    }
}
