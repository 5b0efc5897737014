//! The client engine: one long-running object behind every front-end.
//!
//! An [`Engine`] owns the message connection (made by a [`Connector`] the
//! front-end supplies: it knows the identity, the password and the trust
//! policy), the peers' keys and verdicts, the local history and the
//! end-to-end engine ([`Conversations`]). It takes [`Command`]s through an
//! [`EngineHandle`] and hands out typed [`Event`]s on a channel.
//!
//! Contract:
//! - No front-end talks to the wire; the engine never prints.
//! - A connection lost for a reason that may pass is made again with
//!   backoff: [`FIRST_RETRY`] doubling to [`LAST_RETRY`], plus jitter
//!   ([`jittered`]); the rooms joined are joined again and stored messages
//!   asked for (Resume). A final refusal (a changed server key, the name,
//!   authentication) stops the engine with [`ConnectionState::Stopped`],
//!   as does any failure of the very first connection (a wrong address or
//!   a server not running should be reported, not retried forever).
//!   While reconnecting, commands are answered with an error at once,
//!   except those read from the local store (History, Conversations,
//!   Contacts), which are answered as ever.
//! - Every message is handed over once per id (this process's
//!   [`Seen`] and the local history's record of earlier runs), and a stored
//!   message is acknowledged to the relay only after its [`Event`] was
//!   handed to the event channel (so a crash in between delivers it again,
//!   never loses it). A front-end that holds events before passing them
//!   on (the daemon's socket, while no client is connected) asks for a
//!   [`Handover`]: then a message is acknowledged only once the front-end
//!   confirmed it.
//! - Direct messages are end to end when there is an end-to-end engine,
//!   as `send` and `chat` send them; rooms are end to end when this user is
//!   in the room's MLS group; anything else goes the open way. Files
//!   likewise: end to end where messages are, else version-1 offers over
//!   the message connection (open rooms; every conversation of a user
//!   without an Ed25519 key), which last only as long as the connection
//!   (engine/offers.rs).
//! - Every wait on the server is bounded (the client's reply timeouts, a
//!   time limit on each reconnection attempt); the event channel is
//!   bounded, so a slow front-end slows the engine rather than grow memory.
//!
//! Peer strings in events are raw: each front-end escapes them for its
//! medium (a terminal: [`crate::display::escape`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use cipherline_proto::app::{
    ClientMessage, Delivery, GroupDelivery, GroupEvent, NoticeKind, RoomKind, ServerMessage, Target, fold_name,
};
use cipherline_proto::crypto::sign::IdentityPublicKey;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::conversations::Conversations;
use crate::groups::Outcome;
use crate::local::Msg;
use crate::peers::{MessageStatus, Peers};
use crate::seen::Seen;
use crate::{Client, ClientError};

mod commands;
mod delivery;
mod event;
mod handover;
mod people;

pub use event::{ConnectionState, Event, GroupChange, Message, ReceiverAnswer, UploadFacts, Verified};
pub use handover::Handover;
pub use people::{Contact, ConversationSummary, HistoryEntry, KeyState, MAX_HISTORY, Member};
mod facts;
mod failure;
mod lookup;
mod offers;
mod once;
mod pace;
mod transfers;

pub use facts::{DownloadInfo, FileRef, MAX_RECEIVED, ReceivedFile};
pub use failure::FailReason;
pub use lookup::{KeyInfo, RoomSummary};
pub use offers::{ANSWER_WAIT, MAX_OFFERS, MAX_RECEIVING, OFFER_ID_STEP, is_offer_id};
pub use once::SendAck;
pub use transfers::{PROGRESS_EVERY, TransferInfo, TransferState};

