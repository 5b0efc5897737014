//! Snapshot tests of the TUI's screens (ratatui's `TestBackend`, insta;
//! the accepted snapshots are committed under `snapshots/`, and a change
//! fails the test until it is reviewed), and its behaviour without a
//! terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::time::Duration;

use cipherline_client::engine::{
    Command, ConnectionState, ConversationSummary, Event, HistoryEntry, KeyState, Member as EngineMember, Message,
    Reply, Status, Verified,
};
use cipherline_proto::app::{RoomKind, Target};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{Action, App, Entry, Transfer};
use super::view::render;

/// 2026-11-27 22:00 UTC.
const T0: u64 = 1_795_816_800_000;

fn fixed_now() -> u64 {
    T0 + 3 * 60_000
}

fn new_app() -> App {
    let mut app = App::new("127.0.0.1:5555", "lobby", false, jiff::tz::TimeZone::UTC);
    app.now = fixed_now;
    app
}

/// The screen as text, `width` × `height`.
fn draw(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(app, frame)).unwrap();
    terminal.backend().to_string()
}

fn message(id: u64, from: &str, to: Target, text: &str, verified: Verified, e2e: bool, minute: u64) -> Event {
    Event::Message(Message {
        id,
        from: from.to_owned(),
        to,
        text: text.to_owned(),
        e2e,
        verified,
        new_key: None,
        timestamp_ms: T0 + minute * 60_000,
        sent_ms: None,
        signed: true,
    })
}

fn lobby() -> Target {
    Target::Room("lobby".to_owned())
}

/// Connected as alice, in the lobby (joined the open way), with direct
/// messages end to end.
fn connected() -> App {
    let mut app = new_app();
    let actions = app.on_event(Event::Connection(ConnectionState::Connected { name: "alice".to_owned() }));
    let want = [Command::Join("lobby".to_owned()), Command::Conversations, Command::Status];
    assert_eq!(actions, want.map(Action::Run));
    app.on_reply(&Command::Join("lobby".to_owned()), Ok(Reply::Done));
    let status = Status { name: "alice".to_owned(), connected: true, rooms: vec!["lobby".to_owned()], e2e: true };
    app.on_reply(&Command::Status, Ok(Reply::Status(status)));
    app
}

/// A realistic session: people talking in the lobby, one of them hostile,
/// a direct message waiting in another conversation.
fn session() -> App {
    let mut app = connected();
    app.on_event(Event::Membership { room: "lobby".into(), name: "bob".into(), joined: true });
    app.on_event(message(11, "bob", lobby(), "hi all, the build is green again", Verified::Verified, false, 1));
    app.on_event(message(12, "carol", lobby(), "nice. who is reviewing the TUI?", Verified::Known, false, 2));
    app.on_reply(
        &Command::SendRoom { room: "lobby".into(), text: "I am, after lunch".into() },
        Ok(Reply::Sent { id: 13, e2e: false }),
    );
    app.on_event(Event::Delivered { id: 13, by: "bob".into() });
    // Hostile: a name with a bidi override, a text with ANSI escapes, a
    // carriage return, and a line break that pretends to be alice.
    app.on_event(message(
        14,
        "mal\u{202e}lory",
        lobby(),
        "\x1b[2J\x1b[31mred alert\x1b[0m\r12:05 bob: send me your key\n12:06 alice: ok",
        Verified::New,
        false,
        4,
    ));
    app.on_event(message(15, "dave", Target::User("alice".into()), "lunch at 1?", Verified::Known, true, 5));
    app.on_event(message(16, "dave", Target::User("alice".into()), "the usual place", Verified::Known, true, 6));
    app
}

#[test]
fn first_start_is_connecting() {
    let app = new_app();
    let screen = draw(&app, 100, 30);
    assert!(screen.contains("connecting to 127.0.0.1:5555"));
    insta::assert_snapshot!("first_start", screen);
}

#[test]
fn a_conversation_with_messages_and_hostile_peer_strings() {
    let app = session();
    let screen = draw(&app, 100, 30);
    // Nothing raw reaches the screen: the escapes are shown, not obeyed,
    // and the peer's line break starts a marked continuation.
    assert!(!screen.contains('\x1b') && !screen.contains('\u{202e}') && !screen.contains('\r'));
    assert!(screen.contains("\\x1b[2J"), "{screen}");
    assert!(screen.contains("mal\\u{202e}lory"), "{screen}");
    assert!(screen.contains("| 12:06 alice: ok"), "{screen}");
    assert!(!screen.lines().any(|l| l.trim_start_matches(['"', '│']).starts_with("12:06 alice")));
    // dave's two messages wait in their conversation, end to end.
    assert!(screen.contains("E @dave 2"), "{screen}");
    insta::assert_snapshot!("conversation", screen);
}

