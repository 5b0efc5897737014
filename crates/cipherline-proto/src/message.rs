//! Handshake messages and their strict encodings (PROTOCOL.md §4).
//!
//! Every handshake message is `type (1) | length (2) | body`. Decoders check
//! each length against its field's bound before looking at the bytes, reject
//! unknown enumerated values and any trailing byte, and return the message's
//! exact bytes for the transcript.

use crate::codec::{Reader, Writer};
use crate::crypto::kdf::HASH_LEN;
use crate::crypto::kem::{MAX_SPKI_LEN, MLKEM768_CT_LEN, MLKEM768_EK_LEN, X25519_LEN};
use crate::crypto::sign::MAX_SIGNATURE_LEN;
use crate::error::{DecodeError, Error};
use crate::frame::MAX_HANDSHAKE_FRAME;

/// The four bytes that open every ServerIdentity: "CPHL".
pub const MAGIC: [u8; 4] = *b"CPHL";
/// Protocol version 1, the only one defined.
pub const VERSION_1: u16 = 0x0001;
/// Bytes of randomness in each hello.
pub const RANDOM_LEN: usize = 32;
/// Largest extensions block.
pub const MAX_EXTENSIONS: usize = 1024;
/// Largest client ephemeral share (ML-KEM-768 key plus X25519 key).
pub const MAX_CLIENT_SHARE: usize = MLKEM768_EK_LEN + X25519_LEN;
/// Largest server ephemeral share (ML-KEM-768 ciphertext plus X25519 key).
pub const MAX_SERVER_SHARE: usize = MLKEM768_CT_LEN + X25519_LEN;
/// Largest static KEM ciphertext (RSA-4096).
pub const MAX_STATIC_CT: usize = 512;
/// Most versions a server may list.
pub const MAX_VERSIONS: usize = 16;
/// Most suites a server may list.
pub const MAX_SUITES: usize = 32;
/// Extension type of the PAKE (SPAKE2) messages of password mode (PROTOCOL.md §7.7).
pub const EXT_PAKE: u16 = 0x0001;

/// Handshake message type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Server → client, first, in the clear.
    ServerIdentity,
    /// Client → server, in the clear.
    ClientHello,
    /// Server → client, in the clear.
    ServerHello,
    /// Client → server, encrypted under the client handshake key.
    ClientAuth,
    /// Both directions, encrypted under the handshake keys.
    Finished,
}

impl MessageType {
    /// The type's byte.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        match self {
            MessageType::ServerIdentity => 0x01,
            MessageType::ClientHello => 0x02,
            MessageType::ServerHello => 0x03,
            MessageType::ClientAuth => 0x0f,
            MessageType::Finished => 0x14,
        }
    }

    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x01 => MessageType::ServerIdentity,
            0x02 => MessageType::ClientHello,
            0x03 => MessageType::ServerHello,
            0x0f => MessageType::ClientAuth,
            0x14 => MessageType::Finished,
            _ => return Err(DecodeError::UnknownMessageType),
        })
    }
}

/// Splits a handshake message into its type and body, checking the length.
pub fn split_message(bytes: &[u8]) -> Result<(MessageType, &[u8]), DecodeError> {
    let mut r = Reader::new(bytes);
    let ty = MessageType::from_u8(r.u8()?)?;
    let body = r.vec16(MAX_HANDSHAKE_FRAME - 3)?;
    r.finish()?;
    Ok((ty, body))
}

fn wrap(ty: MessageType, body: Writer) -> Result<Vec<u8>, Error> {
    let mut w = Writer::new();
    w.u8(ty.to_u8());
    w.vec16(&body.into_vec(), MAX_HANDSHAKE_FRAME - 3)?;
    Ok(w.into_vec())
}

fn is_strictly_ascending(list: &[u16]) -> bool {
    list.iter().zip(list.iter().skip(1)).all(|(a, b)| a < b)
}

