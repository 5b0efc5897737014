//! The engine's version-1 files (PROTOCOL.md §13.6, §13.7): offered live
//! over the message connection, signed by the sender's identity key if it
//! has one, readable by the relay. What [`Command::SendFile`] does in a
//! conversation that is not end to end (an open room such as the lobby;
//! any conversation when this user has no end-to-end engine), and the
//! offers such senders make ([`Event::FileOffered`] with `e2e: false`).
//!
//! Contract:
//! - Ids: a version-1 offer's id is `n × 2^40` ([`OFFER_ID_STEP`], its
//!   low 40 bits zero). A server message id is `run × 2^40 + n` with `n`
//!   counting from 1 (PROTOCOL.md "Message ids"), so an offer's id is
//!   never a message's, and [`is_offer_id`] tells them apart. Its
//!   transfer is `o` and the same `n`; a file sent this way is `o` and a
//!   number from the same count.
//! - Offers live in memory only, at most [`MAX_OFFERS`] (a peer may send
//!   thousands: the oldest is declined and forgotten); they, and every
//!   version-1 transfer, end with the connection (`Failed`, "the
//!   connection was lost"; offers silently).
//! - One file is sent at a time ([`Command::SendFile`] answers a clear
//!   error meanwhile); at most [`MAX_RECEIVING`] are received at once.
//! - Sending: chunks go out from the engine's loop, one per turn, within
//!   the flow-control window; nobody accepting within [`ANSWER_WAIT`]
//!   ends it (`Failed`, timed out: "nobody accepted in time", and a FileCancel), as
//!   does no acknowledgement for [`ANSWER_WAIT`] while data is owed.
//! - Receiving: a sender that sends nothing (no data, no end) for
//!   [`ANSWER_WAIT`] after the accept or its last chunk ends it
//!   (`Failed`, the partial file deleted, a FileCancel): the relay sets
//!   no such bound, and a silent sender would otherwise hold one of the
//!   [`MAX_RECEIVING`] places for as long as it stays connected.
//! - Receiving: data goes to a hidden partial file in the directory given,
//!   which becomes the file (a sanitised, unused name: see
//!   [`crate::transfer::safe_file_name`]) only once size, SHA-256 and the
//!   sender's signature check out; anything else deletes it. A signature
//!   by another key than the one remembered for the sender is reported as
//!   [`Event::KeyChanged`] (with the offer's id) before the file's end.
//! - Progress is reported as for end-to-end transfers (at most once per
//!   [`PROGRESS_EVERY`], dropped when the event channel is full; the end
//!   never is).

use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::path::Path;

use cipherline_proto::app::MAX_CHUNK;

use super::transfers::dir_to_save;
use super::*;
use crate::files::Ticker;
use crate::transfer::{Incoming, Outgoing, open_regular, safe_file_name};

/// A version-1 offer's id is a multiple of this (see the module doc).
pub const OFFER_ID_STEP: u64 = 1 << 40;
/// Offers kept for [`Command::GetFile`] at most; the oldest go.
pub const MAX_OFFERS: usize = 64;
/// Version-1 files received at once at most.
pub const MAX_RECEIVING: usize = 16;
/// How long a version-1 offer waits for an accept, a sender for the
/// next acknowledgement, and a receiver for the sender's next data.
pub const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// The count behind offer ids wraps here (ids stay below 2^64); offers
/// are forgotten long before it comes round.
const COUNT_WRAP: u64 = 1 << 24;

/// Whether `id` names a version-1 offer (never a server message id).
#[must_use]
pub fn is_offer_id(id: u64) -> bool {
    id != 0 && id.is_multiple_of(OFFER_ID_STEP)
}

/// An offer waiting for an answer.
#[derive(Debug, Clone)]
struct Offer {
    id: u64,
    key: String,
    from: String,
    transfer: u64,
    to: Target,
    name: String,
    size: u64,
}

/// The file being sent.
struct Sending {
    key: String,
    out: Outgoing,
    file: std::fs::File,
    name: String,
    to: Target,
    /// FileEnd was sent: only receipts are awaited.
    ended: bool,
    /// How long an accept, or the next acknowledgement, is awaited
    /// ([`Engine::answer_wait`], else [`ANSWER_WAIT`]).
    wait: Duration,
    /// Until when an accept is awaited.
    answers_until: Instant,
    /// Until when the next acknowledgement is awaited (once accepted).
    acks_until: Instant,
    ticker: Ticker,
}

