//! File transfers in progress (PROTOCOL.md §13.6): who offered which file to
//! whom, who accepted, how much data the sender has sent and how much each
//! accepting receiver has acknowledged.
//!
//! This is bookkeeping only. Every operation returns the messages it calls
//! for as [`Fanout`]s, and the hub delivers them while it still holds its
//! lock, so the rules here can be tested without sockets and a transfer's
//! state and the messages announcing its changes can never disagree.
//!
//! A transfer has two phases. While *active* it counts against its sender's
//! limit and carries data. After FileEnd it is *finished*: only the
//! accepting receivers that have not yet sent their receipt (a FileAck of
//! the whole size, or a FileCancel if their check failed) remain, so that
//! the receipt can still reach the sender. Finished transfers do not count
//! against the limit; the oldest are forgotten beyond it.
//!
//! Invariant: a name is in `receiving` for a key exactly when it is in that
//! transfer's `offered` or `accepted` set; a transfer with neither left is
//! forgotten at once, so the map holds only transfers someone still waits on.
//!
//! A name may have several sessions (PROTOCOL.md §13.4), and a transfer
//! belongs to sessions, not names: the session that offered it alone feeds,
//! ends or cancels it and hears the answers; an offer remembers which of a
//! recipient's sessions got it, the first to accept becomes the one
//! receiving session, and a decline counts for the name only once each of
//! those sessions declined or left. When a session leaves, its transfers
//! end whether or not the name has other sessions.
//!
//! Memory is bounded per sender, not only per transfer: an offer to a room
//! keeps one entry per recipient, so a sender's entries across all its
//! transfers are budgeted (`max_offer_recipients_per_client`), and
//! recipients that never answer are dropped when the offer expires
//! (`offer_timeout_secs`). `expiry` holds one deadline per transfer that
//! exists, so it is bounded by the transfers themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cipherline_proto::app::{ErrorCode, FileSigned, MAX_CHUNK, MAX_FILE_NAME, MAX_UNACKED, ServerMessage, Target};

use crate::hub::Refusal;

/// A transfer's identity: the sender's name and the id it chose. Ids are
/// the name's: while one session's transfer is active, another session of
/// the name cannot reuse its id (receivers tell transfers apart by sender
/// name and id only).
pub(crate) type Key = (String, u64);

/// One connection: a name and which of its sessions (see [`crate::hub`]).
/// Transfer messages go to sessions, not to every session of a name: the
/// sender's messages to the session that offered, the data to the session
/// that accepted.
pub(crate) type Party = (String, u64);

/// One message for a list of connections (encoded once, queued for each).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fanout {
    pub(crate) to: Vec<Party>,
    pub(crate) msg: ServerMessage,
}

impl Fanout {
    fn one(to: Party, msg: ServerMessage) -> Self {
        Fanout { to: vec![to], msg }
    }
}

/// The limits an offer is checked against (from [`crate::Limits`]).
#[derive(Debug, Clone)]
pub(crate) struct OfferLimits {
    /// `max_transfers_per_client`: active transfers per sender name.
    pub(crate) max_active: usize,
    /// `max_offer_recipients_per_client`: recipient entries (names) per sender.
    pub(crate) max_recipients: usize,
    /// `offer_timeout_secs`: how long recipients may take to answer.
    pub(crate) timeout: Duration,
}

impl From<&crate::Limits> for OfferLimits {
    fn from(limits: &crate::Limits) -> Self {
        OfferLimits {
            max_active: limits.max_transfers_per_client,
            max_recipients: limits.max_offer_recipients_per_client,
            timeout: limits.offer_timeout(),
        }
    }
}

/// Why an offer was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OfferError {
    /// Refused with this error; the connection stays.
    Refused(Refusal),
    /// The sending session reused the id of its own transfer that is still
    /// active: a client bug, answered like any other invalid message (fatal
    /// `bad_request`), because the two transfers could not be told apart.
    DuplicateId,
}

/// What to do with a chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Nothing to relay: an unknown transfer (or another session's), an
    /// empty chunk, or no one has accepted yet.
    Dropped,
    /// Relay this FileData to these receiving sessions.
    Relay(Fanout),
    /// The chunk broke a rule; the transfer is over and these say so.
    Cancelled(Vec<Fanout>),
}

/// Reasons the server gives in the FileCancelled messages it originates.
pub(crate) mod reason {
    pub(crate) const SENDER_DISCONNECTED: &str = "the sender disconnected";
    pub(crate) const RECEIVER_DISCONNECTED: &str = "the receiver disconnected";
    pub(crate) const FLOW_CONTROL: &str = "the sender did not respect flow control";
    pub(crate) const OVERSIZE: &str = "the sender sent more data than it offered";
    pub(crate) const UNANSWERED: &str = "the sender finished before you answered";
    pub(crate) const LATE_TO_RECEIVER: &str =
        "the transfer had already started when you accepted; ask the sender to offer the file again";
    pub(crate) const LATE_TO_SENDER: &str = "accepted after the data had started; offer the file again";
    pub(crate) const SLOW_TO_RECEIVER: &str =
        "you did not read the file data fast enough; ask the sender to offer the file again";
    pub(crate) const SLOW_TO_SENDER: &str = "the receiver did not read the file data fast enough";
    pub(crate) const EXPIRED_TO_RECEIVER: &str = "the offer expired before you answered";
    pub(crate) const EXPIRED_TO_SENDER: &str = "nobody accepted the offer before it expired";
    pub(crate) const ANSWERED_ELSEWHERE: &str = "another session of yours accepted it";
}

