//! One or more negative tests per security goal of DESIGN.md. Each test fails
//! if the property it names is broken.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherline_proto::crypto::SeededRng;
use cipherline_proto::crypto::kdf::{Secret, Transcript};
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::error::{AuthFailure, Misbehavior};
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::keyschedule::HandshakeSchedule;
use cipherline_proto::message::{ClientAuthRequest, ServerIdentity, split_message};
use cipherline_proto::record::{ContentType, KeyUpdatePolicy, RecordOpener};
use cipherline_proto::session::parse_frame;
use cipherline_proto::suite::{Aead, EphemeralKem, StaticKem};
use cipherline_proto::{ClientConfig, Deframer, Error, Frame, FrameKind, Received, ServerConfig, Suite};
use common::*;

fn split_frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().unwrap()).collect()
}

// Goal 1: confidentiality and integrity of every record.

#[test]
fn flipping_any_bit_of_a_record_is_detected() {
    let mut h = handshake(client_config(), server_config(x25519_key()));
    let now = Clock::new().0;
    let wire = h.client.send(b"attack at dawn", now).unwrap();
    // Every bit of header, ciphertext and tag.
    for i in 0..wire.len() {
        for bit in 0..8 {
            let mut h2 = handshake(client_config(), server_config(x25519_key()));
            let wire = h2.client.send(b"attack at dawn", now).unwrap();
            let mut bad = wire.clone();
            bad[i] ^= 1 << bit;
            let result = deliver(&mut h2.server, &bad, now);
            assert!(result.is_err(), "flipped bit {bit} of byte {i} was accepted");
        }
        if i > 8 {
            break; // the remaining bytes are covered below without re-handshaking
        }
    }
    for i in 3..wire.len() {
        let mut bad = wire.clone();
        bad[i] ^= 0x80;
        let frame = parse_frame(&bad).unwrap();
        let mut opener_state = handshake(client_config(), server_config(x25519_key()));
        // Same seed, same keys: the untampered record would open.
        assert_eq!(opener_state.server.handle_frame(&frame, now).unwrap_err(), Error::DecryptFailed, "byte {i}");
    }
    assert_eq!(data(&deliver(&mut h.server, &wire, now).unwrap()), b"attack at dawn");
}

#[test]
fn replayed_reordered_dropped_and_truncated_records_are_detected() {
    let now = Clock::new().0;
    let fresh = || handshake(client_config(), server_config(x25519_key()));

    // Replay.
    let mut h = fresh();
    let one = h.client.send(b"pay 10", now).unwrap();
    deliver(&mut h.server, &one, now).unwrap();
    assert_eq!(deliver(&mut h.server, &one, now).unwrap_err(), Error::DecryptFailed);

    // Reorder.
    let mut h = fresh();
    let a = h.client.send(b"first", now).unwrap();
    let b = h.client.send(b"second", now).unwrap();
    assert_eq!(deliver(&mut h.server, &b, now).unwrap_err(), Error::DecryptFailed);
    let _ = a;

    // Drop.
    let mut h = fresh();
    let _dropped = h.client.send(b"first", now).unwrap();
    let b = h.client.send(b"second", now).unwrap();
    assert_eq!(deliver(&mut h.server, &b, now).unwrap_err(), Error::DecryptFailed);

    // Truncation inside a frame: the stream ends with a partial frame.
    let mut h = fresh();
    let a = h.client.send(b"the whole message", now).unwrap();
    let mut d = Deframer::new();
    d.push(&a[..a.len() - 1]);
    assert_eq!(d.next_frame().unwrap(), None);
    assert_eq!(d.finish().unwrap_err(), Error::Truncated);
    deliver(&mut h.server, &a, now).unwrap();

    // Truncation at a frame boundary: the stream ends without close_notify.
    let a = h.client.send(b"more", now).unwrap();
    deliver(&mut h.server, &a, now).unwrap();
    assert_eq!(h.server.handle_eof().unwrap_err(), Error::Truncated);
    let close = h.client.close().unwrap();
    deliver(&mut h.server, &close, now).unwrap();
    assert!(h.server.handle_eof().is_ok());
    // Nothing is accepted after close_notify.
    assert!(h.client.send(b"late", now).is_err());
}

