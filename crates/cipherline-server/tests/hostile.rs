//! Hostile clients against a real server on loopback (issue 8): garbage,
//! oversized and invalid lengths, slowloris, tampered, replayed, reordered
//! and truncated records, downgrades, a ClientHello encrypted to the wrong
//! key, name squatting, oversized messages and rate-limit abuse.
//!
//! In every case a legitimate pair of clients (from 127.0.0.1) keeps
//! chatting throughout, and the attacker (from 127.0.0.2) gets a clear close
//! reason: an alert code or an application Error code. The flood cases
//! (1,000 stalled handshakes, connections beyond `max_connections`, memory)
//! run the real binary: `crates/cipherline/tests/flood.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cipherline_client::{Client, ClientError, Options};
use cipherline_proto::app::{ClientMessage, ErrorCode, MessageDecoder, ServerMessage, Target};
use cipherline_proto::crypto::SystemRng;
use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::message::{ClientHello, Extensions, ServerIdentity, split_message};
use cipherline_proto::{AlertCode, ClientConfig, Deframer, Error, Frame, FrameKind, Received, Session};
use cipherline_server::{Limits, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

// ---------------------------------------------------------------- harness

struct Server {
    addr: SocketAddr,
    fingerprint: [u8; 32],
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../testdata/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

impl Server {
    async fn start(limits: Limits) -> Server {
        Server::start_with(Arc::new(ServerKey::x25519_from_bytes(&[0x5a; 32]).unwrap()), limits).await
    }

    async fn start_with(key: Arc<ServerKey>, limits: Limits) -> Server {
        let fingerprint = key.public_key().fingerprint();
        let settings = Settings { protocol: Arc::new(cipherline_proto::ServerConfig::new(key)), limits };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            cipherline_server::run(listener, settings, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server { addr, fingerprint, stop: Some(stop), task }
    }

    async fn client(&self, name: &str) -> Result<Client, ClientError> {
        let fp = self.fingerprint;
        let pin = move |_: &str, key: &ServerPublicKey| {
            if key.fingerprint() == fp { Ok(()) } else { Err("fingerprint mismatch".to_owned()) }
        };
        Client::connect(&self.addr.to_string(), name, &Options::default(), &pin).await
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        timeout(Duration::from_secs(10), self.task).await.expect("shutdown within its grace period").unwrap();
    }
}

/// A legitimate pair chatting in the background for the whole attack: every
/// 100 ms one of them (in turn) sends to the room, and the other must
/// receive each message, in order.
struct Chatter {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(usize, Duration)>,
}

impl Chatter {
    async fn start(server: &Server) -> Chatter {
        let mut alice = server.client("alice").await.unwrap();
        let mut bob = server.client("bob").await.unwrap();
        alice.join("lobby").await.unwrap();
        bob.join("lobby").await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut count, mut worst) = (0usize, Duration::ZERO);
            // At least three rounds, however fast the attack is.
            while count < 3 || !flag.load(Ordering::Relaxed) {
                let text = format!("message {count}");
                let (from, to) = if count % 2 == 0 { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
                let sent = Instant::now();
                timeout(Duration::from_secs(5), from.send_acked(Target::Room("lobby".into()), &text))
                    .await
                    .expect("the sender is acknowledged within 5 s during the attack")
                    .expect("the message is accepted during the attack");
                let got = timeout(Duration::from_secs(5), next_message(to))
                    .await
                    .expect("the other receives within 5 s during the attack");
                assert_eq!(got, text, "messages arrive in order");
                worst = worst.max(sent.elapsed());
                count += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (count, worst)
        });
        Chatter { stop, task }
    }

    /// Stops the pair and checks it chatted without trouble.
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (count, worst) = timeout(Duration::from_secs(20), self.task).await.unwrap().unwrap();
        assert!(count >= 3, "the pair kept chatting ({count} round trips)");
        assert!(worst < Duration::from_secs(3), "round trips stayed quick (worst {worst:?})");
    }
}

/// The text of the next chat message, skipping notices and pongs.
async fn next_message(c: &mut Client) -> String {
    loop {
        match c.recv().await.unwrap() {
            ServerMessage::Message(d) => return d.text,
            ServerMessage::Notice { .. } | ServerMessage::Pong { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A TCP connection from another loopback address than the legitimate
/// clients, as an attacking host would have.
async fn attacker_socket(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads everything until the server closes (at most 10 s); returns the
/// bytes received.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let read = timeout(Duration::from_secs(10), stream.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the server closed the connection");
    all
}

/// The frames in `bytes` (whole ones only).
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Deframer::new();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().ok().flatten()).collect()
}

/// The plaintext alert that ended a connection in the handshake phase.
fn plaintext_alert(bytes: &[u8]) -> Option<AlertCode> {
    let last = frames(bytes).pop()?;
    (last.kind == FrameKind::Alert).then(|| AlertCode::from_u8(last.body[0]))
}

/// Sends `bytes` after ServerIdentity and returns the alert that ended it.
async fn handshake_garbage(addr: SocketAddr, bytes: &[u8]) -> Option<AlertCode> {
    let mut s = attacker_socket(addr).await;
    let _ = s.write_all(bytes).await;
    plaintext_alert(&read_to_close(&mut s).await)
}

/// How a session-phase attacker's connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The server sent this alert (encrypted, or plaintext before the
    /// session started).
    Alert(AlertCode),
    /// The server sent this Error and closed.
    Refused(ErrorCode),
    /// The server closed without saying why (the attacker cut the stream).
    Closed,
}

/// An attacker that speaks the protocol itself, through the sans-IO core,
/// so it can send anything at all once the session is established.
struct Raw {
    stream: TcpStream,
    frames: Deframer,
    session: Session,
    messages: MessageDecoder,
}

impl Raw {
    /// Handshake (trusting the server's key) and Hello as `name`.
    async fn connect(addr: SocketAddr, name: &str) -> Raw {
        let mut raw = Raw::handshake(addr).await;
        raw.send(&ClientMessage::Hello { name: name.into() }.encode().unwrap()).await;
        match raw.recv().await {
            Some(ServerMessage::Welcome { .. }) => raw,
            other => panic!("no Welcome: {other:?}"),
        }
    }

    /// The handshake only (trusting the server's key), no Hello yet.
    async fn handshake(addr: SocketAddr) -> Raw {
        let mut stream = attacker_socket(addr).await;
        let mut frames = Deframer::new();
        let state = ExpectServerIdentity::new(Arc::new(ClientConfig::default())).unwrap();
        let si = read_frame(&mut stream, &mut frames).await.unwrap();
        let (state, hello) = state.handle_server_identity(&si).unwrap().into_client_hello(&mut SystemRng).unwrap();
        stream.write_all(&hello).await.unwrap();
        let sh = read_frame(&mut stream, &mut frames).await.unwrap();
        let state = state.handle_server_hello(&sh, Instant::now()).unwrap();
        let sf = read_frame(&mut stream, &mut frames).await.unwrap();
        let (session, finish) = state.handle_server_finished(&sf, Instant::now()).unwrap();
        stream.write_all(&finish).await.unwrap();
        Raw { stream, frames, session, messages: MessageDecoder::new(1 << 20) }
    }

    /// The records carrying `message`, without sending them.
    fn seal(&mut self, message: &[u8]) -> Vec<u8> {
        self.session.send(message, Instant::now()).unwrap()
    }

    async fn send(&mut self, message: &[u8]) {
        let wire = self.seal(message);
        self.stream.write_all(&wire).await.unwrap();
    }

    /// The next server message (`None` if the connection ended first).
    async fn recv(&mut self) -> Option<ServerMessage> {
        loop {
            if let Ok(Some(msg)) = self.messages.next_message() {
                return Some(ServerMessage::decode(&msg).unwrap());
            }
            let frame = read_frame(&mut self.stream, &mut self.frames).await?;
            match self.session.handle_frame(&frame, Instant::now()).ok()? {
                Received::Data(data) => self.messages.push(&data),
                Received::KeyUpdate => {
                    if let Some(answer) = self.session.poll_transmit(Instant::now()).unwrap() {
                        self.stream.write_all(&answer).await.unwrap();
                    }
                }
                Received::CloseNotify => return None,
            }
        }
    }

    /// Reads until the server closes; returns why it did.
    async fn outcome(mut self) -> Outcome {
        let mut refused = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            while let Ok(Some(msg)) = self.messages.next_message() {
                if let Ok(ServerMessage::Error { code, .. }) = ServerMessage::decode(&msg)
                    && code.is_fatal()
                {
                    refused = Some(code);
                }
            }
            let frame = tokio::time::timeout_at(deadline, read_frame(&mut self.stream, &mut self.frames))
                .await
                .expect("the server closes the attacker's connection within 10 s");
            let Some(frame) = frame else {
                return refused.map_or(Outcome::Closed, Outcome::Refused);
            };
            match self.session.handle_frame(&frame, Instant::now()) {
                Ok(Received::Data(data)) => self.messages.push(&data),
                Ok(Received::KeyUpdate) => {}
                Ok(Received::CloseNotify) => {
                    while let Ok(Some(msg)) = self.messages.next_message() {
                        if let Ok(ServerMessage::Error { code, .. }) = ServerMessage::decode(&msg) {
                            refused = Some(code);
                        }
                    }
                    return refused.map_or(Outcome::Closed, Outcome::Refused);
                }
                Err(Error::AlertReceived(code)) => return Outcome::Alert(code),
                Err(e) => panic!("the server sent something invalid: {e}"),
            }
        }
    }
}

/// The next whole frame from `stream` (`None` at the end of the stream or
/// after 10 s).
async fn read_frame(stream: &mut TcpStream, frames: &mut Deframer) -> Option<Frame> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(frame) = frames.next_frame().unwrap() {
            return Some(frame);
        }
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        frames.push(&buf[..n]);
    }
}

