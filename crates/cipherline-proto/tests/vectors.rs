//! Deterministic handshake test vectors (PROTOCOL.md appendix A).
//!
//! `testdata/vectors/*.json` hold complete handshakes: every random input,
//! every message, every secret and two application records. The test
//! recomputes every secret from the listed inputs and messages alone, the way
//! another implementation would, and checks the Finished MACs and records.
//! The X25519-only vector is also regenerated from its seeds byte for byte.
//! To rewrite the files after a deliberate protocol change:
//! `CIPHERLINE_WRITE_VECTORS=1 cargo test -p cipherline-proto --test vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, ML_KEM_768};
use cipherline_proto::crypto::kdf::{Secret, Transcript};
use cipherline_proto::crypto::kem::{ServerKey, x25519_agree};
use cipherline_proto::crypto::{Rng, SeededRng};
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::handshake::server::{ExpectClientHello, ServerStep};
use cipherline_proto::keyschedule::HandshakeSchedule;
use cipherline_proto::message::{ClientHello, ServerHello, split_message};
use cipherline_proto::record::{ContentType, RecordOpener};
use cipherline_proto::suite::{EphemeralKem, StaticKem};
use cipherline_proto::{ClientConfig, Deframer, Frame, ServerConfig, Suite};
use common::testdata;
use serde_json::{Value, json};

const CLIENT_TEXT: &[u8] = b"hello, cipherline";
const SERVER_TEXT: &[u8] = b"hi! same bucket";

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().unwrap()).collect()
}

fn draw(rng: &mut SeededRng) -> String {
    let mut b = [0u8; 32];
    rng.try_fill(&mut b).unwrap();
    hex::encode(b)
}

fn h(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))).unwrap()
}

fn server_key(private: &Value) -> ServerKey {
    match private["type"].as_str().unwrap() {
        "x25519" => ServerKey::x25519_from_bytes(&h(private, "raw").try_into().unwrap()).unwrap(),
        "rsa-pkcs8" => ServerKey::rsa_from_pkcs8(&h(private, "der")).unwrap(),
        other => panic!("unknown key type {other}"),
    }
}

/// Runs a real handshake with seeded RNGs and records everything.
fn generate(suite: Suite, private: Value, seed: u8) -> Value {
    let key = Arc::new(server_key(&private));
    let client = Arc::new(ClientConfig {
        suites: vec![suite],
        dangerous_allow_no_forward_secrecy: !suite.has_forward_secrecy(),
        ..ClientConfig::default()
    });
    let server = Arc::new(ServerConfig {
        suites: vec![suite],
        dangerous_allow_no_forward_secrecy: !suite.has_forward_secrecy(),
        ..ServerConfig::new(key.clone())
    });
    let (client_seed, server_seed) = ([seed; 32], [seed ^ 0xff; 32]);
    let mut crng = SeededRng::new_for_testing_only(client_seed);
    let mut srng = SeededRng::new_for_testing_only(server_seed);
    let now = Instant::now();

    let (s, si) = ExpectClientHello::new(server).unwrap();
    let c = ExpectServerIdentity::new(client).unwrap().handle_server_identity(&frames(&si)[0]).unwrap();
    let (c, ch) = c.into_client_hello(&mut crng).unwrap();
    let dk = c.mlkem_key_bytes_for_testing_only();
    let (s, sh_sf) = s.handle_client_hello(&frames(&ch)[0], &mut srng, now).unwrap();
    let f = frames(&sh_sf);
    let c = c.handle_server_hello(&f[0], now).unwrap();
    let (mut client_session, cf) = c.handle_server_finished(&f[1], now).unwrap();
    let ServerStep::Done(mut server_session) = s.handle_frame(&frames(&cf)[0], now).unwrap() else {
        panic!("no client auth in vectors");
    };
    let c_record = client_session.send(CLIENT_TEXT, now).unwrap();
    let s_record = server_session.send(SERVER_TEXT, now).unwrap();

    // The random values in the order each side draws them (PROTOCOL.md A.1).
    let mut c_draws = SeededRng::new_for_testing_only(client_seed);
    let mut client_rng = serde_json::Map::new();
    client_rng.insert("client_random".into(), draw(&mut c_draws).into());
    if suite.has_forward_secrecy() {
        client_rng.insert("ephemeral_x25519_private".into(), draw(&mut c_draws).into());
    }
    let static_name = match suite.static_kem {
        StaticKem::RsaOaepSha256 => "static_kem_secret",
        StaticKem::X25519 => "static_kem_x25519_private",
        StaticKem::None => unreachable!("the vectors have no password-only suite"),
    };
    client_rng.insert(static_name.into(), draw(&mut c_draws).into());
    let mut s_draws = SeededRng::new_for_testing_only(server_seed);
    let mut server_rng = serde_json::Map::new();
    if suite.static_kem == StaticKem::RsaOaepSha256 {
        server_rng.insert("implicit_rejection_secret".into(), draw(&mut s_draws).into());
    }
    if suite.has_forward_secrecy() {
        server_rng.insert("ephemeral_x25519_private".into(), draw(&mut s_draws).into());
    }
    server_rng.insert("server_random".into(), draw(&mut s_draws).into());

    let mut v = json!({
        "suite": format!("0x{:04x}", suite.to_u16()),
        "suite_name": suite.to_string(),
        "server_static_private": private,
        "server_static_spki": hex::encode(key.public_key().spki()),
        "client_rng_seed": hex::encode(client_seed),
        "server_rng_seed": hex::encode(server_seed),
        "client_draws": client_rng,
        "server_draws": server_rng,
        "client_mlkem768_decapsulation_key": dk.map(|d| hex::encode(&*d)),
        "wire": {
            "server_identity": hex::encode(&si),
            "client_hello": hex::encode(&ch),
            "server_hello_and_finished": hex::encode(&sh_sf),
            "client_finished": hex::encode(&cf),
            "client_application_record": hex::encode(&c_record),
            "server_application_record": hex::encode(&s_record),
        },
        "client_plaintext": hex::encode(CLIENT_TEXT),
        "server_plaintext": hex::encode(SERVER_TEXT),
    });
    let derived = derive(&v);
    v["derived"] = derived;
    assert_eq!(
        v["derived"]["handshake_hash"].as_str().unwrap(),
        hex::encode(client_session.handshake_hash()),
        "the independent derivation matches the implementation"
    );
    v
}

