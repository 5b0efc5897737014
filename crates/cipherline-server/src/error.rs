//! The server library's error type.

/// What stops the server from running (a single connection's failure never does).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A limit in the configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The protocol configuration is unusable (e.g. no suite fits the key).
    #[error("invalid protocol configuration: {0}")]
    Protocol(#[from] cipherline_proto::Error),
    /// The listening socket failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The message store could not be opened or its contents are damaged.
    #[error("{0}")]
    Store(String),
}
