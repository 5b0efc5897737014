//! End-to-end message signatures (PROTOCOL.md §13.7): a sender signs each
//! chat message, and each file it sends, with its identity key, so a
//! recipient can tell whether the relay altered or forged it.

use crate::Error;
use crate::app::{Delivery, FileSigned, MAX_FILE_NAME, SendSignature, Target};
use crate::codec::Writer;
use crate::crypto::sign::{IdentityKey, IdentityPublicKey, SignatureAlgorithm};

/// Context string that starts every signed message input.
pub const MESSAGE_CONTEXT: &[u8] = b"cipherline1 message\0";

/// The exact bytes a sender signs:
/// `"cipherline1 message" 0x00 || vec8 sender || uint8 target kind ||
/// vec8 target || uint64 client_id || uint64 sent_at_ms || uint32 len || text`.
pub fn signing_input(sender: &str, to: &Target, client_id: u64, sent_at_ms: u64, text: &str) -> Result<Vec<u8>, Error> {
    let mut w = Writer::new();
    w.bytes(MESSAGE_CONTEXT);
    w.vec8(sender.as_bytes(), crate::app::MAX_NAME)?;
    let (kind, target) = match to {
        Target::Room(r) => (0u8, r),
        Target::User(u) => (1u8, u),
    };
    w.u8(kind);
    w.vec8(target.as_bytes(), crate::app::MAX_NAME)?;
    w.bytes(&client_id.to_be_bytes());
    w.bytes(&sent_at_ms.to_be_bytes());
    let len = u32::try_from(text.len()).map_err(|_| Error::ApiMisuse("text too long"))?;
    w.bytes(&len.to_be_bytes());
    w.bytes(text.as_bytes());
    Ok(w.into_vec())
}

/// Signs a message about to be sent as `sender`.
pub fn sign(
    key: &IdentityKey,
    sender: &str,
    to: &Target,
    client_id: u64,
    sent_at_ms: u64,
    text: &str,
) -> Result<SendSignature, Error> {
    let input = signing_input(sender, to, client_id, sent_at_ms, text)?;
    Ok(SendSignature { sent_at_ms, signature: key.sign(&input)? })
}

/// Context string that starts every signed file input.
pub const FILE_CONTEXT: &[u8] = b"cipherline1 file\0";

/// What a file's signature covers: the offer (who sent it, to whom, the
/// transfer id, the file name and size) and the SHA-256 sent at the end.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts<'a> {
    /// The sender's name (as the server accepted it).
    pub sender: &'a str,
    /// The user or room the file was offered to.
    pub to: &'a Target,
    /// The sender's transfer id.
    pub transfer: u64,
    /// The file name as offered (before any sanitising by the receiver).
    pub name: &'a str,
    /// The announced size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: &'a [u8; 32],
}

/// The exact bytes a file's sender signs:
/// `"cipherline1 file" 0x00 || vec8 sender || uint8 target kind || vec8 target
/// || uint64 transfer || vec8 file name || uint64 size || sha256 (32 bytes)`.
pub fn file_signing_input(f: &FileFacts<'_>) -> Result<Vec<u8>, Error> {
    let mut w = Writer::new();
    w.bytes(FILE_CONTEXT);
    w.vec8(f.sender.as_bytes(), crate::app::MAX_NAME)?;
    let (kind, target) = match f.to {
        Target::Room(r) => (0u8, r),
        Target::User(u) => (1u8, u),
    };
    w.u8(kind);
    w.vec8(target.as_bytes(), crate::app::MAX_NAME)?;
    w.bytes(&f.transfer.to_be_bytes());
    w.vec8(f.name.as_bytes(), MAX_FILE_NAME)?;
    w.bytes(&f.size.to_be_bytes());
    w.bytes(f.sha256);
    Ok(w.into_vec())
}

/// Signs a file about to be ended (the signature goes in FileEnd).
pub fn sign_file(key: &IdentityKey, facts: &FileFacts<'_>) -> Result<Vec<u8>, Error> {
    key.sign(&file_signing_input(facts)?)
}

/// Checks a relayed file's signature (from FileDone) against the key it
/// carries and what the receiver saw in the offer and at the end.
#[must_use]
pub fn verify_file(facts: &FileFacts<'_>, signed: Option<&FileSigned>) -> Verification {
    let Some(s) = signed else { return Verification::Unsigned };
    let Some(algorithm) = SignatureAlgorithm::from_u16(s.algorithm) else { return Verification::Invalid };
    let Ok(key) = IdentityPublicKey::from_spki(algorithm, &s.sender_key) else { return Verification::Invalid };
    let Ok(input) = file_signing_input(facts) else { return Verification::Invalid };
    if key.verify(&input, &s.signature) { Verification::Valid(key) } else { Verification::Invalid }
}

