//! The console `chat` talks through: typed lines in, messages out.
//!
//! On a terminal, lines are edited with rustyline (history, cursor keys) in
//! raw mode, and incoming messages are printed above the line being typed.
//! Raw mode must never outlive `chat`: a shell (or the next trust prompt)
//! left in raw mode ignores Enter, yes/no and Ctrl-C. So the terminal's
//! settings are saved first and restored by [`TerminalGuard`] on every way
//! out (return, error, panic; signals end the chat loop, which then
//! returns), and the editor thread only reads a line when the chat loop has
//! handled the previous one, so a `/quit` finds it outside raw mode.
//!
//! Without a terminal (a pipe), lines are read from stdin and everything is
//! printed to stdout, so scripts can drive `chat`.

use std::io::Write as _;
use std::sync::{Mutex, PoisonError};

use nix::sys::termios::{self, SetArg, Termios};
use tokio::sync::mpsc;

/// The terminal settings from before `chat` started (`None`: not a terminal).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Turns bracketed paste off again (rustyline turns it on while editing).
const BRACKETED_PASTE_OFF: &[u8] = b"\x1b[?2004l";

/// Restores the terminal settings saved by [`TerminalGuard::save`] when
/// dropped.
pub struct TerminalGuard(());

impl TerminalGuard {
    /// Saves stdin's terminal settings and makes a panic restore them too;
    /// `None` if stdin is not a terminal.
    pub fn save() -> Option<Self> {
        let settings = termios::tcgetattr(std::io::stdin()).ok()?;
        *SAVED.lock().unwrap_or_else(PoisonError::into_inner) = Some(settings);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Some(TerminalGuard(()))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the saved settings back (idempotent; nothing if none were saved).
fn restore() {
    let saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if let Some(settings) = saved {
        // TCSANOW: waiting for output to drain could hang on a stuck terminal.
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &settings);
        let mut out = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&out) {
            let _ = out.write_all(BRACKETED_PASTE_OFF);
            let _ = out.flush();
        }
    }
}

/// Where output goes: the line editor's printer, or plain stdout; and
/// whether that output is gone (a closed pipe: nothing more can be shown).
pub struct Screen(Option<Box<dyn rustyline::ExternalPrinter + Send>>, bool);

impl Screen {
    /// Prints one line (above the line being edited, on a terminal).
    pub fn show(&mut self, line: impl Into<String>) {
        let line = line.into();
        if let Some(p) = self.0.as_mut()
            && p.print(format!("{line}\n")).is_ok()
        {
            return;
        }
        let mut out = std::io::stdout().lock();
        // `println!` would panic on a closed pipe (`chat | head`): remember
        // instead, and the session ends quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            self.1 = true;
        }
    }

    /// Whether the output is gone (writing failed): time to end.
    pub fn gone(&self) -> bool {
        self.1
    }
}

/// The lines the user enters, in order.
pub struct Input {
    /// One entry per Enter: its lines (a pasted block of N lines is N
    /// lines); `None` at end of input (Ctrl-D, Ctrl-C, stdin closed).
    lines: mpsc::Receiver<Option<Vec<String>>>,
    /// Terminal only: lets the editor read its next line, with this prompt.
    /// Dropping it stops the editor without reading again.
    next: Option<std::sync::mpsc::Sender<String>>,
    /// Whether the editor is reading a line (in raw mode, cursor after the
    /// prompt).
    editing: bool,
}

impl Input {
    /// The lines of the next Enter; `None` at end of input. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Vec<String>> {
        let batch = self.lines.recv().await.flatten();
        self.editing = false;
        batch
    }

    /// Lets the editor read the next line, showing `prompt` (on a terminal).
    pub fn resume(&mut self, prompt: String) {
        if let Some(next) = &self.next
            && next.send(prompt).is_ok()
        {
            self.editing = true;
        }
    }

    /// Whether the editor was left reading a line, its cursor after the
    /// prompt (so output after the chat should start on a new line).
    pub fn editing(&self) -> bool {
        self.editing
    }
}

/// The signals that end `chat` on a terminal (SIGTERM, SIGHUP, SIGINT),
/// handled so that the terminal is restored before the process exits.
pub struct Signals(Option<[tokio::signal::unix::Signal; 3]>);

impl Signals {
    /// Handles the signals if `on_terminal` (a pipe keeps the defaults).
    pub fn new(on_terminal: bool) -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = || -> std::io::Result<_> {
            Ok([signal(SignalKind::terminate())?, signal(SignalKind::hangup())?, signal(SignalKind::interrupt())?])
        };
        Signals(if on_terminal { handlers().ok() } else { None })
    }

    /// Waits for one of the signals (forever if none are handled).
    pub async fn recv(&mut self) {
        match &mut self.0 {
            Some([term, hup, int]) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Starts reading lines on a thread (rustyline blocks): with the editor
/// and `prompt` on a terminal, from stdin otherwise.
pub fn spawn_input(prompt: String) -> (Input, Screen) {
    let (tx, lines) = mpsc::channel(64);
    if std::io::IsTerminal::is_terminal(&std::io::stdin())
        && let Ok(mut editor) = rustyline::DefaultEditor::new()
        && let Ok(printer) = editor.create_external_printer()
    {
        let (next, resumed) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut prompt = prompt;
            loop {
                match editor.readline(&prompt) {
                    Ok(text) => {
                        let _ = editor.add_history_entry(text.as_str());
                        // Bracketed paste puts a whole block in one edit.
                        let batch = text.split('\n').map(|l| l.trim_end_matches('\r').to_owned()).collect();
                        if tx.blocking_send(Some(batch)).is_err() {
                            break;
                        }
                        // Out of raw mode until the chat loop says go on.
                        match resumed.recv() {
                            Ok(p) => prompt = p,
                            Err(_) => break,
                        }
                    }
                    Err(_) => {
                        let _ = tx.blocking_send(None);
                        break;
                    }
                }
            }
        });
        return (Input { lines, next: Some(next), editing: true }, Screen(Some(Box::new(printer)), false));
    }
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut stdin.lock(), &mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(None);
                    break;
                }
                Ok(_) => {
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.blocking_send(Some(vec![line])).is_err() {
                        break;
                    }
                }
            }
        }
    });
    (Input { lines, next: None, editing: false }, Screen(None, false))
}
