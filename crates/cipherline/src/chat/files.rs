//! `chat`'s files (`/send-file`, `/accept`, `/decline`, `/cancel`): end to
//! end (PROTOCOL.md §13.12) wherever a text would be, the version-1 way
//! (chat/offers.rs) elsewhere.
//!
//! An end-to-end file is the client library's work
//! ([`cipherline_client::files`]): each upload and each download runs on a
//! local task over a connection of its own, so chat's loop (texts, other
//! transfers) never waits for one; they report here through channels, and
//! chat prints a line when one starts, about every tenth of the file or
//! 5 s (with the rate), and when it ends. An offer is shown with a number
//! to answer it by; an accepted download is saved only once its SHA-256
//! verified, and one that chat left unfinished (it quit, the connection
//! broke) continues when chat starts again. Every peer string is escaped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherline_client::display::escape;
use cipherline_client::files::upload::{UploadEvent, Uploaded};
use cipherline_client::files::{DownloadRecord, DownloadState, download, upload};
use cipherline_client::groups::Outcome;
use cipherline_proto::app::{Delivery, Target, fold_name};
use cipherline_proto::crypto::sign::IdentityPublicKey;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use super::Chat;
use crate::client_args::{ClientArgs, Connected};
use crate::error::CliError;
use crate::files::{hex, open_regular};
use crate::output::key_notice;
use crate::transfers::{Background, Finished, JsonProgress, Progressed, RETRY_AFTER};

/// End-to-end uploads running at once.
pub(super) const MAX_UPLOADS: usize = 4;
/// A progress line at least this often while bytes move (and at every
/// tenth of the file).
const LINE_EVERY: Duration = Duration::from_secs(5);
/// Offers of earlier sessions listed when chat starts, at most.
const EARLIER_SHOWN: usize = 20;

/// What an upload's task reports.
pub(super) enum UpNote {
    Event(UploadEvent),
    Done(Result<Uploaded, String>),
}

/// A report from a transfer running in the background.
pub(super) enum Note {
    /// From upload number `.0`.
    Upload(u64, UpNote),
    /// A download's progress.
    Progress(Progressed),
    /// A download ended (or was interrupted, to be tried again).
    Finished(Finished),
}

/// An end-to-end upload running.
struct Upload {
    /// "report.pdf to bob", escaped.
    label: String,
    /// Its path, canonical (the library's record of it names it so).
    path: PathBuf,
    group: Vec<u8>,
    meter: Option<Meter>,
    task: tokio::task::AbortHandle,
}

/// Chat's end-to-end files.
pub(super) struct Files {
    /// Downloads (`None`: this chat has no end-to-end conversations).
    background: Option<Background>,
    progress: Option<UnboundedReceiver<Progressed>>,
    /// Offers waiting for an answer: the number shown to the download's id.
    offers: BTreeMap<u64, u64>,
    /// Downloads shown this session (a message delivered again after a
    /// reconnection is not offered twice).
    shown: HashSet<u64>,
    /// Downloads running, by id.
    receiving: HashMap<u64, Meter>,
    /// Uploads running, by the number shown.
    uploads: BTreeMap<u64, Upload>,
    up_tx: UnboundedSender<(u64, UpNote)>,
    up_rx: UnboundedReceiver<(u64, UpNote)>,
}

impl Files {
    /// Files for a chat connecting as `client`; `e2e`: whether it has
    /// end-to-end conversations.
    pub(super) fn new(client: &'static ClientArgs, e2e: bool) -> Self {
        let (background, progress) = if e2e {
            let (b, p) = Background::with_progress(client);
            (Some(b), Some(p))
        } else {
            (None, None)
        };
        let (up_tx, up_rx) = unbounded_channel();
        Files {
            background,
            progress,
            offers: BTreeMap::new(),
            shown: HashSet::new(),
            receiving: HashMap::new(),
            uploads: BTreeMap::new(),
            up_tx,
            up_rx,
        }
    }

    /// The next report of a transfer (cancel-safe; never, without any).
    pub(super) async fn next(&mut self) -> Note {
        let Files { background, progress, up_rx, .. } = self;
        let progressed = async {
            match progress {
                Some(rx) => rx.recv().await,
                None => None,
            }
        };
        let finished = async {
            match background {
                Some(b) => b.done_rx.recv().await,
                None => None,
            }
        };
        tokio::select! {
            Some((id, note)) = up_rx.recv() => Note::Upload(id, note),
            Some(p) = progressed => Note::Progress(p),
            Some(f) = finished => Note::Finished(f),
            else => std::future::pending().await,
        }
    }
}

