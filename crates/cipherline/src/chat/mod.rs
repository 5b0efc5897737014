//! `cipherline chat`: the simple line client, a front-end on the client
//! engine ([`cipherline_client::engine`]) like `tui` and `daemon`.
//!
//! - this module: the arguments, the first connection (its questions are
//!   asked on the ordinary terminal, before the line editor starts) and
//!   the loop that glues typed lines, engine events and engine commands;
//! - [`lines`]: the engine's events as lines (every peer string escaped);
//! - [`commands`]: one typed line, run as engine commands, and what their
//!   answers show.
//!
//! Typed lines are run strictly in order, one at a time (so the lines
//! after a `/join` go to the room joined), while events are still shown.
//! Lines typed while the engine reconnects wait for the connection; at a
//! quit while disconnected they are counted as not sent.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use cipherline_client::display::escape;
use cipherline_client::engine::{Command, ConnectionState, Engine, EngineHandle, Event, Reply};
use cipherline_proto::app::{Target, fold_name};
use clap::Args;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client_args::ClientArgs;
use crate::connector::{Failure, Flags};
use crate::console::{Input, Screen, Signals, TerminalGuard, spawn_input};
use crate::error::CliError;

mod commands;
mod lines;

/// Chat interactively: type to talk in the current room; /help lists the
/// commands.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The room to join first.
    #[arg(long, value_name = "ROOM", default_value = "lobby")]
    pub room: String,

    /// A word that, typed alone, quits like /quit (may be repeated), e.g.
    /// `--quit-word thanks --quit-word EXIT!` as in the seed programs.
    #[arg(long, value_name = "WORD")]
    pub quit_word: Vec<String>,

    /// Where accepted files are saved.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub download_dir: PathBuf,
}

/// Lines typed and not yet run, at most: beyond it input is read no
/// further until some were run (a paste of a whole file is not held in
/// memory at once).
const MAX_QUEUED: usize = 1000;
/// Events that arrived while the first room was being joined, at most
/// (shown after the first line; beyond this they are shown at once).
const MAX_EARLY: usize = 4096;
/// How long quitting waits for a line still being run (a text waiting
/// for its acknowledgement).
const GRACE: Duration = Duration::from_secs(5);
/// How long the editor waits for the lines of one Enter to be run before
/// it shows the prompt again (so it names the room a `/join` entered).
const PROMPT_WAIT: Duration = Duration::from_secs(5);
/// How long the engine gets to say goodbye to the server.
const ENGINE_STOP: Duration = Duration::from_secs(5);

/// A file offered to this user: what `/accept` and `/decline` answer.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    /// The engine's id for it.
    pub(crate) id: u64,
    /// The sender (raw).
    pub(crate) from: String,
    /// The file's name (raw).
    pub(crate) name: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Offered end to end (else the version-1 way).
    pub(crate) e2e: bool,
}

/// A transfer this chat started, for the lines about it.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    /// The file's name (raw).
    pub(crate) name: String,
    /// The other end: the sender, or `bob` / `#room` for an upload (raw).
    pub(crate) peer: String,
    /// This chat sends it.
    pub(crate) outgoing: bool,
    /// It travels end to end (else the version-1 way).
    pub(crate) e2e: bool,
    /// When this chat started it (for the time a file took).
    pub(crate) since: Instant,
}

/// Offers remembered for `/accept` at most (the oldest go).
const MAX_OFFERS: usize = 64;
/// Transfers remembered at most.
const MAX_TRANSFERS: usize = 256;

