//! The server's side of the handshake.
//!
//! [`ExpectClientHello`] → [`ExpectClientFinished`] (which takes an optional
//! ClientAuth first) → [`Session`].

use std::sync::Arc;
use std::time::Instant;

use super::{PAKE_SPAKE2_ED25519, ServerConfig, client_auth_input, decode_client_pake, expect_plain, open_encrypted};
use crate::crypto::kdf::{HASH_LEN, Secret, Transcript};
use crate::crypto::pake;
use crate::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use crate::crypto::{Rng, kem, random_array};
use crate::error::{AuthFailure, DecodeError, Error, Incompatibility, Misbehavior};
use crate::frame::{Frame, FrameKind};
use crate::keyschedule::HandshakeSchedule;
use crate::message::{
    self, ClientAuth, ClientAuthRequest, ClientHello, EXT_PAKE, Extensions, Finished, MessageType, ServerHello,
    ServerIdentity, VERSION_1,
};
use crate::record::{ContentType, RecordOpener, RecordSealer};
use crate::session::{Role, Session, SessionParams};
use crate::suite::Suite;

/// ServerIdentity sent; waiting for ClientHello.
pub struct ExpectClientHello {
    config: Arc<ServerConfig>,
    offered: Vec<u16>,
    transcript: Transcript,
}

impl ExpectClientHello {
    /// Begins a server handshake; returns the state and the ServerIdentity
    /// frame to send first.
    pub fn new(config: Arc<ServerConfig>) -> Result<(Self, Vec<u8>), Error> {
        let offered = config.offered()?;
        let mut extensions = Extensions::default();
        if config.password.is_some() {
            extensions.0.push((EXT_PAKE, PAKE_SPAKE2_ED25519.to_vec()));
        }
        let identity = ServerIdentity {
            versions: vec![VERSION_1],
            server_key: config.key.as_ref().map(|k| k.public_key().spki().to_vec()).unwrap_or_default(),
            suites: offered.clone(),
            extensions,
        }
        .encode()?;
        let mut transcript = Transcript::new();
        transcript.add(&identity);
        Ok((ExpectClientHello { config, offered, transcript }, Frame::encode(FrameKind::Handshake, &identity)))
    }

    /// Reads ClientHello, completes both KEMs and returns the ServerHello and
    /// encrypted Finished frames.
    pub fn handle_client_hello(
        mut self,
        frame: &Frame,
        rng: &mut dyn Rng,
        now: Instant,
    ) -> Result<(ExpectClientFinished, Vec<u8>), Error> {
        let body = expect_plain(frame, MessageType::ClientHello)?;
        let hello = ClientHello::decode(body)?;
        if hello.version != VERSION_1 {
            return Err(Misbehavior::VersionNotOffered.into());
        }
        if !self.offered.contains(&hello.suite) {
            return Err(Misbehavior::SuiteNotOffered.into());
        }
        let suite = Suite::from_u16(hello.suite).ok_or(Misbehavior::SuiteNotOffered)?;
        let static_ss = match &self.config.key {
            Some(key) => key.decapsulate(&hello.static_ciphertext, rng)?,
            None if hello.static_ciphertext.is_empty() => Secret::new([0; HASH_LEN]),
            None => return Err(DecodeError::KeyEncoding.into()),
        };
        let (ephemeral_share, eph_ss) = kem::ephemeral_respond(suite.ephemeral_kem, &hello.ephemeral_share, rng)?;
        // Password mode (§7.7): the client's PAKE message is required, and
        // answered. Without a password, ClientHello extensions are ignored
        // and nothing is sent unasked.
        let mut extensions = Extensions::default();
        let (pake_ss, pake_name) = match &self.config.password {
            Some(password) => {
                let data = hello.extensions.get(EXT_PAKE).ok_or(Incompatibility::PasswordRequired)?;
                let (name, client_msg) = decode_client_pake(data)?;
                // The transcript so far is ServerIdentity alone.
                let (state, msg) = pake::server_start(password, &name, &self.transcript.hash(), rng)?;
                let key = state.finish(client_msg)?;
                extensions.0.push((EXT_PAKE, msg));
                (Some(key), Some(name))
            }
            None => (None, None),
        };
        let server_hello = ServerHello {
            random: random_array(rng)?,
            ephemeral_share,
            client_auth: self.config.client_auth,
            extensions,
        }
        .encode()?;
        self.transcript.add(&frame.body);
        self.transcript.add(&server_hello);

        let schedule = HandshakeSchedule::new(&static_ss, eph_ss.expose(), pake_ss.as_ref(), &self.transcript.hash())?;
        let mut sealer = RecordSealer::new(suite.aead, schedule.server_secret().clone(), now)?;
        let fin = Finished { verify_data: schedule.server_finished(&self.transcript.hash())? }.encode()?;
        self.transcript.add(&fin);

        let mut out = Frame::encode(FrameKind::Handshake, &server_hello);
        out.extend_from_slice(&sealer.seal(ContentType::Handshake, &fin)?);
        let opener = RecordOpener::new(suite.aead, schedule.client_secret().clone(), now)?;
        let next = ExpectClientFinished {
            config: self.config,
            transcript: self.transcript,
            suite,
            schedule,
            opener,
            identity: None,
            pake_name,
        };
        Ok((next, out))
    }
}

