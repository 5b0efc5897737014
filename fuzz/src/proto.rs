//! Fuzz drivers for the protocol core: each takes arbitrary bytes and runs
//! them through one parser or state machine that reads peer bytes.
//!
//! A driver panics only when a property of the code under test is broken
//! (a decoded message that does not re-encode to its bytes, a frame split
//! that changes the result, forged data accepted as genuine); errors from
//! the code under test are the expected outcome for almost every input.
//!
//! The same file is compiled into the fuzz targets (`fuzz/fuzz_targets/`),
//! the seed generator (`fuzz/examples/make_seeds.rs`) and the workspace's
//! regression test (`crates/cipherline-proto/tests/fuzz_regressions.rs`),
//! so a committed input runs through exactly the code path that fuzzing
//! exercised. It uses only the public API of `cipherline-proto`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cipherline_proto::app::{ClientMessage, MessageDecoder, ServerMessage};
use cipherline_proto::crypto::SeededRng;
use cipherline_proto::crypto::aead::{AeadKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use cipherline_proto::crypto::kdf::{self, Secret};
use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};
use cipherline_proto::crypto::pake::Password;
use cipherline_proto::crypto::sign::{IdentityKey, IdentityPublicKey, SignatureAlgorithm};
use cipherline_proto::error::DecodeError;
use cipherline_proto::frame::{HEADER_LEN, MAX_FRAME};
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::handshake::server::{ExpectClientHello, ServerStep};
use cipherline_proto::message::{
    ClientAuth, ClientAuthRequest, ClientHello, Finished, MessageType, ServerHello, ServerIdentity, split_message,
};
use cipherline_proto::record::{BUCKETS, RecordOpener};
use cipherline_proto::suite::Aead;
use cipherline_proto::{AlertCode, ClientConfig, Deframer, Error, Frame, FrameKind, Received, ServerConfig, Session};
use cipherline_proto::{Suite, session::Role};

/// The client's random generator seed in every driver and seed: with it, a
/// recorded server flight authenticates again when replayed.
pub const CLIENT_RNG_SEED: [u8; 32] = [0x11; 32];
/// The server's random generator seed, likewise.
pub const SERVER_RNG_SEED: [u8; 32] = [0xee; 32];

/// The RSA-2048 test key (PKCS#8 DER) from the repository's testdata.
const RSA2048_PK8: &[u8] = include_bytes!("../../testdata/keys/rsa2048.pk8.der");

fn x25519_key() -> Arc<ServerKey> {
    static KEY: OnceLock<Arc<ServerKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(ServerKey::x25519_from_bytes(&[0x42; 32]).expect("X25519 test key"))).clone()
}

fn rsa_key() -> Arc<ServerKey> {
    static KEY: OnceLock<Arc<ServerKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(ServerKey::rsa_from_pkcs8(RSA2048_PK8).expect("RSA test key"))).clone()
}

fn identity_key() -> Arc<IdentityKey> {
    static KEY: OnceLock<Arc<IdentityKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(IdentityKey::ed25519_from_seed(&[0x33; 32]).expect("Ed25519 test key"))).clone()
}

/// The password of password-mode drivers and seeds.
fn password() -> Password {
    Password::new(b"correct horse battery staple".to_vec()).expect("test password")
}

/// The client name bound into password-mode handshakes.
pub const PASSWORD_NAME: &str = "alice";

/// The server configuration a driver uses, chosen by the input's first
/// byte: bit 0 the key (X25519 or RSA-2048), bits 1-2 client
/// authentication (none, optional, required), bit 3 the no-forward-secrecy
/// suite (RSA only), bits 4-5 password mode (none, key and password,
/// password only).
#[must_use]
pub fn server_config(sel: u8) -> Arc<ServerConfig> {
    let rsa = sel & 1 == 1;
    let mut config = match (sel >> 4) & 3 {
        2 => ServerConfig::password_only(password()),
        mode => {
            let mut config = ServerConfig::new(if rsa { rsa_key() } else { x25519_key() });
            if mode == 1 {
                config.password = Some(password());
            }
            config
        }
    };
    config.client_auth = match (sel >> 1) & 3 {
        1 => ClientAuthRequest::Optional,
        2 => ClientAuthRequest::Required,
        _ => ClientAuthRequest::None,
    };
    if rsa && sel & 8 != 0 && config.key.is_some() {
        config.dangerous_allow_no_forward_secrecy = true;
        config.suites.push(Suite::SEED_FAITHFUL);
    }
    Arc::new(config)
}