/// What chat shows and remembers, shared by the loop (events) and the
/// line being run (its answers); borrowed briefly, never across a wait.
pub(crate) struct State {
    /// Where lines go.
    pub(crate) screen: Screen,
    /// The server's address, as given.
    pub(crate) server: String,
    /// This user's name, as the server welcomed it.
    pub(crate) me: String,
    /// The current room, as last spelled.
    pub(crate) room: Option<String>,
    /// Rooms joined the open way: folded name to spelling.
    pub(crate) rooms: BTreeMap<String, String>,
    /// End-to-end rooms this user is in (known this session): folded name
    /// to spelling.
    pub(crate) e2e_rooms: BTreeMap<String, String>,
    /// Folded names of users already told whether their direct messages
    /// are end to end.
    pub(crate) told: BTreeSet<String>,
    /// Files offered to this user, newest last.
    pub(crate) offers: Vec<Offer>,
    /// Transfers started here, by the engine's id.
    pub(crate) transfers: HashMap<String, Transfer>,
    /// Where accepted files are saved.
    pub(crate) download_dir: PathBuf,
    /// Direct messages (and files) go end to end.
    pub(crate) direct_e2e: bool,
    /// Version-1 downloads the lost connection ended (said once, with the
    /// loss).
    pub(crate) lost_downloads: usize,
    /// Connected now (lines are run only then).
    pub(crate) connected: bool,
    /// The loss of the connection was reported (the next failure is a
    /// reconnection attempt's).
    pub(crate) lost: bool,
}

/// The state, shared.
pub(crate) type Shared = Rc<RefCell<State>>;

impl State {
    /// Shows one line.
    pub(crate) fn show(&mut self, line: impl Into<String>) {
        self.screen.show(line);
    }

    /// Whether `room` is an end-to-end room this user is in.
    pub(crate) fn is_e2e_room(&self, room: &str) -> bool {
        self.e2e_rooms.contains_key(&fold_name(room))
    }

    /// Makes `room` the current room (open: `e2e` false).
    pub(crate) fn enter(&mut self, room: &str, e2e: bool) {
        let folded = fold_name(room);
        if e2e {
            self.e2e_rooms.insert(folded, room.to_owned());
        } else {
            self.rooms.insert(folded, room.to_owned());
        }
        self.room = Some(room.to_owned());
    }

    /// `room` is left (or this user was removed from it): the current
    /// room becomes another one this user is in, if any.
    pub(crate) fn left(&mut self, room: &str) {
        let folded = fold_name(room);
        self.rooms.remove(&folded);
        self.e2e_rooms.remove(&folded);
        if self.room.as_deref().map(fold_name) == Some(folded) {
            self.room = self.rooms.values().chain(self.e2e_rooms.values()).next().cloned();
        }
    }

    /// Remembers an offer for `/accept`.
    pub(crate) fn offered(&mut self, offer: Offer) {
        if self.offers.len() >= MAX_OFFERS {
            self.offers.remove(0);
        }
        self.offers.retain(|o| o.id != offer.id);
        self.offers.push(offer);
    }

    /// Remembers a transfer started here.
    pub(crate) fn started(&mut self, id: String, transfer: Transfer) {
        if self.transfers.len() >= MAX_TRANSFERS && !self.transfers.contains_key(&id) {
            // Finished ones are never asked about again: any may go.
            if let Some(old) = self.transfers.keys().next().cloned() {
                self.transfers.remove(&old);
            }
        }
        self.transfers.insert(id, transfer);
    }
}

/// How a typed line ended.
pub(crate) enum Ran {
    /// Done (shown).
    Done,
    /// Not run: the engine is reconnecting. It waits for the connection.
    Again(String),
}

/// The line being run.
type Job = Pin<Box<dyn Future<Output = Ran>>>;

/// Runs `chat` (on a LocalSet: the engine's transfers are local tasks).
pub async fn run(args: &'static ChatArgs) -> Result<(), CliError> {
    tokio::task::LocalSet::new().run_until(run_here(args)).await
}

