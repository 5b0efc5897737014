//! The client engine's [`Connector`] over the command line's client flags,
//! shared by the front-ends on the engine (`chat`, `tui`, `listen`,
//! `send`, `files`, `room`; [`one_shot`] for the one-command ones): the first
//! connection may ask on the terminal (a new server key, a password, an
//! identity key passphrase), later ones never do.
//!
//! The engine reports a failure as words; a front-end that exits with the
//! failure's own code (`chat`: a changed server key is 3, a refused name
//! 5) takes the last [`CliError`] from [`Flags::failure`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use cipherline_client::engine::{
    ConnectFailure, Connecting, ConnectionState, Connector, Engine, EngineHandle, Event, Session,
};
use tokio::sync::mpsc;

use crate::client_args::{ClientArgs, Connected};
use crate::error::CliError;
use crate::link::passing;

/// The last connection failure, kept for the front-end.
pub type Failure = Rc<RefCell<Option<CliError>>>;

/// Connects with the command line's flags.
pub struct Flags {
    args: &'static ClientArgs,
    failure: Failure,
}

impl Flags {
    /// A connector for `args`.
    pub fn new(args: &'static ClientArgs) -> Self {
        Flags { args, failure: Rc::default() }
    }

    /// Where the last failure to connect is kept (cleared by a success).
    pub fn failure(&self) -> Failure {
        Rc::clone(&self.failure)
    }
}

impl Connector for Flags {
    fn connect(&self, first: bool) -> Connecting<'_> {
        Box::pin(async move {
            if !first {
                // A reconnect follows a lost connection (or a failed
                // try): the next node is tried first (issue 18, step 10).
                self.args.fail_over();
            }
            match self.args.connect(first).await {
                Ok(Connected { client, peers, e2e, .. }) => {
                    self.failure.borrow_mut().take();
                    Ok(Session { client, peers, e2e })
                }
                Err(e) => {
                    let failure = ConnectFailure { passing: passing(&e), reason: e.to_string() };
                    *self.failure.borrow_mut() = Some(e);
                    Err(failure)
                }
            }
        })
    }

    fn transfer(&self) -> Connecting<'_> {
        // A transfer's failure is the transfer's: it must not stand for
        // why the message connection failed.
        Box::pin(async move {
            match self.args.connect(false).await {
                Ok(Connected { client, peers, e2e, .. }) => Ok(Session { client, peers, e2e }),
                Err(e) => Err(ConnectFailure { passing: passing(&e), reason: e.to_string() }),
            }
        })
    }
}

/// How long a one-shot engine may take to stop once its command is done.
const ENGINE_STOP: Duration = Duration::from_secs(5);

/// A one-shot client engine (engine/once.rs) connected as `client` says:
/// its handle, its events and its task; the connector's error (with its
/// exit code) if the connection failed. Must run inside a LocalSet.
pub async fn one_shot(client: &'static ClientArgs) -> Result<(EngineHandle, mpsc::Receiver<Event>, Running), CliError> {
    let flags = Flags::new(client);
    let failure = flags.failure();
    let (engine, handle, mut events) = Engine::new(flags, client.home().to_string(), &[]);
    let engine = tokio::task::spawn_local(engine.one_shot().run());
    loop {
        match events.recv().await {
            Some(Event::Connection(ConnectionState::Connected { .. })) => return Ok((handle, events, Running(engine))),
            Some(Event::Connection(ConnectionState::Stopped { reason })) => {
                let _ = tokio::time::timeout(ENGINE_STOP, engine).await;
                return Err(failure.borrow_mut().take().unwrap_or_else(|| {
                    CliError::failed(format!("could not connect: {reason}"), "check the server address, name and key")
                }));
            }
            Some(_) => {}
            None => return Err(CliError::failed("the client engine stopped", "try again")),
        }
    }
}

/// A one-shot engine's task, given a while to stop when done with.
pub struct Running(tokio::task::JoinHandle<String>);

impl Running {
    /// Waits (a while) for the engine to stop; its handle and events must
    /// be dropped first.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(ENGINE_STOP, self.0).await;
    }
}
