//! One client connection: handshake, Hello, then the message loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherline_net::{Channel, NetError};
use cipherline_proto::AlertCode;
use cipherline_proto::app::{ClientMessage, ErrorCode, GroupRequest, RateLimits, ServerMessage, Target, fold_name};
use cipherline_proto::handshake::alert_frame;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};
use tokio::time::{sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::bucket::TokenBucket;
use crate::handshakes::InHandshake;
use crate::hub::{Hub, Me, Queued, Refusal};
use crate::mail::Inbox;
use crate::source::Source;
use crate::transfer::{OfferError, OfferLimits};

type Conn = Channel<OwnedReadHalf, OwnedWriteHalf>;

// The name grammar is shared with clients, which refuse any other name a
// relay sends (PROTOCOL.md §13.4).
pub(crate) use cipherline_proto::app::valid_name;

/// The message-rate bucket of §13.5.
fn message_rate(limits: &crate::Limits) -> TokenBucket {
    TokenBucket::new(f64::from(limits.messages_per_sec), f64::from(limits.burst))
}

/// Charges a message of `size` bytes for `recipients` to the byte-rate
/// bucket of §13.5: what the server does for a message grows with its
/// audience, so that is what it costs.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn charge(
    bucket: &mut TokenBucket,
    limits: &crate::Limits,
    size: usize,
    recipients: usize,
) -> Result<(), Refusal> {
    let cost = size as f64 * recipients as f64;
    if bucket.take(cost, Instant::now()) {
        return Ok(());
    }
    Err((
        ErrorCode::RateLimited,
        format!(
            "slow down: this message is {size} bytes for {recipients} recipients; at most {} bytes per second (burst {}) counting every recipient",
            limits.bytes_per_sec, limits.bytes_burst
        ),
    ))
}

