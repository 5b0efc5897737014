//! What a member's MLS application message carries (PROTOCOL.md §13.11,
//! §13.12): `uint8 kind`, `uint64 counter` (the sender's count of its
//! messages in this group, from 1, so a receiver notices one missing or
//! out of order), `uint64 sent_at_ms` (the sender's clock), then the body
//! of the kind: for a text (1) the UTF-8 text filling the rest; for a file
//! (2) the announcement of an end-to-end file: its blob, its file key, its
//! size, its SHA-256 and its name. MLS encrypts and authenticates all of it.

use zeroize::Zeroizing;

use super::blob::BlobId;
use super::{MAX_FILE_NAME, get_u64};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Error};
use crate::filestream::FILE_KEY_LEN;

/// Kind byte of a text message.
const CONTENT_TEXT: u8 = 1;
/// Kind byte of a file announcement.
const CONTENT_FILE: u8 = 2;

/// One decrypted application message of an end-to-end conversation.
#[derive(Clone, PartialEq, Eq)]
pub struct E2eContent {
    /// The sender's count of its messages in this group (1 for the first).
    pub counter: u64,
    /// The sender's clock when it wrote the message, Unix milliseconds.
    pub sent_at_ms: u64,
    /// What it says.
    pub body: E2eBody,
}

/// The body of an [`E2eContent`].
#[derive(Clone, PartialEq, Eq)]
pub enum E2eBody {
    /// A text (escape it before showing it).
    Text(String),
    /// A file offered to the conversation.
    File(FileAnnouncement),
}

/// A file sent end to end: where its sealed chunks are at the relay and
/// what opens and checks them (PROTOCOL.md §13.12).
#[derive(Clone, PartialEq, Eq)]
pub struct FileAnnouncement {
    /// The relay's blob holding the sealed chunks.
    pub blob: BlobId,
    /// The file key (the chunks' payload key is derived from it).
    pub key: Zeroizing<[u8; FILE_KEY_LEN]>,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    /// The sender's name for the file (1 to 255 bytes of UTF-8; sanitise
    /// it before using it as a path or showing it).
    pub name: String,
}

impl std::fmt::Debug for E2eContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Plaintext, file names and file keys never reach a log through Debug.
        let kind = match self.body {
            E2eBody::Text(_) => "text",
            E2eBody::File(_) => "file",
        };
        f.debug_struct("E2eContent")
            .field("counter", &self.counter)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl E2eContent {
    /// A text message.
    #[must_use]
    pub fn text(counter: u64, sent_at_ms: u64, text: impl Into<String>) -> Self {
        E2eContent { counter, sent_at_ms, body: E2eBody::Text(text.into()) }
    }

    /// The text, if this is a text message.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match &self.body {
            E2eBody::Text(text) => Some(text),
            E2eBody::File(_) => None,
        }
    }

    /// The bytes to encrypt (zeroized on drop: a file announcement holds
    /// its key).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut w = Writer::new();
        match &self.body {
            E2eBody::Text(text) => {
                w.u8(CONTENT_TEXT);
                w.bytes(&self.counter.to_be_bytes());
                w.bytes(&self.sent_at_ms.to_be_bytes());
                w.bytes(text.as_bytes());
            }
            E2eBody::File(file) => {
                if file.name.is_empty() {
                    return Err(Error::ApiMisuse("a file name must not be empty"));
                }
                w.u8(CONTENT_FILE);
                w.bytes(&self.counter.to_be_bytes());
                w.bytes(&self.sent_at_ms.to_be_bytes());
                w.bytes(&file.blob);
                w.bytes(file.key.as_slice());
                w.bytes(&file.size.to_be_bytes());
                w.bytes(&file.sha256);
                w.vec8(file.name.as_bytes(), MAX_FILE_NAME)?;
            }
        }
        Ok(Zeroizing::new(w.into_vec()))
    }

    /// Parses decrypted bytes; an unknown kind, a text or name that is not
    /// UTF-8, an empty name or trailing bytes after a file are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = r.u8()?;
        if kind != CONTENT_TEXT && kind != CONTENT_FILE {
            return Err(DecodeError::UnknownMessageType);
        }
        let counter = get_u64(&mut r)?;
        let sent_at_ms = get_u64(&mut r)?;
        let body = if kind == CONTENT_TEXT {
            let text = std::str::from_utf8(r.take(r.remaining())?).map_err(|_| DecodeError::IllegalValue)?;
            E2eBody::Text(text.to_owned())
        } else {
            let blob = r.array()?;
            let key = Zeroizing::new(r.array()?);
            let size = get_u64(&mut r)?;
            let sha256 = r.array()?;
            let name = r.vec8(MAX_FILE_NAME)?;
            if name.is_empty() {
                return Err(DecodeError::IllegalValue);
            }
            let name = std::str::from_utf8(name).map_err(|_| DecodeError::IllegalValue)?.to_owned();
            r.finish()?;
            E2eBody::File(FileAnnouncement { blob, key, size, sha256, name })
        };
        Ok(E2eContent { counter, sent_at_ms, body })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn file() -> E2eContent {
        E2eContent {
            counter: 7,
            sent_at_ms: 1_700_000_000_000,
            body: E2eBody::File(FileAnnouncement {
                blob: [0xb1; 16],
                key: Zeroizing::new([0x4b; 32]),
                size: 70_000,
                sha256: [0x5a; 32],
                name: "report.pdf".into(),
            }),
        }
    }

    #[test]
    fn a_file_announcement_has_the_specified_bytes() {
        let bytes = file().encode().unwrap();
        let mut want = vec![2];
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        want.extend_from_slice(&[0xb1; 16]);
        want.extend_from_slice(&[0x4b; 32]);
        want.extend_from_slice(&70_000u64.to_be_bytes());
        want.extend_from_slice(&[0x5a; 32]);
        want.push(10);
        want.extend_from_slice(b"report.pdf");
        assert_eq!(bytes.as_slice(), want.as_slice());
        assert_eq!(E2eContent::decode(&bytes).unwrap(), file());
    }

    #[test]
    fn a_text_keeps_its_layout() {
        let bytes = E2eContent::text(1, 2, "hi").encode().unwrap();
        assert_eq!(bytes.as_slice(), [&[1u8][..], &1u64.to_be_bytes(), &2u64.to_be_bytes(), b"hi"].concat());
        assert_eq!(E2eContent::decode(&bytes).unwrap().as_text(), Some("hi"));
    }

    #[test]
    fn bad_file_announcements_are_refused() {
        let good = file().encode().unwrap();
        // Trailing byte, truncation, empty name, unknown kind, bad UTF-8.
        let mut long = good.to_vec();
        long.push(0);
        assert!(E2eContent::decode(&long).is_err());
        assert!(E2eContent::decode(&good[..good.len() - 1]).is_err());
        let mut empty = good[..good.len() - 11].to_vec();
        empty.push(0);
        assert!(E2eContent::decode(&empty).is_err());
        let mut kind = good.to_vec();
        kind[0] = 3;
        assert!(E2eContent::decode(&kind).is_err());
        let mut utf = good.to_vec();
        let last = utf.len() - 1;
        utf[last] = 0xff;
        assert!(E2eContent::decode(&utf).is_err());
    }

    #[test]
    fn debug_shows_neither_text_nor_key_nor_name() {
        let shown = format!("{:?}{:?}", file(), E2eContent::text(1, 2, "secret words"));
        assert!(!shown.contains("report"));
        assert!(!shown.contains("secret"));
        assert!(!shown.contains("75, 75"));
    }
}
