//! A man in the middle between a real client (the client library) and a
//! real server (the `cipherline serve` process), issue 8. The proxy relays
//! frames and, depending on the case, substitutes its own server key,
//! downgrades the suite list, flips bits, or drops, replays, reorders or
//! cuts records. The client must refuse or fail every time, and must never
//! show a message that the peer did not send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherline_client::{Client, ClientError, Options};
use cipherline_proto::app::{ServerMessage, Target};
use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};
use cipherline_proto::message::{ServerIdentity, split_message};
use cipherline_proto::{AlertCode, Deframer, Frame, FrameKind};
use common::{Server, bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Relay faithfully (the control case).
    None,
    /// Replace the key in ServerIdentity with the attacker's own.
    SubstituteKey,
    /// Offer the client only the weakest suite the server has.
    DowngradeSuites,
    /// Flip one bit of frame number `n` (both directions, in the order they
    /// pass) at byte `at` (0 is the kind byte; the length bytes are left
    /// alone, since a longer length only makes the receiver wait for its
    /// timeout).
    FlipHandshake { n: usize, at: usize },
    /// Once armed, flip a bit in the next record to the client.
    FlipToClient,
    /// Once armed, flip a bit in the next record to the server.
    FlipToServer,
    /// Once armed, drop the next record to the client.
    Drop,
    /// Once armed, deliver the next record to the client twice.
    Replay,
    /// Once armed, swap the next two records to the client.
    Reorder,
    /// Once armed, cut the connection in the middle of the next record.
    Truncate,
}

struct Proxy {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
}

/// The attacker's own X25519 server key.
fn attacker_key() -> ServerKey {
    ServerKey::x25519_from_bytes(&[0x66; 32]).unwrap()
}

impl Proxy {
    async fn start(server: SocketAddr, attack: Attack) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let handshake_frames = Arc::new(AtomicUsize::new(0));
        let flag = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = TcpStream::connect(server).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = upstream.into_split();
                let cut = Arc::new(Mutex::new(false));
                tokio::spawn(relay(sr, cw, true, attack, flag.clone(), handshake_frames.clone(), cut.clone()));
                tokio::spawn(relay(cr, sw, false, attack, flag.clone(), handshake_frames.clone(), cut));
            }
        });
        Proxy { addr, armed }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