#[test]
fn the_member_list_shows_each_key_state() {
    let mut app = session();
    for (name, verified) in [("erin", Verified::Unsigned), ("frank", Verified::Known)] {
        app.on_event(message(20, name, lobby(), "hello", verified, false, 7));
    }
    app.on_event(Event::KeyChanged { id: 21, name: "carol".into() });
    let screen = draw(&app, 100, 30);
    for row in ["bob", "carol", "frank", "erin"] {
        assert!(screen.lines().any(|l| l.contains(row)), "{row} listed: {screen}");
    }
    assert!(screen.contains("CHANGED") && screen.contains("verified") && screen.contains("unsigned"));
    insta::assert_snapshot!("members", screen);
}

#[test]
fn reconnecting_is_shown_with_its_reason_and_countdown() {
    let mut app = session();
    app.on_event(Event::Connection(ConnectionState::Reconnecting {
        reason: "the connection closed".into(),
        retry_in: Duration::from_secs(4),
    }));
    let screen = draw(&app, 100, 30);
    assert!(screen.contains("reconnecting in 4 s: the connection closed"));
    insta::assert_snapshot!("reconnecting", screen);
}

#[test]
fn a_narrow_terminal_shows_the_conversation_alone() {
    let app = session();
    let screen = draw(&app, 50, 16);
    assert!(!screen.contains("conversations"), "no list when narrow: {screen}");
    assert!(screen.contains("2 unread"), "{screen}");
    insta::assert_snapshot!("narrow", screen);
    // Back to wide: the panes return (a resize is just a new size).
    assert!(draw(&app, 100, 30).contains("conversations"));
}

#[test]
fn the_help_screen_lists_keys_and_commands() {
    let mut app = connected();
    let actions = app.on_line("/help");
    assert!(actions.is_empty() && app.help);
    let screen = draw(&app, 100, 36);
    assert!(screen.contains("/msg USER TEXT") && screen.contains("PgUp/PgDn"));
    insta::assert_snapshot!("help", screen);
    app.on_terminal(&key(KeyCode::Esc));
    assert!(!app.help);
}

