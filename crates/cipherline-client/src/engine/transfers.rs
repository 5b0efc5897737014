//! The engine's file transfers (end-to-end files, PROTOCOL.md §13.12):
//! offers handed over as [`Event::FileOffered`], uploads and downloads run
//! in the background with [`Event::Transfer`] progress, the list of those
//! not finished, and cancelling one.
//!
//! Contract:
//! - The work is the library's ([`crate::files`]): each transfer runs on
//!   a local task over a connection of its own ([`Connector::transfer`]),
//!   so the message connection stays free; what was done is kept in the
//!   local store and resumes (an upload when the same file is sent again,
//!   a download when it is asked for again, or at start if the front-end
//!   asked for [`Engine::resume_downloads`]).
//! - At most [`MAX_DOWNLOADS`] downloads run at once; the others wait,
//!   reported [`TransferState::Queued`].
//! - Progress is reported at most once per [`PROGRESS_EVERY`] a transfer
//!   (an upload also once per hundredth of the file, as `send --file
//!   --json` always reported it: a fast relay takes a whole file between
//!   two ticks), plus its start and its end; a progress report finding
//!   the event channel full is dropped (the next one says more), the end
//!   never is.
//! - Transfer ids: a download is `d` and its local id (as `cipherline
//!   files list` names it, the same after a restart); an upload this
//!   engine started is `s` and a number of this run (the store's `u` id
//!   exists only once the file was hashed and recorded); an upload of an
//!   earlier run is listed as `u` and its local id.
//! - Dropping the engine stops its transfers (they resume later).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::*;
use crate::files::upload::UploadEvent;
use crate::files::{DownloadRecord, DownloadState, MAX_DOWNLOADS, Ticker, TransferId, download, pending, upload};
use crate::local::LocalStore;

/// A running transfer reports its progress at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long a cancelled transfer's task may take to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long closing a transfer's connection may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    /// Announced to this user, not asked for yet (listings only).
    Offered,
    /// Waiting for its turn (a few downloads run at once).
    Queued,
    /// Under way.
    Running,
    /// Started earlier and interrupted: asking for it again (a download)
    /// or sending the same file again (an upload) continues it.
    Paused,
    /// Finished: sent whole, or saved and checked.
    Done,
    /// Stopped by a failure: its kind (front-ends act on it) and `why`
    /// in words (never a secret). A download interrupted (the connection
    /// lost) keeps what it has: asking again resumes it.
    Failed {
        /// What kind of failure.
        reason: FailReason,
        /// What went wrong, for people (raw: may hold a peer's words).
        why: String,
    },
    /// Cancelled by the user.
    Cancelled,
}

impl TransferState {
    /// Its lowercase name (`offered`, `queued`, `running`, `paused`,
    /// `done`, `failed`, `cancelled`).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            TransferState::Offered => "offered",
            TransferState::Queued => "queued",
            TransferState::Running => "running",
            TransferState::Paused => "paused",
            TransferState::Done => "done",
            TransferState::Failed { .. } => "failed",
            TransferState::Cancelled => "cancelled",
        }
    }
}

/// A transfer as [`Command::Files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferInfo {
    /// Its id (`s1`, `u2`, `d3`; `o4` for a version-1 file or offer).
    pub transfer: String,
    /// An upload (true) or a download.
    pub outgoing: bool,
    /// An upload: the room or the person it goes to. A download: the
    /// room, or this user for a direct conversation.
    pub to: Target,
    /// A download's sender (raw).
    pub from: Option<String>,
    /// The file's name (raw).
    pub name: String,
    /// Bytes done.
    pub done: u64,
    /// The file's size.
    pub total: u64,
    /// Where it stands.
    pub state: TransferState,
    /// A download's offer id ([`Command::GetFile`], [`Command::DeclineFile`]
    /// take it), where known: an end-to-end download's delivery id, a
    /// version-1 offer's id.
    pub offer: Option<u64>,
    /// An end-to-end upload that continued an earlier one: the bytes the
    /// relay held already (what `send --file --json` reports as where it
    /// resumed); 0 otherwise.
    pub resumed: u64,
}

/// One transfer this engine runs: how it stands, and an upload's local id
/// once it has one.
struct Entry {
    info: TransferInfo,
    upload: Option<u64>,
    /// An upload's start ([`Event::Upload`]) the event channel had no
    /// room for: handed over before any later event of this transfer.
    held: Option<Event>,
}

/// The transfers running, shared with their tasks (whose progress
/// callbacks must be `Send`).
type Table = Arc<Mutex<BTreeMap<String, Entry>>>;

