//! The handshake state machines, as typestate (PROTOCOL.md §7).
//!
//! ```text
//! client                                            server
//!                       <-- ServerIdentity             (clear)
//! check the server key (caller: pin, known-servers, prompt)
//! ClientHello                                  -->     (clear)
//!                       <-- ServerHello                (clear)
//!                       <-- Finished                   (server handshake key)
//! [ClientAuth]                                 -->     (client handshake key)
//! Finished                                     -->     (client handshake key)
//! application records  <-->                            (application keys)
//! ```
//!
//! Each state is a struct whose `handle_*` / `into_*` method consumes it and
//! returns the next state, so a state can never be used twice. Methods take
//! whole [`Frame`]s (see [`crate::frame::Deframer`]) and return the bytes to
//! write. On any error the caller should write [`alert_frame`] for
//! [`Error::alert`] and close the connection.

pub mod client;
pub mod server;

use std::sync::Arc;

use crate::alert::AlertCode;
use crate::codec::{Reader, Writer};
use crate::crypto::kem::ServerKey;
use crate::crypto::pake::{MESSAGE_LEN, Password};
use crate::crypto::sign::IdentityKey;
use crate::error::{AuthFailure, DecodeError, Error, Misbehavior};
use crate::frame::{Frame, FrameKind};
use crate::message::{self, ClientAuthRequest, MessageType};
use crate::record::{ContentType, KeyUpdatePolicy, RecordOpener};
use crate::suite::{StaticKem, Suite};

/// What a client accepts and who it is.
#[derive(Clone)]
pub struct ClientConfig {
    /// Suites in order of preference; the first one the server also offers
    /// is chosen. Default: [`Suite::FORWARD_SECRET`].
    pub suites: Vec<Suite>,
    /// Permits [`Suite::SEED_FAITHFUL`] (no forward secrecy) if it is also in
    /// `suites`. Off by default; see PROTOCOL.md §5.3 for why it is weaker.
    pub dangerous_allow_no_forward_secrecy: bool,
    /// The identity key proven in ClientAuth when the server asks.
    pub identity: Option<Arc<IdentityKey>>,
    /// The shared password, for servers in password mode (PROTOCOL.md §7.7).
    /// With a password the client insists on password mode: a server that
    /// does not ask for one is refused.
    pub password: Option<Password>,
    /// The client's name, bound into the password exchange (the name it
    /// will use in Hello). Required with `password`.
    pub name: Option<String>,
    /// Password-only mode: also accept a server that presents no key, whose
    /// only authentication is then the password (suites `0x00xx`). Off by
    /// default, and then a keyless ServerIdentity is refused before
    /// ClientHello (`Incompatibility::KeylessServer`): otherwise a man in
    /// the middle who knows the password could drop the key of a
    /// key-and-password server and skip the client's key check. Needs
    /// `password`.
    pub password_only: bool,
    /// When this side ratchets its sending key.
    pub key_update: KeyUpdatePolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let mut suites = Suite::FORWARD_SECRET.to_vec();
        // Only ever chosen when the server has no key, which requires the
        // password and `password_only` (see `handle_server_identity`).
        suites.extend(Suite::PASSWORD_ONLY);
        ClientConfig {
            suites,
            dangerous_allow_no_forward_secrecy: false,
            identity: None,
            password: None,
            name: None,
            password_only: false,
            key_update: KeyUpdatePolicy::default(),
        }
    }
}

/// What a server offers and requires.
#[derive(Clone)]
pub struct ServerConfig {
    /// The server's static private key; `None` only in password-only mode.
    pub key: Option<Arc<ServerKey>>,
    /// The shared password: when set, every client must prove it
    /// (PROTOCOL.md §7.7).
    pub password: Option<Password>,
    /// Suites offered; only those matching the key's static KEM are used.
    pub suites: Vec<Suite>,
    /// Permits [`Suite::SEED_FAITHFUL`] if it is also in `suites`.
    pub dangerous_allow_no_forward_secrecy: bool,
    /// Whether clients must prove an identity key.
    pub client_auth: ClientAuthRequest,
    /// When this side ratchets its sending key.
    pub key_update: KeyUpdatePolicy,
}

impl ServerConfig {
    /// Every forward-secret suite for `key`'s type, no client authentication.
    #[must_use]
    pub fn new(key: Arc<ServerKey>) -> Self {
        ServerConfig {
            key: Some(key),
            password: None,
            suites: Suite::FORWARD_SECRET.to_vec(),
            dangerous_allow_no_forward_secrecy: false,
            client_auth: ClientAuthRequest::None,
            key_update: KeyUpdatePolicy::default(),
        }
    }

    /// Password-only mode: no server key; the password authenticates both
    /// sides.
    #[must_use]
    pub fn password_only(password: Password) -> Self {
        ServerConfig {
            key: None,
            password: Some(password),
            suites: Suite::PASSWORD_ONLY.to_vec(),
            dangerous_allow_no_forward_secrecy: false,
            client_auth: ClientAuthRequest::None,
            key_update: KeyUpdatePolicy::default(),
        }
    }

