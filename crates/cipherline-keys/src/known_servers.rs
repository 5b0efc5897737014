//! The known-servers file: which key each server is trusted to hold, like
//! OpenSSH's `known_hosts`.
//!
//! # Format
//!
//! UTF-8 text, one server per line:
//!
//! ```text
//! # comments start with '#'; blank lines are ignored
//! chat.example.org:7878 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU
//! [2001:db8::1]:7878 SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg  # a trailing comment
//! family.example.net:7878 password-only
//! ```
//!
//! - the first field is `host:port` (host lowercased, IPv6 in brackets);
//! - the second is the [`Fingerprint`] of the server's static public key:
//!   `SHA256:` and the unpadded Base64 of the SHA-256 of its DER
//!   SubjectPublicKeyInfo, exactly what `cipherline fingerprint` prints;
//!   or the word `password-only` (exactly so, lowercase): the server has no
//!   key and the shared password alone authenticates it;
//! - fields are separated by spaces or tabs; anything after them must be a
//!   `#` comment.
//!
//! A server may have several key lines (say, during a key rotation its
//! operator announced); any one of them matching is enough. A
//! `password-only` line must be the only line for its server: a server
//! recorded both ways, or twice as password-only, is an error. So a change
//! either way is caught: a server recorded with a key that presents none,
//! or recorded as password-only that presents a key, is a changed server
//! ([`Lookup::Changed`]). A line that does not parse is an error naming the
//! file and line: nothing is silently ignored in a file that decides whom
//! to trust.
//!
//! # Concurrency
//!
//! Writers (adding or removing a server) take an exclusive advisory lock on
//! `known_servers.lock` next to the file, re-read the file under the lock,
//! and replace it atomically (temporary file, then rename). Readers need no
//! lock: they see the old or the new file, never a mix. The lock is on a
//! separate file because renaming over the data file would leave a waiting
//! writer holding a lock on the replaced file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::address::ServerAddr;
use crate::error::{Error, KeyChange};
use crate::fingerprint::Fingerprint;
use crate::keyfile::write_atomic;

/// Largest known-servers file read: 8 MiB, about 80,000 servers.
const MAX_FILE_LEN: u64 = 8 * 1024 * 1024;

/// The header written at the top of a new file.
const HEADER: &str = "# cipherline known servers: one line per server, \"HOST:PORT SHA256:<fingerprint>\" \
                      or \"HOST:PORT password-only\".\n\
                      # Lines starting with '#' are comments. See `cipherline known-servers --help`.\n";

/// The second field of a password-only server's line.
pub const PASSWORD_ONLY: &str = "password-only";

/// How a server authenticates itself: what a line records, and what a
/// server presented in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAuth {
    /// A static key with this fingerprint (the password, if any, comes on
    /// top).
    Key(Fingerprint),
    /// No key: a password-only server, authenticated by the shared
    /// password alone.
    PasswordOnly,
}

impl fmt::Display for ServerAuth {
    /// The file's form: the fingerprint, or `password-only`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAuth::Key(fp) => write!(f, "{fp}"),
            ServerAuth::PasswordOnly => f.write_str(PASSWORD_ONLY),
        }
    }
}

/// One server line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServer {
    server: ServerAddr,
    auth: ServerAuth,
    line: usize,
}

impl KnownServer {
    /// The server's `host:port`.
    #[must_use]
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// The fingerprint trusted for it; `None` for a password-only server.
    #[must_use]
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        match self.auth {
            ServerAuth::Key(fp) => Some(fp),
            ServerAuth::PasswordOnly => None,
        }
    }

    /// What the line records: a key, or password-only.
    #[must_use]
    pub fn auth(&self) -> ServerAuth {
        self.auth
    }

    /// The 1-based line number in the file.
    #[must_use]
    pub fn line(&self) -> usize {
        self.line
    }
}

/// What the file says about a server and the key it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No line names this server.
    Unknown,
    /// A line names this server with this key (or as password-only, for
    /// a server that presented no key).
    Known {
        /// The matching line (1-based).
        line: usize,
    },
    /// Lines name this server, none with what it presented: another key,
    /// a key where the file says password-only, or no key where the file
    /// records one.
    Changed {
        /// The first line naming the server (1-based).
        line: usize,
        /// What that line records.
        known: ServerAuth,
    },
}

