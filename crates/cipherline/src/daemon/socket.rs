//! `cipherline daemon --socket PATH`: the same line protocol as `--stdio`,
//! on a Unix socket several local programs connect to at once.
//!
//! Contract:
//! - The socket is created with mode 0600 and never wider: it is bound in
//!   a fresh directory of mode 0700, made 0600, then hard-linked to PATH
//!   (which fails rather than replace anything made there meanwhile).
//!   PATH may already exist only as a stale socket (one nobody answers
//!   on), which is replaced; a live socket or anything else is refused.
//!   The socket is removed at exit (if it is still ours).
//! - At most [`MAX_CLIENTS`] clients at once; one more is answered with a
//!   JSON-RPC error line and closed. Each client speaks the `--stdio`
//!   protocol: the same line bound, the same number of requests under way,
//!   its responses counted in a byte budget of its own as `--stdio`'s are.
//!   Responses go to the client that asked; notifications to every client.
//! - Each client has a bounded queue ([`CLIENT_QUEUE`] lines) and each
//!   write a time limit ([`WRITE_TIMEOUT`]); a client whose queue is full
//!   or whose write times out is disconnected (the reason on standard
//!   error), so one that stops reading holds the others up for a moment
//!   at most.
//! - Events while no client is connected: a message notification waits
//!   for a client, and so does every event after it (the engine's bounded
//!   channel fills up and it stops reading from the relay, which keeps the
//!   messages); the connection state is only kept (the latest one), and
//!   every client gets it as its first line.
//! - A message counts as handed over (so the engine records it and
//!   acknowledges it to the relay) once its line was written to at least
//!   one client's socket; if every client it was queued to goes away
//!   before writing it, it is queued again to the clients connected then
//!   (or the next one). A crash before that leaves it with the relay.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use cipherline_client::engine::{Engine, EngineHandle, Event, Handover};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle, spawn_local};

use super::line::{Line, Splitter};
use super::out::{Budget, OUT_BYTES};
use super::rpc::{RpcError, notification, response};
use super::{DaemonArgs, Flags, IN_FLIGHT, MAX_LINE, answer, outcome, request, wait_finished};
use crate::error::CliError;

/// Clients connected at once at most.
pub(super) const MAX_CLIENTS: usize = 16;
/// Lines waiting to be written to one client at most; a client with a
/// full queue is disconnected.
const CLIENT_QUEUE: usize = 256;
/// One line's write to a client at most; a client not reading for that
/// long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Ours: the daemon has [`MAX_CLIENTS`] clients already.
const BUSY: i64 = -32004;

/// A line for one client; `written` is told once it was written.
struct Item {
    line: Rc<str>,
    written: Option<mpsc::Sender<()>>,
    /// A response's bytes of its client's budget, given back once written
    /// (or dropped).
    _bytes: Option<OwnedSemaphorePermit>,
}

/// One connected client, as the daemon holds it.
struct Slot {
    queue: mpsc::Sender<Item>,
    reader: AbortHandle,
    writer: JoinHandle<()>,
}

/// The connected clients (everything runs on one thread: a `LocalSet`).
#[derive(Default)]
struct Clients {
    next: u64,
    open: BTreeMap<u64, Slot>,
    /// The latest connection-state notification: every client's first line.
    state: Option<Rc<str>>,
    /// Told when a client connects.
    arrived: Rc<Notify>,
}

type Shared = Rc<RefCell<Clients>>;