#[test]
fn plaintext_frames_after_the_first_record_are_refused() {
    let now = Clock::new().0;
    let mut h = handshake(client_config(), server_config(x25519_key()));
    // Before the server's first record, a plaintext alert is how a server
    // refuses the client's last flight: reported (as unauthenticated as any
    // handshake alert).
    let refusal = Frame::encode(FrameKind::Alert, &[115]);
    let mut h2 = handshake(client_config(), server_config(x25519_key()));
    assert_eq!(
        deliver(&mut h2.client, &refusal, now).unwrap_err(),
        Error::AlertReceived(cipherline_proto::AlertCode::UnknownIdentity)
    );
    // Once a record has authenticated, a plaintext alert can only be forged.
    let wire = h.server.send(b"welcome", now).unwrap();
    deliver(&mut h.client, &wire, now).unwrap();
    let forged = Frame::encode(FrameKind::Alert, &[120]);
    assert_eq!(
        deliver(&mut h.client, &forged, now).unwrap_err(),
        Error::PeerMisbehaved(Misbehavior::UnexpectedMessage)
    );
    let forged = Frame::encode(FrameKind::Handshake, &[0x14, 0, 1, 0]);
    assert_eq!(
        deliver(&mut h.client, &forged, now).unwrap_err(),
        Error::PeerMisbehaved(Misbehavior::UnexpectedMessage)
    );
}

// Goal 1/10: flipping any byte of any handshake flight makes the handshake fail.

#[test]
fn flipping_any_byte_of_any_handshake_flight_fails_the_handshake() {
    let identity = Arc::new(IdentityKey::ed25519_from_seed(&[8; 32]).unwrap());
    let client = Arc::new(ClientConfig { identity: Some(identity), ..ClientConfig::default() });
    let server = Arc::new(ServerConfig { client_auth: ClientAuthRequest::Optional, ..ServerConfig::new(x25519_key()) });
    let clean = handshake_with(client.clone(), server.clone(), 5, Clock::new(), |_, _| {}).unwrap();
    let mut checked = 0;
    for (flight, bytes) in &clean.flights {
        for i in 0..bytes.len() {
            let result = handshake_with(client.clone(), server.clone(), 5, Clock::new(), |f, b| {
                if f == *flight {
                    b[i] ^= 0x01;
                }
            });
            let failure = result.err().unwrap_or_else(|| panic!("flip of byte {i} in {flight:?} went unnoticed"));
            // A change the server could have made (or that reached the client
            // before it authenticated the server) must stop the client before
            // it has a session: it never sends application data.
            if matches!(flight, Flight::ServerIdentity | Flight::ServerHelloFinished) {
                assert!(
                    matches!(failure, Failure::Client(_) | Failure::Stalled(_)),
                    "{flight:?} byte {i}: {failure:?}"
                );
            }
            checked += 1;
        }
    }
    println!("flipped {checked} handshake bytes, every one failed the handshake");
    assert!(checked > 1500, "all four flights were covered ({checked} bytes)");
}

// Goal 2: server authentication.

#[test]
fn a_substituted_server_key_is_visible_to_the_trust_check() {
    // A man in the middle replaces the key in ServerIdentity with his own.
    let real = x25519_key();
    let mitm = Arc::new(ServerKey::x25519_from_bytes(&[0x66; 32]).unwrap());
    let (_, si) = cipherline_proto::handshake::server::ExpectClientHello::new(server_config(real.clone())).unwrap();
    let frame = parse_frame(&si).unwrap();
    let (_, body) = split_message(&frame.body).unwrap();
    let mut msg = ServerIdentity::decode(body).unwrap();
    msg.server_key = mitm.public_key().spki().to_vec();
    let forged = parse_frame(&Frame::encode(FrameKind::Handshake, &msg.encode().unwrap())).unwrap();
    let state = ExpectServerIdentity::new(client_config()).unwrap().handle_server_identity(&forged).unwrap();
    // The caller's pin / known-servers check sees a different fingerprint.
    assert_ne!(state.server_key().unwrap().fingerprint(), real.public_key().fingerprint());
    assert_eq!(state.server_key().unwrap().fingerprint(), mitm.public_key().fingerprint());
}

