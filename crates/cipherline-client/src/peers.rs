//! What a recipient remembers about other people's identity keys, and the
//! verdict on each message or file it receives (PROTOCOL.md §13.7).
//!
//! Like the known-servers file, but per peer: the first key seen for a name
//! on a server is remembered (trust on first use); a different key later, or
//! no signature at all under a name whose key is remembered, is a loud
//! warning, never silently accepted. A remembered key is `known`; once the
//! user has compared safety codes with the peer and said so, `verified`.
//!
//! # Format
//!
//! UTF-8 text, one line per peer, `#` for comment lines:
//!
//! ```text
//! SERVER NAME SHA256:<fingerprint>
//! SERVER NAME SHA256:<fingerprint> verified
//! ```
//!
//! `SERVER` is the `host:port` the client connected to, `NAME` is in the
//! name grammar ([`cipherline_proto::app::valid_name`]), fields are
//! separated by single spaces or tabs. The file is parsed strictly: a line
//! with missing or extra fields, an invalid name or fingerprint, or a second
//! line for the same server and name makes loading fail with the line
//! number (never the line's content). Nothing is silently skipped in a file
//! that decides whose messages are shown as genuine.
//!
//! # Writing
//!
//! Like `known_servers`: an exclusive advisory lock on `known_peers.lock`,
//! the file re-read under it, the line for the peer replaced or appended,
//! and the whole file written to a temporary file (mode 0600) then renamed
//! into place, so readers see the old or the new file, never a mix.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use cipherline_keys::{Fingerprint, ServerAddr};
use cipherline_proto::app::{Delivery, FileSigned, MAX_NAME, fold_name, valid_name};
use cipherline_proto::crypto::sign::IdentityPublicKey;
use cipherline_proto::signature::{self, FileFacts, Verification};

use crate::ClientError;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "known_peers";
/// Largest file read: 8 MiB.
const MAX_FILE_LEN: u64 = 8 * 1024 * 1024;
/// Most peers written to the file for one server; beyond it new keys are
/// remembered for this run only (up to [`MAX_PEERS`] more), so a relay
/// inventing names cannot grow the file or the map without bound, nor
/// crowd out the peers of other servers.
pub const MAX_PEERS: usize = 10_000;
/// How long a writer waits for another process's lock on the file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The word that marks a peer whose safety code the user confirmed.
const VERIFIED: &str = "verified";
/// The header written at the top of a new file.
const HEADER: &str = "# cipherline known peers: \"SERVER NAME SHA256:<fingerprint> [verified]\" per line.\n\
                      # Written by cipherline; '#' starts a comment line.\n";

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
            MessageStatus::Verified => VERIFIED,
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

/// One parsed line of the file.
struct Line {
    server: String,
    name: String,
    entry: Entry,
}

/// Remembered peer keys for one server.
pub struct Peers {
    server: String,
    file: Option<PathBuf>,
    /// By folded name (PROTOCOL.md §13.4): `ALICE` is `alice`, so a key
    /// change cannot hide behind another spelling.
    keys: HashMap<String, Entry>,
}

impl Peers {
    /// Peers of `server`, remembered in `file` (or only in memory). A file
    /// that does not parse is an error naming the line.
    pub fn load(server: &str, file: Option<&Path>) -> Result<Self, ClientError> {
        let mut keys = HashMap::new();
        if let Some(path) = file {
            for l in parse(path, &read(path)?)?.into_iter().flatten() {
                if l.server == server {
                    keys.insert(fold_name(&l.name), l.entry);
                }
            }
        }
        Ok(Peers { server: server.to_owned(), file: file.map(Path::to_owned), keys })
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
        self.store(name, expected, Some(Entry { fp, verified: false }))
    }

    /// Records that the user compared safety codes for `name`'s key `fp`
    /// and they matched. Refused unless `fp` is the remembered key, in this
    /// process and in the file.
    pub fn mark_verified(&mut self, name: &str, fp: Fingerprint) -> Result<(), ClientError> {
        if self.remembered(name) != Some(fp) {
            return Err(ClientError::PeerNotRemembered);
        }
        self.store(name, Some(fp), Some(Entry { fp, verified: true }))
    }

    /// Forgets `name`'s key (the user accepted that it has none now), if it
    /// is still the key this process remembers.
    pub fn forget(&mut self, name: &str) -> Result<(), ClientError> {
        let expected = self.remembered(name);
        self.store(name, expected, None)
    }

