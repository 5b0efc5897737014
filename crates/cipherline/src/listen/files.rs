//! Files for `listen`: offers shown, accepted into --accept-files within
//! --max-file-size and --max-total (one quota for the whole run, across
//! reconnections, for both kinds of file), and how each ended.
//!
//! - Version-1 offers (an open room, or a sender without end-to-end
//!   files): accepted with [`Command::GetFile`], or over a limit declined
//!   with [`Command::RefuseFile`] (the sender is told why); without
//!   --accept-files left unanswered (another session of this identity may
//!   accept them, or they expire).
//! - End-to-end files: shown once per run; fetched in the background when
//!   they fit, else kept as offered (`cipherline files get` fetches them).
//!   Those an earlier run left unfinished continue by themselves (the
//!   engine's `resume_downloads`), and those offered while no listen
//!   accepted are fetched at start. One interrupted (still pending) is
//!   asked for again after [`RETRY_AFTER`].
//!
//! Every peer string is escaped; with --json the objects are as before the
//! engine: `file`, `file_declined`, and `event` `file_offered`,
//! `file_progress` (throttled), `file_saved`, `file_retrying`,
//! `file_failed`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cipherline_client::display::escape;
use cipherline_client::engine::{Command, DownloadInfo, FileRef, Reply, TransferState, Verified};
use cipherline_proto::app::Target;
use serde_json::json;
use tokio::time::Instant;

use super::{Ended, Link, Listen, ListenArgs};
use crate::error::CliError;
use crate::files::hex;
use crate::transfers::{JsonProgress, RETRY_AFTER, report_failed, report_retrying};

/// A file offered, as the engine's event names it.
pub(super) struct Offered {
    pub(super) id: u64,
    pub(super) from: String,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) e2e: bool,
}

/// Where a transfer stands, as the engine's event says.
pub(super) struct Progress {
    pub(super) transfer: String,
    pub(super) done: u64,
    pub(super) total: u64,
    pub(super) state: TransferState,
    pub(super) path: Option<PathBuf>,
}

/// A transfer this run follows.
struct Tracked {
    from: String,
    name: String,
    size: u64,
    /// Its bytes count against --max-total (given back if it fails).
    counted: bool,
    /// An end-to-end file's record.
    e2e: Option<DownloadInfo>,
}

/// What a run keeps of files.
pub(super) struct Files {
    dir: Option<PathBuf>,
    max_file: u64,
    max_total: u64,
    /// Bytes accepted this run (received or being received).
    used: u64,
    /// By transfer id.
    tracked: HashMap<String, Tracked>,
    /// End-to-end files shown this run (an announcement not yet
    /// acknowledged comes again after a reconnection).
    shown: HashSet<String>,
    /// End-to-end downloads to ask for again: when, and the offer.
    retries: Vec<(Instant, u64)>,
    /// JSON progress, by transfer.
    progress: HashMap<String, JsonProgress>,
}

impl Files {
    pub(super) fn new(args: &ListenArgs) -> Self {
        Files {
            dir: args.accept_files.clone(),
            max_file: args.max_file_size,
            max_total: args.max_total,
            used: 0,
            tracked: HashMap::new(),
            shown: HashSet::new(),
            retries: Vec::new(),
            progress: HashMap::new(),
        }
    }

    /// When the next interrupted download is asked for again.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.retries.iter().map(|(at, _)| *at).min()
    }

    /// Why an offer of `size` bytes is refused now: the reason the sender
    /// is told.
    fn refusal(&self, size: u64) -> Option<String> {
        if size > self.max_file {
            Some(format!("too large: this receiver accepts files of at most {} bytes", self.max_file))
        } else if self.used.saturating_add(size) > self.max_total {
            Some(format!(
                "over this receiver's quota: {} of {} bytes left",
                self.max_total.saturating_sub(self.used),
                self.max_total
            ))
        } else {
            None
        }
    }

    /// Takes `size` bytes of the quota; false (nothing taken) if over it.
    fn reserve(&mut self, size: u64) -> bool {
        if self.refusal(size).is_some() {
            return false;
        }
        self.used = self.used.saturating_add(size);
        true
    }

    /// A transfer is over: its bytes given back unless it was saved.
    fn forget(&mut self, transfer: &str, saved: bool) -> Option<Tracked> {
        self.progress.remove(transfer);
        let t = self.tracked.remove(transfer)?;
        if t.counted && !saved {
            self.used = self.used.saturating_sub(t.size);
        }
        Some(t)
    }
}

