//! The engine for one-shot front-ends (`cipherline send`, `cipherline
//! files get|cancel`): connect once, do a few things, leave.
//!
//! Contract ([`Engine::one_shot`]):
//! - One connection: a failure of the first stops the engine (as always),
//!   and so does losing it later; nothing is retried.
//! - No key packages are published (a client that receives does that:
//!   `listen`, chat), and stored messages are not asked for (no Resume);
//!   messages and end-to-end deliveries that arrive anyway (live ones) are
//!   left on the relay: not handed over, not recorded, not acknowledged,
//!   so the next `listen` (or chat) shows them. [`Command::Receive`] ends that: from
//!   then on the engine asks for stored messages and hands everything over
//!   as ever (`send --wait-reply`).
//! - [`Command::Prepare`] readies a conversation for sending the way
//!   `send` always did: an end-to-end room is brought up to the relay's
//!   epoch and members who left are removed from its group; an open room
//!   is joined, and [`Command::Finish`] leaves it again if this user was
//!   not in it before (so a script does not collect room traffic).
//! - [`Command::SendAcked`] sends like [`Command::SendDirect`] and
//!   [`Command::SendRoom`] (paced, end to end where those are) and answers
//!   with the server's whole acknowledgement ([`SendAck`]): how many
//!   recipients it was stored for, reached live, or not kept.

use super::pace::paced;
use super::*;

/// How long catching up on an end-to-end room waits for the next
/// delivery before it counts as caught up, and at most in all.
const CATCH_UP_QUIET: Duration = Duration::from_millis(300);
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// The server's acknowledgement of a text, as [`Command::SendAcked`]
/// answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAck {
    /// The server's message id.
    pub id: u64,
    /// Whether it went end to end.
    pub e2e: bool,
    /// Recipients it was stored for (each one's client confirms it:
    /// [`Event::Delivered`]).
    pub queued: u32,
    /// Recipients it reached live only (they cannot confirm it).
    pub live: u32,
    /// Recipients whose queue was full: it was not kept for them.
    pub full: u32,
}

/// What a one-shot engine keeps.
#[derive(Debug, Default)]
pub(super) struct Once {
    /// One-shot mode is on.
    on: bool,
    /// [`Command::Receive`] was given: messages are handed over.
    receiving: bool,
    /// Open rooms joined by [`Command::Prepare`] that this user was not in.
    leave: Vec<String>,
    /// How long a version-1 offer waits for an answer or acknowledgement
    /// (`send --file --answer-timeout`); unset, [`super::ANSWER_WAIT`].
    answer_wait: Option<Duration>,
}

impl Once {
    /// The wait set by [`Engine::answer_wait`], if any.
    pub(super) fn answer_wait(&self) -> Option<Duration> {
        self.answer_wait
    }

    /// Whether the engine runs one-shot.
    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// Whether stored messages are asked for (and key packages published)
    /// on connecting.
    pub(super) fn resumes(&self) -> bool {
        !self.on || self.receiving
    }

    /// Whether `msg` is left on the relay untouched.
    pub(super) fn holds(&self, msg: &ServerMessage) -> bool {
        self.on
            && !self.receiving
            && matches!(
                msg,
                ServerMessage::Message(_)
                    | ServerMessage::Group(GroupEvent::Message(_))
                    | ServerMessage::Expired { .. }
            )
    }
}

impl<C: Connector> Engine<C> {
    /// Runs one-shot (see engine/once.rs): one connection, no
    /// reconnecting, and messages left on the relay until
    /// [`Command::Receive`].
    #[must_use]
    pub fn one_shot(mut self) -> Self {
        self.once.on = true;
        self
    }

    /// Sets how long a version-1 offer this engine sends waits for an
    /// accept, and then for each acknowledgement, before it fails as
    /// timed out (default [`super::ANSWER_WAIT`]).
    #[must_use]
    pub fn answer_wait(mut self, wait: Duration) -> Self {
        self.once.answer_wait = Some(wait);
        self
    }