/// What a recipient can say about a relayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The sender did not sign (it has no identity key).
    Unsigned,
    /// The signature is valid under this key (compare it with the key
    /// remembered for the sender).
    Valid(IdentityPublicKey),
    /// The signature does not verify: the message was altered or forged.
    Invalid,
}

/// Checks a relayed message's signature against the key it carries.
#[must_use]
pub fn verify(d: &Delivery) -> Verification {
    let Some(s) = &d.signed else { return Verification::Unsigned };
    let Some(algorithm) = SignatureAlgorithm::from_u16(s.algorithm) else { return Verification::Invalid };
    let Ok(key) = IdentityPublicKey::from_spki(algorithm, &s.sender_key) else { return Verification::Invalid };
    let Ok(input) = signing_input(&d.from, &d.to, s.client_id, s.sent_at_ms, &d.text) else {
        return Verification::Invalid;
    };
    if key.verify(&input, &s.signature) { Verification::Valid(key) } else { Verification::Invalid }
}

/// A short code two people can compare out of band to check they see each
/// other's identity keys (like Signal's safety numbers): 12 groups of 5
/// digits from SHA-256 over both fingerprints in sorted order.
#[must_use]
pub fn safety_code(a: &[u8; 32], b: &[u8; 32]) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let digest = crate::crypto::sha256(&[b"cipherline1 safety code".as_slice(), lo, hi].concat());
    digest
        .chunks(2)
        .take(12)
        .map(|c| {
            let v = u32::from(c.first().copied().unwrap_or(0)) << 8 | u32::from(c.get(1).copied().unwrap_or(0));
            format!("{:05}", v % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Signed;

    fn delivery(key: &IdentityKey, text: &str) -> Delivery {
        let to = Target::Room("lobby".into());
        let sig = sign(key, "alice", &to, 7, 1000, text).unwrap();
        let public = key.public_key();
        Delivery {
            id: 1,
            timestamp_ms: 2,
            from: "alice".into(),
            to,
            text: text.into(),
            signed: Some(Signed {
                client_id: 7,
                sent_at_ms: sig.sent_at_ms,
                algorithm: public.algorithm().to_u16(),
                sender_key: public.spki().to_vec(),
                signature: sig.signature,
            }),
            seq: 0,
        }
    }

    #[test]
    fn signed_messages_verify_and_any_change_is_caught() {
        let key = IdentityKey::ed25519_from_seed(&[1; 32]).unwrap();
        let d = delivery(&key, "pay bob 10");
        assert_eq!(verify(&d), Verification::Valid(key.public_key().clone()));
        let mut altered = d.clone();
        altered.text = "pay bob 1000".into();
        assert_eq!(verify(&altered), Verification::Invalid);
        let mut renamed = d.clone();
        renamed.from = "mallory".into();
        assert_eq!(verify(&renamed), Verification::Invalid);
        let mut redirected = d.clone();
        redirected.to = Target::User("bob".into());
        assert_eq!(verify(&redirected), Verification::Invalid);
        let mut unsigned = d;
        unsigned.signed = None;
        assert_eq!(verify(&unsigned), Verification::Unsigned);
    }

    #[test]
    fn signed_files_verify_and_any_change_is_caught() {
        let key = IdentityKey::ed25519_from_seed(&[1; 32]).unwrap();
        let to = Target::User("bob".into());
        let sha = [7u8; 32];
        let facts = FileFacts { sender: "alice", to: &to, transfer: 3, name: "a.txt", size: 10, sha256: &sha };
        let public = key.public_key();
        let signed = FileSigned {
            algorithm: public.algorithm().to_u16(),
            sender_key: public.spki().to_vec(),
            signature: sign_file(&key, &facts).unwrap(),
        };
        assert_eq!(verify_file(&facts, Some(&signed)), Verification::Valid(public.clone()));
        assert_eq!(verify_file(&facts, None), Verification::Unsigned);
        let other_sha = [8u8; 32];
        let room = Target::Room("bob".into());
        for changed in [
            FileFacts { sender: "mallory", ..facts },
            FileFacts { to: &room, ..facts },
            FileFacts { transfer: 4, ..facts },
            FileFacts { name: "a.exe", ..facts },
            FileFacts { size: 11, ..facts },
            FileFacts { sha256: &other_sha, ..facts },
        ] {
            assert_eq!(verify_file(&changed, Some(&signed)), Verification::Invalid);
        }
        // A message signature never passes for a file (distinct contexts).
        let msg = sign(&key, "alice", &to, 3, 10, "a.txt").unwrap();
        let swapped = FileSigned { signature: msg.signature, ..signed };
        assert_eq!(verify_file(&facts, Some(&swapped)), Verification::Invalid);
    }

    #[test]
    fn safety_code_is_symmetric() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(safety_code(&a, &b), safety_code(&b, &a));
        assert_ne!(safety_code(&a, &b), safety_code(&a, &a));
        assert_eq!(safety_code(&a, &b).len(), 12 * 5 + 11);
    }
}
