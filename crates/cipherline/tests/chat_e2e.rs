//! `cipherline chat` end to end (issue 15): two chats exchange direct
//! messages the server cannot read; `/join` of a new name creates an
//! end-to-end, invite-only room, `/invite` adds a member who can then talk
//! there, `/kick` removes them so they see nothing said after it; an open
//! room is marked as readable by the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use common::{Chat, Server, untimed};

/// No file of the server's data directory holds `marker`.
fn server_never_held(dir: &std::path::Path, marker: &str) {
    for entry in common::files_under(&dir.join("server-data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!common::holds(&bytes, marker.as_bytes()), "{} holds the plaintext", entry.display());
    }
}

#[test]
fn two_chats_exchange_direct_messages_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    // Each chat publishes its key packages as it connects.
    let mut bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);
    alice.type_line("/msg bob hello bob, marker-chat-dm-51d0");
    let told = alice.wait("messages with bob");
    assert!(told.last().unwrap().contains("messages with bob are end-to-end encrypted"), "{told:?}");
    let seen = bob.wait("marker-chat-dm-51d0");
    assert!(
        seen.iter().any(|l| l.contains("alice started an end-to-end conversation with you")),
        "the conversation is announced: {seen:?}"
    );
    // Shown like any direct message, with the state of alice's key.
    assert_eq!(untimed(seen.last().unwrap()), "alice (new key) -> you: hello bob, marker-chat-dm-51d0");
    // The first message from alice's key says which key was remembered,
    // so it can be compared.
    let rows = common::peer_rows(&common::home_of(&server, "bob"));
    let (_, _, alice_key, _) = rows.iter().find(|r| r.1 == "alice").unwrap_or_else(|| panic!("{rows:?}"));
    let notice = format!("* first message from alice: remembered their key {alice_key} (not verified");
    assert!(seen.iter().any(|l| l.starts_with(&notice)), "{notice:?} in {seen:?}");
    // And back, in the same conversation.
    bob.type_line("/msg alice hi alice, marker-chat-dm-77e2");
    let back = alice.wait("marker-chat-dm-77e2");
    // alice remembered bob's key when she started the conversation.
    assert_eq!(untimed(back.last().unwrap()), "bob -> you: hi alice, marker-chat-dm-77e2");
    assert!(!back.iter().any(|l| l.contains("started an end-to-end conversation")), "one conversation: {back:?}");
    alice.quit();
    bob.quit();
    server_never_held(dir.path(), "marker-chat-dm-51d0");
    server_never_held(dir.path(), "marker-chat-dm-77e2");
}

#[test]
fn a_new_room_is_end_to_end_invited_members_talk_and_a_kicked_one_reads_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);

    alice.type_line("/join newroom");
    let created = alice.wait("newroom");
    assert!(
        created.last().unwrap().contains("joined newroom (a new room, end-to-end encrypted and invite-only"),
        "{created:?}"
    );
    alice.type_line("/invite bob");
    alice.wait("added bob to newroom");
    let invited = bob.wait("you were added to the end-to-end room newroom");
    assert!(invited.last().unwrap().contains("alice"), "the members are listed: {invited:?}");
    bob.type_line("/join newroom");
    bob.wait("now in newroom (end-to-end encrypted)");
    bob.type_line("hello from bob, marker-chat-room-3c9a");
    let heard = alice.wait("marker-chat-room-3c9a");
    // alice remembered bob's key when she invited him.
    assert_eq!(untimed(heard.last().unwrap()), "[newroom] bob: hello from bob, marker-chat-room-3c9a");
    alice.type_line("welcome bob");
    let heard = bob.wait("welcome bob");
    assert_eq!(untimed(heard.last().unwrap()), "[newroom] alice (new key): welcome bob");

    // The members as the group states them, with their keys' state.
    alice.type_line("/members");
    let roster = alice.wait("in newroom");
    let roster = roster.last().unwrap();
    assert!(roster.contains("(end-to-end encrypted)"), "{roster}");
    assert!(roster.contains("alice (you)") && roster.contains("bob (known)"), "{roster}");

    alice.type_line("/kick bob");
    alice.wait("removed bob from newroom");
    bob.wait("alice removed you from the end-to-end room newroom");
    alice.type_line("after the kick, marker-chat-room-kicked");
    // A direct message after it: bob's queue delivers in order, so had the
    // room message reached him it would come first.
    alice.type_line("/msg bob sync-marker-9d1f");
    let after = bob.wait("sync-marker-9d1f");
    assert!(!after.iter().any(|l| l.contains("marker-chat-room-kicked")), "{after:?}");
    // bob is no longer in the room: what he types there is not sent.
    bob.type_line("/join newroom");
    let refused = bob.wait("newroom");
    assert!(refused.last().unwrap().contains("ask a member to /invite you"), "{refused:?}");

    // An open room says the server can read it.
    alice.type_line("/join lobby");
    let lobby = alice.wait("joined lobby");
    assert!(lobby.last().unwrap().contains("not end-to-end encrypted"), "{lobby:?}");
    alice.type_line("/who");
    let who = alice.wait("in lobby:");
    assert!(who.last().unwrap().contains("not end-to-end encrypted"), "{who:?}");
    alice.quit();
    bob.quit();
    server_never_held(dir.path(), "marker-chat-room-3c9a");
    server_never_held(dir.path(), "marker-chat-room-kicked");
}

