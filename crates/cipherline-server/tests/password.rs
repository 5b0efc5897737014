//! Password mode over loopback: the right password chats, a wrong one fails
//! clearly, and repeated failures from one address are refused for a while.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use cipherline_client::{Client, ClientError, Options, TrustCheck};
use cipherline_net::NetError;
use cipherline_proto::app::{ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::pake::Password;
use cipherline_proto::error::AuthFailure;
use cipherline_proto::{AlertCode, ClientConfig, Error, ServerConfig};
use cipherline_server::{Limits, Settings};
use tokio::net::TcpListener;
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
    // Give the server a moment to record the second failure.
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
