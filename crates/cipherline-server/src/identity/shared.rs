//! Name bindings kept in a store that several servers may share
//! (docs/cluster.md). The key `name/<folded name>` holds the 32-byte
//! fingerprint of the identity key that owns the name. It is created with
//! compare-and-set against "no value", so when two servers bind one name
//! to two keys at the same moment exactly one creation succeeds; the other
//! server reads the winner and refuses its client exactly as it refuses any
//! name already bound. A binding is never changed or removed.
//!
//! Each server keeps the bindings it has seen in its table: all of them at
//! start ([`Identities::use_store`]), then those made through it and those
//! it learned from a creation that lost. Refusals from that table are
//! therefore always right; a binding made through another server since the
//! start is found when a client claims the name (its creation fails).
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

/// How long one store request may take before the claim is refused.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keys listed per request while loading.
const PAGE: usize = 500;

/// The store key of a folded name.
fn name_key(folded: &str) -> String {
    format!("{NAME_PREFIX}{folded}")
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
    /// from then on. Does nothing under the allowlist; calling it again
    /// with the same store only reloads.
    pub async fn use_store(&self, store: Arc<Db>) -> Result<usize, String> {
        let IdentityPolicy::Open { .. } = &self.policy else { return Ok(0) };
        if self.store.get().is_some_and(|s| !Arc::ptr_eq(s, &store)) {
            return Err("name bindings: these identities already use another store".to_owned());
        }
        let mut stored: HashMap<String, [u8; 32]> = HashMap::new();
        let mut after = String::new();
        loop {
            let keys = bounded(store.keys(NAME_PREFIX, &after, PAGE)).await?;
            let Some(last) = keys.last() else { break };
            after = last.clone();
            for key in keys {
                let Some(name) = key.strip_prefix(NAME_PREFIX) else { continue };
                let Some((value, _)) = bounded(store.get(&key)).await? else { continue };
                let fp = parse_value(&value)
                    .ok_or_else(|| format!("name bindings in the store: the value of {key:?} is not a fingerprint"))?;
                stored.insert(name.to_owned(), fp);
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
        for (name, k) in from_file {
            let key = name_key(&name);
            match tokio::time::timeout(STORE_TIMEOUT, store.cas(&key, None, k.to_vec())).await {
                Ok(Ok(_)) => {
                    stored.insert(name, k);
                    copied += 1;
                }
                Ok(Err(StoreError::Conflict { .. })) => {
                    // Bound meanwhile through another server: that one wins.
                    if let Some((value, _)) = bounded(store.get(&key)).await?
                        && let Some(owner) = parse_value(&value)
                    {
                        if owner != k {
                            tracing::warn!(
                                name,
                                "names file: the store binds this name to another key; the store's binding holds"
                            );
                        }
                        stored.insert(name, owner);
                    }
                }
                Ok(Err(e)) => return Err(format!("name bindings in the store: {e}")),
                Err(_) => return Err("name bindings in the store: the store did not answer in time".to_owned()),
            }
        }
        if copied > 0 {
            tracing::info!(copied, "names file: bindings copied into the store (the file is no longer written)");
        }
        let table: Table = stored.into_iter().map(|(name, k)| (name, BTreeSet::from([k]))).collect();
        let bound = table.len();
        let mut current = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = Quotas::new(&table, true);
        quotas.per_key = fresh.per_key;
        quotas.skeletons = fresh.skeletons;
        *current = table;
        if self.store.get().is_none() {
            // Under both locks, so no claim sees the store without the table.
            let _ = self.store.set(store);
        }
        Ok(bound)
    }

    /// Binds `name` to `k` in the store; [`Identities::bind`] has checked it
    /// against this server's table and reserved the quotas.
    pub(super) async fn bind_shared(&self, store: &Db, name: &str, k: &[u8; 32], from: IpAddr) -> Result<(), Refusal> {
        let folded = fold_name(name);
        let key = name_key(&folded);
        let created = tokio::time::timeout(STORE_TIMEOUT, store.cas(&key, None, k.to_vec())).await;
        let owner = match created {
            Ok(Ok(_)) => {
                self.release(k, from, false);
                self.learn(&folded, *k);
                tracing::info!(name, key = %Fingerprint::from_bytes(*k), "name bound to identity key");
                return Ok(());
            }
            // Bound already, maybe through another server at this moment.
            Ok(Err(StoreError::Conflict { .. })) => match bounded(store.get(&key)).await {
                Ok(Some((value, _))) => parse_value(&value),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a name binding");
                    None
                }
            },
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot record a name binding in the store");
                None
            }
            Err(_) => {
                tracing::error!("the store did not answer in time to record a name binding");
                None
            }
        };
        self.release(k, from, true);
        match owner {
            Some(owner) => {
                self.learn(&folded, owner);
                if owner == *k { Ok(()) } else { Err(belongs_to_another(name)) }
            }
            None => Err((ErrorCode::BadRequest, "the server cannot record your name".to_owned())),
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

    /// Records a binding found in the store in this server's table.
    fn learn(&self, folded: &str, owner: [u8; 32]) {
        let mut table = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut quotas = self.quotas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.get(folded).is_some_and(|keys| keys.contains(&owner)) {
            return;
        }
        table.insert(folded.to_owned(), BTreeSet::from([owner]));
        *quotas.per_key.entry(owner).or_default() += 1;
        quotas.skeletons.entry(name_skeleton(folded)).or_default().insert(folded.to_owned());
    }
}
