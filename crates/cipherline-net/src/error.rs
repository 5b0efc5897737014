//! The one error type of the drivers.

use cipherline_proto::AlertCode;

/// What can end a connection.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol, or authentication failed.
    #[error("{0}")]
    Protocol(#[from] cipherline_proto::Error),
    /// A time limit ran out.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The peer closed the connection cleanly (close_notify) or, before any
    /// session existed, simply closed the socket.
    #[error("connection closed by peer")]
    Closed,
    /// An application message exceeded this side's size limit.
    #[error("message too large")]
    MessageTooLarge,
}

impl NetError {
    /// The alert the peer sent, if that is what ended the connection.
    #[must_use]
    pub fn alert_received(&self) -> Option<AlertCode> {
        match self {
            NetError::Protocol(cipherline_proto::Error::AlertReceived(code)) => Some(*code),
            _ => None,
        }
    }
}