/// Progress lines of one transfer: where it started, when the last line
/// was shown and at how many bytes.
struct Meter {
    total: u64,
    since: Instant,
    /// Bytes done when this run of it started (a resumed one).
    base: Option<u64>,
    shown_at: Instant,
    shown_bytes: u64,
}

impl Meter {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Meter { total, since: now, base: None, shown_at: now, shown_bytes: 0 }
    }

    /// It starts (again) at `bytes`.
    fn start(&mut self, bytes: u64) {
        let now = Instant::now();
        (self.since, self.base, self.shown_at, self.shown_bytes) = (now, Some(bytes), now, bytes);
    }

    /// A progress line for `bytes` done, if one is due.
    fn tick(&mut self, label: &str, bytes: u64) -> Option<String> {
        if self.base.is_none() {
            self.start(bytes);
            return None;
        }
        let step = (self.total / 10).max(1);
        let moved = bytes.saturating_sub(self.shown_bytes);
        if bytes >= self.total || moved == 0 || (moved < step && self.shown_at.elapsed() < LINE_EVERY) {
            return None;
        }
        (self.shown_at, self.shown_bytes) = (Instant::now(), bytes);
        let pct = u128::from(bytes) * 100 / u128::from(self.total.max(1));
        Some(format!("* {label}: {pct}% ({} of {}, {}/s)", human(bytes), human(self.total), human(self.rate(bytes))))
    }

    /// Bytes a second since this run started.
    fn rate(&self, bytes: u64) -> u64 {
        let moved = bytes.saturating_sub(self.base.unwrap_or(0));
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        u64::try_from(u128::from(moved) * 1000 / u128::from(ms)).unwrap_or(u64::MAX)
    }

    /// How long this run took, in words.
    fn took(&self) -> String {
        let secs = self.since.elapsed().as_secs_f64();
        if secs < 10.0 { format!("{secs:.1} s") } else { format!("{secs:.0} s") }
    }
}

/// A size in words: bytes, KiB, MiB or GiB.
fn human(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = n as f64;
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit {
            #[allow(clippy::cast_precision_loss)]
            let x = v / unit as f64;
            return if x < 10.0 { format!("{x:.1} {name}") } else { format!("{x:.0} {name}") };
        }
    }
    format!("{n} bytes")
}

/// Where a conversation's file goes, for lines: "bob" or "#room".
fn place(target: &Target) -> String {
    match target {
        Target::User(u) => escape(u).into_owned(),
        Target::Room(r) => format!("#{}", escape(r)),
    }
}

/// "report.pdf from bob" (or "from bob in #room"), escaped.
fn incoming_label(record: &DownloadRecord) -> String {
    let room = match &record.target {
        Target::Room(r) => format!(" in #{}", escape(r)),
        Target::User(_) => String::new(),
    };
    format!("{} from {}{room}", escape(&record.name), escape(&record.from))
}

/// Parses an optional number after a command.
fn number(rest: &str) -> Result<Option<u64>, ()> {
    if rest.is_empty() { Ok(None) } else { rest.parse().map(Some).map_err(|_| ()) }
}

