//! Alert codes: why a connection was closed.

use core::fmt;

/// The one-byte code carried by an alert (PROTOCOL.md §9).
///
/// Code 0 is the clean close (`close_notify`); every other code is fatal.
/// Unknown codes received from a peer are kept as [`AlertCode::Unknown`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertCode {
    /// Clean close: the sender will send nothing more.
    CloseNotify,
    /// A message arrived that is not valid in the current state.
    UnexpectedMessage,
    /// A record failed authenticated decryption.
    BadRecordMac,
    /// A record was longer than allowed.
    RecordOverflow,
    /// The handshake could not be completed for another reason.
    HandshakeFailure,
    /// A field had a well-formed but unacceptable value.
    IllegalParameter,
    /// A message could not be parsed.
    DecodeError,
    /// A Finished MAC or a signature did not verify.
    DecryptError,
    /// No protocol version in common.
    ProtocolVersion,
    /// No suite (or key type) in common that this side accepts.
    InsufficientSecurity,
    /// The sender hit an internal error.
    InternalError,
    /// The server does not trust the client's identity key.
    UnknownIdentity,
    /// The server requires client authentication.
    IdentityRequired,
    /// The shared password did not match (password mode).
    WrongPassword,
    /// Too many failed password attempts from this address; try later.
    TooManyAttempts,
    /// A time limit (handshake or idle) expired.
    Timeout,
    /// The server is at its connection limit; try again later.
    ServerBusy,
    /// A code this implementation does not know.
    Unknown(u8),
}

impl AlertCode {
    /// The code's byte on the wire.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        match self {
            AlertCode::CloseNotify => 0,
            AlertCode::UnexpectedMessage => 10,
            AlertCode::BadRecordMac => 20,
            AlertCode::RecordOverflow => 22,
            AlertCode::HandshakeFailure => 40,
            AlertCode::IllegalParameter => 47,
            AlertCode::DecodeError => 50,
            AlertCode::DecryptError => 51,
            AlertCode::ProtocolVersion => 70,
            AlertCode::InsufficientSecurity => 71,
            AlertCode::InternalError => 80,
            AlertCode::Timeout => 90,
            AlertCode::ServerBusy => 91,
            AlertCode::UnknownIdentity => 115,
            AlertCode::IdentityRequired => 116,
            AlertCode::WrongPassword => 120,
            AlertCode::TooManyAttempts => 121,
            AlertCode::Unknown(b) => b,
        }
    }

    /// Parses a code byte; never fails (unknown codes are preserved).
    #[must_use]
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => AlertCode::CloseNotify,
            10 => AlertCode::UnexpectedMessage,
            20 => AlertCode::BadRecordMac,
            22 => AlertCode::RecordOverflow,
            40 => AlertCode::HandshakeFailure,
            47 => AlertCode::IllegalParameter,
            50 => AlertCode::DecodeError,
            51 => AlertCode::DecryptError,
            70 => AlertCode::ProtocolVersion,
            71 => AlertCode::InsufficientSecurity,
            80 => AlertCode::InternalError,
            90 => AlertCode::Timeout,
            91 => AlertCode::ServerBusy,
            115 => AlertCode::UnknownIdentity,
            116 => AlertCode::IdentityRequired,
            120 => AlertCode::WrongPassword,
            121 => AlertCode::TooManyAttempts,
            other => AlertCode::Unknown(other),
        }
    }
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            AlertCode::CloseNotify => "close_notify",
            AlertCode::UnexpectedMessage => "unexpected_message",
            AlertCode::BadRecordMac => "bad_record_mac",
            AlertCode::RecordOverflow => "record_overflow",
            AlertCode::HandshakeFailure => "handshake_failure",
            AlertCode::IllegalParameter => "illegal_parameter",
            AlertCode::DecodeError => "decode_error",
            AlertCode::DecryptError => "decrypt_error",
            AlertCode::ProtocolVersion => "protocol_version",
            AlertCode::InsufficientSecurity => "insufficient_security",
            AlertCode::InternalError => "internal_error",
            AlertCode::Timeout => "timeout",
            AlertCode::ServerBusy => "server_busy",
            AlertCode::UnknownIdentity => "unknown_identity",
            AlertCode::IdentityRequired => "identity_required",
            AlertCode::WrongPassword => "wrong_password",
            AlertCode::TooManyAttempts => "too_many_attempts",
            AlertCode::Unknown(b) => return write!(f, "unknown alert {b}"),
        };
        f.write_str(s)
    }
}