/// Relays frames from `from` to `to`, applying `attack`.
async fn relay(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    to_client: bool,
    attack: Attack,
    armed: Arc<AtomicBool>,
    handshake_frames: Arc<AtomicUsize>,
    cut: Arc<Mutex<bool>>,
) {
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut held: Option<Vec<u8>> = None;
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || *cut.lock().unwrap() {
            break;
        }
        deframer.push(&buf[..n]);
        while let Ok(Some(frame)) = deframer.next_frame() {
            let mut bytes = Frame::encode(frame.kind, &frame.body);
            let record = frame.kind == FrameKind::Record;
            let fire = record && armed.load(Ordering::SeqCst);
            match attack {
                Attack::SubstituteKey | Attack::DowngradeSuites if to_client && is_server_identity(&frame) => {
                    bytes = rewrite_identity(&frame, attack);
                }
                // Frames are counted in the order they pass, both ways:
                // ServerIdentity, ClientHello, ServerHello, the server's
                // Finished, the client's Finished.
                Attack::FlipHandshake { n, at } if handshake_frames.fetch_add(1, Ordering::SeqCst) == n => {
                    let i = at % bytes.len();
                    bytes[i] ^= 0x10;
                }
                Attack::FlipToClient if to_client && fire => {
                    armed.store(false, Ordering::SeqCst);
                    let last = bytes.len() - 20;
                    bytes[last] ^= 0x01;
                }
                Attack::FlipToServer if !to_client && fire => {
                    armed.store(false, Ordering::SeqCst);
                    bytes[5] ^= 0x80;
                }
                Attack::Drop if to_client && fire => {
                    armed.store(false, Ordering::SeqCst);
                    continue;
                }
                Attack::Replay if to_client && fire => {
                    armed.store(false, Ordering::SeqCst);
                    let twice = [bytes.clone(), bytes].concat();
                    bytes = twice;
                }
                Attack::Reorder if to_client && fire => {
                    if let Some(first) = held.take() {
                        armed.store(false, Ordering::SeqCst);
                        bytes.extend_from_slice(&first);
                    } else {
                        held = Some(bytes);
                        continue;
                    }
                }
                Attack::Truncate if to_client && fire => {
                    let half = bytes.len() / 2;
                    let _ = to.write_all(&bytes[..half]).await;
                    *cut.lock().unwrap() = true;
                    let _ = to.shutdown().await;
                    return;
                }
                _ => {}
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
    let _ = to.shutdown().await;
}

fn is_server_identity(frame: &Frame) -> bool {
    frame.kind == FrameKind::Handshake && frame.body.first() == Some(&0x01)
}

fn rewrite_identity(frame: &Frame, attack: Attack) -> Vec<u8> {
    let (_, body) = split_message(&frame.body).unwrap();
    let mut identity = ServerIdentity::decode(body).unwrap();
    match attack {
        Attack::SubstituteKey => identity.server_key = attacker_key().public_key().spki().to_vec(),
        // The server has an X25519 key: keep only its weakest suite
        // (X25519 + X25519 + ChaCha20-Poly1305, no ML-KEM).
        _ => identity.suites = vec![0x0212],
    }
    Frame::encode(FrameKind::Handshake, &identity.encode().unwrap())
}

struct Setup {
    server: Server,
    addr: SocketAddr,
    fingerprint: [u8; 32],
    _dir: tempfile::TempDir,
}

fn start_server() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server_x25519");
    let made = bin().args(["keygen", "--type", "x25519", "--out", key.to_str().unwrap()]).output().unwrap();
    assert!(made.status.success());
    // Every proxied connection comes from 127.0.0.1, dozens of them within
    // a second: lift the per-address connection rate (tested on its own in
    // cipherline-server's tests/admission.rs).
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[limits]\nnew_connections_per_ip_per_sec = 1000000\nnew_connections_burst_per_ip = 1000000\n",
    )
    .unwrap();
    let server = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    let fp_text = server.fingerprint.clone();
    // The pinned fingerprint, as bytes, for the trust check.
    let fingerprint = *fp_text.parse::<cipherline_keys::Fingerprint>().unwrap().as_bytes();
    Setup { server, addr, fingerprint, _dir: dir }
}

/// A client that pins the real server's key.
async fn pinned(addr: SocketAddr, name: &str, fingerprint: [u8; 32]) -> Result<Client, ClientError> {
    let pin = move |_: &str, key: &ServerPublicKey| {
        if key.fingerprint() == fingerprint { Ok(()) } else { Err("not the pinned key".to_owned()) }
    };
    timeout(Duration::from_secs(15), Client::connect(&addr.to_string(), name, &Options::default(), &pin))
        .await
        .expect("the client gives up within its timeouts")
}

/// A client that trusts whatever key it is shown (a first contact whose
/// user accepted the fingerprint without checking it).
async fn trusting(addr: SocketAddr, name: &str) -> Result<Client, ClientError> {
    let any = |_: &str, _: &ServerPublicKey| Ok(());
    timeout(Duration::from_secs(15), Client::connect(&addr.to_string(), name, &Options::default(), &any))
        .await
        .expect("the client gives up within its timeouts")
}

/// Messages `c` shows until its connection fails (or 700 ms of silence:
/// on loopback, anything relayed arrives within milliseconds).
async fn shown(c: &mut Client) -> (Vec<String>, Option<ClientError>) {
    let mut texts = Vec::new();
    loop {
        match timeout(Duration::from_millis(700), c.recv()).await {
            Ok(Ok(ServerMessage::Message(d))) => texts.push(d.text),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return (texts, Some(e)),
            Err(_) => return (texts, None),
        }
    }
}

