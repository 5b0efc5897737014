//! `cipherline daemon`: the client engine behind JSON-RPC 2.0, one JSON
//! object per line, for bots and scripts: on standard input and output
//! (`--stdio`), or on a Unix socket several local programs connect to
//! (`--socket PATH`, [`socket`]). The schema, with an example per method
//! and notification, is docs/daemon.md; a test in [`rpc`] checks that
//! page against the implementation, so the two cannot drift. This module
//! is the standard-input transport and what both transports share.
//!
//! Requests are handled concurrently (each answered when the engine is
//! done with it; match answers by `id`); notifications are written as the
//! engine hands its events over, and a message is acknowledged to the
//! relay only after its notification was written to standard output
//! ([`out`]; the socket: to a client, see [`socket`]).

use std::time::Duration;

use std::io::BufRead;

use cipherline_client::engine::{
    ConnectFailure, Connecting, ConnectionState, Connector, Engine, EngineHandle, Event, Session,
};
use clap::Args;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use crate::client_args::{ClientArgs, Connected};
use crate::error::CliError;
use crate::link::passing;

mod files;
mod line;
mod out;
mod people;
pub mod rpc;
mod socket;

use line::{Line, Splitter, TooLong};
use out::Out;
use rpc::{Call, INVALID_REQUEST, RpcError, notification, parse, response_value, run_call};

/// Run the client engine for a program: JSON-RPC 2.0 on standard input and
/// output, or on a Unix socket, one object per line (docs/daemon.md lists
/// the methods and notifications). It stays connected, reconnecting with
/// backoff when the connection is lost, until standard input ends (with
/// --stdio) or SIGINT/SIGTERM (with --socket).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("transport").required(true).args(["stdio", "socket"])))]
pub struct DaemonArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// Speak JSON-RPC on standard input and output.
    #[arg(long)]
    pub stdio: bool,

    /// Speak JSON-RPC on a Unix socket created at PATH (mode 0600; up to
    /// 16 clients at once, each getting every notification).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,

    /// An open room to join at start (may be repeated).
    #[arg(long, value_name = "ROOM")]
    pub room: Vec<String>,

    /// Resume, at start, the downloads interrupted earlier (into the
    /// directories they started in).
    #[arg(long)]
    pub resume_downloads: bool,
}

/// The longest request line read; a longer one is skipped (never held
/// whole in memory) and answered with [`INVALID_REQUEST`].
const MAX_LINE: usize = 1 << 20;
/// Lines read ahead of the requests being handled at most.
const IN_FLIGHT_LINES: usize = 4;
/// Requests being handled at once at most (then input waits).
const IN_FLIGHT: u32 = 32;

/// Connects with the command line's flags; never asks on the terminal
/// (standard input is the protocol's): the server's key must be known or
/// pinned already.
struct Flags(&'static ClientArgs);

impl Connector for Flags {
    fn connect(&self, first: bool) -> Connecting<'_> {
        Box::pin(async move {
            if !first {
                // After a lost connection the next node is tried first.
                self.0.fail_over();
            }
            match self.0.connect(false).await {
                Ok(Connected { client, peers, e2e, .. }) => Ok(Session { client, peers, e2e }),
                Err(e) => Err(ConnectFailure { passing: passing(&e), reason: e.to_string() }),
            }
        })
    }

    fn transfer(&self) -> Connecting<'_> {
        // The same flags: a second session of this user for one file, on
        // the node that answers now (no failover step).
        Box::pin(async move {
            match self.0.connect(false).await {
                Ok(Connected { client, peers, e2e, .. }) => Ok(Session { client, peers, e2e }),
                Err(e) => Err(ConnectFailure { passing: passing(&e), reason: e.to_string() }),
            }
        })
    }
}

/// Reads the next line (see [`line`]); `None` at the end of input.
fn read_line(input: &mut impl BufRead, splitter: &mut Splitter) -> std::io::Result<Option<Line>> {
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(splitter.end());
        }
        let (used, line) = splitter.take(available);
        input.consume(used);
        if line.is_some() {
            return Ok(line);
        }
    }
}

