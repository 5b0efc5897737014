//! An established session: application data both ways, key updates and
//! closing (PROTOCOL.md §8, §9).

use std::time::Instant;

use crate::alert::AlertCode;
use crate::crypto::kdf::{HASH_LEN, Secret};
use crate::crypto::kem::ServerPublicKey;
use crate::crypto::sign::IdentityPublicKey;
use crate::error::{DecodeError, Error, Misbehavior};
use crate::frame::{Frame, FrameKind};
use crate::keyschedule::{self, ApplicationSecrets};
use crate::record::{self, ContentType, KeyUpdatePolicy, MAX_CONTENT, RecordOpener, RecordSealer};
use crate::suite::Suite;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that connected.
    Client,
    /// The side that accepted.
    Server,
}

/// What one incoming frame amounted to.
#[derive(PartialEq, Eq)]
pub enum Received {
    /// Application bytes (possibly empty). Record boundaries carry no meaning.
    /// Not erased on drop: the receiver's own buffers and messages hold the
    /// same bytes, and erasing one copy of many cost a tenth of a relay's CPU.
    Data(Vec<u8>),
    /// The peer ratcheted its sending key; if it asked us to do the same,
    /// [`Session::poll_transmit`] now returns our KeyUpdate.
    KeyUpdate,
    /// The peer closed cleanly; nothing more will arrive.
    CloseNotify,
}

impl core::fmt::Debug for Received {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print application plaintext.
        match self {
            Received::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Received::KeyUpdate => f.write_str("KeyUpdate"),
            Received::CloseNotify => f.write_str("CloseNotify"),
        }
    }
}

/// Values the handshake hands to a new session.
pub(crate) struct SessionParams {
    pub role: Role,
    pub suite: Suite,
    pub secrets: ApplicationSecrets,
    pub handshake_hash: [u8; HASH_LEN],
    pub server_key: Option<ServerPublicKey>,
    pub peer_identity: Option<IdentityPublicKey>,
    pub pake_name: Option<String>,
    pub key_update: KeyUpdatePolicy,
    pub now: Instant,
}

/// An authenticated, encrypted session.
pub struct Session {
    role: Role,
    suite: Suite,
    sealer: RecordSealer,
    opener: RecordOpener,
    exporter: Secret,
    handshake_hash: [u8; HASH_LEN],
    server_key: Option<ServerPublicKey>,
    peer_identity: Option<IdentityPublicKey>,
    pake_name: Option<String>,
    policy: KeyUpdatePolicy,
    /// The peer asked for a key update that we have not answered yet. The
    /// answer is sealed by whichever output call comes next, before anything
    /// else, so no record under our new key can overtake it.
    update_requested: bool,
    /// Whether any record from the peer has authenticated under the
    /// application keys yet.
    received_record: bool,
    received_close: bool,
    sent_close: bool,
}

impl Session {
    pub(crate) fn new(p: SessionParams) -> Result<Self, Error> {
        let ApplicationSecrets { client, server, exporter } = p.secrets;
        let (tx, rx) = match p.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        Ok(Session {
            role: p.role,
            suite: p.suite,
            sealer: RecordSealer::new(p.suite.aead, tx, p.now)?,
            opener: RecordOpener::new(p.suite.aead, rx, p.now)?,
            exporter,
            handshake_hash: p.handshake_hash,
            server_key: p.server_key,
            peer_identity: p.peer_identity,
            pake_name: p.pake_name,
            policy: p.key_update,
            update_requested: false,
            received_record: false,
            received_close: false,
            sent_close: false,
        })
    }

    /// This side's role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The negotiated suite.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The server's static public key (what its fingerprint is of);
    /// `None` in password-only mode.
    #[must_use]
    pub fn server_key(&self) -> Option<&ServerPublicKey> {
        self.server_key.as_ref()
    }

    /// In password mode, the client name bound into the password exchange
    /// (the server must hold the client to it at Hello); `None` otherwise.
    #[must_use]
    pub fn pake_name(&self) -> Option<&str> {
        self.pake_name.as_deref()
    }