/// What [`KnownServers::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The line was appended.
    Recorded,
    /// The file already had this server with this key; nothing changed.
    AlreadyKnown,
}

/// A known-servers file at a given path (it need not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServers {
    path: PathBuf,
}

impl KnownServers {
    /// The file's name inside the data directory.
    pub const FILE_NAME: &'static str = "known_servers";

    /// The known-servers file at `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownServers { path: path.into() }
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every server line, in file order. A missing file has none.
    pub fn entries(&self) -> Result<Vec<KnownServer>, Error> {
        let text = self.read()?;
        self.parse(&text)
    }

    /// Looks up `server` presenting the key with `fingerprint`.
    pub fn lookup(&self, server: &ServerAddr, fingerprint: &Fingerprint) -> Result<Lookup, Error> {
        self.lookup_auth(server, &ServerAuth::Key(*fingerprint))
    }

    /// Looks up `server` presenting `auth` (a key, or none).
    pub fn lookup_auth(&self, server: &ServerAddr, auth: &ServerAuth) -> Result<Lookup, Error> {
        Ok(lookup_in(&self.entries()?, server, auth))
    }

    /// Records that `server` holds the key with `fingerprint`, unless the
    /// file (re-read under the lock) already says something about it: the
    /// same key leaves the file alone, a different key (or password-only)
    /// is [`Error::ServerKeyChanged`] — a recorded key is never replaced
    /// here.
    pub fn add(&self, server: &ServerAddr, fingerprint: &Fingerprint) -> Result<Added, Error> {
        self.add_auth(server, &ServerAuth::Key(*fingerprint))
    }

    /// Records `server` as `auth`: [`KnownServers::add`] for a key, or a
    /// `password-only` line, with the same rules (a server already recorded
    /// otherwise is [`Error::ServerKeyChanged`]).
    pub fn add_auth(&self, server: &ServerAddr, auth: &ServerAuth) -> Result<Added, Error> {
        let _lock = self.lock()?;
        let mut text = self.read()?;
        match lookup_in(&self.parse(&text)?, server, auth) {
            Lookup::Known { .. } => return Ok(Added::AlreadyKnown),
            Lookup::Changed { line, known } => {
                return Err(Error::ServerKeyChanged(Box::new(KeyChange {
                    server: server.clone(),
                    path: self.path.clone(),
                    line,
                    known,
                    presented: *auth,
                })));
            }
            Lookup::Unknown => {}
        }
        if text.is_empty() {
            text.push_str(HEADER);
        } else if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{server} {auth}\n"));
        write_atomic(&self.path, text.as_bytes(), 0o600, true)?;
        Ok(Added::Recorded)
    }

    /// Removes every line for `server`; returns how many there were. Other
    /// lines, comments included, are kept as they are.
    pub fn remove(&self, server: &ServerAddr) -> Result<usize, Error> {
        let _lock = self.lock()?;
        let text = self.read()?;
        let doomed: Vec<usize> =
            self.parse(&text)?.into_iter().filter(|e| &e.server == server).map(|e| e.line).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut kept = String::with_capacity(text.len());
        for (i, line) in text.split_inclusive('\n').enumerate() {
            if !doomed.contains(&(i + 1)) {
                kept.push_str(line);
            }
        }
        write_atomic(&self.path, kept.as_bytes(), 0o600, true)?;
        Ok(doomed.len())
    }