/// The first pause before reconnecting, and the longest: the pause doubles
/// after each failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest pause between reconnection attempts.
pub const LAST_RETRY: Duration = Duration::from_secs(30);
/// One reconnection attempt (connect, join the rooms, resume) at most.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Why [`Engine::run`] stopped when every [`EngineHandle`] was dropped
/// (the front-end is done: not a failure).
pub const HANDLES_DROPPED: &str = "every handle was dropped";
/// Events waiting for the front-end at most (then the engine waits).
const EVENT_BUFFER: usize = 256;
/// Commands waiting for the engine at most.
const COMMAND_BUFFER: usize = 64;

/// `base` and up to a quarter of a second more, so that clients cut off
/// together do not all come back in the same instant.
#[must_use]
pub fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    base + Duration::from_millis(u64::from(nanos % 250))
}

/// A connection made by a [`Connector`]: the client after Hello, the
/// peers' keys, and the end-to-end engine if this user has one.
pub struct Session {
    /// The connected client.
    pub client: Client,
    /// Remembered peer keys (for the verdict on each message).
    pub peers: Peers,
    /// The end-to-end engine; `None` without an Ed25519 identity.
    pub e2e: Option<Conversations>,
}

/// Why a connection could not be made.
#[derive(Debug, Clone)]
pub struct ConnectFailure {
    /// What went wrong (never a secret).
    pub reason: String,
    /// Whether trying again later may get past it (the network, a server
    /// not up, busy or shutting down); false for a key, name or password.
    pub passing: bool,
}

/// A connection attempt under way.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = Result<Session, ConnectFailure>> + 'a>>;

/// Makes connections for the engine: the front-end's identity, password
/// and trust policy. `first` is true for the first connection (a
/// front-end may ask the user about the server's key then, never later).
pub trait Connector: 'static {
    /// Connects and says Hello.
    fn connect(&self, first: bool) -> Connecting<'_>;

    /// Connects and says Hello for one file transfer: a connection of its
    /// own beside the message connection (never the first: the server's
    /// key is known by then), so a large file never holds messages up.
    fn transfer(&self) -> Connecting<'_> {
        self.connect(false)
    }
}

/// What a command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A message was stored by the server under `id`.
    Sent {
        /// The server's message id.
        id: u64,
        /// Whether it went end to end.
        e2e: bool,
    },
    /// Done.
    Done,
    /// The engine's state.
    Status(Status),
    /// Messages of one conversation from the local history, oldest first.
    History(Vec<HistoryEntry>),
    /// The rooms joined and the direct conversations, newest first.
    Conversations(Vec<ConversationSummary>),
    /// A room's members, each with the state of its key.
    Members(Vec<Member>),
    /// The people whose keys are remembered.
    Contacts(Vec<Contact>),
    /// The identity key the server holds for `name`.
    Fingerprint {
        /// The user.
        name: String,
        /// Its fingerprint (`SHA256:` and hex).
        fingerprint: String,
    },
    /// The safety code to compare with `user` out of band.
    SafetyCode {
        /// The user.
        user: String,
        /// Twelve groups of five digits.
        code: String,
    },
    /// A transfer started (it runs in the background: [`Event::Transfer`]).
    Transfer {
        /// Its id.
        transfer: String,
    },
    /// The transfers not finished: those running and those recorded.
    Files(Vec<TransferInfo>),
    /// The connection's session, as [`Command::Session`] answers.
    Session(SessionSummary),
    /// What is known of a peer's key, as [`Command::KeyInfo`] answers.
    KeyInfo(KeyInfo),
    /// What a room is, as [`Command::RoomInfo`] answers.
    RoomInfo(RoomSummary),
    /// An end-to-end file's record, as [`Command::Download`] answers.
    Download(DownloadInfo),
    /// A version-1 file received, as [`Command::Received`] answers.
    Received(ReceivedFile),
    /// A conversation is ready for sending ([`Command::Prepare`]): the
    /// names removed from an end-to-end room's group because they had left.
    Prepared(Vec<String>),
    /// The server's whole acknowledgement of a text ([`Command::SendAcked`]).
    Acked(SendAck),
}

