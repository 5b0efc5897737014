//! The key schedule: HKDF-SHA256 over the KEM secrets and the transcript
//! hash, in the manner of TLS 1.3 (RFC 8446 §7.1) (PROTOCOL.md §6).
//!
//! ```text
//! s0  = Extract(salt = 0^32,              ikm = static_ss)
//! s1  = Extract(salt = Derive(s0, "derived"), ikm = eph_ss)
//! hs  = Extract(salt = Derive(s1, "derived"), ikm = pake_ss or 0^32)
//!       c hs traffic = Derive-Secret(hs, "c hs traffic", TH(ServerIdentity..ServerHello))
//!       s hs traffic = Derive-Secret(hs, "s hs traffic", TH(ServerIdentity..ServerHello))
//! ms  = Extract(salt = Derive(hs, "derived"), ikm = 0^32)
//!       c ap traffic = Derive-Secret(ms, "c ap traffic", TH(ServerIdentity..client Finished))
//!       s ap traffic = Derive-Secret(ms, "s ap traffic", TH(ServerIdentity..client Finished))
//!       exporter     = Derive-Secret(ms, "exp master",   TH(ServerIdentity..client Finished))
//! ```

use aws_lc_rs::hkdf::Prk;

use crate::Error;
use crate::crypto::kdf::{self, HASH_LEN, Secret};

const ZEROS: [u8; HASH_LEN] = [0; HASH_LEN];

/// `Derive-Secret(prk, "derived", SHA-256(""))`, the salt of the next stage.
fn derived(prk: &Prk) -> Result<Secret, Error> {
    kdf::expand_label(prk, b"derived", &kdf::empty_hash())
}

/// Secrets after ServerHello: the handshake traffic secrets and the state
/// needed to reach the application secrets.
pub struct HandshakeSchedule {
    handshake: Prk,
    client: Secret,
    server: Secret,
}

impl HandshakeSchedule {
    /// Runs the schedule up to the handshake traffic secrets.
    ///
    /// `eph_ss` is the ephemeral KEM secret (32 zero bytes for a suite without
    /// one); `pake_ss` is the password-mode secret, absent in version 1's
    /// key-only mode; `th` is the transcript hash through ServerHello.
    pub fn new(
        static_ss: &Secret,
        eph_ss: &[u8],
        pake_ss: Option<&Secret>,
        th: &[u8; HASH_LEN],
    ) -> Result<Self, Error> {
        let s0 = kdf::extract(&ZEROS, static_ss.expose());
        let s1 = kdf::extract(derived(&s0)?.expose(), eph_ss);
        let pake = pake_ss.map_or(&ZEROS, Secret::expose);
        let handshake = kdf::extract(derived(&s1)?.expose(), pake);
        let client = kdf::expand_label(&handshake, b"c hs traffic", th)?;
        let server = kdf::expand_label(&handshake, b"s hs traffic", th)?;
        Ok(HandshakeSchedule { handshake, client, server })
    }

    /// The client's handshake traffic secret.
    #[must_use]
    pub fn client_secret(&self) -> &Secret {
        &self.client
    }

    /// The server's handshake traffic secret.
    #[must_use]
    pub fn server_secret(&self) -> &Secret {
        &self.server
    }

    /// The client's Finished MAC over transcript hash `th`.
    pub fn client_finished(&self, th: &[u8; HASH_LEN]) -> Result<[u8; HASH_LEN], Error> {
        Ok(kdf::hmac(&finished_key(&self.client)?, th))
    }

    /// The server's Finished MAC over transcript hash `th`.
    pub fn server_finished(&self, th: &[u8; HASH_LEN]) -> Result<[u8; HASH_LEN], Error> {
        Ok(kdf::hmac(&finished_key(&self.server)?, th))
    }

    /// Checks a client Finished in constant time.
    pub fn verify_client_finished(&self, th: &[u8; HASH_LEN], tag: &[u8]) -> Result<bool, Error> {
        Ok(kdf::hmac_verify(&finished_key(&self.client)?, th, tag))
    }

    /// Checks a server Finished in constant time.
    pub fn verify_server_finished(&self, th: &[u8; HASH_LEN], tag: &[u8]) -> Result<bool, Error> {
        Ok(kdf::hmac_verify(&finished_key(&self.server)?, th, tag))
    }

    /// Derives the application secrets; `th` is the transcript hash through
    /// the client's Finished. The handshake secrets are dropped (and erased).
    pub fn into_application(self, th: &[u8; HASH_LEN]) -> Result<ApplicationSecrets, Error> {
        let master = kdf::extract(derived(&self.handshake)?.expose(), &ZEROS);
        Ok(ApplicationSecrets {
            client: kdf::expand_label(&master, b"c ap traffic", th)?,
            server: kdf::expand_label(&master, b"s ap traffic", th)?,
            exporter: kdf::expand_label(&master, b"exp master", th)?,
        })
    }
}

fn finished_key(traffic: &Secret) -> Result<Secret, Error> {
    kdf::expand_label(&kdf::prk(traffic), b"finished", b"")
}

/// The first application traffic secrets and the exporter secret.
pub struct ApplicationSecrets {
    /// Client → server traffic secret (generation 0).
    pub client: Secret,
    /// Server → client traffic secret (generation 0).
    pub server: Secret,
    /// Secret for [`export`]: keys for applications bound to this session.
    pub exporter: Secret,
}

/// Derives `out.len()` bytes bound to this session for an application
/// purpose named by `label` (like TLS exporters, RFC 8446 §7.5).
pub fn export(exporter: &Secret, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let per_label = kdf::expand_label(&kdf::prk(exporter), label, &kdf::empty_hash())?;
    kdf::expand_label_into(&kdf::prk(&per_label), b"exporter", &crate::crypto::sha256(context), out)
}