    /// The verdict on key `key` announced for `name` (from a signature or
    /// Whois), remembering it on first use.
    pub fn check_key(&mut self, name: &str, key: &IdentityPublicKey) -> MessageStatus {
        let presented = Fingerprint::from_bytes(key.fingerprint());
        match self.keys.get(&fold_name(name)) {
            Some(_) => self.judge(name, presented),
            None => {
                let entry = Entry { fp: presented, verified: false };
                match self.store(name, None, Some(entry)) {
                    Ok(()) => MessageStatus::New(presented),
                    // Another process recorded a key for the name since this
                    // one loaded the file: never overwrite it (that would let
                    // a relay replace a key a user verified in another
                    // window); judge against it instead.
                    Err(ClientError::PeerChangedElsewhere) => self.judge(name, presented),
                    Err(_) => {
                        // The file could not be written (read-only data
                        // directory, lock timeout, this server's cap): the
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

    /// Replaces (or with `None` removes) the line for `name` on this server,
    /// under the lock, re-reading the file first: a compare-and-set. The
    /// line is written only if the file's record for `name` still has the
    /// key `expected` (none: no line), the record this process acted on;
    /// otherwise nothing is written, the file's record is adopted, and the
    /// answer is [`ClientError::PeerChangedElsewhere`].
    fn store(&mut self, name: &str, expected: Option<Fingerprint>, entry: Option<Entry>) -> Result<(), ClientError> {
        if !valid_name(name, MAX_NAME) {
            return Err(ClientError::InvalidPeerName);
        }
        let folded = fold_name(name);
        if entry.is_some() && !self.keys.contains_key(&folded) && self.keys.len() >= MAX_PEERS {
            return Err(ClientError::TooManyPeers);
        }
        if let Some(path) = self.file.clone() {
            let _lock = lock(&path)?;
            let text = read(&path)?;
            let lines = parse(&path, &text)?;
            let ours = |l: &&Line| l.server == self.server;
            let current = lines.iter().flatten().filter(ours).find(|l| fold_name(&l.name) == folded).map(|l| l.entry);
            if current.map(|e| e.fp) != expected {
                match current {
                    Some(e) => self.keys.insert(folded, e),
                    None => self.keys.remove(&folded),
                };
                return Err(ClientError::PeerChangedElsewhere);
            }
            let peers = lines.iter().flatten().filter(ours).count();
            let mut out = String::with_capacity(text.len() + 128);
            let mut replaced = false;
            for (raw, parsed) in text.lines().zip(&lines) {
                match parsed {
                    Some(l) if l.server == self.server && fold_name(&l.name) == folded => {
                        replaced = true;
                        if let Some(e) = entry {
                            out.push_str(&format_line(&self.server, name, e));
                        }
                    }
                    _ => {
                        out.push_str(raw);
                        out.push('\n');
                    }
                }
            }
            if let Some(e) = entry
                && !replaced
            {
                if peers >= MAX_PEERS {
                    return Err(ClientError::TooManyPeers);
                }
                if out.is_empty() {
                    out.push_str(HEADER);
                }
                out.push_str(&format_line(&self.server, name, e));
            }
            write_atomic(&path, out.as_bytes())?;
        }
        match entry {
            Some(e) => self.keys.insert(folded, e),
            None => self.keys.remove(&folded),
        };
        Ok(())
    }
}

fn format_line(server: &str, name: &str, e: Entry) -> String {
    if e.verified { format!("{server} {name} {} {VERIFIED}\n", e.fp) } else { format!("{server} {name} {}\n", e.fp) }
}

fn io_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::KnownPeersIo { path: path.to_owned(), source }
}

/// Reads the whole file (at most [`MAX_FILE_LEN`]); a missing file is empty.
fn read(path: &Path) -> Result<String, ClientError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes).map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(syntax(path, 0, "the file is over 8 MiB"));
    }
    String::from_utf8(bytes).map_err(|_| syntax(path, 0, "the file is not UTF-8"))
}

fn syntax(path: &Path, line: usize, reason: &'static str) -> ClientError {
    ClientError::KnownPeers { path: path.to_owned(), line, reason }
}

/// Parses every line: `None` for blank and comment lines.
fn parse(path: &Path, text: &str) -> Result<Vec<Option<Line>>, ClientError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut per_server: HashMap<&str, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = |reason| syntax(path, line, reason);
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            out.push(None);
            continue;
        }
        let fields: Vec<&str> = raw.split([' ', '\t']).collect();
        let (server, name, fp, verified) = match fields.as_slice() {
            [s, n, f] => (*s, *n, *f, false),
            [s, n, f, v] if *v == VERIFIED => (*s, *n, *f, true),
            [_, _, _, _] => return Err(bad("the fourth field can only be \"verified\"")),
            _ => return Err(bad("expected SERVER NAME SHA256:<fingerprint> [verified], separated by single spaces")),
        };
        if server.parse::<ServerAddr>().map(|a| a.to_string()).ok().as_deref() != Some(server) {
            return Err(bad("the first field is not a HOST:PORT as cipherline writes it"));
        }
        if !valid_name(name, MAX_NAME) {
            return Err(bad("the second field is not a valid user name"));
        }
        let fp = fp.parse::<Fingerprint>().map_err(|_| bad("the third field is not a valid SHA256: fingerprint"))?;
        if !seen.insert((server, fold_name(name))) {
            return Err(bad(
                "a second line for the same server and name, compared ignoring case (remove the one that is wrong)",
            ));
        }
        let count = per_server.entry(server).or_insert(0usize);
        *count += 1;
        if *count > MAX_PEERS {
            return Err(bad("too many peers for one server in the file"));
        }
        out.push(Some(Line { server: server.to_owned(), name: name.to_owned(), entry: Entry { fp, verified } }));
    }
    Ok(out)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Takes the writers' lock (a separate file, so renaming over the data file
