//! The engine's lookups that `chat` words its answers by (issue 17):
//! `KeyInfo` (what is remembered of a peer's key) and `RoomInfo` (what a
//! room is, and this user's part in it), against the real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use cipherline_client::engine::{
    Command, ConnectFailure, Connecting, ConnectionState, Connector, Engine, Event, KeyInfo, Reply, RoomSummary,
    Session,
};
use cipherline_client::peers::Peers;
use cipherline_client::{Client, Options};
use cipherline_proto::app::RoomKind;
use cipherline_proto::crypto::kem::ServerPublicKey;
use common::Server;

/// Connects as `alice` with the server's key pinned, no identity key and
/// no local store.
struct Pinned {
    addr: String,
    fingerprint: String,
}

impl Connector for Pinned {
    fn connect(&self, _first: bool) -> Connecting<'_> {
        Box::pin(async move {
            let want = self.fingerprint.clone();
            let pin = move |_: &str, key: &ServerPublicKey| {
                let got = cipherline_keys::Fingerprint::of_server_key(key).to_string();
                if got == want { Ok(()) } else { Err(format!("fingerprint {got} is not {want}")) }
            };
            let client = Client::connect(&self.addr, "alice", &Options::default(), &pin)
                .await
                .map_err(|e| ConnectFailure { reason: e.to_string(), passing: false })?;
            let peers = Peers::load(&self.addr, None).unwrap();
            Ok(Session { client, peers, e2e: None })
        })
    }
}

#[test]
fn key_info_and_room_info_say_what_chat_shows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(tokio::task::LocalSet::new().run_until(async {
        let connector = Pinned { addr: server.addr.clone(), fingerprint: server.fingerprint.clone() };
        let (engine, handle, mut events) = Engine::new(connector, server.addr.clone(), &[]);
        let engine = tokio::task::spawn_local(engine.run());
        loop {
            match events.recv().await.unwrap() {
                Event::Connection(ConnectionState::Connected { .. }) => break,
                Event::Connection(ConnectionState::Stopped { reason }) => panic!("{reason}"),
                _ => {}
            }
        }
        // Nothing is known of bob's key, and alice has none of her own.
        let info = handle.run(Command::KeyInfo("bob".into())).await.unwrap();
        assert_eq!(
            info,
            Reply::KeyInfo(KeyInfo {
                name: "bob".into(),
                remembered: None,
                verified: false,
                changed: None,
                mine: None
            })
        );
        // A room nobody made yet has no kind; once joined it is open and joined.
        let none = handle.run(Command::RoomInfo("kitchen".into())).await.unwrap();
        assert!(
            matches!(&none, Reply::RoomInfo(RoomSummary { kind: None, member: false, joined: false, .. })),
            "{none:?}"
        );
        handle.run(Command::Join("kitchen".into())).await.unwrap();
        let open = handle.run(Command::RoomInfo("Kitchen".into())).await.unwrap();
        let Reply::RoomInfo(open) = open else { panic!("{open:?}") };
        assert_eq!(open.kind, Some(RoomKind::Open));
        assert!(open.joined, "joined, whatever the case typed");
        assert!(!open.member && open.gone.is_empty(), "{open:?}");
        drop(handle);
        drop(events);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), engine).await;
    }));
}