/// Parses a list of u16 values: non-empty, strictly ascending, at most `max`.
fn read_u16_list(bytes: &[u8], max: usize) -> Result<Vec<u16>, DecodeError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) || bytes.len() / 2 > max {
        return Err(DecodeError::IllegalValue);
    }
    let list: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c.first().copied().unwrap_or_default(), c.get(1).copied().unwrap_or_default()]))
        .collect();
    if !is_strictly_ascending(&list) {
        return Err(DecodeError::IllegalValue);
    }
    Ok(list)
}

fn write_u16_list(w: &mut Writer, list: &[u16], max: usize) -> Result<(), Error> {
    if list.is_empty() || list.len() > max || !is_strictly_ascending(list) {
        return Err(Error::ApiMisuse("list must be non-empty, ascending and bounded"));
    }
    let bytes: Vec<u8> = list.iter().flat_map(|v| v.to_be_bytes()).collect();
    w.vec8(&bytes, 2 * max)
}

/// A block of extensions: `(type, data)` pairs in strictly ascending type order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions(pub Vec<(u16, Vec<u8>)>);

impl Extensions {
    fn read(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut out: Vec<(u16, Vec<u8>)> = Vec::new();
        while r.remaining() > 0 {
            let ty = r.u16()?;
            let data = r.vec16(MAX_EXTENSIONS)?;
            if out.last().is_some_and(|(prev, _)| *prev >= ty) {
                return Err(DecodeError::IllegalValue);
            }
            out.push((ty, data.to_vec()));
        }
        Ok(Extensions(out))
    }

    fn write(&self, w: &mut Writer) -> Result<(), Error> {
        let mut inner = Writer::new();
        let mut prev: Option<u16> = None;
        for (ty, data) in &self.0 {
            if prev.is_some_and(|p| p >= *ty) {
                return Err(Error::ApiMisuse("extensions must be in ascending type order"));
            }
            prev = Some(*ty);
            inner.u16(*ty);
            inner.vec16(data, MAX_EXTENSIONS)?;
        }
        w.vec16(&inner.into_vec(), MAX_EXTENSIONS)
    }

    /// The data of extension `ty`, if present.
    #[must_use]
    pub fn get(&self, ty: u16) -> Option<&[u8]> {
        self.0.iter().find(|(t, _)| *t == ty).map(|(_, d)| d.as_slice())
    }
}

/// The server's first message: who it is and what it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// Protocol versions, ascending.
    pub versions: Vec<u16>,
    /// DER SubjectPublicKeyInfo of the server's static key.
    pub server_key: Vec<u8>,
    /// Suite code points the server accepts, ascending (unknown ones allowed).
    pub suites: Vec<u16>,
    /// Extensions: empty, or `pake` (0x0001) in password mode (PROTOCOL.md §7.7).
    pub extensions: Extensions,
}

impl ServerIdentity {
    /// Encodes the whole message.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.bytes(&MAGIC);
        write_u16_list(&mut w, &self.versions, MAX_VERSIONS)?;
        w.vec16(&self.server_key, MAX_SPKI_LEN)?;
        write_u16_list(&mut w, &self.suites, MAX_SUITES)?;
        self.extensions.write(&mut w)?;
        wrap(MessageType::ServerIdentity, w)
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        if r.array::<4>()? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let versions = read_u16_list(r.vec8(2 * MAX_VERSIONS)?, MAX_VERSIONS)?;
        let server_key = r.vec16(MAX_SPKI_LEN)?.to_vec();
        let suites = read_u16_list(r.vec8(2 * MAX_SUITES)?, MAX_SUITES)?;
        let extensions = Extensions::read(r.vec16(MAX_EXTENSIONS)?)?;
        r.finish()?;
        Ok(ServerIdentity { versions, server_key, suites, extensions })
    }
}

/// The client's hello: its choices, key shares and the static encapsulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The chosen version.
    pub version: u16,
    /// Fresh client randomness.
    pub random: [u8; RANDOM_LEN],
    /// The chosen suite code point.
    pub suite: u16,
    /// The client's ephemeral share (empty for a suite with no ephemeral KEM).
    pub ephemeral_share: Vec<u8>,
    /// The static KEM ciphertext to the server's key.
    pub static_ciphertext: Vec<u8>,
    /// Extensions: empty, or `pake` (0x0001) in password mode (PROTOCOL.md §7.7).
    pub extensions: Extensions,
}

