//! What a front-end that words files its own way (`listen`) asks the
//! engine about them: an end-to-end announcement's record (its transfer
//! id, SHA-256, whether it is still to be fetched), a version-1 file just
//! received (its SHA-256 and the verdict on its signature), and declining
//! a version-1 offer with a reason its sender is told.
//!
//! Contract:
//! - [`Command::Download`] reads the local store only (this user's
//!   records: a data directory may hold several names and servers).
//! - The last [`MAX_RECEIVED`] version-1 files received are kept for
//!   [`Command::Received`] (a peer sending thousands cannot grow memory);
//!   the facts are noted before the file's [`Event::Transfer`] end is
//!   handed over, so a front-end asking on that event finds them.

use std::collections::VecDeque;
use std::path::PathBuf;

use super::*;
use crate::files::{DownloadRecord, DownloadState, TransferId};

/// Version-1 files received kept for [`Command::Received`] at most.
pub const MAX_RECEIVED: usize = 64;

/// An end-to-end file, by its offer's id ([`Event::FileOffered`]'s) or
/// its download's transfer id (`d7`, as [`Command::Files`] lists it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRef {
    /// The offer's id.
    Offer(u64),
    /// The download's transfer id.
    Transfer(String),
}

/// An end-to-end file announced to this user, as [`Command::Download`]
/// answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadInfo {
    /// The offer's id (what [`Command::GetFile`] takes).
    pub offer: u64,
    /// Its download's transfer id (`d` and the local id).
    pub transfer: String,
    /// The sender (raw).
    pub from: String,
    /// The room, or this user for a direct conversation.
    pub to: Target,
    /// The sender's name for the file (raw).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 the announcement names (what the download checks).
    pub sha256: [u8; 32],
    /// Still to be fetched: offered, or begun and interrupted (asking for
    /// it again continues it); false once saved, failed or cancelled.
    pub pending: bool,
}

/// A version-1 file received whole and checked, as [`Command::Received`]
/// answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    /// Its transfer id (`o` and a number).
    pub transfer: String,
    /// The sender (raw).
    pub from: String,
    /// Where it was saved.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 (checked).
    pub sha256: [u8; 32],
    /// The verdict on the sender's signature over offer and hash
    /// (`Unsigned`: only the hash is known to match what was sent).
    pub verified: Verified,
    /// The signing key's fingerprint, when it was seen for the first
    /// time (`verified` is `New`).
    pub new_key: Option<String>,
}

/// The version-1 files received lately.
#[derive(Default)]
pub(super) struct Received {
    files: VecDeque<ReceivedFile>,
}

impl Received {
    /// Notes a file received and checked (the oldest noted goes).
    pub(super) fn note(
        &mut self,
        transfer: &str,
        from: &str,
        path: &std::path::Path,
        size: u64,
        sha256: &[u8; 32],
        status: &MessageStatus,
    ) {
        if self.files.len() >= MAX_RECEIVED {
            self.files.pop_front();
        }
        let new_key = match status {
            MessageStatus::New(fp) => Some(fp.to_string()),
            _ => None,
        };
        self.files.push_back(ReceivedFile {
            transfer: transfer.to_owned(),
            from: from.to_owned(),
            path: path.to_owned(),
            size,
            sha256: *sha256,
            verified: Verified::of(status),
            new_key,
        });
    }

    fn find(&self, transfer: &str) -> Option<&ReceivedFile> {
        self.files.iter().rev().find(|f| f.transfer == transfer)
    }
}

fn info(record: DownloadRecord) -> DownloadInfo {
    DownloadInfo {
        offer: record.message,
        transfer: TransferId::Down(record.id).to_string(),
        from: record.from,
        to: record.target,
        name: record.name,
        size: record.size,
        sha256: record.sha256,
        pending: matches!(record.state, DownloadState::Offered | DownloadState::Active),
    }
}

impl<C: Connector> Engine<C> {
    /// [`Command::Download`]: the record of an end-to-end file.
    pub(super) fn download_info(&self, live: &Live, which: &FileRef) -> Result<Reply, ClientError> {
        let unknown = || ClientError::NoTransfer(format!("{which:?}"));
        let Some(e2e) = &live.e2e else { return Err(unknown()) };
        let record = match which {
            FileRef::Offer(id) => e2e.store().download_of(e2e.scope(), *id)?,
            FileRef::Transfer(t) => match TransferId::parse(t) {
                Some(TransferId::Down(n)) => e2e.store().download(n)?.filter(|d| d.scope == e2e.scope()),
                _ => None,
            },
        };
        record.map(|r| Reply::Download(info(r))).ok_or_else(unknown)
    }

    /// [`Command::Received`]: a version-1 file received lately.
    pub(super) fn received_file(&self, transfer: &str) -> Result<Reply, ClientError> {
        self.received
            .find(transfer)
            .map(|f| Reply::Received(f.clone()))
            .ok_or_else(|| ClientError::NoTransfer(transfer.to_owned()))
    }

    /// [`Command::RefuseFile`]: a version-1 offer declined with `reason`
    /// (its sender is told); an end-to-end one declined as
    /// [`Command::DeclineFile`] does (the relay takes no reason).
    pub(super) async fn refuse_file(&mut self, live: &mut Live, id: u64, reason: String) -> Result<Reply, ClientError> {
        if is_offer_id(id) { self.refuse_offer(live, id, reason).await } else { self.decline_file(live, id).await }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_received_are_kept_bounded_and_found_by_transfer() {
        let mut received = Received::default();
        let path = std::path::Path::new("/tmp/f");
        for n in 0..(MAX_RECEIVED as u64 + 10) {
            received.note(&format!("o{n}"), "alice", path, n, &[7; 32], &MessageStatus::Unsigned);
        }
        assert_eq!(received.files.len(), MAX_RECEIVED);
        assert!(received.find("o0").is_none(), "the oldest went");
        let last = format!("o{}", MAX_RECEIVED + 9);
        let f = received.find(&last).unwrap();
        assert_eq!(
            (f.size, f.sha256, f.verified, f.new_key.as_deref()),
            (MAX_RECEIVED as u64 + 9, [7; 32], Verified::Unsigned, None)
        );
    }
}
