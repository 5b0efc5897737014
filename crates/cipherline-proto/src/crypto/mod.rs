//! The crypto provider: a thin, typed layer over aws-lc-rs.
//!
//! Nothing in this crate calls aws-lc-rs except through this module, and no
//! primitive is implemented here: every operation is one aws-lc-rs call plus
//! the length and policy checks the protocol needs.
//!
//! Randomness comes from the [`Rng`] the caller passes in, with one documented
//! exception: aws-lc-rs takes no RNG for RSA-OAEP padding seeds, RSA-PSS salts,
//! ML-KEM key generation and ML-KEM encapsulation, and draws those from its own
//! internal DRBG. Test vectors therefore record those values (PROTOCOL.md
//! appendix A) instead of reproducing them from a seed.
//!
//! Key objects owned by aws-lc-rs are freed by AWS-LC, which cleanses their
//! memory on free; byte buffers holding secrets here are `Zeroizing`.

pub mod aead;
pub mod kdf;
pub mod kem;
pub mod pake;
pub mod sign;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom as _;

use crate::Error;

/// A source of cryptographically secure random bytes, passed into the core.
pub trait Rng {
    /// Fills `dest` with random bytes.
    fn try_fill(&mut self, dest: &mut [u8]) -> Result<(), Error>;
}

/// The operating system's randomness via aws-lc-rs: what real drivers pass in.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRng;

impl Rng for SystemRng {
    fn try_fill(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        aws_lc_rs::rand::SystemRandom::new().fill(dest).map_err(|_| Error::Internal)
    }
}

/// A predictable RNG for tests, benchmarks and published test vectors.
///
/// Block `i` of the output is `SHA-256(seed || i as u64 big-endian)`. It is
/// entirely predictable from its seed: never use it for a real connection.
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    /// A generator whose whole output is fixed by `seed`.
    #[must_use]
    pub fn new_for_testing_only(seed: [u8; 32]) -> Self {
        SeededRng { seed, counter: 0, block: [0; 32], used: 32 }
    }

    /// The same generator over a fresh, secret seed drawn from a real RNG:
    /// then its output is as unpredictable as the seed (hash-DRBG style).
    pub(crate) fn from_secret_seed(seed: [u8; 32]) -> Self {
        SeededRng { seed, counter: 0, block: [0; 32], used: 32 }
    }
}

impl Drop for SeededRng {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.seed.zeroize();
        self.block.zeroize();
    }
}

impl Rng for SeededRng {
    fn try_fill(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        for byte in dest.iter_mut() {
            if self.used == self.block.len() {
                let mut ctx = digest::Context::new(&digest::SHA256);
                ctx.update(&self.seed);
                ctx.update(&self.counter.to_be_bytes());
                self.block.copy_from_slice(ctx.finish().as_ref());
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block.get(self.used).copied().unwrap_or_default();
            self.used += 1;
        }
        Ok(())
    }
}

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// Streaming SHA-256, for hashing files of any size in constant memory.
#[derive(Clone)]
pub struct Sha256(digest::Context);

impl Sha256 {
    /// An empty hash state.
    #[must_use]
    pub fn new() -> Self {
        Sha256(digest::Context::new(&digest::SHA256))
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The hash of everything added.
    #[must_use]
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

/// Draws `N` random bytes.
pub(crate) fn random_array<const N: usize>(rng: &mut dyn Rng) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    rng.try_fill(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_rng_is_deterministic_and_seed_dependent() {
        let mut a = SeededRng::new_for_testing_only([1; 32]);
        let mut b = SeededRng::new_for_testing_only([1; 32]);
        let mut c = SeededRng::new_for_testing_only([2; 32]);
        let (mut x, mut y, mut z) = ([0u8; 70], [0u8; 70], [0u8; 70]);
        a.try_fill(&mut x).unwrap();
        // Different chunking gives the same stream.
        b.try_fill(&mut y[..5]).unwrap();
        b.try_fill(&mut y[5..]).unwrap();
        c.try_fill(&mut z).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_eq!(&x[..32], &sha256(&[[1u8; 32].as_slice(), &0u64.to_be_bytes()].concat()));
    }

    #[test]
    fn system_rng_fills() {
        let mut a = [0u8; 32];
        SystemRng.try_fill(&mut a).unwrap();
        assert_ne!(a, [0u8; 32]);
    }
}
