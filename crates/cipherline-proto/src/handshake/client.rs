//! The client's side of the handshake.
//!
//! [`ExpectServerIdentity`] → [`VerifyServerKey`] → [`ExpectServerHello`] →
//! [`ExpectServerFinished`] → [`Session`].

use std::sync::Arc;
use std::time::Instant;

use super::{ClientConfig, client_auth_input, expect_plain, open_encrypted};
use crate::crypto::kdf::{Secret, Transcript};
use crate::crypto::kem::{self, EphemeralSecret, ServerPublicKey};
use crate::crypto::{Rng, random_array};
use crate::error::{AuthFailure, Error, Incompatibility, Misbehavior};
use crate::frame::{Frame, FrameKind};
use crate::keyschedule::HandshakeSchedule;
use crate::message::{
    ClientAuth, ClientAuthRequest, ClientHello, Extensions, Finished, MessageType, ServerHello, ServerIdentity,
    VERSION_1,
};
use crate::record::{ContentType, RecordOpener, RecordSealer};
use crate::session::{Role, Session, SessionParams};
use crate::suite::Suite;

/// Start: waiting for the server's first message.
pub struct ExpectServerIdentity {
    config: Arc<ClientConfig>,
}

impl ExpectServerIdentity {
    /// Begins a client handshake.
    pub fn new(config: Arc<ClientConfig>) -> Result<Self, Error> {
        config.key_update.validate()?;
        if config.suites.is_empty() {
            return Err(Error::InvalidConfig("no suites configured"));
        }
        Ok(ExpectServerIdentity { config })
    }

    /// Reads ServerIdentity, picks the version and suite, and parses the
    /// server's key. The caller must then decide whether to trust the key.
    pub fn handle_server_identity(self, frame: &Frame) -> Result<VerifyServerKey, Error> {
        let body = expect_plain(frame, MessageType::ServerIdentity)?;
        let identity = ServerIdentity::decode(body)?;
        if !identity.versions.contains(&VERSION_1) {
            return Err(Incompatibility::NoCommonVersion.into());
        }
        let server_key = ServerPublicKey::from_spki(&identity.server_key)?;
        let kem = server_key.static_kem();
        // The client's own preference decides; the server's list only filters.
        // A man in the middle who removes suites from this list changes the
        // transcript, so the server's Finished will not verify (§10.5).
        let suite = self
            .config
            .suites
            .iter()
            .copied()
            .filter(|s| s.static_kem == kem)
            .filter(|s| s.has_forward_secrecy() || self.config.dangerous_allow_no_forward_secrecy)
            .find(|s| identity.suites.contains(&s.to_u16()))
            .ok_or(Incompatibility::NoCommonSuite)?;
        let mut transcript = Transcript::new();
        transcript.add(&frame.body);
        Ok(VerifyServerKey { config: self.config, transcript, server_key, suite })
    }
}

/// The server's key is known; the caller decides whether to trust it.
pub struct VerifyServerKey {
    config: Arc<ClientConfig>,
    transcript: Transcript,
    server_key: ServerPublicKey,
    suite: Suite,
}

impl VerifyServerKey {
    /// The key the server claims. Check it against a pin, the known-servers
    /// file or the user before calling [`VerifyServerKey::into_client_hello`].
    #[must_use]
    pub fn server_key(&self) -> &ServerPublicKey {
        &self.server_key
    }

    /// The suite that will be used.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Trusts the key: encapsulates to it and returns the ClientHello frame.
    pub fn into_client_hello(mut self, rng: &mut dyn Rng) -> Result<(ExpectServerHello, Vec<u8>), Error> {
        let random = random_array(rng)?;
        let (eph_secret, ephemeral_share) = kem::ephemeral_generate(self.suite.ephemeral_kem, rng)?;
        let (static_ciphertext, static_ss) = self.server_key.encapsulate(rng)?;
        let hello = ClientHello {
            version: VERSION_1,
            random,
            suite: self.suite.to_u16(),
            ephemeral_share,
            static_ciphertext,
            extensions: Extensions::default(),
        }
        .encode()?;
        self.transcript.add(&hello);
        let next = ExpectServerHello {
            config: self.config,
            transcript: self.transcript,
            server_key: self.server_key,
            suite: self.suite,
            eph_secret,
            static_ss,
        };
        Ok((next, Frame::encode(FrameKind::Handshake, &hello)))
    }
}

/// ClientHello sent; waiting for ServerHello.
pub struct ExpectServerHello {
    config: Arc<ClientConfig>,
    transcript: Transcript,
    server_key: ServerPublicKey,
    suite: Suite,
    eph_secret: Option<EphemeralSecret>,
    static_ss: Secret,
}