impl ClientHello {
    /// Encodes the whole message.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.u16(self.version);
        w.bytes(&self.random);
        w.u16(self.suite);
        w.vec16(&self.ephemeral_share, MAX_CLIENT_SHARE)?;
        w.vec16(&self.static_ciphertext, MAX_STATIC_CT)?;
        self.extensions.write(&mut w)?;
        wrap(MessageType::ClientHello, w)
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let version = r.u16()?;
        let random = r.array()?;
        let suite = r.u16()?;
        let ephemeral_share = r.vec16(MAX_CLIENT_SHARE)?.to_vec();
        let static_ciphertext = r.vec16(MAX_STATIC_CT)?.to_vec();
        let extensions = Extensions::read(r.vec16(MAX_EXTENSIONS)?)?;
        r.finish()?;
        Ok(ClientHello { version, random, suite, ephemeral_share, static_ciphertext, extensions })
    }
}

/// Whether and how the server asks the client to prove an identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthRequest {
    /// The client must not send ClientAuth.
    None,
    /// The client sends ClientAuth if it has an identity key.
    Optional,
    /// The client must send ClientAuth.
    Required,
}

impl ClientAuthRequest {
    /// The request's byte.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        match self {
            ClientAuthRequest::None => 0,
            ClientAuthRequest::Optional => 1,
            ClientAuthRequest::Required => 2,
        }
    }

    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(ClientAuthRequest::None),
            1 => Ok(ClientAuthRequest::Optional),
            2 => Ok(ClientAuthRequest::Required),
            _ => Err(DecodeError::IllegalValue),
        }
    }
}

/// The server's hello: its randomness, ephemeral answer and auth request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Fresh server randomness.
    pub random: [u8; RANDOM_LEN],
    /// The server's ephemeral share (empty for a suite with no ephemeral KEM).
    pub ephemeral_share: Vec<u8>,
    /// Whether the client must authenticate.
    pub client_auth: ClientAuthRequest,
    /// Extensions (only types the client sent may appear).
    pub extensions: Extensions,
}

impl ServerHello {
    /// Encodes the whole message.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.bytes(&self.random);
        w.vec16(&self.ephemeral_share, MAX_SERVER_SHARE)?;
        w.u8(self.client_auth.to_u8());
        self.extensions.write(&mut w)?;
        wrap(MessageType::ServerHello, w)
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let random = r.array()?;
        let ephemeral_share = r.vec16(MAX_SERVER_SHARE)?.to_vec();
        let client_auth = ClientAuthRequest::from_u8(r.u8()?)?;
        let extensions = Extensions::read(r.vec16(MAX_EXTENSIONS)?)?;
        r.finish()?;
        Ok(ServerHello { random, ephemeral_share, client_auth, extensions })
    }
}

/// The client's proof of its identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// Signature algorithm code point.
    pub algorithm: u16,
    /// DER SubjectPublicKeyInfo of the identity key.
    pub public_key: Vec<u8>,
    /// Signature over the transcript (PROTOCOL.md §7.4).
    pub signature: Vec<u8>,
}

impl ClientAuth {
    /// Encodes the whole message.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.u16(self.algorithm);
        w.vec16(&self.public_key, MAX_SPKI_LEN)?;
        w.vec16(&self.signature, MAX_SIGNATURE_LEN)?;
        wrap(MessageType::ClientAuth, w)
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let algorithm = r.u16()?;
        let public_key = r.vec16(MAX_SPKI_LEN)?.to_vec();
        let signature = r.vec16(MAX_SIGNATURE_LEN)?.to_vec();
        r.finish()?;
        Ok(ClientAuth { algorithm, public_key, signature })
    }
}

/// Key confirmation: an HMAC over the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// HMAC-SHA256(finished key, transcript hash).
    pub verify_data: [u8; HASH_LEN],
}

impl Finished {
    /// Encodes the whole message.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.bytes(&self.verify_data);
        wrap(MessageType::Finished, w)
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let verify_data = r.array()?;
        r.finish()?;
        Ok(Finished { verify_data })
    }
}