/// A file being received.
struct Receiving {
    key: String,
    offer_id: u64,
    incoming: Incoming,
    /// The name as offered (raw, for events).
    name: String,
    to: Target,
    ticker: Ticker,
    /// Until when the sender's next data (or end) is awaited.
    data_until: Instant,
}

/// What the engine keeps of version-1 files.
#[derive(Default)]
pub(super) struct Offers {
    /// The last `n` given out (ids and `o` transfer names).
    count: u64,
    pending: VecDeque<Offer>,
    sending: Option<Sending>,
    /// By (sender, transfer id): the server names a transfer so.
    receiving: BTreeMap<(String, u64), Receiving>,
}

impl Offers {
    /// The next `n`, from 1, wrapping before ids would overflow.
    fn next(&mut self) -> u64 {
        self.count = self.count % (COUNT_WRAP - 1) + 1;
        self.count
    }

    /// Keeps `offer` (replacing one for the same transfer); the offer
    /// forgotten to make room, if any.
    fn keep(&mut self, offer: Offer) -> Option<Offer> {
        self.pending.retain(|o| !(o.from == offer.from && o.transfer == offer.transfer));
        self.pending.push_back(offer);
        if self.pending.len() > MAX_OFFERS { self.pending.pop_front() } else { None }
    }

    fn take_offer(&mut self, found: impl Fn(&Offer) -> bool) -> Option<Offer> {
        let i = self.pending.iter().position(found)?;
        self.pending.remove(i)
    }

    /// When the loop should next call [`Engine::offer_turn`]: now if a
    /// chunk (or FileEnd) may go, else the next deadline.
    pub(super) fn wake(&self) -> Option<Instant> {
        let receiving = self.receiving.values().map(|r| r.data_until).min();
        let sending = self.sending.as_ref().map(|s| {
            if s.out.receivers() == 0 {
                s.answers_until
            } else if !s.ended && s.chunk_ready() {
                Instant::now()
            } else {
                s.acks_until
            }
        });
        match (sending, receiving) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The files being received whose sender has been silent past its
    /// deadline at `now`.
    fn stalled(&self, now: Instant) -> Vec<(String, u64)> {
        self.receiving.iter().filter(|(_, r)| r.data_until <= now).map(|(k, _)| k.clone()).collect()
    }

    /// The version-1 transfers and offers, for [`Command::Files`].
    pub(super) fn list(&self) -> Vec<TransferInfo> {
        let mut out = Vec::new();
        if let Some(s) = &self.sending {
            out.push(TransferInfo {
                transfer: s.key.clone(),
                outgoing: true,
                to: s.to.clone(),
                from: None,
                name: s.name.clone(),
                done: s.out.acked(),
                total: s.out.size,
                state: TransferState::Running,
                offer: None,
                resumed: 0,
            });
        }
        for ((from, _), r) in &self.receiving {
            out.push(TransferInfo {
                transfer: r.key.clone(),
                outgoing: false,
                to: r.to.clone(),
                from: Some(from.clone()),
                name: r.name.clone(),
                done: r.incoming.received(),
                total: r.incoming.size,
                state: TransferState::Running,
                offer: None,
                resumed: 0,
            });
        }
        for o in &self.pending {
            out.push(TransferInfo {
                transfer: o.key.clone(),
                outgoing: false,
                to: o.to.clone(),
                from: Some(o.from.clone()),
                name: o.name.clone(),
                done: 0,
                total: o.size,
                state: TransferState::Offered,
                offer: Some(o.id),
                resumed: 0,
            });
        }
        out
    }

    /// Whether `transfer` names a version-1 transfer or offer.
    pub(super) fn owns(&self, transfer: &str) -> bool {
        self.sending.as_ref().is_some_and(|s| s.key == transfer)
            || self.receiving.values().any(|r| r.key == transfer)
            || self.pending.iter().any(|o| o.key == transfer)
    }
}

impl Sending {
    /// The next chunk's length (0: FileEnd is due).
    fn next_len(&self) -> usize {
        let left = self.out.size.saturating_sub(self.out.sent());
        usize::try_from(left.min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK)
    }

