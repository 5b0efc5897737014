//! File transfer on the command line: sending one file over an unsplit
//! client, and receiving offered files into a directory.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherline_client::Client;
use cipherline_client::display::escape;
use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_client::transfer::{Incoming, Outgoing, TransferError};
use cipherline_proto::app::{ClientMessage, MAX_CHUNK, ServerMessage, Target};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;

/// A progress bar on a terminal, nothing otherwise.
pub fn progress_bar(size: u64, label: &str) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

fn transfer_failed(what: String, hint: &str) -> CliError {
    CliError::failed(what, hint)
}

/// Refuses what is not a regular file, naming what it is instead.
fn refuse_irregular(path: &Path, meta: &std::fs::Metadata) -> Result<(), CliError> {
    if meta.is_file() {
        return Ok(());
    }
    let shown = path.display().to_string();
    let path = escape(&shown);
    if meta.is_dir() {
        return Err(CliError::usage(
            format!("{path} is a directory: only a regular file can be sent"),
            "send the files in it one by one, or an archive of it",
        ));
    }
    Err(CliError::usage(
        format!("{path} is not a regular file (a device, FIFO or socket): only a regular file can be sent"),
        "copy its contents into a file and send that",
    ))
}

/// Opens `path` for sending, with its size. Only a regular file (or a
/// symlink to one) is accepted: a directory opens fine on Unix and would be
/// offered as a "file" of its metadata size (4096 bytes of nothing), a
/// device has no meaningful size, and opening a FIFO waits for a writer.
/// The type is checked before opening (so a FIFO is never opened) and again
/// on the opened handle (what is actually read).
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64), CliError> {
    let unreadable = |e: std::io::Error| {
        transfer_failed(format!("cannot read {}: {e}", escape(&path.display().to_string())), "check the path")
    };
    refuse_irregular(path, &std::fs::metadata(path).map_err(unreadable)?)?;
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    refuse_irregular(path, &meta)?;
    Ok((file, meta.len()))
}