fn with<T>(table: &Table, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> T {
    // A task that panicked left nothing half-done here worth refusing.
    let mut guard = table.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut guard)
}

/// What the engine keeps of its transfers.
pub(super) struct Transfers {
    table: Table,
    tasks: BTreeMap<String, JoinHandle<()>>,
    downloads: Arc<Semaphore>,
    /// Uploads started by this engine so far (their ids count them).
    sends: u64,
    /// Resume interrupted downloads on the first connection.
    resume: bool,
    resumed: bool,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            table: Table::default(),
            tasks: BTreeMap::new(),
            downloads: Arc::new(Semaphore::new(MAX_DOWNLOADS)),
            sends: 0,
            resume: false,
            resumed: false,
        }
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        // Dropped mid-way, a transfer keeps what it did, to resume.
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

impl Transfers {
    /// Forgets the tasks that ended.
    fn prune(&mut self) {
        self.tasks.retain(|_, t| !t.is_finished());
    }

    /// Whether `transfer` runs (or waits its turn) now: its entry goes
    /// when its end was reported, so asking again right after starts anew.
    fn running(&mut self, transfer: &str) -> bool {
        self.prune();
        with(&self.table, |t| t.contains_key(transfer))
    }

    /// The key of the running transfer `id` names (itself, or the engine
    /// upload whose local id it is).
    fn key_of(&self, transfer: &str) -> Option<String> {
        with(&self.table, |t| {
            if t.contains_key(transfer) {
                return Some(transfer.to_owned());
            }
            let up = match TransferId::parse(transfer) {
                Some(TransferId::Up(n)) => n,
                _ => return None,
            };
            t.iter().find(|(_, e)| e.upload == Some(up)).map(|(k, _)| k.clone())
        })
    }

    /// Stops transfer `key`'s task and waits (a while) until it has
    /// (its partial file closed); its entry, if it had one.
    async fn stop(&mut self, key: &str) -> Option<Entry> {
        if let Some(task) = self.tasks.remove(key) {
            task.abort();
            let _ = tokio::time::timeout(STOP_WAIT, task).await;
        }
        with(&self.table, |t| t.remove(key))
    }

    /// Registers a transfer about to start; its reporter.
    fn add(&mut self, info: TransferInfo, events: mpsc::Sender<Event>) -> Reporter {
        let transfer = info.transfer.clone();
        with(&self.table, |t| t.insert(transfer.clone(), Entry { info, upload: None, held: None }));
        Reporter { table: self.table.clone(), events, transfer }
    }
}

/// Reports one transfer's progress to the front-end.
#[derive(Clone)]
struct Reporter {
    table: Table,
    events: mpsc::Sender<Event>,
    transfer: String,
}

impl Reporter {
    /// Notes where the transfer stands; the event saying so.
    fn note(&self, state: Option<TransferState>, done: Option<u64>, path: Option<PathBuf>) -> Option<Event> {
        with(&self.table, |t| {
            let e = t.get_mut(&self.transfer)?;
            if let Some(state) = state {
                e.info.state = state;
            }
            if let Some(done) = done {
                e.info.done = done.min(e.info.total);
            }
            if e.info.state == TransferState::Done {
                e.info.done = e.info.total;
            }
            Some(Event::Transfer {
                transfer: self.transfer.clone(),
                name: e.info.name.clone(),
                done: e.info.done,
                total: e.info.total,
                state: e.info.state.clone(),
                path,
            })
        })
    }

    /// Progress while running: handed over if there is room (the next
    /// report says more than a lost one), never before a held start.
    fn progress(&self, done: u64) {
        if !self.try_flush() {
            return;
        }
        if let Some(event) = self.note(Some(TransferState::Running), Some(done), None) {
            let _ = self.events.try_send(event);
        }
    }

    /// A change of state, always handed over.
    async fn state(&self, state: TransferState) {
        self.flush().await;
        if let Some(event) = self.note(Some(state), None, None) {
            let _ = self.events.send(event).await;
        }
    }

    /// The end: handed over, and the transfer forgotten.
    async fn end(&self, state: TransferState, path: Option<PathBuf>) {
        self.flush().await;
        let event = self.note(Some(state), None, path);
        with(&self.table, |t| t.remove(&self.transfer));
        if let Some(event) = event {
            let _ = self.events.send(event).await;
        }
    }