    /// The identity key the client proved (server side), if any.
    #[must_use]
    pub fn peer_identity(&self) -> Option<&IdentityPublicKey> {
        self.peer_identity.as_ref()
    }

    /// The transcript hash of the whole handshake: a unique session id that
    /// both sides share.
    #[must_use]
    pub fn handshake_hash(&self) -> &[u8; HASH_LEN] {
        &self.handshake_hash
    }

    /// Fills `out` with keying material bound to this session, `label` and
    /// `context` (PROTOCOL.md §6.4).
    pub fn export_keying_material(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), Error> {
        keyschedule::export(&self.exporter, label, context, out)
    }

    /// Encrypts application data into record frames (chunked at
    /// [`MAX_CONTENT`] bytes), first updating the sending key if the policy
    /// says it is due.
    pub fn send(&mut self, data: &[u8], now: Instant) -> Result<Vec<u8>, Error> {
        self.send_parts(&[data], now)
    }

    /// [`Session::send`] for the concatenation of `parts` (the application
    /// byte stream has no message boundaries, §8.4): records are filled
    /// across parts, so many small messages share records and a large one
    /// leaves no small record behind, and each byte is copied once, into
    /// the frames.
    pub fn send_parts(&mut self, parts: &[&[u8]], now: Instant) -> Result<Vec<u8>, Error> {
        if self.sent_close {
            return Err(Error::ApiMisuse("send after close"));
        }
        let total = parts.iter().map(|p| p.len()).fold(0usize, usize::saturating_add);
        // Room for every record whole (and two key updates), so no record
        // makes the buffer grow.
        let mut out = Vec::with_capacity(record::frames_len(total));
        self.answer_update_request(now, &mut out)?;
        if total == 0 {
            self.update_if_due(now, &mut out)?;
            self.sealer.seal_into(ContentType::ApplicationData, &[], &mut out)?;
            return Ok(out);
        }
        // The pieces of the next record; `current` is what is left of the
        // part being cut.
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut rest = parts.iter().copied().filter(|p| !p.is_empty());
        let mut current: &[u8] = &[];
        loop {
            pieces.clear();
            let mut room = MAX_CONTENT;
            while room > 0 {
                if current.is_empty() {
                    match rest.next() {
                        Some(next) => current = next,
                        None => break,
                    }
                }
                let (piece, after) = current.split_at(room.min(current.len()));
                pieces.push(piece);
                room -= piece.len();
                current = after;
            }
            if pieces.is_empty() {
                return Ok(out);
            }
            self.update_if_due(now, &mut out)?;
            self.sealer.seal_parts_into(ContentType::ApplicationData, &pieces, &mut out)?;
        }
    }

    fn answer_update_request(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.update_requested && !self.sent_close {
            self.update_requested = false;
            self.send_key_update(false, now, out)?;
        }
        Ok(())
    }

    fn update_if_due(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.sealer.needs_update(&self.policy, now) {
            self.send_key_update(false, now, out)?;
        }
        Ok(())
    }

    /// Seals a KeyUpdate under the current key, then ratchets the key.
    fn send_key_update(&mut self, request: bool, now: Instant, out: &mut Vec<u8>) -> Result<(), Error> {
        self.sealer.seal_into(ContentType::KeyUpdate, &[u8::from(request)], out)?;
        self.sealer.update(now)
    }

    /// Ratchets our sending key now and asks the peer to ratchet its own;
    /// returns the frame to send.
    pub fn request_key_update(&mut self, now: Instant) -> Result<Vec<u8>, Error> {
        if self.sent_close {
            return Err(Error::ApiMisuse("key update after close"));
        }
        let mut out = Vec::new();
        // Our request also answers a pending request of the peer's.
        self.update_requested = false;
        self.send_key_update(true, now, &mut out)?;
        Ok(out)
    }