impl Chat {
    /// `/send-file USER|#ROOM PATH` (a joined room also without `#`): end
    /// to end where a text to that place would be, else the version-1 way.
    pub(super) async fn send_file(&mut self, rest: &str, args: &'static ClientArgs) -> Result<(), CliError> {
        let Some((to, path)) = rest.split_once(' ') else {
            self.screen.show("! usage: /send-file USER|#ROOM PATH");
            return Ok(());
        };
        let path = Path::new(path.trim());
        let target = match to.strip_prefix('#') {
            Some(room) => Target::Room(room.to_owned()),
            None if self.rooms.contains_key(&fold_name(to)) || self.is_e2e_room(to) => Target::Room(to.to_owned()),
            None => Target::User(to.to_owned()),
        };
        // A directory, device or FIFO is refused before anything is sent.
        let size = match open_regular(path) {
            Ok((_, size)) => size,
            Err(e) => {
                self.screen.show(format!("! {e}"));
                return Ok(());
            }
        };
        // As texts go: direct conversations of a keyed chat, and the
        // end-to-end rooms it is in (entered this session or not).
        let end_to_end = match (&self.e2e, &target) {
            (None, _) => false,
            (Some(_), Target::User(_)) => true,
            (Some(e2e), Target::Room(room)) => {
                self.is_e2e_room(room)
                    || (!self.rooms.contains_key(&fold_name(room)) && e2e.room_group(room).ok().flatten().is_some())
            }
        };
        if !end_to_end {
            return self.offer_file(target, path).await;
        }
        if self.files.uploads.len() >= MAX_UPLOADS {
            self.screen
                .show(format!("! {MAX_UPLOADS} files are being sent already: wait for one to finish, or /cancel one"));
            return Ok(());
        }
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let shown_name = canonical.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let label = format!("{} to {}", escape(&shown_name), place(&target));
        let group = match &target {
            Target::User(user) => match self.direct_group(user, args).await {
                Ok(group) => group,
                Err(e) => {
                    let why = escape(&e.to_string()).into_owned();
                    self.screen.show(format!("! {label} not sent ({why})"));
                    return Ok(());
                }
            },
            Target::Room(room) => match self.e2e.as_ref().map(|e2e| e2e.room(room)) {
                Some(Ok(group)) => group,
                Some(Err(e)) => {
                    self.screen.show(format!("! {label} not sent ({})", escape(&e.to_string())));
                    return Ok(());
                }
                None => return Ok(()),
            },
        };
        let id = self.downloads.next_local_id();
        let task = spawn_upload(args, id, canonical.clone(), group.clone(), target, self.files.up_tx.clone());
        self.screen.show(format!("* sending {label} (end to end, {}): /cancel {id} stops it", human(size)));
        self.files.uploads.insert(id, Upload { label, path: canonical, group, meter: None, task });
        Ok(())
    }

    /// `/accept [ID]` or `/decline [ID]`: IDs are the local ones shown with
    /// each offer, end to end or not (one count, so never the same twice);
    /// without one, the newest offer.
    pub(super) async fn answer(&mut self, accept: bool, rest: &str, args: &ClientArgs) -> Result<(), CliError> {
        let Ok(id) = number(rest) else {
            self.screen.show("! usage: /accept [ID] or /decline [ID], with the ID shown with the offer");
            return Ok(());
        };
        let newest_e2e = self.files.offers.keys().next_back().copied();
        let id = id.or_else(|| newest_e2e.max(self.downloads.newest_offer()));
        if let Some(download) = id.and_then(|id| self.files.offers.remove(&id)) {
            if accept {
                self.accept_e2e(download);
            } else {
                self.decline_e2e(download, args).await;
            }
            return Ok(());
        }
        if self.answer_offer(accept, id).await? {
            return Ok(());
        }
        let mut waiting: Vec<u64> = self.downloads.pending().iter().map(|p| p.id).collect();
        waiting.extend(self.files.offers.keys());
        waiting.sort_unstable();
        let waiting: Vec<String> = waiting.iter().map(u64::to_string).collect();
        match id {
            Some(id) if !waiting.is_empty() => {
                self.screen.show(format!("! no file offer {id} is waiting; waiting: {}", waiting.join(", ")));
            }
            _ => self.screen.show("! no file offer is waiting"),
        }
        Ok(())
    }

    /// Starts fetching download `id` in the background.
    fn accept_e2e(&mut self, id: u64) {
        let (Some(e2e), Some(background)) = (self.e2e.as_ref(), self.files.background.as_mut()) else { return };
        let record = match e2e.store().download(id) {
            Ok(Some(record)) if matches!(record.state, DownloadState::Offered | DownloadState::Active) => record,
            Ok(_) => {
                self.screen.show("! that file is no longer offered (another session took it, or it was cancelled)");
                return;
            }
            Err(e) => {
                self.screen.show(format!("! {}", escape(&e.to_string())));
                return;
            }
        };
        if !self.download_dir.is_dir() {
            self.screen.show(format!(
                "! cannot save into {}: not a directory (start chat with --download-dir DIR)",
                escape(&self.download_dir.display().to_string())
            ));
            return;
        }
        let dir = std::fs::canonicalize(&self.download_dir).unwrap_or_else(|_| self.download_dir.clone());
        let (label, total) = (incoming_label(&record), record.size);
        background.start(e2e.store(), record, &dir);
        self.files.receiving.insert(id, Meter::new(total));
        self.screen.show(format!(
            "* receiving {label} (end to end, {}) into {}",
            human(total),
            escape(&dir.display().to_string())
        ));
    }