#[test]
fn a_server_without_the_private_key_cannot_finish_the_handshake() {
    // The client trusts key A (pinned), but the peer only holds key B and
    // presents A's public key: it cannot decapsulate, so its Finished fails
    // and the client never gets a session.
    for (pinned, actual) in [
        (rsa_key(2048), Arc::new(ServerKey::rsa_from_pkcs8(&testdata("keys/rsa2048b.pk8.der")).unwrap())),
        (x25519_key(), Arc::new(ServerKey::x25519_from_bytes(&[0x77; 32]).unwrap())),
    ] {
        let impostor = Arc::new(ServerConfig::new(actual.clone()));
        let pinned_spki = pinned.public_key().spki().to_vec();
        assert_ne!(pinned.public_key(), actual.public_key());
        let failure = handshake_with(client_config(), impostor, 9, Clock::new(), |flight, bytes| {
            if flight == Flight::ServerIdentity {
                let frame = parse_frame(bytes).unwrap();
                let (_, body) = split_message(&frame.body).unwrap();
                let mut msg = ServerIdentity::decode(body).unwrap();
                msg.server_key = pinned_spki.clone();
                *bytes = Frame::encode(FrameKind::Handshake, &msg.encode().unwrap());
            }
        })
        .unwrap_err();
        assert!(
            matches!(failure.client_error(), Some(Error::AuthenticationFailed(AuthFailure::ServerFinished))),
            "{failure:?}"
        );
    }
}

#[test]
fn a_client_hello_encrypted_to_the_wrong_rsa_key_fails_without_a_padding_oracle() {
    // The server decrypts garbage: it does not say so (implicit rejection),
    // the handshake just fails at the client's Finished check.
    let failure = handshake_with(client_config(), server_config(rsa_key(2048)), 2, Clock::new(), |flight, bytes| {
        if flight == Flight::ClientHello {
            let n = bytes.len();
            bytes[n - 10] ^= 0x55; // inside the RSA-OAEP ciphertext
        }
    })
    .unwrap_err();
    assert!(
        matches!(failure.client_error(), Some(Error::AuthenticationFailed(AuthFailure::ServerFinished))),
        "{failure:?}"
    );
}

// Goal 3: forward secrecy. An attacker records a session and later steals the
// server's static key; it recomputes everything it can from the recording.

fn attacker_decrypts(suite: Suite, allow_no_fs: bool) -> bool {
    let key = rsa_key(2048);
    let client = Arc::new(ClientConfig {
        suites: vec![suite],
        dangerous_allow_no_forward_secrecy: allow_no_fs,
        ..ClientConfig::default()
    });
    let server = Arc::new(ServerConfig {
        suites: vec![suite],
        dangerous_allow_no_forward_secrecy: allow_no_fs,
        ..ServerConfig::new(key.clone())
    });
    let mut h = handshake_with(client, server, 4, Clock::new(), |_, _| {}).unwrap();
    let secret_record = h.client.send(b"the secret plan", Clock::new().0).unwrap();
    let msgs = |i: usize| split_frames(&h.flights[i].1);

    // What the attacker recorded: the plaintext handshake messages and records.
    let si = msgs(0).remove(0).body;
    let ch = msgs(1).remove(0).body;
    let mut sh_sf = msgs(2);
    let sh = sh_sf.remove(0).body;
    let sf_record = sh_sf.remove(0);
    let cf_record = msgs(3).remove(0);
    let (_, ch_body) = split_message(&ch).unwrap();
    let hello = cipherline_proto::message::ClientHello::decode(ch_body).unwrap();

    // With the stolen key it recovers the static secret...
    let mut rng = SeededRng::new_for_testing_only([0; 32]);
    let static_ss = key.decapsulate(&hello.static_ciphertext, &mut rng).unwrap();
    // ...and guesses the ephemeral secret (it cannot compute it: that needs an
    // ephemeral private key nobody kept). For a suite without an ephemeral
    // KEM the "guess" is the specified 32 zero bytes.
    let eph_guess = vec![0u8; 32];
    let mut transcript = Transcript::new();
    for m in [&si, &ch, &sh] {
        transcript.add(m);
    }
    let schedule = HandshakeSchedule::new(&static_ss, &eph_guess, None, &transcript.hash()).unwrap();
    let now = Clock::new().0;
    let mut s_open = RecordOpener::new(suite.aead, schedule.server_secret().clone(), now).unwrap();
    let Ok((ContentType::Handshake, sf)) = s_open.open(&sf_record.header, &sf_record.body) else {
        return false;
    };
    transcript.add(&sf);
    let mut c_open = RecordOpener::new(suite.aead, schedule.client_secret().clone(), now).unwrap();
    let Ok((_, cf)) = c_open.open(&cf_record.header, &cf_record.body) else {
        return false;
    };
    transcript.add(&cf);
    let app = schedule.into_application(&transcript.hash()).unwrap();
    let mut app_open = RecordOpener::new(suite.aead, Secret::new(*app.client.expose()), now).unwrap();
    let frame = parse_frame(&secret_record).unwrap();
    matches!(app_open.open(&frame.header, &frame.body), Ok((_, pt)) if pt.as_slice() == b"the secret plan")
}

