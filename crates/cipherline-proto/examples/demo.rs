//! A whole cipherline session in memory: the handshake flights, the suite,
//! the server's fingerprint, and seed 002's "hi", "hi", "bye" on the wire.
//!
//! `cargo run --release -p cipherline-proto --example demo`
//!
//! With `CIPHERLINE_PASSWORD` set, it runs seed 002's password mode instead:
//! Bob (the server) and Alice share that password and no key, and a second
//! attempt with a wrong password shows the error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use cipherline_proto::crypto::kem::ServerKey;
use cipherline_proto::crypto::pake::Password;
use cipherline_proto::crypto::{Rng, SystemRng};
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::handshake::server::{ExpectClientHello, ServerStep};
use cipherline_proto::{ClientConfig, Deframer, Frame, Received, ServerConfig};

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().unwrap()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let mut rng = SystemRng;
    let now = Instant::now();
    let mut secret = [0u8; 32];
    rng.try_fill(&mut secret).unwrap();
    let key = Arc::new(ServerKey::x25519_from_bytes(&secret).unwrap());
    let password = std::env::var("CIPHERLINE_PASSWORD").ok();
    let (server, client) = match &password {
        Some(pw) => {
            println!("password mode: Bob's server and Alice share a password and no key");
            let pw = Password::new(pw.as_bytes().to_vec()).unwrap();
            let client = ClientConfig {
                password: Some(pw.clone()),
                name: Some("alice".into()),
                password_only: true,
                ..Default::default()
            };
            (Arc::new(ServerConfig::password_only(pw)), Arc::new(client))
        }
        None => (Arc::new(ServerConfig::new(key)), Arc::new(ClientConfig::default())),
    };

    let (s, si) = ExpectClientHello::new(server).unwrap();
    println!("server -> client  ServerIdentity        {:5} bytes (clear)", si.len());
    let c = ExpectServerIdentity::new(client).unwrap().handle_server_identity(&frames(&si)[0]).unwrap();
    match c.server_key() {
        Some(key) => println!("  server key fingerprint (SHA-256 of SPKI): {}", hex(&key.fingerprint())),
        None => println!("  no server key: the password authenticates the server"),
    }
    println!("  suite chosen by the client: {}", c.suite());
    let (c, ch) = c.into_client_hello(&mut rng).unwrap();
    println!("client -> server  ClientHello           {:5} bytes (clear: key shares)", ch.len());
    let (s, sh_sf) = s.handle_client_hello(&frames(&ch)[0], &mut rng, now).unwrap();
    println!("server -> client  ServerHello+Finished  {:5} bytes (Finished encrypted)", sh_sf.len());
    let f = frames(&sh_sf);
    let c = c.handle_server_hello(&f[0], now).unwrap();
    let (mut alice, cf) = c.handle_server_finished(&f[1], now).unwrap();
    println!("client -> server  Finished              {:5} bytes (encrypted)", cf.len());
    let ServerStep::Done(mut bob) = s.handle_frame(&frames(&cf)[0], now).unwrap() else { unreachable!() };
    println!("handshake hash (same on both sides): {}", hex(alice.handshake_hash()));
    assert_eq!(alice.handshake_hash(), bob.handshake_hash());

    for text in ["hi", "hi", "bye"] {
        let wire = alice.send(text.as_bytes(), now).unwrap();
        let got = bob.handle_frame(&frames(&wire)[0], now).unwrap();
        let Received::Data(plain) = got else { unreachable!() };
        println!("{text:>4} -> {} bytes on the wire: {}…", wire.len(), &hex(&wire)[..48]);
        assert_eq!(plain.as_slice(), text.as_bytes());
    }
    println!("same text, different ciphertext; different lengths, same record size (padding bucket).");

    if let Some(pw) = password {
        // Alice types the password wrong: both sides derive different keys
        // and she is told so; the server would count a failed attempt.
        let wrong = format!("{pw}!");
        let client = ClientConfig {
            password: Some(Password::new(wrong.into_bytes()).unwrap()),
            name: Some("alice".into()),
            password_only: true,
            ..Default::default()
        };
        let server = Arc::new(ServerConfig::password_only(Password::new(pw.into_bytes()).unwrap()));
        let (s, si) = ExpectClientHello::new(server).unwrap();
        let c = ExpectServerIdentity::new(Arc::new(client)).unwrap().handle_server_identity(&frames(&si)[0]).unwrap();
        let (c, ch) = c.into_client_hello(&mut rng).unwrap();
        let (_, sh_sf) = s.handle_client_hello(&frames(&ch)[0], &mut rng, now).unwrap();
        let f = frames(&sh_sf);
        let c = c.handle_server_hello(&f[0], now).unwrap();
        match c.handle_server_finished(&f[1], now) {
            Err(e) => println!("with a wrong password: {e}"),
            Ok(_) => println!("with a wrong password: unexpectedly connected"),
        }
    }
}
