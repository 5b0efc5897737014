//! Password mode over loopback: the right password chats, a wrong one fails
//! clearly, and repeated failures from one address are refused for a while.
//!
//! Guessing (issue 12, item 4): every password handshake counts as a failed
//! attempt from its start until the client's Finished verifies, so a
//! guesser that reads the server's Finished and closes without a word is
//! counted like one that says `wrong_password`; concurrent handshakes
//! cannot all pass the check; and a server-wide budget stops guessing
//! spread over many addresses (127.0.0.x stand for separate hosts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_client::{Client, ClientError, Options, TrustCheck};
use cipherline_net::{FrameReader, NetError};
use cipherline_proto::app::{ClientMessage, ErrorCode, MessageDecoder, ServerMessage, Target};
use cipherline_proto::crypto::SystemRng;
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::pake::Password;
use cipherline_proto::error::AuthFailure;
use cipherline_proto::handshake::client::ExpectServerIdentity;
use cipherline_proto::{AlertCode, ClientConfig, Error, Frame, FrameKind, Received, ServerConfig};
use cipherline_server::{Limits, Settings};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::timeout;

fn pw(s: &str) -> Password {
    Password::new(s.as_bytes().to_vec()).unwrap()
}

async fn start(limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let settings = Settings { protocol: Arc::new(ServerConfig::password_only(pw("hello"))), limits };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        cipherline_server::run(listener, settings, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

async fn connect(addr: &str, name: &str, password: &str) -> Result<Client, ClientError> {
    let options = Options {
        config: Arc::new(ClientConfig {
            password: Some(pw(password)),
            name: Some(name.to_owned()),
            password_only: true,
            ..ClientConfig::default()
        }),
        ..Options::default()
    };
    // No key to trust: the password authenticates the server.
    Client::connect(addr, name, &options, &PasswordOnly).await
}

/// Trusts a server only if it presents no key.
struct PasswordOnly;

impl TrustCheck for PasswordOnly {
    fn check(&self, _: &str, _: &ServerPublicKey) -> Result<(), String> {
        Err("a password-only server shows no key".to_owned())
    }

    fn check_keyless(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_and_bob_share_a_password() {
    let (addr, _stop) = start(Limits::default()).await;
    let mut bob = connect(&addr, "bob", "hello").await.unwrap();
    let mut alice = connect(&addr, "alice", "hello").await.unwrap();
    assert!(alice.info().server_key.is_none());
    bob.join("lobby").await.unwrap();
    alice.join("lobby").await.unwrap();
    alice.send_acked(Target::Room("lobby".into()), "hi").await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), bob.recv()).await.unwrap().unwrap() {
            ServerMessage::Message(d) => {
                assert_eq!((d.from.as_str(), d.text.as_str()), ("alice", "hi"));
                break;
            }
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_fail_clearly_and_are_rate_limited() {
    let limits = Limits { max_password_failures: 2, password_failure_window_secs: 2, ..Limits::default() };
    let (addr, _stop) = start(limits).await;
    for _ in 0..2 {
        let err = connect(&addr, "mallory", "guess").await.err().unwrap();
        assert!(
            matches!(err, ClientError::Net(NetError::Protocol(Error::AuthenticationFailed(AuthFailure::Password)))),
            "{err:?}"
        );
        assert!(err.to_string().contains("wrong password"), "{err}");
    }
    // Each attempt was counted when its connection started; the pause only
    // lets the server finish closing the second one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The address is now refused, even with the right password, before any
    // password exchange takes place.
    let err = connect(&addr, "alice", "hello").await.err().unwrap();
    match &err {
        ClientError::Net(e) => assert_eq!(e.alert_received(), Some(AlertCode::TooManyAttempts), "{err:?}"),
        other => panic!("{other:?}"),
    }
    // After the window it is let in again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    connect(&addr, "alice", "hello").await.unwrap();
}

// ------------------------------------------------------------- guessing

/// Per-address connection limits lifted: only the password limits apply.
fn guessing(limits: Limits) -> Limits {
    Limits {
        max_sessions_per_ip: 10_000,
        new_connections_per_ip_per_sec: 1_000_000,
        new_connections_burst_per_ip: 1_000_000,
        ..limits
    }
}

/// A password handshake driven by hand through the sans-IO core, from a
/// chosen loopback address, so that it can stop wherever a guesser would.
struct Guesser {
    frames: FrameReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    identity: Frame,
}

/// How a guess ended.
#[derive(Debug, PartialEq, Eq)]
enum Guess {
    /// The server's Finished did not verify; the guesser closed silently.
    Wrong,
    /// The handshake completed and the server welcomed the client.
    Right,
}

async fn next_frame(frames: &mut FrameReader<OwnedReadHalf>) -> Frame {
    timeout(Duration::from_secs(10), frames.read_frame()).await.unwrap().unwrap().expect("a frame, not the end")
}

impl Guesser {
    /// Connects from `local`: `Err(alert)` if refused before any password
    /// exchange, else ready to guess.
    async fn open(addr: SocketAddr, local: &str) -> Result<Guesser, AlertCode> {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
        let (read, write) = socket.connect(addr).await.unwrap().into_split();
        let mut frames = FrameReader::new(read);
        let identity = next_frame(&mut frames).await;
        if identity.kind == FrameKind::Alert {
            return Err(AlertCode::from_u8(identity.body[0]));
        }
        Ok(Guesser { frames, write, identity })
    }

    /// Runs SPAKE2 with `password`. A wrong guess reads the server's
    /// Finished, sees that it cannot verify, and closes without sending
    /// anything (no alert); a right one completes and says Hello.
    async fn guess(mut self, password: &str, name: &str) -> Guess {
        let config = Arc::new(ClientConfig {
            password: Some(pw(password)),
            name: Some(name.to_owned()),
            password_only: true,
            ..ClientConfig::default()
        });
        let state = ExpectServerIdentity::new(config).unwrap().handle_server_identity(&self.identity).unwrap();
        let (state, hello) = state.into_client_hello(&mut SystemRng).unwrap();
        self.write.write_all(&hello).await.unwrap();
        let state = state.handle_server_hello(&next_frame(&mut self.frames).await, Instant::now()).unwrap();
        match state.handle_server_finished(&next_frame(&mut self.frames).await, Instant::now()) {
            Err(Error::AuthenticationFailed(AuthFailure::Password)) => Guess::Wrong,
            Err(e) => panic!("{e}"),
            Ok((mut session, finish)) => {
                self.write.write_all(&finish).await.unwrap();
                let hello = ClientMessage::Hello { name: name.into() }.encode().unwrap();
                self.write.write_all(&session.send(&hello, Instant::now()).unwrap()).await.unwrap();
                // Welcome: the server has verified our Finished.
                let frame = next_frame(&mut self.frames).await;
                assert!(matches!(session.handle_frame(&frame, Instant::now()), Ok(Received::Data(_))));
                Guess::Right
            }
        }
    }
}

async fn start_at(limits: Limits) -> SocketAddr {
    let (addr, stop) = start(guessing(limits)).await;
    // The server lives as long as the test's runtime.
    std::mem::forget(stop);
    addr.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_guessers_are_refused_like_those_that_say_wrong_password() {
    let addr = start_at(Limits { max_password_failures: 3, ..Limits::default() }).await;
    // A guesser that never tells the server anything.
    for i in 0..3 {
        let guesser = Guesser::open(addr, "127.0.0.2").await.unwrap_or_else(|a| panic!("guess {i} refused: {a:?}"));
        assert_eq!(guesser.guess("guess", "mallory").await, Guess::Wrong);
    }
    // Its next connection is refused before any password exchange, even
    // with the right password.
    assert_eq!(Guesser::open(addr, "127.0.0.2").await.err(), Some(AlertCode::TooManyAttempts));
    // Exactly like a client that sends the wrong_password alert.
    for _ in 0..3 {
        let err = connect(&addr.to_string(), "mallory", "guess").await.err().unwrap();
        assert!(matches!(err, ClientError::Net(NetError::Protocol(Error::AuthenticationFailed(_)))), "{err:?}");
    }
    let err = connect(&addr.to_string(), "alice", "hello").await.err().unwrap();
    assert!(matches!(&err, ClientError::Net(e) if e.alert_received() == Some(AlertCode::TooManyAttempts)), "{err:?}");
    // Other addresses are not locked out, and logging in costs nothing.
    for i in 0..5 {
        let guesser = Guesser::open(addr, "127.0.0.3").await.unwrap();
        assert_eq!(guesser.guess("hello", &format!("user{i}")).await, Guess::Right);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handshakes_cannot_exceed_the_limit() {
    let addr = start_at(Limits { max_password_failures: 3, ..Limits::default() }).await;
    // 16 handshakes at once from one address (max_handshakes_per_ip): none
    // has failed yet when the others start, so a check made only after a
    // failure would let all 16 guess.
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..16 {
        match Guesser::open(addr, "127.0.0.2").await {
            Ok(g) => admitted.push(g),
            Err(code) => {
                assert_eq!(code, AlertCode::TooManyAttempts);
                refused += 1;
            }
        }
    }
    assert_eq!((admitted.len(), refused), (3, 13), "only max_password_failures may run at once");
    let guesses = admitted.into_iter().map(|g| tokio::spawn(g.guess("guess", "mallory")));
    for guess in guesses {
        assert_eq!(guess.await.unwrap(), Guess::Wrong);
    }
    assert_eq!(Guesser::open(addr, "127.0.0.2").await.err(), Some(AlertCode::TooManyAttempts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_wide_budget_stops_guessing_from_many_addresses() {
    let addr =
        start_at(Limits { max_password_failures: 100, max_password_failures_per_minute: 4, ..Limits::default() }).await;
    // Successful logins do not spend the budget.
    for i in 0..6 {
        let guesser = Guesser::open(addr, "127.0.0.20").await.unwrap();
        assert_eq!(guesser.guess("hello", &format!("user{i}")).await, Guess::Right);
    }
    // Four addresses guess once each, silently: the budget is spent.
    for host in 10..14 {
        let guesser = Guesser::open(addr, &format!("127.0.0.{host}")).await.unwrap();
        assert_eq!(guesser.guess("guess", "mallory").await, Guess::Wrong);
    }
    // Now every address is refused, guesser or not, until it refills (one
    // attempt every 15 s at this budget).
    for host in [14, 15, 20, 1] {
        assert_eq!(
            Guesser::open(addr, &format!("127.0.0.{host}")).await.err(),
            Some(AlertCode::TooManyAttempts),
            "127.0.0.{host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_wrong_password_alert_costs_no_more_than_its_connection() {
    // Anyone on the path can forge this alert, so it must not count on top
    // of the attempt its connection already holds (a guard: the old code
    // counted one per alert too, but only because it counted nothing else).
    let addr = start_at(Limits { max_password_failures: 2, ..Limits::default() }).await;
    let mut alerted = Guesser::open(addr, "127.0.0.2").await.unwrap();
    alerted.write.write_all(&cipherline_proto::handshake::alert_frame(AlertCode::WrongPassword)).await.unwrap();
    // The server closes without counting anything more: one attempt left.
    assert!(timeout(Duration::from_secs(10), alerted.frames.read_frame()).await.unwrap().unwrap().is_none());
    let guesser = Guesser::open(addr, "127.0.0.2").await.expect("one alert is one attempt");
    assert_eq!(guesser.guess("hello", "alice").await, Guess::Right);
    let guesser = Guesser::open(addr, "127.0.0.2").await.expect("and a success took back its own");
    assert_eq!(guesser.guess("guess", "mallory").await, Guess::Wrong);
    assert_eq!(Guesser::open(addr, "127.0.0.2").await.err(), Some(AlertCode::TooManyAttempts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_under_another_name_than_the_password_bound_one_gets_invalid_name_and_may_retry() {
    // PROTOCOL.md §7.7: the name is bound into SPAKE2, and the server holds
    // the client to it: Error invalid_name, connection kept, Hello again.
    let addr = start_at(Limits::default()).await;
    let mut guesser = Guesser::open(addr, "127.0.0.1").await.unwrap();
    let config = Arc::new(ClientConfig {
        password: Some(pw("hello")),
        name: Some("alice".to_owned()),
        password_only: true,
        ..ClientConfig::default()
    });
    let state = ExpectServerIdentity::new(config).unwrap().handle_server_identity(&guesser.identity).unwrap();
    let (state, hello) = state.into_client_hello(&mut SystemRng).unwrap();
    guesser.write.write_all(&hello).await.unwrap();
    let state = state.handle_server_hello(&next_frame(&mut guesser.frames).await, Instant::now()).unwrap();
    let (mut session, finish) =
        state.handle_server_finished(&next_frame(&mut guesser.frames).await, Instant::now()).unwrap();
    guesser.write.write_all(&finish).await.unwrap();
    let mut messages = MessageDecoder::new(1 << 20);
    let mut hello_as = async |name: &str| {
        let hello = ClientMessage::Hello { name: name.into() }.encode().unwrap();
        guesser.write.write_all(&session.send(&hello, Instant::now()).unwrap()).await.unwrap();
        loop {
            if let Some(msg) = messages.next_message().unwrap() {
                return ServerMessage::decode(&msg).unwrap();
            }
            let frame = next_frame(&mut guesser.frames).await;
            if let Received::Data(data) = session.handle_frame(&frame, Instant::now()).unwrap() {
                messages.push(&data);
            }
        }
    };
    let refused = hello_as("mallory").await;
    assert!(matches!(refused, ServerMessage::Error { code: ErrorCode::InvalidName, .. }), "{refused:?}");
    let welcome = hello_as("alice").await;
    assert!(matches!(welcome, ServerMessage::Welcome { ref name, .. } if name == "alice"), "{welcome:?}");
}