#[test]
fn stealing_the_server_key_later_does_not_decrypt_recorded_traffic() {
    // The attack works against the seed-faithful suite (so the attack code is
    // right), and fails against every forward-secret RSA suite.
    assert!(attacker_decrypts(Suite::SEED_FAITHFUL, true), "sanity: the no-FS suite is breakable");
    for suite in Suite::FORWARD_SECRET.into_iter().filter(|s| s.static_kem == StaticKem::RsaOaepSha256) {
        assert!(!attacker_decrypts(suite, false), "{suite} leaked recorded traffic");
    }
}

// Goal 4: post-quantum hybrid. The ML-KEM secret feeds the keys: changing
// only the ML-KEM ciphertext (leaving X25519 intact) breaks the handshake.

#[test]
fn ml_kem_output_is_part_of_the_keys() {
    let h = handshake(client_config(), server_config(x25519_key()));
    assert_eq!(h.client.suite().ephemeral_kem, EphemeralKem::X25519MlKem768);
    let failure = handshake_with(client_config(), server_config(x25519_key()), 1, Clock::new(), |flight, bytes| {
        if flight == Flight::ServerHelloFinished {
            // ServerHello: frame header 3, message header 3, random 32, share length 2,
            // then the ML-KEM ciphertext.
            bytes[3 + 3 + 32 + 2 + 100] ^= 0x01;
        }
    })
    .unwrap_err();
    assert!(matches!(failure.client_error(), Some(Error::AuthenticationFailed(_))), "{failure:?}");
}

// Goal 5: downgrade resistance.

#[test]
fn stripping_strong_suites_from_server_identity_is_detected() {
    let failure = handshake_with(client_config(), server_config(rsa_key(2048)), 6, Clock::new(), |flight, bytes| {
        if flight == Flight::ServerIdentity {
            let frame = parse_frame(bytes).unwrap();
            let (_, body) = split_message(&frame.body).unwrap();
            let mut msg = ServerIdentity::decode(body).unwrap();
            msg.suites.retain(|&s| !Suite::from_u16(s).unwrap().is_post_quantum());
            *bytes = Frame::encode(FrameKind::Handshake, &msg.encode().unwrap());
        }
    })
    .unwrap_err();
    assert!(
        matches!(failure.client_error(), Some(Error::AuthenticationFailed(AuthFailure::ServerFinished))),
        "{failure:?}"
    );
}

#[test]
fn changing_the_chosen_suite_in_client_hello_is_detected() {
    let failure = handshake_with(client_config(), server_config(x25519_key()), 6, Clock::new(), |flight, bytes| {
        if flight == Flight::ClientHello {
            // Suite code follows frame header 3, message header 3, version 2, random 32.
            let at = 3 + 3 + 2 + 32;
            assert_eq!(&bytes[at..at + 2], &[0x02, 0x21]);
            bytes[at + 1] = 0x22; // AES-GCM -> ChaCha20-Poly1305, same shares
        }
    })
    .unwrap_err();
    assert!(matches!(failure, Failure::Client(Error::AuthenticationFailed(_))), "{failure:?}");
}

