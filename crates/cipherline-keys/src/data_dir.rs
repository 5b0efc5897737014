//! The per-user data directory that holds the known-servers file.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::known_servers::KnownServers;

/// The environment variable that overrides the data directory.
pub const HOME_ENV: &str = "CIPHERLINE_HOME";

/// The data directory. Chosen, first match wins, from:
///
/// 1. an explicit path (the `--data-dir` flag);
/// 2. the `CIPHERLINE_HOME` environment variable, if set and not empty;
/// 3. the platform's per-user data directory: `$XDG_DATA_HOME/cipherline`
///    (by default `~/.local/share/cipherline`) on Linux,
///    `~/Library/Application Support/cipherline` on macOS,
///    `%APPDATA%\cipherline\data` on Windows.
///
/// Nothing is created until something is written there; it is then created
/// with mode 0700.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// Resolves the data directory from the flag, then the environment, then
    /// the platform default.
    pub fn resolve(flag: Option<&Path>) -> Result<Self, Error> {
        Self::resolve_with(flag, std::env::var_os(HOME_ENV).as_deref())
    }

    /// [`DataDir::resolve`] with the environment variable's value passed in
    /// (for tests, which must not change the process environment).
    pub fn resolve_with(flag: Option<&Path>, env: Option<&OsStr>) -> Result<Self, Error> {
        if let Some(flag) = flag {
            return Ok(DataDir(flag.to_owned()));
        }
        if let Some(env) = env.filter(|v| !v.is_empty()) {
            return Ok(DataDir(PathBuf::from(OsString::from(env))));
        }
        directories::ProjectDirs::from("", "", "cipherline")
            .map(|dirs| DataDir(dirs.data_dir().to_owned()))
            .ok_or(Error::NoDataDir)
    }

    /// A data directory at exactly `path`.
    #[must_use]
    pub fn at(path: impl Into<PathBuf>) -> Self {
        DataDir(path.into())
    }

    /// The directory's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The known-servers file in this directory (`known_servers`).
    #[must_use]
    pub fn known_servers(&self) -> KnownServers {
        KnownServers::new(self.0.join(KnownServers::FILE_NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_env_beats_default() {
        let flag = Path::new("/flag");
        let env = OsStr::new("/env");
        assert_eq!(DataDir::resolve_with(Some(flag), Some(env)).unwrap().path(), flag);
        assert_eq!(DataDir::resolve_with(None, Some(env)).unwrap().path(), Path::new("/env"));
        // An empty variable counts as unset.
        let default = DataDir::resolve_with(None, Some(OsStr::new(""))).unwrap();
        assert!(default.path().ends_with("cipherline"), "{default:?}");
        assert_eq!(DataDir::resolve_with(None, None).unwrap(), default);
    }
}