/// The client configuration a driver uses, chosen by the input's first
/// byte: bit 0 an Ed25519 identity key, bit 1 the no-forward-secrecy suite
/// allowed, bit 2 classical suites only (no ML-KEM, whose randomness comes
/// from inside AWS-LC and so cannot be replayed from a seed), bit 3 a
/// password (password mode).
#[must_use]
pub fn client_config(sel: u8) -> Arc<ClientConfig> {
    let mut config = ClientConfig::default();
    if sel & 8 != 0 {
        config.password = Some(password());
        config.name = Some(PASSWORD_NAME.to_owned());
        // Password-only servers are among the drivers' servers.
        config.password_only = true;
    }
    if sel & 1 != 0 {
        config.identity = Some(identity_key());
    }
    if sel & 2 != 0 {
        config.dangerous_allow_no_forward_secrecy = true;
        config.suites.push(Suite::SEED_FAITHFUL);
    }
    if sel & 4 != 0 {
        config.suites.retain(|s| !s.is_post_quantum());
    }
    Arc::new(config)
}

/// How far a handshake driver got with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The first message was refused (or absent).
    Start,
    /// The first message was accepted and the handshake keys derived.
    Keys,
    /// The handshake completed and records reached the session.
    Session,
}

/// The next whole frame, or `None` when the input is incomplete or invalid
/// (after checking that the error maps to an alert).
fn next_frame(frames: &mut Deframer) -> Option<Frame> {
    match frames.next_frame() {
        Ok(frame) => frame,
        Err(e) => {
            let _ = Error::from(e).alert();
            None
        }
    }
}

/// Feeds every remaining frame to an established session, as a driver would.
fn drive_session(mut session: Session, frames: &mut Deframer, now: Instant) {
    while let Some(frame) = next_frame(frames) {
        match session.handle_frame(&frame, now) {
            Ok(_) => {
                let _ = session.poll_transmit(now);
            }
            Err(e) => {
                if let Some(code) = e.alert() {
                    let _ = session.alert(code);
                }
                return;
            }
        }
    }
    let _ = session.handle_eof();
}

/// Frame decoder: the stream is cut into frames the same way whatever the
/// read sizes, never buffers more than a frame plus one read, and every
/// frame re-encodes to the bytes it was cut from.
pub fn deframer(data: &[u8]) {
    let Some((&sel, stream)) = data.split_first() else { return };
    let chunk = 1 + usize::from(sel);
    let whole = deframe(stream, stream.len().max(1));
    let split = deframe(stream, chunk);
    assert_eq!(whole, split, "frames do not depend on how the stream was split");
}

/// Cuts `stream` into frames, pushing `chunk` bytes at a time; returns the
/// frames, whether it stopped at an error, and the bytes left over.
fn deframe(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Option<DecodeError>, usize) {
    let mut d = Deframer::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => {
                    let bytes = Frame::encode(frame.kind, &frame.body);
                    assert_eq!(bytes.get(..HEADER_LEN), Some(&frame.header[..]), "header kept as received");
                    assert!(bytes.len() <= MAX_FRAME);
                    out.push(bytes);
                }
                Ok(None) => break,
                // What is left after an error depends on the read sizes.
                Err(e) => return (out, Some(e), 0),
            }
        }
        assert!(d.buffered() < MAX_FRAME + chunk, "at most one partial frame plus one read is held");
    }
    let truncated = d.finish().is_err();
    assert_eq!(truncated, d.buffered() > 0);
    (out, None, d.buffered())
}

