//! The engine's one-shot mode (engine/once.rs), what `send` and `files
//! get|cancel` run on, against the real server: messages are left alone
//! until `Receive`, `SendAcked` answers the server's whole acknowledgement,
//! `Prepare` joins an open room, and a lost
//! connection stops the engine instead of reconnecting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::Duration;

use cipherline_client::engine::{
    Command, ConnectFailure, Connecting, ConnectionState, Connector, Engine, Event, Reply, SendAck, Session,
};
use cipherline_client::peers::Peers;
use cipherline_client::{Client, Options};
use cipherline_proto::app::Target;
use cipherline_proto::crypto::kem::ServerPublicKey;
use common::Server;
use tokio::sync::mpsc::Receiver;

/// Connects as `name` with the server's key pinned, no identity key and
/// no local store.
struct Pinned {
    addr: String,
    fingerprint: String,
    name: &'static str,
}

impl Pinned {
    async fn client(&self) -> Result<Client, ConnectFailure> {
        let want = self.fingerprint.clone();
        let pin = move |_: &str, key: &ServerPublicKey| {
            let got = cipherline_keys::Fingerprint::of_server_key(key).to_string();
            if got == want { Ok(()) } else { Err(format!("fingerprint {got} is not {want}")) }
        };
        Client::connect(&self.addr, self.name, &Options::default(), &pin)
            .await
            .map_err(|e| ConnectFailure { reason: e.to_string(), passing: cipherline_client::engine::passing(&e) })
    }
}

impl Connector for Pinned {
    fn connect(&self, _first: bool) -> Connecting<'_> {
        Box::pin(async move {
            let client = self.client().await?;
            let peers = Peers::load(&self.addr, None).unwrap();
            Ok(Session { client, peers, e2e: None })
        })
    }
}

/// The next event that is not progress of a connection, within 10 s.
async fn next(events: &mut Receiver<Event>) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.ok().flatten()
}

/// Whether a message event comes within `wait`.
async fn message_within(events: &mut Receiver<Event>, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let Event::Message(m) = event {
            return Some(m.text);
        }
    }
    None
}

#[test]
fn a_one_shot_engine_holds_messages_until_asked_and_stops_when_the_connection_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(tokio::task::LocalSet::new().run_until(async {
        let addr = server.addr.clone();
        let pinned = |name| Pinned { addr: addr.clone(), fingerprint: server.fingerprint.clone(), name };
        let (engine, handle, mut events) = Engine::new(pinned("bob"), server.addr.clone(), &[]);
        let engine = tokio::task::spawn_local(engine.one_shot().run());
        loop {
            match next(&mut events).await.unwrap() {
                Event::Connection(ConnectionState::Connected { .. }) => break,
                Event::Connection(ConnectionState::Stopped { reason }) => panic!("{reason}"),
                _ => {}
            }
        }
        // Prepare joins the open room (bob was not in it).
        let prepared = handle.run(Command::Prepare(Target::Room("lobby".into()))).await.unwrap();
        assert_eq!(prepared, Reply::Prepared(Vec::new()));
        let mut alice = pinned("alice").client().await.unwrap();
        alice.join("lobby").await.unwrap();

        // A message for bob before Receive is not handed over.
        alice.send_with_ack(Target::Room("lobby".into()), "early").await.unwrap();
        assert_eq!(message_within(&mut events, Duration::from_secs(1)).await, None, "held before Receive");

        // SendAcked: the whole acknowledgement (alice got it live).
        let sent = handle.run(Command::SendAcked { to: Target::Room("lobby".into()), text: "hi".into() }).await;
        let Ok(Reply::Acked(SendAck { id, e2e: false, live: 1, queued: 0, full: 0 })) = sent else {
            panic!("{sent:?}")
        };
        assert!(id > 0);

        // After Receive, messages are handed over.
        assert_eq!(handle.run(Command::Receive).await.unwrap(), Reply::Done);
        alice.send_with_ack(Target::Room("lobby".into()), "later").await.unwrap();
        assert_eq!(message_within(&mut events, Duration::from_secs(10)).await.as_deref(), Some("later"));

        // Finish leaves only a room a stored queue would keep bob in; a
        // name without one leaves its rooms with its connection.
        assert_eq!(handle.run(Command::Finish).await.unwrap(), Reply::Done);
        let status = handle.run(Command::Status).await.unwrap();
        let Reply::Status(status) = status else { panic!("{status:?}") };
        assert_eq!(status.rooms, ["lobby"], "{status:?}");

        // The server goes: the engine stops, it does not reconnect.
        server.stop();
        let stopped = loop {
            match next(&mut events).await {
                Some(Event::Connection(
                    state @ (ConnectionState::Stopped { .. } | ConnectionState::Reconnecting { .. }),
                )) => {
                    break state;
                }
                Some(_) => {}
                None => panic!("no connection event"),
            }
        };
        assert!(matches!(stopped, ConnectionState::Stopped { .. }), "{stopped:?}");
        drop(handle);
        drop(events);
        let _ = tokio::time::timeout(Duration::from_secs(5), engine).await;
    }));
}