/// Recomputes every secret from the listed inputs and wire bytes alone.
fn derive(v: &Value) -> Value {
    let suite = Suite::from_u16(u16::from_str_radix(&v["suite"].as_str().unwrap()[2..], 16).unwrap()).unwrap();
    let key = server_key(&v["server_static_private"]);
    assert_eq!(hex::encode(key.public_key().spki()), v["server_static_spki"].as_str().unwrap());
    let wire = &v["wire"];
    let si = frames(&h(wire, "server_identity"));
    let ch = frames(&h(wire, "client_hello"));
    let sh_sf = frames(&h(wire, "server_hello_and_finished"));
    let cf = frames(&h(wire, "client_finished"));
    let (si, ch, sh) = (&si[0].body, &ch[0].body, &sh_sf[0].body);
    let hello = ClientHello::decode(split_message(ch).unwrap().1).unwrap();
    let server_hello = ServerHello::decode(split_message(sh).unwrap().1).unwrap();
    let draws_c = &v["client_draws"];
    let draws_s = &v["server_draws"];
    assert_eq!(hex::encode(hello.random), draws_c["client_random"].as_str().unwrap());
    assert_eq!(hex::encode(server_hello.random), draws_s["server_random"].as_str().unwrap());

    // Static KEM: the server's side of it, from the ciphertext on the wire.
    let mut unused = SeededRng::new_for_testing_only([0; 32]);
    let static_ss = key.decapsulate(&hello.static_ciphertext, &mut unused).unwrap();
    if suite.static_kem == StaticKem::RsaOaepSha256 {
        assert_eq!(hex::encode(static_ss.expose()), draws_c["static_kem_secret"].as_str().unwrap());
    }

    // Ephemeral KEM: ML-KEM part from the client's decapsulation key, X25519
    // part from the server's listed private key and the client's share.
    let eph_ss = match suite.ephemeral_kem {
        EphemeralKem::None => vec![0u8; 32],
        kem => {
            let server_priv = aws_lc_rs::agreement::PrivateKey::from_private_key(
                &aws_lc_rs::agreement::X25519,
                &h(draws_s, "ephemeral_x25519_private"),
            )
            .unwrap();
            let client_x = &hello.ephemeral_share[hello.ephemeral_share.len() - 32..];
            let x = x25519_agree(&server_priv, client_x).unwrap();
            let mut ss = Vec::new();
            if kem == EphemeralKem::X25519MlKem768 {
                let dk = DecapsulationKey::new(&ML_KEM_768, &h(v, "client_mlkem768_decapsulation_key")).unwrap();
                let ct = &server_hello.ephemeral_share[..1088];
                ss.extend_from_slice(dk.decapsulate(Ciphertext::from(ct)).unwrap().as_ref());
            }
            ss.extend_from_slice(x.expose());
            ss
        }
    };

    let mut transcript = Transcript::new();
    transcript.add(si);
    transcript.add(ch);
    transcript.add(sh);
    let th_sh = transcript.hash();
    let schedule = HandshakeSchedule::new(&static_ss, &eph_ss, None, &th_sh).unwrap();
    let now = Instant::now();
    let mut s_open = RecordOpener::new(suite.aead, schedule.server_secret().clone(), now).unwrap();
    let (ty, sf) = s_open.open(&sh_sf[1].header, &sh_sf[1].body).unwrap();
    assert_eq!(ty, ContentType::Handshake);
    assert_eq!(&sf[3..], schedule.server_finished(&th_sh).unwrap(), "server Finished MAC");
    transcript.add(&sf);
    let th_sf = transcript.hash();
    let mut c_open = RecordOpener::new(suite.aead, schedule.client_secret().clone(), now).unwrap();
    let (_, cfm) = c_open.open(&cf[0].header, &cf[0].body).unwrap();
    assert_eq!(&cfm[3..], schedule.client_finished(&th_sf).unwrap(), "client Finished MAC");
    transcript.add(&cfm);
    let th_cf = transcript.hash();
    let out = json!({
        "static_ss": hex::encode(static_ss.expose()),
        "eph_ss": hex::encode(&eph_ss),
        "transcript_hash_through_server_hello": hex::encode(th_sh),
        "client_handshake_traffic_secret": hex::encode(schedule.client_secret().expose()),
        "server_handshake_traffic_secret": hex::encode(schedule.server_secret().expose()),
        "server_finished_message": hex::encode(&*sf),
        "transcript_hash_through_server_finished": hex::encode(th_sf),
        "client_finished_message": hex::encode(&*cfm),
        "handshake_hash": hex::encode(th_cf),
    });
    let app = schedule.into_application(&th_cf).unwrap();
    let mut out = out;
    out["client_application_traffic_secret"] = hex::encode(app.client.expose()).into();
    out["server_application_traffic_secret"] = hex::encode(app.server.expose()).into();
    out["exporter_secret"] = hex::encode(app.exporter.expose()).into();
    for (name, secret, text) in [
        ("client_application_record", &app.client, "client_plaintext"),
        ("server_application_record", &app.server, "server_plaintext"),
    ] {
        let f = frames(&h(wire, name));
        let mut opener = RecordOpener::new(suite.aead, Secret::new(*secret.expose()), now).unwrap();
        let (ty, pt) = opener.open(&f[0].header, &f[0].body).unwrap();
        assert_eq!((ty, pt.to_vec()), (ContentType::ApplicationData, h(v, text)), "{name}");
    }
    out
}