#[test]
fn file_offers_are_accepted_declined_and_followed_to_the_end() {
    use cipherline_client::engine::TransferState;
    let mut app = connected();
    app.download_dir = "/tmp/in".into();
    let offer = |id: u64, name: &str| Event::FileOffered {
        id,
        from: "bob".into(),
        to: Target::User("alice".into()),
        name: name.into(),
        size: 3 * 1024 * 1024,
        e2e: true,
        verified: Verified::Known,
    };
    app.on_event(offer(41, "a.pdf"));
    app.on_event(offer(42, "b\u{1b}[2J.pdf"));
    app.open(&Target::User("bob".into()));
    let screen = draw(&app, 120, 30);
    assert!(screen.contains("bob offers the file a.pdf (3072 KiB): /accept 41 or /decline 41"), "{screen}");
    assert!(!screen.contains('\u{1b}'), "a peer's file name is escaped: {screen}");
    // /accept with no id takes the newest offer; with an id, that one.
    assert_eq!(type_line(&mut app, "/accept"), [Action::Run(Command::GetFile { id: 42, dir: "/tmp/in".into() })]);
    assert_eq!(type_line(&mut app, "/accept 41"), [Action::Run(Command::GetFile { id: 41, dir: "/tmp/in".into() })]);
    assert!(type_line(&mut app, "/accept 7").is_empty(), "an unknown offer is refused");
    // /decline declines that offer by its id, and forgets it.
    assert_eq!(type_line(&mut app, "/decline 41"), [Action::Run(Command::DeclineFile(41))]);
    assert!(type_line(&mut app, "/decline 41").is_empty(), "declined already");
    // A version-1 offer (an open room): shown as readable by the server,
    // accepted and declined like the others.
    let v1 = 3u64 << 40;
    app.on_event(Event::FileOffered {
        id: v1,
        from: "carol".into(),
        to: lobby(),
        name: "c.txt".into(),
        size: 10,
        e2e: false,
        verified: Verified::Unsigned,
    });
    app.open(&lobby());
    let screen = draw(&app, 160, 30);
    assert!(
        screen.contains(&format!(
            "carol offers the file c.txt (10 bytes; not end to end: the server can read it): /accept {v1}"
        )),
        "{screen}"
    );
    assert_eq!(type_line(&mut app, "/accept"), [Action::Run(Command::GetFile { id: v1, dir: "/tmp/in".into() })]);
    assert_eq!(type_line(&mut app, &format!("/decline {v1}")), [Action::Run(Command::DeclineFile(v1))]);
    // An engine error is escaped once, where it is drawn (a `\` shows as
    // `\\`, not `\\\\`).
    app.on_reply(&Command::DeclineFile(v1), Err("no file transfer a\\b".into()));
    let screen = draw(&app, 160, 30);
    assert!(screen.contains("no file transfer a\\\\b") && !screen.contains("a\\\\\\\\b"), "{screen}");
    // Sending: a room shown needs no #, a user is a user.
    assert_eq!(
        type_line(&mut app, "/send-file lobby /tmp/x.bin"),
        [Action::Run(Command::SendFile { to: lobby(), path: "/tmp/x.bin".into() })]
    );
    assert_eq!(
        type_line(&mut app, "/send-file carol /tmp/x.bin"),
        [Action::Run(Command::SendFile { to: Target::User("carol".into()), path: "/tmp/x.bin".into() })]
    );
    // Progress makes a bar; the end a line saying where the file is.
    let transfer = |done, state, path: Option<&str>| Event::Transfer {
        transfer: "d6".into(),
        name: "b.pdf".into(),
        done,
        total: 2048 * 1024,
        state,
        path: path.map(Into::into),
    };
    app.on_event(transfer(1024 * 1024, TransferState::Running, None));
    assert!(draw(&app, 120, 30).contains("d6 running b.pdf 1024/2048 KiB"));
    app.on_event(transfer(2048 * 1024, TransferState::Done, Some("/tmp/in/b.pdf")));
    let screen = draw(&app, 120, 30);
    assert!(screen.contains("saved b.pdf as /tmp/in/b.pdf"), "{screen}");
    app.on_event(transfer(
        0,
        TransferState::failed(cipherline_client::engine::FailReason::Cancelled, "the relay lost it"),
        None,
    ));
    assert!(draw(&app, 120, 30).contains("b.pdf (d6) stopped: the relay lost it"));
}

#[test]
fn rekey_and_fingerprint_run_on_the_engine() {
    use cipherline_client::engine::SessionSummary;
    let mut app = connected();
    assert_eq!(type_line(&mut app, "/rekey"), [Action::Run(Command::Rekey)]);
    app.on_reply(&Command::Rekey, Ok(Reply::Done));
    assert_eq!(type_line(&mut app, "/fingerprint"), [Action::Run(Command::Session)]);
    let summary = SessionSummary {
        name: "alice".into(),
        suite: "X25519_AES256GCM".into(),
        server_fingerprint: Some("SHA256:ab12".into()),
        server_short: Some("ab12".into()),
        handshake_hash: "00ff".into(),
        stored: true,
    };
    app.on_reply(&Command::Session, Ok(Reply::Session(summary)));
    let screen = draw(&app, 120, 30);
    assert!(screen.contains("the session keys were ratcheted forward"), "{screen}");
    assert!(screen.contains("server key SHA256:ab12 (ab12)"), "{screen}");
    assert!(screen.contains("suite X25519_AES256GCM; session 00ff"), "{screen}");
    assert!(!screen.contains("use `cipherline chat`"), "{screen}");
}

#[test]
fn transfers_are_drawn_with_progress_bars() {
    let mut app = session();
    app.on_transfer(Transfer {
        id: "d1".into(),
        name: "report.pdf".into(),
        done: 512 * 1024,
        total: 1024 * 1024,
        state: "receiving".into(),
    });
    let screen = draw(&app, 100, 30);
    assert!(screen.contains("receiving report.pdf 512/1024 KiB"), "{screen}");
    assert!(screen.contains("50%") || screen.contains("receiving"), "{screen}");
}

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_line(app: &mut App, line: &str) -> Vec<Action> {
    for c in line.chars() {
        app.on_terminal(&key(KeyCode::Char(c)));
    }
    app.on_terminal(&key(KeyCode::Enter))
}