/// Handshake message decoders: every message that decodes re-encodes to
/// exactly its bytes (one valid encoding, PROTOCOL.md §1.3), and so do the
/// public keys peers send (ServerIdentity's server key, ClientAuth's key).
pub fn handshake_message(data: &[u8]) {
    // As a whole message: header, then the decoder for its type.
    if let Ok((ty, body)) = split_message(data) {
        let again = match ty {
            MessageType::ServerIdentity => ServerIdentity::decode(body).ok().map(|m| m.encode()),
            MessageType::ClientHello => ClientHello::decode(body).ok().map(|m| m.encode()),
            MessageType::ServerHello => ServerHello::decode(body).ok().map(|m| m.encode()),
            MessageType::ClientAuth => ClientAuth::decode(body).ok().map(|m| m.encode()),
            MessageType::Finished => Finished::decode(body).ok().map(|m| m.encode()),
        };
        if let Some(again) = again {
            assert_eq!(again.expect("a decoded message re-encodes"), data, "canonical encoding");
        }
    }
    // As a bare body for each decoder: reaches every decoder on every input.
    let bodies: [Option<Result<Vec<u8>, Error>>; 5] = [
        ServerIdentity::decode(data).ok().map(|m| m.encode()),
        ClientHello::decode(data).ok().map(|m| m.encode()),
        ServerHello::decode(data).ok().map(|m| m.encode()),
        ClientAuth::decode(data).ok().map(|m| m.encode()),
        Finished::decode(data).ok().map(|m| m.encode()),
    ];
    for encoded in bodies.into_iter().flatten() {
        let encoded = encoded.expect("a decoded body re-encodes");
        assert_eq!(encoded.get(HEADER_LEN..), Some(data), "canonical body");
    }
    // Public keys as they arrive in ServerIdentity and ClientAuth.
    if let Ok(key) = ServerPublicKey::from_spki(data) {
        assert_eq!(key.spki(), data, "one key, one encoding, one fingerprint");
    }
    for algorithm in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::RsaPssSha256] {
        if let Ok(key) = IdentityPublicKey::from_spki(algorithm, data) {
            assert_eq!(key.spki(), data, "one identity key, one encoding");
            assert!(!key.verify(b"fuzz", data), "no signature verifies over arbitrary bytes");
        }
    }
}

/// The server handshake fed arbitrary bytes: ClientHello, then [ClientAuth]
/// and Finished records, then session records. The first byte picks the
/// configuration ([`server_config`]); the server's randomness is seeded so
/// that a recorded client flight authenticates on replay.
pub fn server_handshake(data: &[u8]) -> Stage {
    let Some((&sel, stream)) = data.split_first() else { return Stage::Start };
    let now = Instant::now();
    let mut rng = SeededRng::new_for_testing_only(SERVER_RNG_SEED);
    let (state, _identity) = ExpectClientHello::new(server_config(sel)).expect("valid server configuration");
    let mut frames = Deframer::new();
    frames.push(stream);
    let Some(frame) = next_frame(&mut frames) else { return Stage::Start };
    let mut state = match state.handle_client_hello(&frame, &mut rng, now) {
        Ok((state, _reply)) => state,
        Err(e) => {
            let _ = e.alert();
            return Stage::Start;
        }
    };
    let session = loop {
        let Some(frame) = next_frame(&mut frames) else { return Stage::Keys };
        match state.handle_frame(&frame, now) {
            Ok(ServerStep::Continue(next)) => {
                assert!(next.client_identity().is_some(), "only an accepted ClientAuth continues");
                state = next;
            }
            Ok(ServerStep::Done(session)) => break session,
            Err(e) => {
                let _ = e.alert();
                return Stage::Keys;
            }
        }
    };
    assert_eq!(session.role(), Role::Server);
    drive_session(session, &mut frames, now);
    Stage::Session
}

/// The client handshake fed arbitrary bytes: ServerIdentity, ServerHello,
/// the server's Finished record, then session records. The first byte picks
/// the configuration ([`client_config`]); every server key is trusted (the
/// trust decision is the caller's, tested elsewhere).
pub fn client_handshake(data: &[u8]) -> Stage {
    let Some((&sel, stream)) = data.split_first() else { return Stage::Start };
    let now = Instant::now();
    let mut frames = Deframer::new();
    frames.push(stream);
    let state = ExpectServerIdentity::new(client_config(sel)).expect("valid client configuration");
    let Some(frame) = next_frame(&mut frames) else { return Stage::Start };
    let verify = match state.handle_server_identity(&frame) {
        Ok(verify) => verify,
        Err(e) => {
            let _ = e.alert();
            return Stage::Start;
        }
    };
    let _ = verify.suite();
    let mut rng = SeededRng::new_for_testing_only(CLIENT_RNG_SEED);
    let Ok((state, _hello)) = verify.into_client_hello(&mut rng) else { return Stage::Start };
    let Some(frame) = next_frame(&mut frames) else { return Stage::Start };
    let state = match state.handle_server_hello(&frame, now) {
        Ok(state) => state,
        Err(e) => {
            let _ = e.alert();
            return Stage::Start;
        }
    };
    let Some(frame) = next_frame(&mut frames) else { return Stage::Keys };
    let session = match state.handle_server_finished(&frame, now) {
        Ok((session, _finish)) => session,
        Err(e) => {
            let _ = e.alert();
            return Stage::Keys;
        }
    };
    assert_eq!(session.role(), Role::Client);
    drive_session(session, &mut frames, now);
    Stage::Session
}

