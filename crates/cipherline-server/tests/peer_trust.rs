//! A relay attacking the client's record of peer keys (issue 12, items 2
//! and 3): a sender name that would forge a known_peers line, a Welcome
//! under another name, a message stripped of its signature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cipherline_client::ClientError;
use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_net::NetError;
use cipherline_proto::app::{ClientMessage, Delivery, RateLimits, ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::error::DecodeError;
use cipherline_proto::message::ClientAuthRequest;
use cipherline_proto::{Error, ServerConfig};
use cipherline_server::{Identities, Limits};
use tokio::net::TcpListener;
use tokio::time::timeout;

use common::{connect_as, fp, key, resign_as_relay, start_relay};

fn server_config() -> ServerConfig {
    let server_key = Arc::new(ServerKey::x25519_from_bytes(&[9; 32]).unwrap());
    ServerConfig { client_auth: ClientAuthRequest::Optional, ..ServerConfig::new(server_key) }
}

/// The relay renames the sender to "alice SHA256:<its own key>" and signs
/// for that name with its own key: a valid signature under a name that,
/// written into known_peers unescaped, read back as alice's key.
fn forge_name_with_key(d: &mut Delivery) {
    let relay = IdentityKey::ed25519_from_seed(&[66; 32]).unwrap();
    d.from = format!("alice {}", fp(&relay));
    resign_as_relay(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_sent_name_outside_the_grammar_is_a_protocol_error_and_known_peers_is_unchanged() {
    let (addr, _stop, _task) = start_relay(
        Arc::new(Identities::open_in_memory()),
        ClientAuthRequest::Optional,
        Limits::default(),
        Some(forge_name_with_key),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known_peers");
    let mut peers = Peers::load(&addr, Some(&file)).unwrap();
    peers.remember("alice", fp(&key(1))).unwrap();
    let before = std::fs::read(&file).unwrap();

    let mut mallory = connect_as(&addr, "mallory", Some(key(3))).await.unwrap();
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    mallory.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    mallory.send_acked(Target::Room("lobby".into()), "pay mallory").await.unwrap();
    let got = loop {
        match timeout(Duration::from_secs(5), bob.recv()).await.unwrap() {
            Ok(ServerMessage::Message(d)) => {
                // What a client does with a message: judge it (and remember the key).
                peers.check(&d);
                break Ok(d);
            }
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    assert!(
        matches!(got, Err(ClientError::Net(NetError::Protocol(Error::Decode(DecodeError::InvalidName))))),
        "refused as a protocol error: {got:?}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "known_peers untouched");
    assert_eq!(Peers::load(&addr, Some(&file)).unwrap().remembered("alice"), Some(fp(&key(1))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_under_another_name_is_refused() {
    // A relay that welcomes "bob" as "alice": bob would then sign as alice.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, write) = stream.into_split();
        let config = Arc::new(server_config());
        let mut chan = cipherline_net::accept(read, write, config, Duration::from_secs(5)).await.unwrap();
        let hello = ClientMessage::decode(&chan.recv().await.unwrap()).unwrap();
        assert_eq!(hello, ClientMessage::Hello { name: "bob".into() });
        let welcome = ServerMessage::Welcome {
            name: "alice".into(),
            max_message: 65536,
            idle_timeout_secs: 300,
            rates: RateLimits::default(),
            queue: None,
        };
        chan.send(&welcome.encode().unwrap()).await.unwrap();
        // Hold the connection open until the client gives up on it.
        let _ = timeout(Duration::from_secs(5), chan.recv()).await;
    });
    let result = connect_as(&addr, "bob", Some(key(2))).await;
    assert!(matches!(result, Err(ClientError::WrongName)), "{:?}", result.err());
}

fn strip_signature(d: &mut Delivery) {
    d.signed = None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_message_under_a_remembered_name_is_a_key_change() {
    let (addr, _stop, _task) = start_relay(
        Arc::new(Identities::open_in_memory()),
        ClientAuthRequest::Optional,
        Limits::default(),
        Some(strip_signature),
    )
    .await;
    let mut peers = Peers::load(&addr, None).unwrap();
    peers.remember("alice", fp(&key(1))).unwrap();
    let mut alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    alice.send_acked(Target::Room("lobby".into()), "pay mallory").await.unwrap();
    let d = loop {
        if let ServerMessage::Message(d) = timeout(Duration::from_secs(5), bob.recv()).await.unwrap().unwrap() {
            break d;
        }
    };
    assert!(d.signed.is_none(), "the relay stripped it");
    let status = peers.check(&d);
    assert_eq!(status, MessageStatus::KeyChanged { remembered: fp(&key(1)), presented: None });
    assert_eq!(status.label(), "key-changed");
    assert!(!status.is_trusted());
    // Nobody's key is remembered for a name never seen: plain unsigned.
    let mut carol = d.clone();
    carol.from = "carol".into();
    assert_eq!(peers.check(&carol), MessageStatus::Unsigned);
}