    /// An upload started (or resumed): its local id and where it resumed
    /// noted, and [`Event::Upload`] handed over now if there is room,
    /// else held until the next report (the upload's callback cannot wait).
    fn started(&self, id: u64, from: u64, resumed: bool) {
        self.set_upload(id, if resumed { from } else { 0 });
        with(&self.table, |t| {
            if let Some(e) = t.get_mut(&self.transfer) {
                let facts = UploadFacts {
                    transfer: self.transfer.clone(),
                    upload: id,
                    name: e.info.name.clone(),
                    from: from.min(e.info.total),
                    total: e.info.total,
                    resumed,
                    sha256: None,
                };
                e.held = Some(Event::Upload(facts));
            }
        });
        self.try_flush();
    }

    /// An upload sent whole: [`Event::Upload`] with its hash, always
    /// handed over (before its end).
    async fn sent(&self, done: &upload::Uploaded) {
        self.flush().await;
        let facts = UploadFacts {
            transfer: self.transfer.clone(),
            upload: done.id,
            name: done.name.clone(),
            from: done.resumed_from,
            total: done.size,
            resumed: done.resumed,
            sha256: Some(done.sha256),
        };
        let _ = self.events.send(Event::Upload(facts)).await;
    }

    /// Hands over a held start if there is room; whether none is held now.
    fn try_flush(&self) -> bool {
        with(&self.table, |t| {
            let Some(e) = t.get_mut(&self.transfer) else { return true };
            let Some(event) = e.held.take() else { return true };
            match self.events.try_send(event) {
                Err(mpsc::error::TrySendError::Full(event)) => {
                    e.held = Some(event);
                    false
                }
                // Handed over, or nobody listens any more.
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
            }
        })
    }

    /// Hands over a held start, waiting for room.
    async fn flush(&self) {
        let held = with(&self.table, |t| t.get_mut(&self.transfer).and_then(|e| e.held.take()));
        if let Some(event) = held {
            let _ = self.events.send(event).await;
        }
    }

    /// The upload's local id once it has one, and where it resumed (0
    /// for a new one).
    fn set_upload(&self, id: u64, resumed: u64) {
        with(&self.table, |t| {
            if let Some(e) = t.get_mut(&self.transfer) {
                e.upload = Some(id);
                e.info.resumed = resumed.min(e.info.total);
            }
        });
    }
}

fn no_e2e() -> ClientError {
    ClientError::EndToEnd(
        "this client cannot send or receive end-to-end files here: it needs an Ed25519 identity key and a relay \
         that stores messages for it"
            .to_owned(),
    )
}

fn io(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::FileIo { path: path.to_owned(), source }
}