/// Why the message loop ended.
enum End {
    /// The client said Goodbye or sent close_notify.
    Client,
    /// The server is shutting down.
    Shutdown,
    /// The server closed the connection with this error.
    Refused(ErrorCode, &'static str),
    /// The connection failed.
    Failed(NetError),
}

/// Serves one accepted connection to the end. Never panics on peer input;
/// every wait is bounded.
pub(crate) async fn serve(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
    in_handshake: InHandshake,
) {
    let limits = &settings.limits;
    let _ = stream.set_nodelay(true);
    let password_mode = settings.protocol.password.is_some();
    // One SPAKE2 run is one online guess, and the server's Finished tells
    // the client whether it was right: count the attempt as failed before
    // running it, and take that back only once the client's Finished
    // verifies (attempts.rs). A refused connection runs no exchange at all.
    let mut attempt = None;
    if password_mode {
        match hub.attempts.begin(Source::of(peer.ip()), limits.password_budget(), Instant::now()) {
            Ok(counted) => attempt = Some(counted),
            Err(exhausted) => {
                tracing::warn!(conn = id, %peer, limit = ?exhausted, "too many failed password attempts; refusing");
                let mut stream = stream;
                let _ = timeout(Duration::from_secs(1), async {
                    use tokio::io::AsyncWriteExt as _;
                    let _ = stream.write_all(&alert_frame(AlertCode::TooManyAttempts)).await;
                    let _ = stream.shutdown().await;
                })
                .await;
                return;
            }
        }
    }
    let (read, write) = stream.into_split();
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let accepted = tokio::select! {
        // Boxed here and below: an async fn holds its awaited futures
        // inline, so the handshake's state would otherwise stay part of every
        // idle connection's task (16.8 KB in all, measured).
        r = Box::pin(cipherline_net::accept(read, write, settings.protocol.clone(), limits.handshake_timeout())) => r,
        () = shutdown.cancelled() => return,
    };
    let mut conn = match accepted {
        Ok(conn) => conn,
        Err(e) => {
            // The attempt stays counted, whatever ended the handshake: a
            // wrong_password alert (plaintext, so it proves nothing and
            // counts for nothing more), a Finished that did not verify, or
            // a guesser that read our Finished and closed.
            if password_mode && is_password_failure(&e) {
                tracing::warn!(conn = id, %peer, "failed password attempt");
            } else {
                tracing::info!(conn = id, %peer, error = %e, "handshake failed");
            }
            return;
        }
    };
    if let Some(attempt) = attempt {
        // The client's Finished verified: it knows the password.
        hub.attempts.succeeded(attempt);
    }
    conn.set_max_message(limits.max_message_bytes);
    let (suite, key) = conn.with_session(|s| {
        (s.suite(), s.peer_identity().map(|k| (k.fingerprint(), k.algorithm().to_u16(), k.spki().to_vec())))
    });
    let identity = key.as_ref().map(|(fp, ..)| short_fp(fp));
    tracing::info!(conn = id, %peer, %suite, identity = identity.as_deref(), "handshake complete");
    if !hub.identities.admits(key.as_ref().map(|(fp, ..)| fp)) {
        tracing::warn!(conn = id, %peer, identity = identity.as_deref(), "identity key not authorized; refusing");
        let _ = timeout(limits.write_timeout(), conn.refuse(AlertCode::UnknownIdentity)).await;
        return;
    }

    let Some((me, rx, kick, inbox)) =
        Box::pin(hello(&mut conn, &settings, &hub, key, peer.ip(), deadline, &shutdown)).await
    else {
        return;
    };
    // Handshake and Hello are done: this address may start another.
    drop(in_handshake);
    let name = me.name.clone();
    tracing::info!(conn = id, name = %name, session = me.session, "joined the server");
    let end = message_loop(&mut conn, &me, rx, inbox, &kick, &settings, &hub, &shutdown).await;
    hub.unregister(&me);
    match end {
        End::Client => {
            let _ = timeout(limits.write_timeout(), conn.close()).await;
            tracing::info!(conn = id, name = %name, "client left");
        }
        End::Shutdown => {
            let _ = timeout(limits.write_timeout(), async {
                send_error(&mut conn, ErrorCode::ShuttingDown, 0, "the server is shutting down".into()).await?;
                conn.close().await
            })
            .await;
            tracing::info!(conn = id, name = %name, "closed for shutdown");
        }
        End::Refused(code, why) => {
            let _ = timeout(limits.write_timeout(), async {
                send_error(&mut conn, code, 0, why.into()).await?;
                conn.close().await
            })
            .await;
            tracing::warn!(conn = id, name = %name, code = ?code, "closed: {why}");
        }
        End::Failed(e) => {
            let _ = timeout(limits.write_timeout(), conn.abort(&e)).await;
            tracing::info!(conn = id, name = %name, error = %e, "connection ended");
        }
    }
}

/// Whether a failed handshake was a wrong password: the client said so
/// (alert wrong_password) or its Finished did not verify.
fn is_password_failure(e: &NetError) -> bool {
    e.alert_received() == Some(AlertCode::WrongPassword)
        || matches!(
            e,
            NetError::Protocol(cipherline_proto::Error::AuthenticationFailed(
                cipherline_proto::error::AuthFailure::Password
            ))
        )
}

fn short_fp(fp: &[u8; 32]) -> String {
    fp.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Most queued messages taken per wake-up (one permit release and one
/// [`send_queued`] for all of them).
const BATCH_MESSAGES: usize = 64;
/// Bytes [`send_queued`] gathers before it writes: one full record.
const BATCH_BYTES: usize = 16 * 1024;

/// Sends queued messages, gathering them into writes of about
/// [`BATCH_BYTES`] (and at most one message more): the messages are one
/// byte stream (PROTOCOL.md §13.1), sealed into full records across their
/// boundaries, so a busy room costs one seal per full record and one system
/// call per wake-up instead of one of each per message, and a file chunk
/// leaves no small record behind. Each byte is copied once, into the sealed
/// frames.
async fn send_queued<T: std::ops::Deref<Target = [u8]>>(conn: &mut Conn, queued: &[T]) -> Result<(), NetError> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(queued.len());
    let mut bytes = 0usize;
    for msg in queued {
        parts.push(msg);
        bytes = bytes.saturating_add(msg.len());
        if bytes >= BATCH_BYTES {
            conn.send_parts(&parts).await?;
            parts.clear();
            bytes = 0;
        }
    }
    if !parts.is_empty() {
        conn.send_parts(&parts).await?;
    }
    Ok(())
}

async fn send_msg(conn: &mut Conn, msg: &ServerMessage) -> Result<(), NetError> {
    let bytes = msg.encode().map_err(NetError::Protocol)?;
    conn.send(&bytes).await
}

async fn send_error(conn: &mut Conn, code: ErrorCode, client_id: u64, text: String) -> Result<(), NetError> {
    send_msg(conn, &ServerMessage::Error { code, client_id, text }).await
}

/// Waits (until `deadline`) for a Hello with an acceptable, free name.
#[allow(clippy::too_many_arguments)]
async fn hello(
    conn: &mut Conn,
    settings: &Settings,
    hub: &Hub,
    key: Option<([u8; 32], u16, Vec<u8>)>,
    from: IpAddr,
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
) -> Option<(Me, mpsc::Receiver<Queued>, CancellationToken, Option<Inbox>)> {
    let limits = &settings.limits;
    // In password mode the client's name is bound into the password
    // exchange; Hello must use that same name.
    let bound = conn.with_session(|s| s.pake_name().map(str::to_owned));
    // The rate limit covers messages before Hello too (§13.5), or a client
    // could retry names or send anything at all without limit until the
    // handshake deadline.
    let mut rate = message_rate(limits);
    loop {
        let msg = tokio::select! {
            r = timeout_at(deadline, conn.recv()) => r,
            () = shutdown.cancelled() => return None,
        };
        let refusal: Refusal = match msg {
            Err(_) => {
                let _ = timeout(limits.write_timeout(), conn.abort(&NetError::Timeout("waiting for Hello"))).await;
                return None;
            }
            Ok(Err(e)) => {
                let _ = timeout(limits.write_timeout(), conn.abort(&e)).await;
                return None;
            }
            Ok(Ok(_)) if !rate.allow(Instant::now()) => {
                (ErrorCode::RateLimited, format!("slow down: at most {} messages per second", limits.messages_per_sec))
            }
            Ok(Ok(bytes)) => match ClientMessage::decode(&bytes) {
                Ok(ClientMessage::Hello { name }) if bound.as_ref().is_some_and(|b| *b != name) => (
                    ErrorCode::InvalidName,
                    format!("use the name given with the password: {}", bound.as_deref().unwrap_or_default()),
                ),
                Ok(ClientMessage::Hello { name }) if valid_name(&name, limits.max_name_len) => {
                    let (tx, rx) = mpsc::channel(limits.queue_len);
                    let kick = CancellationToken::new();
                    // Rung when a message is stored for this user; only a
                    // client with a key can own its name and so have a queue.
                    let wake = (hub.mail.is_some() && key.is_some()).then(|| Arc::new(Notify::new()));
                    // Claim the name for this connection first, then check (and
                    // in the open policy, bind) it: a name that is taken right
                    // now must not get bound to this client's key.
                    let mut registered = hub.register(
                        &name,
                        tx,
                        kick.clone(),
                        key.as_ref().map(|(_, alg, spki)| (*alg, spki.clone())),
                        wake.clone(),
                    );
                    if let Ok(me) = &registered {
                        let fp = key.as_ref().map(|(fp, ..)| fp);
                        // Waits for a new binding to be on disk (bounded by
                        // the handshake deadline like everything before Hello).
                        // With other nodes, the name is claimed across them first.
                        let claim = async {
                            hub.claim_across(me, fp).await?;
                            hub.identities.claim(&name, fp, from, limits).await
                        };
                        let claimed = match timeout_at(deadline, claim).await {
                            Ok(claimed) => claimed,
                            Err(_) => {
                                Err((ErrorCode::BadRequest, "the server could not record your name in time".into()))
                            }
                        };
                        if let Err(refusal) = claimed {
                            hub.unregister(me);
                            registered = Err(refusal);
                        }
                    }
                    match registered {
                        Ok(me) => {
                            // The name is owned by now (claimed above) if it
                            // ever will be: then this user has a stored queue.
                            let inbox = match wake {
                                Some(wake) if hub.has_inbox(&name) => Some(Inbox::new(&name, wake, hub.watch(&name))),
                                _ => None,
                            };
                            let welcome = ServerMessage::Welcome {
                                name: name.clone(),
                                max_message: u32::try_from(limits.max_message_bytes).unwrap_or(u32::MAX),
                                idle_timeout_secs: u32::try_from(limits.idle_timeout_secs).unwrap_or(u32::MAX),
                                // So that clients pace themselves (PROTOCOL.md §13.5).
                                rates: RateLimits {
                                    messages_per_sec: limits.messages_per_sec,
                                    burst: limits.burst,
                                    bytes_per_sec: limits.bytes_per_sec,
                                    bytes_burst: limits.bytes_burst,
                                },
                                queue: inbox.as_ref().map(|_| limits.queue_limits()),
                            };
                            if timeout(limits.write_timeout(), send_msg(conn, &welcome)).await.is_ok_and(|r| r.is_ok())
                            {
                                return Some((me, rx, kick, inbox));
                            }
                            hub.unregister(&me);
                            return None;
                        }
                        Err(refusal) => refusal,
                    }
                }
                Ok(ClientMessage::Hello { .. }) => (
                    ErrorCode::InvalidName,
                    format!("names are 1 to {} letters, digits, '-', '_' or '.'", limits.max_name_len),
                ),
                Ok(ClientMessage::Goodbye) => {
                    let _ = timeout(limits.write_timeout(), conn.close()).await;
                    return None;
                }
                Ok(_) => (ErrorCode::HelloRequired, "send Hello with your name first".into()),
                Err(_) => {
                    let _ = timeout(limits.write_timeout(), async {
                        send_error(conn, ErrorCode::BadRequest, 0, "malformed message".into()).await?;
                        conn.close().await
                    })
                    .await;
                    return None;
                }
            },
        };
        // Most refusals are not fatal: the client may try another name until
        // the deadline. One that §13.4 says closes the connection (the
        // server could not record a name binding) does close it.
        let fatal = refusal.0.is_fatal();
        if timeout(limits.write_timeout(), send_error(conn, refusal.0, 0, refusal.1)).await.is_err() {
            return None;
        }
        if fatal {
            let _ = timeout(limits.write_timeout(), conn.close()).await;
            return None;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn message_loop(
    conn: &mut Conn,
    me: &Me,
    mut rx: mpsc::Receiver<Queued>,
    mut inbox: Option<Inbox>,
    kick: &CancellationToken,
    settings: &Settings,
    hub: &Hub,
    shutdown: &CancellationToken,
) -> End {
    let limits = &settings.limits;
    let mut rate = message_rate(limits);
    // Relay work in bytes × recipients (§13.5); u64 to f64 loses nothing
    // that matters for a rate.
    #[allow(clippy::cast_precision_loss)]
    let mut bytes_rate = TokenBucket::new(limits.bytes_per_sec as f64, limits.bytes_burst as f64);
    let mut idle_deadline = tokio::time::Instant::now() + limits.idle_timeout();
    let mut queued: Vec<Queued> = Vec::new();
    let wake = inbox.as_ref().map(|i| i.wake.clone()).unwrap_or_default();
    // Whether this connection asked for delivery receipts (§13.9).
    let mut receipts = false;
    // A blob fetch waiting for an upload to move on (§13.12); while it
    // waits, the client's later requests wait too (answered in order).
    let mut held: Option<crate::blobs::Held> = None;
    loop {
        let key_update = conn.next_timeout().map_or(idle_deadline + Duration::from_secs(3600), |t| t.into());
        tokio::select! {
            biased;
            () = kick.cancelled() => return End::Refused(ErrorCode::TooSlow, "the client did not read its messages fast enough"),
            () = shutdown.cancelled() => {
                // Drain what is already queued so no accepted message is lost.
                while let Ok(out) = rx.try_recv() {
                    if timeout(limits.write_timeout(), conn.send(&out)).await.is_err() {
                        break;
                    }
                }
                return End::Shutdown;
            }
            n = rx.recv_many(&mut queued, BATCH_MESSAGES) => {
                if n == 0 {
                    return End::Shutdown;
                }
                let sent = timeout(limits.write_timeout(), send_queued(conn, &queued)).await;
                queued.clear();
                if rx.is_empty() {
                    // Going quiet: an idle connection keeps no batch room.
                    queued.shrink_to(4);
                }
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return End::Failed(e),
                    Err(_) => return End::Refused(ErrorCode::TooSlow, "writing to the client timed out"),
                }
            }
            () = wake.notified(), if inbox.as_ref().is_some_and(Inbox::wants_more) => {
                let (Some(inbox), Some(mail)) = (inbox.as_mut(), hub.mail.as_ref()) else { continue };
                let frames = match inbox.fill(mail).await {
                    Ok(frames) => frames,
                    Err(_) => return End::Refused(ErrorCode::StoreFailed, "the server could not read your stored messages"),
                };
                match timeout(limits.write_timeout(), send_queued(conn, &frames)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return End::Failed(e),
                    Err(_) => return End::Refused(ErrorCode::TooSlow, "writing to the client timed out"),
                }
            }
            () = held_ready(&mut held) => {
                let Some(fetch) = held.take() else { continue };
                let answer = Box::pin(fetch.answer(me)).await;
                if let Err(end) = send_all(conn, limits, &answer).await {
                    return end;
                }
            }
            msg = conn.recv(), if held.is_none() => {
                idle_deadline = tokio::time::Instant::now() + limits.idle_timeout();
                let bytes = match msg {
                    Ok(bytes) => bytes,
                    Err(NetError::Closed) => return End::Client,
                    Err(NetError::MessageTooLarge) => return End::Refused(ErrorCode::MessageTooLarge, "a message exceeded the server's size limit"),
                    Err(e) => return End::Failed(e),
                };
                let Ok(msg) = ClientMessage::decode(&bytes) else {
                    return End::Refused(ErrorCode::BadRequest, "malformed message");
                };
                if matches!(msg, ClientMessage::Goodbye) {
                    return End::Client;
                }
                // Blob messages cost no tokens (§13.12): the quotas bound
                // what is stored, each fetch's `max` and flow control what
                // is sent.
                if let ClientMessage::Blob(req) = msg {
                    match Box::pin(crate::blobs::handle(req, me, hub, limits, inbox.is_some())).await {
                        crate::blobs::Answer::Now(answer) => {
                            if let Err(end) = send_all(conn, limits, &answer).await {
                                return end;
                            }
                        }
                        crate::blobs::Answer::Hold(fetch) => held = Some(fetch),
                    }
                    continue;
                }
                // Chunks and acks cost no tokens: a file moves in hundreds
                // of them, and the flow-control window bounds them instead.
                // Received frees the stored-message window, which bounds it.
                let metered = !matches!(
                    msg,
                    ClientMessage::FileChunk { .. } | ClientMessage::FileAck { .. } | ClientMessage::Received { .. }
                );
                let size = bytes.len();
                let reply = if !metered || rate.allow(Instant::now()) {
                    let stored = matches!(
                        msg,
                        ClientMessage::Send { .. }
                            | ClientMessage::Join { .. }
                            | ClientMessage::Leave { .. }
                            | ClientMessage::Received { .. }
                            | ClientMessage::Receipts { .. }
                            | ClientMessage::Resume { .. }
                            | ClientMessage::Who { .. }
                            | ClientMessage::Group(_)
                    );
                    if stored {
                        let mut ctx = Stored { me, settings, hub, inbox: &mut inbox, receipts: &mut receipts };
                        // Boxed: its state (group commits, stored reads) is
                        // needed only while a message is handled, not at rest.
                        Box::pin(ctx.handle(msg, size, &mut bytes_rate)).await
                    } else {
                        match handle(msg, size, me, settings, hub, &mut bytes_rate) {
                            Ok(reply) => reply,
                            Err(end) => return end,
                        }
                    }
                } else {
                    tracing::debug!(name = %me.name, "rate limited");
                    Some(ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        client_id: client_id(&msg),
                        text: format!("slow down: at most {} messages per second", limits.messages_per_sec),
                    })
                };
                if let Some(reply) = reply {
                    match timeout(limits.write_timeout(), send_msg(conn, &reply)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Failed(e),
                        Err(_) => return End::Refused(ErrorCode::TooSlow, "writing to the client timed out"),
                    }
                }
            }
            () = sleep_until(idle_deadline) => return End::Refused(ErrorCode::IdleTimeout, "no message within the idle timeout"),
            () = sleep_until(key_update) => {
                if let Err(e) = conn.handle_timeout().await {
                    return End::Failed(e);
                }
            }
        }
    }
}

/// Resolves when the held blob fetch is due; never without one.
async fn held_ready(held: &mut Option<crate::blobs::Held>) {
    match held {
        Some(fetch) => fetch.ready().await,
        None => std::future::pending().await,
    }
}

/// Bytes of encoded messages [`send_all`] gathers into one write.
const SEND_ALL_BATCH: usize = 64 * 1024;

/// Sends `msgs` in order, encoding them as it goes into writes of about
/// [`SEND_ALL_BATCH`] bytes, each within the write timeout (as for queued
/// messages: a slow reader of a 1 MiB fetch answer is not too slow unless
/// one write stalls). No second copy of a whole fetch answer is made.
async fn send_all(conn: &mut Conn, limits: &crate::Limits, msgs: &[ServerMessage]) -> Result<(), End> {
    async fn write(conn: &mut Conn, limits: &crate::Limits, bytes: &[u8]) -> Result<(), End> {
        match timeout(limits.write_timeout(), conn.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Failed(e)),
            Err(_) => Err(End::Refused(ErrorCode::TooSlow, "writing to the client timed out")),
        }
    }
    let mut batch: Vec<u8> = Vec::new();
    for msg in msgs {
        let bytes = msg.encode().map_err(|e| End::Failed(NetError::Protocol(e)))?;
        if msgs.len() == 1 {
            return write(conn, limits, &bytes).await;
        }
        batch.extend_from_slice(&bytes);
        if batch.len() >= SEND_ALL_BATCH {
            write(conn, limits, &batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        write(conn, limits, &batch).await?;
    }
    Ok(())
}

/// The id an Error about `msg` carries: the Send id (of a group Send too),
/// a commit's request id, or the transfer id for file-transfer messages
/// (PROTOCOL.md §13.6).
fn client_id(msg: &ClientMessage) -> u64 {
    match msg {
        ClientMessage::Send { id, .. } | ClientMessage::Group(GroupRequest::Send { id, .. }) => *id,
        ClientMessage::Group(GroupRequest::Commit(c)) => c.request,
        ClientMessage::FileOffer { transfer, .. }
        | ClientMessage::FileAnswer { transfer, .. }
        | ClientMessage::FileChunk { transfer, .. }
        | ClientMessage::FileEnd { transfer, .. }
        | ClientMessage::FileCancel { transfer, .. }
        | ClientMessage::FileAck { transfer, .. } => *transfer,
        _ => 0,
    }
}

/// Handles one message (`msg_len` bytes) from a registered client; returns
/// the direct reply, or how the connection ends if the message calls for
/// closing it. Messages that fan out are charged to `bytes_rate`.
fn handle(
    msg: ClientMessage,
    msg_len: usize,
    me: &Me,
    settings: &Settings,
    hub: &Hub,
    bytes_rate: &mut TokenBucket,
) -> Result<Option<ServerMessage>, End> {
    let limits = &settings.limits;
    let admit = |recipients| charge(bytes_rate, limits, msg_len, recipients);
    let refuse = |(code, text): Refusal, client_id: u64| ServerMessage::Error { code, client_id, text };
    Ok(Some(match msg {
        ClientMessage::Hello { .. } => refuse((ErrorCode::HelloRequired, "you already said Hello".into()), 0),
        // Handled by `Stored` (they may wait for the store).
        ClientMessage::Join { .. }
        | ClientMessage::Leave { .. }
        | ClientMessage::Send { .. }
        | ClientMessage::Received { .. }
        | ClientMessage::Receipts { .. }
        | ClientMessage::Resume { .. }
        | ClientMessage::Who { .. }
        | ClientMessage::Group(_) => return Ok(None),
        ClientMessage::Whois { name: who } => match hub.whois(&who) {
            Ok(reply) => reply,
            Err(r) => refuse(r, 0),
        },
        ClientMessage::Ping { nonce } => ServerMessage::Pong { nonce },
        ClientMessage::Goodbye => return Ok(None),
        // Handled in the message loop (they may be held, §13.12).
        ClientMessage::Blob(_) => return Ok(None),
        // File transfer (§13.6): only an offer is ever answered directly,
        // and only when refused; everything else flows through the hub.
        ClientMessage::FileOffer { transfer, to, name: file_name, size } => {
            match hub.file_offer(me, transfer, to, file_name, size, &OfferLimits::from(limits), admit) {
                Ok(()) => return Ok(None),
                Err(OfferError::Refused(r)) => refuse(r, transfer),
                Err(OfferError::DuplicateId) => {
                    return Err(End::Refused(
                        ErrorCode::BadRequest,
                        "a file offer reused the id of a transfer still in progress",
                    ));
                }
            }
        }
        ClientMessage::FileAnswer { transfer, sender, accept } => {
            hub.file_answer(me, &sender, transfer, accept);
            return Ok(None);
        }
        ClientMessage::FileChunk { transfer, data } => {
            hub.file_chunk(me, transfer, data);
            return Ok(None);
        }
        ClientMessage::FileEnd { transfer, sha256, signature } => {
            hub.file_end(me, transfer, sha256, signature, limits.max_transfers_per_client);
            return Ok(None);
        }
        ClientMessage::FileCancel { transfer, sender, mut reason } => {
            // A reason goes to every receiver of the transfer (up to
            // max_offer_recipients_per_client of them) and costs no byte
            // tokens: keep it short so a cancel cannot multiply a large text.
            truncate_reason(&mut reason);
            hub.file_cancel(me, &sender, transfer, reason);
            return Ok(None);
        }
        ClientMessage::FileAck { transfer, sender, received } => {
            hub.file_ack(me, &sender, transfer, received);
            return Ok(None);
        }
    }))
}

/// What a connection's messages that may wait for the store need.
pub(crate) struct Stored<'a> {
    pub(crate) me: &'a Me,
    pub(crate) settings: &'a Settings,
    pub(crate) hub: &'a Hub,
    pub(crate) inbox: &'a mut Option<Inbox>,
    /// Whether this connection asked for delivery receipts.
    pub(crate) receipts: &'a mut bool,
}

impl Stored<'_> {
    /// Handles Send, Join, Leave, Who, Received, Receipts and the
    /// delivery-service requests: each may wait for the store (bounded by
    /// the store's own timeout), and the reply to a Send (its Ack) goes out
    /// only once the message is durable for every recipient with a stored
    /// queue (PROTOCOL.md §13.9). End-to-end rooms and the delivery service
    /// are handled in `crate::groups` (PROTOCOL.md §13.11).
    async fn handle(
        &mut self,
        msg: ClientMessage,
        msg_len: usize,
        bytes_rate: &mut TokenBucket,
    ) -> Option<ServerMessage> {
        let msg = match self.end_to_end(msg, msg_len, bytes_rate).await {
            Ok(reply) => return reply,
            Err(msg) => msg,
        };
        let (me, hub, limits) = (self.me, self.hub, &self.settings.limits);
        let refuse = |(code, text): Refusal, client_id: u64| ServerMessage::Error { code, client_id, text };
        Some(match msg {
            ClientMessage::Who { room } => {
                // Stored members are re-read wherever they matter: another
                // node sharing the store may have changed them.
                hub.refresh_members(&fold_name(&room)).await;
                match hub.members(me, &fold_name(&room)) {
                    Ok(names) => {
                        let names = hub.members_everywhere(&fold_name(&room), names).await;
                        ServerMessage::Members { room, names }
                    }
                    Err(r) => refuse(r, 0),
                }
            }
            // Room names are compared folded (§13.4): `General` is
            // `general`. The reply echoes the client's spelling, which it
            // waits for; everything else carries the folded name.
            ClientMessage::Join { room } if valid_name(&room, limits.max_name_len) => {
                match self.join(&fold_name(&room)).await {
                    Ok(()) => ServerMessage::Joined { room },
                    Err(r) => refuse(r, 0),
                }
            }
            ClientMessage::Join { .. } => refuse(
                (
                    ErrorCode::InvalidName,
                    format!("room names are 1 to {} letters, digits, '-', '_' or '.'", limits.max_name_len),
                ),
                0,
            ),
            ClientMessage::Leave { room } => {
                let folded = fold_name(&room);
                hub.refresh_members(&folded).await;
                let stored = hub.is_stored_member(&folded, &me.name);
                let recorded = match (&hub.mail, stored) {
                    (Some(mail), true) => mail.leave_room(&folded, &fold_name(&me.name)).await,
                    _ => Ok(()),
                };
                match recorded.and_then(|()| hub.leave(me, &folded)) {
                    Ok(()) => ServerMessage::Left { room },
                    Err(r) => refuse(r, 0),
                }
            }
            ClientMessage::Send { id, to, text, signed } => {
                let elsewhere = match &to {
                    Target::User(user) => {
                        hub.look_up(user).await;
                        hub.live_elsewhere(user).await
                    }
                    Target::Room(room) => {
                        hub.refresh_members(&fold_name(room)).await;
                        false
                    }
                };
                let admit = |recipients| charge(bytes_rate, limits, msg_len, recipients);
                match hub.send(me, &to, text, id, signed, elsewhere, admit) {
                    Ok(out) => match self.relay(id, out).await {
                        Ok(ack) => ack,
                        Err(r) => refuse(r, id),
                    },
                    Err(r) => refuse(r, id),
                }
            }
            ClientMessage::Received { upto } => {
                let (Some(inbox), Some(mail)) = (self.inbox.as_mut(), hub.mail.as_ref()) else { return None };
                match inbox.received(mail, hub, me, upto).await {
                    Ok(receipts) => {
                        for r in receipts {
                            hub.receipt(&r.sender, r.id, &me.name);
                        }
                        return None;
                    }
                    Err(r) => refuse(r, 0),
                }
            }
            ClientMessage::Receipts { enabled } => {
                // Only for a user with a stored queue: a keyless name may be
                // someone else's by the time a receipt comes back.
                *self.receipts = enabled && self.inbox.is_some();
                return None;
            }
            ClientMessage::Resume { after } => {
                let (Some(inbox), Some(mail)) = (self.inbox.as_mut(), hub.mail.as_ref()) else { return None };
                match inbox.resume(mail, hub, me, after).await {
                    Ok(()) => return None,
                    Err(r) => refuse(r, 0),
                }
            }
            _ => return None,
        })
    }

    /// Joins `room` (folded); a user with a stored queue becomes a stored
    /// member, recorded in the store before the reply.
    pub(crate) async fn join(&mut self, room: &str) -> Result<(), Refusal> {
        let (me, hub, limits) = (self.me, self.hub, &self.settings.limits);
        hub.refresh_members(room).await;
        let stored = match &hub.mail {
            Some(mail) if hub.has_inbox(&me.name) => {
                if !hub.is_stored_member(room, &me.name) {
                    if hub.stored_room_count(&me.name) >= limits.max_rooms_per_client {
                        let max = limits.max_rooms_per_client;
                        return Err((
                            ErrorCode::TooManyRooms,
                            format!("you are in {max} rooms already; leave one first"),
                        ));
                    }
                    mail.join_room(room, &fold_name(&me.name)).await?;
                }
                true
            }
            _ => false,
        };
        hub.join(me, room, limits.max_rooms_per_client, stored)
    }

    /// Stores an accepted message for its recipients with a stored queue,
    /// then delivers it; returns the Ack.
    async fn relay(&mut self, client_id: u64, out: crate::hub::Outbound) -> Result<ServerMessage, Refusal> {
        let hub = self.hub;
        let mut stored = Vec::new();
        let mut full = 0u32;
        let mut store_full = false;
        if let (Some(mail), false) = (&hub.mail, out.stored.is_empty()) {
            let results = mail.store(&out.stored, &out.frame, *self.receipts, out.timestamp_ms).await?;
            for (name, result) in out.stored.iter().zip(results) {
                match result {
                    cipherline_store::Appended::Stored(_) => stored.push(name.clone()),
                    cipherline_store::Appended::QueueFull => full += 1,
                    cipherline_store::Appended::StoreFull => {
                        full += 1;
                        store_full = true;
                    }
                }
            }
        }
        if out.direct && full > 0 {
            let limits = &self.settings.limits;
            let name = out.stored.first().map_or("", String::as_str);
            let text = if store_full {
                "the server's message store is full; your message was not kept. Try again later".to_owned()
            } else {
                format!(
                    "{name:?} has too many messages waiting (at most {} messages or {} bytes are kept for one \
                     recipient); your message was not kept. Try again later",
                    limits.max_queued_messages_per_recipient, limits.max_queued_store_bytes_per_recipient
                )
            };
            return Err((ErrorCode::QueueFull, text));
        }
        let (id, timestamp_ms) = (out.id, out.timestamp_ms);
        let live = u32::try_from(out.live_users).unwrap_or(u32::MAX);
        let queued = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        let names: Vec<&String> = stored.iter().collect();
        hub.deliver_outbound(out, &names);
        Ok(ServerMessage::Ack { client_id, id, timestamp_ms, queued, live, full })
    }
}

/// Longest FileCancel reason relayed, in bytes (PROTOCOL.md §13.6).
pub(crate) const MAX_REASON: usize = 256;

/// Cuts `reason` to at most [`MAX_REASON`] bytes, on a character boundary.
fn truncate_reason(reason: &mut String) {
    if reason.len() > MAX_REASON {
        let cut = (0..=MAX_REASON).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
        reason.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reasons_are_cut_to_256_bytes_on_a_character_boundary() {
        let mut long = "é".repeat(200);
        truncate_reason(&mut long);
        assert_eq!(long.len(), 256);
        let mut short = "declined".to_owned();
        truncate_reason(&mut short);
        assert_eq!(short, "declined");
        let mut odd = format!("a{}", "é".repeat(200));
        truncate_reason(&mut odd);
        assert_eq!(odd.len(), 255, "never splits a character");
    }

    #[test]
    fn names() {
        assert!(valid_name("alice", 32));
        assert!(valid_name("Bob_2.0-x", 32));
        assert!(!valid_name("", 32));
        assert!(!valid_name("a b", 32));
        assert!(!valid_name(".hidden", 32));
        assert!(!valid_name("-x", 32));
        assert!(!valid_name("ümlaut", 32));
        assert!(!valid_name(&"x".repeat(33), 32));
    }

    #[test]
    fn a_message_costs_its_size_times_its_recipients() {
        let limits = crate::Limits { bytes_per_sec: 1, bytes_burst: 100_000, ..crate::Limits::default() };
        let mut bucket = TokenBucket::new(1.0, 100_000.0);
        assert!(charge(&mut bucket, &limits, 1000, 60).is_ok());
        let (code, _) = charge(&mut bucket, &limits, 1000, 60).unwrap_err();
        assert_eq!(code, ErrorCode::RateLimited, "the same message to one recipient would pass 40 more times");
        assert!(charge(&mut bucket, &limits, 1000, 1).is_ok());
    }
}