// Goal 7: client authentication by identity key.

#[test]
fn required_client_auth_is_enforced_and_proven() {
    let server = Arc::new(ServerConfig { client_auth: ClientAuthRequest::Required, ..ServerConfig::new(x25519_key()) });
    // No identity: the client stops with a clear reason.
    let failure = handshake_with(client_config(), server.clone(), 1, Clock::new(), |_, _| {}).unwrap_err();
    assert!(
        matches!(
            failure.client_error(),
            Some(Error::PeerIncompatible(cipherline_proto::error::Incompatibility::IdentityRequired))
        ),
        "{failure:?}"
    );

    for identity in [
        IdentityKey::ed25519_from_seed(&[1; 32]).unwrap(),
        IdentityKey::rsa_from_pkcs8(&testdata("keys/rsa2048.pk8.der")).unwrap(),
    ] {
        let identity = Arc::new(identity);
        let client = Arc::new(ClientConfig { identity: Some(identity.clone()), ..ClientConfig::default() });
        let h = handshake_with(client.clone(), server.clone(), 1, Clock::new(), |_, _| {}).unwrap();
        assert_eq!(h.server.peer_identity(), Some(identity.public_key()));

        // A man in the middle cannot strip ClientAuth: the client's Finished
        // covers it, and the server requires it.
        let failure = handshake_with(client, server.clone(), 1, Clock::new(), |flight, bytes| {
            if flight == Flight::ClientFinish {
                let frames = split_frames(bytes);
                let last = frames.last().unwrap();
                *bytes = [last.header.as_slice(), &last.body].concat();
            }
        })
        .unwrap_err();
        assert!(matches!(failure, Failure::Server(_)), "{failure:?}");
    }
}

#[test]
fn unrequested_client_auth_is_refused() {
    let identity = Arc::new(IdentityKey::ed25519_from_seed(&[1; 32]).unwrap());
    let client = Arc::new(ClientConfig { identity: Some(identity), ..ClientConfig::default() });
    // A server that asks nothing gets nothing: the client does not volunteer.
    let h = handshake(client, server_config(x25519_key()));
    assert!(h.server.peer_identity().is_none());
}

// Goal 8: length hiding.

#[test]
fn identical_plaintexts_give_different_ciphertexts_and_lengths_hide_in_buckets() {
    let now = Clock::new().0;
    let mut h = handshake(client_config(), server_config(x25519_key()));
    let a = h.client.send(b"hi", now).unwrap();
    let b = h.client.send(b"hi", now).unwrap();
    assert_ne!(a, b, "same plaintext, same ciphertext");
    // Seed 002's example: "hi" and "bye" give equal-length ciphertexts.
    let bye = h.client.send(b"bye", now).unwrap();
    assert_eq!(a.len(), bye.len());
    // Every length from 0 to 31 gives the same record size; 32 moves to the next bucket.
    let sizes: Vec<usize> = (0..=32).map(|n| h.client.send(&vec![b'x'; n], now).unwrap().len()).collect();
    assert!(sizes[..32].iter().all(|&s| s == 3 + 32 + 16));
    assert_eq!(sizes[32], 3 + 64 + 16);
    let large: Vec<usize> =
        [1000, 1023, 600].iter().map(|&n| h.client.send(&vec![0u8; n], now).unwrap().len()).collect();
    assert_eq!(large, vec![3 + 1024 + 16; 3]);
}

// Goal 9: key rotation.