#[test]
fn typed_lines_become_engine_commands() {
    let mut app = connected();
    assert_eq!(
        type_line(&mut app, "hello"),
        [Action::Run(Command::SendRoom { room: "lobby".into(), text: "hello".into() })]
    );
    assert_eq!(type_line(&mut app, "/join other"), [Action::Run(Command::Join("other".into()))]);
    // The room is shown once the engine says it was joined.
    app.on_reply(&Command::Join("other".into()), Ok(Reply::Done));
    assert_eq!(app.conversation().unwrap().target, Target::Room("other".into()));
    assert_eq!(type_line(&mut app, "/leave"), [Action::Run(Command::Leave("other".into()))]);
    app.on_reply(&Command::Leave("other".into()), Ok(Reply::Done));
    assert_eq!(app.conversation().unwrap().target, lobby());
    assert_eq!(
        type_line(&mut app, "/msg bob psst"),
        [Action::Run(Command::SendDirect { user: "bob".into(), text: "psst".into() })]
    );
    assert_eq!(app.conversation().unwrap().target, Target::User("bob".into()));
    assert_eq!(type_line(&mut app, "/quit"), [Action::Quit]);
    assert_eq!(app.on_terminal(&ctrl('c')), [Action::Quit]);
    // A refusal is shown, not lost.
    app.on_reply(&Command::Join("x".into()), Err("the room is full".into()));
    assert!(draw(&app, 100, 30).contains("could not join: the room is full"));
}

#[test]
fn up_recalls_and_tab_completes_from_what_is_on_screen() {
    let mut app = session();
    type_line(&mut app, "first");
    app.on_terminal(&key(KeyCode::Up));
    assert_eq!(app.input.text(), "first");
    app.on_terminal(&ctrl('u'));
    for c in "/msg da".chars() {
        app.on_terminal(&key(KeyCode::Char(c)));
    }
    app.on_terminal(&key(KeyCode::Tab));
    assert_eq!(app.input.text(), "/msg dave ");
}

#[test]
fn unread_counts_clear_when_the_conversation_is_shown() {
    let mut app = session();
    let dave = |app: &App| app.conversations.iter().find(|c| c.target == Target::User("dave".into())).unwrap().unread;
    assert_eq!(dave(&app), 2);
    app.on_terminal(&ctrl('n'));
    assert_eq!(app.conversation().unwrap().target, Target::User("dave".into()));
    assert_eq!(dave(&app), 0);
    assert_eq!(app.conversation().unwrap().e2e, Some(true));
}

#[test]
fn page_up_and_the_wheel_scroll_back_and_page_down_returns() {
    let mut app = connected();
    for i in 0..60 {
        app.on_event(message(100 + i, "bob", lobby(), &format!("line {i}"), Verified::Known, false, 1));
    }
    let screen = draw(&app, 100, 20);
    assert!(screen.contains("line 59") && !screen.contains("line 40 "));
    app.on_terminal(&key(KeyCode::PageUp));
    let screen = draw(&app, 100, 20);
    assert!(!screen.contains("line 59") && screen.contains("more row(s) below"), "{screen}");
    app.on_terminal(&TermEvent::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 30,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }));
    for _ in 0..100 {
        app.on_terminal(&key(KeyCode::PageUp));
    }
    let top = draw(&app, 100, 20);
    assert!(top.contains("line 0 "), "scrolled to the oldest: {top}");
    for _ in 0..100 {
        app.on_terminal(&key(KeyCode::PageDown));
    }
    assert!(draw(&app, 100, 20).contains("line 59"));
}

#[test]
fn a_flood_of_new_names_is_bounded() {
    let mut app = connected();
    for i in 0..(super::app::MAX_CONVERSATIONS as u64 + 50) {
        app.on_event(message(i, &format!("u{i}"), Target::User("alice".into()), "hi", Verified::New, true, 1));
    }
    assert!(app.conversations.len() <= super::app::MAX_CONVERSATIONS);
    assert_eq!(app.conversation().unwrap().target, lobby());
    // The last one, shown: the list scrolls to it.
    app.switch(-1);
    let shown = app.conversation().unwrap().target.clone();
    let Target::User(name) = shown else { panic!("a person") };
    assert!(draw(&app, 100, 20).contains(&format!(">E @{name}")), "{name}");
}