/// never leaves a waiting writer holding a lock on a replaced file).
fn lock(path: &Path) -> Result<File, ClientError> {
    let dir = parent(path);
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(&dir).map_err(|e| io_error(&dir, e))?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let lock_path = dir.join(name);
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&lock_path).map_err(|e| io_error(&lock_path, e))?;
    // Bounded wait: a hung process holding the lock must not freeze the
    // client (these calls run on its event loop).
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(file),
            Err(fs4::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "another process holds the lock");
                return Err(io_error(&lock_path, e));
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_error(&lock_path, e)),
        }
    }
}

/// Writes through a temporary file (created 0600 by tempfile) and renames
/// it into place.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), ClientError> {
    let err = |e| io_error(path, e);
    let mut tmp = tempfile::Builder::new().prefix(".known_peers-tmp").tempfile_in(parent(path)).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    tmp.write_all(contents).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "127.0.0.1:7878";

    fn fp(b: u8) -> Fingerprint {
        Fingerprint::from_bytes([b; 32])
    }

    fn load_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, text).unwrap();
        match Peers::load(SERVER, Some(&path)) {
            Ok(_) => panic!("loaded {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ed25519(seed: u8) -> IdentityPublicKey {
        cipherline_proto::crypto::sign::IdentityKey::ed25519_from_seed(&[seed; 32]).unwrap().public_key().clone()
    }

    #[test]
    fn a_first_seen_key_never_overwrites_a_record_another_process_made() {
        // A long-running listener loaded the file before alice was known;
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
    fn a_process_holding_the_lock_delays_a_write_at_most_the_lock_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let held = lock(&path).unwrap();
        let mut peers = Peers::load(SERVER, Some(&path)).unwrap();
        let started = std::time::Instant::now();
        // The write gives up; the key is still remembered for this run.
        assert!(matches!(peers.check_key("alice", &ed25519(1)), MessageStatus::New(_)));
        assert!(started.elapsed() < LOCK_WAIT + std::time::Duration::from_secs(5), "bounded wait");
        assert!(matches!(peers.check_key("alice", &ed25519(2)), MessageStatus::KeyChanged { .. }));
        drop(held);
        assert!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice").is_none(), "nothing written");
    }

    #[test]
    fn one_server_filling_its_cap_leaves_other_servers_and_key_changes_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let flood: String = (0..MAX_PEERS).map(|i| format!("10.0.0.1:7878 n{i} {}\n", fp(3))).collect();
        std::fs::write(&path, flood).unwrap();
        let mut peers = Peers::load(SERVER, Some(&path)).unwrap();
        assert!(matches!(peers.check_key("alice", &ed25519(1)), MessageStatus::New(_)));
        assert!(matches!(peers.check_key("alice", &ed25519(2)), MessageStatus::KeyChanged { .. }));
        assert!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice").is_some(), "written");
        // The flooding server itself is over its cap: remembered for the
        // run only, and a change is still caught.
        let mut flooded = Peers::load("10.0.0.1:7878", Some(&path)).unwrap();
        assert!(matches!(flooded.check_key("mallory", &ed25519(4)), MessageStatus::New(_)));
        assert!(matches!(flooded.check_key("mallory", &ed25519(5)), MessageStatus::KeyChanged { .. }));
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
    fn writes_are_atomic_private_and_replace_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, format!("# mine\nother.example:1 alice {}\n", fp(9))).unwrap();
        let mut peers = Peers::load(SERVER, Some(&path)).unwrap();
        peers.remember("alice", fp(1)).unwrap();
        peers.mark_verified("alice", fp(1)).unwrap();
        assert!(peers.mark_verified("alice", fp(2)).is_err(), "only the remembered key");
        peers.remember("alice", fp(2)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("# mine\nother.example:1 alice {}\n{SERVER} alice {}\n", fp(9), fp(2)));
        let again = Peers::load(SERVER, Some(&path)).unwrap();
        assert_eq!(again.remembered("alice"), Some(fp(2)));
        assert!(!again.is_verified("alice"), "a new key starts unverified");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains("tmp")), "no temporary left: {names:?}");
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
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1, "one line, replaced: {text}");
        assert_eq!(Peers::load(SERVER, Some(&path)).unwrap().remembered("alice"), Some(fp(2)));
        let e = load_err(&format!("{SERVER} alice {}\n{SERVER} ALICE {}\n", fp(1), fp(2)));
        assert!(e.contains("line 2") && e.contains("ignoring case"), "{e}");
    }
}
