//! Who is connected where (docs/cluster.md, step 3): a name used on one
//! node is taken on every node. In the store:
//!
//! - `presence/<folded>/<node>`: how many sessions of the name this node
//!   has (8 bytes), written before the claim and deleted when the node's
//!   last one ends; entries of dead nodes (no heartbeat for
//!   [`super::NODE_TTL`]) do not count and are deleted by their readers.
//! - `claim/<folded>`: who holds the name: 1 then the key's fingerprint, or
//!   0 for a client without a key; created with `cas(None)`. A claim
//!   without a live presence entry of another node is stale and taken over
//!   by compare-and-set. When a node's last session of the name ends and
//!   no other live node has one, the node deletes the claim with
//!   `delete_if` on the revision it read, so a newer holder's claim (a
//!   new revision) is never removed; a claim left by a dead node is taken
//!   over as stale by the next claimer.
//! - `alike/<skeleton>`: the folded name that holds a look-alike skeleton,
//!   the same way (released with the claim, if it still holds this name).
//!
//! Writing presence before claiming makes a race safe: of two nodes
//! claiming one name, the loser of the `cas` reads the claim after the
//! winner wrote its presence, so it sees the winner live and refuses.

use cipherline_proto::app::{ErrorCode, fold_name, name_skeleton};
use cipherline_store::{Store as _, StoreError};

use super::{Cluster, decode_u64, locked};
use crate::hub::{Hub, MAX_SESSIONS_PER_NAME, Me, Refusal};
use crate::mail::bounded;

/// Compare-and-set rounds before a claim gives up (each lost round means
/// another node changed the claim meanwhile).
const ROUNDS: usize = 4;

/// When a held claim or skeleton is still in use.
#[derive(Clone, Copy)]
enum Check {
    /// A claim: the name has this many sessions on other live nodes.
    Elsewhere(u64),
    /// A skeleton: held for the name it holds while that has sessions on
    /// other live nodes, unless the claimer `owns` its own name.
    Alike { owns: bool },
}

fn presence_prefix(folded: &str) -> String {
    format!("presence/{folded}/")
}

fn claim_value(fp: Option<&[u8; 32]>) -> Vec<u8> {
    match fp {
        Some(fp) => [&[1u8][..], fp].concat(),
        None => vec![0],
    }
}

fn taken(name: &str) -> Refusal {
    (ErrorCode::NameTaken, format!("the name {name:?} is in use on another node; choose another"))
}

fn unavailable() -> Refusal {
    (ErrorCode::StoreFailed, "the server could not check the name with its other nodes; try again".into())
}

fn busy() -> Refusal {
    (ErrorCode::NameTaken, "the name is being claimed on another node; try again".into())
}

impl Cluster {
    /// Sessions of `folded` on other live nodes (deleting dead nodes'
    /// entries on the way).
    pub(super) async fn sessions_elsewhere(&self, folded: &str) -> Result<u64, Refusal> {
        let mut total = 0u64;
        self.scan_elsewhere(&presence_prefix(folded), |value| {
            total = total.saturating_add(decode_u64(value).unwrap_or(1).max(1));
            true
        })
        .await?;
        Ok(total)
    }

    /// Makes `presence/<folded>/<this node>` say what `local` says now.
    async fn sync_presence(&self, folded: &str) -> Result<(), Refusal> {
        let _order = self.ordered(folded).await;
        let count = locked(&self.present).get(folded).copied().unwrap_or(0);
        let key = format!("{}{}", presence_prefix(folded), self.node);
        if count == 0 {
            bounded(self.store.delete(&key)).await.map(drop)
        } else {
            bounded(self.store.put(&key, u64::try_from(count).unwrap_or(u64::MAX).to_be_bytes().to_vec()))
                .await
                .map(drop)
        }
    }

