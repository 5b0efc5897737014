//! What a recipient remembers about other people's identity keys, and the
//! verdict on each message or file it receives (PROTOCOL.md §13.7).
//!
//! Like the known-servers file, but per peer: the first key seen for a name
//! on a server is remembered (trust on first use); a different key later, or
//! no signature at all under a name whose key is remembered, is a loud
//! warning, never silently accepted. A remembered key is `known`; once the
//! user has compared safety codes with the peer and said so, `verified`.
//!
//! # Where
//!
//! In the `peers` table of the client's local store ([`crate::local`]),
//! one row per server and folded name. (Before, a `known_peers` text file;
//! the store imports it on first open, see [`crate::local`].)
//!
//! # Writing
//!
//! Several processes share the store (a `listen` and a `chat`), so every
//! write is a compare-and-set in one transaction: the row is written only
//! if it still holds the key this process last read; otherwise nothing is
//! written, the stored record is adopted, and the caller hears
//! [`ClientError::PeerChangedElsewhere`]. A relay therefore cannot get a key
//! a user verified in one window replaced through another.

use std::collections::HashMap;
use std::path::Path;

use cipherline_keys::Fingerprint;
use cipherline_proto::app::{Delivery, FileSigned, MAX_NAME, fold_name, valid_name};
use cipherline_proto::crypto::sign::IdentityPublicKey;
use cipherline_proto::signature::{self, FileFacts, Verification};
use rusqlite::{OptionalExtension as _, params};

use crate::ClientError;
use crate::local::LocalStore;

/// Most peers remembered in the store for one server; beyond it new keys
/// are remembered for this run only (up to [`MAX_PEERS`] more), so a relay
/// inventing names cannot grow the store or the map without bound, nor
/// crowd out the peers of other servers.
pub const MAX_PEERS: usize = 10_000;

/// The verdict on one relayed message or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageStatus {
    /// Signed by a key seen for the first time for this name, now
    /// remembered; nobody compared it with anything yet.
    New(Fingerprint),
    /// Signed by the key remembered for the sender.
    Known,
    /// Signed by the key remembered for the sender, which the user
    /// confirmed by comparing safety codes.
    Verified,
    /// The sender did not sign, and no key is remembered for the name.
    Unsigned,
    /// The signature does not verify: altered or forged on the way.
    Invalid,
    /// A key is remembered for the name, but this was signed by another key
    /// (`presented`) or not signed at all (`presented` is `None`).
    KeyChanged {
        /// The key remembered for the sender.
        remembered: Fingerprint,
        /// The key that signed this, if any.
        presented: Option<Fingerprint>,
    },
}

impl MessageStatus {
    /// Whether the message can be shown as coming from the key on record
    /// for the named sender (first use included).
    #[must_use]
    pub fn is_trusted(&self) -> bool {
        matches!(self, MessageStatus::Verified | MessageStatus::Known | MessageStatus::New(_))
    }

    /// A short word for displays and JSON: `new`, `known`, `verified`,
    /// `unsigned`, `invalid-signature` or `key-changed`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            MessageStatus::New(_) => "new",
            MessageStatus::Known => "known",
            MessageStatus::Verified => "verified",
            MessageStatus::Unsigned => "unsigned",
            MessageStatus::Invalid => "invalid-signature",
            MessageStatus::KeyChanged { .. } => "key-changed",
        }
    }
}

/// One remembered key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    fp: Fingerprint,
    verified: bool,
}

/// Remembered peer keys for one server.
pub struct Peers {
    server: String,
    store: Option<LocalStore>,
    /// By folded name (PROTOCOL.md §13.4): `ALICE` is `alice`, so a key
    /// change cannot hide behind another spelling.
    keys: HashMap<String, Entry>,
}

impl Peers {
    /// Peers of `server`, remembered in the local store at `db` (see
    /// [`crate::local::LocalStore::open`]; a `known_peers` file beside it is
    /// imported on first open), or only in memory with `None`. A store or
    /// legacy file that does not read is an error.
    pub fn load(server: &str, db: Option<&Path>) -> Result<Self, ClientError> {
        match db {
            Some(path) => Self::open(server, LocalStore::open(path)?),
            None => Ok(Peers { server: server.to_owned(), store: None, keys: HashMap::new() }),
        }
    }