/// A mirror of one direction's record keys, computed here from the
/// specification (PROTOCOL.md §6.3, §8) rather than taken from the code
/// under test, so that the driver can seal any inner plaintext at all.
struct Mirror {
    aead: Aead,
    secret: Secret,
    key: AeadKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Mirror {
    fn new(aead: Aead, secret: Secret) -> Self {
        let prk = kdf::prk(&secret);
        let mut key = [0u8; KEY_LEN];
        kdf::expand_label_into(&prk, b"key", b"", &mut key).expect("key");
        let mut iv = [0u8; NONCE_LEN];
        kdf::expand_label_into(&prk, b"iv", b"", &mut iv).expect("iv");
        Mirror { aead, key: AeadKey::new(aead, &key).expect("AEAD key"), secret, iv, seq: 0 }
    }

    fn update(&mut self) {
        let next = kdf::expand_label(&kdf::prk(&self.secret), b"traffic upd", b"").expect("ratchet");
        *self = Mirror::new(self.aead, next);
    }

    fn seal(&self, inner: &[u8]) -> ([u8; HEADER_LEN], Vec<u8>) {
        let len = u16::try_from(inner.len() + TAG_LEN).expect("bucket fits").to_be_bytes();
        let header = [FrameKind::Record.to_u8(), len[0], len[1]];
        let mut nonce = self.iv;
        for (n, s) in nonce.iter_mut().skip(NONCE_LEN - 8).zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        let mut body = inner.to_vec();
        self.key.seal(nonce, &header, &mut body).expect("seal");
        (header, body)
    }
}

/// Takes `n` bytes from the front of `data` (fewer if it is shorter).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn take_u8(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or_default()
}

/// Record open: arbitrary frames and arbitrary *authentic* inner
/// plaintexts (any padding, any content type byte, all zeros), sealed by a
/// mirror of the key schedule. An authentic record must open to exactly
/// what the specification says; anything else must fail.
pub fn record_open(data: &[u8]) {
    let mut data = data;
    let aead = if take_u8(&mut data) & 1 == 0 { Aead::Aes256Gcm } else { Aead::ChaCha20Poly1305 };
    let secret = [7u8; 32];
    let now = Instant::now();
    let mut opener = RecordOpener::new(aead, Secret::new(secret), now).expect("opener");
    let mut mirror = Mirror::new(aead, Secret::new(secret));
    while !data.is_empty() {
        match take_u8(&mut data) % 4 {
            // A raw frame: header and body as given.
            0 => {
                let mut header = [0u8; HEADER_LEN];
                header.iter_mut().zip(take(&mut data, HEADER_LEN)).for_each(|(h, b)| *h = *b);
                let len = usize::from(u16::from_be_bytes([take_u8(&mut data), take_u8(&mut data)]));
                let body = take(&mut data, len);
                assert!(opener.open(&header, body).is_err(), "an unauthenticated record never opens");
            }
            // An authentic record with an arbitrary inner plaintext.
            1 | 2 => {
                let bucket = BUCKETS.get(usize::from(take_u8(&mut data)) % BUCKETS.len()).copied().unwrap_or(32);
                let content_len = usize::from(take_u8(&mut data)).min(bucket);
                let mut inner = take(&mut data, content_len).to_vec();
                inner.resize(bucket, 0);
                let (header, body) = mirror.seal(&inner);
                let result = opener.open(&header, &body);
                mirror.seq += 1;
                // What PROTOCOL.md §8.3 says the record holds.
                let expected = inner.iter().rposition(|&b| b != 0).and_then(|pos| {
                    let ty = inner.get(pos).copied()?;
                    (0x15..=0x18).contains(&ty).then(|| (ty, inner.get(..pos).unwrap_or_default().to_vec()))
                });
                match (result, expected) {
                    (Ok((ty, content)), Some((want_ty, want))) => {
                        assert_eq!(ty.to_u8(), want_ty, "content type");
                        assert_eq!(content.as_slice(), want.as_slice(), "content");
                    }
                    (Err(Error::Decode(DecodeError::BadInnerPlaintext)), None) => {}
                    (got, want) => panic!("authentic record: got {:?}, want {want:?}", got.map(|(t, _)| t)),
                }
            }
            // Both sides ratchet (after a KeyUpdate).
            _ => {
                opener.update(now).expect("update");
                mirror.update();
            }
        }
    }
}