/// Sends `path` to `to` and waits until every accepting receiver confirmed
/// the whole file (size and SHA-256 checked on their side).
///
/// `answer_timeout` bounds the wait for answers to the offer, and each wait
/// for progress once data flows.
pub async fn send_file(client: &mut Client, to: Target, path: &Path, answer_timeout: Duration) -> Result<(), CliError> {
    let (mut file, size) = open_regular(path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::usage(format!("{} has no usable file name", path.display()), "rename the file"))?
        .to_owned();
    let recipients = match &to {
        Target::User(user) => vec![user.clone()],
        Target::Room(room) => client.who(room).await?.into_iter().filter(|n| n != client.name()).collect(),
    };
    if recipients.is_empty() {
        return Err(transfer_failed("nobody else is in that room".into(), "wait for someone to join"));
    }
    let transfer = client.writer().next_id();
    let me = client.name().to_owned();
    let mut out = Outgoing::new(transfer, size, recipients);
    client.send_message(&ClientMessage::FileOffer { transfer, to: to.clone(), name: name.clone(), size }).await?;
    eprintln!("offered {name} ({size} bytes); waiting for the receiver to accept");

    let bar = progress_bar(size, &name);
    let mut answers_deadline = Some(tokio::time::Instant::now() + answer_timeout);
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut finished_sending = false;
    loop {
        if finished_sending && (out.delivered() || out.receivers() == 0) {
            break;
        }
        // Stream only once every recipient has answered (or the wait for
        // answers is over), so no one accepts in the middle of the data.
        let answering = out.awaiting_answers() && answers_deadline.is_some();
        if !answering && !finished_sending && out.receivers() > 0 {
            let want = usize::try_from((size - out.sent()).min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK);
            if want == 0 {
                let sha256 = out.digest();
                client.file_end(transfer, &to, &name, size, sha256).await?;
                finished_sending = true;
                continue;
            }
            if out.window_open(want) {
                let chunk = buf.get_mut(..want).unwrap_or_default();
                file.read_exact(chunk).map_err(|e| {
                    transfer_failed(format!("reading {}: {e}", path.display()), "the file changed while being sent")
                })?;
                out.record_chunk(chunk);
                client.send_message(&ClientMessage::FileChunk { transfer, data: chunk.to_vec() }).await?;
                bar.set_position(out.acked());
                continue;
            }
        }
        let wait = match answers_deadline {
            Some(deadline) if out.awaiting_answers() => deadline,
            _ => tokio::time::Instant::now() + answer_timeout,
        };
        let msg = match tokio::time::timeout_at(wait, client.recv()).await {
            Ok(msg) => msg?,
            Err(_) if out.awaiting_answers() && answers_deadline.is_some() => {
                answers_deadline = None;
                if out.receivers() == 0 {
                    let _ = client
                        .send_message(&ClientMessage::FileCancel {
                            transfer,
                            sender: String::new(),
                            reason: "nobody accepted in time".into(),
                        })
                        .await;
                    return Err(transfer_failed(
                        format!("nobody accepted {name} within {} s", answer_timeout.as_secs()),
                        "ask the receiver to accept (in chat: /accept), or use --answer-timeout",
                    ));
                }
                continue;
            }
            Err(_) => {
                return Err(transfer_failed(
                    "the receivers stopped confirming data".into(),
                    "check their connection and send the file again",
                ));
            }
        };
        match msg {
            ServerMessage::FileAnswered { transfer: t, by, accept } if t == transfer => {
                out.on_answer(&by, accept);
                eprintln!("{} {} {name}", escape(&by), if accept { "accepted" } else { "declined" });
                if !out.awaiting_answers() && out.receivers() == 0 {
                    return Err(transfer_failed(format!("{name} was declined"), "nothing was sent"));
                }
            }
            ServerMessage::FileAcked { transfer: t, by, received } if t == transfer => {
                out.on_ack(&by, received);
                bar.set_position(out.acked());
            }
            ServerMessage::FileCancelled { transfer: t, sender, by, reason } if t == transfer && sender == me => {
                if by == me {
                    let reason = escape(&reason);
                    return Err(transfer_failed(format!("the server stopped the transfer: {reason}"), "try again"));
                }
                let reason = escape(&reason);
                eprintln!("{} stopped receiving {name}: {reason}", escape(&by));
                out.on_cancel(&by);
                if out.receivers() == 0 && !out.awaiting_answers() {
                    return Err(transfer_failed(format!("every receiver stopped: {reason}"), "see above"));
                }
            }
            ServerMessage::Error { code, client_id, text } if client_id == transfer || client_id == 0 => {
                return Err(CliError::Client(cipherline_client::ClientError::Refused { code, text }));
            }
            _ => {}
        }
    }
    bar.finish_and_clear();
    eprintln!("sent {name} ({size} bytes); checked by {} receiver(s)", out.receivers());
    Ok(())
}

/// What happened to an incoming file, for printing.
pub enum FileEvent {
    /// An offer arrived (and was accepted or declined automatically, or
    /// awaits the user's decision).
    Offered {
        /// Sender.
        from: String,
        /// The id the user answers with (`/accept ID`), unique in this
        /// session; `None` when the offer was answered without asking.
        /// (Only chat asked; its version-1 offers move into the engine.)
        #[cfg_attr(not(test), allow(dead_code))]
        id: Option<u64>,
        /// Offered name.
        name: String,
        /// Announced size.
        size: u64,
        /// Whether it was accepted (None: the user must decide).
        accepted: Option<bool>,
        /// Why it was declined without asking (over a size limit, too many
        /// transfers, the file could not be created), if it was.
        reason: Option<String>,
    },
    /// A file arrived complete and checked.
    Received {
        /// Sender.
        from: String,
        /// Where it was stored.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Its SHA-256, hex.
        sha256: String,
        /// The verdict on the sender's signature over offer and hash
        /// (`Unsigned`: only the hash is known to match what was sent).
        status: MessageStatus,
    },
    /// A transfer failed or was cancelled.
    Failed {
        /// Sender.
        from: String,
        /// File name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Offers waiting for the user's answer, and transfers being received, at
/// most: further offers are declined (peers cannot grow this state).
pub const MAX_PENDING: usize = 64;

/// What an automatically accepting receiver (`listen --accept-files`) takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Largest single file accepted, in bytes (by the size the offer
    /// announces, which the server and the receiver both enforce).
    pub max_file: u64,
    /// Most bytes accepted in total during this run (files being received
    /// count; failed or cancelled ones are given back).
    pub max_total: u64,
}

impl Quota {
    /// No limit (chat, where a person accepts each offer seeing its size).
    pub const UNLIMITED: Quota = Quota { max_file: u64::MAX, max_total: u64::MAX };