#[test]
fn keys_ratchet_by_count_by_time_and_on_request() {
    let policy = KeyUpdatePolicy { max_records: 3, max_bytes: 1 << 30, max_age: Duration::from_secs(60) };
    let client = Arc::new(ClientConfig { key_update: policy, ..ClientConfig::default() });
    let mut clock = Clock::new();
    let mut h = handshake_with(client.clone(), server_config(x25519_key()), 1, clock, |_, _| {}).unwrap();

    // By count: the 4th record is preceded by a KeyUpdate.
    let mut updates = 0;
    for i in 0..10u8 {
        let wire = h.client.send(&[i], clock.0).unwrap();
        let got = deliver(&mut h.server, &wire, clock.0).unwrap();
        updates += got.iter().filter(|r| **r == Received::KeyUpdate).count();
        assert_eq!(data(&got), [i]);
    }
    assert_eq!(updates, 3, "10 records with at most 3 per key");

    // Records after an update cannot be opened with the old key: drop the
    // KeyUpdate and the receiver, still on the old key, fails.
    let mut h2 = handshake_with(client.clone(), server_config(x25519_key()), 1, clock, |_, _| {}).unwrap();
    for i in 0..3u8 {
        deliver(&mut h2.server, &h2.client.send(&[i], clock.0).unwrap(), clock.0).unwrap();
    }
    let wire = h2.client.send(b"after", clock.0).unwrap();
    let frames = split_frames(&wire);
    assert_eq!(frames.len(), 2, "KeyUpdate then data");
    assert_eq!(h2.server.handle_frame(&frames[1], clock.0).unwrap_err(), Error::DecryptFailed);

    // By time: nothing sent, but the simulated clock passes max_age.
    let due = h.client.poll_timeout().unwrap();
    assert!(h.client.handle_timeout(clock.0).unwrap().is_empty(), "not due yet");
    clock.advance(Duration::from_secs(61));
    assert!(due <= clock.0);
    let wire = h.client.handle_timeout(clock.0).unwrap();
    assert_eq!(deliver(&mut h.server, &wire, clock.0).unwrap(), vec![Received::KeyUpdate]);

    // On request: the peer answers with its own update.
    let wire = h.client.request_key_update(clock.0).unwrap();
    assert_eq!(deliver(&mut h.server, &wire, clock.0).unwrap(), vec![Received::KeyUpdate]);
    let answer = h.server.poll_transmit(clock.0).unwrap().expect("the server answers a requested update");
    assert_eq!(deliver(&mut h.client, &answer, clock.0).unwrap(), vec![Received::KeyUpdate]);
    assert!(h.client.poll_transmit(clock.0).unwrap().is_none(), "an answer does not ask again");

    // If the application sends before draining poll_transmit, the answer is
    // put in front of the data: the peer never sees a record under a key it
    // has not been told about.
    let wire = h.client.request_key_update(clock.0).unwrap();
    deliver(&mut h.server, &wire, clock.0).unwrap();
    let wire = h.server.send(b"data right away", clock.0).unwrap();
    let got = deliver(&mut h.client, &wire, clock.0).unwrap();
    assert_eq!(got[0], Received::KeyUpdate);
    assert_eq!(data(&got), b"data right away");
    assert!(h.server.poll_transmit(clock.0).unwrap().is_none(), "answered exactly once");
    // Both directions still work after all that.
    let wire = h.server.send(b"still here", clock.0).unwrap();
    assert_eq!(data(&deliver(&mut h.client, &wire, clock.0).unwrap()), b"still here");
}

#[test]
fn suites_without_aes_also_rotate() {
    let suite = Suite::new(StaticKem::X25519, EphemeralKem::X25519, Aead::ChaCha20Poly1305);
    let client = Arc::new(ClientConfig {
        suites: vec![suite],
        key_update: KeyUpdatePolicy { max_records: 1, ..KeyUpdatePolicy::default() },
        ..ClientConfig::default()
    });
    let clock = Clock::new();
    let mut h = handshake_with(client, server_config(x25519_key()), 1, clock, |_, _| {}).unwrap();
    let wire = h.client.send(&vec![7u8; 50_000], clock.0).unwrap();
    let got = deliver(&mut h.server, &wire, clock.0).unwrap();
    assert_eq!(data(&got).len(), 50_000);
    assert_eq!(got.iter().filter(|r| **r == Received::KeyUpdate).count(), 3, "4 records, 1 per key");
}