async fn run_here(args: &'static ChatArgs) -> Result<(), CliError> {
    let flags = Flags::new(&args.client);
    let failure = flags.failure();
    let server = args.client.home().to_string();
    let (engine, handle, mut events) = Engine::new(flags, server.clone(), &[]);
    // Downloads accepted in an earlier run continue, as chat always did.
    let engine = tokio::task::spawn_local(engine.resume_downloads(true).run());
    let stop = async |engine: tokio::task::JoinHandle<String>| {
        let _ = tokio::time::timeout(ENGINE_STOP, engine).await;
    };
    // The first connection, on the ordinary terminal (it may ask).
    let mut early = VecDeque::new();
    let name = loop {
        match events.recv().await {
            Some(Event::Connection(ConnectionState::Connected { name })) => break name,
            Some(Event::Connection(ConnectionState::Stopped { reason }))
            | Some(Event::Connection(ConnectionState::Reconnecting { reason, .. })) => {
                drop(handle);
                drop(events);
                stop(engine).await;
                return Err(failed(&failure, &reason));
            }
            None => {
                stop(engine).await;
                return Err(failed(&failure, "the engine stopped"));
            }
            Some(event) => early.push_back(event),
        }
    };
    // Saved before the editor first switches to raw mode (the questions of
    // the first connection were asked); dropped (so restored) on every way
    // out of this function, and by a panic.
    let terminal = TerminalGuard::save();
    let mut signals = Signals::new(terminal.is_some());
    let (mut input, screen) = spawn_input(prompt(Some(&args.room)));
    let state = Rc::new(RefCell::new(State {
        screen,
        server: server.clone(),
        me: name.clone(),
        room: None,
        rooms: BTreeMap::new(),
        e2e_rooms: BTreeMap::new(),
        told: BTreeSet::new(),
        offers: Vec::new(),
        transfers: HashMap::new(),
        download_dir: args.download_dir.clone(),
        direct_e2e: false,
        lost_downloads: 0,
        connected: true,
        lost: false,
    }));
    // The first room; what arrives meanwhile is shown after the first line
    // (up to MAX_EARLY events: past that, at once, so a flood never grows
    // memory).
    let mut stopped = None;
    let entered = {
        let first = first_room(&handle, &args.room);
        let mut first = std::pin::pin!(first);
        loop {
            tokio::select! {
                entered = &mut first => break entered,
                event = events.recv() => match event {
                    Some(event) => {
                        if let Some(event) = hold_early(&mut early, event) {
                            stopped = stopped.or(lines::on_event(&state, event));
                        }
                    }
                    None => break Err(failed(&failure, "the engine stopped")),
                },
            }
        }
    };
    let first = match entered {
        Ok(entered) => entered,
        Err(e) => {
            drop(handle);
            drop(events);
            stop(engine).await;
            return Err(e);
        }
    };
    {
        let mut st = state.borrow_mut();
        st.direct_e2e = first.direct_e2e;
        st.enter(&args.room, first.e2e);
        let server_key = match &first.session {
            Some(s) => match &s.server_fingerprint {
                Some(fp) => format!("server key {fp}"),
                None => "no server key: the shared password authenticated the server".to_owned(),
            },
            None => "server key unknown".to_owned(),
        };
        let suite = first.session.as_ref().map_or_else(String::new, |s| format!(" ({})", s.suite));
        st.show(format!(
            "connected to {server} as {}{suite}; {server_key}; in room {} ({}). /help for commands.",
            escape(&name),
            escape(&args.room),
            if first.e2e { "end-to-end encrypted" } else { "not end-to-end encrypted" }
        ));
        if first.session.as_ref().is_some_and(|s| !s.stored) {
            st.show(
                "* live delivery only: this server keeps nothing for you while you are away (it stores messages only \
                 for names an identity key owns)",
            );
        }
        // Downloads an earlier run left unfinished continue now.
        for t in first.unfinished {
            let from = t.from.clone().unwrap_or_default();
            st.show(format!(
                "* resuming {} from {} (interrupted when chat last ran; {} of {})",
                escape(&t.name),
                escape(&from),
                lines::human(t.done),
                lines::human(t.total)
            ));
            let known = Transfer { name: t.name, peer: from, outgoing: false, e2e: true, since: Instant::now() };
            st.started(t.transfer, known);
        }
        // Offers still waiting for an answer, unless announced just now.
        let announced: BTreeSet<u64> =
            early.iter().filter_map(|e| if let Event::FileOffered { id, .. } = e { Some(*id) } else { None }).collect();
        for t in first.unanswered {
            let (Some(id), Some(from)) = (t.offer, t.from) else { continue };
            if announced.contains(&id) {
                continue;
            }
            let place = match &t.to {
                Target::Room(room) => format!(" in #{}", escape(room)),
                Target::User(_) => String::new(),
            };
            st.show(format!(
                "* still waiting: {} offers {} ({}, end to end){place}: /accept {id} or /decline {id}",
                escape(&from),
                escape(&t.name),
                lines::human(t.total)
            ));
            st.offered(Offer { id, from, name: t.name, size: t.total, e2e: true });
        }
    }
    for event in early {
        stopped = stopped.or(lines::on_event(&state, event));
    }
    let result = match stopped {
        Some(reason) => Err(reason),
        None => session_loop(&state, &handle, &mut events, &mut input, &mut signals, &args.quit_word).await,
    };
    drop(handle);
    drop(events);
    stop(engine).await;
    drop(terminal);
    // A line printed now would otherwise follow the abandoned prompt.
    if input.editing() {
        println!();
    }
    match result {
        Ok(()) => Ok(()),
        Err(reason) => match failure.borrow_mut().take() {
            Some(e) => Err(e),
            // The server ended the session for good (it said why): chat
            // stops, as it did before the engine, without an error code.
            None => {
                drop(writeln!(std::io::stdout(), "! the server closed the connection: {}", escape(&reason)));
                Ok(())
            }
        },
    }
}