    /// Reads the whole file; a missing file reads as empty.
    fn read(&self) -> Result<String, Error> {
        let read_err = |source| Error::Read { path: self.path.clone(), source };
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(read_err(e)),
        };
        let mut text = String::new();
        file.take(MAX_FILE_LEN + 1).read_to_string(&mut text).map_err(read_err)?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(Error::KnownServersSyntax {
                path: self.path.clone(),
                line: 0,
                reason: "the file is over 8 MiB",
            });
        }
        Ok(text)
    }

    /// Parses the file's text.
    fn parse(&self, text: &str) -> Result<Vec<KnownServer>, Error> {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |reason| Error::KnownServersSyntax { path: self.path.clone(), line, reason };
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let mut fields = content.split([' ', '\t']).filter(|f| !f.is_empty());
            let (Some(addr), Some(second)) = (fields.next(), fields.next()) else {
                return Err(syntax("expected HOST:PORT SHA256:<fingerprint> or HOST:PORT password-only"));
            };
            if fields.next().is_some_and(|rest| !rest.starts_with('#')) {
                return Err(syntax("unexpected text after the second field (comments start with '#')"));
            }
            let server = addr.parse::<ServerAddr>().map_err(|_| syntax("the first field is not a valid HOST:PORT"))?;
            let auth =
                if second == PASSWORD_ONLY {
                    ServerAuth::PasswordOnly
                } else {
                    ServerAuth::Key(second.parse::<Fingerprint>().map_err(|_| {
                        syntax("the second field is neither a valid SHA256: fingerprint nor password-only")
                    })?)
                };
            // A password-only line contradicts any other line for the same
            // server: which one would decide? Refuse rather than guess.
            let mut same = out.iter().filter(|e: &&KnownServer| e.server == server);
            match auth {
                ServerAuth::PasswordOnly if same.next().is_some() => {
                    return Err(syntax("a password-only line must be the only line for its server"));
                }
                ServerAuth::Key(_) if same.any(|e| e.auth == ServerAuth::PasswordOnly) => {
                    return Err(syntax("this server is already recorded as password-only"));
                }
                _ => {}
            }
            out.push(KnownServer { server, auth, line });
        }
        Ok(out)
    }

    /// Takes the writers' lock, creating the directory (mode 0700) and the
    /// lock file as needed. Released when the returned file is dropped.
    fn lock(&self) -> Result<File, Error> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir)?;
        let mut lock_name = self.path.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        let lock_path = dir.join(lock_name);
        let lock_err = |source| Error::Lock { path: lock_path.clone(), source };
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(&lock_path).map_err(lock_err)?;
        // fs4's lock (flock on Unix) rather than std's File::lock, which is
        // newer than this workspace's minimum Rust version.
        fs4::FileExt::lock(&file).map_err(lock_err)?;
        Ok(file)
    }
}

/// The lookup over parsed entries.
fn lookup_in(entries: &[KnownServer], server: &ServerAddr, auth: &ServerAuth) -> Lookup {
    let mut first = None;
    for e in entries.iter().filter(|e| &e.server == server) {
        if &e.auth == auth {
            return Lookup::Known { line: e.line };
        }
        first.get_or_insert(Lookup::Changed { line: e.line, known: e.auth });
    }
    first.unwrap_or(Lookup::Unknown)
}