/// Reads standard input on a thread of its own (not the runtime's
/// blocking pool, which would keep the process alive at exit while a read
/// waits): each line, until the end of input.
fn spawn_input() -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(IN_FLIGHT_LINES);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut splitter = Splitter::new(MAX_LINE);
        while let Ok(Some(line)) = read_line(&mut input, &mut splitter) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What a line read asks for: its id (`None` for a notification, not
/// answered) and the call or the error to answer with; `None` for a blank
/// line.
fn request(line: Line) -> Option<(Option<Value>, Result<Call, RpcError>)> {
    match line {
        Err(TooLong) => Some((
            Some(Value::Null),
            Err(RpcError::new(INVALID_REQUEST, format!("invalid request: line longer than {MAX_LINE} bytes"))),
        )),
        Ok(line) if line.iter().all(u8::is_ascii_whitespace) => None,
        Ok(line) => Some(parse(&line)),
    }
}

/// Runs a request on the engine: the response, if it has an id (not yet
/// a line: `--stdio` counts its bytes before building it, see [`out`]).
async fn answer(handle: &EngineHandle, id: Option<Value>, call: Result<Call, RpcError>) -> Option<Value> {
    let result = match call {
        Ok(call) => run_call(handle, call).await,
        Err(e) => Err(e),
    };
    id.map(|id| response_value(id, result))
}

/// The daemon stopped for `reason`: fine if its front-end was done.
fn outcome(reason: Option<String>) -> Result<(), CliError> {
    match reason {
        Some(reason) if reason != cipherline_client::engine::HANDLES_DROPPED => {
            Err(CliError::failed(format!("the daemon stopped: {reason}"), "check the server address, name and key"))
        }
        _ => Ok(()),
    }
}

/// Runs `daemon`.
pub async fn run(args: &'static DaemonArgs) -> Result<(), CliError> {
    let local = tokio::task::LocalSet::new();
    match &args.socket {
        Some(path) => local.run_until(socket::run(args, path)).await,
        None => local.run_until(run_here(args)).await,
    }
}

async fn run_here(args: &'static DaemonArgs) -> Result<(), CliError> {
    let server = args.client.home().to_string();
    let (mut engine, handle, mut events) = Engine::new(Flags(&args.client), server, &args.room);
    // A message is acknowledged only once its line was written (out.rs).
    let handover = engine.handover();
    let engine = engine.resume_downloads(args.resume_downloads);
    let engine = tokio::task::spawn_local(engine.run());
    // Everything written goes through one task, a line at a time.
    let (out, writer) = Out::new(tokio::io::stdout(), move || handover.handed());
    let notify = out.clone();
    let forward = tokio::spawn(async move {
        let mut stopped = None;
        while let Some(event) = events.recv().await {
            // An upload's facts are `send --file --json`'s: a bot has its
            // transfer notifications (and `files.list`).
            // A receiver's answer is the sender's front-end's to show: a bot
            // has the transfer's notifications.
            if matches!(event, Event::Upload(_) | Event::Receiver { .. }) {
                continue;
            }
            if let Event::Connection(ConnectionState::Stopped { reason }) = &event {
                stopped = Some(reason.clone());
            }
            // An expiry notice is confirmed like a message (the engine waits).
            let message = matches!(event, Event::Message(_) | Event::Expired { .. });
            if notify.send(notification(&event), message).await.is_err() {
                break;
            }
        }
        stopped
    });
    let slots = std::sync::Arc::new(Semaphore::new(usize::try_from(IN_FLIGHT).unwrap_or(1)));
    let mut input = spawn_input();
    loop {
        let read = tokio::select! {
            read = input.recv() => read,
            // The engine stopped for good (a final refusal): so does the daemon.
            () = wait_finished(&engine) => break,
        };
        let Some(line) = read else { break };
        let Some((id, call)) = request(line) else { continue };
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (handle, out) = (handle.clone(), out.clone());
        tokio::task::spawn_local(async move {
            // A request without an id is a notification: no answer.
            if let Some(response) = answer(&handle, id, call).await {
                let _ = out.send_response(response).await;
            }
            drop(permit);
        });
    }
    // Let the requests under way be answered, then stop the engine.
    let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(IN_FLIGHT)).await;
    drop(handle);
    let _ = tokio::time::timeout(Duration::from_secs(5), engine).await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), forward).await.ok().and_then(Result::ok).flatten();
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    outcome(stopped)
}

/// Waits until the engine's task has ended (polled, not consumed).
async fn wait_finished(engine: &tokio::task::JoinHandle<String>) {
    while !engine.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn standard_input_is_read_in_lines_through_the_splitter() {
        let data = [vec![b'x'; 100], b"\nok\r\nlast".to_vec()].concat();
        let mut input = std::io::BufReader::with_capacity(16, &data[..]);
        let mut splitter = Splitter::new(10);
        assert_eq!(read_line(&mut input, &mut splitter).unwrap(), Some(Err(TooLong)));
        assert_eq!(read_line(&mut input, &mut splitter).unwrap(), Some(Ok(b"ok\r".to_vec())));
        assert_eq!(read_line(&mut input, &mut splitter).unwrap(), Some(Ok(b"last".to_vec())));
        assert_eq!(read_line(&mut input, &mut splitter).unwrap(), None);
    }
}
