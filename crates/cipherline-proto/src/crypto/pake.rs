//! Password mode: SPAKE2 over the Ed25519 group (the `spake2` crate, as
//! magic-wormhole uses it) (PROTOCOL.md §7.7).
//!
//! SPAKE2 is a balanced PAKE: both sides know the password, each sends one
//! message, and both end with the same 32-byte key only if the passwords
//! match. The messages are uniformly random-looking group elements, so a
//! recorded session lets an eavesdropper test no password guess offline;
//! an active attacker learns one guess per connection.

use rand_core::{CryptoRng, RngCore};
use spake2::{Ed25519Group, Identity, Password as SpakePassword, Spake2};
use zeroize::Zeroizing;

use super::kdf::{HASH_LEN, Secret};
use super::{Rng, SeededRng, random_array};
use crate::error::{DecodeError, Error};

/// Bytes in a SPAKE2-Ed25519 message (side byte and a group element).
pub const MESSAGE_LEN: usize = 33;
/// Identity prefix of the client (side A), followed by its name.
pub const CLIENT_IDENTITY_PREFIX: &[u8] = b"cipherline1 client ";
/// Identity prefix of the server (side B), followed by SHA-256 of its
/// ServerIdentity message.
pub const SERVER_IDENTITY_PREFIX: &[u8] = b"cipherline1 server ";

/// A shared password. Erased when dropped; no `Debug` or `Display`.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps password bytes (UTF-8 text as typed, without a trailing newline).
    pub fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Err(Error::InvalidConfig("the password is empty"));
        }
        Ok(Password(Zeroizing::new(bytes)))
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// Feeds spake2 (which takes rand_core 0.6) from a fresh seed drawn from
/// the caller's [`Rng`], so the core still takes all randomness from it.
struct SeedFed(SeededRng);

impl RngCore for SeedFed {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // SHA-256 in counter mode over a fresh secret seed cannot fail.
        let _ = self.0.try_fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeedFed {}

fn seed_fed(rng: &mut dyn Rng) -> Result<SeedFed, Error> {
    Ok(SeedFed(SeededRng::from_secret_seed(random_array(rng)?)))
}

fn identities(client_name: &str, server_identity_hash: &[u8; HASH_LEN]) -> (Identity, Identity) {
    let a = [CLIENT_IDENTITY_PREFIX, client_name.as_bytes()].concat();
    let b = [SERVER_IDENTITY_PREFIX, server_identity_hash.as_slice()].concat();
    (Identity::new(&a), Identity::new(&b))
}

/// One side's SPAKE2 state between sending its message and receiving the
/// peer's. No `Debug`.
pub struct PakeState(Spake2<Ed25519Group>);

/// Which side of SPAKE2 this end plays.
#[derive(Clone, Copy)]
enum Side {
    /// The client.
    A,
    /// The server.
    B,
}

fn start(
    side: Side,
    password: &Password,
    client_name: &str,
    server_identity_hash: &[u8; HASH_LEN],
    rng: &mut dyn Rng,
) -> Result<(PakeState, Vec<u8>), Error> {
    let (a, b) = identities(client_name, server_identity_hash);
    let pw = SpakePassword::new(password.expose());
    let rng = seed_fed(rng)?;
    let (state, msg) = match side {
        Side::A => Spake2::<Ed25519Group>::start_a_with_rng(&pw, &a, &b, rng),
        Side::B => Spake2::<Ed25519Group>::start_b_with_rng(&pw, &a, &b, rng),
    };
    Ok((PakeState(state), msg))
}

/// Starts SPAKE2 as the client (side A); returns the state and the message.
pub fn client_start(
    password: &Password,
    client_name: &str,
    server_identity_hash: &[u8; HASH_LEN],
    rng: &mut dyn Rng,
) -> Result<(PakeState, Vec<u8>), Error> {
    start(Side::A, password, client_name, server_identity_hash, rng)
}

/// Starts SPAKE2 as the server (side B); returns the state and the message.
pub fn server_start(
    password: &Password,
    client_name: &str,
    server_identity_hash: &[u8; HASH_LEN],
    rng: &mut dyn Rng,
) -> Result<(PakeState, Vec<u8>), Error> {
    start(Side::B, password, client_name, server_identity_hash, rng)
}

impl PakeState {
    /// Combines the peer's message into the shared key. A malformed message
    /// is a decode error; a wrong password is *not* detected here (the key
    /// simply differs) but by the Finished check that follows.
    pub fn finish(self, peer_message: &[u8]) -> Result<Secret, Error> {
        if peer_message.len() != MESSAGE_LEN {
            return Err(DecodeError::KeyEncoding.into());
        }
        let key = Zeroizing::new(self.0.finish(peer_message).map_err(|_| DecodeError::KeyEncoding)?);
        let bytes: [u8; HASH_LEN] = key.as_slice().try_into().map_err(|_| Error::Internal)?;
        Ok(Secret::new(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client_pw: &[u8], server_pw: &[u8]) -> (Secret, Secret) {
        let mut rng = SeededRng::new_for_testing_only([1; 32]);
        let h = [7u8; 32];
        let (c, cm) = client_start(&Password::new(client_pw.to_vec()).unwrap(), "alice", &h, &mut rng).unwrap();
        let (s, sm) = server_start(&Password::new(server_pw.to_vec()).unwrap(), "alice", &h, &mut rng).unwrap();
        assert_eq!((cm.len(), sm.len()), (MESSAGE_LEN, MESSAGE_LEN));
        (c.finish(&sm).unwrap(), s.finish(&cm).unwrap())
    }

    #[test]
    fn same_password_same_key_wrong_password_different_key() {
        let (a, b) = run(b"hello", b"hello");
        assert_eq!(a.expose(), b.expose());
        let (a, b) = run(b"hello", b"hellO");
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn malformed_peer_message_is_refused() {
        let mut rng = SeededRng::new_for_testing_only([1; 32]);
        let (c, _) = client_start(&Password::new(b"pw".to_vec()).unwrap(), "a", &[0; 32], &mut rng).unwrap();
        assert!(c.finish(&[0x42; 10]).is_err());
        assert!(Password::new(Vec::new()).is_err());
    }
}