/// Creates `dir` and its parents; a directory created here gets mode 0700
/// (it reveals which servers the user talks to).
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| Error::Write { path: dir.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::from_bytes([n; 32])
    }

    #[test]
    fn parse_comments_blank_lines_and_trailing_comments() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KnownServers::new(dir.path().join("known_servers"));
        let text = format!("# header\n\n  a.example:1 {}\t# note\n[::1]:2   {}\n", fp(1), fp(2));
        std::fs::write(ks.path(), text).unwrap();
        let entries = ks.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].server().to_string(), "a.example:1");
        assert_eq!(entries[0].line(), 3);
        assert_eq!(entries[1].fingerprint(), Some(fp(2)));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KnownServers::new(dir.path().join("known_servers"));
        for bad in
            ["host:1", "host:1 SHA256:nope", "host SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "h:1 x y"]
        {
            std::fs::write(ks.path(), format!("# ok\n{bad}\n")).unwrap();
            match ks.entries() {
                Err(Error::KnownServersSyntax { line: 2, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn add_lookup_remove() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KnownServers::new(dir.path().join("sub").join("known_servers"));
        let a: ServerAddr = "a.example:1".parse().unwrap();
        let b: ServerAddr = "b.example:1".parse().unwrap();
        assert_eq!(ks.lookup(&a, &fp(1)).unwrap(), Lookup::Unknown);
        assert_eq!(ks.add(&a, &fp(1)).unwrap(), Added::Recorded);
        assert_eq!(ks.add(&a, &fp(1)).unwrap(), Added::AlreadyKnown);
        assert_eq!(ks.add(&b, &fp(2)).unwrap(), Added::Recorded);
        assert!(matches!(ks.add(&a, &fp(3)), Err(Error::ServerKeyChanged(c)) if c.line == 3));
        assert_eq!(ks.lookup(&a, &fp(1)).unwrap(), Lookup::Known { line: 3 });
        assert_eq!(ks.lookup(&a, &fp(9)).unwrap(), Lookup::Changed { line: 3, known: ServerAuth::Key(fp(1)) });
        assert_eq!(ks.remove(&a).unwrap(), 1);
        assert_eq!(ks.remove(&a).unwrap(), 0);
        assert_eq!(ks.lookup(&a, &fp(1)).unwrap(), Lookup::Unknown);
        assert_eq!(ks.lookup(&b, &fp(2)).unwrap(), Lookup::Known { line: 3 });
        let text = std::fs::read_to_string(ks.path()).unwrap();
        assert!(text.starts_with("# cipherline known servers"));
    }

    #[test]
    fn password_only_lines_parse_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KnownServers::new(dir.path().join("known_servers"));
        let text =
            format!("a.example:1 password-only  # family server\nb.example:2\tpassword-only\nc.example:3 {}\n", fp(3));
        std::fs::write(ks.path(), text).unwrap();
        let entries = ks.entries().unwrap();
        assert_eq!(
            entries.iter().map(KnownServer::auth).collect::<Vec<_>>(),
            [ServerAuth::PasswordOnly, ServerAuth::PasswordOnly, ServerAuth::Key(fp(3))]
        );
        assert_eq!(entries[0].fingerprint(), None);
        let a: ServerAddr = "a.example:1".parse().unwrap();
        assert_eq!(ks.lookup_auth(&a, &ServerAuth::PasswordOnly).unwrap(), Lookup::Known { line: 1 });
        assert_eq!(ks.lookup(&a, &fp(1)).unwrap(), Lookup::Changed { line: 1, known: ServerAuth::PasswordOnly });
        // Exactly the word, alone, and alone for its server.
        for bad in [
            "a.example:1 Password-Only".to_owned(),
            "a.example:1 password-only extra".to_owned(),
            "a.example:1 password_only".to_owned(),
            "a.example:1 passwordonly".to_owned(),
            format!("a.example:1 password-only {}", fp(1)),
            format!("a.example:1 {}\na.example:1 password-only", fp(1)),
            format!("a.example:1 password-only\na.example:1 {}", fp(1)),
            "a.example:1 password-only\na.example:1 password-only".to_owned(),
        ] {
            std::fs::write(ks.path(), format!("{bad}\n")).unwrap();
            assert!(matches!(ks.entries(), Err(Error::KnownServersSyntax { .. })), "{bad}");
        }
    }

    #[test]
    fn add_password_only_then_a_key_is_a_change_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KnownServers::new(dir.path().join("known_servers"));
        let a: ServerAddr = "a.example:1".parse().unwrap();
        let b: ServerAddr = "b.example:1".parse().unwrap();
        assert_eq!(ks.add_auth(&a, &ServerAuth::PasswordOnly).unwrap(), Added::Recorded);
        assert_eq!(ks.add_auth(&a, &ServerAuth::PasswordOnly).unwrap(), Added::AlreadyKnown);
        let err = ks.add(&a, &fp(1)).unwrap_err();
        assert!(matches!(&err, Error::ServerKeyChanged(c) if c.known == ServerAuth::PasswordOnly), "{err:?}");
        ks.add(&b, &fp(2)).unwrap();
        let err = ks.add_auth(&b, &ServerAuth::PasswordOnly).unwrap_err();
        assert!(matches!(&err, Error::ServerKeyChanged(c) if c.presented == ServerAuth::PasswordOnly), "{err:?}");
        let text = std::fs::read_to_string(ks.path()).unwrap();
        assert!(text.ends_with(&format!("\na.example:1 password-only\nb.example:1 {}\n", fp(2))), "{text}");
        // What was written parses back; remove forgets it like a key line.
        assert_eq!(ks.entries().unwrap().len(), 2);
        assert_eq!(ks.remove(&a).unwrap(), 1);
        assert_eq!(ks.add(&a, &fp(1)).unwrap(), Added::Recorded);
    }

    #[cfg(unix)]
    #[test]
    fn new_directory_and_file_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let ks = KnownServers::new(data.join("known_servers"));
        ks.add(&"a.example:1".parse().unwrap(), &fp(1)).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(ks.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