    /// Runs one of the one-shot commands.
    pub(super) async fn once_command(&mut self, live: &mut Live, command: Command) -> Result<Reply, ClientError> {
        match command {
            Command::Prepare(Target::Room(room)) => self.prepare_room(live, &room).await,
            Command::Prepare(Target::User(_)) => Ok(Reply::Prepared(Vec::new())),
            Command::SendAcked { to, text } => {
                let (ack, e2e) = super::commands::send(live, to.clone(), &text).await?;
                self.seen.insert(ack.id);
                if let Some(store) = live.peers.store() {
                    // The history is a convenience: the message was sent.
                    let sent = Msg::sent(&self.server, &self.name, ack.id, ack.timestamp_ms, &to, &text);
                    let _ = store.record(&sent.with_e2e(e2e));
                }
                Ok(Reply::Acked(SendAck { id: ack.id, e2e, queued: ack.queued, live: ack.live, full: ack.full }))
            }
            Command::Receive => {
                self.once.receiving = true;
                live.client.resume(0).await?;
                Ok(Reply::Done)
            }
            Command::Finish => {
                for room in std::mem::take(&mut self.once.leave) {
                    let client = &mut live.client;
                    paced(&mut live.pace, async || client.leave(&room).await).await?;
                    self.rooms.remove(&fold_name(&room));
                }
                Ok(Reply::Done)
            }
            _ => Err(ClientError::Engine("not a one-shot command".to_owned())),
        }
    }

    /// Readies `room` for sending: an end-to-end room caught up and
    /// reconciled (the names removed from its group are answered), an open
    /// one joined.
    async fn prepare_room(&mut self, live: &mut Live, room: &str) -> Result<Reply, ClientError> {
        let client = &mut live.client;
        let info = paced(&mut live.pace, async || client.room_info(room).await).await?;
        if let Some(e2e) = &live.e2e
            && info.kind.is_some_and(RoomKind::is_e2e)
        {
            let Some(mine) = e2e.room_epoch(room)? else {
                return Err(ClientError::EndToEnd(format!(
                    "you are not a member of the end-to-end room {}: a member adds you with `cipherline room invite \
                     ROOM YOUR_NAME`; if one did, run `cipherline listen` once to receive the invitation",
                    crate::display::escape(room)
                )));
            };
            if info.epoch > mine {
                let cursor = e2e.store().cursor(&self.server)?;
                e2e.catch_up(&mut live.client, cursor, CATCH_UP_QUIET, CATCH_UP_LIMIT).await?;
            }
            let removed = e2e.reconcile(&mut live.client, room).await?;
            return Ok(Reply::Prepared(removed));
        }
        // A name a key owns stays a member of a room it joins until it
        // leaves (PROTOCOL.md §13.10): Who fails for a room it is not in.
        let client = &mut live.client;
        let outside =
            client.info().queue.is_some() && paced(&mut live.pace, async || client.who(room).await).await.is_err();
        paced(&mut live.pace, async || client.join(room).await).await?;
        self.rooms.insert(fold_name(room), room.to_owned());
        if outside {
            self.once.leave.push(room.to_owned());
        }
        Ok(Reply::Prepared(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipherline_proto::app::Delivery;

    fn message() -> ServerMessage {
        ServerMessage::Message(Delivery {
            id: 1,
            timestamp_ms: 0,
            from: "a".into(),
            to: Target::User("b".into()),
            text: "t".into(),
            signed: None,
            seq: 1,
        })
    }

    #[test]
    fn a_one_shot_engine_leaves_messages_on_the_relay_until_asked() {
        let mut once = Once::default();
        assert!(!once.holds(&message()), "an ordinary engine hands everything over");
        assert!(once.resumes());
        once.on = true;
        assert!(once.holds(&message()), "one-shot: a message is left unacknowledged");
        assert!(!once.resumes(), "one-shot: stored messages are not asked for");
        // Receipts still come (send --wait-delivered waits for them).
        assert!(!once.holds(&ServerMessage::Delivered { id: 1, by: "b".into() }));
        once.receiving = true;
        assert!(!once.holds(&message()), "after Receive everything is handed over");
        assert!(once.resumes());
    }
}