    /// Why an offer of `size` bytes is refused when `used` bytes are taken
    /// already: the reason the sender is told.
    fn refusal(&self, size: u64, used: u64) -> Option<String> {
        if size > self.max_file {
            Some(format!("too large: this receiver accepts files of at most {} bytes", self.max_file))
        } else if used.saturating_add(size) > self.max_total {
            Some(format!(
                "over this receiver's quota: {} of {} bytes left",
                self.max_total.saturating_sub(used),
                self.max_total
            ))
        } else {
            None
        }
    }
}

/// An offer waiting for the user's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOffer {
    /// The id shown to the user (`/accept ID`).
    pub id: u64,
    /// Sender.
    pub from: String,
    /// The sender's transfer id.
    pub transfer: u64,
    /// Offered name (unescaped: escape before printing).
    pub name: String,
    /// Announced size.
    pub size: u64,
    /// The user or room it was offered to (part of what the sender signs).
    to: Target,
}

/// Incoming transfers and the directory they go to.
pub struct Downloads {
    /// Where accepted files are stored; `None` declines every offer unless
    /// the user accepts it (chat's /accept sets it per offer).
    pub auto_accept: Option<PathBuf>,
    quota: Quota,
    /// Bytes of accepted files this run (received or being received).
    used: u64,
    /// Offers awaiting the user's answer, by the id shown to the user.
    /// Transfer ids are chosen by each sender, so two senders' offers can
    /// share one; the user answers with these local ids instead.
    offers: BTreeMap<u64, PendingOffer>,
    /// The local id of each pending offer, by (sender, transfer id).
    ids: HashMap<(String, u64), u64>,
    /// The last local id given out: ids only count up, so an id never
    /// names a second offer in the same session.
    last_id: u64,
    active: HashMap<(String, u64), Incoming>,
}

impl Downloads {
    /// A new set; with `auto_accept`, every offer is accepted into that
    /// directory (within [`Downloads::with_quota`]'s limits, none by default).
    pub fn new(auto_accept: Option<PathBuf>) -> Self {
        Downloads {
            auto_accept,
            quota: Quota::UNLIMITED,
            used: 0,
            offers: BTreeMap::new(),
            ids: HashMap::new(),
            last_id: 0,
            active: HashMap::new(),
        }
    }

    /// The same, declining offers over `quota` with a reason the sender sees.
    #[must_use]
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Takes `size` bytes of this run's quota for a file received another
    /// way (an end-to-end file, fetched in the background); false, and
    /// nothing taken, if it is over `max_file` or does not fit `max_total`.
    pub fn reserve(&mut self, size: u64) -> bool {
        if self.quota.refusal(size, self.used).is_some() {
            return false;
        }
        self.used = self.used.saturating_add(size);
        true
    }

    /// Forgets every pending offer and transfer in progress (the connection
    /// they belonged to is gone), deleting partial files and giving their
    /// bytes back; files already received still count.
    pub fn drop_transfers(&mut self) {
        self.offers.clear();
        self.ids.clear();
        for (_, mut incoming) in self.active.drain() {
            incoming.discard();
            self.used = self.used.saturating_sub(incoming.size);
        }
    }

    /// Gives back the bytes of a transfer that will not complete (also
    /// what [`Downloads::reserve`] took, for a file that failed).
    pub fn release(&mut self, size: u64) {
        self.used = self.used.saturating_sub(size);
    }

