//! `cipherline tui`: the full-screen client (ratatui on crossterm), on the
//! client engine like `daemon`.
//!
//! - [`app`]: the state, changed by pure functions of engine events,
//!   replies, keys and mouse events;
//! - [`view`]: draws it (snapshot-tested on ratatui's `TestBackend`);
//! - [`input`]: the input line (editing, history, Tab completion);
//! - this module: the terminal (raw mode, alternate screen, mouse, all
//!   undone on every way out) and the loop that glues terminal events,
//!   engine events and engine commands together.
//!
//! The first connection is made before the terminal is switched to full
//! screen, so a first-contact question about the server's key, a password
//! or an identity key passphrase is asked on the ordinary terminal, as
//! `chat` asks it. Later connections (reconnects) never ask: the key is
//! then known, the password and the passphrase were read once.

use std::io::Write as _;
use std::sync::Once;
use std::time::Duration;

use cipherline_client::engine::{Command, ConnectionState, Engine, EngineHandle, Event, HANDLES_DROPPED, Reply};
use clap::Args;
use crossterm::event::{DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use futures_util::StreamExt as _;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use crate::client_args::ClientArgs;
use crate::connector::Flags;
use crate::console::Signals;
use crate::error::CliError;

pub mod app;
pub mod files;
pub mod input;
pub mod people;
pub mod view;

#[cfg(test)]
mod tests;

use app::{Action, App};

/// A full-screen client: conversations with unread counts, the one shown
/// with its scrollback, its members and their key states, an input line
/// with history and Tab completion. F1 shows the keys and commands.
#[derive(Debug, Args)]
pub struct TuiArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The room to join and show first. Without it the lobby is joined
    /// and the most recent conversation shown.
    #[arg(long, value_name = "ROOM")]
    pub room: Option<String>,

    /// Where accepted files are saved.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub download_dir: std::path::PathBuf,
}

/// Engine replies waiting for the loop at most.
const REPLIES: usize = 64;
/// How often the screen is drawn again with nothing happening (so a
/// reconnection's state is never stale for long).
const TICK: Duration = Duration::from_secs(1);

/// Runs `tui`.
pub async fn run(args: &'static TuiArgs) -> Result<(), CliError> {
    tokio::task::LocalSet::new().run_until(run_here(args)).await
}

async fn run_here(args: &'static TuiArgs) -> Result<(), CliError> {
    let server = args.client.home().to_string();
    let (engine, handle, mut events) = Engine::new(Flags::new(&args.client), server.clone(), &[]);
    let engine = tokio::task::spawn_local(engine.run());
    let room = args.room.as_deref().unwrap_or("lobby");
    let mut app = App::new(&server, room, args.room.is_some(), jiff::tz::TimeZone::system());
    app.download_dir.clone_from(&args.download_dir);
    let (replies_tx, mut replies) = mpsc::channel::<(Command, Result<Reply, String>)>(REPLIES);
    // The first connection, on the ordinary terminal (it may ask).
    eprintln!("connecting to {server}…");
    loop {
        let Some(event) = events.recv().await else { break };
        let first =
            matches!(&event, Event::Connection(ConnectionState::Connected { .. } | ConnectionState::Stopped { .. }));
        let actions = app.on_event(event);
        carry_out(&actions, &handle, &replies_tx);
        if first {
            break;
        }
    }
    if let ConnectionState::Stopped { reason } = &app.connection {
        let _ = tokio::time::timeout(Duration::from_secs(5), engine).await;
        return Err(CliError::failed(
            format!("could not connect: {reason}"),
            "check the server address, name and key (`cipherline chat` with the same flags asks about a new key)",
        ));
    }
    let mut signals = Signals::new(true);
    let result = {
        let mut screen = Screen::enter()?;
        session(&mut app, &mut screen, &handle, &mut events, &replies_tx, &mut replies, &mut signals).await
    };
    drop(handle);
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(5), engine).await;
    match (&app.connection, result) {
        (_, Err(e)) => Err(e),
        (ConnectionState::Stopped { reason }, Ok(())) if reason != HANDLES_DROPPED => {
            Err(CliError::failed(format!("disconnected: {reason}"), "check the server address, name and key"))
        }
        _ => Ok(()),
    }
}

/// Runs the actions: each command on a task of its own, its reply sent
/// back to the loop (so a slow command never freezes the screen).
fn carry_out(
    actions: &[Action],
    handle: &EngineHandle,
    replies: &mpsc::Sender<(Command, Result<Reply, String>)>,
) -> bool {
    let mut quit = false;
    for action in actions {
        match action {
            Action::Quit => quit = true,
            Action::Run(command) => {
                let (handle, replies, command) = (handle.clone(), replies.clone(), command.clone());
                tokio::task::spawn_local(async move {
                    let result = handle.run(command.clone()).await.map_err(|e| e.to_string());
                    let _ = replies.send((command, result)).await;
                });
            }
        }
    }
    quit
}

/// The loop: until Ctrl-C, /quit, a signal, or the engine stopping.
async fn session(
    app: &mut App,
    screen: &mut Screen,
    handle: &EngineHandle,
    events: &mut mpsc::Receiver<Event>,
    replies_tx: &mpsc::Sender<(Command, Result<Reply, String>)>,
    replies: &mut mpsc::Receiver<(Command, Result<Reply, String>)>,
    signals: &mut Signals,
) -> Result<(), CliError> {
    let mut keys = crossterm::event::EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        screen.draw(app)?;
        let actions = tokio::select! {
            () = signals.recv() => return Ok(()),
            key = keys.next() => match key {
                Some(Ok(event)) => app.on_terminal(&event),
                Some(Err(e)) => return Err(terminal_error(&e)),
                None => return Ok(()),
            },
            event = events.recv() => match event {
                Some(event) => {
                    let stopped = matches!(event, Event::Connection(ConnectionState::Stopped { .. }));
                    let actions = app.on_event(event);
                    if stopped {
                        // Shown until a key is pressed: the reason matters.
                        screen.draw(app)?;
                        let _ = tokio::time::timeout(Duration::from_secs(30), keys.next()).await;
                        return Ok(());
                    }
                    actions
                }
                None => return Ok(()),
            },
            Some((command, result)) = replies.recv() => app.on_reply(&command, result),
            _ = tick.tick() => Vec::new(),
        };
        if carry_out(&actions, handle, replies_tx) {
            return Ok(());
        }
        // History and member lists the conversation shown needs.
        carry_out(&app.due(), handle, replies_tx);
    }
}

fn terminal_error(e: &std::io::Error) -> CliError {
    CliError::failed(format!("the terminal failed: {e}"), "run `cipherline tui` on a terminal")
}

/// The terminal in full-screen mode; back to normal when dropped, and on a
/// panic (a hook restores it before the panic message is printed).
struct Screen {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen, CliError> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(CliError::failed(
                "the standard output is not a terminal",
                "run `cipherline tui` on a terminal",
            ));
        }
        enable_raw_mode().map_err(|e| terminal_error(&e))?;
        let entered =
            crossterm::execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture, EnableBracketedPaste);
        let terminal = entered.and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        match terminal {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(terminal_error(&e))
            }
        }
    }

    fn draw(&mut self, app: &App) -> Result<(), CliError> {
        self.terminal.draw(|frame| view::render(app, frame)).map(drop).map_err(|e| terminal_error(&e))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Undoes full screen: mouse and paste modes off, the alternate screen
/// left, the cursor shown, raw mode off. Idempotent; every step is tried
/// even if one fails.
fn restore() {
    let mut out = std::io::stdout();
    let _ = crossterm::execute!(
        out,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
    let _ = out.flush();
}
