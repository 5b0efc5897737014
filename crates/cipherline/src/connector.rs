//! The client engine's [`Connector`] over the command line's client flags,
//! shared by the front-ends on the engine (`chat`, `tui`): the first
//! connection may ask on the terminal (a new server key, a password, an
//! identity key passphrase), later ones never do.
//!
//! The engine reports a failure as words; a front-end that exits with the
//! failure's own code (`chat`: a changed server key is 3, a refused name
//! 5) takes the last [`CliError`] from [`Flags::failure`].

use std::cell::RefCell;
use std::rc::Rc;

use cipherline_client::engine::{ConnectFailure, Connecting, Connector, Session};

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
