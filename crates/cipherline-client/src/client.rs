//! A connected, named client, whole or split into a reader and a writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cipherline_net::{ChannelReader, ChannelWriter, NetError};
use cipherline_proto::app::{ClientMessage, QueueLimits, RateLimits, ServerMessage, Target};
use cipherline_proto::crypto::kem::ServerPublicKey;
use cipherline_proto::crypto::sign::IdentityKey;
use cipherline_proto::signature::{self, FileFacts};
use cipherline_proto::{ClientConfig, Suite};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

use crate::ClientError;

/// Decides whether to trust the key a server presented, before anything
/// secret is sent to it.
pub trait TrustCheck {
    /// `Ok` to continue; `Err` with a message for the user to refuse.
    fn check(&self, addr: &str, key: &ServerPublicKey) -> Result<(), String>;

    /// The server presented no key (a password-only server; reached only
    /// with [`ClientConfig::password_only`]): `Ok` to continue. The default
    /// refuses, so a check that knows only keys (a pin, a known-servers
    /// entry) is never skipped for want of a key.
    fn check_keyless(&self, addr: &str) -> Result<(), String> {
        Err(format!("server {addr} presented no key (password-only), and no rule here accepts a keyless server"))
    }
}

impl<F: Fn(&str, &ServerPublicKey) -> Result<(), String>> TrustCheck for F {
    fn check(&self, addr: &str, key: &ServerPublicKey) -> Result<(), String> {
        self(addr, key)
    }
}

/// How to connect.
#[derive(Clone)]
pub struct Options {
    /// The protocol configuration (suites, identity key).
    pub config: Arc<ClientConfig>,
    /// Limit for the TCP connect.
    pub connect_timeout: Duration,
    /// Limit for each handshake step and for each request's reply.
    pub reply_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Arc::new(ClientConfig::default()),
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// What was agreed in the handshake and at Hello.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The name the server accepted.
    pub name: String,
    /// The suite in use.
    pub suite: Suite,
    /// The server's key (its fingerprint is what the user checked); `None`
    /// for a password-only server.
    pub server_key: Option<ServerPublicKey>,
    /// The handshake hash, the same on both ends.
    pub handshake_hash: [u8; 32],
    /// The server's largest accepted message, in bytes.
    pub max_message: u32,
    /// Seconds of silence after which the server drops a client.
    pub idle_timeout_secs: u32,
    /// The rate limits the server holds this client to (from Welcome).
    pub rates: RateLimits,
    /// What the server keeps for this client while it is offline; `None`:
    /// live delivery only (a client without an identity key, or a server
    /// without a store).
    pub queue: Option<QueueLimits>,
}

/// Stored messages handled before a Received is sent for them (the server
/// sends at most 256 unacknowledged ones, PROTOCOL.md §13.9).
const ACK_EVERY: u64 = 32;

/// Messages that arrived while a request waited for its reply are kept for
/// [`ClientReader::recv`], up to this many...
const MAX_PENDING: usize = 1024;
/// ... and this many bytes (as encoded); beyond either the oldest are
/// dropped, so a busy room cannot grow a client that never reads them (a
/// `send` in a loud room) without bound.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// The receiving half of a client.
pub struct ClientReader {
    chan: ChannelReader<OwnedReadHalf>,
    /// Kept messages, each with its encoded size.
    pending: VecDeque<(ServerMessage, usize)>,
    pending_bytes: usize,
    dropped: u64,
    /// Shared with the writer: one less than the lowest queue position of
    /// a stored message dropped unread, so that a cumulative Received never
    /// covers it and the server delivers it again next time.
    ceiling: Arc<AtomicU64>,
}

/// The sending half of a client.
pub struct ClientWriter {
    chan: ChannelWriter<OwnedWriteHalf>,
    next_id: u64,
    reply_timeout: Duration,
    /// Signs every Send when present (PROTOCOL.md §13.7).
    identity: Option<Arc<IdentityKey>>,
    /// The name the server accepted (part of what is signed).
    name: String,
    /// The server's largest accepted message (from Welcome; 0 before it).
    max_message: u32,
    /// The highest queue position handled, and the highest acknowledged.
    handled: u64,
    acked: u64,
    /// See [`ClientReader`]'s `ceiling`.
    ceiling: Arc<AtomicU64>,
}