/// The session of the connection in use (what `/fingerprint` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The name the server accepted.
    pub name: String,
    /// The cipher suite in use (its PROTOCOL.md name).
    pub suite: String,
    /// The server key's fingerprint (`SHA256:` and hex); `None` when a
    /// shared password authenticated a server without a key.
    pub server_fingerprint: Option<String>,
    /// The same fingerprint in its short form, to read aloud.
    pub server_short: Option<String>,
    /// The handshake hash in lowercase hex: the same on both ends of this
    /// connection, so comparing it out of band detects a relay in the middle.
    pub handshake_hash: String,
    /// Whether the server keeps messages for this user while it is away
    /// (a stored queue: its name is owned by an identity key); false:
    /// live delivery only.
    pub stored: bool,
}

/// The engine's state, as [`Command::Status`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The name this client uses.
    pub name: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// The open rooms joined.
    pub rooms: Vec<String>,
    /// Whether direct messages go end to end.
    pub e2e: bool,
}

/// A command for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `text` to a user (end to end where possible).
    SendDirect {
        /// The user.
        user: String,
        /// The text.
        text: String,
    },
    /// Send `text` to a room.
    SendRoom {
        /// The room.
        room: String,
        /// The text.
        text: String,
    },
    /// Join a room (an open one, or a public end-to-end one).
    Join(String),
    /// Leave a room.
    Leave(String),
    /// The engine's state.
    Status,
    /// Messages of a conversation (a room, or the direct messages with a
    /// user) from the local history: at most `limit` (capped at
    /// [`MAX_HISTORY`]), oldest first, all recorded before the message
    /// with server id `before` if given (the `id` of the oldest entry
    /// held, to page back). Answered while reconnecting too.
    History {
        /// The room, or the other person.
        conversation: Target,
        /// Only entries recorded before this message id.
        before: Option<u64>,
        /// At most this many.
        limit: u32,
    },
    /// The rooms joined and the direct conversations (local; answered
    /// while reconnecting too).
    Conversations,
    /// A room's members with the state of each one's key.
    Members(String),
    /// The people whose keys are remembered (local; answered while
    /// reconnecting too).
    Contacts,
    /// The identity key the server holds for a user.
    Whois(String),
    /// The safety code with a user, or with `confirm` (the codes matched)
    /// their remembered key marked verified.
    Verify {
        /// The user.
        user: String,
        /// The user compared the code shown and it matched.
        confirm: bool,
    },
    /// Accept a user's changed key (compare the new safety code first).
    Trust(String),
    /// Create a room: end to end invite-only ([`RoomKind::Invite`]) or
    /// public ([`RoomKind::Public`]), or open ([`RoomKind::Open`]).
    Create {
        /// The room.
        room: String,
        /// What kind.
        kind: RoomKind,
    },
    /// Add users to an end-to-end room.
    Invite {
        /// The room.
        room: String,
        /// Who.
        users: Vec<String>,
    },
    /// Remove users from an end-to-end room.
    Kick {
        /// The room.
        room: String,
        /// Who.
        users: Vec<String>,
    },
    /// Send a file end to end to a user or an end-to-end room; answered
    /// at once with [`Reply::Transfer`], the upload runs in the background.
    SendFile {
        /// The user or room.
        to: Target,
        /// The file (a relative path is relative to the working directory).
        path: std::path::PathBuf,
    },
    /// Fetch an offered file (by [`Event::FileOffered`]'s id) into `dir`;
    /// answered at once with [`Reply::Transfer`], the download runs in the
    /// background (a few at once, the rest queued).
    GetFile {
        /// The offer's id.
        id: u64,
        /// The directory to save it in (an interrupted download continues
        /// in the directory it started in).
        dir: std::path::PathBuf,
    },
    /// The transfers not finished.
    Files,
    /// Cancel a transfer (by its id).
    CancelFile(String),
    /// Decline an offered file (by [`Event::FileOffered`]'s id): the relay
    /// (or, for a version-1 offer, its sender) is told this user does not
    /// want it, and it is forgotten.
    DeclineFile(u64),
    /// Ratchet the connection's keys forward now (PROTOCOL.md key update).
    Rekey,
    /// The connection's session: server key fingerprint, suite, handshake
    /// hash.
    Session,
    /// What is known of a user's key (remembered, verified, changed):
    /// what a line front-end names next to a safety code.
    KeyInfo(String),
    /// What a room is (its kind, this user's part in it), asked of the
    /// server: what `chat`'s `/join` decides by.
    RoomInfo(String),
    /// An end-to-end file's record (local): its transfer id, SHA-256 and
    /// whether it is still to be fetched (engine/facts.rs).
    Download(FileRef),
    /// A version-1 file received lately, by its transfer id (`o…`): its
    /// SHA-256 and the verdict on its signature.
    Received(String),
    /// Decline an offered file telling its sender why (a version-1 offer;
    /// an end-to-end one is declined as [`Command::DeclineFile`] does).
    RefuseFile {
        /// The offer's id.
        id: u64,
        /// Why (the sender sees it).
        reason: String,
    },
    /// One-shot (engine/once.rs): ready a conversation for sending as
    /// `send` does (an end-to-end room caught up and reconciled, an open
    /// one joined).
    Prepare(Target),
    /// One-shot: send `text` (as [`Command::SendDirect`] or
    /// [`Command::SendRoom`]), answered with [`Reply::Acked`].
    SendAcked {
        /// The user or room.
        to: Target,
        /// The text.
        text: String,
    },
    /// One-shot: from now on ask for stored messages and hand messages over.
    Receive,
    /// One-shot: leave the open rooms [`Command::Prepare`] joined that this
    /// user was not in.
    Finish,
}