fn ping(nonce: u64) -> Vec<u8> {
    ClientMessage::Ping { nonce }.encode().unwrap()
}

/// The defaults, except that one address may open connections as fast as
/// the cases that retry dozens of times in a second do; the per-address
/// admission limits have their own attacks in tests/admission.rs.
fn rapid() -> Limits {
    Limits { new_connections_per_ip_per_sec: 1_000_000, new_connections_burst_per_ip: 1_000_000, ..Limits::default() }
}

// ------------------------------------------------------------------ cases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_gets_an_alert() {
    let server = Server::start(rapid()).await;
    let chat = Chatter::start(&server).await;
    // A deterministic pseudo-random stream (xorshift), an HTTP request and
    // a TLS ClientHello: none of them is a cipherline frame. The random
    // streams are longer than the largest frame, so whatever header they
    // start with, the server has a whole frame to refuse.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..20 {
        let garbage: Vec<u8> = (0..16_500 + round * 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let code = handshake_garbage(server.addr, &garbage).await;
        assert!(
            matches!(code, Some(AlertCode::DecodeError | AlertCode::RecordOverflow | AlertCode::UnexpectedMessage)),
            "round {round}: {code:?}"
        );
    }
    assert_eq!(
        handshake_garbage(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await,
        Some(AlertCode::DecodeError)
    );
    // A TLS record header reads as a handshake frame of 0x0301 bytes whose
    // message type (0x00) does not exist.
    let mut tls_client_hello = vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03];
    tls_client_hello.resize(1024, 0x5a);
    assert_eq!(handshake_garbage(server.addr, &tls_client_hello).await, Some(AlertCode::DecodeError));
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_invalid_lengths_are_refused_from_the_header() {
    let server = Server::start(Limits::default()).await;
    let chat = Chatter::start(&server).await;
    // Frame lengths are 16 bits: the largest (65535) and other values not
    // allowed for their kind are refused from the 3-byte header alone; the
    // server waits for none of the body it announces.
    for header in [[0x16, 0xff, 0xff], [0x17, 0xff, 0xff], [0x15, 0x00, 0x02], [0x16, 0x10, 0x01], [0x17, 0x00, 0x2f]] {
        assert_eq!(handshake_garbage(server.addr, &header).await, Some(AlertCode::RecordOverflow), "{header:?}");
    }
    // In a session: an application message announcing 4 GiB (and every
    // length over the server's limit) is refused as soon as its four length
    // bytes arrive.
    for len in [u32::MAX, 1 << 31, 65537] {
        let mut raw = Raw::connect(server.addr, "big").await;
        raw.send(&len.to_be_bytes()).await;
        assert_eq!(raw.outcome().await, Outcome::Refused(ErrorCode::MessageTooLarge), "length {len}");
    }
    // A zero length is invalid, not "an empty message".
    let mut raw = Raw::connect(server.addr, "zero").await;
    raw.send(&[0, 0, 0, 0]).await;
    assert_eq!(raw.outcome().await, Outcome::Alert(AlertCode::RecordOverflow));
    // Before Hello (PROTOCOL.md §13.1) both are the encrypted alert
    // record_overflow: there is no Welcome yet to give the limit in.
    for len in [0, u32::MAX, 65537] {
        let mut raw = Raw::handshake(server.addr).await;
        raw.send(&len.to_be_bytes()).await;
        assert_eq!(raw.outcome().await, Outcome::Alert(AlertCode::RecordOverflow), "length {len} before Hello");
    }
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_timeouts() {
    let limits = Limits { handshake_timeout_secs: 2, idle_timeout_secs: 2, ..Limits::default() };
    let server = Server::start(limits).await;
    let chat = Chatter::start(&server).await;
    // A real ClientHello, one byte per second: never complete in time.
    let mut s = attacker_socket(server.addr).await;
    let mut frames = Deframer::new();
    let si = read_frame(&mut s, &mut frames).await.unwrap();
    let state = ExpectServerIdentity::new(Arc::new(ClientConfig::default())).unwrap();
    let (_state, hello) = state.handle_server_identity(&si).unwrap().into_client_hello(&mut SystemRng).unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 64];
    for byte in hello {
        if s.write_all(&[byte]).await.is_err() {
            break;
        }
        match timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    received.extend(read_to_close(&mut s).await);
    assert_eq!(plaintext_alert(&received), Some(AlertCode::Timeout));
    assert!(started.elapsed() < Duration::from_secs(5), "cut off after the 2 s handshake timeout");

    // The same in a session: one byte per second of a message never makes
    // a message, so the idle timeout ends it with a clear Error.
    let mut raw = Raw::connect(server.addr, "trickle").await;
    let wire = raw.seal(&ping(1));
    let started = Instant::now();
    for byte in wire.iter().take(5) {
        if raw.stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(raw.outcome().await, Outcome::Refused(ErrorCode::IdleTimeout));
    assert!(started.elapsed() < Duration::from_secs(8));
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_reordered_and_truncated_records_end_the_attacker() {
    let server = Server::start(Limits::default()).await;
    let chat = Chatter::start(&server).await;

    // Tampered: any flipped bit (here in the header, the ciphertext, the tag).
    for pos in [2usize, 10, 40] {
        let mut raw = Raw::connect(server.addr, "tamper").await;
        let mut wire = raw.seal(&ping(1));
        wire[pos] ^= 0x01;
        raw.stream.write_all(&wire).await.unwrap();
        let expected = if pos < 3 { AlertCode::RecordOverflow } else { AlertCode::BadRecordMac };
        assert_eq!(raw.outcome().await, Outcome::Alert(expected), "bit flipped at byte {pos}");
    }

    // Replayed.
    let mut raw = Raw::connect(server.addr, "replay").await;
    let wire = raw.seal(&ping(1));
    raw.stream.write_all(&wire).await.unwrap();
    assert_eq!(raw.recv().await, Some(ServerMessage::Pong { nonce: 1 }));
    raw.stream.write_all(&wire).await.unwrap();
    assert_eq!(raw.outcome().await, Outcome::Alert(AlertCode::BadRecordMac));

    // Reordered.
    let mut raw = Raw::connect(server.addr, "reorder").await;
    let first = raw.seal(&ping(1));
    let second = raw.seal(&ping(2));
    raw.stream.write_all(&second).await.unwrap();
    raw.stream.write_all(&first).await.unwrap();
    assert_eq!(raw.outcome().await, Outcome::Alert(AlertCode::BadRecordMac));

    // Dropped: the record after a missing one does not open.
    let mut raw = Raw::connect(server.addr, "dropped").await;
    let _lost = raw.seal(&ping(1));
    raw.send(&ping(2)).await;
    assert_eq!(raw.outcome().await, Outcome::Alert(AlertCode::BadRecordMac));

    // Truncated in the middle of a record, and cut without close_notify: the
    // server treats both as an attack on the stream and closes.
    let mut raw = Raw::connect(server.addr, "truncated").await;
    let wire = raw.seal(&ping(1));
    raw.stream.write_all(&wire[..wire.len() - 7]).await.unwrap();
    raw.stream.shutdown().await.unwrap();
    assert_eq!(raw.outcome().await, Outcome::Closed);
    let mut raw = Raw::connect(server.addr, "cut").await;
    raw.stream.shutdown().await.unwrap();
    assert_eq!(raw.outcome().await, Outcome::Closed);

    // Plaintext frames injected into a session (an alert, a handshake
    // message) are not believed there.
    for injected in [vec![0x15, 0x00, 0x01, 0x00], vec![0x16, 0x00, 0x04, 0x14, 0x00, 0x01, 0x00]] {
        let mut raw = Raw::connect(server.addr, "inject").await;
        raw.stream.write_all(&injected).await.unwrap();
        assert_eq!(raw.outcome().await, Outcome::Alert(AlertCode::UnexpectedMessage), "{injected:?}");
    }
    chat.finish().await;
    server.stop().await;
}

/// ServerIdentity as the server sent it, and its frame.
async fn server_identity(s: &mut TcpStream) -> (ServerIdentity, Frame) {
    let mut frames = Deframer::new();
    let frame = read_frame(s, &mut frames).await.unwrap();
    let (_, body) = split_message(&frame.body).unwrap();
    (ServerIdentity::decode(body).unwrap(), frame)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgraded_suites_and_versions_are_refused() {
    let server = Server::start(Limits::default()).await;
    let chat = Chatter::start(&server).await;
    let (identity, _) = server_identity(&mut attacker_socket(server.addr).await).await;
    assert!(identity.suites.iter().all(|&s| s != 0x0101), "the no-forward-secrecy suite is not offered");
    // A client asking for a suite the server did not offer (the seed's
    // no-forward-secrecy suite, an unknown one), or another version.
    for (version, suite) in [(1u16, 0x0101u16), (1, 0x0111), (1, 0xffff), (2, 0x0211), (0, 0x0211)] {
        let mut s = attacker_socket(server.addr).await;
        let _ = server_identity(&mut s).await;
        let hello = ClientHello {
            version,
            random: [7; 32],
            suite,
            ephemeral_share: vec![9; 32],
            static_ciphertext: vec![9; 32],
            extensions: Extensions::default(),
        }
        .encode()
        .unwrap();
        s.write_all(&Frame::encode(FrameKind::Handshake, &hello)).await.unwrap();
        let code = plaintext_alert(&read_to_close(&mut s).await);
        assert_eq!(code, Some(AlertCode::IllegalParameter), "version {version:#06x}, suite {suite:#06x}");
    }
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_encrypted_to_the_wrong_key_learns_nothing_and_fails() {
    let key = Arc::new(ServerKey::rsa_from_pkcs8(&testdata("keys/rsa2048.pk8.der")).unwrap());
    let other = ServerKey::rsa_from_pkcs8(&testdata("keys/rsa2048b.pk8.der")).unwrap();
    let server = Server::start_with(key, Limits::default()).await;
    let chat = Chatter::start(&server).await;

    // The attacker encapsulates to another RSA key than the server's. With
    // implicit rejection the server answers exactly as it would a good
    // ClientHello (ServerHello and Finished, no alert, no early close), so
    // it is no decryption oracle; the attacker cannot read that Finished,
    // and whatever it sends next is refused with decrypt_error.
    let mut s = attacker_socket(server.addr).await;
    let (mut identity, _) = server_identity(&mut s).await;
    identity.server_key = other.public_key().spki().to_vec();
    let forged = Frame::encode(FrameKind::Handshake, &identity.encode().unwrap());
    let mut frames = Deframer::new();
    frames.push(&forged);
    let state = ExpectServerIdentity::new(Arc::new(ClientConfig::default())).unwrap();
    let verify = state.handle_server_identity(&frames.next_frame().unwrap().unwrap()).unwrap();
    let (state, hello) = verify.into_client_hello(&mut SystemRng).unwrap();
    s.write_all(&hello).await.unwrap();
    let mut frames = Deframer::new();
    let sh = read_frame(&mut s, &mut frames).await.expect("a ServerHello, as for any ClientHello");
    assert_eq!(sh.kind, FrameKind::Handshake);
    let sf = read_frame(&mut s, &mut frames).await.expect("and the server's Finished");
    assert_eq!(sf.kind, FrameKind::Record);
    let state = state.handle_server_hello(&sh, Instant::now()).unwrap();
    let err = state.handle_server_finished(&sf, Instant::now()).err().expect("the attacker cannot verify it");
    assert_eq!(err.alert(), Some(AlertCode::DecryptError));
    // A made-up Finished record.
    s.write_all(&[&[0x17, 0x00, 0x30][..], &[0x42; 48]].concat()).await.unwrap();
    assert_eq!(plaintext_alert(&read_to_close(&mut s).await), Some(AlertCode::DecryptError));

    // A static ciphertext of the wrong length is malformed, and says so.
    let mut s = attacker_socket(server.addr).await;
    let _ = server_identity(&mut s).await;
    let hello = ClientHello {
        version: 1,
        random: [7; 32],
        suite: 0x0111,
        ephemeral_share: vec![9; 32],
        static_ciphertext: vec![9; 255],
        extensions: Extensions::default(),
    }
    .encode()
    .unwrap();
    s.write_all(&Frame::encode(FrameKind::Handshake, &hello)).await.unwrap();
    assert_eq!(plaintext_alert(&read_to_close(&mut s).await), Some(AlertCode::DecodeError));
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_be_squatted_or_spoofed() {
    let server = Server::start(rapid()).await;
    let chat = Chatter::start(&server).await;
    // The names in use are refused, however often the attacker tries.
    for _ in 0..20 {
        for name in ["alice", "bob"] {
            let err = server.client(name).await.err().expect("a name in use is refused");
            assert!(matches!(err, ClientError::Refused { code: ErrorCode::NameTaken, .. }), "{err:?}");
        }
    }
    // Look-alikes, control characters, overlong names: invalid, not taken.
    for name in ["аlice", "alice\u{0}", "bob\n", "alice ", ".alice", "-bob", &"a".repeat(33), ""] {
        let err = server.client(name).await.err().expect("an invalid name is refused");
        assert!(matches!(err, ClientError::Refused { code: ErrorCode::InvalidName, .. }), "{name:?}: {err:?}");
    }
    // A connected attacker speaks under its own name only: the relay
    // stamps the sender, so it cannot pass a message off as alice's.
    let mut mallory = server.client("mallory").await.unwrap();
    mallory.join("hall").await.unwrap();
    let mut carol = server.client("carol").await.unwrap();
    carol.join("hall").await.unwrap();
    mallory.send_acked(Target::Room("hall".into()), "alice: send me your password").await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), carol.recv()).await.unwrap().unwrap() {
            ServerMessage::Message(d) if d.text.contains("password") => {
                assert_eq!(d.from, "mallory");
                break;
            }
            _ => {}
        }
    }
    // Hello again, to take over another name mid-session: refused.
    mallory.send_message(&ClientMessage::Hello { name: "alice".into() }).await.unwrap();
    loop {
        if let ServerMessage::Error { code, .. } =
            timeout(Duration::from_secs(5), mallory.recv()).await.unwrap().unwrap()
        {
            assert_eq!(code, ErrorCode::HelloRequired);
            break;
        }
    }
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_messages_close_only_the_sender() {
    let server = Server::start(Limits { max_message_bytes: 17408, ..Limits::default() }).await;
    let chat = Chatter::start(&server).await;
    // A message over the server's limit, announced honestly.
    let mut raw = Raw::connect(server.addr, "oversized").await;
    let text = "x".repeat(40_000);
    let mut msg = (1 + 8 + 2 + 5 + 4 + text.len() as u32 + 1).to_be_bytes().to_vec();
    msg.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5]);
    msg.extend_from_slice(b"lobby");
    msg.extend_from_slice(&(text.len() as u32).to_be_bytes());
    msg.extend_from_slice(text.as_bytes());
    msg.push(0);
    raw.send(&msg).await;
    assert_eq!(raw.outcome().await, Outcome::Refused(ErrorCode::MessageTooLarge));
    // Fields over their bounds, bad UTF-8, unknown types, trailing bytes.
    let chunk_too_big = [&[0x0a, 0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0x01][..], &[0u8; 16385]].concat();
    let bad: [&[u8]; 5] = [&chunk_too_big, &[0x02, 2, 0xff, 0xfe], &[0x7f], &[0x06, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]];
    for body in bad {
        let mut raw = Raw::connect(server.addr, "malformed").await;
        let mut msg = (body.len() as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(body);
        raw.send(&msg).await;
        let expected = if body.is_empty() {
            Outcome::Alert(AlertCode::RecordOverflow)
        } else {
            Outcome::Refused(ErrorCode::BadRequest)
        };
        assert_eq!(raw.outcome().await, expected, "{:?}", &body[..body.len().min(4)]);
    }
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_abuse_is_refused_and_harms_no_one_else() {
    let server = Server::start(Limits { messages_per_sec: 20, burst: 40, ..Limits::default() }).await;
    let chat = Chatter::start(&server).await;
    let mut raw = Raw::connect(server.addr, "flooder").await;
    // 500 pings at once: the burst is answered, the rest refused and
    // dropped, and the connection stays open (the refusal is not fatal).
    let mut wire = Vec::new();
    for n in 0..500 {
        wire.extend(raw.seal(&ping(n)));
    }
    raw.stream.write_all(&wire).await.unwrap();
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < 500 {
        match timeout(Duration::from_secs(10), raw.recv()).await.unwrap() {
            Some(ServerMessage::Pong { .. }) => pongs += 1,
            Some(ServerMessage::Error { code: ErrorCode::RateLimited, .. }) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((40..100).contains(&pongs), "the burst and a little more are served ({pongs})");
    assert!(limited > 400, "the rest are refused ({limited})");
    // Unmetered messages (file chunks for no transfer) are ignored cheaply,
    // and key updates are answered, without slowing anyone down.
    let mut wire = Vec::new();
    for n in 0..2000 {
        wire.extend(raw.seal(&ClientMessage::FileChunk { transfer: n, data: vec![0; 512] }.encode().unwrap()));
    }
    raw.stream.write_all(&wire).await.unwrap();
    for _ in 0..200 {
        let update = raw.session.request_key_update(Instant::now()).unwrap();
        raw.stream.write_all(&update).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    raw.send(&ping(9999)).await;
    loop {
        match timeout(Duration::from_secs(10), raw.recv()).await.unwrap() {
            Some(ServerMessage::Pong { nonce: 9999 }) => break,
            Some(_) => {}
            None => panic!("the flooder was disconnected"),
        }
    }
    chat.finish().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_hello_are_rate_limited_too() {
    // PROTOCOL.md §13.5: the rate limit covers every client message, also
    // the ones before Hello succeeds (a client may retry Hello, and is told
    // hello_required for anything else, but not without limit).
    let server = Server::start(Limits { messages_per_sec: 20, burst: 40, ..Limits::default() }).await;
    let chat = Chatter::start(&server).await;
    let mut raw = Raw::handshake(server.addr).await;
    let mut wire = Vec::new();
    for n in 0..300 {
        let msg =
            if n % 2 == 0 { ClientMessage::Hello { name: "alice".into() } } else { ClientMessage::Ping { nonce: n } };
        wire.extend(raw.seal(&msg.encode().unwrap()));
    }
    raw.stream.write_all(&wire).await.unwrap();
    let (mut answered, mut limited) = (0, 0);
    while answered + limited < 300 {
        match timeout(Duration::from_secs(10), raw.recv()).await.unwrap() {
            Some(ServerMessage::Error { code: ErrorCode::NameTaken | ErrorCode::HelloRequired, .. }) => answered += 1,
            Some(ServerMessage::Error { code: ErrorCode::RateLimited, .. }) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(answered < 100, "only the burst and a little more are processed ({answered})");
    assert!(limited > 200, "the rest are refused ({limited})");
    // Once the rate allows, Hello still works.
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send(&ClientMessage::Hello { name: "latecomer".into() }.encode().unwrap()).await;
    loop {
        match timeout(Duration::from_secs(5), raw.recv()).await.unwrap() {
            Some(ServerMessage::Welcome { name, .. }) => {
                assert_eq!(name, "latecomer");
                break;
            }
            Some(ServerMessage::Error { code: ErrorCode::RateLimited, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    chat.finish().await;
    server.stop().await;
}
