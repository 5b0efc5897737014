//! Name bindings kept in a store that several servers may share
//! (docs/cluster.md). The key `name/<folded name>` holds the 32-byte
//! fingerprint of the identity key that owns the name. It is created with
//! compare-and-set against "no value", so when two servers bind one name
//! to two keys at the same moment exactly one creation succeeds; the other
//! server reads the winner and refuses its client exactly as it refuses any
//! name already bound. A binding is never changed or removed.
//!
//! Look-alikes (PROTOCOL.md §13.4: `a1ice` once `alice` is bound) are kept
//! apart the same way: `skel/<skeleton>` holds the key of the first binding
//! with that skeleton ([`name_skeleton`]), created with compare-and-set
//! before the name's key; a name whose skeleton belongs to another key is
//! refused. (A skeleton created for a name whose own creation then fails
//! stays with that key: it keeps look-alikes from other keys, nothing more.)
//!
//! Each server keeps the bindings it has seen in its table: all of them at
//! start ([`Identities::use_store`]), then those made through it and those
//! it learned from a creation that lost. Refusals from that table are
//! therefore always right; a binding made through another server since the
//! start is found when a client claims the name: a client with a key when
//! its creation fails, a client without one by reading the store (the name
//! and its skeleton) at every claim.
//! Quotas are counted from this table (per key, in all) and per server (per
//! address per day), so across several servers they are approximate.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherline_keys::Fingerprint;
use cipherline_proto::app::{ErrorCode, fold_name, name_skeleton};
use cipherline_store::{Store as _, StoreError};

use super::{Db, Identities, IdentityPolicy, Quotas, Table, belongs_to_another};
use crate::hub::Refusal;
use crate::source::Source;

/// The prefix of binding keys in the store.
const NAME_PREFIX: &str = "name/";

/// The prefix of look-alike keys in the store.
const SKELETON_PREFIX: &str = "skel/";

/// How long one store request may take before the claim is refused.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keys listed per request while loading.
const PAGE: usize = 500;

/// The store key of a folded name.
fn name_key(folded: &str) -> String {
    format!("{NAME_PREFIX}{folded}")
}

/// The store key of a name's skeleton.
fn skeleton_key(name: &str) -> String {
    format!("{SKELETON_PREFIX}{}", name_skeleton(name))
}

/// The refusal of a look-alike of a name bound to another key.
fn looks_like_another(name: &str) -> Refusal {
    (
        ErrorCode::IdentityMismatch,
        format!(
            "the name {name:?} looks too much like a name that belongs to another identity key on this server; \
             choose another name"
        ),
    )
}

/// What a creation by compare-and-set found.
enum Created {
    /// The key holds `k` now: created by this call (`true`), or it held
    /// `k` already.
    Ours(bool),
    /// The key holds another fingerprint.
    Theirs([u8; 32]),
    /// The store failed or holds something unreadable.
    Failed,
}

/// Creates `key` holding `k` unless it exists; reads it if it does.
async fn create(store: &Db, key: &str, k: &[u8; 32]) -> Created {
    match tokio::time::timeout(STORE_TIMEOUT, store.cas(key, None, k.to_vec())).await {
        Ok(Ok(_)) => Created::Ours(true),
        // Created already, maybe through another server at this moment.
        Ok(Err(StoreError::Conflict { .. })) => match bounded(store.get(key)).await {
            Ok(Some((value, _))) => match parse_value(&value) {
                Some(owner) if owner == *k => Created::Ours(false),
                Some(owner) => Created::Theirs(owner),
                None => {
                    tracing::error!(key, "a name binding in the store is not a fingerprint");
                    Created::Failed
                }
            },
            // Not deleted ever; a store that lost it cannot decide.
            Ok(None) => Created::Failed,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a name binding");
                Created::Failed
            }
        },
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record a name binding in the store");
            Created::Failed
        }
        Err(_) => {
            tracing::error!("the store did not answer in time to record a name binding");
            Created::Failed
        }
    }
}

/// How many creations [`create_many`] has in flight: enough for the
/// store's group commit to share one disk flush among them.
const IN_FLIGHT: usize = 256;