/// The screen the README shows: an ordinary afternoon.
#[test]
fn a_realistic_session_for_the_readme() {
    let mut app = connected();
    let ops = Target::Room("ops".to_owned());
    app.on_event(Event::Membership { room: "lobby".into(), name: "bob".into(), joined: true });
    app.on_event(message(11, "bob", lobby(), "the 2.0 relay is up on the staging box", Verified::Verified, false, 1));
    app.on_event(message(12, "carol", lobby(), "great, I'll point the bots at it", Verified::Known, false, 2));
    app.on_reply(
        &Command::SendRoom { room: "lobby".into(), text: "trying the new tui now".into() },
        Ok(Reply::Sent { id: 13, e2e: false }),
    );
    app.on_event(Event::Delivered { id: 13, by: "bob".into() });
    app.on_event(message(14, "dave", lobby(), "hello, first time here", Verified::New, false, 4));
    app.on_event(message(15, "bob", ops.clone(), "deploy at 16:00?", Verified::Verified, true, 5));
    app.on_event(message(16, "carol", Target::User("alice".into()), "can you review my PR?", Verified::Known, true, 6));
    app.input.paste("/msg carol sure, after the deploy");
    let screen = draw(&app, 100, 16);
    assert!(screen.contains("E #ops 1") && screen.contains("E @carol 1"), "{screen}");
    insta::assert_snapshot!("readme", screen);
}

/// A peer pads its text so that the wrapped part would start a row with
/// what looks like another sender's message: every wrapped row starts
/// with blanks instead.
#[test]
fn padding_cannot_start_a_row_with_a_forged_message() {
    let mut app = connected();
    let forged = format!("hi{}22:05 bob: send me your key", " ".repeat(200));
    app.on_event(message(30, "mallory", lobby(), &forged, Verified::Known, false, 5));
    for width in [50, 70, 100, 140] {
        let screen = draw(&app, width, 30);
        let forged_rows = screen.lines().filter(|l| l.contains("22:05 bob")).count();
        assert_eq!(forged_rows, 1, "{screen}");
        for row in screen.lines().filter(|l| l.contains("22:05 bob")) {
            let inside = row.split('│').find(|cell| cell.contains("22:05 bob")).unwrap();
            assert!(inside.starts_with("      "), "a wrapped row starts at the margin: {row}");
        }
    }
}

fn stored(id: u64, from: &str, to: Target, text: &str, outgoing: bool) -> HistoryEntry {
    HistoryEntry {
        id,
        from: from.to_owned(),
        to,
        text: text.to_owned(),
        e2e: false,
        verified: Verified::Known,
        timestamp_ms: T0 + id * 1000,
        outgoing,
        signed: true,
    }
}

#[test]
fn the_local_history_is_loaded_then_paged_back_at_the_top() {
    let mut app = connected();
    app.on_event(message(500, "bob", lobby(), "live now", Verified::Known, false, 9));
    // The lobby is shown: its history and members are asked for.
    let due = app.due();
    let first = Command::History { conversation: lobby(), before: None, limit: super::people::PAGE };
    assert!(due.contains(&Action::Run(first.clone())), "{due:?}");
    assert!(due.contains(&Action::Run(Command::Members("lobby".into()))), "{due:?}");
    assert!(app.due().is_empty(), "asked once");
    // A full page, one of them the live message again: held once, before it.
    let page: Vec<HistoryEntry> = (400..500)
        .map(|id| stored(id, if id % 2 == 0 { "bob" } else { "alice" }, lobby(), "old", id % 2 == 1))
        .collect();
    let mut with_live = page.clone();
    with_live.push(stored(500, "bob", lobby(), "live now", false));
    app.on_reply(&first, Ok(Reply::History(with_live)));
    let entries = &app.conversation().unwrap().entries;
    assert_eq!(entries.iter().filter(|e| matches!(e, Entry::Message { id: 500, .. })).count(), 1);
    assert!(matches!(entries.first(), Some(Entry::Message { id: 400, .. })));
    assert!(matches!(entries.get(1), Some(Entry::Message { id: 401, verified: None, .. })), "alice's own");
    // Scrolled to the top: the page before the oldest held.
    draw(&app, 100, 20);
    for _ in 0..50 {
        app.on_terminal(&key(KeyCode::PageUp));
    }
    let older = Command::History { conversation: lobby(), before: Some(400), limit: super::people::PAGE };
    assert_eq!(app.due(), [Action::Run(older.clone())]);
    app.on_reply(&older, Ok(Reply::History(vec![stored(7, "carol", lobby(), "the very first", false)])));
    // Where the reader was stays put; one more step up shows it.
    draw(&app, 100, 20);
    app.on_terminal(&key(KeyCode::PageUp));
    assert!(draw(&app, 100, 20).contains("carol: the very first"));
    assert!(app.due().is_empty(), "a short page was the last");
}