impl ExpectServerHello {
    /// The client's ML-KEM decapsulation key, for publishing test vectors
    /// only (see [`EphemeralSecret::mlkem_key_bytes_for_testing_only`]).
    pub fn mlkem_key_bytes_for_testing_only(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        self.eph_secret.as_ref()?.mlkem_key_bytes_for_testing_only()
    }

    /// Reads ServerHello and derives the handshake keys.
    pub fn handle_server_hello(mut self, frame: &Frame, now: Instant) -> Result<ExpectServerFinished, Error> {
        let body = expect_plain(frame, MessageType::ServerHello)?;
        let hello = ServerHello::decode(body)?;
        // This client sent no extensions, so the server may send none back.
        if !hello.extensions.0.is_empty() {
            return Err(Misbehavior::UnsolicitedExtension.into());
        }
        let eph_ss = match self.eph_secret.take() {
            Some(secret) => secret.finish(&hello.ephemeral_share, self.suite.ephemeral_kem)?,
            None if hello.ephemeral_share.is_empty() => kem::EphemeralSharedSecret::none(),
            None => return Err(crate::error::DecodeError::KeyEncoding.into()),
        };
        self.transcript.add(&frame.body);
        let schedule = HandshakeSchedule::new(&self.static_ss, eph_ss.expose(), None, &self.transcript.hash())?;
        let opener = RecordOpener::new(self.suite.aead, schedule.server_secret().clone(), now)?;
        Ok(ExpectServerFinished {
            config: self.config,
            transcript: self.transcript,
            server_key: self.server_key,
            suite: self.suite,
            client_auth: hello.client_auth,
            schedule,
            opener,
        })
    }
}

/// ServerHello received; waiting for the server's encrypted Finished.
pub struct ExpectServerFinished {
    config: Arc<ClientConfig>,
    transcript: Transcript,
    server_key: ServerPublicKey,
    suite: Suite,
    client_auth: ClientAuthRequest,
    schedule: HandshakeSchedule,
    opener: RecordOpener,
}

impl ExpectServerFinished {
    /// Verifies the server's Finished (proof that it holds the private key
    /// the client encapsulated to), then returns the session and the frames
    /// to send: [ClientAuth] and Finished. Application data may be sent right
    /// after these frames.
    pub fn handle_server_finished(mut self, frame: &Frame, now: Instant) -> Result<(Session, Vec<u8>), Error> {
        let (ty, message) = open_encrypted(&mut self.opener, frame, AuthFailure::ServerFinished)?;
        if ty != MessageType::Finished {
            return Err(Misbehavior::UnexpectedMessage.into());
        }
        let (_, body) = crate::message::split_message(&message)?;
        let finished = Finished::decode(body)?;
        if !self.schedule.verify_server_finished(&self.transcript.hash(), &finished.verify_data)? {
            return Err(AuthFailure::ServerFinished.into());
        }
        self.transcript.add(&message);

        let mut sealer = RecordSealer::new(self.suite.aead, self.schedule.client_secret().clone(), now)?;
        let mut out = Vec::new();
        let identity = match (self.client_auth, &self.config.identity) {
            (ClientAuthRequest::None, _) | (ClientAuthRequest::Optional, None) => None,
            (ClientAuthRequest::Required, None) => return Err(Incompatibility::IdentityRequired.into()),
            (_, Some(identity)) => Some(identity),
        };
        if let Some(identity) = identity {
            let signature = identity.sign(&client_auth_input(&self.transcript.hash()))?;
            let public = identity.public_key();
            let auth =
                ClientAuth { algorithm: public.algorithm().to_u16(), public_key: public.spki().to_vec(), signature }
                    .encode()?;
            out.extend_from_slice(&sealer.seal(ContentType::Handshake, &auth)?);
            self.transcript.add(&auth);
        }
        let verify_data = self.schedule.client_finished(&self.transcript.hash())?;
        let fin = Finished { verify_data }.encode()?;
        out.extend_from_slice(&sealer.seal(ContentType::Handshake, &fin)?);
        self.transcript.add(&fin);

        let handshake_hash = self.transcript.hash();
        let secrets = self.schedule.into_application(&handshake_hash)?;
        let session = Session::new(SessionParams {
            role: Role::Client,
            suite: self.suite,
            secrets,
            handshake_hash,
            server_key: self.server_key,
            peer_identity: None,
            key_update: self.config.key_update,
            now,
        })?;
        Ok((session, out))
    }
}
