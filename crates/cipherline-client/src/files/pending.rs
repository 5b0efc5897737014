//! What every front-end shows of transfers: their ids (`u2` for an
//! upload, `d3` for a download, as `cipherline files list` names them),
//! the pending ones of a data directory, how often progress is worth
//! reporting, and how many downloads run at once.

use std::fmt;
use std::time::{Duration, Instant};

use cipherline_proto::app::Target;
use cipherline_proto::filestream::sealed_size;

use super::records::DownloadState;
use crate::error::ClientError;
use crate::local::LocalStore;

/// Downloads a front-end runs at once at most (the rest wait their turn).
pub const MAX_DOWNLOADS: usize = 3;

/// A transfer recorded in the local store, by its local id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransferId {
    /// An upload (`u2`).
    Up(u64),
    /// A download (`d3`).
    Down(u64),
}

impl TransferId {
    /// Parses `u2` or `d3` (either case); `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<TransferId> {
        let (kind, number) = s.split_at_checked(1)?;
        // Digits only: `u+2` or `d-1` are not ids.
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = number.parse().ok()?;
        match kind {
            "u" | "U" => Some(TransferId::Up(n)),
            "d" | "D" => Some(TransferId::Down(n)),
            _ => None,
        }
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferId::Up(n) => write!(f, "u{n}"),
            TransferId::Down(n) => write!(f, "d{n}"),
        }
    }
}

/// A transfer not finished, as the local store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its id.
    pub id: TransferId,
    /// An upload: the room, or the person it goes to. A download: the
    /// room, or this user for a direct conversation.
    pub target: Target,
    /// A download's sender (raw: escape before showing).
    pub from: Option<String>,
    /// The file's name: an upload's own, a download's as the sender
    /// announced it (raw: escape before showing).
    pub name: String,
    /// Plaintext bytes done (an upload's: what the relay held when last
    /// heard, approximately).
    pub bytes: u64,
    /// The file's size.
    pub total: u64,
    /// `starting` (an upload not announced yet), `active` (under way or
    /// interrupted) or `offered` (a download nobody asked for yet).
    pub state: &'static str,
}

/// The pending uploads, then downloads, of `scope` (every scope of the
/// data directory if `None`), oldest first.
pub fn pending(store: &LocalStore, scope: Option<&str>) -> Result<Vec<Pending>, ClientError> {
    let mut out = Vec::new();
    for up in store.uploads(scope)? {
        let name = up.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let sealed = sealed_size(up.size).unwrap_or(u64::MAX).max(1);
        // The relay's sealed bytes as plaintext bytes (approximately: the
        // tags are spread evenly).
        let bytes = u64::try_from(u128::from(up.stored) * u128::from(up.size) / u128::from(sealed)).unwrap_or(0);
        out.push(Pending {
            id: TransferId::Up(up.id),
            target: up.target,
            from: None,
            name,
            bytes,
            total: up.size,
            state: if up.announced { "active" } else { "starting" },
        });
    }
    for d in store.downloads(scope, &[DownloadState::Offered, DownloadState::Active])? {
        out.push(Pending {
            id: TransferId::Down(d.id),
            target: d.target,
            from: Some(d.from),
            name: d.name,
            bytes: d.verified,
            total: d.size,
            state: d.state.as_str(),
        });
    }
    Ok(out)
}

/// Decides when a progress report is due, so that a fast transfer does
/// not flood its front-end: the first, the last (all bytes done), and
/// otherwise one per `every` at most (or, if asked, per hundredth of the
/// file too).
#[derive(Debug, Clone)]
pub struct Ticker {
    every: Duration,
    hundredths: bool,
    last: Option<(Instant, u64)>,
}

impl Ticker {
    /// Reports at most once per `every`, plus the first and the last.
    #[must_use]
    pub fn new(every: Duration) -> Self {
        Ticker { every, hundredths: false, last: None }
    }

    /// Also a report whenever another hundredth of the file is done.
    #[must_use]
    pub fn with_hundredths(mut self) -> Self {
        self.hundredths = true;
        self
    }

    /// Whether a report is due for `bytes` of `total`; counts it as given
    /// if so.
    pub fn due(&mut self, bytes: u64, total: u64) -> bool {
        let due = match self.last {
            None => true,
            Some((at, before)) => {
                bytes >= total
                    || at.elapsed() >= self.every
                    || (self.hundredths && bytes.saturating_sub(before) >= (total / 100).max(1))
            }
        };
        if due {
            self.last = Some((Instant::now(), bytes));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_a_direction() {
        assert_eq!(TransferId::parse("u2"), Some(TransferId::Up(2)));
        assert_eq!(TransferId::parse("D17"), Some(TransferId::Down(17)));
        assert_eq!(TransferId::Down(17).to_string(), "d17");
        for bad in ["", "x1", "u", "d-1", "d+1", "2", "dé", "u99999999999999999999999"] {
            assert_eq!(TransferId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_ticker_reports_the_first_and_the_last_and_few_between() {
        let mut ticker = Ticker::new(Duration::from_secs(3600));
        assert!(ticker.due(0, 100));
        assert!((1..100).all(|b| !ticker.due(b, 100)), "nothing between within the interval");
        assert!(ticker.due(100, 100), "the last");
        let mut ticker = Ticker::new(Duration::from_secs(3600)).with_hundredths();
        assert!(ticker.due(0, 1000));
        assert!(!ticker.due(5, 1000));
        assert!(ticker.due(10, 1000), "another hundredth");
    }
}