/// The server's acknowledgement of a sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The server's id for the message (recipients see the same).
    pub id: u64,
    /// Server time it was accepted, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Recipients it was stored for; each one's client acknowledges it.
    pub queued: u32,
    /// Recipients it reached live only.
    pub live: u32,
    /// Recipients whose queue was full: it was not kept for them.
    pub full: u32,
}

/// A client that has completed the handshake and been welcomed by name.
pub struct Client {
    reader: ClientReader,
    writer: ClientWriter,
    info: SessionInfo,
}

impl ClientReader {
    /// The next message from the server. Cancel-safe and unbounded: wrap it
    /// in a timeout or a `select!`.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        if let Some((msg, size)) = self.pending.pop_front() {
            self.pending_bytes -= size;
            return Ok(msg);
        }
        let bytes = self.chan.recv().await?;
        decode(&bytes)
    }

    /// Messages dropped because too many arrived while requests waited for
    /// their replies and nobody read them.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keeps a message for [`ClientReader::recv`], within the bounds.
    fn keep(&mut self, msg: ServerMessage, size: usize) {
        self.pending.push_back((msg, size));
        self.pending_bytes += size;
        while self.pending.len() > MAX_PENDING || self.pending_bytes > MAX_PENDING_BYTES {
            let Some((msg, size)) = self.pending.pop_front() else { break };
            self.pending_bytes -= size;
            self.dropped += 1;
            if let ServerMessage::Message(d) = msg
                && d.seq != 0
            {
                self.ceiling.fetch_min(d.seq - 1, Ordering::Relaxed);
            }
        }
    }

    fn new(chan: ChannelReader<OwnedReadHalf>, ceiling: Arc<AtomicU64>) -> Self {
        ClientReader { chan, pending: VecDeque::new(), pending_bytes: 0, dropped: 0, ceiling }
    }
}

/// Decodes a server message and checks every name in it against the name
/// grammar: a relay that sends any other name (one with a space could forge
/// a known_peers line; control characters, a display line) is misbehaving,
/// and the session ends with a protocol error.
fn decode(bytes: &[u8]) -> Result<ServerMessage, ClientError> {
    let msg = ServerMessage::decode(bytes).map_err(|e| NetError::Protocol(e.into()))?;
    msg.check_names().map_err(|e| NetError::Protocol(e.into()))?;
    Ok(msg)
}

impl ClientWriter {
    /// Sends any client message as it is; [`ClientError::TooLong`] (nothing
    /// sent, the session goes on) if its encoding is over the server's
    /// `max_message`, which the server would answer by ending the session.
    pub async fn send_message(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        let bytes = msg.encode().map_err(NetError::Protocol)?;
        // 0 until Welcome announces the limit (Hello is always small).
        if self.max_message != 0 && bytes.len() > usize::try_from(self.max_message).unwrap_or(usize::MAX) {
            return Err(ClientError::TooLong { size: bytes.len(), max: self.max_message });
        }
        timeout(self.reply_timeout, self.chan.send(&bytes)).await.map_err(|_| ClientError::Timeout("sending"))??;
        Ok(())
    }