/// Whether a file name is acceptable in an offer: 1 to 255 bytes, no
/// directory separators, no control characters (NUL included, and nothing a
/// receiver's terminal could interpret), no bidi or other format characters
/// and no line/paragraph separators (which can disguise an extension, as in
/// `invoice\u{202e}fdp.exe`), and not `.` or `..`. Receivers must still
/// sanitise names; this only keeps the obviously hostile ones out.
pub(crate) fn valid_file_name(name: &str) -> bool {
    (1..=MAX_FILE_NAME).contains(&name.len())
        && !name.contains(['/', '\\'])
        && !name.chars().any(cipherline_proto::charclass::is_hazard)
        && name != "."
        && name != ".."
}

struct Transfer {
    /// The sender's session that offered it: only that session may send
    /// its data, end or cancel it, and it alone hears the answers.
    owner: u64,
    /// The size announced in the offer; the sender may not send more.
    size: u64,
    /// Data bytes the sender has sent so far, relayed or (before anyone
    /// accepted) dropped. Once non-zero, the transfer has started and a late
    /// acceptor could not get the whole file.
    sent: u64,
    /// Offered, not answered yet: each name with the sessions that received
    /// the offer and have neither answered nor left (never empty).
    offered: BTreeMap<String, BTreeSet<u64>>,
    /// Accepted: each name with the session that accepted (the only one
    /// that gets the data) and the bytes it has acknowledged.
    accepted: BTreeMap<String, (u64, u64)>,
    /// Set by FileEnd: the order in which the sender's transfers finished,
    /// so that the oldest is forgotten first.
    finished: Option<u64>,
    /// This transfer's key in `Transfers::expiry`.
    expires: (Instant, u64),
}

impl Transfer {
    /// Every session still in the transfer, answered or not.
    fn receivers(&self) -> Vec<Party> {
        let offered = self.offered.iter().flat_map(|(n, ss)| ss.iter().map(|s| (n.clone(), *s)));
        offered.chain(self.accepting()).collect()
    }

    /// The sessions that accepted.
    fn accepting(&self) -> impl Iterator<Item = Party> + '_ {
        self.accepted.iter().map(|(n, (s, _))| (n.clone(), *s))
    }

    fn min_acked(&self) -> Option<u64> {
        self.accepted.values().map(|(_, acked)| *acked).min()
    }

    /// Recipient entries this transfer holds (names: each has at most
    /// [`crate::hub::MAX_SESSIONS_PER_NAME`] sessions).
    fn entries(&self) -> usize {
        self.offered.len() + self.accepted.len()
    }
}

/// FileCancelled for the transfer `key`, stopped by `by`. It names the
/// sender because it goes both ways: a client can be the sender of its own
/// transfer 5 and a receiver of someone else's transfer 5.
fn cancelled(key: &Key, by: &str, reason: impl Into<String>) -> ServerMessage {
    ServerMessage::FileCancelled { transfer: key.1, sender: key.0.clone(), by: by.to_owned(), reason: reason.into() }
}

/// Every transfer in progress on the server.
#[derive(Default)]
pub(crate) struct Transfers {
    /// Every transfer in progress, active or finished, ordered by sender
    /// first so that one sender's transfers are a range.
    by_key: BTreeMap<Key, Transfer>,
    /// The transfers each user is offered or receiving, so a disconnect
    /// costs no scan over everyone's transfers.
    receiving: HashMap<String, BTreeSet<Key>>,
    /// Counts FileEnds, to order finished transfers.
    ends: u64,
    /// When each transfer's unanswered recipients expire, soonest first;
    /// one entry per transfer in `by_key`.
    expiry: BTreeMap<(Instant, u64), Key>,
    /// Counts offers, to tell deadlines at the same instant apart.
    offers: u64,
}

impl Transfers {
    /// The sender's transfers (all its sessions'), with when each finished
    /// (`None`: active).
    fn sender_keys(&self, sender: &str) -> Vec<(Key, Option<u64>)> {
        let range = (sender.to_owned(), 0)..=(sender.to_owned(), u64::MAX);
        self.by_key.range(range).map(|(k, t)| (k.clone(), t.finished)).collect()
    }

    /// A transfer that is still active (not finished) and belongs to
    /// `session` of its sender.
    fn active_mut(&mut self, key: &Key, session: u64) -> Option<&mut Transfer> {
        self.by_key.get_mut(key).filter(|t| t.finished.is_none() && t.owner == session)
    }

    /// The session that offered transfer `key`.
    fn owner(&self, key: &Key) -> Option<Party> {
        self.by_key.get(key).map(|t| (key.0.clone(), t.owner))
    }

    fn index(&mut self, receiver: &str, key: &Key) {
        self.receiving.entry(receiver.to_owned()).or_default().insert(key.clone());
    }

    fn unindex(&mut self, receiver: &str, key: &Key) {
        if let Some(keys) = self.receiving.get_mut(receiver) {
            keys.remove(key);
            if keys.is_empty() {
                self.receiving.remove(receiver);
            }
        }
    }

    /// Removes a transfer and its index entries.
    fn forget(&mut self, key: &Key) -> Option<Transfer> {
        let transfer = self.by_key.remove(key)?;
        self.expiry.remove(&transfer.expires);
        for receiver in transfer.offered.keys().chain(transfer.accepted.keys()) {
            self.unindex(receiver, key);
        }
        Some(transfer)
    }