    /// Peers of `server`, remembered in `store`.
    pub fn open(server: &str, store: LocalStore) -> Result<Self, ClientError> {
        let rows = store.read(|conn| {
            let e = |e| store.error(e);
            let mut stmt = conn
                .prepare("SELECT folded, name, fingerprint, verified FROM peers WHERE server = ?1 LIMIT ?2")
                .map_err(e)?;
            let rows = stmt
                .query_map(params![server, i64::try_from(MAX_PEERS).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
                })
                .map_err(e)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(e)
        })?;
        let mut keys = HashMap::new();
        for (folded, name, fp, verified) in rows {
            // Our own file, parsed strictly all the same: a record that
            // another program wrote wrong is refused, not guessed at.
            if !valid_name(&name, MAX_NAME) || fold_name(&name) != folded {
                return Err(store.corrupt("a peer record has an invalid name"));
            }
            let fp =
                fp.parse::<Fingerprint>().map_err(|_| store.corrupt("a peer record has an invalid fingerprint"))?;
            keys.insert(folded, Entry { fp, verified });
        }
        Ok(Peers { server: server.to_owned(), store: Some(store), keys })
    }

    /// The store these peers are remembered in, if any (for history and
    /// cursors on the same connection).
    #[must_use]
    pub fn store(&self) -> Option<&LocalStore> {
        self.store.as_ref()
    }

    /// The server these peers are remembered for, as the store names it.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The key remembered for `name`.
    #[must_use]
    pub fn remembered(&self, name: &str) -> Option<Fingerprint> {
        self.keys.get(&fold_name(name)).map(|e| e.fp)
    }

    /// Whether the user confirmed `name`'s remembered key.
    #[must_use]
    pub fn is_verified(&self, name: &str) -> bool {
        self.keys.get(&fold_name(name)).is_some_and(|e| e.verified)
    }

    /// Records `fp` as `name`'s key, not yet verified: the user accepted a
    /// change from the key this process remembers. Refused, with the file's
    /// record adopted, if another process changed the record meanwhile.
    pub fn remember(&mut self, name: &str, fp: Fingerprint) -> Result<(), ClientError> {
        let expected = self.remembered(name);
        self.set_record(name, expected, Some(Entry { fp, verified: false }))
    }

    /// Records that the user compared safety codes for `name`'s key `fp`
    /// and they matched. Refused unless `fp` is the remembered key, in this
    /// process and in the file.
    pub fn mark_verified(&mut self, name: &str, fp: Fingerprint) -> Result<(), ClientError> {
        if self.remembered(name) != Some(fp) {
            return Err(ClientError::PeerNotRemembered);
        }
        self.set_record(name, Some(fp), Some(Entry { fp, verified: true }))
    }

    /// Forgets `name`'s key (the user accepted that it has none now), if it
    /// is still the key this process remembers.
    pub fn forget(&mut self, name: &str) -> Result<(), ClientError> {
        let expected = self.remembered(name);
        self.set_record(name, expected, None)
    }

    /// The verdict on key `key` announced for `name` (from a signature or
    /// Whois), remembering it on first use.
    pub fn check_key(&mut self, name: &str, key: &IdentityPublicKey) -> MessageStatus {
        let presented = Fingerprint::from_bytes(key.fingerprint());
        match self.keys.get(&fold_name(name)) {
            Some(_) => self.judge(name, presented),
            None => {
                let entry = Entry { fp: presented, verified: false };
                match self.set_record(name, None, Some(entry)) {
                    Ok(()) => MessageStatus::New(presented),
                    // Another process recorded a key for the name since this
                    // one read the store: never overwrite it (that would let
                    // a relay replace a key a user verified in another
                    // window); judge against it instead.
                    Err(ClientError::PeerChangedElsewhere) => self.judge(name, presented),
                    Err(_) => {
                        // The file could not be written (read-only data
                        // store, another process's write outlasting the busy timeout, this
                        // server's cap): the
                        // key is still remembered for this run, within a
                        // bound, so a change during the run is caught.
                        if self.keys.len() < 2 * MAX_PEERS {
                            self.keys.insert(fold_name(name), entry);
                        }
                        MessageStatus::New(presented)
                    }
                }
            }
        }
    }