    /// Forgets download `id` and tells the relay this member is done.
    async fn decline_e2e(&mut self, id: u64, args: &ClientArgs) {
        let Some(e2e) = self.e2e.as_ref() else { return };
        let label = match e2e.store().download(id) {
            Ok(Some(record)) => incoming_label(&record),
            _ => "the file".to_owned(),
        };
        let store = e2e.store();
        match self.side.run(args, async |c| download::cancel(store, Some(c), id).await).await {
            Ok(()) => self.screen.show(format!("* declined {label}")),
            Err(e) => {
                // Forgotten here anyway: the relay deletes it at its expiry.
                let _ = download::cancel(store, None, id).await;
                self.screen.show(format!("* declined {label} (the relay was not told: {})", escape(&e.to_string())));
            }
        }
    }

    /// `/cancel [ID]`: an end-to-end upload by its number (the relay
    /// deletes what it holds), or, without one, the version-1 file being
    /// offered or else the newest upload.
    pub(super) async fn cancel(&mut self, rest: &str, args: &ClientArgs) -> Result<(), CliError> {
        let Ok(id) = number(rest) else {
            self.screen.show("! usage: /cancel [ID], with the ID shown when the file started");
            return Ok(());
        };
        if id.is_none()
            && let Some(s) = &self.sending
        {
            self.screen.show(format!("* cancelled {}", escape(&s.name)));
            return self.stop_sending("the sender cancelled").await;
        }
        let id = id.or_else(|| self.files.uploads.keys().next_back().copied());
        let Some(up) = id.and_then(|id| self.files.uploads.remove(&id)) else {
            self.screen.show("! you are sending no file (by that number)");
            return Ok(());
        };
        up.task.abort();
        let Some(e2e) = self.e2e.as_ref() else { return Ok(()) };
        let store = e2e.store();
        // The library's record of it (if hashing had finished) names the blob.
        let records = store.uploads(Some(e2e.scope())).map_err(CliError::Client)?;
        let ours: Vec<u64> =
            records.iter().filter(|r| r.path == up.path && r.group_id == up.group).map(|r| r.id).collect();
        let result = self
            .side
            .run(args, async |c| {
                for &n in &ours {
                    upload::cancel(store, c, n).await?;
                }
                Ok::<(), cipherline_client::ClientError>(())
            })
            .await;
        match result {
            Ok(()) => self.screen.show(format!("* cancelled {} (the relay deletes what it had)", up.label)),
            Err(e) => self.screen.show(format!(
                "! cancelled {} here, but the relay was not told ({}): it deletes the file at its expiry",
                up.label,
                escape(&e.to_string())
            )),
        }
        Ok(())
    }