/// The local id in a download's transfer id (`d7`: 7).
fn local_id(transfer: &str) -> u64 {
    transfer.strip_prefix('d').and_then(|n| n.parse().ok()).unwrap_or_default()
}

impl Listen {
    /// A file offered.
    pub(super) async fn offered(&mut self, link: &mut Link, o: Offered) -> Result<(), Ended> {
        if o.e2e {
            return self.offered_e2e(link, o.id).await;
        }
        let Some(dir) = self.files.dir.clone() else {
            let what = "not answering (no --accept-files): accept it in another session, or it expires";
            eprintln!("{} offers {} ({} bytes): {what}", escape(&o.from), escape(&o.name), o.size);
            return Ok(());
        };
        let why = match self.files.refusal(o.size) {
            Some(why) => {
                // Told to the sender; a connection lost meanwhile ended
                // the offer anyway.
                let _ = self.ask(link, Command::RefuseFile { id: o.id, reason: why.clone() }).await;
                why
            }
            None => match self.ask(link, Command::GetFile { id: o.id, dir }).await {
                Ok(Reply::Transfer { transfer }) => {
                    self.files.used = self.files.used.saturating_add(o.size);
                    let tracked =
                        Tracked { from: o.from.clone(), name: o.name.clone(), size: o.size, counted: true, e2e: None };
                    self.files.tracked.insert(transfer, tracked);
                    eprintln!("{} offers {} ({} bytes): accepting", escape(&o.from), escape(&o.name), o.size);
                    return Ok(());
                }
                Ok(_) => "cannot store it".to_owned(),
                Err(e) => format!("cannot store it: {e}"),
            },
        };
        eprintln!("{} offers {} ({} bytes): declining: {}", escape(&o.from), escape(&o.name), o.size, escape(&why));
        if self.args.json {
            let v = json!({ "file_declined": { "from": o.from, "name": o.name, "size": o.size, "reason": why } });
            println!("{v}");
        }
        Ok(())
    }

    /// A file announced end to end: shown once per run, fetched if it
    /// fits (larger than --max-file-size, or over what --max-total leaves:
    /// shown, kept as offered).
    async fn offered_e2e(&mut self, link: &mut Link, id: u64) -> Result<(), Ended> {
        let Ok(Reply::Download(info)) = self.ask(link, Command::Download(FileRef::Offer(id))).await else {
            return Ok(());
        };
        if !info.pending || !self.files.shown.insert(info.transfer.clone()) {
            return Ok(());
        }
        // One fetched already (offered while no listen accepted it, or
        // resumed) is shown all the same.
        let fetching = self.files.tracked.contains_key(&info.transfer);
        let fits = self.files.dir.is_some() && (fetching || self.admit(&info));
        let accept = self.files.dir.clone().filter(|_| fits);
        print_offered(&info, accept.as_deref(), self.args.json);
        if let Some(dir) = accept
            && !fetching
        {
            self.fetch(link, info, dir).await;
        }
        Ok(())
    }

    /// Whether `info` may be fetched within this run's quota: counted once
    /// per run (so a peer cannot fill the disk with many files each under
    /// the size limit).
    fn admit(&mut self, info: &DownloadInfo) -> bool {
        if self.files.tracked.get(&info.transfer).is_some_and(|t| t.counted) {
            return true;
        }
        self.files.reserve(info.size)
    }

    /// Asks for an end-to-end file (admitted already) and follows it.
    async fn fetch(&mut self, link: &mut Link, info: DownloadInfo, dir: PathBuf) {
        let transfer = info.transfer.clone();
        let tracked =
            Tracked { from: info.from.clone(), name: info.name.clone(), size: info.size, counted: true, e2e: None };
        let offer = info.offer;
        self.files.tracked.insert(transfer.clone(), Tracked { e2e: Some(info), ..tracked });
        if let Err(e) = self.ask(link, Command::GetFile { id: offer, dir }).await {
            self.files.forget(&transfer, false);
            report_failed(local_id(&transfer), &e.to_string(), self.args.json);
        }
    }

