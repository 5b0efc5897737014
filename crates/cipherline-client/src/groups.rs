//! The local store's record of end-to-end conversations (schema version
//! 2): which MLS group is which room or direct conversation, and what
//! processing each delivered MLS message gave.
//!
//! The second table is what lets several `cipherline` processes of one
//! data directory share one MLS state: an MLS message can be decrypted
//! only once (its key is erased after use), so the first process to
//! process a delivery records the outcome under the server's message id,
//! and every later delivery of that id (to another process, or again after
//! a reconnect) is answered from the record. It holds plaintext, like the
//! history (SECURITY.md).

use cipherline_proto::app::{Target, fold_name};
use rusqlite::{OptionalExtension as _, params};

use crate::error::ClientError;
use crate::local::LocalStore;

pub(crate) const SCHEMA_V2: &str = "
-- Whether a message travelled end to end (1) or readable by the server (0).
ALTER TABLE history ADD COLUMN e2e INTEGER NOT NULL DEFAULT 0 CHECK (e2e IN (0, 1));
CREATE TABLE e2e_groups (
    server TEXT NOT NULL,
    group_id BLOB NOT NULL,
    -- The folded room name, or NULL for a direct conversation.
    room TEXT,
    -- The folded name of the other member of a direct conversation.
    peer TEXT,
    CHECK ((room IS NULL) <> (peer IS NULL)),
    PRIMARY KEY (server, group_id)
) WITHOUT ROWID;
CREATE INDEX e2e_groups_by_room ON e2e_groups (server, room);
CREATE INDEX e2e_groups_by_peer ON e2e_groups (server, peer);
CREATE TABLE e2e_processed (
    server TEXT NOT NULL,
    id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'joined', 'changed', 'removed', 'failed')),
    actor TEXT NOT NULL,
    actor_key BLOB NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('room', 'user')),
    target TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    notice TEXT NOT NULL,
    PRIMARY KEY (server, id)
) WITHOUT ROWID;
-- Per group, the highest epoch this client joined it at by Welcome: an
-- older invitation replayed is refused.
CREATE TABLE e2e_joined (
    server TEXT NOT NULL,
    group_id BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (server, group_id)
) WITHOUT ROWID;
-- Per group and member, the highest message counter seen (received), or
-- sent (this user's own row).
CREATE TABLE e2e_counters (
    server TEXT NOT NULL,
    group_id BLOB NOT NULL,
    member TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (server, group_id, member)
) WITHOUT ROWID;
";

/// What an end-to-end conversation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKind {
    /// A room (folded name).
    Room(String),
    /// A direct conversation with this user (folded name).
    Direct(String),
}

/// What processing one delivered MLS message gave, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A message from a member; `actor_key` is its MLS identity key.
    Message {
        /// The sender, as its MLS credential names it.
        from: String,
        /// The sender's Ed25519 key, as its MLS credential holds it.
        key: [u8; 32],
        /// The room, or this user for a direct message.
        target: Target,
        /// The text.
        text: String,
        /// The sender's clock (authenticated by MLS), Unix milliseconds.
        sent_at_ms: u64,
        /// Empty, or what the sender's counter says (messages of theirs
        /// missing before this one, or this one out of order).
        notice: String,
    },
    /// A file announced by a member (PROTOCOL.md §13.12): recorded as a
    /// download of this data directory under the message's id
    /// ([`LocalStore::download_of`]), which holds its key.
    File {
        /// The sender, as its MLS credential names it.
        from: String,
        /// The sender's Ed25519 key, as its MLS credential holds it.
        key: [u8; 32],
        /// The room, or this user for a direct conversation.
        target: Target,
        /// The sender's name for the file (sanitise before use as a path,
        /// escape before showing).
        name: String,
        /// Plaintext bytes.
        size: u64,
        /// SHA-256 of the plaintext.
        sha256: [u8; 32],
        /// The sender's clock, Unix milliseconds.
        sent_at_ms: u64,
        /// As for a message: what the sender's counter says.
        notice: String,
    },
    /// This user was added to a conversation (a Welcome).
    Joined {
        /// Who the conversation is with: the room, or the other person.
        target: Target,
        /// The members, comma-separated, as their credentials name them.
        members: String,
    },
    /// Members were added or removed by `by`.
    Changed {
        /// Who committed.
        by: String,
        /// The room or person.
        target: Target,
        /// What changed, as `+name` and `-name` words.
        summary: String,
    },
    /// This user was removed from the conversation by `by`.
    Removed {
        /// Who committed.
        by: String,
        /// The room or person.
        target: Target,
    },
    /// The message could not be processed: altered, forged, replayed, or
    /// for a conversation this client is not in. `from` is who the relay
    /// says sent it (not authenticated).
    Failed {
        /// The relay's sender.
        from: String,
        /// The room or person, as far as known.
        target: Target,
        /// Why, for the user.
        reason: String,
    },
}