    /// A file announced by message `message` (the engine's
    /// [`Outcome::File`]): shown once, with a number to answer it by.
    pub(super) fn file_offered(&mut self, message: u64, outcome: &Outcome) {
        let Outcome::File { from, key, target, notice, .. } = outcome else { return };
        let Some(e2e) = self.e2e.as_ref() else { return };
        // As for a message: the sender's key against the one remembered.
        let status = self.peers.check_key(from, &IdentityPublicKey::ed25519_from_raw(key));
        let as_message = Delivery {
            id: message,
            timestamp_ms: 0,
            from: from.clone(),
            to: target.clone(),
            text: String::new(),
            signed: None,
            seq: 0,
        };
        if let Some(line) = key_notice(&as_message, &status) {
            self.screen.show(line);
        }
        if !notice.is_empty() {
            // Escaped by the engine.
            self.screen.show(format!("! {notice}"));
        }
        let record = match e2e.store().download_of(e2e.scope(), message) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                self.screen.show(format!("! {}", escape(&e.to_string())));
                return;
            }
        };
        if record.state == DownloadState::Offered && self.files.shown.insert(record.id) {
            self.show_offer(&record, "offers");
        }
    }

    /// Shows an offer with a new number.
    fn show_offer(&mut self, record: &DownloadRecord, verb: &str) {
        let n = self.downloads.next_local_id();
        self.files.offers.insert(n, record.id);
        let room = match &record.target {
            Target::Room(r) => format!(" in #{}", escape(r)),
            Target::User(_) => String::new(),
        };
        self.screen.show(format!(
            "* {} {verb} {} ({} bytes, end to end){room}: /accept {n} or /decline {n}",
            escape(&record.from),
            escape(&record.name),
            record.size
        ));
    }

    /// When chat starts: downloads it left unfinished continue, and files
    /// offered in earlier sessions and not answered are listed again.
    pub(super) fn resume_files(&mut self) {
        let (Some(e2e), Some(background)) = (self.e2e.as_ref(), self.files.background.as_mut()) else { return };
        let store = e2e.store();
        match background.resume_pending(store, e2e.scope(), &self.download_dir, None) {
            Ok(started) => {
                for record in started {
                    self.files.shown.insert(record.id);
                    self.files.receiving.insert(record.id, Meter::new(record.size));
                    // What the partial file holds (the record notes it only
                    // every few MiB).
                    let done = record
                        .dir
                        .as_ref()
                        .and_then(|dir| std::fs::metadata(download::partial_path(dir, &record)).ok())
                        .map_or(record.verified, |m| m.len().min(record.size));
                    self.screen.show(format!(
                        "* resuming {} (end to end, {} of {} done): it was interrupted when chat last ran",
                        incoming_label(&record),
                        human(done),
                        human(record.size)
                    ));
                }
            }
            Err(e) => self.screen.show(format!("! cannot resume unfinished downloads: {}", escape(&e.to_string()))),
        }
        let earlier = match store.downloads(Some(e2e.scope()), &[DownloadState::Offered]) {
            Ok(earlier) => earlier,
            Err(e) => {
                self.screen.show(format!("! {}", escape(&e.to_string())));
                return;
            }
        };
        for record in earlier.iter().take(EARLIER_SHOWN) {
            if self.files.shown.insert(record.id) {
                self.show_offer(record, "offered earlier");
            }
        }
        if earlier.len() > EARLIER_SHOWN {
            self.screen.show(format!(
                "* and {} more files offered earlier: `cipherline files list`",
                earlier.len() - EARLIER_SHOWN
            ));
        }
    }

    /// A report of a transfer running in the background.
    pub(super) fn file_note(&mut self, note: Note) {
        match note {
            Note::Upload(id, note) => self.upload_note(id, note),
            Note::Progress(p) => {
                let Some(meter) = self.files.receiving.get_mut(&p.id) else { return };
                let label = match self.e2e.as_ref().map(|e2e| e2e.store().download(p.id)) {
                    Some(Ok(Some(record))) => format!("receiving {}", incoming_label(&record)),
                    _ => "receiving".to_owned(),
                };
                if let Some(line) = meter.tick(&label, p.bytes) {
                    self.screen.show(line);
                }
            }
            Note::Finished(f) => self.download_finished(f),
        }
    }

    fn upload_note(&mut self, id: u64, note: UpNote) {
        // One cancelled meanwhile: its last words do not matter.
        let Some(up) = self.files.uploads.get_mut(&id) else { return };
        match note {
            UpNote::Event(UploadEvent::Started { from, total, resumed, .. }) => {
                let mut meter = Meter::new(total);
                meter.start(from);
                up.meter = Some(meter);
                if resumed {
                    let line = format!(
                        "* {}: resuming where the relay's copy ends ({} of {})",
                        up.label,
                        human(from),
                        human(total)
                    );
                    self.screen.show(line);
                }
            }
            UpNote::Event(UploadEvent::Progress { bytes, .. }) => {
                let label = format!("sending {}", up.label);
                if let Some(line) = up.meter.as_mut().and_then(|m| m.tick(&label, bytes)) {
                    self.screen.show(line);
                }
            }
            UpNote::Done(result) => {
                let Some(up) = self.files.uploads.remove(&id) else { return };
                match result {
                    Ok(done) => {
                        let took = up.meter.as_ref().map_or_else(String::new, |m| format!(" in {}", m.took()));
                        let resumed = if done.resumed {
                            format!(", resumed at {}", human(done.resumed_from))
                        } else {
                            String::new()
                        };
                        let (name, to) = up.label.split_once(" to ").unwrap_or((&up.label, ""));
                        self.screen.show(format!(
                            "* {name} sent to {to} (end to end, {}{took}{resumed}; SHA-256 {}…)",
                            human(done.size),
                            hex(&done.sha256).get(..16).unwrap_or_default()
                        ));
                    }
                    Err(why) => self.screen.show(format!(
                        "! sending {} stopped: {} (/send-file it again to resume)",
                        up.label,
                        escape(&why)
                    )),
                }
            }
        }
    }

    fn download_finished(&mut self, f: Finished) {
        let id = f.record.id;
        if !f.retry
            && let Some(background) = self.files.background.as_mut()
        {
            // Chat reserves nothing for what the user accepted: nothing to give back.
            background.ended(id, f.result.is_err(), &mut self.downloads);
        }
        let label = incoming_label(&f.record);
        match f.result {
            Ok(path) => {
                let took = self.files.receiving.remove(&id).map_or_else(String::new, |m| format!(" in {}", m.took()));
                let dir = path.parent().map(|d| d.display().to_string()).unwrap_or_default();
                let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.screen.show(format!(
                    "* saved {} from {} ({}{took}, SHA-256 {}…, verified; end to end) in {}",
                    escape(&file),
                    escape(&f.record.from),
                    human(f.record.size),
                    hex(&f.record.sha256).get(..16).unwrap_or_default(),
                    escape(&dir)
                ));
            }
            Err(why) if f.retry => {
                if let Some(meter) = self.files.receiving.get_mut(&id) {
                    meter.base = None;
                }
                self.screen.show(format!(
                    "! receiving {label} was interrupted ({}); trying again in {} s",
                    escape(&why),
                    RETRY_AFTER.as_secs()
                ));
            }
            Err(why) => {
                self.files.receiving.remove(&id);
                self.screen.show(format!("! {label} failed: {}", escape(&why)));
            }
        }
    }

    /// When chat ends: what stops with it.
    pub(super) fn files_left(&mut self) {
        let uploads = self.files.uploads.len();
        if uploads > 0 {
            self.screen.show(format!(
                "! {uploads} end-to-end upload(s) stopped: /send-file the same file to the same place again to resume"
            ));
        }
        let downloads = self.files.receiving.len();
        if downloads > 0 {
            self.screen.show(format!("* {downloads} download(s) not finished: they continue when chat starts again"));
        }
    }
}