/// Runs `daemon --socket PATH` until SIGINT or SIGTERM, or until the
/// engine stops for good.
pub(super) async fn run(args: &'static DaemonArgs, path: &Path) -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = |kind| {
        signal(kind).map_err(|e| CliError::failed(format!("cannot watch for signals: {e}"), "check system limits"))
    };
    let (mut term, mut int) = (signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?);
    // Bound before the engine starts: a refusal costs no connection.
    let bound = Bound::new(path)?;
    let server = args.client.home().to_string();
    let (mut engine, handle, events) = Engine::new(Flags(&args.client), server, &args.room);
    let handover = engine.handover();
    let engine = spawn_local(engine.run());
    let shared: Shared = Rc::default();
    let forward = spawn_local(forward(events, handover, shared.clone()));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            // The engine stopped for good (a final refusal): so does the daemon.
            () = wait_finished(&engine) => break,
            accepted = bound.listener.accept() => match accepted {
                Ok((stream, _)) => admit(&shared, stream, &handle),
                // Out of file descriptors, say: try again in a moment.
                Err(e) => {
                    eprintln!("cipherline daemon: accepting a client failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(bound);
    let stopped = engine.is_finished();
    if stopped {
        // Let the last events (the reason it stopped) reach the clients.
        let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
    } else {
        // Nothing more is passed on: the engine stops waiting for clients.
        forward.abort();
    }
    let writers = close_all(&shared);
    drop(handle);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for writer in writers {
            let _ = writer.await;
        }
    })
    .await;
    let reason = tokio::time::timeout(Duration::from_secs(5), engine).await.ok().and_then(Result::ok);
    if stopped { outcome(reason) } else { Ok(()) }
}

/// Passes the engine's events on to the clients, by the rules in the
/// module's doc.
async fn forward(mut events: mpsc::Receiver<Event>, handover: Handover, shared: Shared) {
    while let Some(event) = events.recv().await {
        // An upload's facts are `send --file --json`'s (see daemon/mod.rs).
        if matches!(event, Event::Upload(_) | Event::Receiver { .. }) {
            continue;
        }
        let line: Rc<str> = notification(&event).into();
        match event {
            Event::Connection(_) => {
                shared.borrow_mut().state = Some(line.clone());
                broadcast(&shared, &line, None);
            }
            // An expiry notice is confirmed like a message (the engine waits).
            Event::Message(_) | Event::Expired { .. } => {
                loop {
                    wait_for_client(&shared).await;
                    let (written, mut told) = mpsc::channel(1);
                    broadcast(&shared, &line, Some(&written));
                    drop(written);
                    // `None`: every client it was queued to went away first.
                    if told.recv().await.is_some() {
                        break;
                    }
                }
                handover.handed();
            }
            _ => {
                wait_for_client(&shared).await;
                broadcast(&shared, &line, None);
            }
        }
    }
}

/// Returns once at least one client is connected.
async fn wait_for_client(shared: &Shared) {
    loop {
        let arrived = {
            let clients = shared.borrow();
            if !clients.open.is_empty() {
                return;
            }
            clients.arrived.clone()
        };
        // `notify_one` keeps a permit, so a client arriving between the
        // check and this wait is not missed.
        arrived.notified().await;
    }
}

/// Queues `line` to every client; one whose queue is full is disconnected.
fn broadcast(shared: &Shared, line: &Rc<str>, written: Option<&mpsc::Sender<()>>) {
    let mut behind = Vec::new();
    {
        let clients = shared.borrow();
        for (id, slot) in &clients.open {
            let item = Item { line: line.clone(), written: written.cloned(), _bytes: None };
            if let Err(mpsc::error::TrySendError::Full(_)) = slot.queue.try_send(item) {
                behind.push(*id);
            }
        }
    }
    for id in behind {
        eprintln!(
            "cipherline daemon: client {id} disconnected: it fell {CLIENT_QUEUE} lines behind (it is not reading)"
        );
        disconnect(shared, id);
    }
}

/// Ends client `id` at once (what was queued for it is dropped).
fn disconnect(shared: &Shared, id: u64) {
    let slot = shared.borrow_mut().open.remove(&id);
    if let Some(slot) = slot {
        slot.reader.abort();
        slot.writer.abort();
    }
}

