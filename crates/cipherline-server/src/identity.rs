//! Who may use which name (PROTOCOL.md §13.8).
//!
//! - **Open**: anyone may connect. The first identity key that uses a name
//!   owns it from then on (trust on first use); later connections under that
//!   name must prove the same key, and clients without a key cannot use it.
//!   Bindings persist in a names file when one is given.
//! - **Allowlist**: only identity keys listed in an authorized-keys file may
//!   connect, each under the names listed for it. The file can be reloaded
//!   while the server runs ([`Identities::reload`], on SIGHUP in the CLI).
//!
//! Names are compared folded (ASCII lowercase, PROTOCOL.md §13.4): a key
//! that owns `alice` owns `Alice` too. In the open policy, an unbound name
//! that looks like a bound one (same skeleton, e.g. `a1ice`) is refused to
//! every other key and to clients without one.
//!
//! Both files have one entry a line, `NAME SHA256:<fingerprint>`, where the
//! fingerprint is the SHA-256 of the identity key's DER SubjectPublicKeyInfo
//! (what `cipherline fingerprint` prints); `#` starts a comment.
//!
//! Files are read whole and parsed strictly: a bad line stops the load with
//! its line number, never a silent cut. What keeps the names file small is
//! the binding quotas (§13.5: per key, per address per day, in all); a
//! binding over a quota is refused to that client, and a restart is never
//! refused because of how many names there are. The one repair made at
//! load is of a names file whose last line has no newline (a crash while
//! appending): a complete line gets its newline, a torn one is cut off.
//!
//! A new binding is appended under the table lock, so lines never
//! interleave, but made durable (fsync) after the lock is released, so a
//! slow disk delays only the client being bound; that client is answered
//! only once its binding is on disk.
//!
//! With a store ([`Identities::use_store`], which the server calls when it
//! runs with one), the open policy's bindings live in the store's key-value
//! map instead, one key `name/<folded name>` per name, created with
//! compare-and-set so that of several servers sharing the store exactly
//! one binds a name (module `shared`, docs/cluster.md). The names file is
//! then read at start and copied into the store, never written.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cipherline_keys::Fingerprint;
use cipherline_proto::app::{ErrorCode, fold_name, folded, name_skeleton};

use crate::connection::valid_name;
use crate::hub::Refusal;
use crate::mail::Db;
use crate::source::Source;

mod shared;

/// The window of `name_bindings_per_ip_per_day`.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How names relate to identity keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPolicy {
    /// Anyone; names bind to the first key that used them, persisted in
    /// `names_file` if given.
    Open {
        /// Where bindings are kept across restarts.
        names_file: Option<PathBuf>,
    },
    /// Only the listed keys, under their listed names.
    Allowlist {
        /// The authorized-keys file.
        file: PathBuf,
    },
}

/// Errors loading an identity file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `NAME SHA256:<fingerprint>`.
    #[error("{path} line {line} is corrupt: expected \"NAME SHA256:<fingerprint>\" (nothing after it was read)")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },
}

/// The refusal of a name bound to another key.
fn belongs_to_another(name: &str) -> Refusal {
    (
        ErrorCode::IdentityMismatch,
        format!(
            "the name {name:?} belongs to another identity key on this server (names are compared ignoring case); \
             choose another name"
        ),
    )
}

/// Names (folded, [`fold_name`]: `Alice` and `alice` are one name) and the
/// keys that may use them.
type Table = HashMap<String, BTreeSet<[u8; 32]>>;

/// One line: `Ok(None)` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<(&str, [u8; 32])>, ()> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(name), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else { return Err(()) };
    let fp: Fingerprint = fp.parse().map_err(|_| ())?;
    if !valid_name(name, cipherline_proto::app::MAX_NAME) {
        return Err(());
    }
    Ok(Some((name, *fp.as_bytes())))
}

/// Reads a whole file (`None`: missing and `missing_ok`).
fn read_text(path: &Path, missing_ok: bool) -> Result<Option<String>, IdentityFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityFileError::Io { path: path.to_owned(), source }),
    }
}