    /// Sends text, signed with the identity key if there is one; returns
    /// the id the server's Ack (or Error) will carry.
    pub async fn send(&mut self, to: Target, text: &str) -> Result<u64, ClientError> {
        let id = self.next_id();
        let signed = match &self.identity {
            Some(key) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                let now = u64::try_from(now).unwrap_or(u64::MAX);
                Some(signature::sign(key, &self.name, &to, id, now, text).map_err(NetError::Protocol)?)
            }
            None => None,
        };
        self.send_message(&ClientMessage::Send { id, to, text: text.to_owned(), signed }).await?;
        Ok(id)
    }

    /// Ends a file transfer this client offered to `to` as `file_name` of
    /// `size` bytes: FileEnd with the SHA-256, signed with the identity key
    /// if there is one (PROTOCOL.md §13.7), so receivers can tell the offer
    /// and the data came from this key and not from the relay.
    pub async fn file_end(
        &mut self,
        transfer: u64,
        to: &Target,
        file_name: &str,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<(), ClientError> {
        let signature = match &self.identity {
            Some(key) => {
                let facts = FileFacts { sender: &self.name, to, transfer, name: file_name, size, sha256: &sha256 };
                Some(signature::sign_file(key, &facts).map_err(NetError::Protocol)?)
            }
            None => None,
        };
        self.send_message(&ClientMessage::FileEnd { transfer, sha256, signature }).await
    }

    /// Records that the stored message at queue position `seq` (a
    /// delivery's `seq`; 0 for a live one, which needs nothing) was handled
    /// — shown, written out, saved — and tells the server every
    /// [`ACK_EVERY`] messages. Call [`ClientWriter::flush_received`] when
    /// idle and before closing, so the last ones are acknowledged too. A
    /// message acknowledged is deleted by the server: call this only once
    /// it is safe to lose the server's copy.
    pub async fn handled(&mut self, seq: u64) -> Result<(), ClientError> {
        self.handled = self.handled.max(seq);
        if self.handled.saturating_sub(self.acked) >= ACK_EVERY {
            self.flush_received().await?;
        }
        Ok(())
    }

    /// Acknowledges every stored message handled so far (if any is not yet).
    pub async fn flush_received(&mut self) -> Result<(), ClientError> {
        let upto = self.handled.min(self.ceiling.load(Ordering::Relaxed));
        if upto > self.acked {
            self.send_message(&ClientMessage::Received { upto }).await?;
            self.acked = upto;
        }
        Ok(())
    }

    /// The highest queue position acknowledged to the server.
    #[must_use]
    pub fn acknowledged(&self) -> u64 {
        self.acked
    }

    /// Whether messages were handled that are not yet acknowledged.
    #[must_use]
    pub fn has_unacknowledged(&self) -> bool {
        self.handled.min(self.ceiling.load(Ordering::Relaxed)) > self.acked
    }

    /// A fresh id for a Send or a file transfer.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Ratchets the session keys both ways now.
    pub async fn rekey(&mut self) -> Result<(), ClientError> {
        timeout(self.reply_timeout, self.chan.rekey()).await.map_err(|_| ClientError::Timeout("sending"))??;
        Ok(())
    }

    /// Acknowledges what was handled, says Goodbye and closes the sending
    /// side cleanly.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.flush_received().await?;
        self.send_message(&ClientMessage::Goodbye).await?;
        timeout(self.reply_timeout, self.chan.close()).await.map_err(|_| ClientError::Timeout("closing"))??;
        Ok(())
    }
}

