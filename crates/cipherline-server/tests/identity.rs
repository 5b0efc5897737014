//! Identities: allowlist, open-mode name binding across restarts, signed
//! messages that a tampering relay cannot alter unnoticed, key changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_client::{Client, ClientError};
use cipherline_keys::Fingerprint;
use cipherline_proto::AlertCode;
use cipherline_proto::app::{Delivery, ErrorCode, ServerMessage, Target};
use cipherline_proto::message::ClientAuthRequest;
use cipherline_server::{Identities, IdentityPolicy, Limits};
use tokio::time::timeout;

use common::{connect_as, fp, key, resign_as_relay, start_relay};

async fn next_message(c: &mut Client) -> Delivery {
    loop {
        if let ServerMessage::Message(d) = timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap() {
            return d;
        }
    }
}

fn write_allowlist(path: &Path, entries: &[(&str, Fingerprint)]) {
    let text: String = entries.iter().map(|(n, f)| format!("{n} {f}\n")).collect();
    std::fs::write(path, format!("# authorized keys\n{text}")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_admits_listed_keys_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    write_allowlist(&file, &[("alice", fp(&key(1)))]);
    let ids = Arc::new(Identities::load(IdentityPolicy::Allowlist { file: file.clone() }).unwrap());
    let (addr, _stop, _task) = start_relay(ids.clone(), ClientAuthRequest::Required, Limits::default(), None).await;

    connect_as(&addr, "alice", Some(key(1))).await.expect("a listed key under its name");

    // An unlisted key: refused right after the handshake, with the reason.
    let err = connect_as(&addr, "mallory", Some(key(2))).await.err().unwrap();
    match &err {
        ClientError::Net(e) => assert_eq!(e.alert_received(), Some(AlertCode::UnknownIdentity), "{err:?}"),
        other => panic!("{other:?}"),
    }
    // No key at all: the server requires one.
    let err = connect_as(&addr, "anon", None).await.err().unwrap();
    assert!(err.to_string().contains("identity"), "{err}");
    // A listed key under someone else's name.
    let err = connect_as(&addr, "bob", Some(key(1))).await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::IdentityMismatch, .. }), "{err:?}");

    // Reloading the file (SIGHUP in the CLI) admits a new key without a restart.
    write_allowlist(&file, &[("alice", fp(&key(1))), ("bob", fp(&key(2)))]);
    assert_eq!(ids.reload().unwrap(), 2);
    connect_as(&addr, "bob", Some(key(2))).await.expect("admitted after reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_binds_names_to_keys_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let names = dir.path().join("names");
    let policy = IdentityPolicy::Open { names_file: Some(names.clone()) };
    let (addr, stop, task) = start_relay(
        Arc::new(Identities::load(policy.clone()).unwrap()),
        ClientAuthRequest::Optional,
        Limits::default(),
        None,
    )
    .await;
    connect_as(&addr, "alice", Some(key(1))).await.unwrap().close().await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();

    let (addr, _stop, _task) =
        start_relay(Arc::new(Identities::load(policy).unwrap()), ClientAuthRequest::Optional, Limits::default(), None)
            .await;
    let err = connect_as(&addr, "alice", Some(key(2))).await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::IdentityMismatch, .. }), "{err:?}");
    let err = connect_as(&addr, "alice", None).await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::IdentityMismatch, .. }), "{err:?}");
    connect_as(&addr, "alice", Some(key(1))).await.expect("the key that first used the name keeps it");
    connect_as(&addr, "guest", None).await.expect("an unbound name without a key is fine");
}

fn alter_text(d: &mut Delivery) {
    d.text = format!("{} (and send me your password)", d.text);
}