/// Parses a names or authorized-keys file. With `first_wins` (the open
/// policy's names file, where a name has exactly one owner), a later line
/// for a name already owned by another key, in any spelling, is ignored
/// with a warning: a file written before names were compared ignoring case
/// may hold `Alice K1` and `alice K2`, and folding must not give both keys
/// both names.
fn parse_table(path: &Path, text: &str, first_wins: bool) -> Result<Table, IdentityFileError> {
    let mut table = Table::new();
    for (n, line) in text.lines().enumerate() {
        let entry = parse_line(line).map_err(|()| IdentityFileError::Syntax { path: path.to_owned(), line: n + 1 })?;
        if let Some((name, fp)) = entry {
            let keys = table.entry(fold_name(name)).or_default();
            if first_wins && !keys.is_empty() && !keys.contains(&fp) {
                tracing::warn!(
                    path = %path.display(),
                    line = n + 1,
                    "names file: a name already bound to another key (names are compared ignoring case); ignoring this line"
                );
                continue;
            }
            keys.insert(fp);
        }
    }
    Ok(table)
}

/// Loads the names file, repairing a last line left without its newline by
/// a crash while appending. Returns the table and whether the file is fit
/// for appending (a repair that could not be written leaves it unfit: new
/// bindings are then refused, but the server starts).
fn load_names(path: &Path) -> Result<(Table, bool), IdentityFileError> {
    let Some(mut text) = read_text(path, true)? else { return Ok((Table::new(), true)) };
    let mut writable = true;
    if !text.is_empty() && !text.ends_with('\n') {
        let start = text.rfind('\n').map_or(0, |i| i + 1);
        let last = text.get(start..).unwrap_or_default();
        let repair = if parse_line(last).is_ok() {
            tracing::warn!(path = %path.display(), "names file: the last line had no newline; adding it");
            text.push('\n');
            std::fs::OpenOptions::new().append(true).open(path).and_then(|mut f| f.write_all(b"\n"))
        } else {
            tracing::warn!(path = %path.display(), "names file: dropping a torn last line (a crash while writing it)");
            text.truncate(start);
            std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(start as u64))
        };
        if let Err(e) = repair {
            tracing::error!(path = %path.display(), error = %e, "names file: cannot repair its last line; no new names will be bound");
            writable = false;
        }
    }
    Ok((parse_table(path, &text, true)?, writable))
}

/// The open policy's binding quotas and the names file's writer.
struct Quotas {
    /// Names bound to each key.
    per_key: HashMap<[u8; 32], usize>,
    /// Bindings per address group: when its current 24-hour window began,
    /// and how many in it.
    per_ip: HashMap<Source, (Instant, u32)>,
    /// `per_ip`'s size at which expired windows are next swept out.
    prune_at: usize,
    /// The names file, opened for appending at the first binding.
    writer: Option<Arc<std::fs::File>>,
    /// Names appended but not yet known to be on disk (at most one per
    /// connection in Hello): a client claiming one waits for an fsync too.
    pending: HashSet<String>,
    /// Set when the file could not be written or repaired: further
    /// bindings are refused rather than risk a half-written file.
    broken: bool,
    /// The bound (folded) names by look-alike skeleton ([`name_skeleton`]),
    /// to refuse `a1ice` once `alice` is bound. Several only in a names
    /// file written before this rule. As large as the table, no larger.
    skeletons: HashMap<String, BTreeSet<String>>,
}

impl Quotas {
    fn new(table: &Table, writable: bool) -> Self {
        let mut per_key: HashMap<[u8; 32], usize> = HashMap::new();
        for key in table.values().flatten() {
            *per_key.entry(*key).or_default() += 1;
        }
        let mut skeletons: HashMap<String, BTreeSet<String>> = HashMap::new();
        for name in table.keys() {
            skeletons.entry(name_skeleton(name)).or_default().insert(name.clone());
        }
        Quotas {
            per_key,
            per_ip: HashMap::new(),
            prune_at: 1024,
            writer: None,
            pending: HashSet::new(),
            broken: !writable,
            skeletons,
        }
    }