/// Creates each `(key, name, fingerprint)` unless it exists, many at a time
/// (a first start may copy tens of thousands of bindings); returns each with
/// its new revision, or `None` where the key existed.
async fn create_many(
    store: &Arc<Db>,
    items: Vec<(String, String, [u8; 32])>,
) -> Result<Vec<(String, String, [u8; 32], Option<u64>)>, String> {
    let mut done = Vec::with_capacity(items.len());
    let mut items = items.into_iter();
    loop {
        let mut tasks = tokio::task::JoinSet::new();
        for (key, name, k) in items.by_ref().take(IN_FLIGHT) {
            let store = store.clone();
            tasks.spawn(async move {
                let created = tokio::time::timeout(STORE_TIMEOUT, store.cas(&key, None, k.to_vec())).await;
                (key, name, k, created)
            });
        }
        if tasks.is_empty() {
            return Ok(done);
        }
        while let Some(joined) = tasks.join_next().await {
            let (key, name, k, created) = joined.map_err(|e| format!("name bindings in the store: {e}"))?;
            let outcome = match created {
                Ok(Ok(rev)) => Some(rev),
                Ok(Err(StoreError::Conflict { .. })) => None,
                Ok(Err(e)) => return Err(format!("name bindings in the store: {e}")),
                Err(_) => return Err("name bindings in the store: the store did not answer in time".to_owned()),
            };
            done.push((key, name, k, outcome));
        }
    }
}

/// A stored binding's value: exactly a fingerprint.
fn parse_value(value: &[u8]) -> Option<[u8; 32]> {
    value.try_into().ok()
}

/// Runs a store request with [`STORE_TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, String> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("name bindings in the store: {e}")),
        Err(_) => Err("name bindings in the store: the store did not answer in time".to_owned()),
    }
}

impl Identities {
    /// Keeps the open policy's bindings in `store` from now on (the server
    /// calls this when it runs with a store): loads the bindings already
    /// there, copies into it those of the names file that it lacks (for a
    /// name bound in both to different keys, the store's binding wins) and
    /// returns how many names are bound. The names file is not written
    /// from then on. Does nothing under the allowlist; calling it again (a
    /// server restarted with the same identities) reloads from `store`.
    pub async fn use_store(&self, store: Arc<Db>) -> Result<usize, String> {
        let IdentityPolicy::Open { .. } = &self.policy else { return Ok(0) };
        // Name to its key and the binding's revision (its age).
        let mut stored: HashMap<String, ([u8; 32], u64)> = HashMap::new();
        let mut after = String::new();
        loop {
            let keys = bounded(store.keys(NAME_PREFIX, &after, PAGE)).await?;
            let Some(last) = keys.last() else { break };
            after = last.clone();
            for key in keys {
                let Some(name) = key.strip_prefix(NAME_PREFIX) else { continue };
                let Some((value, rev)) = bounded(store.get(&key)).await? else { continue };
                let fp = parse_value(&value)
                    .ok_or_else(|| format!("name bindings in the store: the value of {key:?} is not a fingerprint"))?;
                stored.insert(name.to_owned(), (fp, rev));
            }
        }
        // The names file's bindings (one key per name in the open policy).
        let from_file: Vec<(String, [u8; 32])> = self
            .read()
            .iter()
            .filter_map(|(name, keys)| keys.first().map(|k| (name.clone(), *k)))
            .filter(|(name, _)| !stored.contains_key(name))
            .collect();
        let mut copied = 0_usize;
        let keys = from_file.into_iter().map(|(name, k)| (name_key(&name), name, k)).collect();
        for (key, name, k, outcome) in create_many(&store, keys).await? {
            match outcome {
                Some(rev) => {
                    stored.insert(name, (k, rev));
                    copied += 1;
                }
                None => {
                    // Bound meanwhile through another server: that one wins.
                    if let Some((value, rev)) = bounded(store.get(&key)).await?
                        && let Some(owner) = parse_value(&value)
                    {
                        if owner != k {
                            tracing::warn!(
                                name,
                                "names file: the store binds this name to another key; the store's binding holds"
                            );
                        }
                        stored.insert(name, (owner, rev));
                    }
                }
            }
        }
        if copied > 0 {
            tracing::info!(copied, "names file: bindings copied into the store (the file is no longer written)");
        }
        self.store_skeletons(&store, &stored).await?;
        let table: Table = stored.into_iter().map(|(name, (k, _))| (name, BTreeSet::from([k]))).collect();
        let bound = table.len();
        let mut current = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = Quotas::new(&table, true);
        quotas.per_key = fresh.per_key;
        quotas.skeletons = fresh.skeletons;
        *current = table;
        // Under both locks, so no claim sees the store without the table.
        *self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(store);
        Ok(bound)
    }

