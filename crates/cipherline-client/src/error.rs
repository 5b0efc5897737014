//! The client library's error type.

use cipherline_proto::app::ErrorCode;

/// What can go wrong for a client.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server's key was not trusted; nothing secret was sent.
    #[error("{0}")]
    Untrusted(String),
    /// The connection or the protocol failed.
    #[error(transparent)]
    Net(#[from] cipherline_net::NetError),
    /// The server refused a request. Displayed with `text` escaped: it is
    /// the server's (or, relayed, a peer's) and may hold terminal controls.
    #[error("server refused ({code:?}): {}", crate::display::escape(.text))]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's explanation.
        text: String,
    },
    /// The server sent something this client did not expect.
    #[error("unexpected reply from the server")]
    Unexpected,
    /// A time limit ran out.
    #[error("timed out {0}")]
    Timeout(&'static str),
}