/// Holds an event that arrived while the first room was being joined,
/// to be shown after the first line; with [`MAX_EARLY`] held already,
/// hands it back to be shown at once, so a flood never grows memory.
fn hold_early(early: &mut VecDeque<Event>, event: Event) -> Option<Event> {
    if early.len() < MAX_EARLY {
        early.push_back(event);
        None
    } else {
        Some(event)
    }
}

/// The error for a connection that could not be made: the connector's,
/// with its exit code, else the engine's words.
fn failed(failure: &Failure, reason: &str) -> CliError {
    failure.borrow_mut().take().unwrap_or_else(|| {
        CliError::failed(format!("could not connect: {reason}"), "check the server address, name and key")
    })
}

/// What the first room and the session are.
struct First {
    /// The first room is end to end.
    e2e: bool,
    /// Direct messages go end to end.
    direct_e2e: bool,
    /// The session, for the first line.
    session: Option<cipherline_client::engine::SessionSummary>,
    /// Downloads an earlier run left unfinished (the engine resumes them).
    unfinished: Vec<cipherline_client::engine::TransferInfo>,
    /// End-to-end offers nobody answered yet (an earlier run's, or made
    /// while this user was away): listed again, with their ids.
    unanswered: Vec<cipherline_client::engine::TransferInfo>,
}

/// Joins the first room, and asks what the first line shows.
async fn first_room(handle: &EngineHandle, room: &str) -> Result<First, CliError> {
    handle.run(Command::Join(room.to_owned())).await.map_err(CliError::Client)?;
    // An end-to-end room delivers through its group: not joined the open way.
    let (e2e, direct_e2e) = match handle.run(Command::Status).await.map_err(CliError::Client)? {
        Reply::Status(status) => (!status.rooms.iter().any(|r| fold_name(r) == fold_name(room)), status.e2e),
        _ => (false, false),
    };
    let session = match handle.run(Command::Session).await {
        Ok(Reply::Session(s)) => Some(s),
        _ => None,
    };
    use cipherline_client::engine::TransferState as S;
    let (unanswered, unfinished) = match handle.run(Command::Files).await {
        Ok(Reply::Files(list)) => list
            .into_iter()
            .filter(|t| !t.outgoing && !matches!(t.state, S::Done | S::Cancelled | S::Failed { .. }))
            // Version-1 offers (`o…`) are this connection's, announced as
            // they came; an end-to-end one is a `d…` download.
            .filter(|t| t.state != S::Offered || (t.offer.is_some() && t.transfer.starts_with('d')))
            .partition(|t| t.state == S::Offered),
        _ => (Vec::new(), Vec::new()),
    };
    Ok(First { e2e, direct_e2e, session, unfinished, unanswered })
}

/// The prompt: the current room, so the user sees where a line goes.
pub(crate) fn prompt(room: Option<&str>) -> String {
    match room {
        Some(room) => format!("{}> ", escape(room)),
        None => "(no room)> ".to_owned(),
    }
}