    /// Takes `receiver` (all its sessions) out of a transfer, forgetting
    /// the transfer if no receiver is left. Returns the sessions it had in
    /// the transfer: empty if it was not a receiver.
    fn detach(&mut self, key: &Key, receiver: &str) -> Vec<Party> {
        let Some(t) = self.by_key.get_mut(key) else { return Vec::new() };
        let offered = t.offered.remove(receiver);
        let accepted = t.accepted.remove(receiver);
        let indexed = offered.is_some() || accepted.is_some();
        let mut was: Vec<Party> = offered.unwrap_or_default().into_iter().map(|s| (receiver.to_owned(), s)).collect();
        if let Some((s, _)) = accepted {
            was.push((receiver.to_owned(), s));
        }
        let empty = t.offered.is_empty() && t.accepted.is_empty();
        if indexed {
            self.unindex(receiver, key);
        }
        if empty {
            self.forget(key);
        }
        was
    }

    /// Takes one session of `receiver` that has not answered out of a
    /// transfer. Returns whether it was offered the transfer and whether
    /// that was the name's last such session (the name has then left the
    /// transfer, having answered nowhere else).
    fn withdraw_session(&mut self, key: &Key, receiver: &str, session: u64) -> (bool, bool) {
        let Some(sessions) = self.by_key.get_mut(key).and_then(|t| t.offered.get_mut(receiver)) else {
            return (false, false);
        };
        if !sessions.remove(&session) {
            return (false, false);
        }
        if !sessions.is_empty() {
            return (true, false);
        }
        self.detach(key, receiver);
        (true, true)
    }

    /// Ends a transfer for everyone because the sender broke a rule: its
    /// receivers and the sending session itself are told why.
    fn abort(&mut self, key: &Key, why: &str) -> Vec<Fanout> {
        let Some(t) = self.forget(key) else { return Vec::new() };
        let msg = cancelled(key, &key.0, why);
        vec![Fanout { to: t.receivers(), msg: msg.clone() }, Fanout::one((key.0.clone(), t.owner), msg)]
    }