/// Stops reading from every client and lets each writer finish what is
/// queued: the writers, to wait for.
fn close_all(shared: &Shared) -> Vec<JoinHandle<()>> {
    let open = std::mem::take(&mut shared.borrow_mut().open);
    open.into_values()
        .map(|slot| {
            slot.reader.abort();
            slot.writer
        })
        .collect()
}

/// A new connection: a client, or refused if there are enough.
fn admit(shared: &Shared, stream: UnixStream, handle: &EngineHandle) {
    let mut clients = shared.borrow_mut();
    if clients.open.len() >= MAX_CLIENTS {
        drop(clients);
        spawn_local(refuse(stream));
        return;
    }
    let id = clients.next;
    clients.next += 1;
    let (queue, lines) = mpsc::channel(CLIENT_QUEUE);
    if let Some(state) = &clients.state {
        let _ = queue.try_send(Item { line: state.clone(), written: None, _bytes: None });
    }
    let (read, write) = stream.into_split();
    let reader = spawn_local(read_requests(read, handle.clone(), queue.clone(), id, shared.clone()));
    let writer = spawn_local(write_lines(write, lines, id, shared.clone(), reader.abort_handle()));
    clients.open.insert(id, Slot { queue, reader: reader.abort_handle(), writer });
    clients.arrived.notify_one();
}