impl Client {
    /// Connects to `addr`, checks the server key with `trust`, completes the
    /// handshake and says Hello as `name`.
    pub async fn connect(
        addr: &str,
        name: &str,
        options: &Options,
        trust: &dyn TrustCheck,
    ) -> Result<Self, ClientError> {
        let stream = match timeout(options.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ClientError::Connect { addr: addr.to_owned(), source }),
            Err(_) => return Err(ClientError::Timeout("connecting")),
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let pending = cipherline_net::connect(read, write, options.config.clone(), options.reply_timeout).await?;
        // A password-only server has no key to check: the password, proven
        // by both sides in the handshake, authenticates it instead. Whether
        // a keyless server is acceptable here is still the caller's call.
        let verdict = match pending.server_key() {
            Some(key) => trust.check(addr, key),
            None => trust.check_keyless(addr),
        };
        if let Err(why) = verdict {
            pending.refuse().await;
            return Err(ClientError::Untrusted(why));
        }
        let chan = pending.trust(options.reply_timeout).await?;
        let (suite, server_key, handshake_hash) =
            chan.with_session(|s| (s.suite(), s.server_key().cloned(), *s.handshake_hash()));
        let (reader, writer) = chan.split();
        let ceiling = Arc::new(AtomicU64::new(u64::MAX));
        let mut client = Client {
            reader: ClientReader::new(reader, ceiling.clone()),
            writer: ClientWriter {
                chan: writer,
                next_id: 0,
                reply_timeout: options.reply_timeout,
                identity: options.config.identity.clone(),
                name: String::new(),
                max_message: 0,
                handled: 0,
                acked: 0,
                ceiling,
            },
            info: SessionInfo {
                name: String::new(),
                suite,
                server_key,
                handshake_hash,
                max_message: 0,
                idle_timeout_secs: 0,
                rates: RateLimits::default(),
                queue: None,
            },
        };
        client.writer.send_message(&ClientMessage::Hello { name: name.to_owned() }).await?;
        match client.reply(|m| matches!(m, ServerMessage::Welcome { .. }), |_| false).await? {
            // The name is part of every signature this client makes: a relay
            // must not be able to choose it.
            ServerMessage::Welcome { name: welcomed, .. } if welcomed != name => Err(ClientError::WrongName),
            ServerMessage::Welcome { name, max_message, idle_timeout_secs, rates, queue } => {
                client.writer.name.clone_from(&name);
                client.writer.max_message = max_message;
                client.info.name = name;
                client.info.max_message = max_message;
                client.info.idle_timeout_secs = idle_timeout_secs;
                client.info.rates = rates;
                client.info.queue = queue;
                Ok(client)
            }
            _ => Err(ClientError::Unexpected),
        }
    }

    /// The fingerprint of the identity key this client proved and signs
    /// with, if it has one (its side of a safety code).
    #[must_use]
    pub fn identity_fingerprint(&self) -> Option<[u8; 32]> {
        self.writer.identity.as_ref().map(|k| k.public_key().fingerprint())
    }

    /// The name the server accepted.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Seconds of silence after which the server drops this client (send
    /// [`Client::ping`] more often than this when idle).
    #[must_use]
    pub fn idle_timeout_secs(&self) -> u32 {
        self.info.idle_timeout_secs
    }

    /// Suite, server key, handshake hash and the server's limits.
    #[must_use]
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Splits into halves for separate tasks (messages already received but
    /// not yet read stay with the reader).
    #[must_use]
    pub fn split(self) -> (ClientReader, ClientWriter, SessionInfo) {
        (self.reader, self.writer, self.info)
    }

    /// The sending half, for fire-and-forget messages.
    pub fn writer(&mut self) -> &mut ClientWriter {
        &mut self.writer
    }

    /// Sends any client message as it is (no reply awaited).
    pub async fn send_message(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.writer.send_message(msg).await
    }

    /// Waits for the first message `want` accepts; an Error that `refers`
    /// accepts (or one with no message id) is returned as `Refused`. Other
    /// messages arriving meanwhile are kept for [`Client::recv`].
    pub(crate) async fn reply(
        &mut self,
        want: impl Fn(&ServerMessage) -> bool,
        refers: impl Fn(u64) -> bool,
    ) -> Result<ServerMessage, ClientError> {
        let deadline = tokio::time::Instant::now() + self.writer.reply_timeout;
        loop {
            let bytes = match tokio::time::timeout_at(deadline, self.reader.chan.recv()).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => break Err(e.into()),
                Err(_) => break Err(ClientError::Timeout("waiting for the server's reply")),
            };
            let msg = match decode(&bytes) {
                Ok(msg) => msg,
                Err(e) => break Err(e),
            };
            match msg {
                ref m if want(m) => break Ok(msg),
                ServerMessage::Error { code, client_id, text } if client_id == 0 || refers(client_id) => {
                    break Err(ClientError::Refused { code, text });
                }
                other => self.reader.keep(other, bytes.len()),
            }
        }
    }

    /// Joins a room and waits until the server confirms.
    pub async fn join(&mut self, room: &str) -> Result<(), ClientError> {
        self.send_message(&ClientMessage::Join { room: room.to_owned() }).await?;
        self.reply(|m| matches!(m, ServerMessage::Joined { room: r } if r == room), |_| false).await.map(drop)
    }