    /// Takes `key` (a claim or a look-alike skeleton) for `value`, unless
    /// it holds another value that `live` says is still in use.
    async fn take(&self, key: &str, value: &[u8], same_ok: bool, check: Check) -> Result<bool, Refusal> {
        let mut expected = None;
        for _ in 0..ROUNDS {
            match tokio::time::timeout(crate::mail::STORE_TIMEOUT, self.store.cas(key, expected, value.to_vec())).await
            {
                Ok(Ok(_)) => return Ok(true),
                Ok(Err(StoreError::Conflict { .. })) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "store request failed");
                    return Err(unavailable());
                }
                Err(_) => {
                    tracing::error!("store request timed out");
                    return Err(unavailable());
                }
            }
            let Some((held, rev)) = bounded(self.store.get(key)).await? else {
                expected = None;
                continue;
            };
            if held == value && same_ok {
                return Ok(true);
            }
            let live = match check {
                Check::Elsewhere(n) => n > 0,
                // The owner of exactly this name may use it next to a
                // look-alike (as on one node).
                Check::Alike { owns } => match std::str::from_utf8(&held) {
                    Ok(other) => !owns && self.sessions_elsewhere(other).await? > 0,
                    Err(_) => false,
                },
            };
            if live {
                return Ok(false);
            }
            // Stale: its holder is gone; take it over.
            expected = Some(rev);
        }
        Err(busy())
    }

    /// Claims `name` for a new session here (`sessions`: this node's
    /// sessions of it, the new one included).
    async fn claim(&self, name: &str, fp: Option<&[u8; 32]>, sessions: usize, owns: bool) -> Result<(), Refusal> {
        let folded = fold_name(name);
        locked(&self.present).insert(folded.clone(), sessions);
        // Live traffic for the name from other nodes (step 4).
        self.follow(self.user_subject(&folded), true);
        self.sync_presence(&folded).await?;
        let elsewhere = self.sessions_elsewhere(&folded).await?;
        let won =
            self.take(&format!("claim/{folded}"), &claim_value(fp), fp.is_some(), Check::Elsewhere(elsewhere)).await?;
        if !won {
            return Err(taken(name));
        }
        if fp.is_some()
            && elsewhere.saturating_add(u64::try_from(sessions).unwrap_or(u64::MAX))
                > u64::try_from(MAX_SESSIONS_PER_NAME).unwrap_or(4)
        {
            return Err((
                ErrorCode::NameTaken,
                format!(
                    "your identity key has {MAX_SESSIONS_PER_NAME} sessions open as {name:?} already; close one first"
                ),
            ));
        }
        let skeleton = name_skeleton(name);
        let alike = self.take(&format!("alike/{skeleton}"), folded.as_bytes(), true, Check::Alike { owns }).await?;
        if !alike {
            return Err((
                ErrorCode::NameTaken,
                format!("the name {name:?} looks too much like a name in use on another node; choose another"),
            ));
        }
        Ok(())
    }

    /// The node's last session of `folded` ended: deletes its claim and
    /// look-alike skeleton, unless a new session here took the name again
    /// or another live node has sessions of it (the claim is theirs then).
    /// Each delete is conditional on the revision read, so a claim another
    /// node wrote meanwhile stays. Without this every name ever used would
    /// leave two keys in the store.
    async fn release(&self, folded: &str, skeleton: &str) -> Result<(), Refusal> {
        // Under the name's order lock: a new session here inserts itself
        // into `present` before it waits for that lock to write presence.
        let _order = self.ordered(folded).await;
        if locked(&self.present).contains_key(folded) || self.sessions_elsewhere(folded).await? > 0 {
            return Ok(());
        }
        for (key, holder) in [(format!("claim/{folded}"), None), (format!("alike/{skeleton}"), Some(folded.as_bytes()))]
        {
            if let Some((value, revision)) = bounded(self.store.get(&key)).await?
                && holder.is_none_or(|h| value == h)
            {
                bounded(self.store.delete_if(&key, revision)).await?;
            }
        }
        Ok(())
    }

    /// This node now has `remaining` sessions of `name`.
    fn left(self: &std::sync::Arc<Self>, name: &str, remaining: usize) {
        let folded = fold_name(name);
        let skeleton = name_skeleton(name);
        {
            let mut present = locked(&self.present);
            if remaining == 0 {
                present.remove(&folded);
                self.follow(self.user_subject(&folded), false);
            } else {
                present.insert(folded.clone(), remaining);
            }
        }
        let cluster = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err((_, why)) = cluster.sync_presence(&folded).await {
                    tracing::warn!(node = %cluster.node, "could not update presence: {why}");
                } else if remaining == 0
                    && let Err((_, why)) = cluster.release(&folded, &skeleton).await
                {
                    // Left for the next claimer to take over as stale.
                    tracing::warn!(node = %cluster.node, "could not release a name: {why}");
                }
            });
        }
    }
}

impl Hub {
    /// With other nodes: claims connection `me`'s name across them (after
    /// [`Hub::register`] accepted it here). A refusal leaves the caller to
    /// unregister `me`.
    pub(crate) async fn claim_across(&self, me: &Me, fp: Option<&[u8; 32]>) -> Result<(), Refusal> {
        let Some(cluster) = &self.cluster else { return Ok(()) };
        let sessions = self.session_count(&me.name);
        let owns = self.identities.owns(&me.name, fp);
        cluster.claim(&me.name, fp, sessions, owns).await
    }

    /// With other nodes: this node has `remaining` sessions of `name` now.
    pub(crate) fn left_across(&self, name: &str, remaining: usize) {
        if let Some(cluster) = &self.cluster {
            cluster.left(name, remaining);
        }
    }
}