/// The loop: lines in, events out, until the user quits, the engine stops
/// for good or a signal arrives. `Err` carries why the engine stopped.
async fn session_loop(
    state: &Shared,
    handle: &EngineHandle,
    events: &mut mpsc::Receiver<Event>,
    input: &mut Input,
    signals: &mut Signals,
    quit_words: &[String],
) -> Result<(), String> {
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut job: Option<Job> = None;
    let mut quit = false;
    let mut quit_by: Option<Instant> = None;
    let mut prompt_by: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_secs(3600);
    loop {
        if state.borrow().screen.gone() {
            return Ok(());
        }
        let connected = state.borrow().connected;
        if quit && !connected {
            // Nothing typed can be sent now: quitting is at once.
            let unsent = queue.len();
            if unsent > 0 {
                state.borrow_mut().show(format!("! {unsent} line(s) typed while disconnected were not sent"));
            }
            return Ok(());
        }
        if job.is_none()
            && connected
            && let Some(line) = queue.pop_front()
        {
            job = Some(Box::pin(commands::run_line(line, handle.clone(), Rc::clone(state))));
        }
        if quit && job.is_none() && queue.is_empty() {
            return Ok(());
        }
        if quit && queue.is_empty() && quit_by.is_none() {
            quit_by = Some(Instant::now() + GRACE);
        }
        // Never after a quit: the editor must not be left in raw mode.
        if !quit && prompt_by.is_some_and(|at| (job.is_none() && queue.is_empty()) || Instant::now() >= at) {
            prompt_by = None;
            let prompt = prompt(state.borrow().room.as_deref());
            input.resume(prompt);
        }
        let reading = !quit && queue.len() < MAX_QUEUED;
        tokio::select! {
            biased;
            () = signals.recv() => return Ok(()),
            event = events.recv() => match event {
                Some(event) => {
                    if let Some(reason) = lines::on_event(state, event) {
                        return Err(reason);
                    }
                }
                None => return Err("the engine stopped".to_owned()),
            },
            ran = next_ran(&mut job), if job.is_some() => {
                job = None;
                if let Ran::Again(line) = ran {
                    queue.push_front(line);
                }
            }
            batch = input.recv(), if reading => {
                match batch {
                    None => quit = true,
                    Some(batch) => {
                        for line in batch {
                            // As a command, /quit would wait its turn: while
                            // disconnected that could be forever.
                            let word = line.trim();
                            if quit_words.iter().any(|w| w == word) || matches!(word, "/quit" | "/exit") {
                                quit = true;
                                break;
                            }
                            queue.push_back(line);
                        }
                    }
                }
                prompt_by = Some(Instant::now() + PROMPT_WAIT);
            }
            () = tokio::time::sleep_until(prompt_by.unwrap_or_else(far)), if prompt_by.is_some() => {}
            () = tokio::time::sleep_until(quit_by.unwrap_or_else(far)), if quit_by.is_some() => return Ok(()),
        }
    }
}

/// The end of the line being run (never, without one).
async fn next_ran(job: &mut Option<Job>) -> Ran {
    match job {
        Some(job) => job.as_mut().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_while_the_first_room_is_joined_holds_at_most_max_early_events() {
        let mut early = VecDeque::new();
        let joined = |n: usize| Event::Membership { room: "lobby".into(), name: format!("m{n}"), joined: true };
        let mut shown_at_once = Vec::new();
        for n in 0..MAX_EARLY + 1000 {
            if let Some(Event::Membership { name, .. }) = hold_early(&mut early, joined(n)) {
                shown_at_once.push(name);
            }
        }
        assert_eq!(early.len(), MAX_EARLY, "the bound holds");
        // The first ones are held (in order, shown after the first line),
        // the rest shown at once rather than dropped.
        assert_eq!(early.front(), Some(&joined(0)));
        assert_eq!(early.back(), Some(&joined(MAX_EARLY - 1)));
        assert_eq!(shown_at_once.len(), 1000);
        assert_eq!(shown_at_once.first().map(String::as_str), Some(format!("m{MAX_EARLY}").as_str()));
    }
}