#[test]
fn the_first_room_is_marked_and_a_chat_without_an_identity_says_its_messages_are_not_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut command = server.client("chat", "carol");
    command.arg("--no-identity");
    let mut carol = Chat::spawn(command);
    // Nothing is kept for a name no key owns: chat says so at once.
    let start = carol.wait("live delivery only");
    assert!(start.last().unwrap().contains("keeps nothing for you while you are away"), "{start:?}");
    let dave = Chat::start(&server, "dave", &["--no-identity"]);
    carol.type_line("/msg dave plain hello");
    let told = carol.wait("messages to dave");
    assert!(told.last().unwrap().contains("messages to dave are not end-to-end encrypted"), "{told:?}");
    let got = dave.wait("plain hello");
    assert!(untimed(got.last().unwrap()).starts_with("carol"), "{got:?}");
    // Without end-to-end rooms, /join of a new name makes an open room.
    carol.type_line("/join fresh");
    let joined = carol.wait("joined fresh");
    assert!(joined.last().unwrap().contains("not end-to-end encrypted"), "{joined:?}");
    carol.quit();
    dave.quit();
}

#[test]
fn a_member_who_left_is_removed_from_the_group_and_a_public_room_is_joined_by_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);
    alice.type_line("/create club");
    alice.wait("created club (end-to-end encrypted, invite-only)");
    alice.type_line("/invite bob");
    alice.wait("added bob to club");
    bob.wait("/join club to talk there");
    bob.type_line("/join club");
    bob.wait("now in club");
    bob.type_line("/leave");
    bob.wait("* left club");
    // alice enters the room again: her chat sees bob is gone and removes
    // him from the group, so nothing more is encrypted to him.
    alice.type_line("/join lobby");
    alice.wait("joined lobby");
    alice.type_line("/join club");
    alice.wait("now in club");
    alice.wait("bob left club: removed from its group");
    alice.type_line("/members");
    let roster = alice.wait("in club");
    assert!(roster.last().unwrap().ends_with(": alice (you)"), "{roster:?}");

    // A public room: anyone joins it by external commit, and talks there.
    alice.type_line("/create agora --public");
    alice.wait("created agora (end-to-end encrypted, public)");
    bob.type_line("/join agora");
    bob.wait("joined agora (end-to-end encrypted, public)");
    bob.type_line("hello agora, marker-chat-public-0b7e");
    let heard = alice.wait("marker-chat-public-0b7e");
    assert!(untimed(heard.last().unwrap()).starts_with("[agora] bob"), "{heard:?}");
    alice.quit();
    bob.quit();
    server_never_held(dir.path(), "marker-chat-public-0b7e");
}

#[test]
fn direct_lines_the_server_refuses_as_too_fast_are_encrypted_and_sent_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Few bytes a second: chat paces by message count, so the server
    // refuses some of these long lines with rate_limited; chat sends the
    // same sealed message again in its turn (sealing again would take a
    // new number of alice's counter: bob would be told of a gap).
    let limits = "max_message_bytes = 17408\nbytes_burst = 17408\nbytes_per_sec = 10000\n";
    let server = Server::quick_with_limits(dir.path(), Some(limits));
    let bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);
    let lines: Vec<String> = (1..=30).map(|i| format!("{i:02} {}", "y".repeat(1000))).collect();
    for line in &lines {
        alice.type_line(&format!("/msg bob {line}"));
    }
    let bob_saw = bob.wait("30 yyy");
    assert!(!bob_saw.iter().any(|l| l.contains("have not arrived") || l.contains("after a later")), "{bob_saw:?}");
    let got: Vec<String> = bob_saw
        .iter()
        .map(|l| untimed(l))
        .filter(|l| l.starts_with("alice"))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(got, lines, "every line, in order");
    // Every line reached bob, so every one was answered: none given up.
    alice.type_line("/fingerprint");
    let alice_saw = alice.wait("suite ");
    assert!(!alice_saw.iter().any(|l| l.contains("not sent")), "{alice_saw:?}");
    alice.quit();
    bob.quit();
}

#[test]
fn after_many_messages_the_sender_renews_its_keys_and_every_message_still_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let bob = Chat::start(&server, "bob", &[]);
    let mut alice = Chat::start(&server, "alice", &[]);
    // Past cipherline-e2e's UPDATE_AFTER_MESSAGES (100) in one conversation.
    let lines: Vec<String> = (1..=120).map(|i| format!("update line {i:03}")).collect();
    for line in &lines {
        alice.type_line(&format!("/msg bob {line}"));
    }
    let seen = bob.wait("update line 120");
    assert!(
        seen.iter().any(|l| l.contains("alice renewed their keys")),
        "alice's chat committed a leaf update: {seen:?}"
    );
    let got: Vec<String> = seen
        .iter()
        .map(|l| untimed(l))
        .filter(|l| l.starts_with("alice"))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(got, lines, "every line, in order, across the new epoch");
    alice.quit();
    bob.quit();
}
