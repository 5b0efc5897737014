//! The one error type of the protocol core.
//!
//! Variants are grouped by who is at fault, as rustls does: the peer sent bytes
//! that do not parse ([`Error::Decode`]), the peer sent well-formed bytes that
//! break the protocol ([`Error::PeerMisbehaved`]), the peer cannot speak a
//! version or suite we accept ([`Error::PeerIncompatible`]), authentication or
//! decryption failed ([`Error::DecryptFailed`], [`Error::AuthenticationFailed`]),
//! the peer closed the connection ([`Error::AlertReceived`], [`Error::PeerClosed`]),
//! or this side misused the API or its configuration ([`Error::InvalidConfig`],
//! [`Error::ApiMisuse`]). No variant carries key material, plaintext or raw
//! peer bytes, and decryption failures carry no detail at all.

use crate::alert::AlertCode;

/// Everything that can go wrong in the protocol core.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The peer sent bytes that do not parse as the message expected here.
    #[error("malformed {0}")]
    Decode(DecodeError),

    /// The peer sent a well-formed message that breaks the protocol.
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(Misbehavior),

    /// The peer offered nothing this side accepts.
    #[error("peer incompatible: {0}")]
    PeerIncompatible(Incompatibility),

    /// A record failed authenticated decryption: tampered, replayed, reordered,
    /// dropped or encrypted under another key. Deliberately carries no detail.
    #[error("record authentication failed")]
    DecryptFailed,

    /// A Finished message or a signature did not verify: the peer does not hold
    /// the key (or password) it claims, or a message was altered in transit.
    #[error("handshake authentication failed: {0}")]
    AuthenticationFailed(AuthFailure),

    /// The peer sent an alert and closed the connection.
    #[error("peer sent alert: {0}")]
    AlertReceived(AlertCode),

    /// The peer closed the connection cleanly (close_notify); no more records.
    #[error("peer closed the connection")]
    PeerClosed,

    /// The byte stream ended in the middle of a frame or without close_notify.
    #[error("connection truncated: the stream ended without close_notify")]
    Truncated,

    /// This side's configuration or key material is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    /// The API was used in a way its documentation forbids.
    #[error("api misuse: {0}")]
    ApiMisuse(&'static str),

    /// The crypto provider failed where it should not (e.g. no system randomness).
    #[error("internal crypto failure")]
    Internal,
}

/// What failed to parse.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A frame header with an unknown kind byte.
    #[error("frame: unknown kind")]
    UnknownFrameKind,
    /// A frame whose length is zero or over the limit for its kind.
    #[error("frame: bad length")]
    FrameLength,
    /// A handshake message with an unknown type byte.
    #[error("handshake message: unknown type")]
    UnknownMessageType,
    /// A message ended before all of its fields were read.
    #[error("message: too short")]
    Truncated,
    /// A message had bytes left over after its last field.
    #[error("message: trailing bytes")]
    TrailingBytes,
    /// A length field exceeded the bound for that field.
    #[error("message: field too long")]
    FieldTooLong,
    /// A field had a value outside its allowed set or a non-canonical form.
    #[error("message: illegal field value")]
    IllegalValue,
    /// The ServerIdentity did not start with the protocol magic.
    #[error("server identity: bad magic (not a cipherline server?)")]
    BadMagic,
    /// A decrypted record's padding or content type was not well formed.
    #[error("record: bad inner plaintext")]
    BadInnerPlaintext,
    /// A public key, ciphertext or signature did not have a valid encoding.
    #[error("key or ciphertext encoding")]
    KeyEncoding,
    /// An application message carried a user or room name outside the
    /// name grammar (PROTOCOL.md §13.4).
    #[error("application message: a name outside the name grammar")]
    InvalidName,
}

/// A protocol violation by a peer that sent well-formed bytes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Misbehavior {
    /// A message or record arrived that is not valid in the current state.
    #[error("unexpected message")]
    UnexpectedMessage,
    /// The client chose a suite the server did not offer.
    #[error("chose a suite that was not offered")]
    SuiteNotOffered,
    /// The client chose a version the server did not offer.
    #[error("chose a version that was not offered")]
    VersionNotOffered,
    /// An extension appeared that was not solicited or not allowed here.
    #[error("unsolicited extension")]
    UnsolicitedExtension,
    /// Client authentication was required and the client sent none.
    #[error("client authentication required but absent")]
    ClientAuthMissing,
    /// The client sent ClientAuth although the server did not ask for it.
    #[error("client authentication not requested")]
    ClientAuthUnrequested,
    /// The peer kept sending records past the hard per-key limit without a key update.
    #[error("too many records under one key")]
    KeyUsageExceeded,
    /// The peer sent a record after its close_notify.
    #[error("data after close")]
    DataAfterClose,
}