    /// Records an offer from `sender`'s connection `session` to
    /// `recipients` (each name with the sessions that get the offer; already
    /// checked to exist and not to include the sender) and returns the
    /// FileOffered for them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offer(
        &mut self,
        (sender, session): (&str, u64),
        id: u64,
        to: Target,
        name: String,
        size: u64,
        recipients: BTreeMap<String, BTreeSet<u64>>,
        limits: &OfferLimits,
        now: Instant,
    ) -> Result<Fanout, OfferError> {
        let max_active = limits.max_active;
        let key = (sender.to_owned(), id);
        match self.by_key.get(&key) {
            Some(t) if t.finished.is_none() && t.owner == session => return Err(OfferError::DuplicateId),
            // Another session's: each session numbers its transfers from 1,
            // so this is no client bug; the offer waits for that one to end.
            Some(t) if t.finished.is_none() => {
                return Err(OfferError::Refused((
                    ErrorCode::BadRequest,
                    format!(
                        "another session of {sender:?} has a file transfer numbered {id} in progress; send this file \
                         when it ends"
                    ),
                )));
            }
            // Reusing a finished transfer's id: its receipts are no longer
            // wanted (they could not be told apart from the new ones).
            Some(_) => drop(self.forget(&key)),
            None => {}
        }
        let recipients: BTreeMap<String, BTreeSet<u64>> =
            recipients.into_iter().filter(|(_, sessions)| !sessions.is_empty()).collect();
        if recipients.is_empty() {
            return Err(OfferError::Refused((ErrorCode::UnknownUser, "nobody to offer the file to".into())));
        }
        if self.sender_keys(sender).iter().filter(|(_, finished)| finished.is_none()).count() >= max_active {
            return Err(OfferError::Refused((
                ErrorCode::RateLimited,
                format!("you have {max_active} file transfers in progress; finish or cancel one first"),
            )));
        }
        self.make_room(sender, recipients.len(), limits.max_recipients)?;
        for r in recipients.keys() {
            self.index(r, &key);
        }
        self.offers += 1;
        // `timeout` is capped at a century (config), so this cannot overflow
        // in practice; if it did, the offer would expire after a year instead.
        let deadline = now.checked_add(limits.timeout).unwrap_or(now + Duration::from_secs(365 * 24 * 60 * 60));
        let expires = (deadline, self.offers);
        self.expiry.insert(expires, key.clone());
        let transfer = Transfer {
            owner: session,
            size,
            sent: 0,
            offered: recipients,
            accepted: BTreeMap::new(),
            finished: None,
            expires,
        };
        let to_list = transfer.receivers();
        self.by_key.insert(key, transfer);
        Ok(Fanout {
            to: to_list,
            msg: ServerMessage::FileOffered { transfer: id, from: sender.to_owned(), to, name, size },
        })
    }

    /// Checks that `sender` may hold `more` recipient entries, forgetting
    /// its oldest finished transfers (which only wait for receipts) if
    /// that makes room.
    fn make_room(&mut self, sender: &str, more: usize, max: usize) -> Result<(), OfferError> {
        if more > max {
            return Err(OfferError::Refused((
                ErrorCode::RateLimited,
                format!("this offer would have {more} recipients; the server allows at most {max}"),
            )));
        }
        let mut held: usize =
            self.sender_keys(sender).iter().filter_map(|(k, _)| self.by_key.get(k)).map(Transfer::entries).sum();
        if held + more <= max {
            return Ok(());
        }
        let mut finished: Vec<(u64, Key)> =
            self.sender_keys(sender).into_iter().filter_map(|(k, f)| f.map(|f| (f, k))).collect();
        finished.sort_unstable();
        for (_, old) in finished {
            if held + more <= max {
                break;
            }
            if let Some(t) = self.forget(&old) {
                held -= t.entries();
            }
        }
        if held + more <= max {
            return Ok(());
        }
        Err(OfferError::Refused((
            ErrorCode::RateLimited,
            format!(
                "your file offers are waiting on {held} recipients and this one adds {more}; at most {max}: wait for answers or cancel an offer"
            ),
        )))
    }

    /// Ends every offer whose deadline has passed for the recipients that
    /// have not answered: each is told it expired and is forgotten. A
    /// transfer nobody accepted is over, and its sender is told; otherwise
    /// the sender, who never learned who was offered, carries on with the
    /// recipients that accepted.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Fanout> {
        let mut out = Vec::new();
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            let Some(t) = self.by_key.get_mut(&key) else { continue };
            if t.offered.is_empty() {
                // Everyone answered (or it finished): nothing expires, and
                // its deadline entry is simply gone. It stays bounded: this
                // transfer cannot get new recipients.
                continue;
            }
            let unanswered = std::mem::take(&mut t.offered);
            let nobody_accepted = t.accepted.is_empty();
            let owner = (key.0.clone(), t.owner);
            for r in unanswered.keys() {
                self.unindex(r, &key);
            }
            out.push(Fanout {
                to: unanswered.into_iter().flat_map(|(n, ss)| ss.into_iter().map(move |s| (n.clone(), s))).collect(),
                msg: cancelled(&key, &key.0, reason::EXPIRED_TO_RECEIVER),
            });
            if nobody_accepted {
                self.forget(&key);
                out.push(Fanout::one(owner, cancelled(&key, &key.0, reason::EXPIRED_TO_SENDER)));
            }
        }
        out
    }

    /// An answer from connection `session` of `by`. Ignored unless that
    /// session was offered this transfer and has not answered yet.
    ///
    /// An accept makes that session the receiving one; the name's other
    /// sessions that had the offer are told it was accepted elsewhere. A
    /// decline counts for the name only once every session that had the
    /// offer declined or left: so a session that declines on its own (a
    /// script) cannot decline for another that is still deciding.
    pub(crate) fn answer(&mut self, (by, session): (&str, u64), sender: &str, id: u64, accept: bool) -> Vec<Fanout> {
        let key = (sender.to_owned(), id);
        let Some(t) = self.by_key.get_mut(&key) else { return Vec::new() };
        if !t.offered.get(by).is_some_and(|ss| ss.contains(&session)) {
            return Vec::new();
        }
        let owner = (sender.to_owned(), t.owner);
        let answered = ServerMessage::FileAnswered { transfer: id, by: by.to_owned(), accept };
        if accept && t.sent == 0 {
            let others = t.offered.remove(by).unwrap_or_default();
            t.accepted.insert(by.to_owned(), (session, 0));
            let others: Vec<Party> = others.into_iter().filter(|s| *s != session).map(|s| (by.to_owned(), s)).collect();
            return vec![
                Fanout::one(owner, answered),
                Fanout { to: others, msg: cancelled(&key, by, reason::ANSWERED_ELSEWHERE) },
            ];
        }
        if accept {
            // Data already went to others; this receiver would get a file
            // with its beginning missing, so it is refused on both sides.
            let sessions = self.detach(&key, by);
            return vec![
                Fanout { to: sessions, msg: cancelled(&key, sender, reason::LATE_TO_RECEIVER) },
                Fanout::one(owner, cancelled(&key, by, reason::LATE_TO_SENDER)),
            ];
        }
        match self.withdraw_session(&key, by, session) {
            (true, true) => vec![Fanout::one(owner, answered)],
            _ => Vec::new(),
        }
    }

    /// A chunk from the sender's connection `session`: checks the offered
    /// size and the flow-control window, then relays it to every accepting
    /// session. Another session's transfer is not this one's to feed.
    pub(crate) fn chunk(&mut self, (sender, session): (&str, u64), id: u64, data: Vec<u8>) -> Chunk {
        let key = (sender.to_owned(), id);
        let Some(t) = self.active_mut(&key, session) else { return Chunk::Dropped };
        if data.is_empty() {
            return Chunk::Dropped;
        }
        let sent = t.sent.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if sent > t.size {
            return Chunk::Cancelled(self.abort(&key, reason::OVERSIZE));
        }
        if t.min_acked().is_some_and(|slowest| sent.saturating_sub(slowest) > MAX_UNACKED) {
            return Chunk::Cancelled(self.abort(&key, reason::FLOW_CONTROL));
        }
        t.sent = sent;
        if t.accepted.is_empty() {
            return Chunk::Dropped;
        }
        let to = t.accepting().collect();
        Chunk::Relay(Fanout { to, msg: ServerMessage::FileData { transfer: id, from: sender.to_owned(), data } })
    }

    /// Takes a receiver whose queue is too full for more data out of a
    /// transfer, instead of cutting its connection off.
    pub(crate) fn drop_slow_receiver(&mut self, sender: &str, id: u64, receiver: &str) -> Vec<Fanout> {
        let key = (sender.to_owned(), id);
        let Some(owner) = self.owner(&key) else { return Vec::new() };
        let sessions = self.detach(&key, receiver);
        if sessions.is_empty() {
            return Vec::new();
        }
        vec![
            Fanout { to: sessions, msg: cancelled(&key, sender, reason::SLOW_TO_RECEIVER) },
            Fanout::one(owner, cancelled(&key, receiver, reason::SLOW_TO_SENDER)),
        ]
    }

    /// The sender finished: FileDone to the accepting sessions, and those
    /// who never answered learn the offer is gone. The transfer stays,
    /// finished, until every accepting receiver has sent its receipt; of the
    /// sender's finished transfers only the newest `max_finished` are kept.
    pub(crate) fn end(
        &mut self,
        (sender, session): (&str, u64),
        id: u64,
        sha256: [u8; 32],
        signed: Option<FileSigned>,
        max_finished: usize,
    ) -> Vec<Fanout> {
        let key = (sender.to_owned(), id);
        let seq = self.ends + 1;
        let Some(t) = self.active_mut(&key, session) else { return Vec::new() };
        let unanswered = std::mem::take(&mut t.offered);
        let accepted: Vec<Party> = t.accepting().collect();
        t.finished = Some(seq);
        self.ends = seq;
        for r in unanswered.keys() {
            self.unindex(r, &key);
        }
        if accepted.is_empty() {
            self.forget(&key);
        }
        let mut finished: Vec<(u64, Key)> =
            self.sender_keys(sender).into_iter().filter_map(|(k, f)| f.map(|f| (f, k))).collect();
        if finished.len() > max_finished {
            finished.sort_unstable();
            for (_, old) in finished.iter().take(finished.len() - max_finished) {
                // Silently: the sender only misses receipts it stopped
                // waiting for long ago, and the receivers have their FileDone.
                self.forget(old);
            }
        }
        let done = ServerMessage::FileDone { transfer: id, from: sender.to_owned(), sha256, signed };
        let unanswered =
            unanswered.into_iter().flat_map(|(n, ss)| ss.into_iter().map(move |s| (n.clone(), s))).collect();
        vec![
            Fanout { to: accepted, msg: done },
            Fanout { to: unanswered, msg: cancelled(&key, sender, reason::UNANSWERED) },
        ]
    }

    /// The sender's connection `session` cancelled its transfer: every
    /// receiver, answered or not, is told. For a finished transfer it only
    /// stops waiting for receipts, and nobody is told (the receivers have
    /// their FileDone and must keep the file).
    pub(crate) fn cancel_by_sender(&mut self, (sender, session): (&str, u64), id: u64, why: String) -> Vec<Fanout> {
        let key = (sender.to_owned(), id);
        if self.by_key.get(&key).is_none_or(|t| t.owner != session) {
            return Vec::new();
        }
        let Some(t) = self.forget(&key) else { return Vec::new() };
        if t.finished.is_some() {
            return Vec::new();
        }
        vec![Fanout { to: t.receivers(), msg: cancelled(&key, sender, why) }]
    }

    /// A receiving session stopped receiving, or one that was offered the
    /// transfer declined by cancelling: only the sender is told (for a
    /// decline, once the name's last session that had the offer declined);
    /// the others keep going.
    pub(crate) fn cancel_by_receiver(
        &mut self,
        (by, session): (&str, u64),
        sender: &str,
        id: u64,
        why: String,
    ) -> Vec<Fanout> {
        let key = (sender.to_owned(), id);
        let Some(t) = self.by_key.get(&key) else { return Vec::new() };
        let owner = (sender.to_owned(), t.owner);
        let gone = if t.accepted.get(by).is_some_and(|(s, _)| *s == session) {
            !self.detach(&key, by).is_empty()
        } else {
            self.withdraw_session(&key, by, session).1
        };
        if !gone {
            return Vec::new();
        }
        vec![Fanout::one(owner, cancelled(&key, by, why))]
    }

    /// A receiver's progress, or its receipt, from its accepting session.
    ///
    /// Progress is counted only if it moves forward by at least one full
    /// chunk or reaches everything sent so far, and never beyond what was
    /// sent: so the acks relayed to a sender are bounded by the chunks it
    /// sent, however a receiver behaves (acks cost no rate tokens).
    ///
    /// An ack of the whole size is the receipt ("stored and checked"): it
    /// counts only after FileEnd, when all of it was sent, and takes the
    /// receiver out of the transfer.
    pub(crate) fn ack(&mut self, (by, session): (&str, u64), sender: &str, id: u64, received: u64) -> Vec<Fanout> {
        let key = (sender.to_owned(), id);
        let Some(t) = self.by_key.get_mut(&key) else { return Vec::new() };
        let (sent, size, finished, owner) = (t.sent, t.size, t.finished.is_some(), (sender.to_owned(), t.owner));
        let Some((_, acked)) = t.accepted.get_mut(by).filter(|(s, _)| *s == session) else { return Vec::new() };
        let acked_msg = ServerMessage::FileAcked { transfer: id, by: by.to_owned(), received };
        if received == size {
            if !finished || sent != size {
                return Vec::new();
            }
            self.detach(&key, by);
            return vec![Fanout::one(owner, acked_msg)];
        }
        let step = MAX_CHUNK as u64;
        let forward = received > *acked && received <= sent && (received - *acked >= step || received == sent);
        if !forward {
            return Vec::new();
        }
        *acked = received;
        vec![Fanout::one(owner, acked_msg)]
    }

    /// Connection `session` of `name` disconnected, whether or not the
    /// name has other sessions: the transfers it offered end for their
    /// receivers, and it leaves every transfer it accepted (the sender is
    /// told) or was offered (the sender is told only if no other session of
    /// the name still has the offer: the name has then left it).
    pub(crate) fn disconnect(&mut self, name: &str, session: u64) -> Vec<Fanout> {
        let mut out = Vec::new();
        for (key, _) in self.sender_keys(name) {
            if self.by_key.get(&key).is_none_or(|t| t.owner != session) {
                continue;
            }
            // A finished transfer's receivers have their FileDone: nothing
            // to cancel for them, only receipts nobody will read.
            if let Some(t) = self.forget(&key).filter(|t| t.finished.is_none()) {
                out.push(Fanout { to: t.receivers(), msg: cancelled(&key, name, reason::SENDER_DISCONNECTED) });
            }
        }
        let keys: Vec<Key> = self.receiving.get(name).map(|k| k.iter().cloned().collect()).unwrap_or_default();
        for key in keys {
            let Some(t) = self.by_key.get(&key) else { continue };
            let owner = (key.0.clone(), t.owner);
            let gone = if t.accepted.get(name).is_some_and(|(s, _)| *s == session) {
                !self.detach(&key, name).is_empty()
            } else {
                self.withdraw_session(&key, name, session).1
            };
            if gone {
                out.push(Fanout::one(owner, cancelled(&key, name, reason::RECEIVER_DISCONNECTED)));
            }
        }
        out
    }

    /// Transfers in progress (for logs and tests).
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    /// Recipients with one session each (session 1).
    fn set(names: &[&str]) -> BTreeMap<String, BTreeSet<u64>> {
        names.iter().map(|n| ((*n).to_owned(), BTreeSet::from([1]))).collect()
    }

    /// The names a fanout goes to.
    fn names(to: &[Party]) -> Vec<&str> {
        to.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn user(n: &str) -> Target {
        Target::User(n.to_owned())
    }

    /// Checks the `receiving` index against the transfers.
    fn consistent(t: &Transfers) {
        let mut want: HashMap<String, BTreeSet<Key>> = HashMap::new();
        assert!(t.expiry.len() <= t.by_key.len(), "a deadline outlived its transfer");
        for (key, tr) in &t.by_key {
            assert!(!tr.offered.is_empty() || !tr.accepted.is_empty(), "empty transfer kept");
            for r in tr.offered.keys().chain(tr.accepted.keys()) {
                want.entry(r.clone()).or_default().insert(key.clone());
            }
        }
        assert_eq!(want, t.receiving);
    }

    fn limits(max_active: usize) -> OfferLimits {
        OfferLimits { max_active, max_recipients: 256, timeout: Duration::from_secs(300) }
    }

    fn offer(t: &mut Transfers, from: &str, id: u64, to: &[&str], size: u64) {
        t.offer((from, 1), id, Target::Room("r".into()), "f".into(), size, set(to), &limits(16), Instant::now())
            .unwrap();
        consistent(t);
    }

    #[test]
    fn file_names() {
        for good in ["a", "report.pdf", "..a", "a..", "naïve ☃.txt", &"x".repeat(255)] {
            assert!(valid_file_name(good), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nb",
            "\u{1b}[31m",
            &"x".repeat(256),
            "invoice\u{202e}fdp.exe",
            "a\u{200b}b",
            "a\u{2066}b",
            "a\u{feff}",
            "a\u{2028}b",
        ] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn offers_are_bounded_and_unique() {
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b"], 10);
        assert_eq!(
            t.offer(("a", 1), 1, user("b"), "f".into(), 1, set(&["b"]), &limits(16), Instant::now()),
            Err(OfferError::DuplicateId)
        );
        // The same id from another sender is another transfer.
        offer(&mut t, "c", 1, &["b"], 10);
        for id in 2..=3 {
            offer(&mut t, "a", id, &["b"], 10);
        }
        let r = t.offer(("a", 1), 4, user("b"), "f".into(), 1, set(&["b"]), &limits(3), Instant::now());
        assert!(matches!(r, Err(OfferError::Refused((ErrorCode::RateLimited, _)))), "{r:?}");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn unanswered_offers_expire_and_recipients_are_budgeted() {
        let mut t = Transfers::default();
        let now = Instant::now();
        let lim = OfferLimits { max_active: 16, max_recipients: 4, timeout: Duration::from_secs(10) };
        let room = || Target::Room("r".into());
        t.offer(("a", 1), 1, room(), "f".into(), 1, set(&["b", "c", "d"]), &lim, now).unwrap();
        // Three entries held, two more would exceed the budget of four.
        let r = t.offer(("a", 1), 2, room(), "f".into(), 1, set(&["b", "c"]), &lim, now);
        assert!(matches!(r, Err(OfferError::Refused((ErrorCode::RateLimited, _)))), "{r:?}");
        let r = t.offer(("a", 1), 2, room(), "f".into(), 1, set(&["b", "c", "d", "e", "f"]), &lim, now);
        assert!(matches!(r, Err(OfferError::Refused((ErrorCode::RateLimited, _)))), "more than the budget at once");
        // Another sender has its own budget.
        t.offer(("z", 1), 1, room(), "f".into(), 1, set(&["b", "c", "d", "e"]), &lim, now).unwrap();
        t.answer(("b", 1), "a", 1, true);
        assert!(t.expire(now + Duration::from_secs(9)).is_empty(), "not yet");
        let out = t.expire(now + Duration::from_secs(10));
        // c and d never answered: they are told; a carries on with b. All
        // of z's recipients were silent: z's offer is over and z is told.
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(names(&out[0].to), ["c", "d"]);
        assert!(
            matches!(&out[0].msg, ServerMessage::FileCancelled { reason, .. } if reason == reason::EXPIRED_TO_RECEIVER)
        );
        assert_eq!(names(&out[1].to), ["b", "c", "d", "e"]);
        assert_eq!(names(&out[2].to), ["z"]);
        assert!(
            matches!(&out[2].msg, ServerMessage::FileCancelled { reason, .. } if reason == reason::EXPIRED_TO_SENDER)
        );
        assert_eq!(t.len(), 1);
        consistent(&t);
        assert!(t.answer(("c", 1), "a", 1, true).is_empty(), "an answer after expiry is ignored");
        assert!(matches!(t.chunk(("a", 1), 1, vec![0]), Chunk::Relay(f) if names(&f.to) == ["b"]));
        // The expired entries are free again: one held (b) plus three.
        let later = now + Duration::from_secs(11);
        t.offer(("a", 1), 2, room(), "f".into(), 1, set(&["c", "d", "e"]), &lim, later).unwrap();
        consistent(&t);
        // A finished transfer waiting for a receipt gives way to a new offer.
        t.cancel_by_sender(("a", 1), 2, "no".into());
        t.end(("a", 1), 1, [0; 32], None, 16);
        assert_eq!(t.len(), 1, "b's receipt is awaited");
        t.offer(("a", 1), 3, room(), "f".into(), 1, set(&["c", "d", "e", "f"]), &lim, later).unwrap();
        assert!(t.ack(("b", 1), "a", 1, 1).is_empty(), "transfer 1 was forgotten to make room");
        assert_eq!(t.len(), 1);
        consistent(&t);
    }

    #[test]
    fn decline_and_late_accept_forget_the_receiver() {
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b", "c", "d"], 100_000);
        let out = t.answer(("b", 1), "a", 1, false);
        assert_eq!(
            out,
            vec![Fanout::one(
                ("a".into(), 1),
                ServerMessage::FileAnswered { transfer: 1, by: "b".into(), accept: false }
            )]
        );
        // A second answer from b is ignored.
        assert!(t.answer(("b", 1), "a", 1, true).is_empty());
        t.answer(("c", 1), "a", 1, true);
        assert!(matches!(t.chunk(("a", 1), 1, vec![0; 10]), Chunk::Relay(f) if names(&f.to) == ["c"]));
        // d accepts after data flowed: refused on both sides.
        let out = t.answer(("d", 1), "a", 1, true);
        assert_eq!(out.len(), 2);
        assert_eq!(names(&out[0].to), ["d"]);
        assert_eq!(names(&out[1].to), ["a"]);
        consistent(&t);
        // c cancels: the last receiver is gone and so is the transfer.
        let out = t.cancel_by_receiver(("c", 1), "a", 1, "no".into());
        assert_eq!(names(&out[0].to), ["a"]);
        assert_eq!(t.len(), 0);
        consistent(&t);
    }

    #[test]
    fn chunks_respect_size_and_window() {
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b", "c"], 10 * MAX_UNACKED);
        // Before any accept, chunks are dropped (but counted).
        assert_eq!(t.chunk(("a", 1), 1, vec![1]), Chunk::Dropped);
        assert_eq!(t.chunk(("a", 1), 9, vec![1]), Chunk::Dropped, "unknown transfer");
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b", "c"], 10 * MAX_UNACKED);
        t.answer(("b", 1), "a", 1, true);
        t.answer(("c", 1), "a", 1, true);
        let chunk = vec![0; MAX_CHUNK];
        let per_window = MAX_UNACKED / MAX_CHUNK as u64;
        for _ in 0..per_window {
            assert!(matches!(t.chunk(("a", 1), 1, chunk.clone()), Chunk::Relay(_)));
        }
        // b acks everything, c only the first half: c is the slowest.
        assert_eq!(t.ack(("b", 1), "a", 1, MAX_UNACKED).len(), 1);
        assert_eq!(t.ack(("c", 1), "a", 1, MAX_UNACKED / 2).len(), 1);
        for _ in 0..per_window / 2 {
            assert!(matches!(t.chunk(("a", 1), 1, chunk.clone()), Chunk::Relay(_)));
        }
        let Chunk::Cancelled(out) = t.chunk(("a", 1), 1, chunk.clone()) else { panic!("window not enforced") };
        assert_eq!(names(&out[0].to), ["b", "c"]);
        assert_eq!(names(&out[1].to), ["a"]);
        assert!(matches!(&out[1].msg, ServerMessage::FileCancelled { reason, .. } if reason == reason::FLOW_CONTROL));
        assert_eq!(t.len(), 0);
        consistent(&t);

        // More than the offered size ends the transfer.
        offer(&mut t, "a", 2, &["b"], 5);
        t.answer(("b", 1), "a", 2, true);
        assert!(matches!(t.chunk(("a", 1), 2, vec![0; 5]), Chunk::Relay(_)));
        assert!(matches!(t.chunk(("a", 1), 2, vec![0; 1]), Chunk::Cancelled(_)));
        consistent(&t);
    }

    #[test]
    fn acks_must_move_forward_by_a_chunk_or_to_the_end() {
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b"], 1 << 30);
        t.answer(("b", 1), "a", 1, true);
        for _ in 0..4 {
            t.chunk(("a", 1), 1, vec![0; MAX_CHUNK]);
        }
        let step = MAX_CHUNK as u64;
        assert!(t.ack(("b", 1), "a", 1, 1).is_empty(), "less than a chunk and not the end");
        assert!(t.ack(("b", 1), "a", 1, 5 * step).is_empty(), "beyond what was sent");
        assert!(t.ack(("c", 1), "a", 1, step).is_empty(), "not a receiver");
        assert_eq!(t.ack(("b", 1), "a", 1, step).len(), 1);
        assert!(t.ack(("b", 1), "a", 1, step).is_empty(), "not forward");
        assert!(t.ack(("b", 1), "a", 1, step + 10).is_empty());
        assert_eq!(t.ack(("b", 1), "a", 1, 4 * step).len(), 1, "everything sent");
    }

    #[test]
    fn end_and_disconnects_tell_everyone_left() {
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b", "c"], 3);
        t.answer(("b", 1), "a", 1, true);
        t.chunk(("a", 1), 1, vec![1, 2, 3]);
        let out = t.end(("a", 1), 1, [0; 32], None, 16);
        assert_eq!(names(&out[0].to), ["b"]);
        assert!(matches!(out[0].msg, ServerMessage::FileDone { .. }));
        assert_eq!(names(&out[1].to), ["c"], "c never answered");
        assert!(t.end(("a", 1), 1, [0; 32], None, 16).is_empty(), "already over");
        assert!(matches!(t.chunk(("a", 1), 1, vec![1]), Chunk::Dropped), "no data after the end");
        // b's receipt is all that is left to wait for.
        assert_eq!(t.len(), 1);
        consistent(&t);
        assert_eq!(t.ack(("b", 1), "a", 1, 3).len(), 1);
        assert_eq!(t.len(), 0);

        offer(&mut t, "a", 1, &["b", "c"], 3);
        offer(&mut t, "b", 1, &["a", "c"], 3);
        offer(&mut t, "c", 1, &["b"], 3);
        let out = t.disconnect("b", 1);
        // b's own transfer ends for a and c; a and c each lose b as a receiver.
        assert_eq!(out.len(), 3);
        assert_eq!(names(&out[0].to), ["a", "c"]);
        assert!(matches!(&out[0].msg, ServerMessage::FileCancelled { by, .. } if by == "b"));
        let senders: BTreeSet<_> = out[1..].iter().map(|f| f.to[0].0.clone()).collect();
        assert_eq!(senders, ["a".to_owned(), "c".to_owned()].into());
        // c's transfer had only b: gone. a's still has c.
        assert_eq!(t.len(), 1);
        consistent(&t);
        let out = t.cancel_by_sender(("a", 1), 1, "changed my mind".into());
        assert_eq!(names(&out[0].to), ["c"]);
        assert_eq!(t.len(), 0);
        consistent(&t);
    }

    #[test]
    fn receipts_reach_the_sender_after_the_end() {
        let mut t = Transfers::default();
        offer(&mut t, "a", 1, &["b", "c", "d"], 2 * MAX_CHUNK as u64);
        for r in ["b", "c", "d"] {
            t.answer((r, 1), "a", 1, true);
        }
        t.chunk(("a", 1), 1, vec![0; MAX_CHUNK]);
        t.chunk(("a", 1), 1, vec![0; MAX_CHUNK]);
        // The whole size before FileEnd is not a receipt yet.
        assert!(t.ack(("b", 1), "a", 1, 2 * MAX_CHUNK as u64).is_empty());
        t.end(("a", 1), 1, [0; 32], None, 16);
        // A finished transfer no longer counts against the sender's limit.
        offer(&mut t, "a", 2, &["b"], 1);
        t.offer(("a", 1), 3, user("b"), "f".into(), 1, set(&["b"]), &limits(2), Instant::now()).unwrap();
        t.offer(("a", 1), 4, user("b"), "f".into(), 1, set(&["b"]), &limits(2), Instant::now()).unwrap_err();
        // b confirms; c's check failed; d leaves: each reaches a.
        let out = t.ack(("b", 1), "a", 1, 2 * MAX_CHUNK as u64);
        assert!(matches!(&out[..], [Fanout { msg: ServerMessage::FileAcked { by, .. }, .. }] if by == "b"));
        let out = t.cancel_by_receiver(("c", 1), "a", 1, "SHA-256 mismatch".into());
        assert!(matches!(&out[..], [Fanout { msg: ServerMessage::FileCancelled { by, .. }, .. }] if by == "c"));
        assert!(t.ack(("b", 1), "a", 1, 2 * MAX_CHUNK as u64).is_empty(), "one receipt each");
        let out = t.disconnect("d", 1);
        assert_eq!(out.len(), 1);
        assert_eq!(names(&out[0].to), ["a"]);
        assert_eq!(t.len(), 2, "only transfers 2 and 3 are left");
        consistent(&t);

        // An empty file: the receipt is an ack of 0.
        offer(&mut t, "a", 5, &["b"], 0);
        t.answer(("b", 1), "a", 5, true);
        t.end(("a", 1), 5, [0; 32], None, 16);
        assert_eq!(t.ack(("b", 1), "a", 5, 0).len(), 1);
        assert_eq!(t.len(), 2);
        consistent(&t);
    }

    #[test]
    fn finished_transfers_are_bounded_and_end_silently() {
        let mut t = Transfers::default();
        for id in 1..=4 {
            offer(&mut t, "a", id, &["b"], 0);
            t.answer(("b", 1), "a", id, true);
            t.end(("a", 1), id, [0; 32], None, 2);
        }
        // Only the two newest wait for receipts.
        assert_eq!(t.len(), 2);
        assert!(t.ack(("b", 1), "a", 1, 0).is_empty());
        consistent(&t);
        // The sender stops waiting for one: nobody is told.
        assert!(t.cancel_by_sender(("a", 1), 3, "never mind".into()).is_empty());
        // Reusing the last one's id starts a new transfer.
        offer(&mut t, "a", 4, &["b"], 5);
        assert!(matches!(t.chunk(("a", 1), 4, vec![1]), Chunk::Dropped), "a new offer, not yet accepted");
        // The sender leaves: the finished one ends silently, the new offer
        // is cancelled for b.
        t.answer(("b", 1), "a", 4, false);
        offer(&mut t, "a", 5, &["b"], 0);
        t.answer(("b", 1), "a", 5, true);
        t.end(("a", 1), 5, [0; 32], None, 2);
        offer(&mut t, "a", 6, &["b"], 1);
        let out = t.disconnect("a", 1);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0].msg, ServerMessage::FileCancelled { transfer: 6, .. }));
        assert_eq!(t.len(), 0);
        consistent(&t);
    }
}
