//! Why a transfer failed, as data: [`FailReason`], carried by
//! [`TransferState::Failed`] beside the text for people.
//!
//! Front-ends decide what to say (and whether to say it at all) from the
//! kind, never from the engine's wording: chat folds the version-1
//! transfers a lost connection ended into one line, and words a decline
//! as "bob declined f"; the daemon hands the kind to bots as `failure`.

use super::{ConnectFailure, TransferState};
use crate::ClientError;

/// What stopped a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// Every receiver declined the file offered (raw names; a version-1
    /// file sent).
    Declined {
        /// Who declined it, in the order they answered.
        by: Vec<String>,
    },
    /// The connection the transfer ran on was lost or could not be made;
    /// an end-to-end download keeps what it has and resumes when asked.
    ConnectionLost,
    /// The other side stopped it: the sender withdrew the offer, a
    /// receiver stopped receiving, the relay ended it, or the file is no
    /// longer on the relay.
    Cancelled,
    /// The relay refused it (not allowed, or the server said no).
    Refused,
    /// The relay has no room for a file this size.
    TooLarge,
    /// What arrived does not check out (size, SHA-256 or signature): it
    /// was deleted.
    Corrupt,
    /// Nobody answered, or the other side stopped sending, in time.
    TimedOut,
    /// Anything else (a local file error, an unexpected answer).
    Other,
}

impl FailReason {
    /// Its lowercase name as the daemon reports it (`declined`,
    /// `connection_lost`, `cancelled`, `refused`, `too_large`, `corrupt`,
    /// `timed_out`, `other`).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            FailReason::Declined { .. } => "declined",
            FailReason::ConnectionLost => "connection_lost",
            FailReason::Cancelled => "cancelled",
            FailReason::Refused => "refused",
            FailReason::TooLarge => "too_large",
            FailReason::Corrupt => "corrupt",
            FailReason::TimedOut => "timed_out",
            FailReason::Other => "other",
        }
    }

    /// The kind of a library error that ended an end-to-end transfer.
    #[must_use]
    pub fn of(e: &ClientError) -> FailReason {
        match e {
            ClientError::Connect { .. } | ClientError::Net(_) => FailReason::ConnectionLost,
            ClientError::Refused { .. } | ClientError::BlobNotAllowed(_) => FailReason::Refused,
            ClientError::BlobQuota(_) | ClientError::TooLong { .. } => FailReason::TooLarge,
            ClientError::BlobGone => FailReason::Cancelled,
            ClientError::FileCorrupt(_) => FailReason::Corrupt,
            ClientError::Stalled(_) | ClientError::Timeout(_) => FailReason::TimedOut,
            _ => FailReason::Other,
        }
    }
}

impl TransferState {
    /// Failed for `reason`, said as `why` (never a secret).
    #[must_use]
    pub fn failed(reason: FailReason, why: impl Into<String>) -> TransferState {
        TransferState::Failed { reason, why: why.into() }
    }

    /// Failed with a library error: its kind and its words.
    #[must_use]
    pub fn failed_with(e: &ClientError) -> TransferState {
        TransferState::failed(FailReason::of(e), e.to_string())
    }

    /// Failed because the transfer's own connection could not be made.
    pub(super) fn unconnected(f: ConnectFailure) -> TransferState {
        TransferState::failed(FailReason::ConnectionLost, f.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_the_kinds_front_ends_act_on() {
        assert_eq!(FailReason::of(&ClientError::FileCorrupt("sha-256")), FailReason::Corrupt);
        assert_eq!(FailReason::of(&ClientError::BlobQuota("full".into())), FailReason::TooLarge);
        assert_eq!(FailReason::of(&ClientError::BlobGone), FailReason::Cancelled);
        assert_eq!(FailReason::of(&ClientError::Stalled(60)), FailReason::TimedOut);
        assert_eq!(FailReason::of(&ClientError::Unexpected), FailReason::Other);
        let state = TransferState::failed_with(&ClientError::BlobGone);
        assert!(
            matches!(&state, TransferState::Failed { reason: FailReason::Cancelled, why } if why.contains("no longer")),
            "{state:?}"
        );
        assert_eq!(FailReason::Declined { by: vec!["bob".into()] }.as_str(), "declined");
    }
}