/// An in-memory handshake between the drivers' client and server
/// configurations; returns both sessions and the four flights.
pub fn handshake_pair(client_sel: u8, server_sel: u8, now: Instant) -> Option<(Session, Session, [Vec<u8>; 4])> {
    let mut crng = SeededRng::new_for_testing_only(CLIENT_RNG_SEED);
    let mut srng = SeededRng::new_for_testing_only(SERVER_RNG_SEED);
    let one = |bytes: &[u8]| -> Vec<Frame> {
        let mut d = Deframer::new();
        d.push(bytes);
        std::iter::from_fn(|| d.next_frame().ok().flatten()).collect()
    };
    let (server, si) = ExpectClientHello::new(server_config(server_sel)).ok()?;
    let client = ExpectServerIdentity::new(client_config(client_sel)).ok()?;
    let client = client.handle_server_identity(one(&si).first()?).ok()?;
    let (client, ch) = client.into_client_hello(&mut crng).ok()?;
    let (mut server, sh_sf) = server.handle_client_hello(one(&ch).first()?, &mut srng, now).ok()?;
    let sh_frames = one(&sh_sf);
    let client = client.handle_server_hello(sh_frames.first()?, now).ok()?;
    let (client, cf) = client.handle_server_finished(sh_frames.get(1)?, now).ok()?;
    let mut done = None;
    for frame in one(&cf) {
        match server.handle_frame(&frame, now).ok()? {
            ServerStep::Continue(next) => server = next,
            ServerStep::Done(session) => {
                done = Some(session);
                break;
            }
        }
    }
    Some((client, done?, [si, ch, sh_sf, cf]))
}

/// One direction of a session under attack: what was sent, what is on the
/// wire, and what the receiver accepted.
#[derive(Default)]
struct Direction {
    sent: Vec<u8>,
    wire: Vec<Vec<u8>>,
    received: Vec<u8>,
    tampered: bool,
    dead: bool,
}

/// An established session under an active attacker: the input is a script
/// of sends, key updates, closes, bit flips, replays, reorders, drops,
/// injected frames and clock jumps, in both directions. Whatever happens, a
/// receiver only ever delivers a prefix of what its peer sent (nothing
/// forged, nothing out of order), and without interference it delivers all
/// of it.
pub fn session(data: &[u8]) {
    let mut data = data;
    let sel = take_u8(&mut data);
    let mut now = Instant::now();
    // Classical suites only, so the handshake is cheap; the AEAD varies.
    let server_sel = 0;
    let client_sel = 4 | (sel & 1);
    let Some((client, server, _)) = handshake_pair(client_sel, server_sel, now) else {
        panic!("the reference handshake failed");
    };
    let mut sides = [client, server];
    let mut dirs = [Direction::default(), Direction::default()];
    while !data.is_empty() {
        let op = take_u8(&mut data);
        let d = usize::from(op >> 7); // 0: client to server, 1: server to client
        let dir = dirs.get_mut(d).expect("two directions");
        let [a, b] = &mut sides;
        let (sender, receiver) = if d == 0 { (a, b) } else { (b, a) };
        match op & 0x0f {
            0 => {
                let n = usize::from(take_u8(&mut data)) * 67;
                let msg: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(op)).collect();
                if let Ok(wire) = sender.send(&msg, now) {
                    dir.sent.extend_from_slice(&msg);
                    dir.wire.push(wire);
                }
            }
            1 => {
                if let Ok(wire) = sender.request_key_update(now) {
                    dir.wire.push(wire);
                }
            }
            2 => {
                if let Ok(wire) = sender.close() {
                    dir.wire.push(wire);
                }
            }
            3 => {
                if let Ok(wire) = sender.alert(AlertCode::from_u8(take_u8(&mut data))) {
                    dir.wire.push(wire);
                }
            }
            4 => {
                let pos = usize::from(u16::from_be_bytes([take_u8(&mut data), take_u8(&mut data)]));
                let bit = take_u8(&mut data) % 8;
                if let Some(last) = dir.wire.last_mut()
                    && !last.is_empty()
                {
                    let i = pos % last.len();
                    if let Some(byte) = last.get_mut(i) {
                        *byte ^= 1 << bit;
                        dir.tampered = true;
                    }
                }
            }
            5 => {
                if let Some(last) = dir.wire.last().cloned() {
                    dir.wire.push(last);
                    dir.tampered = true;
                }
            }
            6 => {
                let n = dir.wire.len();
                if n >= 2 {
                    dir.wire.swap(n - 1, n - 2);
                    dir.tampered = true;
                }
            }
            7 => {
                if dir.wire.pop().is_some() {
                    dir.tampered = true;
                }
            }
            8 => {
                let n = usize::from(take_u8(&mut data));
                dir.wire.push(take(&mut data, n).to_vec());
                dir.tampered = true;
            }
            9 => now += Duration::from_secs(u64::from(take_u8(&mut data)) * 60),
            10 => {
                if let Ok(wire) = sender.handle_timeout(now)
                    && !wire.is_empty()
                {
                    dir.wire.push(wire);
                }
            }
            _ => {
                deliver(dir, receiver, now);
                // The receiver's KeyUpdate answer goes the other way.
                if let Ok(Some(answer)) = receiver.poll_transmit(now) {
                    let back = dirs.get_mut(1 - d).expect("two directions");
                    back.wire.push(answer);
                }
            }
        }
    }
    for (d, dir) in dirs.iter_mut().enumerate() {
        let [a, b] = &mut sides;
        let receiver = if d == 0 { b } else { a };
        deliver(dir, receiver, now);
        if !dir.tampered {
            assert_eq!(dir.received, dir.sent, "everything sent arrives when nobody interferes");
        }
    }
}

