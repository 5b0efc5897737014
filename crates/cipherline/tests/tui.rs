//! `cipherline tui` on a real pseudo-terminal (100×30): connect, send a
//! typed message (another user receives it), receive one (it appears on
//! screen), `/join` another room, `/quit` with status 0 and the terminal
//! restored. The screen is what a vt100 parser makes of the bytes written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::num::NonZeroU16;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rexpect::session::{PtySession, spawn_command};

/// Generous: the CI machine is small and busy.
const TIMEOUT: Duration = Duration::from_secs(30);
const ROWS: u16 = 30;
const COLS: u16 = 100;

/// The TUI on a pty, and what it drew.
struct Tui {
    pty: PtySession,
    screen: vt100::Parser,
    /// Every byte written to the terminal.
    raw: Vec<u8>,
}

impl Tui {
    /// Runs `cmd` on a pty inside `sh`, which sets the terminal's size
    /// first and prints the exit status after.
    fn start(cmd: &Command) -> Tui {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!(r#"echo "sh-pid=$$"; stty sane rows {ROWS} cols {COLS}; "$@"; echo "tui-exit=$?"; stty -a; echo "stty-done""#))
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.env("TERM", "xterm-256color");
        let pty = spawn_command(sh, Some(TIMEOUT.as_millis() as u64)).unwrap();
        Tui {
            pty,
            screen: vt100::Parser::new(NonZeroU16::new(ROWS).unwrap(), NonZeroU16::new(COLS).unwrap(), 0),
            raw: Vec::new(),
        }
    }

    /// Reads what is there (rexpect hands bytes over as Latin-1 chars).
    fn pump(&mut self) {
        let mut got = Vec::new();
        while let Some(c) = self.pty.try_read() {
            got.push(u8::try_from(u32::from(c)).unwrap_or(b'?'));
        }
        self.screen.process(&got);
        self.raw.extend_from_slice(&got);
    }

    fn contents(&self) -> String {
        self.screen.screen().contents()
    }

    /// Waits until the screen shows `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let until = Instant::now() + TIMEOUT;
        loop {
            self.pump();
            let contents = self.contents();
            if contents.contains(needle) {
                return contents;
            }
            assert!(Instant::now() < until, "{needle:?} never appeared on:\n{contents}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the raw output holds `needle` (after the TUI left the screen).
    fn wait_for_raw(&mut self, needle: &[u8]) {
        let until = Instant::now() + TIMEOUT;
        loop {
            self.pump();
            if holds(&self.raw, needle) {
                return;
            }
            assert!(Instant::now() < until, "{:?} never written", String::from_utf8_lossy(needle));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_in(&mut self, keys: &str) {
        self.pty.send(keys).unwrap();
        self.pty.flush().unwrap();
    }
}

#[test]
fn connect_send_receive_switch_room_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut tui = Tui::start(&server.client("tui", "alice"));
    tui.wait_for("connected as alice");
    tui.wait_for("joined lobby");
    // bob listens in the lobby; alice's screen shows him arrive.
    let mut bob = server
        .client("listen", "bob")
        .args(["--count", "1", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bob_lines = line_channel(&mut bob);
    tui.wait_for("bob joined lobby");

    // Typed in, received by bob.
    tui.type_in("hello from the tui\r");
    let got = bob_lines.recv_timeout(TIMEOUT).expect("bob received nothing");
    assert_eq!(untimed(&got), "[lobby] alice (new key): hello from the tui");
    assert!(bob.wait().unwrap().success());
    tui.wait_for("alice: hello from the tui");

    // From carol, shown on alice's screen (escaped: the ESC never reaches the terminal).
    let sent = server.client("send", "carol").args(["--room", "lobby", "hi alice \x1b[31mred"]).output().unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let screen = tui.wait_for("hi alice \\x1b[31mred");
    assert!(screen.contains("carol (new key): hi alice"), "{screen}");

    // Another room: the conversation shown and the prompt follow.
    tui.type_in("/join otherroom\r");
    let screen = tui.wait_for("#otherroom> ");
    assert!(screen.contains("joined otherroom"), "{screen}");
    assert!(screen.contains("#otherroom · not end-to-end"), "{screen}");
    assert!(screen.contains("#lobby"), "the lobby is still listed: {screen}");

    // /quit: status 0, full screen undone, the terminal back to normal.
    tui.type_in("/quit\r");
    tui.wait_for_raw(b"stty-done");
    let raw = String::from_utf8_lossy(&tui.raw).into_owned();
    assert!(raw.contains("tui-exit=0"), "exit status: {raw:?}");
    for (what, seq) in [
        ("the alternate screen left", "\x1b[?1049l"),
        ("mouse capture off", "\x1b[?1000l"),
        ("the cursor shown", "\x1b[?25h"),
    ] {
        let quit_at = raw.find("tui-exit=").unwrap();
        assert!(raw[..quit_at].rfind(seq).is_some(), "{what} ({seq:?}) not written before exit");
    }
    let stty = &raw[raw.find("tui-exit=").unwrap()..];
    let flags: Vec<&str> = stty.split_whitespace().collect();
    assert!(flags.contains(&"icanon") && flags.contains(&"echo"), "raw mode left on: {stty}");

    // Started again: the most recent conversation is shown with its
    // scrollback from the local history.
    let mut again = Tui::start(&server.client("tui", "alice"));
    again.wait_for("connected as alice");
    let screen = again.wait_for("alice: hello from the tui");
    assert!(screen.contains("#lobby> "), "{screen}");
    assert!(screen.contains("hi alice \\x1b[31mred"), "{screen}");
    again.type_in("\x03");
    again.wait_for_raw(b"tui-exit=0");
}

#[test]
fn an_unreachable_server_is_reported_before_full_screen() {
    // A port nothing listens on: the first connection fails, the TUI never
    // takes the screen, the status is not 0.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = bin().args(["tui", "--server", &addr, "--name", "alice", "--no-identity"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not connect"), "{stderr}");
    assert!(!holds(&out.stdout, b"\x1b[?1049h"), "the alternate screen was entered");
}

#[test]
fn sigterm_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::quick(dir.path());
    let mut tui = Tui::start(&server.client("tui", "alice"));
    tui.wait_for("connected as alice");
    // The TUI is the only child of this pty's sh: signal exactly it.
    let raw = String::from_utf8_lossy(&tui.raw).into_owned();
    let sh: String = raw[raw.find("sh-pid=").unwrap() + 7..].chars().take_while(char::is_ascii_digit).collect();
    let out = Command::new("pgrep").args(["-P", &sh]).output().unwrap();
    let child = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!child.is_empty() && !child.contains('\n'), "the tui is sh's one child: {child:?}");
    assert!(Command::new("kill").args(["-TERM", &child]).status().unwrap().success());
    tui.wait_for_raw(b"stty-done");
    let raw = String::from_utf8_lossy(&tui.raw).into_owned();
    let exit = raw.find("tui-exit=").unwrap();
    assert!(raw[..exit].contains("\x1b[?1049l"), "the alternate screen was not left");
    let flags: Vec<&str> = raw[exit..].split_whitespace().collect();
    assert!(flags.contains(&"icanon") && flags.contains(&"echo"), "raw mode left on: {}", &raw[exit..]);
}

/// The server goes away and comes back: the status bar says so, the TUI
/// reconnects by itself, and what is typed then is sent.
#[test]
fn a_lost_connection_is_shown_and_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::quick(dir.path());
    let mut tui = Tui::start(&server.client("tui", "alice"));
    tui.wait_for("joined lobby");
    server.stop();
    tui.wait_for("reconnecting in");
    server.restart();
    tui.wait_for("reconnected to");
    tui.wait_for("connected as alice");
    tui.type_in("back again\r");
    tui.wait_for("alice: back again");
    tui.type_in("/quit\r");
    tui.wait_for_raw(b"tui-exit=0");
}