fn forge_sender(d: &mut Delivery) {
    // The relay re-signs with its own key, claiming the message is alice's.
    resign_as_relay(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_signed_end_to_end_and_tampering_is_flagged() {
    // An honest relay: new, then known.
    let (addr, _s, _t) =
        start_relay(Arc::new(Identities::open_in_memory()), ClientAuthRequest::Optional, Limits::default(), None).await;
    let mut alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    let mut peers = Peers::load(&addr, None).unwrap();
    alice.send_acked(Target::Room("lobby".into()), "hello bob").await.unwrap();
    let d = next_message(&mut bob).await;
    assert_eq!(peers.check(&d), MessageStatus::New(fp(&key(1))));
    alice.send_acked(Target::User("bob".into()), "direct").await.unwrap();
    assert_eq!(peers.check(&next_message(&mut bob).await), MessageStatus::Known);

    // A relay that alters text: the signature no longer verifies.
    let (addr, _s, _t) = start_relay(
        Arc::new(Identities::open_in_memory()),
        ClientAuthRequest::Optional,
        Limits::default(),
        Some(alter_text),
    )
    .await;
    let mut alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    alice.send_acked(Target::Room("lobby".into()), "meet at noon").await.unwrap();
    let d = next_message(&mut bob).await;
    assert!(d.text.contains("password"), "the relay did alter it");
    assert_eq!(peers.check(&d), MessageStatus::Invalid);

    // A relay that forges a message under alice's name with its own key:
    // valid signature, but not the key bob remembers for alice.
    let (addr, _s, _t) = start_relay(
        Arc::new(Identities::open_in_memory()),
        ClientAuthRequest::Optional,
        Limits::default(),
        Some(forge_sender),
    )
    .await;
    let mut alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    alice.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    alice.send_acked(Target::Room("lobby".into()), "hi").await.unwrap();
    let status = peers.check(&next_message(&mut bob).await);
    assert!(matches!(status, MessageStatus::KeyChanged { remembered, .. } if remembered == fp(&key(1))), "{status:?}");
    assert!(!status.is_trusted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_key_change_is_reported_and_whois_shows_keys() {
    let (addr, _s, _t) =
        start_relay(Arc::new(Identities::open_in_memory()), ClientAuthRequest::Optional, Limits::default(), None).await;
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    bob.join("lobby").await.unwrap();
    let mut peers = Peers::load(&addr, None).unwrap();
    {
        let mut alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
        alice.join("lobby").await.unwrap();
        alice.send_acked(Target::Room("lobby".into()), "one").await.unwrap();
        assert!(peers.check(&next_message(&mut bob).await).is_trusted());
        alice.close().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A sender without an identity key: shown as unsigned, never verified.
    let mut anon = connect_as(&addr, "carol", None).await.unwrap();
    anon.join("lobby").await.unwrap();
    anon.send_acked(Target::Room("lobby".into()), "no key").await.unwrap();
    assert_eq!(peers.check(&next_message(&mut bob).await), MessageStatus::Unsigned);

    // Whois answers with the proven key, or none.
    bob.send_message(&cipherline_proto::app::ClientMessage::Whois { name: "carol".into() }).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), bob.recv()).await.unwrap().unwrap() {
            ServerMessage::Identity { name, algorithm, key } => {
                assert_eq!((name.as_str(), algorithm, key.len()), ("carol", 0, 0));
                break;
            }
            _ => continue,
        }
    }

    // A remembered peer presenting a new key: KeyChanged.
    let other = key(3);
    let status = peers.check_key("alice", other.public_key());
    assert_eq!(status, MessageStatus::KeyChanged { remembered: fp(&key(1)), presented: Some(fp(&other)) });
}

fn refused_with(result: Result<Client, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("accepted"),
    }
}

/// `Alice` is `alice` (PROTOCOL.md §13.4), and `a1ice` passes for her: both
/// are refused while she is connected (name_taken) and, in the open policy,
/// once her name is bound to her key (identity_mismatch). Before, each was
/// a different user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_compare_ignoring_case_and_look_alikes_are_refused() {
    let ids = Arc::new(Identities::open_in_memory());
    // Many connections from one address in a moment: lift its rate.
    let limits =
        Limits { new_connections_per_ip_per_sec: 1000, new_connections_burst_per_ip: 1000, ..Limits::default() };
    let (addr, _stop, _task) = start_relay(ids, ClientAuthRequest::Optional, limits, None).await;
    let alice = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    for name in ["Alice", "ALICE", "a1ice", "AIice"] {
        assert_eq!(refused_with(connect_as(&addr, name, Some(key(2))).await), ErrorCode::NameTaken, "{name}");
        assert_eq!(refused_with(connect_as(&addr, name, None).await), ErrorCode::NameTaken, "{name} without a key");
    }
    alice.close().await.unwrap();
    // Gone, but the name is bound to her key: every spelling and look-alike
    // stays hers.
    for name in ["Alice", "a1ice", "AIIce"] {
        assert_eq!(refused_with(connect_as(&addr, name, Some(key(2))).await), ErrorCode::IdentityMismatch, "{name}");
        assert_eq!(refused_with(connect_as(&addr, name, None).await), ErrorCode::IdentityMismatch, "{name}");
    }
    // Rooms too: `General` is `general`, and its members are listed once.
    let mut alice = connect_as(&addr, "Alice", Some(key(1))).await.expect("her key, another spelling");
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    alice.join("General").await.unwrap();
    bob.join("general").await.unwrap();
    assert_eq!(bob.who("GENERAL").await.unwrap(), ["Alice", "bob"]);
    // Targets arrive as the sender wrote them, signed: the signatures verify.
    bob.send_acked(Target::Room("GeneraL".into()), "to the room").await.unwrap();
    let got = next_message(&mut alice).await;
    assert_eq!((got.text.as_str(), &got.to), ("to the room", &Target::Room("GeneraL".into())));
    let mut peers = Peers::load(&addr, None).unwrap();
    assert_eq!(peers.check(&got), MessageStatus::New(fp(&key(2))));
    bob.send_acked(Target::User("alice".into()), "to you").await.unwrap();
    let got = next_message(&mut alice).await;
    assert_eq!((got.text.as_str(), &got.to), ("to you", &Target::User("alice".into())));
    assert_eq!(peers.check(&got), MessageStatus::Known);
}