/// Tells a connection over [`MAX_CLIENTS`] why, and closes it.
async fn refuse(mut stream: UnixStream) {
    let error = RpcError::new(BUSY, format!("too many clients: the daemon serves {MAX_CLIENTS} at once"));
    let line = response(serde_json::Value::Null, Err(error)) + "\n";
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Writes a client's queue to it until the queue closes, the client goes
/// away or a write times out; then forgets the client.
async fn write_lines(
    mut out: OwnedWriteHalf,
    mut lines: mpsc::Receiver<Item>,
    id: u64,
    shared: Shared,
    reader: AbortHandle,
) {
    while let Some(item) = lines.recv().await {
        let mut bytes = Vec::with_capacity(item.line.len() + 1);
        bytes.extend_from_slice(item.line.as_bytes());
        bytes.push(b'\n');
        match tokio::time::timeout(WRITE_TIMEOUT, out.write_all(&bytes)).await {
            Ok(Ok(())) => {
                if let Some(written) = item.written {
                    let _ = written.try_send(());
                }
            }
            // The client went away.
            Ok(Err(_)) => break,
            Err(_) => {
                eprintln!(
                    "cipherline daemon: client {id} disconnected: a write waited {}s (it is not reading)",
                    WRITE_TIMEOUT.as_secs()
                );
                break;
            }
        }
    }
    reader.abort();
    shared.borrow_mut().open.remove(&id);
}

/// Reads a client's requests and queues their responses to it; at the
/// end of its input, answers what is under way and closes the client.
async fn read_requests(read: OwnedReadHalf, handle: EngineHandle, queue: mpsc::Sender<Item>, id: u64, shared: Shared) {
    let mut input = BufReader::new(read);
    let slots = Arc::new(Semaphore::new(usize::try_from(IN_FLIGHT).unwrap_or(1)));
    // Its responses are counted as `--stdio`'s are (out.rs): a client
    // that does not read holds the daemon to this plus its results under
    // way, for the moment until it is disconnected.
    let budget = Budget::new(OUT_BYTES);
    let mut splitter = Splitter::new(MAX_LINE);
    while let Ok(Some(line)) = read_line(&mut input, &mut splitter).await {
        let Some((rid, call)) = request(line) else { continue };
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (handle, queue, budget) = (handle.clone(), queue.clone(), budget.clone());
        spawn_local(async move {
            if let Some(response) = answer(&handle, rid, call).await
                && let Ok((line, bytes)) = budget.response(response).await
            {
                let _ = queue.send(Item { line: line.into(), written: None, _bytes: Some(bytes) }).await;
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(IN_FLIGHT)).await;
    // The writer ends once the last response is written (its queue closed).
    drop(queue);
    let slot = shared.borrow_mut().open.remove(&id);
    drop(slot.map(|s| s.queue));
}

/// Reads a client's next line, split as the `--stdio` reader splits (see
/// [`super::line`]); `None` at the end of input.
async fn read_line(input: &mut (impl AsyncBufRead + Unpin), splitter: &mut Splitter) -> std::io::Result<Option<Line>> {
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(splitter.end());
        }
        let (used, line) = splitter.take(available);
        input.consume(used);
        if line.is_some() {
            return Ok(line);
        }
    }
}

/// The listening socket at its path; removed from there when dropped (if
/// the path still names this socket).
struct Bound {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// The socket's device and inode, to tell it from a later one.
    inode: (u64, u64),
}

impl Bound {
    /// Creates the socket at `path` with mode 0600 (see the module's doc).
    fn new(path: &Path) -> Result<Bound, CliError> {
        let shown = path.display();
        let fail = |what: String| CliError::failed(what, "pick another --socket path, or remove what is there");
        clear_stale(path).map_err(fail)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // A private directory: nobody else can reach the socket before its
        // mode is narrowed, whatever the umask.
        let private = parent.join(format!(".cipherline-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|e| fail(format!("cannot create {}: {e}", private.display())))?;
        let inside = private.join("s");
        let made = (|| {
            let listener = std::os::unix::net::UnixListener::bind(&inside)
                .map_err(|e| format!("cannot create the socket {shown}: {e}"))?;
            std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot set the mode of {shown}: {e}"))?;
            // A link fails if something appeared at `path` meanwhile:
            // nothing is ever replaced unchecked.
            std::fs::hard_link(&inside, path).map_err(|e| format!("cannot create the socket {shown}: {e}"))?;
            Ok::<_, String>(listener)
        })();
        let _ = std::fs::remove_file(&inside);
        let _ = std::fs::remove_dir(&private);
        let listener = made.map_err(fail)?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| fail(format!("cannot read {shown}: {e}")))?;
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(listener))
            .map_err(|e| fail(format!("cannot listen on {shown}: {e}")));
        let bound = Bound { listener: listener?, path: path.to_owned(), inode: (meta.dev(), meta.ino()) };
        Ok(bound)
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes way at `path`: nothing there, or a stale socket (removed). A
/// socket something answers on, or anything that is not a socket, is
/// refused (the reason as the error).
fn clear_stale(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot check {shown}: {e}")),
    };
    if !meta.file_type().is_socket() {
        return Err(format!("{shown} exists and is not a socket; not replacing it"));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(format!("{shown} is in use: another daemon is listening on it")),
        // Nobody listens: left by a daemon that did not exit cleanly.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))
        }
        Err(e) => Err(format!("cannot check the socket {shown}: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_is_read_in_lines_through_the_splitter() {
        use super::super::line::TooLong;
        let data = [vec![b'x'; 100], b"\nok\r\nlast".to_vec()].concat();
        let mut input = tokio::io::BufReader::with_capacity(16, &data[..]);
        let mut splitter = Splitter::new(10);
        assert_eq!(read_line(&mut input, &mut splitter).await.unwrap(), Some(Err(TooLong)));
        assert_eq!(read_line(&mut input, &mut splitter).await.unwrap(), Some(Ok(b"ok\r".to_vec())));
        assert_eq!(read_line(&mut input, &mut splitter).await.unwrap(), Some(Ok(b"last".to_vec())));
        assert_eq!(read_line(&mut input, &mut splitter).await.unwrap(), None);
    }

    /// A connector that never connects (the engine below never runs).
    struct Never;

    impl cipherline_client::engine::Connector for Never {
        fn connect(&self, _: bool) -> cipherline_client::engine::Connecting<'_> {
            use cipherline_client::engine::ConnectFailure;
            Box::pin(async { Err(ConnectFailure { reason: "no".to_owned(), passing: false }) })
        }
    }

    fn message(text: &str) -> Event {
        use cipherline_client::engine::{Message, Verified};
        Event::Message(Message {
            id: 1,
            from: "alice".into(),
            to: cipherline_proto::app::Target::User("bob".into()),
            text: text.into(),
            e2e: true,
            verified: Verified::Known,
            new_key: None,
            timestamp_ms: 1,
            sent_ms: None,
            signed: true,
        })
    }

    /// A client slot with no tasks behind it: its queue's far end.
    fn fake_client(shared: &Shared, capacity: usize) -> (u64, mpsc::Receiver<Item>) {
        let (queue, lines) = mpsc::channel(capacity);
        let reader = spawn_local(std::future::pending::<()>());
        let writer = spawn_local(std::future::pending::<()>());
        let mut clients = shared.borrow_mut();
        let id = clients.next;
        clients.next += 1;
        clients.open.insert(id, Slot { queue, reader: reader.abort_handle(), writer });
        clients.arrived.notify_one();
        (id, lines)
    }

    /// The next message line queued (connection states skipped).
    async fn next(lines: &mut mpsc::Receiver<Item>) -> Item {
        loop {
            let item = tokio::time::timeout(Duration::from_secs(5), lines.recv()).await.unwrap().unwrap();
            if item.line.contains(r#""method":"message""#) {
                return item;
            }
        }
    }

    #[tokio::test]
    async fn a_message_no_client_wrote_is_queued_again_and_a_client_behind_is_dropped() {
        use cipherline_client::engine::ConnectionState;
        tokio::task::LocalSet::new()
            .run_until(async {
                let (mut engine, _handle, _events) = Engine::new(Never, "s".into(), &[]);
                let handover = engine.handover();
                let (events, rx) = mpsc::channel(8);
                let shared: Shared = Rc::default();
                let _forward = spawn_local(forward(rx, handover, shared.clone()));
                // Nobody connected: the state is kept, the message waits.
                events.send(Event::Connection(ConnectionState::Connected { name: "bob".into() })).await.unwrap();
                events.send(message("one")).await.unwrap();
                let (first, mut lines) = fake_client(&shared, 4);
                let item = next(&mut lines).await;
                assert!(item.line.contains(r#""text":"one""#), "{}", item.line);
                assert!(shared.borrow().state.as_deref().is_some_and(|s| s.contains("connected")));
                // That client goes away before writing it: the next one gets it.
                drop(item);
                disconnect(&shared, first);
                drop(lines);
                let (_second, mut lines) = fake_client(&shared, 1);
                let item = next(&mut lines).await;
                assert!(item.line.contains(r#""text":"one""#), "{}", item.line);
                item.written.unwrap().try_send(()).unwrap();
                // A client that never reads: once its queue is full it is
                // dropped, and the one that reads gets everything.
                let (slow, _unread) = fake_client(&shared, 1);
                events.send(message("two")).await.unwrap();
                let item = next(&mut lines).await;
                assert!(item.line.contains(r#""text":"two""#), "{}", item.line);
                item.written.unwrap().try_send(()).unwrap();
                events.send(message("three")).await.unwrap();
                let item = next(&mut lines).await;
                assert!(item.line.contains(r#""text":"three""#), "{}", item.line);
                assert!(!shared.borrow().open.contains_key(&slow), "the client behind is still there");
                assert_eq!(shared.borrow().open.len(), 1);
            })
            .await;
    }

    #[tokio::test]
    async fn the_socket_is_0600_and_removed_when_dropped_and_a_live_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let bound = Bound::new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Reachable through its path, and refused while it is live.
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        let e = clear_stale(&path).unwrap_err();
        assert!(e.contains("in use"), "{e}");
        // The private directory is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(bound);
        assert!(!path.exists());
    }
}