    /// Bindings made from `group` in its current window.
    fn ip_count(&self, group: Source, now: Instant) -> u32 {
        self.per_ip.get(&group).filter(|(start, _)| now.saturating_duration_since(*start) < DAY).map_or(0, |e| e.1)
    }

    fn count_ip(&mut self, group: Source, now: Instant) {
        if self.per_ip.len() >= self.prune_at {
            // Entries only appear with a binding, so there are never more
            // than the bindings of the last day; this keeps out older ones.
            self.per_ip.retain(|_, (start, _)| now.saturating_duration_since(*start) < DAY);
            self.prune_at = (self.per_ip.len() * 2).max(1024);
        }
        let entry = self.per_ip.entry(group).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= DAY {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// What a new binding still needs after [`Identities::bind`] accepted it.
#[derive(Debug)]
enum Pending {
    /// Its line was appended to the names file: fsync it.
    Fsync(Arc<std::fs::File>),
    /// Create its key in the shared store; the per-key and per-address
    /// quotas already count it, and are given back if that fails.
    Shared(Arc<Db>),
}

/// The loaded policy and its tables.
pub struct Identities {
    policy: IdentityPolicy,
    /// In the open policy with a store, this node's view of the store's
    /// bindings (see module `shared`).
    table: RwLock<Table>,
    /// Taken only with `table`'s write lock held.
    quotas: Mutex<Quotas>,
    /// The store holding the bindings, once [`Identities::use_store`] ran.
    store: Mutex<Option<Arc<Db>>>,
}

impl Identities {
    /// Open policy kept in memory only (the library default).
    #[must_use]
    pub fn open_in_memory() -> Self {
        Identities {
            policy: IdentityPolicy::Open { names_file: None },
            table: RwLock::new(Table::new()),
            quotas: Mutex::new(Quotas::new(&Table::new(), true)),
            store: Mutex::new(None),
        }
    }

    /// Loads a policy's file, whole (a missing names file is an empty one).
    pub fn load(policy: IdentityPolicy) -> Result<Self, IdentityFileError> {
        let (table, writable) = match &policy {
            IdentityPolicy::Open { names_file: Some(path) } => load_names(path)?,
            IdentityPolicy::Open { names_file: None } => (Table::new(), true),
            IdentityPolicy::Allowlist { file } => {
                let text = read_text(file, false)?.unwrap_or_default();
                (parse_table(file, &text, false)?, true)
            }
        };
        let quotas = Mutex::new(Quotas::new(&table, writable));
        Ok(Identities { policy, table: RwLock::new(table), quotas, store: Mutex::new(None) })
    }

    /// Re-reads the authorized-keys file (allowlist only); returns the
    /// number of names. On error the previous table stays in force.
    pub fn reload(&self) -> Result<usize, IdentityFileError> {
        let IdentityPolicy::Allowlist { file } = &self.policy else { return Ok(self.read().len()) };
        let text = read_text(file, false)?.unwrap_or_default();
        let table = parse_table(file, &text, false)?;
        let n = table.len();
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = table;
        Ok(n)
    }

    /// The store holding the bindings, if any.
    fn shared_store(&self) -> Option<Arc<Db>> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a client that proved `key` (or none) may stay connected at
    /// all: under the allowlist, only listed keys.
    pub(crate) fn admits(&self, key: Option<&[u8; 32]>) -> bool {
        match &self.policy {
            IdentityPolicy::Open { .. } => true,
            IdentityPolicy::Allowlist { .. } => key.is_some_and(|k| self.read().values().any(|set| set.contains(k))),
        }
    }

    /// Whether `name` may be used by a client that proved `key` (or none),
    /// connected from `from`; in the open policy, binds an unbound name to
    /// the key within the quotas of `limits`, and returns once the binding
    /// is on disk.
    pub(crate) async fn claim(
        &self,
        name: &str,
        key: Option<&[u8; 32]>,
        from: IpAddr,
        limits: &crate::Limits,
    ) -> Result<(), Refusal> {
        let IdentityPolicy::Open { names_file } = &self.policy else {
            let ok = key.is_some_and(|k| self.read().get(&fold_name(name)).is_some_and(|set| set.contains(k)));
            return if ok {
                Ok(())
            } else {
                Err((ErrorCode::IdentityMismatch, format!("your identity key is not authorized for the name {name:?}")))
            };
        };
        let pending = self.bind(name, key, from, names_file.as_deref(), limits, Instant::now())?;
        let writer = match (pending, key) {
            (None, _) => return Ok(()),
            (Some(Pending::Fsync(writer)), _) => writer,
            (Some(Pending::Shared(store)), Some(k)) => return self.bind_shared(&store, name, k, from).await,
            (Some(Pending::Shared(store)), None) => return self.check_shared(&store, name).await,
        };
        // fsync off the async threads and outside every lock.
        let synced = tokio::task::spawn_blocking(move || writer.sync_data()).await;
        match synced {
            Ok(Ok(())) => {
                // Any fsync after the append makes it durable, whoever ran it.
                self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pending.remove(&fold_name(name));
                Ok(())
            }
            Ok(Err(e)) => Err(self.unbind(name, key, &e.to_string())),
            Err(e) => Err(self.unbind(name, key, &e.to_string())),
        }
    }

    /// Whether some identity key owns `name` (any spelling): a user the
    /// server knows even while it is offline, who has a stored queue. This
    /// server's table only: with a shared store, a name bound through
    /// another node is known here once its binding was read.
    pub fn is_owned(&self, name: &str) -> bool {
        self.read().get(folded(name).as_ref()).is_some_and(|set| !set.is_empty())
    }

    /// Whether `key` owns exactly `name` (any spelling): bound to it in the
    /// open policy, or listed for it in the allowlist.
    pub(crate) fn owns(&self, name: &str, key: Option<&[u8; 32]>) -> bool {
        key.is_some_and(|k| self.read().get(folded(name).as_ref()).is_some_and(|set| set.contains(k)))
    }

    /// Why `key` may not use `name`, checked without binding anything: the
    /// name (or a look-alike) belongs to another key, or the allowlist does
    /// not list the key for it. Hello asks this before the name becomes
    /// visible to others, so an impostor never appears under it, not even
    /// for the moment before [`Identities::claim`] refuses it.
    pub(crate) fn refuses(&self, name: &str, key: Option<&[u8; 32]>) -> Option<Refusal> {
        let folded = fold_name(name);
        let table = self.read();
        let IdentityPolicy::Open { .. } = &self.policy else {
            let ok = key.is_some_and(|k| table.get(&folded).is_some_and(|set| set.contains(k)));
            return (!ok).then(|| {
                (ErrorCode::IdentityMismatch, format!("your identity key is not authorized for the name {name:?}"))
            });
        };
        match (table.get(&folded), key) {
            (Some(bound), Some(k)) if bound.contains(k) => None,
            (Some(_), _) => Some((
                ErrorCode::IdentityMismatch,
                format!(
                    "the name {name:?} belongs to another identity key on this server (names are compared ignoring \
                     case); choose another name"
                ),
            )),
            // An unbound look-alike of a name bound to another key (or to
            // any key, for a client without one); quotas are `claim`'s.
            (None, _) => {
                let quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let like = quotas.skeletons.get(&name_skeleton(name)).and_then(|similar| {
                    similar.iter().find(|n| table.get(*n).is_some_and(|set| key.is_none_or(|k| !set.contains(k))))
                });
                like.map(|like| {
                    (
                        ErrorCode::IdentityMismatch,
                        format!(
                            "the name {name:?} looks too much like {like:?}, which belongs to another identity key on \
                             this server; choose another name"
                        ),
                    )
                })
            }
        }
    }

    /// The part of [`Identities::claim`] under the lock: checks and, for a
    /// new binding, records it in memory and appends it to the file.
    /// Returns what a new binding still needs (`None`: nothing).
    fn bind(
        &self,
        name: &str,
        key: Option<&[u8; 32]>,
        from: IpAddr,
        names_file: Option<&Path>,
        limits: &crate::Limits,
        now: Instant,
    ) -> Result<Option<Pending>, Refusal> {
        let mut table = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let folded = fold_name(name);
        match (table.get(&folded), key) {
            // Bound, but maybe not on disk yet: then wait for it as well.
            (Some(bound), Some(k)) if bound.contains(k) => {
                return Ok(quotas.writer.clone().filter(|_| quotas.pending.contains(&folded)).map(Pending::Fsync));
            }
            (Some(_), _) => return Err(belongs_to_another(name)),
            (None, _) => {}
        }
        // An unbound name that looks like a name bound to another key (or
        // to any key, for a client without one) would pass for its owner.
        let skeleton = name_skeleton(name);
        let like = quotas.skeletons.get(&skeleton).and_then(|similar| {
            similar.iter().find(|n| table.get(*n).is_some_and(|set| key.is_none_or(|k| !set.contains(k))))
        });
        if let Some(like) = like {
            return Err((
                ErrorCode::IdentityMismatch,
                format!(
                    "the name {name:?} looks too much like {like:?}, which belongs to another identity key on this \
                     server; choose another name"
                ),
            ));
        }
        let Some(k) = key else {
            // A keyless client binds nothing, but the name may have been
            // bound through another server since this one loaded the table.
            return Ok(self.shared_store().map(Pending::Shared));
        };
        let refuse = |text: String| Err((ErrorCode::RateLimited, text));
        if table.len() >= limits.max_name_bindings {
            tracing::warn!(limit = limits.max_name_bindings, "names table full; binding refused");
            return refuse(format!("this server cannot bind new names (it holds {} already)", table.len()));
        }
        if quotas.per_key.get(k).copied().unwrap_or(0) >= limits.max_names_per_key {
            return refuse(format!(
                "your identity key has {} names on this server already; use one of them",
                limits.max_names_per_key
            ));
        }
        let group = Source::of(from);
        if quotas.ip_count(group, now) >= limits.name_bindings_per_ip_per_day {
            tracing::warn!(%group, limit = limits.name_bindings_per_ip_per_day, "name bindings per address per day reached");
            return refuse(format!(
                "your address has bound {} new names today; try again tomorrow or use a name you have",
                limits.name_bindings_per_ip_per_day
            ));
        }
        if let Some(store) = self.shared_store() {
            // The store decides (module `shared`); reserve the quotas now
            // so that parallel claims cannot all pass them.
            *quotas.per_key.entry(*k).or_default() += 1;
            quotas.count_ip(group, now);
            return Ok(Some(Pending::Shared(store)));
        }
        let cannot = || (ErrorCode::BadRequest, "the server cannot record your name".to_owned());
        let writer = match names_file {
            Some(_) if quotas.broken => return Err(cannot()),
            Some(path) => {
                let writer = match quotas.writer.clone() {
                    Some(w) => w,
                    None => {
                        let opened = std::fs::OpenOptions::new().create(true).append(true).open(path);
                        let w = Arc::new(opened.map_err(|e| {
                            tracing::error!(path = %path.display(), error = %e, "cannot open the names file");
                            cannot()
                        })?);
                        quotas.writer = Some(w.clone());
                        w
                    }
                };
                let line = format!("{name} {}\n", Fingerprint::from_bytes(*k));
                if let Err(e) = (&*writer).write_all(line.as_bytes()) {
                    // Maybe half a line: append nothing more until a restart
                    // has repaired it.
                    tracing::error!(path = %path.display(), error = %e, "cannot record a name binding; no more will be made");
                    quotas.broken = true;
                    return Err(cannot());
                }
                quotas.pending.insert(folded.clone());
                Some(writer)
            }
            None => None,
        };
        quotas.skeletons.entry(skeleton).or_default().insert(folded.clone());
        table.entry(folded).or_default().insert(*k);
        *quotas.per_key.entry(*k).or_default() += 1;
        quotas.count_ip(group, now);
        tracing::info!(name, key = %Fingerprint::from_bytes(*k), "name bound to identity key");
        Ok(writer.map(Pending::Fsync))
    }

    /// Takes back a binding that could not be made durable.
    fn unbind(&self, name: &str, key: Option<&[u8; 32]>, error: &str) -> Refusal {
        tracing::error!(error, "cannot make a name binding durable; no more will be made");
        let mut table = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        quotas.broken = true;
        let folded = fold_name(name);
        quotas.pending.remove(&folded);
        if let Some(k) = key
            && table.get(&folded).is_some_and(|set| set.len() == 1 && set.contains(k))
        {
            table.remove(&folded);
            let skeleton = name_skeleton(name);
            if let Some(similar) = quotas.skeletons.get_mut(&skeleton) {
                similar.remove(&folded);
                if similar.is_empty() {
                    quotas.skeletons.remove(&skeleton);
                }
            }
            if let Some(n) = quotas.per_key.get_mut(k) {
                *n = n.saturating_sub(1);
            }
        }
        (ErrorCode::BadRequest, "the server cannot record your name".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn claim(
        ids: &Identities,
        name: &str,
        key: Option<&[u8; 32]>,
        limits: &crate::Limits,
    ) -> Result<(), ErrorCode> {
        ids.claim(name, key, HOME, limits).await.map_err(|(code, _)| code)
    }

    #[tokio::test]
    async fn open_binds_first_key_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("names");
        let limits = crate::Limits::default();
        let ids = Identities::load(IdentityPolicy::Open { names_file: Some(file.clone()) }).unwrap();
        assert!(claim(&ids, "alice", Some(&[1; 32]), &limits).await.is_ok());
        assert!(claim(&ids, "alice", Some(&[1; 32]), &limits).await.is_ok());
        assert_eq!(claim(&ids, "alice", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
        assert_eq!(claim(&ids, "alice", None, &limits).await, Err(ErrorCode::IdentityMismatch));
        assert!(claim(&ids, "guest", None, &limits).await.is_ok(), "keyless clients may use unbound names");
        assert!(ids.quotas.lock().unwrap().pending.is_empty(), "alice's binding is on disk");
        // While a binding waits for its fsync, a second client with the
        // same key and name must wait for one too.
        let now = Instant::now();
        assert!(ids.bind("bob", Some(&[3; 32]), HOME, Some(&file), &limits, now).unwrap().is_some());
        assert!(ids.bind("bob", Some(&[3; 32]), HOME, Some(&file), &limits, now).unwrap().is_some());
        assert!(claim(&ids, "bob", Some(&[3; 32]), &limits).await.is_ok());
        assert!(ids.bind("bob", Some(&[3; 32]), HOME, Some(&file), &limits, now).unwrap().is_none(), "durable now");
        let again = Identities::load(IdentityPolicy::Open { names_file: Some(file) }).unwrap();
        assert_eq!(claim(&again, "alice", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
        assert_eq!(claim(&again, "bob", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
    }

    #[tokio::test]
    async fn bound_names_hold_for_every_spelling_and_look_alike() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("names");
        let limits = crate::Limits::default();
        let ids = Identities::load(IdentityPolicy::Open { names_file: Some(file.clone()) }).unwrap();
        assert!(claim(&ids, "Alice", Some(&[1; 32]), &limits).await.is_ok());
        for (name, key) in [("alice", Some(&[2; 32])), ("ALICE", None), ("a1ice", Some(&[2; 32])), ("AIice", None)] {
            assert_eq!(claim(&ids, name, key, &limits).await, Err(ErrorCode::IdentityMismatch), "{name}");
        }
        // The owner may use any spelling, and a look-alike of its own name.
        assert!(claim(&ids, "alice", Some(&[1; 32]), &limits).await.is_ok());
        assert!(claim(&ids, "a1ice", Some(&[1; 32]), &limits).await.is_ok());
        // After a restart the names file's spelling does not matter.
        let again = Identities::load(IdentityPolicy::Open { names_file: Some(file) }).unwrap();
        assert_eq!(claim(&again, "ALICE", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
        assert_eq!(claim(&again, "a1lce", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
        assert!(claim(&again, "aLiCe", Some(&[1; 32]), &limits).await.is_ok());
    }

    #[tokio::test]
    async fn an_old_names_file_with_case_variants_keeps_only_the_first_owner() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("names");
        let (k1, k2) = (Fingerprint::from_bytes([1; 32]), Fingerprint::from_bytes([2; 32]));
        std::fs::write(&file, format!("Alice {k1}\nalice {k2}\n")).unwrap();
        let ids = Identities::load(IdentityPolicy::Open { names_file: Some(file) }).unwrap();
        let limits = crate::Limits::default();
        assert_eq!(claim(&ids, "Alice", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
        assert_eq!(claim(&ids, "alice", Some(&[2; 32]), &limits).await, Err(ErrorCode::IdentityMismatch));
        assert!(claim(&ids, "alice", Some(&[1; 32]), &limits).await.is_ok(), "the first line's key owns it");
    }

    #[tokio::test]
    async fn an_owned_name_is_refused_to_other_keys_before_anything_is_registered() {
        let ids = Identities::open_in_memory();
        let limits = crate::Limits::default();
        assert!(ids.refuses("alice", Some(&[1; 32])).is_none(), "unbound: claim decides");
        assert!(claim(&ids, "alice", Some(&[1; 32]), &limits).await.is_ok());
        for (name, key) in [("alice", Some(&[2; 32])), ("ALICE", None)] {
            let refusal = ids.refuses(name, key).map(|r| r.0);
            assert_eq!(refusal, Some(ErrorCode::IdentityMismatch), "{name}");
        }
        assert!(ids.refuses("Alice", Some(&[1; 32])).is_none(), "the owner, any spelling");
    }

    #[tokio::test]
    async fn bindings_are_capped_per_key_and_in_all() {
        let ids = Identities::open_in_memory();
        let limits = crate::Limits { max_names_per_key: 2, max_name_bindings: 3, ..crate::Limits::default() };
        assert!(claim(&ids, "a1", Some(&[1; 32]), &limits).await.is_ok());
        assert!(claim(&ids, "a2", Some(&[1; 32]), &limits).await.is_ok());
        assert_eq!(claim(&ids, "a3", Some(&[1; 32]), &limits).await, Err(ErrorCode::RateLimited), "per key");
        assert!(claim(&ids, "a1", Some(&[1; 32]), &limits).await.is_ok(), "bound names keep working");
        assert!(claim(&ids, "b1", Some(&[2; 32]), &limits).await.is_ok());
        assert_eq!(claim(&ids, "c1", Some(&[3; 32]), &limits).await, Err(ErrorCode::RateLimited), "in all");
        assert!(claim(&ids, "c1", None, &limits).await.is_ok(), "keyless clients bind nothing");
    }

    #[test]
    fn a_day_per_address_group_and_ipv6_counts_its_64() {
        let ids = Identities::open_in_memory();
        let limits = crate::Limits { name_bindings_per_ip_per_day: 2, ..crate::Limits::default() };
        let now = Instant::now();
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, last]);
        assert!(ids.bind("n1", Some(&[1; 32]), v6(1), None, &limits, now).is_ok());
        assert!(ids.bind("n2", Some(&[2; 32]), v6(2), None, &limits, now).is_ok());
        let refused = ids.bind("n3", Some(&[3; 32]), v6(3), None, &limits, now).unwrap_err();
        assert_eq!(refused.0, ErrorCode::RateLimited, "the same /64");
        assert!(
            ids.bind("n3", Some(&[3; 32]), IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]), None, &limits, now).is_ok()
        );
        assert!(ids.bind("n4", Some(&[4; 32]), v6(4), None, &limits, now + DAY).is_ok(), "a new day");
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_complete_one_finished() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("names");
        let good = format!("alice {}", Fingerprint::from_bytes([1; 32]));
        std::fs::write(&file, format!("{good}\nbob SHA256:abc")).unwrap();
        let (table, writable) = load_names(&file).unwrap();
        assert!(writable && table.contains_key("alice") && !table.contains_key("bob"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{good}\n"));
        std::fs::write(&file, &good).unwrap();
        let (table, _) = load_names(&file).unwrap();
        assert!(table.contains_key("alice"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{good}\n"));
        // A bad line in the middle is corruption, reported with its number.
        std::fs::write(&file, format!("{good}\nnot a line\n{good}\n")).unwrap();
        let err = load_names(&file).unwrap_err().to_string();
        assert!(err.contains("line 2 is corrupt"), "{err}");
    }
}