/// Why no common ground was found with the peer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    /// No protocol version in common.
    #[error("no common protocol version")]
    NoCommonVersion,
    /// No cipher suite in common.
    #[error("no common cipher suite")]
    NoCommonSuite,
    /// The peer's static key type or size is not accepted.
    #[error("unsupported server key")]
    UnsupportedKey,
    /// The peer's identity key or signature algorithm is not accepted.
    #[error("unsupported signature algorithm")]
    UnsupportedSignature,
    /// The server requires client authentication and this client has no identity key.
    #[error("the server requires an identity key")]
    IdentityRequired,
    /// The server is in password mode and this side has no password (or
    /// the client did not run the password exchange).
    #[error("the server requires a password")]
    PasswordRequired,
    /// This client has a password but the server does not ask for one.
    #[error("the server does not use a password, but one was given")]
    PasswordNotOffered,
    /// The server presented no key (a password-only server) and this
    /// client did not ask for password-only mode
    /// ([`crate::ClientConfig::password_only`]).
    #[error("the server presented no key (password-only), and password-only mode was not asked for")]
    KeylessServer,
}

/// Which authentication check failed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The server's Finished did not decrypt or verify: the server does not
    /// hold the key the client encapsulated to, or the handshake was altered
    /// (including a downgraded suite list).
    #[error("the server did not prove it holds the trusted key, or the handshake was altered")]
    ServerFinished,
    /// The client's ClientAuth or Finished did not decrypt or verify.
    #[error("the client's finished did not verify, or the handshake was altered")]
    ClientFinished,
    /// The client's identity signature did not verify.
    #[error("client signature did not verify")]
    ClientSignature,
    /// In password mode, the peer's Finished did not decrypt or verify: the
    /// passwords differ (or someone is interfering with the connection).
    #[error("wrong password (or someone is interfering with the connection)")]
    Password,
}

impl Error {
    /// The alert this side should send before closing after this error, or
    /// `None` when no alert is due: the peer already closed (it sent an alert
    /// or close_notify) or the stream ended.
    #[must_use]
    pub fn alert(&self) -> Option<AlertCode> {
        Some(match self {
            Error::Decode(DecodeError::FrameLength) => AlertCode::RecordOverflow,
            Error::Decode(_) => AlertCode::DecodeError,
            Error::PeerMisbehaved(Misbehavior::KeyUsageExceeded) => AlertCode::IllegalParameter,
            Error::PeerMisbehaved(Misbehavior::ClientAuthMissing) => AlertCode::IdentityRequired,
            Error::PeerMisbehaved(Misbehavior::SuiteNotOffered | Misbehavior::VersionNotOffered) => {
                AlertCode::IllegalParameter
            }
            Error::PeerMisbehaved(_) => AlertCode::UnexpectedMessage,
            Error::PeerIncompatible(Incompatibility::NoCommonVersion) => AlertCode::ProtocolVersion,
            Error::PeerIncompatible(Incompatibility::IdentityRequired) => AlertCode::IdentityRequired,
            Error::PeerIncompatible(_) => AlertCode::InsufficientSecurity,
            Error::DecryptFailed => AlertCode::BadRecordMac,
            Error::AuthenticationFailed(AuthFailure::Password) => AlertCode::WrongPassword,
            Error::AuthenticationFailed(_) => AlertCode::DecryptError,
            Error::AlertReceived(_) | Error::PeerClosed | Error::Truncated => return None,
            Error::InvalidConfig(_) | Error::ApiMisuse(_) | Error::Internal => AlertCode::InternalError,
        })
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Decode(e)
    }
}

impl From<Misbehavior> for Error {
    fn from(e: Misbehavior) -> Self {
        Error::PeerMisbehaved(e)
    }
}

impl From<Incompatibility> for Error {
    fn from(e: Incompatibility) -> Self {
        Error::PeerIncompatible(e)
    }
}

impl From<AuthFailure> for Error {
    fn from(e: AuthFailure) -> Self {
        Error::AuthenticationFailed(e)
    }
}