#[test]
fn without_room_the_most_recent_conversation_opens_and_members_show_key_states() {
    let mut app = connected();
    let list = vec![
        ConversationSummary { target: lobby(), e2e: false, last_timestamp_ms: Some(T0) },
        ConversationSummary { target: Target::User("dave".into()), e2e: true, last_timestamp_ms: Some(T0 + 5) },
        ConversationSummary { target: Target::Room("ops".into()), e2e: true, last_timestamp_ms: None },
    ];
    app.on_reply(&Command::Conversations, Ok(Reply::Conversations(list)));
    assert_eq!(app.conversation().unwrap().target, Target::User("dave".into()));
    assert_eq!(app.conversations.len(), 3);
    app.open(&lobby());
    let members = ["alice", "bob", "carol", "dave", "erin"]
        .iter()
        .zip([KeyState::Known, KeyState::Verified, KeyState::Changed, KeyState::New, KeyState::Unknown])
        .map(|(name, key)| EngineMember { name: (*name).to_owned(), key, fingerprint: None })
        .collect();
    app.on_reply(&Command::Members("lobby".into()), Ok(Reply::Members(members)));
    let screen = draw(&app, 100, 20);
    for (name, state) in [("bob", "verified"), ("carol", "CHANGED"), ("dave", "new"), ("erin", "no key")] {
        assert!(screen.lines().any(|l| l.contains(name) && l.contains(state)), "{name} {state}: {screen}");
    }
    // /verify, /whois, /trust, /create, /invite reach the engine.
    assert_eq!(
        app.on_line("/verify bob confirm"),
        [Action::Run(Command::Verify { user: "bob".into(), confirm: true })]
    );
    assert_eq!(app.on_line("/whois bob"), [Action::Run(Command::Whois("bob".into()))]);
    assert_eq!(app.on_line("/trust carol"), [Action::Run(Command::Trust("carol".into()))]);
    assert_eq!(
        app.on_line("/create team --public"),
        [Action::Run(Command::Create { room: "team".into(), kind: RoomKind::Public })]
    );
    assert_eq!(
        app.on_line("/invite bob carol"),
        [Action::Run(Command::Invite { room: "lobby".into(), users: vec!["bob".into(), "carol".into()] })]
    );
    app.on_reply(
        &Command::Verify { user: "bob".into(), confirm: false },
        Ok(Reply::SafetyCode { user: "bob".into(), code: "12345 67890".into() }),
    );
    assert!(draw(&app, 100, 20).contains("safety code with bob: 12345 67890"));
}

#[test]
fn an_explicit_room_stays_shown() {
    let mut app = App::new("127.0.0.1:5555", "ops", true, jiff::tz::TimeZone::UTC);
    app.on_event(Event::Connection(ConnectionState::Connected { name: "alice".to_owned() }));
    let list =
        vec![ConversationSummary { target: Target::User("dave".into()), e2e: true, last_timestamp_ms: Some(T0) }];
    app.on_reply(&Command::Conversations, Ok(Reply::Conversations(list)));
    app.on_reply(&Command::Join("ops".into()), Ok(Reply::Done));
    assert_eq!(app.conversation().unwrap().target, Target::Room("ops".into()));
}

#[test]
fn the_reconnection_countdown_counts_down_to_zero() {
    let mut app = connected();
    app.on_event(Event::Connection(ConnectionState::Reconnecting {
        reason: "the connection closed".into(),
        retry_in: Duration::from_secs(30),
    }));
    assert_eq!(app.retry_left(), Some(30));
    app.retry_at = Some(std::time::Instant::now() + Duration::from_millis(2500));
    assert!(draw(&app, 100, 20).contains("reconnecting in 3 s"));
    app.retry_at = std::time::Instant::now().checked_sub(Duration::from_secs(1));
    assert_eq!(app.retry_left(), Some(0));
    app.on_event(Event::Connection(ConnectionState::Connected { name: "alice".into() }));
    assert_eq!(app.retry_left(), None);
    assert!(draw(&app, 100, 20).contains("reconnected to 127.0.0.1:5555 as alice"));
}

