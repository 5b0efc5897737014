//! The client's side of the handshake.
//!
//! [`ExpectServerIdentity`] → [`VerifyServerKey`] → [`ExpectServerHello`] →
//! [`ExpectServerFinished`] → [`Session`].

use std::sync::Arc;
use std::time::Instant;

use super::{ClientConfig, PAKE_SPAKE2_ED25519, client_auth_input, encode_client_pake, expect_plain, open_encrypted};
use crate::app::MAX_NAME;
use crate::crypto::kdf::HASH_LEN;
use crate::crypto::kdf::{Secret, Transcript};
use crate::crypto::kem::{self, EphemeralSecret, ServerPublicKey};
use crate::crypto::pake::{self, PakeState};
use crate::crypto::{Rng, random_array};
use crate::error::{AuthFailure, DecodeError, Error, Incompatibility, Misbehavior};
use crate::frame::{Frame, FrameKind};
use crate::keyschedule::HandshakeSchedule;
use crate::message::{
    ClientAuth, ClientAuthRequest, ClientHello, EXT_PAKE, Extensions, Finished, MessageType, ServerHello,
    ServerIdentity, VERSION_1,
};
use crate::record::{ContentType, RecordOpener, RecordSealer};
use crate::session::{Role, Session, SessionParams};
use crate::suite::{StaticKem, Suite};

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
        if config.password.is_some() && !config.name.as_ref().is_some_and(|n| !n.is_empty() && n.len() <= MAX_NAME) {
            return Err(Error::InvalidConfig("password mode needs the client's name (1 to 64 bytes)"));
        }
        if config.password_only && config.password.is_none() {
            return Err(Error::InvalidConfig("password-only mode needs a password"));
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
        // Password mode is announced in ServerIdentity (§7.7). A client with
        // a password insists on it, and a client without one cannot join.
        let pake = match identity.extensions.get(EXT_PAKE) {
            Some(data) if data == PAKE_SPAKE2_ED25519 => true,
            Some(_) => return Err(DecodeError::IllegalValue.into()),
            None => false,
        };
        match (pake, self.config.password.is_some()) {
            (true, false) => return Err(Incompatibility::PasswordRequired.into()),
            (false, true) => return Err(Incompatibility::PasswordNotOffered.into()),
            _ => {}
        }
        // No key at all is password-only mode, valid only with the password,
        // and only if the user asked for it: a man in the middle who knows
        // the password could otherwise present a keyless ServerIdentity in
        // place of a key-and-password server's, and the key check (pin,
        // known servers) would have no key to look at.
        let server_key = if identity.server_key.is_empty() && pake {
            if !self.config.password_only {
                return Err(Incompatibility::KeylessServer.into());
            }
            None
        } else {
            Some(ServerPublicKey::from_spki(&identity.server_key)?)
        };
        let kem = server_key.as_ref().map_or(StaticKem::None, ServerPublicKey::static_kem);
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
        Ok(VerifyServerKey { config: self.config, transcript, server_key, suite, pake })
    }
}

/// The server's key is known; the caller decides whether to trust it.
pub struct VerifyServerKey {
    config: Arc<ClientConfig>,
    transcript: Transcript,
    server_key: Option<ServerPublicKey>,
    suite: Suite,
    pake: bool,
}

impl VerifyServerKey {
    /// The key the server claims. Check it against a pin, the known-servers
    /// file or the user before calling [`VerifyServerKey::into_client_hello`].
    /// `None` in password-only mode: then the password authenticates the
    /// server and there is no key to check.
    #[must_use]
    pub fn server_key(&self) -> Option<&ServerPublicKey> {
        self.server_key.as_ref()
    }

    /// Whether the handshake runs the password exchange.
    #[must_use]
    pub fn uses_password(&self) -> bool {
        self.pake
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
        let (static_ciphertext, static_ss) = match &self.server_key {
            Some(key) => key.encapsulate(rng)?,
            None => (Vec::new(), Secret::new([0; HASH_LEN])),
        };
        let mut extensions = Extensions::default();
        let pake = match (&self.config.password, &self.config.name) {
            (Some(password), Some(name)) if self.pake => {
                // The transcript so far is ServerIdentity alone, so its hash
                // is SHA-256(ServerIdentity): the server's PAKE identity.
                let (state, msg) = pake::client_start(password, name, &self.transcript.hash(), rng)?;
                extensions.0.push((EXT_PAKE, encode_client_pake(name, &msg)?));
                Some(state)
            }
            _ => None,
        };
        let hello = ClientHello {
            version: VERSION_1,
            random,
            suite: self.suite.to_u16(),
            ephemeral_share,
            static_ciphertext,
            extensions,
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
            pake,
        };
        Ok((next, Frame::encode(FrameKind::Handshake, &hello)))
    }
}

/// ClientHello sent; waiting for ServerHello.
pub struct ExpectServerHello {
    config: Arc<ClientConfig>,
    transcript: Transcript,
    server_key: Option<ServerPublicKey>,
    suite: Suite,
    eph_secret: Option<EphemeralSecret>,
    static_ss: Secret,
    pake: Option<PakeState>,
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
        // Only the PAKE extension, and only if this client sent one.
        let pake_ss = match (self.pake.take(), hello.extensions.0.as_slice()) {
            (None, []) => None,
            (Some(state), [(EXT_PAKE, msg)]) => Some(state.finish(msg)?),
            (Some(_), []) => return Err(Incompatibility::PasswordRequired.into()),
            _ => return Err(Misbehavior::UnsolicitedExtension.into()),
        };
        let eph_ss = match self.eph_secret.take() {
            Some(secret) => secret.finish(&hello.ephemeral_share, self.suite.ephemeral_kem)?,
            None if hello.ephemeral_share.is_empty() => kem::EphemeralSharedSecret::none(),
            None => return Err(crate::error::DecodeError::KeyEncoding.into()),
        };
        self.transcript.add(&frame.body);
        let schedule =
            HandshakeSchedule::new(&self.static_ss, eph_ss.expose(), pake_ss.as_ref(), &self.transcript.hash())?;
        let opener = RecordOpener::new(self.suite.aead, schedule.server_secret().clone(), now)?;
        Ok(ExpectServerFinished {
            password: pake_ss.is_some(),
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
    password: bool,
    server_key: Option<ServerPublicKey>,
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
        // In password mode a failure here is, as far as anyone can tell,
        // a wrong password: say so rather than "bad key".
        let failure = if self.password { AuthFailure::Password } else { AuthFailure::ServerFinished };
        let (ty, message) = open_encrypted(&mut self.opener, frame, failure)?;
        if ty != MessageType::Finished {
            return Err(Misbehavior::UnexpectedMessage.into());
        }
        let (_, body) = crate::message::split_message(&message)?;
        let finished = Finished::decode(body)?;
        if !self.schedule.verify_server_finished(&self.transcript.hash(), &finished.verify_data)? {
            return Err(failure.into());
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
            pake_name: if self.password { self.config.name.clone() } else { None },
            key_update: self.config.key_update,
            now,
        })?;
        Ok((session, out))
    }
}