    /// Handles a file message; returns what to tell the user and the
    /// messages to send back (answers, acks, cancels).
    /// A finished file's signature is checked against the key `peers`
    /// remembers for its sender.
    pub fn handle(
        &mut self,
        msg: &ServerMessage,
        decide: bool,
        peers: &mut Peers,
    ) -> (Option<FileEvent>, Vec<ClientMessage>) {
        match msg {
            ServerMessage::FileOffered { transfer, from, to, name, size } => {
                let key = (from.clone(), *transfer);
                if self.active.contains_key(&key) {
                    // An honest relay never re-offers a transfer being
                    // received (its id is in use until FileDone or a
                    // cancel): ignore it rather than mix two files.
                    return (None, Vec::new());
                }
                // A repeated offer replaces the pending one (which could no
                // longer be answered apart from it).
                self.forget_offer(&key);
                let offer = PendingOffer {
                    id: 0,
                    from: from.clone(),
                    transfer: *transfer,
                    name: name.clone(),
                    size: *size,
                    to: to.clone(),
                };
                // A refusal the sender is told (a receiver's FileCancel: a
                // FileAnswer carries no reason), or one only shown here.
                let mut told = None;
                let mut reason = None;
                let mut id = None;
                let accepted = if self.offers.len() + self.active.len() >= MAX_PENDING {
                    told = Some("the receiver has too many transfers pending; try again later".to_owned());
                    Some(false)
                } else if let Some(dir) = self.auto_accept.clone() {
                    told = self.quota.refusal(*size, self.used);
                    if told.is_some() {
                        Some(false)
                    } else {
                        let result = self.start(&offer, &dir);
                        if let Err(e) = &result {
                            reason = Some(format!("cannot store it: {e}"));
                        }
                        Some(result.is_ok())
                    }
                } else if decide {
                    Some(false)
                } else {
                    self.last_id += 1;
                    id = Some(self.last_id);
                    self.ids.insert(key, self.last_id);
                    self.offers.insert(self.last_id, PendingOffer { id: self.last_id, ..offer });
                    None
                };
                let mut reply = Vec::new();
                match (&told, accepted) {
                    (Some(why), _) => reply.push(ClientMessage::FileCancel {
                        transfer: *transfer,
                        sender: from.clone(),
                        reason: why.clone(),
                    }),
                    (None, Some(accept)) => {
                        reply.push(ClientMessage::FileAnswer { transfer: *transfer, sender: from.clone(), accept });
                    }
                    (None, None) => {}
                }
                let event = FileEvent::Offered {
                    from: from.clone(),
                    id,
                    name: name.clone(),
                    size: *size,
                    accepted,
                    reason: told.or(reason),
                };
                (Some(event), reply)
            }
            ServerMessage::FileData { transfer, from, data } => {
                let key = (from.clone(), *transfer);
                let Some(incoming) = self.active.get_mut(&key) else { return (None, Vec::new()) };
                match incoming.write(data) {
                    Ok(Some(received)) => {
                        (None, vec![ClientMessage::FileAck { transfer: *transfer, sender: from.clone(), received }])
                    }
                    Ok(None) => (None, Vec::new()),
                    Err(e) => self.fail(&key, &e),
                }
            }
            ServerMessage::FileDone { transfer, from, sha256, signed } => {
                let key = (from.clone(), *transfer);
                let Some(incoming) = self.active.remove(&key) else { return (None, Vec::new()) };
                let (size, name) = (incoming.size, incoming.name.clone());
                let status = peers.check_file(&incoming.facts(sha256), signed.as_ref());
                let finished = incoming.finish(sha256);
                if finished.is_err() {
                    self.release(size);
                }
                match finished {
                    Ok(path) => (
                        Some(FileEvent::Received { from: from.clone(), path, size, sha256: hex(sha256), status }),
                        vec![ClientMessage::FileAck { transfer: *transfer, sender: from.clone(), received: size }],
                    ),
                    Err(e) => {
                        let cancel = ClientMessage::FileCancel {
                            transfer: *transfer,
                            sender: from.clone(),
                            reason: e.to_string(),
                        };
                        (Some(FileEvent::Failed { from: from.clone(), name, reason: e.to_string() }), vec![cancel])
                    }
                }
            }
            ServerMessage::FileCancelled { transfer, sender, by, reason } => {
                let key = (sender.clone(), *transfer);
                if let Some(offer) = self.forget_offer(&key) {
                    // Withdrawn (or expired) before the user answered: say
                    // so, as its id no longer works.
                    let event = FileEvent::Failed {
                        from: sender.clone(),
                        name: offer.name,
                        reason: format!("offer {} is no longer open: {reason}", offer.id),
                    };
                    return (Some(event), Vec::new());
                }
                match self.active.remove(&key) {
                    Some(mut incoming) => {
                        incoming.discard();
                        self.release(incoming.size);
                        let event = FileEvent::Failed {
                            from: sender.clone(),
                            name: incoming.name.clone(),
                            reason: format!("{by} stopped it: {reason}"),
                        };
                        (Some(event), Vec::new())
                    }
                    None => (None, Vec::new()),
                }
            }
            _ => (None, Vec::new()),
        }
    }