    /// Creates the look-alike keys that bindings made before them (or
    /// copied from a names file) lack: each skeleton goes to the key of its
    /// oldest binding. After the first start there is nothing to create.
    async fn store_skeletons(&self, store: &Arc<Db>, stored: &HashMap<String, ([u8; 32], u64)>) -> Result<(), String> {
        let mut have = std::collections::HashSet::new();
        let mut after = String::new();
        loop {
            let keys = bounded(store.keys(SKELETON_PREFIX, &after, PAGE)).await?;
            let Some(last) = keys.last() else { break };
            after = last.clone();
            have.extend(keys);
        }
        let mut oldest: HashMap<String, ([u8; 32], u64)> = HashMap::new();
        for (name, &(k, rev)) in stored {
            let key = skeleton_key(name);
            if have.contains(&key) {
                continue;
            }
            let entry = oldest.entry(key).or_insert((k, rev));
            if rev < entry.1 {
                *entry = (k, rev);
            }
        }
        let keys = oldest.into_iter().map(|(key, (k, _))| (key, String::new(), k)).collect();
        // A key that exists was created meanwhile through another server.
        create_many(store, keys).await?;
        Ok(())
    }

    /// Binds `name` to `k` in the store; [`Identities::bind`] has checked it
    /// against this server's table and reserved the quotas.
    pub(super) async fn bind_shared(&self, store: &Db, name: &str, k: &[u8; 32], from: IpAddr) -> Result<(), Refusal> {
        let cannot = || (ErrorCode::BadRequest, "the server cannot record your name".to_owned());
        let folded = fold_name(name);
        match create(store, &skeleton_key(&folded), k).await {
            Created::Ours(_) => {}
            Created::Theirs(_) => {
                self.release(k, from, true);
                // The name itself may be bound (then say so, and remember).
                return match bounded(store.get(&name_key(&folded))).await {
                    Ok(Some((value, _))) if let Some(owner) = parse_value(&value) => {
                        self.learn(&folded, owner);
                        if owner == *k { Ok(()) } else { Err(belongs_to_another(name)) }
                    }
                    _ => Err(looks_like_another(name)),
                };
            }
            Created::Failed => {
                self.release(k, from, true);
                return Err(cannot());
            }
        }
        match create(store, &name_key(&folded), k).await {
            Created::Ours(created) => {
                // Bound by this claim, or earlier through another server;
                // the address counts only a binding it made.
                self.learn(&folded, *k);
                self.release(k, from, !created);
                if created {
                    tracing::info!(name, key = %Fingerprint::from_bytes(*k), "name bound to identity key");
                }
                Ok(())
            }
            Created::Theirs(owner) => {
                self.release(k, from, true);
                self.learn(&folded, owner);
                Err(belongs_to_another(name))
            }
            Created::Failed => {
                self.release(k, from, true);
                Err(cannot())
            }
        }
    }

    /// Whether a client without a key may use `name`: not if the store
    /// binds it, or a look-alike of it, to a key.
    pub(super) async fn check_shared(&self, store: &Db, name: &str) -> Result<(), Refusal> {
        let folded = fold_name(name);
        let cannot = |e: String| {
            tracing::error!(error = %e, "cannot read name bindings");
            (ErrorCode::BadRequest, "the server cannot check your name".to_owned())
        };
        if let Some((value, _)) = bounded(store.get(&name_key(&folded))).await.map_err(cannot)? {
            if let Some(owner) = parse_value(&value) {
                self.learn(&folded, owner);
            }
            return Err(belongs_to_another(name));
        }
        if bounded(store.get(&skeleton_key(&folded))).await.map_err(cannot)?.is_some() {
            return Err(looks_like_another(name));
        }
        Ok(())
    }

    /// Reads `name`'s binding from the store into this server's table, if
    /// there is one: a name bound through another server since this one
    /// loaded its table becomes known here as a stored user. A store error
    /// is logged and leaves the table as it was.
    pub(crate) async fn look_up(&self, name: &str) {
        let Some(store) = self.shared_store() else { return };
        let folded = fold_name(name);
        match bounded(store.get(&name_key(&folded))).await {
            Ok(Some((value, _))) => {
                if let Some(owner) = parse_value(&value) {
                    self.learn(&folded, owner);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look up a name binding"),
        }
    }

    /// Gives back the per-key reservation of a claim (and its per-address
    /// count when no binding was made).
    fn release(&self, k: &[u8; 32], from: IpAddr, address_too: bool) {
        let _table = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = quotas.per_key.get_mut(k) {
            *n = n.saturating_sub(1);
        }
        if address_too && let Some((_, n)) = quotas.per_ip.get_mut(&Source::of(from)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Records a binding found in the store in this server's table;
    /// whether it was new to it.
    fn learn(&self, folded: &str, owner: [u8; 32]) -> bool {
        let mut table = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.get(folded).is_some_and(|keys| keys.contains(&owner)) {
            return false;
        }
        table.insert(folded.to_owned(), BTreeSet::from([owner]));
        *quotas.per_key.entry(owner).or_default() += 1;
        quotas.skeletons.entry(name_skeleton(folded)).or_default().insert(folded.to_owned());
        true
    }
}
