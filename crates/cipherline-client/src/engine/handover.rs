//! Message events confirmed by the front-end before they are acknowledged.
//!
//! By default a message is "handed over" once its [`Event`] is in the
//! event channel. A front-end that may hold events before passing them
//! on (the daemon's socket while no client is connected, or a client
//! that has not read them yet) asks for a [`Handover`] and confirms each
//! message event once it really passed it on; until then the engine waits
//! and neither records nor acknowledges the message, so a crash meanwhile
//! leaves it with the relay, which delivers it again.

use tokio::sync::watch;

use super::{Connector, Engine};

/// Confirms message events to the engine, in the order they came out of
/// the event channel (see [`Engine::handover`]).
pub struct Handover {
    handed: watch::Sender<u64>,
}

impl Handover {
    /// The oldest message event not yet confirmed was passed on.
    pub fn handed(&self) {
        self.handed.send_modify(|n| *n = n.saturating_add(1));
    }
}

impl<C: Connector> Engine<C> {
    /// From now on, a message is acknowledged to the relay (and recorded
    /// as received) only once the front-end called [`Handover::handed`]
    /// for its [`super::Event::Message`]; the engine waits for that.
    /// Dropping the `Handover` stops the engine (as dropping the event
    /// stream does).
    pub fn handover(&mut self) -> Handover {
        let (handed, rx) = watch::channel(0);
        self.handover = Some((rx, 0));
        Handover { handed }
    }

    /// After a message event was emitted: waits for the front-end's
    /// confirmation if it asked to give one; false if it went away.
    pub(super) async fn handed_over(&mut self) -> bool {
        let Some((rx, emitted)) = &mut self.handover else { return true };
        *emitted += 1;
        let want = *emitted;
        rx.wait_for(|handed| *handed >= want).await.is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::engine::{ConnectFailure, Connecting};

    struct Never;

    impl Connector for Never {
        fn connect(&self, _: bool) -> Connecting<'_> {
            Box::pin(async { Err(ConnectFailure { reason: "no".to_owned(), passing: false }) })
        }
    }

    #[tokio::test]
    async fn a_message_waits_for_its_confirmation() {
        let (mut engine, _handle, _events) = Engine::new(Never, "s".into(), &[]);
        // Without a handover, nothing to wait for.
        let (mut plain, _h, _e) = Engine::new(Never, "s".into(), &[]);
        assert!(plain.handed_over().await);
        let handover = engine.handover();
        let wait = tokio::time::timeout(std::time::Duration::from_millis(50), engine.handed_over()).await;
        assert!(wait.is_err(), "went on before the front-end confirmed");
        // That wait counted the first message; the confirmation ends it
        // and the next one waits again.
        handover.handed();
        let (rx, emitted) = engine.handover.as_ref().unwrap();
        assert_eq!((*rx.borrow(), *emitted), (1, 1));
        handover.handed();
        assert!(engine.handed_over().await);
        drop(handover);
        assert!(!engine.handed_over().await, "a front-end gone stops the wait");
    }
}