/// Uploads `path` to `group` (`target`) on a local task with a connection
/// of its own, reporting to `tx` as upload number `id`.
fn spawn_upload(
    args: &'static ClientArgs,
    id: u64,
    path: PathBuf,
    group: Vec<u8>,
    target: Target,
    tx: UnboundedSender<(u64, UpNote)>,
) -> tokio::task::AbortHandle {
    // Local: connecting borrows the trust check, which is not Sync.
    let task = tokio::task::spawn_local(async move {
        let result = async {
            let Connected { mut client, e2e, .. } = args.connect(false).await?;
            let Some(e2e) = e2e else {
                let _ = client.close().await;
                return Err(CliError::failed("the file's connection cannot send end to end", "try again"));
            };
            // Progress at most every hundredth or 250 ms: chat thins it out.
            let mut ticks = JsonProgress::new(false, String::new());
            let events = tx.clone();
            let mut on_event = |event: UploadEvent| {
                let due = match &event {
                    UploadEvent::Started { .. } => true,
                    UploadEvent::Progress { bytes, total } => ticks.due(*bytes, *total),
                };
                if due {
                    let _ = events.send((id, UpNote::Event(event)));
                }
            };
            let r = upload::upload(&e2e, &mut client, &path, &group, &target, &mut on_event).await;
            let _ = client.close().await;
            r.map_err(CliError::Client)
        }
        .await;
        let _ = tx.send((id, UpNote::Done(result.map_err(|e| e.to_string()))));
    });
    task.abort_handle()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_words() {
        assert_eq!(human(0), "0 bytes");
        assert_eq!(human(1023), "1023 bytes");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(52 << 20), "52 MiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn progress_lines_come_every_tenth_and_not_at_the_end() {
        let mut m = Meter::new(1000);
        assert_eq!(m.tick("x", 0), None, "the first report is where it starts");
        assert_eq!(m.tick("x", 50), None, "less than a tenth, and quickly");
        let line = m.tick("x", 120).unwrap();
        assert!(line.starts_with("* x: 12% (120 bytes of 1000 bytes, "), "{line}");
        assert_eq!(m.tick("x", 150), None);
        assert_eq!(m.tick("x", 1000), None, "the end has a line of its own");
    }
}