    /// Leaves a room and waits until the server confirms.
    pub async fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.send_message(&ClientMessage::Leave { room: room.to_owned() }).await?;
        self.reply(|m| matches!(m, ServerMessage::Left { room: r } if r == room), |_| false).await.map(drop)
    }

    /// Lists a room's members.
    pub async fn who(&mut self, room: &str) -> Result<Vec<String>, ClientError> {
        self.send_message(&ClientMessage::Who { room: room.to_owned() }).await?;
        match self.reply(|m| matches!(m, ServerMessage::Members { room: r, .. } if r == room), |_| false).await? {
            ServerMessage::Members { names, .. } => Ok(names),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Sends text without waiting; returns the id the server's Ack will carry.
    pub async fn send(&mut self, to: Target, text: &str) -> Result<u64, ClientError> {
        self.writer.send(to, text).await
    }

    /// Sends text and waits for the server's acknowledgement; returns the
    /// server's message id.
    pub async fn send_acked(&mut self, to: Target, text: &str) -> Result<u64, ClientError> {
        self.send_with_ack(to, text).await.map(|ack| ack.id)
    }

    /// Sends text and waits for the server's acknowledgement; returns it
    /// whole (id, time, and how many recipients it was stored for).
    pub async fn send_with_ack(&mut self, to: Target, text: &str) -> Result<Acked, ClientError> {
        let id = self.send(to, text).await?;
        match self.reply(|m| matches!(m, ServerMessage::Ack { client_id, .. } if *client_id == id), |c| c == id).await?
        {
            ServerMessage::Ack { id, timestamp_ms, queued, live, full, .. } => {
                Ok(Acked { id, timestamp_ms, queued, live, full })
            }
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Asks for this user's stored messages, after queue position `after`
    /// (the highest this client already handled, 0 for all): until then a
    /// connection gets none (PROTOCOL.md §13.9). A no-op where nothing is
    /// stored for this client.
    pub async fn resume(&mut self, after: u64) -> Result<(), ClientError> {
        if self.info.queue.is_none() {
            return Ok(());
        }
        self.writer.handled = self.writer.handled.max(after);
        self.writer.acked = self.writer.acked.max(after);
        self.send_message(&ClientMessage::Resume { after }).await
    }

    /// Records a handled stored message (see [`ClientWriter::handled`]).
    pub async fn handled(&mut self, seq: u64) -> Result<(), ClientError> {
        self.writer.handled(seq).await
    }

    /// Acknowledges every stored message handled so far.
    pub async fn flush_received(&mut self) -> Result<(), ClientError> {
        self.writer.flush_received().await
    }

    /// Whether messages were handled that are not yet acknowledged.
    #[must_use]
    pub fn has_unacknowledged(&self) -> bool {
        self.writer.has_unacknowledged()
    }

    /// Ends a file transfer, signed if there is an identity key (see
    /// [`ClientWriter::file_end`]).
    pub async fn file_end(
        &mut self,
        transfer: u64,
        to: &Target,
        file_name: &str,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<(), ClientError> {
        self.writer.file_end(transfer, to, file_name, size, sha256).await
    }

    /// Messages dropped because too many arrived, unread, while requests
    /// waited for their replies (see [`ClientReader::dropped`]).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.reader.dropped()
    }

    /// Keepalive: sends Ping (the Pong arrives through [`Client::recv`]).
    pub async fn ping(&mut self, nonce: u64) -> Result<(), ClientError> {
        self.send_message(&ClientMessage::Ping { nonce }).await
    }

    /// Ratchets the session keys both ways now.
    pub async fn rekey(&mut self) -> Result<(), ClientError> {
        self.writer.rekey().await
    }

    /// The next message from the server. Cancel-safe, unbounded: wrap it in
    /// a timeout or a `select!`.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        self.reader.recv().await
    }

    /// Acknowledges what was handled, says Goodbye and closes cleanly.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.writer.close().await
    }
}
