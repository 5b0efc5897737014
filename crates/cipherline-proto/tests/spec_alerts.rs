//! The alert PROTOCOL.md names for each case an implementer working from the
//! spec alone found ambiguous (§3.3, §5.5, §7.2, §7.4, §7.7, §9.4): each test
//! drives the reference implementation into the case and checks the alert it
//! sends is the one the spec names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::pake::Password;
use cipherline_proto::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use cipherline_proto::message::{ClientHello, Extensions, ServerHello, ServerIdentity, split_message};
use cipherline_proto::{AlertCode, ClientConfig, Deframer, Error, Frame, FrameKind, ServerConfig};
use common::*;

fn pw(s: &str) -> Password {
    Password::new(s.as_bytes().to_vec()).unwrap()
}

/// A client with `password` (in password-only mode, so it accepts the
/// password-only servers below), or without one.
fn client(password: Option<&str>) -> Arc<ClientConfig> {
    Arc::new(ClientConfig {
        password: password.map(pw),
        name: Some("alice".to_owned()),
        password_only: password.is_some(),
        ..ClientConfig::default()
    })
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().unwrap()).collect()
}

/// Rewrites the first (plaintext handshake) frame of a flight with `edit`
/// applied to its decoded message, keeping any frames after it.
fn rewrite_first<M>(
    flight: &mut Vec<u8>,
    decode: fn(&[u8]) -> Result<M, cipherline_proto::error::DecodeError>,
    encode: fn(&M) -> Result<Vec<u8>, Error>,
    edit: impl FnOnce(&mut M),
) {
    let all = frames(flight);
    let (_, body) = split_message(&all[0].body).unwrap();
    let mut msg = decode(body).unwrap();
    edit(&mut msg);
    let mut out = Frame::encode(FrameKind::Handshake, &encode(&msg).unwrap());
    for f in &all[1..] {
        out.extend_from_slice(&f.header);
        out.extend_from_slice(&f.body);
    }
    *flight = out;
}

fn client_alert(f: &Failure) -> Option<AlertCode> {
    match f {
        Failure::Client(e) => e.alert(),
        other => panic!("expected the client to refuse, got {other:?}"),
    }
}

fn server_alert(f: &Failure) -> Option<AlertCode> {
    match f {
        Failure::Server(e) => e.alert(),
        other => panic!("expected the server to refuse, got {other:?}"),
    }
}

#[test]
fn a_frame_length_not_allowed_for_its_kind_is_record_overflow() {
    // §3.3 step 3 and §9.4: every kind, zero lengths included.
    for header in [[0x15, 0, 2], [0x15, 0, 0], [0x16, 0, 0], [0x16, 0x10, 0x01], [0x17, 0, 47], [0x17, 0xff, 0xff]] {
        let e: Error = Frame::peek_header(&header).unwrap_err().into();
        assert_eq!(e.alert(), Some(AlertCode::RecordOverflow), "{header:?}");
    }
    let e: Error = Frame::peek_header(&[0x18, 0, 1]).unwrap_err().into();
    assert_eq!(e.alert(), Some(AlertCode::DecodeError), "an unknown kind is decode_error");
}

#[test]
fn a_password_server_refuses_a_client_hello_without_the_pake_extension() {
    // §7.3 step 4 / §7.7: insufficient_security.
    let server = Arc::new(ServerConfig::password_only(pw("pw")));
    let failure = handshake_with(client(Some("pw")), server, 1, Clock::new(), |flight, bytes| {
        if flight == Flight::ClientHello {
            rewrite_first(bytes, ClientHello::decode, ClientHello::encode, |h| h.extensions = Extensions::default());
        }
    })
    .unwrap_err();
    assert_eq!(server_alert(&failure), Some(AlertCode::InsufficientSecurity));
}

#[test]
fn a_password_client_refuses_a_server_hello_without_the_pake_extension() {
    // §7.4 step 2 / §7.7: insufficient_security.
    let server = Arc::new(ServerConfig::password_only(pw("pw")));
    let failure = handshake_with(client(Some("pw")), server, 1, Clock::new(), |flight, bytes| {
        if flight == Flight::ServerHelloFinished {
            rewrite_first(bytes, ServerHello::decode, ServerHello::encode, |h| h.extensions = Extensions::default());
        }
    })
    .unwrap_err();
    assert_eq!(client_alert(&failure), Some(AlertCode::InsufficientSecurity));
}

#[test]
fn an_unsolicited_server_hello_extension_is_unexpected_message() {
    // §4.7 and §7.4 step 2: the pake extension when the client sent none.
    let failure = handshake_with(client(None), server_config(x25519_key()), 1, Clock::new(), |flight, bytes| {
        if flight == Flight::ServerHelloFinished {
            rewrite_first(bytes, ServerHello::decode, ServerHello::encode, |h| {
                h.extensions = Extensions(vec![(0x0001, vec![0x42; 33])]);
            });
        }
    })
    .unwrap_err();
    assert_eq!(client_alert(&failure), Some(AlertCode::UnexpectedMessage));
}

#[test]
fn password_mismatches_between_client_and_server_are_insufficient_security() {
    // §7.2 step 3: the server wants a password the client lacks, and the
    // client has a password the server does not announce.
    let server = Arc::new(ServerConfig::password_only(pw("pw")));
    let failure = handshake_with(client(None), server, 1, Clock::new(), |_, _| {}).unwrap_err();
    assert_eq!(client_alert(&failure), Some(AlertCode::InsufficientSecurity));
    let failure = handshake_with(client(Some("pw")), server_config(x25519_key()), 1, Clock::new(), |_, _| {});
    assert_eq!(client_alert(&failure.unwrap_err()), Some(AlertCode::InsufficientSecurity));
}

#[test]
fn an_empty_server_key_outside_password_mode_is_decode_error() {
    // §7.2 step 3: an empty server_key is allowed only with the pake extension.
    let failure = handshake_with(client(None), server_config(x25519_key()), 1, Clock::new(), |flight, bytes| {
        if flight == Flight::ServerIdentity {
            rewrite_first(bytes, ServerIdentity::decode, ServerIdentity::encode, |si| si.server_key.clear());
        }
    })
    .unwrap_err();
    assert_eq!(client_alert(&failure), Some(AlertCode::DecodeError));
}

#[test]
fn rsa_keys_under_2048_bits_are_decode_error_as_section_5_5_says() {
    // §5.5, §7.2 step 3, §7.5 step 5, §9.4: the RSA parser refuses moduli
    // under 2048 bits, so such a key is decode_error (both as a server key
    // and as an identity key); a key that parses but is over 4096 bits is
    // insufficient_security.
    let spki = testdata("keys/rsa1024.spki.der");
    let e = ServerPublicKey::from_spki(&spki).err().unwrap();
    assert_eq!(e.alert(), Some(AlertCode::DecodeError));
    let e = IdentityPublicKey::from_spki(SignatureAlgorithm::RsaPssSha256, &spki).err().unwrap();
    assert_eq!(e.alert(), Some(AlertCode::DecodeError));
}
