//! Passphrases that protect private key files.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::Error;

/// Largest passphrase file read.
const MAX_PASSPHRASE_FILE: usize = 4096;

/// A passphrase: non-empty bytes, zeroized on drop, with no `Debug` or
/// `Display` so that it cannot end up in a log line.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps a passphrase typed by the user; refuses an empty one.
    pub fn new(passphrase: String) -> Result<Self, Error> {
        let bytes = Zeroizing::new(passphrase.into_bytes());
        if bytes.is_empty() {
            return Err(Error::InvalidPassphrase { from: None, reason: "it is empty" });
        }
        Ok(Passphrase(bytes))
    }

    /// Reads a passphrase from the first line of a file (without its `\n` or
    /// `\r\n`), as `--passphrase-file` does. The file may hold at most 4 KiB;
    /// anything after the first line is ignored.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let read_err = |source| Error::Read { path: path.to_owned(), source };
        let file = File::open(path).map_err(read_err)?;
        // Sized up front so that reading never reallocates (and leaves an
        // unzeroized copy behind).
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_FILE + 1));
        file.take(MAX_PASSPHRASE_FILE as u64 + 1).read_to_end(&mut buf).map_err(read_err)?;
        let invalid = |reason| Error::InvalidPassphrase { from: Some(path.to_owned()), reason };
        if buf.len() > MAX_PASSPHRASE_FILE {
            return Err(invalid("the file is larger than 4 KiB"));
        }
        let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(invalid("the first line of the file is empty"));
        }
        Ok(Passphrase(Zeroizing::new(line.to_vec())))
    }

    /// The passphrase bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "hunter2\r\nsecond line\n").unwrap();
        assert_eq!(Passphrase::from_file(&path).unwrap().as_bytes(), b"hunter2");
        std::fs::write(&path, "\nhunter2\n").unwrap();
        assert!(Passphrase::from_file(&path).is_err());
        assert!(Passphrase::new(String::new()).is_err());
    }
}
