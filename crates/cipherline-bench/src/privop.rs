//! `private-op`: how many times per second this core performs the server's
//! one private-key operation (RSA-OAEP decryption or X25519), through the
//! same function the server's handshake calls. This is the ceiling of
//! handshakes per second per core with that key, measured with the library
//! the server really uses (aws-lc), beside `openssl speed`.

use std::path::Path;
use std::time::{Duration, Instant};

use cipherline_keys::{LoadOptions, load_server_key};
use cipherline_proto::crypto::{Rng, SystemRng};

use crate::stats::own_cpu_secs;
use crate::{BenchError, Report, round3};

/// Runs decapsulations of a random ciphertext for `duration` on this thread.
///
/// For RSA the ciphertext is random below the modulus: OAEP decoding then
/// fails and the core returns its implicit-rejection secret, after exactly
/// the same private-key transform a valid ciphertext costs (that is the
/// point of implicit rejection), so the rate is the handshake's.
pub fn run(key_path: &Path, duration: Duration) -> Result<Report, BenchError> {
    let key = load_server_key(key_path, &LoadOptions::new())?;
    let public = key.public_key();
    let mut rng = SystemRng;
    let mut ct = vec![0u8; public.ciphertext_len()];
    rng.try_fill(&mut ct).map_err(|e| BenchError::Usage(format!("randomness: {e}")))?;
    if let Some(first) = ct.first_mut() {
        // Below any modulus of this length, so the transform runs in full.
        *first = 0;
    }
    let cpu0 = own_cpu_secs();
    let start = Instant::now();
    let mut ops: u64 = 0;
    while start.elapsed() < duration {
        for _ in 0..16 {
            let secret = key.decapsulate(&ct, &mut rng).map_err(|e| BenchError::Usage(format!("decapsulate: {e}")))?;
            drop(secret);
        }
        ops += 16;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = own_cpu_secs().zip(cpu0).map(|(b, a)| b - a);
    let mut report = Report::new();
    report
        .set("mode", "private_op")
        .set("key", public.rsa_bits().map_or_else(|| "X25519".to_owned(), |b| format!("RSA-{b}")))
        .set("ops", ops)
        .set("secs", round3(secs))
        .set("ops_per_sec", round3(ops as f64 / secs));
    if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
        report.set("ops_per_cpu_sec", round3(ops as f64 / cpu));
    }
    Ok(report)
}