    fn fail(&mut self, key: &(String, u64), e: &TransferError) -> (Option<FileEvent>, Vec<ClientMessage>) {
        let (name, size) = self.active.remove(key).map(|i| (i.name.clone(), i.size)).unwrap_or_default();
        self.release(size);
        let cancel = ClientMessage::FileCancel { transfer: key.1, sender: key.0.clone(), reason: e.to_string() };
        (Some(FileEvent::Failed { from: key.0.clone(), name, reason: e.to_string() }), vec![cancel])
    }

    /// Forgets the pending offer of (sender, transfer id), if any.
    fn forget_offer(&mut self, key: &(String, u64)) -> Option<PendingOffer> {
        let id = self.ids.remove(key)?;
        self.offers.remove(&id)
    }

    /// Takes the pending offer named by its local id (the newest with
    /// `None`) out of the pending set. (The version-1 offers a user
    /// answered were chat's; they move into the client engine.)
    #[cfg(test)]
    pub fn take_offer(&mut self, id: Option<u64>) -> Option<PendingOffer> {
        let id = match id {
            Some(id) => id,
            None => *self.offers.keys().next_back()?,
        };
        let offer = self.offers.remove(&id)?;
        self.ids.remove(&(offer.from.clone(), offer.transfer));
        Some(offer)
    }

    /// Starts receiving an offer (accepted automatically) into `dir`.
    pub fn start(&mut self, offer: &PendingOffer, dir: &Path) -> Result<(), TransferError> {
        let incoming = Incoming::create(dir, &offer.from, &offer.to, offer.transfer, &offer.name, offer.size)?;
        self.active.insert((offer.from.clone(), offer.transfer), incoming);
        self.used = self.used.saturating_add(offer.size);
        Ok(())
    }

    /// Pending offers, oldest first.
    #[cfg(test)]
    pub fn pending(&self) -> Vec<PendingOffer> {
        self.offers.values().cloned().collect()
    }
}