    fn chunk_ready(&self) -> bool {
        let len = self.next_len();
        len == 0 || self.out.window_open(len)
    }
}

/// A transfer event.
fn event(transfer: &str, name: &str, (done, total): (u64, u64), state: TransferState) -> Event {
    Event::Transfer { transfer: transfer.to_owned(), name: name.to_owned(), done, total, state, path: None }
}

/// A receiver's answer to the offer of `name` (transfer `transfer`).
fn receiver(transfer: &str, name: &str, by: &str, answer: ReceiverAnswer) -> Event {
    Event::Receiver { transfer: transfer.to_owned(), name: name.to_owned(), by: by.to_owned(), answer }
}

impl<C: Connector> Engine<C> {
    /// Whether [`Command::SendFile`] to `to` goes the version-1 way: an
    /// open room this user joined, or anything without an end-to-end
    /// engine.
    pub(super) fn sends_v1(&self, live: &Live, to: &Target) -> bool {
        match (&live.e2e, to) {
            (None, _) => true,
            (Some(e2e), Target::Room(room)) => {
                self.rooms.contains_key(&fold_name(room)) && !matches!(e2e.room_group(room), Ok(Some(_)))
            }
            (Some(_), Target::User(_)) => false,
        }
    }

    /// Offers `path` to `to`; the chunks follow from the loop.
    pub(super) async fn send_offer(&mut self, live: &mut Live, to: Target, path: &Path) -> Result<Reply, ClientError> {
        if let Some(s) = &self.offers.sending {
            return Err(ClientError::Engine(format!(
                "{} ({}) is still being sent; one file at a time goes the version-1 way: wait, or cancel it",
                crate::display::escape(&s.name),
                s.key
            )));
        }
        let (file, size) = open_regular(path)?;
        let name =
            path.file_name().and_then(|n| n.to_str()).and_then(safe_file_name).ok_or_else(|| ClientError::FileIo {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no usable file name"),
            })?;
        let recipients = match &to {
            Target::User(user) => vec![user.clone()],
            // The likely recipients (the server does not say who it
            // offered the file to), so that "everyone declined" is known.
            Target::Room(room) => {
                let me = fold_name(&self.name);
                live.client.who(room).await?.into_iter().filter(|n| fold_name(n) != me).collect()
            }
        };
        if recipients.is_empty() {
            return Err(ClientError::Engine("nobody else is in that room".to_owned()));
        }
        let transfer = live.client.writer().next_id();
        live.client
            .send_message(&ClientMessage::FileOffer { transfer, to: to.clone(), name: name.clone(), size })
            .await?;
        let key = format!("o{}", self.offers.next());
        let now = Instant::now();
        let wait = self.once.answer_wait().unwrap_or(ANSWER_WAIT);
        self.offers.sending = Some(Sending {
            key: key.clone(),
            out: Outgoing::new(transfer, size, recipients),
            file,
            name: name.clone(),
            to,
            ended: false,
            wait,
            answers_until: now + wait,
            acks_until: now + wait,
            ticker: Ticker::new(PROGRESS_EVERY),
        });
        let _ = self.events.try_send(event(&key, &name, (0, size), TransferState::Running));
        Ok(Reply::Transfer { transfer: key })
    }

    /// The file being sent, when [`Offers::wake`] said: a chunk, FileEnd,
    /// or the end of a wait.
    pub(super) async fn offer_turn(&mut self, live: &mut Live) -> Step {
        let now = Instant::now();
        for key in self.offers.stalled(now) {
            let why = format!("the sender sent nothing for {} s; the partial file was deleted", ANSWER_WAIT.as_secs());
            let step = self.fail_receiving(live, &key, FailReason::TimedOut, &why).await;
            if !matches!(step, Step::Go) {
                return step;
            }
        }
        let Some(s) = self.offers.sending.as_mut() else { return Step::Go };
        if s.out.receivers() == 0 {
            if now >= s.answers_until {
                return self.stop_sending(live, FailReason::TimedOut, "nobody accepted in time", true).await;
            }
            return Step::Go;
        }
        if !s.ended && s.chunk_ready() {
            let len = s.next_len();
            let transfer = s.out.transfer;
            if len == 0 {
                s.ended = true;
                s.acks_until = now + s.wait;
                let (to, name, size, sha256) = (s.to.clone(), s.name.clone(), s.out.size, s.out.digest());
                return match live.client.file_end(transfer, &to, &name, size, sha256).await {
                    Ok(()) => Step::Go,
                    Err(e) => Step::from_error(&e),
                };
            }
            let mut chunk = vec![0u8; len];
            if let Err(e) = s.file.read_exact(&mut chunk) {
                return self.stop_sending(live, FailReason::Other, &format!("reading the file: {e}"), true).await;
            }
            s.out.record_chunk(&chunk);
            return match live.client.send_message(&ClientMessage::FileChunk { transfer, data: chunk }).await {
                Ok(()) => Step::Go,
                Err(e) => Step::from_error(&e),
            };
        }
        if now >= s.acks_until {
            return self
                .stop_sending(live, FailReason::TimedOut, "the receivers stopped confirming the data", true)
                .await;
        }
        Step::Go
    }

