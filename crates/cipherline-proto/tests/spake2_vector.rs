//! The SPAKE2 test vector of PROTOCOL.md §7.7, recomputed from the group
//! operations the spec describes (curve25519-dalek, HKDF and SHA-256 used
//! directly, as another implementation would) and checked against what the
//! reference implementation's password mode sends and derives.
//!
//! To rewrite the file after a deliberate change:
//! `CIPHERLINE_WRITE_VECTORS=1 cargo test -p cipherline-proto --test spake2_vector`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cipherline_proto::ServerConfig;
use cipherline_proto::crypto::pake::{self, Password};
use cipherline_proto::crypto::{Rng, SeededRng};
use cipherline_proto::handshake::server::ExpectClientHello;
use common::testdata;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PASSWORD: &[u8] = b"correct horse battery staple";
const NAME: &str = "alice";
/// Seeds of the two sides' `SeededRng`s (PROTOCOL.md appendix A.1).
const CLIENT_SEED: [u8; 32] = [0xc1; 32];
const SERVER_SEED: [u8; 32] = [0x5e; 32];
/// M and N exactly as PROTOCOL.md §7.7 prints them.
const M: &str = "15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312";
const N: &str = "f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3";

fn point(hex_str: &str) -> EdwardsPoint {
    let bytes: [u8; 32] = hex::decode(hex_str).unwrap().try_into().unwrap();
    CompressedEdwardsY(bytes).decompress().unwrap()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// §7.7: w = HKDF-SHA256(salt = empty, IKM = password, info = "SPAKE2 pw",
/// L = 48), read as a big-endian integer, reduced modulo ℓ.
fn password_scalar(password: &[u8]) -> Scalar {
    let mut okm = [0u8; 48];
    hkdf::Hkdf::<Sha256>::new(Some(b""), password).expand(b"SPAKE2 pw", &mut okm).unwrap();
    let mut le = [0u8; 64];
    for (i, b) in okm.iter().enumerate() {
        le[47 - i] = *b;
    }
    Scalar::from_bytes_mod_order_wide(&le)
}

/// §7.7: the 64 bytes a side's SPAKE2 scalar is made from, as the reference
/// implementation draws them: a 32-byte seed from the side's generator, then
/// the first 64 bytes of a `SeededRng` over that seed.
fn scalar_bytes(side_seed: [u8; 32]) -> [u8; 64] {
    let mut outer = SeededRng::new_for_testing_only(side_seed);
    let mut inner_seed = [0u8; 32];
    outer.try_fill(&mut inner_seed).unwrap();
    let mut inner = SeededRng::new_for_testing_only(inner_seed);
    let mut out = [0u8; 64];
    inner.try_fill(&mut out).unwrap();
    out
}

/// The ServerIdentity message bytes of a password-only server (no
/// randomness: versions, empty key, suites, the pake extension).
fn server_identity() -> Vec<u8> {
    let config = Arc::new(ServerConfig::password_only(Password::new(PASSWORD.to_vec()).unwrap()));
    let (_, frame) = ExpectClientHello::new(config).unwrap();
    frame[3..].to_vec()
}

/// The vector, computed from the spec's description alone.
fn from_the_spec() -> Value {
    let si = server_identity();
    let h = sha256(&[&si]);
    let id_a = [b"cipherline1 client ".as_slice(), NAME.as_bytes()].concat();
    let id_b = [b"cipherline1 server ".as_slice(), h.as_slice()].concat();
    let w = password_scalar(PASSWORD);
    let (xb, yb) = (scalar_bytes(CLIENT_SEED), scalar_bytes(SERVER_SEED));
    let x = Scalar::from_bytes_mod_order_wide(&xb);
    let y = Scalar::from_bytes_mod_order_wide(&yb);
    let (m, n) = (point(M), point(N));
    let big_x = ED25519_BASEPOINT_POINT * x + m * w;
    let big_y = ED25519_BASEPOINT_POINT * y + n * w;
    let k_client = (big_y - n * w) * x;
    let k_server = (big_x - m * w) * y;
    assert_eq!(k_client, k_server, "both sides compute the same K");
    let (xc, yc, kc) = (big_x.compress().to_bytes(), big_y.compress().to_bytes(), k_client.compress().to_bytes());
    let key = sha256(&[&sha256(&[PASSWORD]), &sha256(&[&id_a]), &sha256(&[&id_b]), &xc, &yc, &kc]);
    json!({
        "password": hex::encode(PASSWORD),
        "client_name": NAME,
        "server_identity": hex::encode(&si),
        "id_a": hex::encode(&id_a),
        "id_b": hex::encode(&id_b),
        "w": hex::encode(w.to_bytes()),
        "client_scalar_bytes": hex::encode(xb),
        "server_scalar_bytes": hex::encode(yb),
        "x": hex::encode(x.to_bytes()),
        "y": hex::encode(y.to_bytes()),
        "client_message": hex::encode([[0x41].as_slice(), &xc].concat()),
        "server_message": hex::encode([[0x42].as_slice(), &yc].concat()),
        "k": hex::encode(kc),
        "pake_ss": hex::encode(key),
    })
}

#[test]
fn the_published_spake2_vector_matches_the_spec_and_the_implementation() {
    let spec = from_the_spec();
    let path = format!("{}/../../testdata/vectors/spake2-ed25519.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("CIPHERLINE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_slice(&testdata("vectors/spake2-ed25519.json")).unwrap();
    assert_eq!(spec, stored, "the spec's computation differs from the published vector");

    // What the reference implementation sends and derives with the same seeds.
    let password = Password::new(PASSWORD.to_vec()).unwrap();
    let h = sha256(&[&server_identity()]);
    let (client, client_msg) =
        pake::client_start(&password, NAME, &h, &mut SeededRng::new_for_testing_only(CLIENT_SEED)).unwrap();
    let (server, server_msg) =
        pake::server_start(&password, NAME, &h, &mut SeededRng::new_for_testing_only(SERVER_SEED)).unwrap();
    assert_eq!(hex::encode(&client_msg), stored["client_message"].as_str().unwrap());
    assert_eq!(hex::encode(&server_msg), stored["server_message"].as_str().unwrap());
    let client_key = client.finish(&server_msg).unwrap();
    let server_key = server.finish(&client_msg).unwrap();
    assert_eq!(hex::encode(client_key.expose()), stored["pake_ss"].as_str().unwrap());
    assert_eq!(client_key.expose(), server_key.expose());
}