fn target_parts(t: &Target) -> (&'static str, &str) {
    match t {
        Target::Room(r) => ("room", r),
        Target::User(u) => ("user", u),
    }
}

#[allow(clippy::cast_possible_wrap)]
fn to_sql(v: u64) -> i64 {
    v as i64
}

impl LocalStore {
    /// Records what `group_id` is on `server`.
    pub fn set_group(&self, server: &str, group_id: &[u8], kind: &GroupKind) -> Result<(), ClientError> {
        let (room, peer) = match kind {
            GroupKind::Room(r) => (Some(fold_name(r)), None),
            GroupKind::Direct(p) => (None, Some(fold_name(p))),
        };
        self.write(|tx| {
            tx.execute(
                "INSERT INTO e2e_groups (server, group_id, room, peer) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (server, group_id) DO UPDATE SET room = ?3, peer = ?4",
                params![server, group_id, room, peer],
            )
            .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    /// Forgets `group_id` (this user left or was removed).
    pub fn forget_group(&self, server: &str, group_id: &[u8]) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.execute("DELETE FROM e2e_groups WHERE server = ?1 AND group_id = ?2", params![server, group_id])
                .map_err(|e| self.error(e))?;
            // Joined again later, everyone's messages count afresh.
            tx.execute("DELETE FROM e2e_counters WHERE server = ?1 AND group_id = ?2", params![server, group_id])
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    /// What `group_id` is, if known.
    pub fn group(&self, server: &str, group_id: &[u8]) -> Result<Option<GroupKind>, ClientError> {
        self.read(|conn| {
            let row: Option<(Option<String>, Option<String>)> = conn
                .query_row(
                    "SELECT room, peer FROM e2e_groups WHERE server = ?1 AND group_id = ?2",
                    params![server, group_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.error(e))?;
            match row {
                None => Ok(None),
                Some((Some(room), None)) => Ok(Some(GroupKind::Room(room))),
                Some((None, Some(peer))) => Ok(Some(GroupKind::Direct(peer))),
                Some(_) => Err(self.corrupt("an end-to-end group is both a room and a direct conversation")),
            }
        })
    }

    /// The groups recorded as `kind`, smallest id first (two people who
    /// started a conversation with each other at once both use the
    /// smaller one).
    pub fn groups_of(&self, server: &str, kind: &GroupKind) -> Result<Vec<Vec<u8>>, ClientError> {
        let (sql, name) = match kind {
            GroupKind::Room(r) => {
                ("SELECT group_id FROM e2e_groups WHERE server = ?1 AND room = ?2 ORDER BY group_id", fold_name(r))
            }
            GroupKind::Direct(p) => {
                ("SELECT group_id FROM e2e_groups WHERE server = ?1 AND peer = ?2 ORDER BY group_id", fold_name(p))
            }
        };
        self.read(|conn| {
            let mut stmt = conn.prepare(sql).map_err(|e| self.error(e))?;
            let rows = stmt.query_map(params![server, name], |r| r.get(0)).map_err(|e| self.error(e))?;
            rows.collect::<Result<Vec<Vec<u8>>, _>>().map_err(|e| self.error(e))
        })
    }

    /// The recorded outcome of the MLS message `id` of `server`, if a
    /// process of this data directory processed it already.
    pub fn processed(&self, server: &str, id: u64) -> Result<Option<Outcome>, ClientError> {
        type Row = (String, String, Vec<u8>, String, String, String, i64, String, Option<Vec<u8>>);
        self.read(|conn| {
            let row: Option<Row> = conn
                .query_row(
                    "SELECT kind, actor, actor_key, target_kind, target, text, sent_at_ms, notice, file
                     FROM e2e_processed WHERE server = ?1 AND id = ?2",
                    params![server, to_sql(id)],
                    |r| r.try_into(),
                )
                .optional()
                .map_err(|e| self.error(e))?;
            let Some((kind, actor, key, target_kind, target, text, sent_at_ms, notice, file)) = row else {
                return Ok(None);
            };
            let target = match target_kind.as_str() {
                "room" => Target::Room(target),
                "user" => Target::User(target),
                _ => return Err(self.corrupt("an end-to-end outcome has an unknown target kind")),
            };
            #[allow(clippy::cast_sign_loss)]
            let sent_at_ms = sent_at_ms as u64;
            Ok(Some(match kind.as_str() {
                "message" => Outcome::Message {
                    from: actor,
                    key: key.try_into().map_err(|_| self.corrupt("an end-to-end sender key is not 32 bytes"))?,
                    target,
                    text,
                    sent_at_ms,
                    notice,
                },
                "file" => {
                    let file = file.ok_or_else(|| self.corrupt("a file outcome has no file facts"))?;
                    let (size, sha256) = file.split_at_checked(8).ok_or_else(|| self.corrupt("bad file facts"))?;
                    Outcome::File {
                        from: actor,
                        key: key.try_into().map_err(|_| self.corrupt("an end-to-end sender key is not 32 bytes"))?,
                        target,
                        name: text,
                        size: u64::from_be_bytes(size.try_into().map_err(|_| self.corrupt("bad file facts"))?),
                        sha256: sha256.try_into().map_err(|_| self.corrupt("bad file facts"))?,
                        sent_at_ms,
                        notice,
                    }
                }
                "joined" => Outcome::Joined { target, members: text },
                "changed" => Outcome::Changed { by: actor, target, summary: text },
                "removed" => Outcome::Removed { by: actor, target },
                "failed" => Outcome::Failed { from: actor, target, reason: text },
                _ => return Err(self.corrupt("an end-to-end outcome has an unknown kind")),
            }))
        })
    }

    /// Records the outcome of the MLS message `id`; false if another
    /// process recorded one first (keep theirs: the message is gone).
    pub fn set_processed(&self, server: &str, id: u64, outcome: &Outcome) -> Result<bool, ClientError> {
        let none = String::new();
        let mut file: Option<Vec<u8>> = None;
        let (kind, actor, key, target, text, sent_at_ms, notice): (_, &str, &[u8], _, &str, u64, &str) = match outcome {
            Outcome::Message { from, key, target, text, sent_at_ms, notice } => {
                ("message", from, key, target, text, *sent_at_ms, notice)
            }
            Outcome::File { from, key, target, name, size, sha256, sent_at_ms, notice } => {
                file = Some([&size.to_be_bytes()[..], sha256].concat());
                ("file", from, key, target, name, *sent_at_ms, notice)
            }
            Outcome::Joined { target, members } => ("joined", &none, &[], target, members, 0, &none),
            Outcome::Changed { by, target, summary } => ("changed", by, &[], target, summary, 0, &none),
            Outcome::Removed { by, target } => ("removed", by, &[], target, &none, 0, &none),
            Outcome::Failed { from, target, reason } => ("failed", from, &[], target, reason, 0, &none),
        };
        let (target_kind, target) = target_parts(target);
        self.write(|tx| {
            let added = tx
                .execute(
                    "INSERT INTO e2e_processed
                       (server, id, kind, actor, actor_key, target_kind, target, text, sent_at_ms, notice, file)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (server, id) DO NOTHING",
                    params![
                        server,
                        to_sql(id),
                        kind,
                        actor,
                        key,
                        target_kind,
                        target,
                        text,
                        to_sql(sent_at_ms),
                        notice,
                        file
                    ],
                )
                .map_err(|e| self.error(e))?;
            // Bounded like the history: the oldest outcomes go (a message
            // delivered again after that long is long acknowledged).
            tx.execute(
                "DELETE FROM e2e_processed WHERE server = ?1 AND id <
                   (SELECT id FROM e2e_processed WHERE server = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![server, to_sql(self.max_messages())],
            )
            .map_err(|e| self.error(e))?;
            Ok(added == 1)
        })
    }
}

impl LocalStore {
    /// The next counter for this user's messages in `group_id` (1 for the
    /// first), recorded before it is used.
    pub fn next_sent(&self, server: &str, group_id: &[u8], me: &str) -> Result<u64, ClientError> {
        self.write(|tx| {
            let n: i64 = tx
                .query_row(
                    "INSERT INTO e2e_counters (server, group_id, member, n) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (server, group_id, member) DO UPDATE SET n = n + 1 RETURNING n",
                    params![server, group_id, fold_name(me)],
                    |r| r.get(0),
                )
                .map_err(|e| self.error(e))?;
            #[allow(clippy::cast_sign_loss)]
            Ok(n as u64)
        })
    }

    /// Records `counter` as seen from `member` in `group_id`; returns the
    /// highest seen before (`None`: nothing from them yet).
    pub fn saw(&self, server: &str, group_id: &[u8], member: &str, counter: u64) -> Result<Option<u64>, ClientError> {
        self.write(|tx| {
            let e = |e| self.error(e);
            let before: Option<i64> = tx
                .query_row(
                    "SELECT n FROM e2e_counters WHERE server = ?1 AND group_id = ?2 AND member = ?3",
                    params![server, group_id, fold_name(member)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            #[allow(clippy::cast_sign_loss)]
            let before = before.map(|n| n as u64);
            if before.is_none_or(|b| counter > b) {
                tx.execute(
                    "INSERT INTO e2e_counters (server, group_id, member, n) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (server, group_id, member) DO UPDATE SET n = ?4",
                    params![server, group_id, fold_name(member), to_sql(counter)],
                )
                .map_err(e)?;
            }
            Ok(before)
        })
    }
}

impl LocalStore {
    /// Records joining `group_id` at `epoch`; false if this client joined
    /// it at that epoch or a later one before (an invitation replayed).
    pub fn joined_at(&self, server: &str, group_id: &[u8], epoch: u64) -> Result<bool, ClientError> {
        self.write(|tx| {
            let e = |e| self.error(e);
            let before: Option<i64> = tx
                .query_row(
                    "SELECT epoch FROM e2e_joined WHERE server = ?1 AND group_id = ?2",
                    params![server, group_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            #[allow(clippy::cast_sign_loss)]
            if before.is_some_and(|b| b as u64 >= epoch) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO e2e_joined (server, group_id, epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (server, group_id) DO UPDATE SET epoch = ?3",
                params![server, group_id, to_sql(epoch)],
            )
            .map_err(e)?;
            Ok(true)
        })
    }

    /// Sets the highest counter seen from `member` in `group_id` (0: its
    /// messages count from 1 from now on).
    pub fn set_seen(&self, server: &str, group_id: &[u8], member: &str, n: u64) -> Result<(), ClientError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO e2e_counters (server, group_id, member, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (server, group_id, member) DO UPDATE SET n = ?4",
                params![server, group_id, fold_name(member), to_sql(n)],
            )
            .map_err(|e| self.error(e))?;
            Ok(())
        })
    }
}