    /// Ends the file being sent as failed (`reason`, `why`), telling the
    /// server if `cancel` (so it frees the transfer and tells the receivers).
    async fn stop_sending(&mut self, live: &mut Live, reason: FailReason, why: &str, cancel: bool) -> Step {
        let Some(s) = self.offers.sending.take() else { return Step::Go };
        if cancel {
            let msg = ClientMessage::FileCancel { transfer: s.out.transfer, sender: String::new(), reason: why.into() };
            if let Err(e) = live.client.send_message(&msg).await {
                let _ = self.emit(event(&s.key, &s.name, (s.out.acked(), s.out.size), failed(reason, why))).await;
                return Step::from_error(&e);
            }
        }
        self.end_step(event(&s.key, &s.name, (s.out.acked(), s.out.size), failed(reason, why))).await
    }

    async fn end_step(&mut self, event: Event) -> Step {
        if self.emit(event).await { Step::Go } else { Step::Stop("the front-end went away".to_owned()) }
    }

    /// A version-1 file message from the server.
    pub(super) async fn offer_message(&mut self, live: &mut Live, msg: ServerMessage) -> Step {
        match msg {
            ServerMessage::FileAnswered { transfer, by, accept } => self.answered(live, transfer, &by, accept).await,
            ServerMessage::FileAcked { transfer, by, received } => self.acked(transfer, &by, received).await,
            ServerMessage::FileCancelled { transfer, sender, by, reason }
                if fold_name(&sender) == fold_name(&self.name) =>
            {
                self.cancelled_mine(live, transfer, &by, &reason).await
            }
            ServerMessage::FileCancelled { transfer, sender, by, reason } => {
                self.cancelled_theirs(transfer, &sender, &by, &reason).await
            }
            ServerMessage::FileOffered { transfer, from, to, name, size } => {
                self.offered_v1(live, transfer, from, to, name, size).await
            }
            ServerMessage::FileData { transfer, from, data } => self.data(live, transfer, from, &data).await,
            ServerMessage::FileDone { transfer, from, sha256, signed } => {
                self.done(live, transfer, from, &sha256, signed.as_ref()).await
            }
            _ => Step::Go,
        }
    }

    /// The server refused something about transfer `client_id`; whether
    /// it was the file being sent (then it failed).
    pub(super) async fn offer_refused(&mut self, live: &mut Live, client_id: u64, text: &str) -> Option<Step> {
        let s = self.offers.sending.as_ref()?;
        if s.out.transfer != client_id {
            return None;
        }
        Some(self.stop_sending(live, FailReason::Refused, &format!("the server refused it: {text}"), false).await)
    }

    async fn answered(&mut self, live: &mut Live, transfer: u64, by: &str, accept: bool) -> Step {
        let Some(s) = self.offers.sending.as_mut().filter(|s| s.out.transfer == transfer) else { return Step::Go };
        s.out.on_answer(by, accept);
        let answer = if accept { ReceiverAnswer::Accepted } else { ReceiverAnswer::Declined };
        let _ = self.events.try_send(receiver(&s.key, &s.name, by, answer));
        if accept {
            s.acks_until = Instant::now() + s.wait;
        }
        if !s.out.awaiting_answers() && s.out.receivers() == 0 {
            let by = s.out.declined().to_vec();
            let why = format!("declined by {}", by.join(", "));
            // A direct offer is over on the server already; a room's
            // may not be (a member the Who did not list): end it.
            let cancel = matches!(s.to, Target::Room(_));
            return self.stop_sending(live, FailReason::Declined { by }, &why, cancel).await;
        }
        Step::Go
    }