type Request = (Command, oneshot::Sender<Result<Reply, ClientError>>);

/// Sends commands to a running engine; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Request>,
}

impl EngineHandle {
    /// Runs `command` and waits for its answer (an error if the engine
    /// stopped).
    pub async fn run(&self, command: Command) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ClientError::Engine("the engine stopped".to_owned());
        self.commands.send((command, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Sends a direct message; its id.
    pub async fn send_direct(&self, user: &str, text: &str) -> Result<Reply, ClientError> {
        self.run(Command::SendDirect { user: user.to_owned(), text: text.to_owned() }).await
    }

    /// Sends into a room; its id.
    pub async fn send_room(&self, room: &str, text: &str) -> Result<Reply, ClientError> {
        self.run(Command::SendRoom { room: room.to_owned(), text: text.to_owned() }).await
    }

    /// Joins a room.
    pub async fn join(&self, room: &str) -> Result<Reply, ClientError> {
        self.run(Command::Join(room.to_owned())).await
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) -> Result<Reply, ClientError> {
        self.run(Command::Leave(room.to_owned())).await
    }

    /// The engine's state.
    pub async fn status(&self) -> Result<Reply, ClientError> {
        self.run(Command::Status).await
    }
}

/// The engine. Make one with [`Engine::new`], then drive it with
/// [`Engine::run`] (on a `LocalSet`: the connector's futures need not be
/// `Send`).
pub struct Engine<C: Connector> {
    connector: Rc<C>,
    server: String,
    commands: mpsc::Receiver<Request>,
    events: mpsc::Sender<Event>,
    /// Open rooms joined: folded name to spelling.
    rooms: BTreeMap<String, String>,
    /// Ids handed over by this process.
    seen: Seen,
    /// The history's newest entry when the engine started.
    since: Option<u64>,
    name: String,
    /// The store and key state behind people and rooms commands.
    people: people::People,
    /// Set by [`Engine::handover`]: how many message events the front-end
    /// says it handed on, and how many were emitted.
    handover: Option<(tokio::sync::watch::Receiver<u64>, u64)>,
    /// File transfers running in the background.
    transfers: transfers::Transfers,
    /// Version-1 files: offers, and transfers over the message connection.
    offers: offers::Offers,
    /// Version-1 files received lately, for [`Command::Received`].
    received: facts::Received,
    /// One-shot mode (engine/once.rs).
    once: once::Once,
}

/// The live connection and what came with it.
struct Live {
    client: Client,
    peers: Peers,
    e2e: Option<Conversations>,
    keepalive: Duration,
    /// The server's message bucket as counted here (engine/pace.rs).
    pace: pace::Pace,
}

impl<C: Connector> Engine<C> {
    /// An engine connecting through `connector` to `server` (the address,
    /// as the local history names it), joining `rooms` once connected; its
    /// handle and its event stream.
    pub fn new(connector: C, server: String, rooms: &[String]) -> (Self, EngineHandle, mpsc::Receiver<Event>) {
        let (ctx, crx) = mpsc::channel(COMMAND_BUFFER);
        let (etx, erx) = mpsc::channel(EVENT_BUFFER);
        let rooms = rooms.iter().map(|r| (fold_name(r), r.clone())).collect();
        let engine = Engine {
            connector: Rc::new(connector),
            server,
            commands: crx,
            events: etx,
            rooms,
            seen: Seen::new(),
            since: None,
            name: String::new(),
            people: people::People::default(),
            handover: None,
            transfers: transfers::Transfers::default(),
            offers: offers::Offers::default(),
            received: facts::Received::default(),
            once: once::Once::default(),
        };
        (engine, EngineHandle { commands: ctx }, erx)
    }

    /// Runs until a final failure, or until every handle and the event
    /// stream are dropped. Returns why it stopped.
    pub async fn run(mut self) -> String {
        let reason = self.drive().await;
        let _ = self.events.send(Event::Connection(ConnectionState::Stopped { reason: reason.clone() })).await;
        reason
    }

    async fn drive(&mut self) -> String {
        let _ = self.events.send(Event::Connection(ConnectionState::Connecting)).await;
        let mut first = true;
        let mut backoff = FIRST_RETRY;
        let mut nonce = 0u64;
        loop {
            let mut live = match self.attempt(first).await {
                Ok(live) => live,
                Err(f) if f.passing && !first => {
                    backoff = (backoff * 2).min(LAST_RETRY);
                    if let Some(stop) = self.pause(&f.reason, backoff).await {
                        return stop;
                    }
                    continue;
                }
                Err(f) => return f.reason,
            };
            first = false;
            let up_since = Instant::now();
            self.name = live.client.name().to_owned();
            if !self.emit(Event::Connection(ConnectionState::Connected { name: self.name.clone() })).await {
                return "the front-end went away".to_owned();
            }
            self.resume_transfers(&live);
            let why = loop {
                let wake = self.offers.wake();
                let step = tokio::select! {
                    biased;
                    request = self.commands.recv() => match request {
                        Some((command, reply)) => {
                            let (answer, lost) = self.command(&mut live, command).await;
                            let _ = reply.send(answer);
                            lost.map_or(Step::Go, Step::Lost)
                        }
                        None => Step::Stop(HANDLES_DROPPED.to_owned()),
                    },
                    msg = live.client.recv() => match msg {
                        Ok(msg) => self.incoming(&mut live, msg).await,
                        Err(e) => Step::from_error(&e),
                    },
                    () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                        self.offer_turn(&mut live).await
                    }
                    () = tokio::time::sleep(live.keepalive) => {
                        nonce += 1;
                        match live.client.ping(nonce).await {
                            Ok(()) => Step::Go,
                            Err(e) => Step::from_error(&e),
                        }
                    }
                };
                match step {
                    Step::Go => {}
                    Step::Lost(why) if self.once.on() => return why,
                    Step::Lost(why) => break why,
                    Step::Stop(why) => {
                        // Version-1 transfers end here (partial files deleted).
                        self.offers = offers::Offers::default();
                        let _ = live.client.flush_received().await;
                        let _ = tokio::time::timeout(Duration::from_secs(2), live.client.close()).await;
                        return why;
                    }
                }
            };
            self.offers_lost().await;
            // A connection that held for a while starts the backoff over;
            // one lost soon after it was made keeps it growing.
            if up_since.elapsed() >= LAST_RETRY {
                backoff = FIRST_RETRY;
            }
            if let Some(stop) = self.pause(&why, backoff).await {
                return stop;
            }
        }
    }

    /// Reports the loss and waits `backoff` (with jitter), answering
    /// commands meanwhile with an error; `Some` to stop.
    async fn pause(&mut self, why: &str, backoff: Duration) -> Option<String> {
        let wait = jittered(backoff);
        let state = ConnectionState::Reconnecting { reason: why.to_owned(), retry_in: wait };
        if !self.emit(Event::Connection(state)).await {
            return Some("the front-end went away".to_owned());
        }
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return None,
                request = self.commands.recv() => match request {
                    Some((Command::Status, reply)) => {
                        let _ = reply.send(Ok(Reply::Status(self.status(None))));
                    }
                    Some((command, reply)) if people::is_local(&command) => { let _ = reply.send(self.local(command)); }
                    Some((_, reply)) => {
                        let _ = reply.send(Err(ClientError::Engine("not connected; reconnecting".to_owned())));
                    }
                    None => return Some(HANDLES_DROPPED.to_owned()),
                },
            }
        }
    }

    /// One connection attempt: connect, Receipts, join the rooms, publish
    /// key packages, Resume; all within [`ATTEMPT_TIMEOUT`].
    async fn attempt(&mut self, first: bool) -> Result<Live, ConnectFailure> {
        let rooms: Vec<String> = self.rooms.values().cloned().collect();
        let resume = self.once.resumes();
        let connecting = self.connector.connect(first);
        let attempt = async {
            let Session { mut client, peers, e2e } = connecting.await?;
            let fail = |e: ClientError| ConnectFailure { passing: passing(&e), reason: e.to_string() };
            client.send_message(&ClientMessage::Receipts { enabled: true }).await.map_err(fail)?;
            let mut refused = Vec::new();
            let joined = rooms.len();
            for room in rooms {
                match client.join(&room).await {
                    Ok(()) => {}
                    // One room refused (a limit, say) is no reason to stop.
                    Err(ClientError::Refused { code, .. }) if !code.is_fatal() => refused.push(room),
                    Err(e) => return Err(fail(e)),
                }
            }
            if let Some(e2e) = &e2e
                && resume
            {
                // Others need one to start a conversation; not fatal. (A
                // one-shot engine leaves that to a client that receives.)
                let _ = e2e.publish_key_packages(&mut client).await;
            }
            if resume {
                client.resume(0).await.map_err(fail)?;
            }
            let keepalive = Duration::from_secs(u64::from(client.idle_timeout_secs().max(2)) / 2);
            // Hello, Receipts, the Joins, key packages and Resume took tokens.
            let sent = u32::try_from(joined).unwrap_or(u32::MAX).saturating_add(if e2e.is_some() { 5 } else { 3 });
            let pace = pace::Pace::new(client.info().rates, sent);
            Ok((Live { client, peers, e2e, keepalive, pace }, refused))
        };
        let (live, refused) = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(result) => result?,
            Err(_) => return Err(ConnectFailure { reason: "timed out reconnecting".to_owned(), passing: true }),
        };
        for room in refused {
            self.rooms.remove(&fold_name(&room));
        }
        if self.since.is_none() {
            self.since = Some(live.peers.store().and_then(|s| s.watermark().ok()).unwrap_or(u64::MAX));
        }
        self.people.connected(&live);
        Ok(live)
    }

    fn status(&self, live: Option<&Live>) -> Status {
        Status {
            name: self.name.clone(),
            connected: live.is_some(),
            rooms: self.rooms.values().cloned().collect(),
            e2e: live.is_some_and(|l| l.e2e.is_some()),
        }
    }

    /// Hands an event over; false if nobody listens any more.
    async fn emit(&self, event: Event) -> bool {
        self.events.send(event).await.is_ok()
    }
}