/// Delivers one direction's wire bytes to `receiver`; checks that what it
/// accepts is a prefix of what was sent.
fn deliver(dir: &mut Direction, receiver: &mut Session, now: Instant) {
    let bytes: Vec<u8> = dir.wire.drain(..).flatten().collect();
    if dir.dead {
        return;
    }
    let mut frames = Deframer::new();
    frames.push(&bytes);
    loop {
        match frames.next_frame() {
            Ok(Some(frame)) => match receiver.handle_frame(&frame, now) {
                Ok(Received::Data(data)) => {
                    dir.received.extend_from_slice(&data);
                    assert!(dir.sent.starts_with(&dir.received), "a receiver never delivers forged data");
                }
                Ok(Received::KeyUpdate | Received::CloseNotify) => {}
                Err(e) => {
                    assert!(dir.tampered || matches!(e, Error::AlertReceived(_)), "an honest stream fails: {e}");
                    dir.dead = true;
                    return;
                }
            },
            Ok(None) => break,
            Err(_) => {
                assert!(dir.tampered, "an honest stream deframes");
                dir.dead = true;
                return;
            }
        }
    }
    if frames.buffered() != 0 {
        // A partial frame: only an attacker leaves one.
        assert!(dir.tampered);
        dir.dead = true;
    }
}

/// Application messages: every message that decodes re-encodes to exactly
/// its bytes; the stream decoder refuses lengths over its limit and holds at
/// most one message plus one push.
pub fn app_message(data: &[u8]) {
    if let Ok(m) = ClientMessage::decode(data) {
        let encoded = m.encode().expect("a decoded client message re-encodes");
        assert_eq!(encoded.get(4..), Some(data), "canonical client message");
    }
    if let Ok(m) = ServerMessage::decode(data) {
        let encoded = m.encode().expect("a decoded server message re-encodes");
        assert_eq!(encoded.get(4..), Some(data), "canonical server message");
        // What a client checks next: every name in the grammar, or refused.
        let _ = m.check_names();
    }
    let Some((&sel, stream)) = data.split_first() else { return };
    let max = 1 + usize::from(sel) * 64;
    let chunk = 1 + usize::from(sel % 17);
    let mut decoder = MessageDecoder::new(max);
    for piece in stream.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    assert!(!msg.is_empty() && msg.len() <= max, "message within the limit");
                    let _ = (ClientMessage::decode(&msg), ServerMessage::decode(&msg));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(decoder.buffered() < 4 + max + chunk, "at most one partial message plus one push is held");
    }
}