    async fn acked(&mut self, transfer: u64, by: &str, received: u64) -> Step {
        let Some(s) = self.offers.sending.as_mut().filter(|s| s.out.transfer == transfer) else { return Step::Go };
        s.out.on_ack(by, received);
        s.acks_until = Instant::now() + s.wait;
        let (acked, size) = (s.out.acked(), s.out.size);
        // Only after FileEnd: a receipt before it (which an honest relay
        // never passes on) would end the send with FileEnd never sent.
        if s.ended && s.out.delivered() {
            let Some(s) = self.offers.sending.take() else { return Step::Go };
            return self.end_step(event(&s.key, &s.name, (size, size), TransferState::Done)).await;
        }
        if acked < size && s.ticker.due(acked, size) {
            let _ = self.events.try_send(event(&s.key, &s.name, (acked, size), TransferState::Running));
        }
        Step::Go
    }

    /// FileCancelled about the file this user sends.
    async fn cancelled_mine(&mut self, live: &mut Live, transfer: u64, by: &str, reason: &str) -> Step {
        let Some(s) = self.offers.sending.as_mut().filter(|s| s.out.transfer == transfer) else { return Step::Go };
        if fold_name(by) == fold_name(&self.name) {
            // The server ended the whole transfer: nothing left to cancel.
            return self
                .stop_sending(live, FailReason::Cancelled, &format!("the server stopped it: {reason}"), false)
                .await;
        }
        s.out.on_cancel(by);
        let _ = self.events.try_send(receiver(&s.key, &s.name, by, ReceiverAnswer::Stopped(reason.to_owned())));
        if s.out.receivers() == 0 && (!s.out.awaiting_answers() || s.out.sent() > 0) {
            return self
                .stop_sending(live, FailReason::Cancelled, &format!("{by} stopped receiving it: {reason}"), true)
                .await;
        }
        Step::Go
    }

    /// FileCancelled about a file offered to this user.
    async fn cancelled_theirs(&mut self, transfer: u64, sender: &str, by: &str, reason: &str) -> Step {
        if let Some(o) = self.offers.take_offer(|o| o.from == sender && o.transfer == transfer) {
            let why = format!("the offer was withdrawn: {reason}");
            return self.end_step(event(&o.key, &o.name, (0, o.size), failed(FailReason::Cancelled, &why))).await;
        }
        let Some(mut r) = self.offers.receiving.remove(&(sender.to_owned(), transfer)) else { return Step::Go };
        r.incoming.discard();
        let why = format!("{by} stopped it: {reason}");
        self.end_step(event(
            &r.key,
            &r.name,
            (r.incoming.received(), r.incoming.size),
            failed(FailReason::Cancelled, &why),
        ))
        .await
    }

    async fn offered_v1(
        &mut self,
        live: &mut Live,
        transfer: u64,
        from: String,
        to: Target,
        name: String,
        size: u64,
    ) -> Step {
        if self.offers.receiving.contains_key(&(from.clone(), transfer)) {
            // An honest relay never re-offers a transfer being received:
            // ignored rather than mix two files.
            return Step::Go;
        }
        let n = self.offers.next();
        let id = n * OFFER_ID_STEP;
        let offer =
            Offer { id, key: format!("o{n}"), from: from.clone(), transfer, to: to.clone(), name: name.clone(), size };
        // The oldest offer forgotten is declined, so its sender is not left
        // waiting for an answer that cannot come.
        if let Some(old) = self.offers.keep(offer) {
            let msg = ClientMessage::FileAnswer { transfer: old.transfer, sender: old.from, accept: false };
            if let Err(e) = live.client.send_message(&msg).await {
                return Step::from_error(&e);
            }
        }
        // Not signed itself (the signature comes with the data's end): the
        // verdict on the sender's key is given then.
        let verified = Verified::Unsigned;
        self.end_step(Event::FileOffered { id, from, to, name, size, e2e: false, verified }).await
    }

    async fn data(&mut self, live: &mut Live, transfer: u64, from: String, data: &[u8]) -> Step {
        let key = (from, transfer);
        let Some(r) = self.offers.receiving.get_mut(&key) else { return Step::Go };
        r.data_until = Instant::now() + ANSWER_WAIT;
        match r.incoming.write(data) {
            Ok(ack) => {
                let (done, total) = (r.incoming.received(), r.incoming.size);
                if done < total && r.ticker.due(done, total) {
                    let _ = self.events.try_send(event(&r.key, &r.name, (done, total), TransferState::Running));
                }
                let Some(received) = ack else { return Step::Go };
                let msg = ClientMessage::FileAck { transfer, sender: key.0, received };
                match live.client.send_message(&msg).await {
                    Ok(()) => Step::Go,
                    Err(e) => Step::from_error(&e),
                }
            }
            Err(e) => self.fail_receiving(live, &key, kind_of(&e), &e.to_string()).await,
        }
    }