fn path(name: &str) -> String {
    format!("{}/../../testdata/vectors/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn check(name: &str, fresh: impl Fn() -> Value, regenerable: bool) {
    if std::env::var_os("CIPHERLINE_WRITE_VECTORS").is_some() {
        std::fs::write(path(name), serde_json::to_string_pretty(&fresh()).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_slice(&testdata(&format!("vectors/{name}"))).unwrap();
    // Another implementation's check: all secrets follow from inputs and wire bytes.
    assert_eq!(derive(&stored), stored["derived"], "{name}: derived secrets");
    if regenerable {
        assert_eq!(fresh(), stored, "{name}: regenerated bytes differ from the published vector");
    }
}

#[test]
fn x25519_vector_regenerates_byte_for_byte() {
    let suite = Suite::from_u16(0x0211).unwrap();
    let private = json!({"type": "x25519", "raw": hex::encode([0x42u8; 32])});
    check("x25519-x25519-aes256gcm.json", || generate(suite, private.clone(), 0x11), true);
}

#[test]
fn rsa_hybrid_vector_verifies() {
    // RSA-OAEP padding and ML-KEM randomness come from aws-lc-rs, so this
    // vector is checked, not regenerated.
    let suite = Suite::from_u16(0x0121).unwrap();
    let private = json!({"type": "rsa-pkcs8", "der": hex::encode(testdata("keys/rsa2048.pk8.der"))});
    check("rsa2048-x25519mlkem768-aes256gcm.json", || generate(suite, private.clone(), 0x22), false);
}

#[test]
fn seed_faithful_vector_verifies() {
    let suite = Suite::SEED_FAITHFUL;
    let private = json!({"type": "rsa-pkcs8", "der": hex::encode(testdata("keys/rsa2048.pk8.der"))});
    check("rsa2048-none-aes256gcm.json", || generate(suite, private.clone(), 0x33), false);
}

#[test]
fn protocol_md_prints_the_published_vector() {
    let spec = std::fs::read_to_string(format!("{}/../../PROTOCOL.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let file = String::from_utf8(testdata("vectors/x25519-x25519-aes256gcm.json")).unwrap();
    assert!(spec.contains(&format!("```json\n{file}```")), "PROTOCOL.md appendix A.4.1 differs from the vector file");
    for name in ["rsa2048-x25519mlkem768-aes256gcm.json", "rsa2048-none-aes256gcm.json"] {
        let v: Value = serde_json::from_slice(&testdata(&format!("vectors/{name}"))).unwrap();
        let hash = v["derived"]["handshake_hash"].as_str().unwrap();
        assert!(spec.contains(hash), "PROTOCOL.md appendix A.4.2 lists {name}'s handshake hash");
    }
}