    /// At start: end-to-end files offered while no listen accepted them
    /// are fetched if they fit; those the engine resumed are followed.
    pub(super) async fn pending_at_start(&mut self, link: &mut Link) -> Result<(), Ended> {
        let Some(dir) = self.files.dir.clone() else { return Ok(()) };
        let Ok(Reply::Files(list)) = self.ask(link, Command::Files).await else { return Ok(()) };
        for t in list {
            if t.outgoing || !t.transfer.starts_with('d') || self.files.tracked.contains_key(&t.transfer) {
                continue;
            }
            let Ok(Reply::Download(info)) = self.ask(link, Command::Download(FileRef::Transfer(t.transfer))).await
            else {
                continue;
            };
            if !info.pending {
                continue;
            }
            if t.state == TransferState::Offered {
                if self.admit(&info) {
                    self.fetch(link, info, dir.clone()).await;
                }
            } else {
                // Resumed by the engine: counted if it fits.
                let counted = self.admit(&info);
                let tracked =
                    Tracked { from: info.from.clone(), name: info.name.clone(), size: info.size, counted, e2e: None };
                self.files.tracked.insert(info.transfer.clone(), Tracked { e2e: Some(info), ..tracked });
            }
        }
        Ok(())
    }

    /// Downloads whose pause after an interruption is over are asked for
    /// again.
    pub(super) async fn retry_due(&mut self, link: &mut Link) -> Result<(), Ended> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.files.retries.drain(..).partition(|(at, _)| *at <= now);
        self.files.retries = later;
        let Some(dir) = self.files.dir.clone() else { return Ok(()) };
        for (_, offer) in due {
            let asked = self.ask(link, Command::GetFile { id: offer, dir: dir.clone() }).await;
            if let Err(cipherline_client::ClientError::Engine(_)) = &asked {
                // Not connected now (the engine is reconnecting): later.
                self.files.retries.push((Instant::now() + RETRY_AFTER, offer));
                continue;
            }
            if let Err(e) = asked {
                let transfer =
                    self.files.tracked.iter().find(|(_, t)| t.e2e.as_ref().is_some_and(|i| i.offer == offer));
                let transfer = transfer.map(|(k, _)| k.clone()).unwrap_or_default();
                self.files.forget(&transfer, false);
                report_failed(local_id(&transfer), &e.to_string(), self.args.json);
            }
        }
        Ok(())
    }

    /// A transfer's progress or end.
    pub(super) async fn transfer(&mut self, link: &mut Link, p: Progress) -> Result<(), Ended> {
        if !self.files.tracked.contains_key(&p.transfer) {
            // One the engine resumed before the list at start was read.
            if !p.transfer.starts_with('d') || self.files.dir.is_none() {
                return Ok(());
            }
            let Ok(Reply::Download(info)) =
                self.ask(link, Command::Download(FileRef::Transfer(p.transfer.clone()))).await
            else {
                return Ok(());
            };
            let counted = self.admit(&info);
            let tracked =
                Tracked { from: info.from.clone(), name: info.name.clone(), size: info.size, counted, e2e: None };
            self.files.tracked.insert(p.transfer.clone(), Tracked { e2e: Some(info), ..tracked });
        }
        let json = self.args.json;
        let e2e = self.files.tracked.get(&p.transfer).is_some_and(|t| t.e2e.is_some());
        match p.state {
            TransferState::Running if e2e => {
                let id = p.transfer.clone();
                self.files
                    .progress
                    .entry(id.clone())
                    .or_insert_with(|| JsonProgress::new(json, id))
                    .progress(p.done, p.total);
            }
            TransferState::Done => {
                if e2e {
                    if let Some(progress) = self.files.progress.get_mut(&p.transfer) {
                        progress.progress(p.total, p.total);
                    }
                    let Some(Tracked { e2e: Some(info), .. }) = self.files.forget(&p.transfer, true) else {
                        return Ok(());
                    };
                    print_saved(&info, p.path.as_deref().unwrap_or(Path::new("")), json);
                    self.seen += 1;
                } else {
                    self.files.forget(&p.transfer, true);
                    match self.ask(link, Command::Received(p.transfer.clone())).await {
                        Ok(Reply::Received(f)) => {
                            print_received(&f, json);
                            self.seen += 1;
                        }
                        _ => return Ok(()),
                    }
                }
                if std::io::Write::flush(&mut std::io::stdout()).is_err() {
                    return Err(Ended::Lost(CliError::failed("cannot write to standard output", "check the pipe")));
                }
            }
            TransferState::Failed { why, .. } if e2e => {
                let pending = matches!(
                    self.ask(link, Command::Download(FileRef::Transfer(p.transfer.clone()))).await,
                    Ok(Reply::Download(DownloadInfo { pending: true, .. }))
                );
                let offer = self.files.tracked.get(&p.transfer).and_then(|t| t.e2e.as_ref()).map(|i| i.offer);
                match offer {
                    // Interrupted (connection lost, the upload stalled): it
                    // is still pending, and asked for again after a pause.
                    Some(offer) if pending => {
                        report_retrying(local_id(&p.transfer), &why, json);
                        self.files.retries.push((Instant::now() + RETRY_AFTER, offer));
                    }
                    _ => {
                        self.files.forget(&p.transfer, false);
                        report_failed(local_id(&p.transfer), &why, json);
                    }
                }
            }
            TransferState::Failed { why, .. } => {
                if let Some(t) = self.files.forget(&p.transfer, false) {
                    eprintln!("file {} from {} failed: {}", escape(&t.name), escape(&t.from), escape(&why));
                }
            }
            TransferState::Cancelled => {
                self.files.forget(&p.transfer, false);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Prints that a file was announced end to end.
fn print_offered(info: &DownloadInfo, accepting: Option<&Path>, as_json: bool) {
    let (kind, place) = match &info.to {
        Target::Room(r) => ("room", r.as_str()),
        Target::User(u) => ("to", u.as_str()),
    };
    if as_json {
        println!(
            "{}",
            json!({ "event": "file_offered", "id": info.transfer, "from": info.from, kind: place,
                    "name": info.name, "size": info.size, "sha256": hex(&info.sha256),
                    "accepting": accepting.is_some() })
        );
    } else {
        let what = match accepting {
            Some(dir) => format!("saving it into {}", escape(&dir.display().to_string())),
            None => format!("get it with `cipherline files get {}`", info.transfer),
        };
        let room = match &info.to {
            Target::Room(r) => format!(" in {}", escape(r)),
            Target::User(_) => String::new(),
        };
        eprintln!(
            "{} sent the file {} ({} bytes, end-to-end encrypted){room}: {what}",
            escape(&info.from),
            escape(&info.name),
            info.size
        );
    }
}

/// Prints that an end-to-end file was saved.
fn print_saved(info: &DownloadInfo, path: &Path, as_json: bool) {
    let shown = path.display().to_string();
    if as_json {
        println!(
            "{}",
            json!({ "event": "file_saved", "id": info.transfer, "from": info.from, "path": shown,
                    "size": info.size, "sha256": hex(&info.sha256) })
        );
    } else {
        println!(
            "saved {} from {} ({} bytes, SHA-256 {}; end-to-end encrypted)",
            escape(&shown),
            escape(&info.from),
            info.size,
            hex(&info.sha256)
        );
    }
}

/// Prints that a version-1 file arrived, with the verdict on its signature.
fn print_received(f: &cipherline_client::engine::ReceivedFile, as_json: bool) {
    let path = f.path.display().to_string();
    let sha256 = hex(&f.sha256);
    if as_json {
        let v = json!({ "file": { "from": f.from, "path": path, "size": f.size,
                                  "sha256": sha256, "verified": super::label(f.verified) } });
        println!("{v}");
    } else {
        println!(
            "received {} from {} ({} bytes, SHA-256 {sha256}; {})",
            escape(&path),
            escape(&f.from),
            f.size,
            verdict(f.verified, f.new_key.as_deref())
        );
    }
}

/// How a received file is described: "hash matches" alone unless the
/// sender signed offer and hash with the key on record for its name.
fn verdict(verified: Verified, new_key: Option<&str>) -> String {
    match verified {
        Verified::Verified => "hash matches; signed by the verified key of the sender".to_owned(),
        Verified::Known => "hash matches; signed by the key remembered for the sender".to_owned(),
        Verified::New => format!(
            "hash matches; signed by a key seen for the first time ({}), not verified",
            new_key.unwrap_or_default()
        ),
        Verified::Unsigned => "hash matches (unsigned: nothing shows who sent it)".to_owned(),
        Verified::Invalid => {
            "hash matches, but the SIGNATURE IS INVALID: the relay may have replaced the file".to_owned()
        }
        Verified::Changed => {
            "hash matches, but NOT SIGNED BY THE KEY REMEMBERED for the sender: treat it as from someone else"
                .to_owned()
        }
    }
}