/// The canonical path and size of a regular file to send, or why not.
fn file_to_send(path: &Path) -> Result<(PathBuf, u64), ClientError> {
    let canonical = std::fs::canonicalize(path).map_err(|e| io(path, e))?;
    let meta = std::fs::metadata(&canonical).map_err(|e| io(path, e))?;
    if !meta.is_file() {
        return Err(io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    Ok((canonical, meta.len()))
}

/// The canonical path of a directory to save into, or why not.
pub(super) fn dir_to_save(dir: &Path) -> Result<PathBuf, ClientError> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| io(dir, e))?;
    if !std::fs::metadata(&canonical).map_err(|e| io(dir, e))?.is_dir() {
        return Err(io(dir, std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory")));
    }
    Ok(canonical)
}

impl<C: Connector> Engine<C> {
    /// Resumes the downloads interrupted earlier (into the directories
    /// they started in) on the first connection, if the front-end asks:
    /// off by default, since a front-end may not want files written
    /// without a word (`listen --accept-files` does).
    #[must_use]
    pub fn resume_downloads(mut self, on: bool) -> Self {
        self.transfers.resume = on;
        self
    }

    /// Once connected the first time: the interrupted downloads, if asked.
    pub(super) fn resume_transfers(&mut self, live: &Live) {
        if !self.transfers.resume || self.transfers.resumed {
            return;
        }
        self.transfers.resumed = true;
        let Some(e2e) = &live.e2e else { return };
        // A store that cannot be read now fails again at `files`.
        let Ok(active) = e2e.store().downloads(Some(e2e.scope()), &[DownloadState::Active]) else { return };
        for record in active {
            if let Some(dir) = record.dir.clone() {
                self.start_download(e2e.store().clone(), &record, dir);
            }
        }
    }

    /// A file announced end to end (recorded by the library as it was
    /// opened): handed over once per id, then acknowledged.
    pub(super) async fn offered(&mut self, live: &mut Live, d: &GroupDelivery, outcome: Outcome) -> Step {
        let Outcome::File { from, key, target, name, size, notice, .. } = outcome else {
            return self.handled(live, d.seq).await;
        };
        if !self.seen.contains(d.id) {
            let status = live.peers.check_key(&from, &IdentityPublicKey::ed25519_from_raw(&key));
            let mut events = Vec::new();
            if matches!(status, MessageStatus::KeyChanged { .. }) {
                events.push(Event::KeyChanged { id: d.id, name: from.clone() });
            }
            let verified = Verified::of(&status);
            events.push(Event::FileOffered { id: d.id, from, to: target, name, size, e2e: true, verified });
            if !notice.is_empty() {
                events.push(Event::Group { id: d.id, text: notice, change: GroupChange::Notice });
            }
            for event in events {
                if !self.emit(event).await {
                    return Step::Stop("the front-end went away".to_owned());
                }
            }
            self.seen.insert(d.id);
        }
        self.handled(live, d.seq).await
    }

    /// Starts sending `path` to `to` in the background.
    pub(super) async fn send_file(&mut self, live: &mut Live, to: Target, path: &Path) -> Result<Reply, ClientError> {
        let Live { client, peers, e2e, .. } = live;
        let e2e = e2e.as_ref().ok_or_else(no_e2e)?;
        let (path, size) = file_to_send(path)?;
        let group_id = match &to {
            Target::User(user) => {
                let mut check = |name: &str, key: &[u8; 32]| match peers
                    .check_key(name, &IdentityPublicKey::ed25519_from_raw(key))
                {
                    MessageStatus::KeyChanged { .. } => Err(ClientError::EndToEnd(format!(
                        "the identity key of {name} has changed: not sent; compare safety codes, then trust the new key"
                    ))),
                    _ => Ok(()),
                };
                e2e.direct(client, user, &mut check).await?
            }
            Target::Room(room) => e2e.room_group(room)?.ok_or_else(|| {
                ClientError::EndToEnd(format!(
                    "{} is neither an end-to-end room this user is in nor an open room it joined",
                    crate::display::escape(room)
                ))
            })?,
        };
        self.transfers.sends += 1;
        let transfer = format!("s{}", self.transfers.sends);
        let name = path.file_name().map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        let info = TransferInfo {
            transfer: transfer.clone(),
            outgoing: true,
            to: to.clone(),
            from: None,
            name,
            done: 0,
            total: size,
            state: TransferState::Running,
            offer: None,
            resumed: 0,
        };
        let report = self.transfers.add(info, self.events.clone());
        let task = tokio::task::spawn_local(send_task(self.connector.clone(), report, path, group_id, to));
        self.transfers.tasks.insert(transfer.clone(), task);
        Ok(Reply::Transfer { transfer })
    }

    /// Starts fetching the file offered by delivery `id` into `dir`.
    pub(super) fn get_file(&mut self, live: &mut Live, id: u64, dir: &Path) -> Result<Reply, ClientError> {
        let e2e = live.e2e.as_ref().ok_or_else(no_e2e)?;
        let record =
            e2e.store().download_of(e2e.scope(), id)?.ok_or_else(|| ClientError::NoTransfer(format!("offer {id}")))?;
        let transfer = TransferId::Down(record.id).to_string();
        if self.transfers.running(&transfer) {
            return Ok(Reply::Transfer { transfer });
        }
        let dir = match record.state {
            DownloadState::Cancelled | DownloadState::Failed => {
                return Err(ClientError::EndToEnd(format!("file {transfer} was {}", record.state.as_str())));
            }
            // An interrupted download continues where its partial file is.
            DownloadState::Active => record.dir.clone().map_or_else(|| dir_to_save(dir), Ok)?,
            DownloadState::Offered | DownloadState::Done => dir_to_save(dir)?,
        };
        let store = e2e.store().clone();
        Ok(Reply::Transfer { transfer: self.start_download(store, &record, dir) })
    }

    /// Declines the file offered by delivery `id`: its download record is
    /// cancelled as [`Command::CancelFile`] would.
    pub(super) async fn decline_file(&mut self, live: &mut Live, id: u64) -> Result<Reply, ClientError> {
        let e2e = live.e2e.as_ref().ok_or_else(no_e2e)?;
        let record =
            e2e.store().download_of(e2e.scope(), id)?.ok_or_else(|| ClientError::NoTransfer(format!("offer {id}")))?;
        self.cancel_file(live, &TransferId::Down(record.id).to_string()).await
    }

    fn start_download(&mut self, store: LocalStore, record: &DownloadRecord, dir: PathBuf) -> String {
        let transfer = TransferId::Down(record.id).to_string();
        let info = TransferInfo {
            transfer: transfer.clone(),
            outgoing: false,
            to: record.target.clone(),
            from: Some(record.from.clone()),
            name: record.name.clone(),
            // The partial file, not the store's note (which lags it): a
            // resumed download's first report says where it continues.
            done: download::resume_point(&dir, record),
            total: record.size,
            state: TransferState::Queued,
            offer: Some(record.message),
            resumed: 0,
        };
        let report = self.transfers.add(info, self.events.clone());
        let permits = self.transfers.downloads.clone();
        let task = tokio::task::spawn_local(get_task(self.connector.clone(), report, permits, store, record.id, dir));
        self.transfers.tasks.insert(transfer.clone(), task);
        transfer
    }

    /// The transfers running, then those recorded and not finished.
    pub(super) fn files(&mut self, live: &Live) -> Result<Reply, ClientError> {
        self.transfers.prune();
        let (mut out, uploads): (Vec<TransferInfo>, Vec<u64>) = with(&self.transfers.table, |t| {
            (t.values().map(|e| e.info.clone()).collect(), t.values().filter_map(|e| e.upload).collect())
        });
        if let Some(e2e) = &live.e2e {
            for p in pending(e2e.store(), Some(e2e.scope()))? {
                let transfer = p.id.to_string();
                let listed = out.iter().any(|i| i.transfer == transfer)
                    || matches!(p.id, TransferId::Up(n) if uploads.contains(&n));
                if listed {
                    continue;
                }
                // What answering the offer takes (so a front-end can list
                // offers an earlier run left unanswered).
                let offer = match p.id {
                    TransferId::Down(n) => e2e.store().download(n)?.map(|d| d.message),
                    TransferId::Up(_) => None,
                };
                out.push(TransferInfo {
                    transfer,
                    outgoing: matches!(p.id, TransferId::Up(_)),
                    to: p.target,
                    from: p.from,
                    name: p.name,
                    done: p.bytes,
                    total: p.total,
                    state: if p.state == "offered" { TransferState::Offered } else { TransferState::Paused },
                    offer,
                    resumed: 0,
                });
            }
        }
        Ok(Reply::Files(out))
    }

    /// Cancels a transfer: its task stopped, then an upload's blob
    /// deleted at the relay, a download's partial file deleted and the
    /// relay told; both forgotten. A download found finished once its task
    /// stopped is reported done instead, and its file kept.
    pub(super) async fn cancel_file(&mut self, live: &mut Live, transfer: &str) -> Result<Reply, ClientError> {
        let e2e = live.e2e.as_ref().ok_or_else(no_e2e)?;
        let (store, scope) = (e2e.store().clone(), e2e.scope().to_owned());
        let Some(Stopped { transfer, id, name, done, total }) = self.stop_to_cancel(&store, &scope, transfer).await?
        else {
            return Ok(Reply::Done);
        };
        // (An engine upload stopped before it was recorded has nothing
        // at the relay yet.)
        match id {
            Some(TransferId::Up(n)) => upload::cancel(&store, &mut live.client, n).await?,
            Some(TransferId::Down(n)) => download::cancel(&store, Some(&mut live.client), n).await?,
            None => {}
        }
        let path = None;
        self.emit(Event::Transfer { transfer, name, done, total, state: TransferState::Cancelled, path }).await;
        Ok(Reply::Done)
    }

    /// The first half of [`Engine::cancel_file`], which needs no
    /// connection: `transfer` found (this user's), its task stopped; what
    /// is left to cancel, or `None` if the download turned out finished
    /// (then reported [`TransferState::Done`]).
    async fn stop_to_cancel(
        &mut self,
        store: &LocalStore,
        scope: &str,
        transfer: &str,
    ) -> Result<Option<Stopped>, ClientError> {
        let unknown = || ClientError::NoTransfer(transfer.to_owned());
        let key = self.transfers.key_of(transfer);
        let mut id = TransferId::parse(transfer);
        // What the store has must be this user's (a data directory may
        // hold several names and servers).
        let (name, total) = match id {
            Some(TransferId::Up(n)) => match store.upload(n)? {
                Some(up) if up.scope == scope => {
                    (up.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), up.size)
                }
                _ if key.is_some() => (String::new(), 0),
                _ => return Err(unknown()),
            },
            Some(TransferId::Down(n)) => match store.download(n)? {
                Some(d) if d.scope == scope => (d.name, d.size),
                _ => return Err(unknown()),
            },
            None if key.is_some() => (String::new(), 0),
            None => return Err(unknown()),
        };
        let entry = match &key {
            Some(key) => self.transfers.stop(key).await,
            None => None,
        };
        if let Some(up) = entry.as_ref().and_then(|e| e.upload) {
            id = Some(TransferId::Up(up));
        }
        let transfer = key.unwrap_or_else(|| transfer.to_owned());
        // The task may have saved and checked the whole file before it was
        // stopped (closing its connection, say), its end not yet reported:
        // the download is done, and cancelling it would only lie.
        if let Some(TransferId::Down(n)) = id
            && let Some(d) = store.download(n)?
            && d.state == DownloadState::Done
        {
            let path = Some(PathBuf::from(&d.detail));
            let (done, total) = (d.size, d.size);
            self.emit(Event::Transfer { transfer, name: d.name, done, total, state: TransferState::Done, path }).await;
            return Ok(None);
        }
        let (name, done, total) = match entry {
            Some(e) => (e.info.name, e.info.done, e.info.total),
            None => (name, 0, total),
        };
        Ok(Some(Stopped { transfer, id, name, done, total }))
    }
}

/// A transfer stopped, to be cancelled: its id as reported, its local
/// id, and what its cancellation reports.
struct Stopped {
    transfer: String,
    id: Option<TransferId>,
    name: String,
    done: u64,
    total: u64,
}

/// An upload, from the first byte or where the relay's copy ends.
async fn send_task<C: Connector>(connector: Rc<C>, report: Reporter, path: PathBuf, group_id: Vec<u8>, to: Target) {
    report.state(TransferState::Running).await;
    let ended = match connector.transfer().await {
        Err(f) => TransferState::unconnected(f),
        Ok(Session { client, e2e: None, .. }) => {
            let _ = tokio::time::timeout(CLOSE_WAIT, client.close()).await;
            TransferState::failed(FailReason::Other, "the transfer's connection cannot send end-to-end files")
        }
        Ok(Session { mut client, e2e: Some(e2e), .. }) => {
            let mut ticker = Ticker::new(PROGRESS_EVERY).with_hundredths();
            let progress = report.clone();
            let mut on_event = move |event: UploadEvent| match event {
                UploadEvent::Started { id, from, total, resumed } => {
                    progress.started(id, from, resumed);
                    if ticker.due(from, total) {
                        progress.progress(from);
                    }
                }
                UploadEvent::Progress { bytes, total } => {
                    if bytes < total && ticker.due(bytes, total) {
                        progress.progress(bytes);
                    }
                }
            };
            let result = upload::upload(&e2e, &mut client, &path, &group_id, &to, &mut on_event).await;
            let _ = tokio::time::timeout(CLOSE_WAIT, client.close()).await;
            match result {
                Ok(done) => {
                    report.sent(&done).await;
                    TransferState::Done
                }
                Err(e) => TransferState::failed_with(&e),
            }
        }
    };
    report.end(ended, None).await;
}

/// A download, when its turn comes; resumes a partial file.
async fn get_task<C: Connector>(
    connector: Rc<C>,
    report: Reporter,
    permits: Arc<Semaphore>,
    store: LocalStore,
    id: u64,
    dir: PathBuf,
) {
    let permit = match permits.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            report.state(TransferState::Queued).await;
            match permits.acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return,
            }
        }
    };
    report.state(TransferState::Running).await;
    let (ended, path) = match connector.transfer().await {
        Err(f) => (TransferState::unconnected(f), None),
        Ok(Session { mut client, .. }) => {
            let mut ticker = Ticker::new(PROGRESS_EVERY);
            let progress = report.clone();
            let mut on_progress = move |bytes: u64, total: u64| {
                if bytes < total && ticker.due(bytes, total) {
                    progress.progress(bytes);
                }
            };
            let result = download::download(&store, &mut client, id, &dir, &mut on_progress).await;
            let _ = tokio::time::timeout(CLOSE_WAIT, client.close()).await;
            match result {
                Ok(saved) => (TransferState::Done, Some(saved)),
                Err(e) => (TransferState::failed_with(&e), None),
            }
        }
    };
    // The end is reported before the slot is given up, so the events
    // never show more than MAX_DOWNLOADS running at once.
    report.end(ended, path).await;
    drop(permit);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    /// A running upload `s1` of file `f` (10 bytes) to `to`.
    fn upload_info(to: Target) -> TransferInfo {
        TransferInfo {
            transfer: "s1".into(),
            outgoing: true,
            to,
            from: None,
            name: "f".into(),
            done: 0,
            total: 10,
            state: TransferState::Running,
            offer: None,
            resumed: 0,
        }
    }

    /// A connector that never connects (nothing here needs one).
    struct Never;

    impl Connector for Never {
        fn connect(&self, _: bool) -> Connecting<'_> {
            Box::pin(async { Err(ConnectFailure { reason: "none".to_owned(), passing: false }) })
        }
    }

    /// A download of `name` (10 bytes) offered to `scope`'s user, recorded.
    fn offered(store: &LocalStore, scope: &str, message: u64, name: &str) -> u64 {
        store
            .add_download(&DownloadRecord {
                id: 0,
                scope: scope.into(),
                message,
                from: "bob".into(),
                target: Target::User("alice".into()),
                blob: [7; 16],
                key: Zeroizing::new([1; 32]),
                name: name.into(),
                size: 10,
                sha256: [0; 32],
                dir: None,
                state: DownloadState::Offered,
                verified: 0,
                detail: String::new(),
            })
            .unwrap()
    }

    /// Download `id` as running in `engine`: its entry, and a task that
    /// stays where a real one may stay after saving the file (closing its
    /// connection, or handing over its end) until it is stopped.
    fn running(engine: &mut Engine<Never>, id: u64, name: &str) -> String {
        let transfer = TransferId::Down(id).to_string();
        let info = TransferInfo {
            transfer: transfer.clone(),
            outgoing: false,
            to: Target::User("alice".into()),
            from: Some("bob".into()),
            name: name.into(),
            done: 4,
            total: 10,
            state: TransferState::Running,
            offer: None,
            resumed: 0,
        };
        let report = engine.transfers.add(info, engine.events.clone());
        let task = tokio::task::spawn_local(async move {
            let _report = report;
            std::future::pending::<()>().await;
        });
        engine.transfers.tasks.insert(transfer.clone(), task);
        transfer
    }

    /// Cancelling a download whose task saved and checked the whole file
    /// but had not reported its end says Done (with where it is) and keeps
    /// the file and its record; one still under way is left to cancel.
    #[test]
    fn cancelling_a_download_that_finished_before_its_task_stopped_reports_it_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("client.db")).unwrap();
        let scope = "s alice";
        let (mut engine, _handle, mut events) = Engine::new(Never, "s".into(), &[]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            // Finished: the file placed and the record done, as the
            // library's download ends; the task not yet at its end.
            let finished = offered(&store, scope, 1, "a.txt");
            let saved = dir.path().join("a.txt");
            std::fs::write(&saved, b"0123456789").unwrap();
            store.set_download(finished, DownloadState::Done, Some(dir.path()), 10, &saved.to_string_lossy()).unwrap();
            let transfer = running(&mut engine, finished, "a.txt");
            let left = engine.stop_to_cancel(&store, scope, &transfer).await.unwrap();
            assert!(left.is_none(), "nothing left to cancel");
            let Ok(Event::Transfer { transfer: t, state, done, total, path, .. }) = events.try_recv() else {
                panic!("no transfer event")
            };
            assert_eq!((t, state, done, total), (transfer.clone(), TransferState::Done, 10, 10));
            assert_eq!(path.as_deref(), Some(saved.as_path()));
            assert_eq!(std::fs::read(&saved).unwrap(), b"0123456789", "the file is kept");
            assert_eq!(store.download(finished).unwrap().map(|d| d.state), Some(DownloadState::Done));
            assert!(engine.transfers.tasks.is_empty() && engine.transfers.key_of(&transfer).is_none());

            // Under way: stopped, and left to cancel as before.
            let partial = offered(&store, scope, 2, "b.txt");
            store.set_download(partial, DownloadState::Active, Some(dir.path()), 4, "").unwrap();
            let transfer = running(&mut engine, partial, "b.txt");
            let left = engine.stop_to_cancel(&store, scope, &transfer).await.unwrap().unwrap();
            assert_eq!((left.id, left.done, left.total), (Some(TransferId::Down(partial)), 4, 10));
            assert!(events.try_recv().is_err(), "the caller reports the cancellation");
            // Another user's download is not this one's to cancel.
            let theirs = offered(&store, "s carol", 3, "c.txt");
            let err = engine.stop_to_cancel(&store, scope, &TransferId::Down(theirs).to_string()).await;
            assert!(matches!(err, Err(ClientError::NoTransfer(_))));
        });
    }

    #[test]
    fn states_have_the_labels_front_ends_show() {
        let labels: Vec<_> =
            [TransferState::Queued, TransferState::failed(FailReason::Other, "x"), TransferState::Cancelled]
                .iter()
                .map(TransferState::as_str)
                .collect();
        assert_eq!(labels, ["queued", "failed", "cancelled"]);
    }

    #[test]
    fn a_reporter_reports_done_as_all_bytes_and_forgets_the_transfer_at_the_end() {
        let mut transfers = Transfers::default();
        let (tx, mut rx) = mpsc::channel(4);
        let info = TransferInfo {
            transfer: "d1".into(),
            outgoing: false,
            to: Target::User("me".into()),
            from: Some("a".into()),
            name: "f".into(),
            done: 0,
            total: 10,
            state: TransferState::Queued,
            offer: None,
            resumed: 0,
        };
        let report = transfers.add(info, tx);
        report.progress(4);
        assert!(matches!(rx.try_recv(), Ok(Event::Transfer { done: 4, total: 10, state: TransferState::Running, .. })));
        assert_eq!(transfers.key_of("d1").as_deref(), Some("d1"));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(report.end(TransferState::Done, None));
        assert!(matches!(rx.try_recv(), Ok(Event::Transfer { done: 10, state: TransferState::Done, .. })));
        assert_eq!(transfers.key_of("d1"), None);
    }

    #[test]
    fn progress_is_dropped_rather_than_waited_for_when_the_front_end_lags() {
        let mut transfers = Transfers::default();
        let (tx, mut rx) = mpsc::channel(1);
        let info = upload_info(Target::Room("r".into()));
        let report = transfers.add(info, tx);
        report.set_upload(7, 0);
        assert_eq!(transfers.key_of("u7").as_deref(), Some("s1"), "an engine upload is found by its local id");
        report.progress(1);
        report.progress(2);
        assert!(matches!(rx.try_recv(), Ok(Event::Transfer { done: 1, .. })));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_upload_reports_its_start_before_any_progress_and_its_hash_before_its_end() {
        let mut transfers = Transfers::default();
        let (tx, mut rx) = mpsc::channel(1);
        let info = upload_info(Target::User("b".into()));
        let report = transfers.add(info, tx);
        report.progress(1);
        // The channel is full: the start is held, not lost, and no
        // progress overtakes it.
        report.started(3, 4, true);
        report.progress(5);
        assert!(matches!(rx.try_recv(), Ok(Event::Transfer { done: 1, .. })));
        assert!(rx.try_recv().is_err(), "progress 5 came before the start");
        report.progress(6);
        let start = UploadFacts {
            transfer: "s1".into(),
            upload: 3,
            name: "f".into(),
            from: 4,
            total: 10,
            resumed: true,
            sha256: None,
        };
        assert_eq!(rx.try_recv().ok(), Some(Event::Upload(start.clone())));
        assert_eq!(transfers.key_of("u3").as_deref(), Some("s1"));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let done = upload::Uploaded {
            id: 3,
            name: "f".into(),
            size: 10,
            sha256: [9; 32],
            resumed: true,
            resumed_from: 4,
            announced: None,
        };
        rt.block_on(report.sent(&done));
        assert_eq!(rx.try_recv().ok(), Some(Event::Upload(UploadFacts { sha256: Some([9; 32]), ..start.clone() })));
        rt.block_on(report.end(TransferState::Done, None));
        assert!(matches!(rx.try_recv(), Ok(Event::Transfer { state: TransferState::Done, .. })));

        // A start still held when the upload ends is handed over first.
        let (tx, mut rx) = mpsc::channel(1);
        let info = transfers_info("s2");
        let report = transfers.add(info, tx);
        report.progress(1);
        report.started(5, 0, false);
        assert!(matches!(rx.try_recv(), Ok(Event::Transfer { done: 1, .. })));
        let ended = rt.block_on(async {
            let end = report.end(TransferState::failed(FailReason::Other, "x"), None);
            let recv = async {
                let first = rx.recv().await;
                let second = rx.recv().await;
                (first, second)
            };
            tokio::join!(end, recv).1
        });
        assert!(matches!(ended.0, Some(Event::Upload(UploadFacts { upload: 5, resumed: false, .. }))), "{ended:?}");
        assert!(matches!(ended.1, Some(Event::Transfer { state: TransferState::Failed { .. }, .. })), "{ended:?}");
    }

    fn transfers_info(transfer: &str) -> TransferInfo {
        TransferInfo {
            transfer: transfer.into(),
            outgoing: true,
            to: Target::Room("r".into()),
            from: None,
            name: "g".into(),
            done: 0,
            total: 10,
            state: TransferState::Running,
            offer: None,
            resumed: 0,
        }
    }

    #[test]
    fn an_upload_that_continues_says_where_it_resumed() {
        let mut transfers = Transfers::default();
        let (tx, _rx) = mpsc::channel(1);
        let info = upload_info(Target::Room("r".into()));
        let report = transfers.add(info, tx);
        let resumed = |t: &Transfers| with(&t.table, |t| t.get("s1").map(|e| e.info.resumed));
        assert_eq!(resumed(&transfers), Some(0), "a new upload starts at 0");
        report.set_upload(2, 6);
        assert_eq!(resumed(&transfers), Some(6), "the relay's bytes are where the upload continued");
        report.set_upload(2, 99);
        assert_eq!(resumed(&transfers), Some(10), "never past the file's size");
    }
}
