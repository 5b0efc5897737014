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
//! ```
//!
//! - the first field is `host:port` (host lowercased, IPv6 in brackets);
//! - the second is the [`Fingerprint`] of the server's static public key:
//!   `SHA256:` and the unpadded Base64 of the SHA-256 of its DER
//!   SubjectPublicKeyInfo, exactly what `cipherline fingerprint` prints;
//! - fields are separated by spaces or tabs; anything after them must be a
//!   `#` comment.
//!
//! A server may have several lines (say, during a key rotation its operator
//! announced); any one of them matching is enough. A line that does not parse
//! is an error naming the file and line: nothing is silently ignored in a file
//! that decides whom to trust.
//!
//! # Concurrency
//!
//! Writers (adding or removing a server) take an exclusive advisory lock on
//! `known_servers.lock` next to the file, re-read the file under the lock,
//! and replace it atomically (temporary file, then rename). Readers need no
//! lock: they see the old or the new file, never a mix. The lock is on a
//! separate file because renaming over the data file would leave a waiting
//! writer holding a lock on the replaced file.

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
const HEADER: &str = "# cipherline known servers: one line per server, \"HOST:PORT SHA256:<fingerprint>\".\n\
                      # Lines starting with '#' are comments. See `cipherline known-servers --help`.\n";

/// One server line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownServer {
    server: ServerAddr,
    fingerprint: Fingerprint,
    line: usize,
}

impl KnownServer {
    /// The server's `host:port`.
    #[must_use]
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// The fingerprint trusted for it.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
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
    /// A line names this server with this key.
    Known {
        /// The matching line (1-based).
        line: usize,
    },
    /// Lines name this server, none with this key.
    Changed {
        /// The first line naming the server (1-based).
        line: usize,
        /// The fingerprint it records.
        known: Fingerprint,
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
        Ok(lookup_in(&self.entries()?, server, fingerprint))
    }

    /// Records that `server` holds the key with `fingerprint`, unless the
    /// file (re-read under the lock) already says something about it: the
    /// same key leaves the file alone, a different key is
    /// [`Error::ServerKeyChanged`] — a recorded key is never replaced here.
    pub fn add(&self, server: &ServerAddr, fingerprint: &Fingerprint) -> Result<Added, Error> {
        let _lock = self.lock()?;
        let mut text = self.read()?;
        match lookup_in(&self.parse(&text)?, server, fingerprint) {
            Lookup::Known { .. } => return Ok(Added::AlreadyKnown),
            Lookup::Changed { line, known } => {
                return Err(Error::ServerKeyChanged(Box::new(KeyChange {
                    server: server.clone(),
                    path: self.path.clone(),
                    line,
                    known,
                    presented: *fingerprint,
                })));
            }
            Lookup::Unknown => {}
        }
        if text.is_empty() {
            text.push_str(HEADER);
        } else if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{server} {fingerprint}\n"));
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
            let (Some(addr), Some(fp)) = (fields.next(), fields.next()) else {
                return Err(syntax("expected HOST:PORT SHA256:<fingerprint>"));
            };
            if fields.next().is_some_and(|rest| !rest.starts_with('#')) {
                return Err(syntax("unexpected text after the fingerprint (comments start with '#')"));
            }
            let server = addr.parse::<ServerAddr>().map_err(|_| syntax("the first field is not a valid HOST:PORT"))?;
            let fingerprint =
                fp.parse::<Fingerprint>().map_err(|_| syntax("the second field is not a valid SHA256: fingerprint"))?;
            out.push(KnownServer { server, fingerprint, line });
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
fn lookup_in(entries: &[KnownServer], server: &ServerAddr, fingerprint: &Fingerprint) -> Lookup {
    let mut first = None;
    for e in entries.iter().filter(|e| &e.server == server) {
        if &e.fingerprint == fingerprint {
            return Lookup::Known { line: e.line };
        }
        first.get_or_insert(Lookup::Changed { line: e.line, known: e.fingerprint });
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
        assert_eq!(entries[1].fingerprint(), fp(2));
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
        assert_eq!(ks.lookup(&a, &fp(9)).unwrap(), Lookup::Changed { line: 3, known: fp(1) });
        assert_eq!(ks.remove(&a).unwrap(), 1);
        assert_eq!(ks.remove(&a).unwrap(), 0);
        assert_eq!(ks.lookup(&a, &fp(1)).unwrap(), Lookup::Unknown);
        assert_eq!(ks.lookup(&b, &fp(2)).unwrap(), Lookup::Known { line: 3 });
        let text = std::fs::read_to_string(ks.path()).unwrap();
        assert!(text.starts_with("# cipherline known servers"));
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