    /// The verdict on `presented` for a name whose key is remembered.
    fn judge(&self, name: &str, presented: Fingerprint) -> MessageStatus {
        match self.keys.get(&fold_name(name)) {
            Some(e) if e.fp == presented && e.verified => MessageStatus::Verified,
            Some(e) if e.fp == presented => MessageStatus::Known,
            Some(e) => MessageStatus::KeyChanged { remembered: e.fp, presented: Some(presented) },
            None => MessageStatus::New(presented),
        }
    }

    /// The verdict on `name` presenting no key at all.
    #[must_use]
    pub fn check_no_key(&self, name: &str) -> MessageStatus {
        match self.remembered(name) {
            Some(remembered) => MessageStatus::KeyChanged { remembered, presented: None },
            None => MessageStatus::Unsigned,
        }
    }

    fn verdict(&mut self, name: &str, v: Verification) -> MessageStatus {
        match v {
            Verification::Unsigned => self.check_no_key(name),
            Verification::Invalid => MessageStatus::Invalid,
            Verification::Valid(key) => self.check_key(name, &key),
        }
    }

    /// The verdict on a relayed message.
    pub fn check(&mut self, d: &Delivery) -> MessageStatus {
        self.verdict(&d.from, signature::verify(d))
    }

    /// The verdict on a received file: the offer and hash as the receiver
    /// saw them, and the signature that came with FileDone.
    pub fn check_file(&mut self, facts: &FileFacts<'_>, signed: Option<&FileSigned>) -> MessageStatus {
        self.verdict(facts.sender, signature::verify_file(facts, signed))
    }