/// What the server does after a client handshake record.
pub enum ServerStep {
    /// ClientAuth was accepted; the Finished is still to come.
    Continue(ExpectClientFinished),
    /// The handshake is complete.
    Done(Session),
}

/// Server Finished sent; waiting for [ClientAuth] and the client's Finished.
pub struct ExpectClientFinished {
    config: Arc<ServerConfig>,
    transcript: Transcript,
    suite: Suite,
    schedule: HandshakeSchedule,
    opener: RecordOpener,
    identity: Option<IdentityPublicKey>,
    pake_name: Option<String>,
}

impl ExpectClientFinished {
    /// Handles one encrypted handshake record from the client.
    pub fn handle_frame(mut self, frame: &Frame, now: Instant) -> Result<ServerStep, Error> {
        // In password mode a client that cannot finish most likely has the
        // wrong password; the caller counts that as a failed attempt.
        let failure = if self.pake_name.is_some() { AuthFailure::Password } else { AuthFailure::ClientFinished };
        let (ty, message) = open_encrypted(&mut self.opener, frame, failure)?;
        let (_, body) = message::split_message(&message)?;
        match ty {
            MessageType::ClientAuth => {
                if self.config.client_auth == ClientAuthRequest::None {
                    return Err(Misbehavior::ClientAuthUnrequested.into());
                }
                if self.identity.is_some() {
                    return Err(Misbehavior::UnexpectedMessage.into());
                }
                let auth = ClientAuth::decode(body)?;
                let algorithm =
                    SignatureAlgorithm::from_u16(auth.algorithm).ok_or(Incompatibility::UnsupportedSignature)?;
                let key = IdentityPublicKey::from_spki(algorithm, &auth.public_key)?;
                if !key.verify(&client_auth_input(&self.transcript.hash()), &auth.signature) {
                    return Err(AuthFailure::ClientSignature.into());
                }
                self.transcript.add(&message);
                self.identity = Some(key);
                Ok(ServerStep::Continue(self))
            }
            MessageType::Finished => {
                if self.config.client_auth == ClientAuthRequest::Required && self.identity.is_none() {
                    return Err(Misbehavior::ClientAuthMissing.into());
                }
                let finished = Finished::decode(body)?;
                if !self.schedule.verify_client_finished(&self.transcript.hash(), &finished.verify_data)? {
                    return Err(failure.into());
                }
                self.transcript.add(&message);
                let handshake_hash = self.transcript.hash();
                let secrets = self.schedule.into_application(&handshake_hash)?;
                let session = Session::new(SessionParams {
                    role: Role::Server,
                    suite: self.suite,
                    secrets,
                    handshake_hash,
                    server_key: self.config.key.as_ref().map(|k| k.public_key().clone()),
                    peer_identity: self.identity,
                    pake_name: self.pake_name,
                    key_update: self.config.key_update,
                    now,
                })?;
                Ok(ServerStep::Done(session))
            }
            _ => Err(Misbehavior::UnexpectedMessage.into()),
        }
    }

    /// The identity key the client proved, if it sent ClientAuth.
    #[must_use]
    pub fn client_identity(&self) -> Option<&IdentityPublicKey> {
        self.identity.as_ref()
    }
}