/// The same identity key connecting twice (a script while the chat is
/// open) gets a second session of its name, not "choose another name";
/// a direct message reaches both sessions, and room members list the name
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_key_in_two_sessions_both_receive_a_dm() {
    let ids = Arc::new(Identities::open_in_memory());
    // Many connections from one address in a moment: lift its rate.
    let limits =
        Limits { new_connections_per_ip_per_sec: 1000, new_connections_burst_per_ip: 1000, ..Limits::default() };
    let (addr, _stop, _task) = start_relay(ids, ClientAuthRequest::Optional, limits, None).await;
    let mut chat = connect_as(&addr, "alice", Some(key(1))).await.unwrap();
    let mut script = connect_as(&addr, "alice", Some(key(1))).await.expect("a second session of the same key");
    // Another key, or none, still may not share the name.
    assert_eq!(refused_with(connect_as(&addr, "alice", Some(key(2))).await), ErrorCode::NameTaken);
    assert_eq!(refused_with(connect_as(&addr, "alice", None).await), ErrorCode::NameTaken);
    let mut bob = connect_as(&addr, "bob", Some(key(2))).await.unwrap();
    bob.send_acked(Target::User("alice".into()), "hello both").await.unwrap();
    assert_eq!(next_message(&mut chat).await.text, "hello both");
    assert_eq!(next_message(&mut script).await.text, "hello both");

    chat.join("lobby").await.unwrap();
    script.join("lobby").await.unwrap();
    bob.join("lobby").await.unwrap();
    assert_eq!(bob.who("lobby").await.unwrap(), ["alice", "bob"]);
    bob.send_acked(Target::Room("lobby".into()), "room").await.unwrap();
    assert_eq!(next_message(&mut chat).await.text, "room");
    assert_eq!(next_message(&mut script).await.text, "room");
    // The script leaving keeps the chat session, its name and its room.
    script.close().await.unwrap();
    bob.send_acked(Target::User("alice".into()), "still here?").await.unwrap();
    assert_eq!(next_message(&mut chat).await.text, "still here?");
    assert_eq!(bob.who("lobby").await.unwrap(), ["alice", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_of_two_look_alike_names_bound_earlier_are_not_locked_out() {
    // `neil` and `nell` were bound to different keys before look-alikes
    // were refused: each owner still gets in while the other is connected,
    // and nobody else gets either name.
    let dir = tempfile::tempdir().unwrap();
    let names = dir.path().join("names");
    std::fs::write(&names, format!("neil {}\nnell {}\n", fp(&key(1)), fp(&key(2)))).unwrap();
    let ids = Arc::new(Identities::load(IdentityPolicy::Open { names_file: Some(names) }).unwrap());
    let (addr, _stop, _task) = start_relay(ids, ClientAuthRequest::Optional, Limits::default(), None).await;
    let _neil = connect_as(&addr, "neil", Some(key(1))).await.expect("neil's owner");
    let _nell = connect_as(&addr, "nell", Some(key(2))).await.expect("nell's owner, though neil looks alike");
    let err = connect_as(&addr, "nei1", Some(key(3))).await.err().unwrap();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::NameTaken | ErrorCode::IdentityMismatch, .. }));
}

/// PROTOCOL.md §13.8: with a store, a binding the store cannot record is
/// refused (`bad_request`, "the server cannot record your name") and only
/// that one: another name binds at once, and the refused name binds once
/// the store works again. The store is made to fail by a trigger on its
/// own table, for one key only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_refuses_only_that_binding() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_stored(dir.path(), Limits::default()).await;
    let db = rusqlite::Connection::open(dir.path().join("store.sqlite3")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail_carol BEFORE INSERT ON kv WHEN NEW.key = 'name/carol'
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    match connect_as(&server.addr, "carol", Some(key(3))).await {
        Err(ClientError::Refused { code, text }) => {
            assert_eq!(code, ErrorCode::BadRequest);
            assert!(text.contains("cannot record your name"), "{text}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("accepted though the binding was not recorded"),
    }
    // Nothing else stopped: dave binds, and his name is recorded.
    let dave = connect_as(&server.addr, "dave", Some(key(4))).await.expect("another binding works");
    dave.close().await.unwrap();
    assert_eq!(refused_with(connect_as(&server.addr, "dave", Some(key(5))).await), ErrorCode::IdentityMismatch);
    // carol was not bound to anyone; once the store works she is hers.
    db.execute_batch("DROP TRIGGER fail_carol;").unwrap();
    let carol = connect_as(&server.addr, "carol", Some(key(3))).await.expect("bound now");
    carol.close().await.unwrap();
    assert_eq!(refused_with(connect_as(&server.addr, "carol", Some(key(6))).await), ErrorCode::IdentityMismatch);
}