    /// Replaces (or with `None` removes) the record for `name` on this
    /// server, as a compare-and-set in one transaction: written only if the
    /// stored record for `name` still has the key `expected` (none: no
    /// record), the record this process acted on; otherwise nothing is
    /// written, the stored record is adopted, and the answer is
    /// [`ClientError::PeerChangedElsewhere`].
    fn set_record(
        &mut self,
        name: &str,
        expected: Option<Fingerprint>,
        entry: Option<Entry>,
    ) -> Result<(), ClientError> {
        if !valid_name(name, MAX_NAME) {
            return Err(ClientError::InvalidPeerName);
        }
        let folded = fold_name(name);
        if entry.is_some() && !self.keys.contains_key(&folded) && self.keys.len() >= MAX_PEERS {
            return Err(ClientError::TooManyPeers);
        }
        if let Some(store) = &self.store {
            let server = self.server.as_str();
            let outcome = store.write(|tx| {
                let e = |e| store.error(e);
                let current: Option<(String, bool)> = tx
                    .query_row(
                        "SELECT fingerprint, verified FROM peers WHERE server = ?1 AND folded = ?2",
                        params![server, folded],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(e)?;
                let current = match current {
                    Some((fp, verified)) => Some(Entry {
                        fp: fp.parse().map_err(|_| store.corrupt("a peer record has an invalid fingerprint"))?,
                        verified,
                    }),
                    None => None,
                };
                if current.map(|c| c.fp) != expected {
                    return Ok(Err(current));
                }
                match entry {
                    Some(en) => {
                        if current.is_none() {
                            let count: i64 = tx
                                .query_row("SELECT count(*) FROM peers WHERE server = ?1", params![server], |r| {
                                    r.get(0)
                                })
                                .map_err(e)?;
                            if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_PEERS {
                                return Err(ClientError::TooManyPeers);
                            }
                        }
                        tx.execute(
                            "INSERT INTO peers (server, folded, name, fingerprint, verified) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (server, folded) DO UPDATE
                             SET name = ?3, fingerprint = ?4, verified = ?5",
                            params![server, folded, name, en.fp.to_string(), en.verified],
                        )
                        .map_err(e)?;
                    }
                    None => {
                        tx.execute("DELETE FROM peers WHERE server = ?1 AND folded = ?2", params![server, folded])
                            .map_err(e)?;
                    }
                }
                Ok(Ok(()))
            })?;
            if let Err(current) = outcome {
                match current {
                    Some(c) => self.keys.insert(folded, c),
                    None => self.keys.remove(&folded),
                };
                return Err(ClientError::PeerChangedElsewhere);
            }
        }
        match entry {
            Some(e) => self.keys.insert(folded, e),
            None => self.keys.remove(&folded),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{FILE_NAME, StoreOptions};

    const SERVER: &str = "127.0.0.1:7878";

    fn fp(b: u8) -> Fingerprint {
        Fingerprint::from_bytes([b; 32])
    }

    /// What opening a store beside a `known_peers` file holding `text` says.
    fn load_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("known_peers"), text).unwrap();
        match Peers::load(SERVER, Some(&dir.path().join(FILE_NAME))) {
            Ok(_) => panic!("loaded {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ed25519(seed: u8) -> IdentityPublicKey {
        cipherline_proto::crypto::sign::IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap().public_key().clone()
    }

    fn rows(path: &Path) -> Vec<(String, String, String, bool)> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn.prepare("SELECT server, name, fingerprint, verified FROM peers ORDER BY server").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_first_seen_key_never_overwrites_a_record_another_process_made() {
        // A long-running listener loaded the store before alice was known;
        // meanwhile the user verified alice in chat. The relay then sends
        // the listener a message signed with its own key under her name.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut listener = Peers::load(SERVER, Some(&path)).unwrap();
        let mut chat = Peers::load(SERVER, Some(&path)).unwrap();
        let (alice, relay) = (ed25519(1), ed25519(66));
        assert!(matches!(chat.check_key("alice", &alice), MessageStatus::New(_)));
        let alice_fp = Fingerprint::from_bytes(alice.fingerprint());
        chat.mark_verified("alice", alice_fp).unwrap();
        let status = listener.check_key("alice", &relay);
        assert!(matches!(status, MessageStatus::KeyChanged { remembered, .. } if remembered == alice_fp), "{status:?}");
        assert_eq!(listener.check_key("alice", &alice), MessageStatus::Verified);
        let reloaded = Peers::load(SERVER, Some(&path)).unwrap();
        assert_eq!(reloaded.remembered("alice"), Some(alice_fp));
        assert!(reloaded.is_verified("alice"), "the verified record survives");
        // Accepting a change the other process never saw is refused too.
        let mut stale = Peers::load(SERVER, Some(&path)).unwrap();
        chat.remember("alice", Fingerprint::from_bytes(relay.fingerprint())).unwrap();
        assert!(matches!(stale.forget("alice"), Err(ClientError::PeerChangedElsewhere)));
        assert_eq!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice"), chat.remembered("alice"));
    }

    #[test]
    fn another_process_writing_delays_a_write_at_most_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let wait = std::time::Duration::from_millis(300);
        let store =
            LocalStore::open_with(&path, &StoreOptions { busy_timeout: wait, ..StoreOptions::default() }).unwrap();
        let mut peers = Peers::open(SERVER, store).unwrap();
        // Another process in the middle of a write, and hung there.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        // The write gives up; the key is still remembered for this run.
        assert!(matches!(peers.check_key("alice", &ed25519(1)), MessageStatus::New(_)));
        assert!(started.elapsed() < wait + std::time::Duration::from_secs(5), "bounded wait");
        assert!(matches!(peers.check_key("alice", &ed25519(2)), MessageStatus::KeyChanged { .. }));
        other.execute_batch("ROLLBACK").unwrap();
        assert!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice").is_none(), "nothing written");
    }

    #[test]
    fn one_server_filling_its_cap_leaves_other_servers_and_key_changes_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // Imported from a legacy file: the cap applies to the store.
        let flood: String = (0..MAX_PEERS).map(|i| format!("10.0.0.1:7878 n{i} {}\n", fp(3))).collect();
        std::fs::write(dir.path().join("known_peers"), flood).unwrap();
        let mut peers = Peers::load(SERVER, Some(&path)).unwrap();
        assert!(matches!(peers.check_key("alice", &ed25519(1)), MessageStatus::New(_)));
        assert!(matches!(peers.check_key("alice", &ed25519(2)), MessageStatus::KeyChanged { .. }));
        assert!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice").is_some(), "written");
        // The flooding server itself is at its cap: remembered for the run
        // only, and a change is still caught.
        let mut flooded = Peers::load("10.0.0.1:7878", Some(&path)).unwrap();
        assert!(matches!(flooded.check_key("mallory", &ed25519(4)), MessageStatus::New(_)));
        assert!(matches!(flooded.check_key("mallory", &ed25519(5)), MessageStatus::KeyChanged { .. }));
        assert!(Peers::load("10.0.0.1:7878", Some(&path)).unwrap().remembered("mallory").is_none(), "not stored");
        assert!(matches!(flooded.remember("trudy", fp(6)), Err(ClientError::TooManyPeers)));
    }

    #[test]
    fn forged_extra_fields_and_duplicates_are_refused_with_the_line_number() {
        let (a, b) = (fp(1), fp(2));
        // The attack of issue 12: a name with a space and a second key.
        let forged = format!("{SERVER} alice {a}\n{SERVER} alice {b} {a}\n");
        let e = load_err(&forged);
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains(&b.to_string()), "never echoes the line: {e}");
        let e = load_err(&format!("# peers\n{SERVER} alice {a}\n\n{SERVER} alice {b}\n"));
        assert!(e.contains("line 4") && e.contains("second line"), "{e}");
        assert!(load_err(&format!("{SERVER} al\u{202e}ice {a}\n")).contains("line 1"));
        assert!(load_err(&format!("{SERVER} alice {a} trusted\n")).contains("fourth field"));
        assert!(load_err(&format!("{SERVER} alice\n")).contains("line 1"));
        assert!(load_err(&format!("{SERVER}  alice {a}\n")).contains("line 1"), "double space");
        assert!(load_err(&format!("{SERVER} alice SHA256:nope\n")).contains("fingerprint"));
        assert!(load_err(&format!("not-an-address alice {a}\n")).contains("HOST:PORT"));
    }