/// How a received file is described: "hash matches" alone unless the
/// sender signed offer and hash with the key on record for its name.
pub fn file_verdict(status: &MessageStatus) -> String {
    match status {
        MessageStatus::Verified => "hash matches; signed by the verified key of the sender".to_owned(),
        MessageStatus::Known => "hash matches; signed by the key remembered for the sender".to_owned(),
        MessageStatus::New(fp) => format!("hash matches; signed by a key seen for the first time ({fp}), not verified"),
        MessageStatus::Unsigned => "hash matches (unsigned: nothing shows who sent it)".to_owned(),
        MessageStatus::Invalid => {
            "hash matches, but the SIGNATURE IS INVALID: the relay may have replaced the file".to_owned()
        }
        MessageStatus::KeyChanged { .. } => {
            "hash matches, but NOT SIGNED BY THE KEY REMEMBERED for the sender: treat it as from someone else"
                .to_owned()
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn offer(transfer: u64, name: &str, size: u64) -> ServerMessage {
        ServerMessage::FileOffered {
            transfer,
            from: "mallory".into(),
            to: Target::User("bob".into()),
            name: name.into(),
            size,
        }
    }

    fn refusal(replies: &[ClientMessage]) -> Option<&str> {
        match replies {
            [ClientMessage::FileCancel { reason, .. }] => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn the_quota_declines_with_a_reason_and_gives_back_cancelled_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let quota = Quota { max_file: 100, max_total: 150 };
        let mut d = Downloads::new(Some(dir.path().to_owned())).with_quota(quota);
        let mut peers = Peers::load("127.0.0.1:5555", None).unwrap();
        let (_, r) = d.handle(&offer(1, "big", 101), true, &mut peers);
        assert!(refusal(&r).unwrap().contains("too large"), "{:?}", refusal(&r));
        let (_, r) = d.handle(&offer(2, "a", 100), true, &mut peers);
        assert!(matches!(r[..], [ClientMessage::FileAnswer { accept: true, .. }]));
        let (_, r) = d.handle(&offer(3, "b", 100), true, &mut peers);
        assert!(refusal(&r).unwrap().contains("50 of 150 bytes left"));
        // The sender cancels transfer 2: its bytes count no more.
        let cancel = ServerMessage::FileCancelled {
            transfer: 2,
            sender: "mallory".into(),
            by: "mallory".into(),
            reason: "x".into(),
        };
        d.handle(&cancel, true, &mut peers);
        let (_, r) = d.handle(&offer(4, "c", 100), true, &mut peers);
        assert!(matches!(r[..], [ClientMessage::FileAnswer { accept: true, .. }]));
        // A lost connection drops transfer 4 and its partial file.
        d.drop_transfers();
        assert_eq!(d.used, 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no partial files");
    }

    #[test]
    fn offers_get_local_ids_that_tell_senders_apart() {
        let mut d = Downloads::new(None);
        let mut peers = Peers::load("127.0.0.1:5555", None).unwrap();
        let from = |sender: &str| ServerMessage::FileOffered {
            transfer: 1,
            from: sender.into(),
            to: Target::User("bob".into()),
            name: format!("{sender}.txt"),
            size: 3,
        };
        let (a, _) = d.handle(&from("alice"), false, &mut peers);
        let (c, _) = d.handle(&from("carol"), false, &mut peers);
        assert!(matches!(a, Some(FileEvent::Offered { id: Some(1), .. })));
        assert!(matches!(c, Some(FileEvent::Offered { id: Some(2), .. })));
        assert_eq!(d.take_offer(Some(1)).unwrap().from, "alice", "the id names the offer, not the newest");
        assert!(d.take_offer(Some(1)).is_none(), "used up");
        // carol withdraws: the user is told, and the id is gone.
        let cancel = ServerMessage::FileCancelled {
            transfer: 1,
            sender: "carol".into(),
            by: "carol".into(),
            reason: "changed my mind".into(),
        };
        let (event, _) = d.handle(&cancel, false, &mut peers);
        assert!(
            matches!(event, Some(FileEvent::Failed { reason, .. }) if reason.contains("offer 2 is no longer open"))
        );
        assert!(d.pending().is_empty());
        // A new offer gets a new id, even with the same transfer id.
        let (a, _) = d.handle(&from("alice"), false, &mut peers);
        assert!(matches!(a, Some(FileEvent::Offered { id: Some(3), .. })));
        assert_eq!(d.take_offer(None).unwrap().id, 3);
    }

    #[test]
    fn pending_offers_are_capped() {
        let mut d = Downloads::new(None);
        let mut peers = Peers::load("127.0.0.1:5555", None).unwrap();
        for t in 0..MAX_PENDING as u64 {
            let (event, r) = d.handle(&offer(t, "f", 1), false, &mut peers);
            assert!(r.is_empty() && matches!(event, Some(FileEvent::Offered { accepted: None, .. })));
        }
        let (_, r) = d.handle(&offer(999, "f", 1), false, &mut peers);
        assert!(refusal(&r).unwrap().contains("too many"));
        assert_eq!(d.pending().len(), MAX_PENDING);
    }
}