    /// Ends a receive as failed: the partial file deleted, the sender told.
    async fn fail_receiving(&mut self, live: &mut Live, key: &(String, u64), reason: FailReason, why: &str) -> Step {
        let Some(mut r) = self.offers.receiving.remove(key) else { return Step::Go };
        r.incoming.discard();
        let msg = ClientMessage::FileCancel { transfer: key.1, sender: key.0.clone(), reason: why.to_owned() };
        let sent = live.client.send_message(&msg).await;
        let ended = event(&r.key, &r.name, (r.incoming.received(), r.incoming.size), failed(reason, why));
        let step = self.end_step(ended).await;
        match sent {
            Ok(()) => step,
            Err(e) => Step::from_error(&e),
        }
    }

    async fn done(
        &mut self,
        live: &mut Live,
        transfer: u64,
        from: String,
        sha256: &[u8; 32],
        signed: Option<&cipherline_proto::app::FileSigned>,
    ) -> Step {
        let key = (from, transfer);
        let Some(r) = self.offers.receiving.get(&key) else { return Step::Go };
        let status = live.peers.check_file(&r.incoming.facts(sha256), signed);
        if status == MessageStatus::Invalid {
            let why = "the file's signature is invalid: the relay may have altered it; it was deleted";
            return self.fail_receiving(live, &key, FailReason::Corrupt, why).await;
        }
        let Some(r) = self.offers.receiving.remove(&key) else { return Step::Go };
        let (name, size, tag, offer_id) = (r.name, r.incoming.size, r.key, r.offer_id);
        let path = match r.incoming.finish(sha256) {
            Ok(path) => path,
            Err(e) => {
                let msg = ClientMessage::FileCancel { transfer, sender: key.0, reason: e.to_string() };
                let sent = live.client.send_message(&msg).await;
                let step = self.end_step(event(&tag, &name, (0, size), failed(kind_of(&e), &e.to_string()))).await;
                return match sent {
                    Ok(()) => step,
                    Err(e) => Step::from_error(&e),
                };
            }
        };
        self.people.saw(&key.0, &status);
        self.received.note(&tag, &key.0, &path, size, sha256, &status);
        if matches!(status, MessageStatus::KeyChanged { .. })
            && !self.emit(Event::KeyChanged { id: offer_id, name: key.0.clone() }).await
        {
            return Step::Stop("the front-end went away".to_owned());
        }
        // The receipt: received whole and checked.
        let sent = live.client.send_message(&ClientMessage::FileAck { transfer, sender: key.0, received: size }).await;
        let end = Event::Transfer {
            transfer: tag,
            name,
            done: size,
            total: size,
            state: TransferState::Done,
            path: Some(path),
        };
        let step = self.end_step(end).await;
        match sent {
            Ok(()) => step,
            Err(e) => Step::from_error(&e),
        }
    }

    /// [`Command::GetFile`] of a version-1 offer: accepted, received into
    /// `dir` as the data comes.
    pub(super) async fn get_offer(&mut self, live: &mut Live, id: u64, dir: &Path) -> Result<Reply, ClientError> {
        if !self.offers.pending.iter().any(|o| o.id == id) {
            return Err(ClientError::NoTransfer(format!("offer {id} (version-1 offers end with the connection)")));
        }
        if self.offers.receiving.len() >= MAX_RECEIVING {
            return Err(ClientError::Engine(format!(
                "{MAX_RECEIVING} files are being received already; accept this one when one of them is done"
            )));
        }
        let dir = dir_to_save(dir)?;
        let Some(o) = self.offers.take_offer(|o| o.id == id) else {
            return Err(ClientError::NoTransfer(id.to_string()));
        };
        let incoming = match Incoming::create(&dir, &o.from, &o.to, o.transfer, &o.name, o.size) {
            Ok(incoming) => incoming,
            Err(e) => {
                let why = format!("the receiver cannot store it: {e}");
                let msg = ClientMessage::FileCancel { transfer: o.transfer, sender: o.from, reason: why };
                live.client.send_message(&msg).await?;
                return Err(ClientError::Engine(format!("cannot receive the file: {e}")));
            }
        };
        live.client
            .send_message(&ClientMessage::FileAnswer { transfer: o.transfer, sender: o.from.clone(), accept: true })
            .await?;
        let _ = self.events.try_send(event(&o.key, &o.name, (0, o.size), TransferState::Running));
        let receiving = Receiving {
            key: o.key.clone(),
            offer_id: o.id,
            incoming,
            name: o.name,
            to: o.to,
            ticker: Ticker::new(PROGRESS_EVERY),
            data_until: Instant::now() + ANSWER_WAIT,
        };
        self.offers.receiving.insert((o.from, o.transfer), receiving);
        Ok(Reply::Transfer { transfer: o.key })
    }