    #[test]
    fn writes_replace_the_record_and_a_new_key_starts_unverified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(dir.path().join("known_peers"), format!("# mine\nother.example:1 alice {}\n", fp(9))).unwrap();
        let mut peers = Peers::load(SERVER, Some(&path)).unwrap();
        assert_eq!(peers.remembered("alice"), None, "another server's alice is another peer");
        peers.remember("alice", fp(1)).unwrap();
        peers.mark_verified("alice", fp(1)).unwrap();
        assert!(peers.mark_verified("alice", fp(2)).is_err(), "only the remembered key");
        peers.remember("alice", fp(2)).unwrap();
        let expect = vec![
            ("127.0.0.1:7878".to_owned(), "alice".to_owned(), fp(2).to_string(), false),
            ("other.example:1".to_owned(), "alice".to_owned(), fp(9).to_string(), false),
        ];
        assert_eq!(rows(&path), expect);
        let again = Peers::load(SERVER, Some(&path)).unwrap();
        assert_eq!(again.remembered("alice"), Some(fp(2)));
        assert!(!again.is_verified("alice"), "a new key starts unverified");
    }

    #[test]
    fn a_corrupt_peer_record_is_refused_not_guessed_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        Peers::load(SERVER, Some(&path)).unwrap().remember("alice", fp(1)).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE peers SET name = 'alice bob'", []).unwrap();
        let e = Peers::load(SERVER, Some(&path)).err().unwrap().to_string();
        assert!(e.contains("invalid name"), "{e}");
        conn.execute("UPDATE peers SET name = 'alice', fingerprint = 'SHA256:nope'", []).unwrap();
        let e = Peers::load(SERVER, Some(&path)).err().unwrap().to_string();
        assert!(e.contains("invalid fingerprint") && !e.contains("nope"), "{e}");
    }

    /// Names are compared ignoring case (PROTOCOL.md §13.4): a relay cannot
    /// turn alice's key change into a "new key" for `ALICE`.
    #[test]
    fn a_name_is_the_same_peer_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut peers = Peers::load(SERVER, Some(&path)).unwrap();
        peers.remember("alice", fp(1)).unwrap();
        assert_eq!(peers.remembered("ALICE"), Some(fp(1)));
        assert_eq!(peers.check_no_key("Alice"), MessageStatus::KeyChanged { remembered: fp(1), presented: None });
        peers.remember("Alice", fp(2)).unwrap();
        assert_eq!(rows(&path).len(), 1, "one record, replaced");
        assert_eq!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice"), Some(fp(2)));
        let e = load_err(&format!("{SERVER} alice {}\n{SERVER} ALICE {}\n", fp(1), fp(2)));
        assert!(e.contains("line 2") && e.contains("ignoring case"), "{e}");
    }
}
