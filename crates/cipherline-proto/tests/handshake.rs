//! Every suite completes a handshake in memory and carries records both ways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cipherline_proto::suite::{Aead, EphemeralKem, StaticKem};
use cipherline_proto::{ClientConfig, ServerConfig, Suite};
use common::*;

fn exchange(h: &mut Handshake, clock: Clock) {
    let now = clock.0;
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    for msg in [&b"hello from the client"[..], b"", &big] {
        let wire = h.client.send(msg, now).unwrap();
        assert_eq!(data(&deliver(&mut h.server, &wire, now).unwrap()), msg);
        let wire = h.server.send(msg, now).unwrap();
        assert_eq!(data(&deliver(&mut h.client, &wire, now).unwrap()), msg);
    }
    let close = h.client.close().unwrap();
    assert_eq!(deliver(&mut h.server, &close, now).unwrap(), vec![cipherline_proto::Received::CloseNotify]);
    assert!(h.server.handle_eof().is_ok());
}

#[test]
fn every_suite_and_key_size_completes_and_exchanges_records() {
    let keys =
        [(rsa_key(2048), "rsa2048"), (rsa_key(3072), "rsa3072"), (rsa_key(4096), "rsa4096"), (x25519_key(), "x25519")];
    let mut completed = 0;
    for (key, name) in keys {
        let kem = key.public_key().static_kem();
        for suite in Suite::FORWARD_SECRET.into_iter().filter(|s| s.static_kem == kem) {
            let client = Arc::new(ClientConfig { suites: vec![suite], ..ClientConfig::default() });
            let clock = Clock::new();
            let mut h = handshake_with(client, server_config(key.clone()), 7, clock, |_, _| {}).unwrap();
            assert_eq!(h.client.suite(), suite, "{name}");
            assert_eq!(h.server.suite(), suite, "{name}");
            assert_eq!(h.client.handshake_hash(), h.server.handshake_hash());
            assert_eq!(h.client.server_key(), Some(key.public_key()));
            exchange(&mut h, clock);
            completed += 1;
        }
    }
    // 4 FS suites per static KEM: 3 RSA sizes x 4 + X25519 x 4.
    assert_eq!(completed, 16);
}

#[test]
fn default_is_the_strongest_suite_both_support() {
    let h = handshake(client_config(), server_config(rsa_key(3072)));
    assert_eq!(h.client.suite(), Suite::new(StaticKem::RsaOaepSha256, EphemeralKem::X25519MlKem768, Aead::Aes256Gcm));
    assert!(h.client.suite().is_post_quantum());

    // A server that offers only X25519 ephemeral gets that, still with AES-GCM.
    let server = Arc::new(ServerConfig {
        suites: vec![
            Suite::new(StaticKem::X25519, EphemeralKem::X25519, Aead::Aes256Gcm),
            Suite::new(StaticKem::X25519, EphemeralKem::X25519, Aead::ChaCha20Poly1305),
        ],
        ..ServerConfig::new(x25519_key())
    });
    let h = handshake(client_config(), server);
    assert_eq!(h.client.suite().to_u16(), 0x0211);
}

#[test]
fn seed_faithful_suite_needs_opt_in_on_both_sides() {
    let client_opt_in = Arc::new(ClientConfig {
        suites: vec![Suite::SEED_FAITHFUL],
        dangerous_allow_no_forward_secrecy: true,
        ..ClientConfig::default()
    });
    let server_opt_in = Arc::new(ServerConfig {
        suites: vec![Suite::SEED_FAITHFUL],
        dangerous_allow_no_forward_secrecy: true,
        ..ServerConfig::new(rsa_key(2048))
    });
    let clock = Clock::new();
    let mut h = handshake_with(client_opt_in.clone(), server_opt_in.clone(), 3, clock, |_, _| {}).unwrap();
    assert!(!h.client.suite().has_forward_secrecy());
    exchange(&mut h, clock);

    // Without the client's opt-in it is refused even though listed.
    let client = Arc::new(ClientConfig { suites: vec![Suite::SEED_FAITHFUL], ..ClientConfig::default() });
    let err = handshake_with(client, server_opt_in, 3, clock, |_, _| {}).unwrap_err();
    assert!(matches!(err.client_error(), Some(cipherline_proto::Error::PeerIncompatible(_))), "{err:?}");

    // Without the server's opt-in it is not even offered.
    let server = Arc::new(ServerConfig { suites: vec![Suite::SEED_FAITHFUL], ..ServerConfig::new(rsa_key(2048)) });
    let err = handshake_with(client_opt_in, server, 3, clock, |_, _| {}).unwrap_err();
    assert!(matches!(err, Failure::Server(cipherline_proto::Error::InvalidConfig(_))), "{err:?}");
}

#[test]
fn parts_are_packed_into_full_records_across_their_boundaries() {
    let mut h = handshake(client_config(), server_config(x25519_key()));
    let now = std::time::Instant::now();
    // Three messages of 10,000 bytes: 30,000 bytes fill one record of
    // 16,383 and a second of 13,617 (sent one by one they take three).
    let parts: Vec<Vec<u8>> = (0u8..3).map(|i| vec![i + 1; 10_000]).collect();
    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let wire = h.client.send_parts(&slices, now).unwrap();
    let received = deliver(&mut h.server, &wire, now).unwrap();
    assert_eq!(received.len(), 2, "two records");
    assert_eq!(data(&received), parts.concat(), "the same byte stream, in order");
    // Empty parts are skipped; nothing at all is still one (empty) record.
    let wire = h.client.send_parts(&[&[], b"x", &[]], now).unwrap();
    assert_eq!(data(&deliver(&mut h.server, &wire, now).unwrap()), b"x");
    let wire = h.client.send_parts(&[], now).unwrap();
    assert_eq!(deliver(&mut h.server, &wire, now).unwrap().len(), 1);
}