    /// [`Command::DeclineFile`] of a version-1 offer: its sender is told.
    pub(super) async fn decline_offer(&mut self, live: &mut Live, id: u64) -> Result<Reply, ClientError> {
        let o = self
            .offers
            .take_offer(|o| o.id == id)
            .ok_or_else(|| ClientError::NoTransfer(format!("offer {id} (version-1 offers end with the connection)")))?;
        live.client
            .send_message(&ClientMessage::FileAnswer { transfer: o.transfer, sender: o.from, accept: false })
            .await?;
        self.emit(event(&o.key, &o.name, (0, o.size), TransferState::Cancelled)).await;
        Ok(Reply::Done)
    }

    /// [`Command::RefuseFile`] of a version-1 offer: its sender is told
    /// why (a FileCancel: a FileAnswer carries no reason).
    pub(super) async fn refuse_offer(
        &mut self,
        live: &mut Live,
        id: u64,
        reason: String,
    ) -> Result<Reply, ClientError> {
        let o = self
            .offers
            .take_offer(|o| o.id == id)
            .ok_or_else(|| ClientError::NoTransfer(format!("offer {id} (version-1 offers end with the connection)")))?;
        live.client.send_message(&ClientMessage::FileCancel { transfer: o.transfer, sender: o.from, reason }).await?;
        self.emit(event(&o.key, &o.name, (0, o.size), TransferState::Cancelled)).await;
        Ok(Reply::Done)
    }

    /// [`Command::CancelFile`] of a version-1 transfer or offer (`o…`).
    pub(super) async fn cancel_offer(&mut self, live: &mut Live, transfer: &str) -> Result<Reply, ClientError> {
        if let Some(o) = self.offers.pending.iter().find(|o| o.key == transfer) {
            let id = o.id;
            return self.decline_offer(live, id).await;
        }
        let reason = "cancelled by the user".to_owned();
        let ended = if self.offers.sending.as_ref().is_some_and(|s| s.key == transfer) {
            let s = self.offers.sending.take().ok_or_else(|| ClientError::NoTransfer(transfer.to_owned()))?;
            let msg = ClientMessage::FileCancel { transfer: s.out.transfer, sender: String::new(), reason };
            live.client.send_message(&msg).await?;
            event(&s.key, &s.name, (s.out.acked(), s.out.size), TransferState::Cancelled)
        } else {
            let key = self
                .offers
                .receiving
                .iter()
                .find(|(_, r)| r.key == transfer)
                .map(|(k, _)| k.clone())
                .ok_or_else(|| ClientError::NoTransfer(transfer.to_owned()))?;
            let Some(mut r) = self.offers.receiving.remove(&key) else {
                return Err(ClientError::NoTransfer(transfer.to_owned()));
            };
            r.incoming.discard();
            let msg = ClientMessage::FileCancel { transfer: key.1, sender: key.0, reason };
            live.client.send_message(&msg).await?;
            event(&r.key, &r.name, (r.incoming.received(), r.incoming.size), TransferState::Cancelled)
        };
        self.emit(ended).await;
        Ok(Reply::Done)
    }

