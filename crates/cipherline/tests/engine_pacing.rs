//! The engine paces its requests under the server's message rate from the
//! start (engine/pace.rs): a flood of texts through it is never refused as
//! too fast, where the same flood from a client that does not pace is.
//! The server's refusals are counted in its log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_client::engine::{
    Command, ConnectFailure, Connecting, ConnectionState, Connector, Engine, Event, Reply, Session,
};
use cipherline_client::peers::Peers;
use cipherline_client::{Client, ClientError, Options};
use cipherline_proto::app::{ErrorCode, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use common::Server;

/// Texts sent in each flood: several times the burst.
const TEXTS: usize = 40;
/// A low rate and burst, so the flood goes well past them.
const LIMITS: &str = "messages_per_sec = 20\nburst = 5\n";

/// Connects as `name` with the server's key pinned, no identity key and
/// no local store.
struct Pinned {
    addr: String,
    fingerprint: String,
    name: &'static str,
}

impl Pinned {
    async fn client(&self) -> Result<Client, ClientError> {
        let want = self.fingerprint.clone();
        let pin = move |_: &str, key: &ServerPublicKey| {
            let got = cipherline_keys::Fingerprint::of_server_key(key).to_string();
            if got == want { Ok(()) } else { Err(format!("fingerprint {got} is not {want}")) }
        };
        Client::connect(&self.addr, self.name, &Options::default(), &pin).await
    }
}

impl Connector for Pinned {
    fn connect(&self, _first: bool) -> Connecting<'_> {
        Box::pin(async move {
            let client = self.client().await.map_err(|e| ConnectFailure { reason: e.to_string(), passing: false })?;
            let peers = Peers::load(&self.addr, None).unwrap();
            Ok(Session { client, peers, e2e: None })
        })
    }
}

/// How often the server's log says it refused a message as too fast.
fn refusals(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).unwrap().matches("rate limited").count()
}

#[test]
fn a_flood_of_texts_through_the_engine_is_never_refused_as_too_fast() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::quick_logged_with_limits(dir.path(), Some(LIMITS), &log);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(tokio::task::LocalSet::new().run_until(async {
        let connector = Pinned { addr: server.addr.clone(), fingerprint: server.fingerprint.clone(), name: "alice" };
        let (engine, handle, mut events) = Engine::new(connector, server.addr.clone(), &["lobby".to_owned()]);
        let engine = tokio::task::spawn_local(engine.run());
        loop {
            match events.recv().await.unwrap() {
                Event::Connection(ConnectionState::Connected { .. }) => break,
                Event::Connection(ConnectionState::Stopped { reason }) => panic!("{reason}"),
                _ => {}
            }
        }
        // Events are drained meanwhile, as a front-end would.
        let drain = tokio::task::spawn_local(async move { while events.recv().await.is_some() {} });
        for i in 0..TEXTS {
            let sent = handle.run(Command::SendRoom { room: "lobby".into(), text: format!("flood {i}") }).await;
            assert!(matches!(sent, Ok(Reply::Sent { .. })), "text {i}: {sent:?}");
        }
        assert_eq!(refusals(&log), 0, "the engine waited for its turn instead of being refused");

        // The control: the same flood from a client that does not pace is
        // refused (so the log does say it).
        let raw = Pinned { addr: server.addr.clone(), fingerprint: server.fingerprint.clone(), name: "bob" };
        let mut bob = raw.client().await.unwrap();
        bob.join("lobby").await.unwrap();
        let mut refused = 0;
        for i in 0..TEXTS {
            match bob.send_with_ack(Target::Room("lobby".into()), &format!("raw {i}")).await {
                Ok(_) => {}
                Err(ClientError::Refused { code: ErrorCode::RateLimited, .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused > 0, "the flood is past the server's rate");
        assert!(refusals(&log) >= refused, "the server logs each refusal");
        drop(handle);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), engine).await;
        drain.abort();
    }));
}