fn lobby() -> Target {
    Target::Room("lobby".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_or_fails_under_every_attack_and_shows_no_forgery() {
    let setup = start_server();
    let fp = setup.fingerprint;
    let mut bob = pinned(setup.addr, "bob", fp).await.unwrap();
    bob.join("lobby").await.unwrap();

    // Control: through a faithful proxy, everything works.
    let proxy = Proxy::start(setup.addr, Attack::None).await;
    let mut alice = pinned(proxy.addr, "alice0", fp).await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.send_acked(lobby(), "through the proxy").await.unwrap();
    let (texts, err) = shown(&mut alice).await;
    assert_eq!((texts, err.is_none()), (vec!["through the proxy".to_owned()], true));
    alice.close().await.unwrap();

    // The attacker's own key in ServerIdentity: a client with a pin refuses
    // before sending anything secret; one that trusts any key (TOFU gone
    // wrong) encapsulates to the attacker, and since the proxy cannot make
    // the real server's Finished match, the handshake fails there.
    let proxy = Proxy::start(setup.addr, Attack::SubstituteKey).await;
    let err = pinned(proxy.addr, "alice1", fp).await.err().expect("refused");
    assert!(matches!(err, ClientError::Untrusted(_)), "{err:?}");
    let err = trusting(proxy.addr, "alice1").await.err().expect("failed");
    match &err {
        ClientError::Net(e) => assert!(e.to_string().contains("authentication"), "{e}"),
        other => panic!("{other:?}"),
    }

    // Downgrade: stripping the strong suites from ServerIdentity changes the
    // client's transcript, so the server's Finished does not verify.
    let proxy = Proxy::start(setup.addr, Attack::DowngradeSuites).await;
    let err = pinned(proxy.addr, "alice2", fp).await.err().expect("downgrade detected");
    assert!(matches!(err, ClientError::Net(_)), "{err:?}");

    // A flipped bit anywhere in the handshake (each of its five frames:
    // kind byte, fields, randomness, keys, ciphertext): never a session.
    for n in 0..5 {
        for at in [0usize, 3, 5, 20, 45, 60, 100] {
            let proxy = Proxy::start(setup.addr, Attack::FlipHandshake { n, at }).await;
            let result = pinned(proxy.addr, &format!("flip{n}x{at}"), fp).await;
            assert!(result.is_err(), "flight {n}, byte {at}: the handshake must fail");
        }
    }

    // Records: each attack on the way to the client ends its connection
    // with an error, and it shows only messages bob really sent.
    let attacks = [Attack::FlipToClient, Attack::Drop, Attack::Replay, Attack::Reorder, Attack::Truncate];
    for (i, attack) in attacks.into_iter().enumerate() {
        let proxy = Proxy::start(setup.addr, attack).await;
        let name = format!("alice-r{i}");
        let mut alice = pinned(proxy.addr, &name, fp).await.unwrap();
        alice.join("lobby").await.unwrap();
        bob.send_acked(lobby(), "genuine 1").await.unwrap();
        let (texts, err) = shown(&mut alice).await;
        assert_eq!((texts.as_slice(), err.is_none()), (&["genuine 1".to_owned()][..], true), "{attack:?}");
        proxy.arm();
        bob.send_acked(lobby(), "genuine 2").await.unwrap();
        bob.send_acked(lobby(), "genuine 3").await.unwrap();
        let (texts, err) = shown(&mut alice).await;
        let err = err.unwrap_or_else(|| panic!("{attack:?}: the client must fail, it saw {texts:?}"));
        for t in &texts {
            assert!(["genuine 2", "genuine 3"].contains(&t.as_str()), "{attack:?}: forged or altered message {t:?}");
        }
        if attack != Attack::Truncate {
            assert!(texts.len() < 2, "{attack:?}: the message attacked is never shown: {texts:?}");
        }
        let why = err.to_string();
        let expected = if attack == Attack::Truncate { "truncated" } else { "record authentication failed" };
        assert!(why.contains(expected), "{attack:?}: {why}");
    }

    // A bit flipped on the way to the server: the server refuses the record
    // and closes the client's connection with bad_record_mac; bob never
    // sees a message from alice that she did not write.
    let proxy = Proxy::start(setup.addr, Attack::FlipToServer).await;
    let mut alice = pinned(proxy.addr, "alice-s", fp).await.unwrap();
    alice.join("lobby").await.unwrap();
    proxy.arm();
    let sent = alice.send(lobby(), "pay bob 10").await;
    assert!(sent.is_ok());
    let (_, err) = shown(&mut alice).await;
    let err = err.expect("the server ends alice's connection");
    match &err {
        ClientError::Net(e) => assert_eq!(e.alert_received(), Some(AlertCode::BadRecordMac), "{e}"),
        other => panic!("{other:?}"),
    }
    let (texts, _) = shown(&mut bob).await;
    assert!(texts.iter().all(|t| !t.contains("pay")), "bob saw {texts:?}");
    drop(setup.server);
}