/// What one step of the loop leads to.
enum Step {
    Go,
    /// The connection is gone for a reason that may pass.
    Lost(String),
    /// Stop for good.
    Stop(String),
}

impl Step {
    fn from_error(e: &ClientError) -> Step {
        if passing(e) { Step::Lost(e.to_string()) } else { Step::Stop(e.to_string()) }
    }
}

/// Whether reconnecting may get past `e`: the network, a server not up
/// (yet), busy or ending sessions. Never a key, password or name problem,
/// a peer breaking the protocol, or a local file.
#[must_use]
pub fn passing(e: &ClientError) -> bool {
    use cipherline_net::NetError;
    use cipherline_proto::{AlertCode as A, Error as P};
    match e {
        ClientError::Connect { .. } | ClientError::Timeout(_) => true,
        ClientError::Refused { code, .. } => passing_code(*code),
        ClientError::Net(n) => matches!(
            n,
            NetError::Io(_)
                | NetError::Timeout(_)
                | NetError::Closed
                | NetError::Protocol(
                    P::PeerClosed | P::Truncated | P::AlertReceived(A::ServerBusy | A::Timeout | A::CloseNotify)
                )
        ),
        _ => false,
    }
}

/// The server's reasons for ending a session that a new session gets past.
#[must_use]
pub fn passing_code(code: cipherline_proto::app::ErrorCode) -> bool {
    use cipherline_proto::app::ErrorCode;
    matches!(code, ErrorCode::ShuttingDown | ErrorCode::IdleTimeout | ErrorCode::TooSlow | ErrorCode::ServerFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_is_small() {
        for _ in 0..100 {
            let d = jittered(FIRST_RETRY);
            assert!(d >= FIRST_RETRY && d < FIRST_RETRY + Duration::from_millis(250));
        }
    }

    #[test]
    fn verdicts_have_the_labels_front_ends_show() {
        let labels: Vec<_> = [MessageStatus::Known, MessageStatus::Verified, MessageStatus::Unsigned]
            .iter()
            .map(|s| Verified::of(s).as_str())
            .collect();
        assert_eq!(labels, ["known", "verified", "unsigned"]);
    }

    #[test]
    fn only_failures_that_may_pass_are_reconnected_over() {
        use cipherline_proto::app::ErrorCode;
        assert!(passing(&ClientError::Net(cipherline_net::NetError::Closed)));
        assert!(passing(&ClientError::Refused { code: ErrorCode::ShuttingDown, text: String::new() }));
        assert!(!passing(&ClientError::Refused { code: ErrorCode::NameTaken, text: String::new() }));
        assert!(!passing(&ClientError::Untrusted("changed".into())));
    }

    /// A connector whose every attempt fails as `passing` says.
    struct Failing(bool);

    impl Connector for Failing {
        fn connect(&self, _: bool) -> Connecting<'_> {
            let passing = self.0;
            Box::pin(async move { Err(ConnectFailure { reason: "no server".to_owned(), passing }) })
        }
    }

    #[tokio::test]
    async fn a_final_failure_stops_the_engine_and_says_why() {
        let (engine, _handle, mut events) = Engine::new(Failing(false), "s".into(), &[]);
        let why = engine.run().await;
        assert_eq!(why, "no server");
        assert_eq!(events.recv().await, Some(Event::Connection(ConnectionState::Connecting)));
        assert_eq!(
            events.recv().await,
            Some(Event::Connection(ConnectionState::Stopped { reason: "no server".to_owned() }))
        );
    }
}
