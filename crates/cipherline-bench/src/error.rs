//! The one error type of the generator.

use cipherline_client::ClientError;
use cipherline_net::NetError;

/// What stops a benchmark run before it can report.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag is wrong or the target is not allowed.
    #[error("{0}")]
    Usage(String),
    /// A key file or the known-servers file could not be used.
    #[error("{0}")]
    Keys(#[from] cipherline_keys::Error),
    /// The server's key was not trusted.
    #[error("server key not trusted: {0}")]
    Untrusted(String),
    /// A cipherline client operation failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The cipherline driver failed (handshake mode).
    #[error("{0}")]
    Net(#[from] NetError),
    /// A socket failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The IRC server said something unexpected.
    #[error("irc: {0}")]
    Irc(String),
    /// A wait ran out.
    #[error("timed out {0}")]
    Timeout(&'static str),
}