    /// The connection is gone: every version-1 transfer ends, partial
    /// files deleted, and the offers are forgotten.
    pub(super) async fn offers_lost(&mut self) {
        let why = "the connection was lost (version-1 files do not survive it): send or offer it again";
        let mut ended = Vec::new();
        if let Some(s) = self.offers.sending.take() {
            ended.push(event(&s.key, &s.name, (s.out.acked(), s.out.size), failed(FailReason::ConnectionLost, why)));
        }
        for (_, mut r) in std::mem::take(&mut self.offers.receiving) {
            r.incoming.discard();
            let (done, size) = (r.incoming.received(), r.incoming.size);
            ended.push(event(&r.key, &r.name, (done, size), failed(FailReason::ConnectionLost, why)));
        }
        self.offers.pending.clear();
        for e in ended {
            self.emit(e).await;
        }
    }
}

fn failed(reason: FailReason, why: &str) -> TransferState {
    TransferState::failed(reason, why)
}

/// The kind of a failure writing or checking a received file: what the
/// sender sent does not add up, or the local disk failed.
fn kind_of(e: &crate::transfer::TransferError) -> FailReason {
    match e {
        crate::transfer::TransferError::Mismatch(_) => FailReason::Corrupt,
        _ => FailReason::Other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn offer(n: u64, from: &str, transfer: u64) -> Offer {
        Offer {
            id: n * OFFER_ID_STEP,
            key: format!("o{n}"),
            from: from.to_owned(),
            transfer,
            to: Target::Room("lobby".into()),
            name: "f".into(),
            size: 1,
        }
    }

    #[test]
    fn offer_ids_are_never_server_message_ids() {
        let mut offers = Offers::default();
        let ids: Vec<u64> = (0..3).map(|_| offers.next() * OFFER_ID_STEP).collect();
        assert_eq!(ids, [1 << 40, 2 << 40, 3 << 40]);
        assert!(ids.iter().all(|&id| is_offer_id(id)));
        // A server id is run × 2^40 + n, n from 1: never a multiple of 2^40.
        for run in [0u64, 1, 5, (1 << 23) - 1, (1 << 24) - 1] {
            for n in [1u64, 2, 1000, OFFER_ID_STEP - 1] {
                assert!(!is_offer_id(run * OFFER_ID_STEP + n), "run {run} n {n}");
            }
        }
        assert!(!is_offer_id(0));
        // The count wraps before the id overflows, and never gives 0.
        offers.count = COUNT_WRAP - 2;
        assert_eq!(offers.next(), COUNT_WRAP - 1);
        assert_eq!(offers.next(), 1);
        assert!((COUNT_WRAP - 1).checked_mul(OFFER_ID_STEP).is_some());
    }

    /// A sender that goes silent mid-transfer: the receive has a deadline
    /// (the loop wakes for it, and then it is stalled), pushed back by
    /// each chunk; without one, 16 silent senders would take every place.
    #[test]
    fn a_silent_sender_is_given_up_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut offers = Offers::default();
        assert_eq!(offers.wake(), None, "nothing to wait for");
        let now = Instant::now();
        let lobby = Target::Room("lobby".into());
        for (t, until) in [(1u64, now + ANSWER_WAIT), (2, now + Duration::from_secs(5))] {
            let incoming = Incoming::create(dir.path(), "mallory", &lobby, t, "f", 100).unwrap();
            let r = Receiving {
                key: format!("o{t}"),
                offer_id: t * OFFER_ID_STEP,
                incoming,
                name: "f".into(),
                to: lobby.clone(),
                ticker: Ticker::new(PROGRESS_EVERY),
                data_until: until,
            };
            offers.receiving.insert(("mallory".into(), t), r);
        }
        assert_eq!(offers.wake(), Some(now + Duration::from_secs(5)), "the loop wakes at the first deadline");
        assert!(offers.stalled(now).is_empty());
        assert_eq!(offers.stalled(now + Duration::from_secs(5)), [("mallory".to_owned(), 2)]);
        assert_eq!(offers.stalled(now + ANSWER_WAIT).len(), 2);
    }

    #[test]
    fn offers_kept_are_bounded_and_the_oldest_go() {
        let mut offers = Offers::default();
        let mut forgotten = Vec::new();
        for t in 1..=5000u64 {
            if let Some(old) = offers.keep(offer(t, "mallory", t)) {
                forgotten.push(old.transfer);
            }
        }
        assert_eq!(offers.pending.len(), MAX_OFFERS);
        assert_eq!(forgotten.len(), 5000 - MAX_OFFERS);
        assert_eq!(forgotten.first(), Some(&1), "the oldest goes first");
        assert_eq!(offers.pending.front().map(|o| o.transfer), Some(5000 - MAX_OFFERS as u64 + 1));
        assert_eq!(offers.list().len(), MAX_OFFERS);
        // The same transfer offered again replaces its offer.
        let mut offers = Offers::default();
        offers.keep(offer(1, "a", 7));
        offers.keep(offer(2, "b", 7));
        offers.keep(offer(3, "a", 7));
        let held: Vec<_> = offers.pending.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(held, ["o2", "o3"]);
        assert!(offers.owns("o3") && !offers.owns("o1"));
    }
}