/// The member list's row for `name` (its state at the row's end).
fn member_row(screen: &str, name: &str) -> String {
    let row = screen.lines().find(|l| l.contains(&format!("│{name} "))).unwrap_or_else(|| panic!("{name}: {screen}"));
    // The member list is the last box on the row.
    row.rsplit('│').nth(1).unwrap_or_default().trim().to_owned()
}

#[test]
fn an_unsigned_message_under_a_remembered_name_leaves_the_members_key_state() {
    let mut app = connected();
    app.on_event(Event::Membership { room: "lobby".into(), name: "carol".into(), joined: true });
    app.on_event(message(6, "carol", lobby(), "signed", Verified::Verified, false, 3));
    let Event::Message(m) = message(7, "carol", lobby(), "not me", Verified::Changed, false, 4) else { unreachable!() };
    app.on_event(Event::Message(Message { signed: false, ..m.clone() }));
    // Nor is a name listed on an unsigned message's word.
    app.on_event(Event::Message(Message { id: 8, from: "mallory".into(), signed: false, ..m.clone() }));
    let screen = draw(&app, 100, 20);
    let row = member_row(&screen, "carol");
    assert!(row.ends_with(" verified"), "{row}: {screen}");
    assert!(!screen.lines().any(|l| l.contains("│mallory ")), "{screen}");
    assert!(screen.contains("carol (UNSIGNED: maybe not them): not me"), "{screen}");
    // Signed by another key: that is a change.
    app.on_event(Event::Message(Message { id: 9, text: "new key".into(), ..m }));
    let row = member_row(&draw(&app, 100, 20), "carol");
    assert!(row.ends_with(" CHANGED"), "{row}");
}

/// A page of history replays an unsigned message under a remembered name
/// with the mark it had live, not as a changed key.
#[test]
fn history_marks_an_unsigned_message_under_a_remembered_name_as_live() {
    let mut app = connected();
    let Event::Message(m) = message(7, "carol", lobby(), "not me", Verified::Changed, false, 4) else { unreachable!() };
    app.on_event(Event::Message(Message { signed: false, ..m }));
    let live = draw(&app, 100, 20);
    let mut app = connected();
    let _ = app.due();
    let entry = HistoryEntry {
        verified: Verified::Changed,
        signed: false,
        timestamp_ms: T0 + 4 * 60_000,
        ..stored(7, "carol", lobby(), "not me", false)
    };
    let first = Command::History { conversation: lobby(), before: None, limit: super::people::PAGE };
    app.on_reply(&first, Ok(Reply::History(vec![entry])));
    let replayed = draw(&app, 100, 20);
    // The message's cell (the rows around it differ: members, the list).
    let line = |screen: &str| screen.split('│').find(|cell| cell.contains("not me")).map(str::to_owned);
    assert!(line(&replayed).is_some_and(|l| l.contains("carol (UNSIGNED: maybe not them): not me")), "{replayed}");
    assert_eq!(line(&replayed), line(&live));
}

#[test]
fn an_unsigned_message_under_a_remembered_name_and_an_expiry_are_said() {
    let mut app = connected();
    let Event::Message(m) = message(7, "carol", lobby(), "not me", Verified::Changed, false, 4) else { unreachable!() };
    app.on_event(Event::Message(Message { signed: false, ..m.clone() }));
    app.on_event(Event::Message(Message { id: 8, text: "new key".into(), ..m }));
    let screen = draw(&app, 100, 20);
    assert!(screen.contains("carol (UNSIGNED: maybe not them): not me"), "{screen}");
    assert!(screen.contains("carol (KEY CHANGED): new key"), "signed with another key: {screen}");
    app.on_event(Event::Expired { id: 41, to: "b\x1bob".into() });
    let i = app.index_of(&Target::User("b\x1bob".into()));
    let entries = &app.conversations[i].entries;
    assert!(
        matches!(entries.last(), Some(Entry::Notice { text, alarm: false }) if text.contains("expired on the server unread (id 41)")),
        "{entries:?}"
    );
}
