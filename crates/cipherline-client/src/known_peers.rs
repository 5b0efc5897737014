//! The `known_peers` text file that held remembered peer keys before the
//! local store ([`crate::local`]) did: read once, strictly, to import it.
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
//! with missing or extra fields, an invalid name or fingerprint, a second
//! line for the same server and name, or more than [`MAX_PEERS`] lines for
//! one server makes the import fail with the line number (never the line's
//! content). Nothing is silently skipped in a file that decides whose
//! messages are shown as genuine.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use cipherline_keys::{Fingerprint, ServerAddr};
use cipherline_proto::app::{MAX_NAME, fold_name, valid_name};

use crate::ClientError;
use crate::peers::MAX_PEERS;

/// Largest file read: 8 MiB.
const MAX_FILE_LEN: u64 = 8 * 1024 * 1024;
/// The word that marks a peer whose safety code the user confirmed.
const VERIFIED: &str = "verified";

/// One peer line of the file.
pub(crate) struct Line {
    /// The server, `host:port`.
    pub server: String,
    /// The name as written.
    pub name: String,
    /// The remembered key.
    pub fp: Fingerprint,
    /// Whether the user confirmed it.
    pub verified: bool,
}

/// Every peer line of the file at `path` (a missing file has none).
pub(crate) fn load(path: &Path) -> Result<Vec<Line>, ClientError> {
    Ok(parse(path, &read(path)?)?.into_iter().flatten().collect())
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
        out.push(Some(Line { server: server.to_owned(), name: name.to_owned(), fp, verified }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_has_no_peers_and_an_oversized_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers");
        assert!(load(&path).unwrap().is_empty());
        std::fs::write(&path, vec![b'#'; 8 * 1024 * 1024 + 1]).unwrap();
        assert!(load(&path).err().unwrap().to_string().contains("8 MiB"));
        std::fs::write(&path, b"\xff\n").unwrap();
        assert!(load(&path).err().unwrap().to_string().contains("UTF-8"));
    }
}