    /// The suite code points this server lists in ServerIdentity, ascending.
    pub(crate) fn offered(&self) -> Result<Vec<u16>, Error> {
        self.key_update.validate()?;
        let kem = match (&self.key, &self.password) {
            (Some(key), _) => key.public_key().static_kem(),
            (None, Some(_)) => StaticKem::None,
            (None, None) => return Err(Error::InvalidConfig("a server needs a key, a password, or both")),
        };
        let mut codes: Vec<u16> = self
            .suites
            .iter()
            .filter(|s| s.static_kem == kem && (s.has_forward_secrecy() || self.dangerous_allow_no_forward_secrecy))
            .map(|s| s.to_u16())
            .collect();
        codes.sort_unstable();
        codes.dedup();
        if codes.is_empty() {
            return Err(Error::InvalidConfig("no suite matches the server key type"));
        }
        if kem == StaticKem::X25519 && self.dangerous_allow_no_forward_secrecy {
            // Harmless (no such suite exists), but say so rather than ignore it.
            return Err(Error::InvalidConfig("the no-forward-secrecy suite needs an RSA key"));
        }
        Ok(codes)
    }
}

/// A plaintext alert frame, for closing a connection during the handshake.
#[must_use]
pub fn alert_frame(code: AlertCode) -> Vec<u8> {
    Frame::encode(FrameKind::Alert, &[code.to_u8()])
}

/// The code of a plaintext alert frame.
fn alert_code(frame: &Frame) -> AlertCode {
    AlertCode::from_u8(frame.body.first().copied().unwrap_or_default())
}

/// The body of a plaintext handshake message of type `expected`; the whole
/// message bytes are returned too, for the transcript.
fn expect_plain(frame: &Frame, expected: MessageType) -> Result<&[u8], Error> {
    match frame.kind {
        FrameKind::Alert => Err(Error::AlertReceived(alert_code(frame))),
        FrameKind::Record => Err(Misbehavior::UnexpectedMessage.into()),
        FrameKind::Handshake => {
            let (ty, body) = message::split_message(&frame.body)?;
            if ty != expected {
                return Err(Misbehavior::UnexpectedMessage.into());
            }
            Ok(body)
        }
    }
}

/// Opens an encrypted handshake record; returns the message type and the
/// whole message bytes (for the transcript).
///
/// The first encrypted record from a peer is its Finished (or ClientAuth):
/// if it does not authenticate, the peer did not derive the same handshake
/// keys, i.e. it does not hold the key (or the handshake was altered). That
/// is reported as `peer_failure`, an authentication failure, not as a
/// generic record error.
fn open_encrypted(
    opener: &mut RecordOpener,
    frame: &Frame,
    peer_failure: AuthFailure,
) -> Result<(MessageType, Vec<u8>), Error> {
    match frame.kind {
        FrameKind::Alert => Err(Error::AlertReceived(alert_code(frame))),
        FrameKind::Handshake => Err(Misbehavior::UnexpectedMessage.into()),
        FrameKind::Record => {
            let (ty, content) = opener.open(&frame.header, &frame.body).map_err(|e| match e {
                Error::DecryptFailed => Error::AuthenticationFailed(peer_failure),
                other => other,
            })?;
            match ty {
                ContentType::Handshake => {
                    let (msg_type, _) = message::split_message(&content)?;
                    Ok((msg_type, content.to_vec()))
                }
                ContentType::Alert => match content.as_slice() {
                    [code] => Err(Error::AlertReceived(AlertCode::from_u8(*code))),
                    _ => Err(DecodeError::BadInnerPlaintext.into()),
                },
                _ => Err(Misbehavior::UnexpectedMessage.into()),
            }
        }
    }
}

/// The extension data a password-mode server sends in ServerIdentity:
/// the PAKE it runs, SPAKE2 over Ed25519.
pub const PAKE_SPAKE2_ED25519: [u8; 2] = [0x00, 0x01];

/// ClientHello's PAKE extension: `vec8 client_name || SPAKE2 message`.
fn encode_client_pake(name: &str, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let mut w = Writer::new();
    w.vec8(name.as_bytes(), crate::app::MAX_NAME)?;
    w.bytes(msg);
    Ok(w.into_vec())
}

fn decode_client_pake(data: &[u8]) -> Result<(String, &[u8]), Error> {
    let mut r = Reader::new(data);
    let name = r.vec8(crate::app::MAX_NAME)?;
    let msg = r.take(MESSAGE_LEN)?;
    r.finish()?;
    if name.is_empty() {
        return Err(DecodeError::IllegalValue.into());
    }
    let name = String::from_utf8(name.to_vec()).map_err(|_| DecodeError::IllegalValue)?;
    Ok((name, msg))
}

/// The context string and separator before the transcript hash in the
/// client's ClientAuth signature input (PROTOCOL.md §7.4).
pub const CLIENT_AUTH_CONTEXT: &[u8] = b"cipherline1 client auth\0";

/// The exact bytes a client identity signs: context || transcript hash.
#[must_use]
pub fn client_auth_input(th: &[u8; 32]) -> Vec<u8> {
    [CLIENT_AUTH_CONTEXT, th.as_slice()].concat()
}