    /// When [`Session::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.sent_close {
            return None;
        }
        self.sealer.update_due_at(&self.policy)
    }

    /// Performs a time-based key update if one is due; returns frames to send
    /// (empty if none was due).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.answer_update_request(now, &mut out)?;
        if !self.sent_close && self.sealer.needs_update(&self.policy, now) {
            self.send_key_update(false, now, &mut out)?;
        }
        Ok(out)
    }

    /// Bytes this side must send that no call has returned yet: the
    /// KeyUpdate answering the peer's request. Call after
    /// [`Session::handle_frame`]; if [`Session::send`] comes first it puts
    /// the answer in front of the data instead, so the order is always right.
    pub fn poll_transmit(&mut self, now: Instant) -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::new();
        self.answer_update_request(now, &mut out)?;
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    /// Authenticates and decrypts one frame from the peer.
    ///
    /// Any error is fatal: the caller should send [`Session::alert`] with
    /// [`Error::alert`] (when it is `Some`) and close.
    pub fn handle_frame(&mut self, frame: &Frame, now: Instant) -> Result<Received, Error> {
        self.handle_record(Frame { kind: frame.kind, header: frame.header, body: frame.body.clone() }, now)
    }

    /// [`Session::handle_frame`] for a frame the caller gives up: the record
    /// is decrypted in its own buffer, without a copy.
    pub fn handle_record(&mut self, frame: Frame, now: Instant) -> Result<Received, Error> {
        if self.received_close {
            return Err(Misbehavior::DataAfterClose.into());
        }
        match frame.kind {
            FrameKind::Record => {}
            // The server refuses a client's last flight (a bad ClientAuth or
            // Finished) with a plaintext alert, because the client has already
            // moved to application keys. Such an alert is as unauthenticated
            // as any handshake alert and is accepted only where it can occur:
            // before the peer's first record.
            FrameKind::Alert if !self.received_record => {
                let code = AlertCode::from_u8(frame.body.first().copied().unwrap_or_default());
                return Err(Error::AlertReceived(code));
            }
            // Later, a plaintext frame can only come from someone else.
            _ => return Err(Misbehavior::UnexpectedMessage.into()),
        }
        let (ty, content) = self.opener.open_owned(&frame.header, frame.body)?;
        self.received_record = true;
        match ty {
            ContentType::ApplicationData => Ok(Received::Data(content)),
            ContentType::KeyUpdate => {
                let request = match content.as_slice() {
                    [0] => false,
                    [1] => true,
                    _ => return Err(DecodeError::IllegalValue.into()),
                };
                self.opener.update(now)?;
                if request {
                    self.update_requested = true;
                }
                Ok(Received::KeyUpdate)
            }
            ContentType::Alert => match content.as_slice() {
                [0] => {
                    self.received_close = true;
                    Ok(Received::CloseNotify)
                }
                [code] => Err(Error::AlertReceived(AlertCode::from_u8(*code))),
                _ => Err(DecodeError::BadInnerPlaintext.into()),
            },
            ContentType::Handshake => Err(Misbehavior::UnexpectedMessage.into()),
        }
    }

    /// A clean close: the close_notify frame to send. Nothing can be sent after.
    pub fn close(&mut self) -> Result<Vec<u8>, Error> {
        self.alert(AlertCode::CloseNotify)
    }

    /// An encrypted alert frame to send before closing after an error.
    pub fn alert(&mut self, code: AlertCode) -> Result<Vec<u8>, Error> {
        if self.sent_close {
            return Err(Error::ApiMisuse("already closed"));
        }
        self.sent_close = true;
        self.sealer.seal(ContentType::Alert, &[code.to_u8()])
    }

    /// Call when the byte stream ends: an error unless the peer sent
    /// close_notify first (a truncation attack otherwise goes unnoticed).
    pub fn handle_eof(&self) -> Result<(), Error> {
        if self.received_close { Ok(()) } else { Err(Error::Truncated) }
    }

    /// Whether the peer has closed cleanly.
    #[must_use]
    pub fn peer_closed(&self) -> bool {
        self.received_close
    }
}

/// Splits a frame's bytes as they would arrive into a [`Frame`]; a helper
/// for tests and simple drivers that already hold whole frames.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame, Error> {
    let mut d = crate::frame::Deframer::new();
    d.push(bytes);
    let frame = d.next_frame()?.ok_or(Error::Truncated)?;
    if d.buffered() != 0 {
        return Err(DecodeError::TrailingBytes.into());
    }
    Ok(frame)
}
