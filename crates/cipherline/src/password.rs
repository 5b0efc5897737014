//! The shared-password flags of password mode (PROTOCOL.md §7.7).
//!
//! A password is never taken from a plain command-line argument (other
//! users can read those in the process list): it comes from the first line
//! of a file, from a prompt on the terminal, or, for clients, from the
//! `CIPHERLINE_PASSWORD` environment variable.

use std::io::Read as _;
use std::path::PathBuf;

use cipherline_proto::crypto::pake::Password;
use clap::Args;
use unicode_normalization::UnicodeNormalization as _;
use zeroize::Zeroizing;

use crate::error::CliError;
use crate::passphrase::have_tty;

/// The environment variable clients read a password from.
pub const PASSWORD_ENV: &str = "CIPHERLINE_PASSWORD";
/// Longest password file read.
const MAX_FILE: u64 = 4096;

/// Where the shared password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Use password mode with the password on the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "password_prompt")]
    pub password_file: Option<PathBuf>,

    /// Use password mode and ask for the password on the terminal.
    #[arg(long)]
    pub password_prompt: bool,
}

/// The password bytes of PROTOCOL.md §7.7: the first line of `text`
/// (without its `\n` or `\r\n`; every other character, spaces included,
/// kept) in Unicode Normalization Form C, as UTF-8.
fn password_bytes(text: &str) -> Zeroizing<Vec<u8>> {
    let line = text.lines().next().unwrap_or_default();
    // Room for NFC's largest expansion (3× in code points, so at most 3× in
    // UTF-8 bytes plus slack): no reallocation leaves a copy behind
    // unwiped.
    let mut nfc = Zeroizing::new(String::with_capacity(line.len() * 3 + 16));
    nfc.extend(line.nfc());
    Zeroizing::new(std::mem::take(&mut *nfc).into_bytes())
}

fn password(text: Zeroizing<String>) -> Result<Password, CliError> {
    // Moved, not copied: the only copy is the one Password wipes.
    Password::new(std::mem::take(&mut *password_bytes(&text)))
        .map_err(|_| CliError::usage("the password is empty", "put the password on the first line"))
}

impl PasswordArgs {
    /// The password, if one was asked for; `env` also reads
    /// `CIPHERLINE_PASSWORD` (clients only).
    pub fn resolve(&self, env: bool) -> Result<Option<Password>, CliError> {
        if let Some(path) = &self.password_file {
            let mut text = Zeroizing::new(String::new());
            std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text)).map_err(|e| {
                CliError::failed(
                    format!("cannot read the password file {}: {e}", path.display()),
                    "check the path; the password is its first line, as UTF-8 text",
                )
            })?;
            // Never truncate: a cut-off password would silently differ.
            if text.len() as u64 > MAX_FILE {
                return Err(CliError::usage(
                    format!("the password file {} is larger than {MAX_FILE} bytes", path.display()),
                    "put only the password on the first line of the file",
                ));
            }
            return password(text).map(Some);
        }
        if self.password_prompt {
            if !have_tty() {
                return Err(CliError::NoTerminal {
                    what: "a password was asked for with --password-prompt",
                    hint: "use --password-file FILE (or CIPHERLINE_PASSWORD for clients) instead",
                });
            }
            let typed =
                rpassword::prompt_password("Shared password: ").map(Zeroizing::new).map_err(CliError::Terminal)?;
            return password(typed).map(Some);
        }
        if env && let Some(value) = std::env::var_os(PASSWORD_ENV) {
            let value = Zeroizing::new(value.into_string().map_err(|_| {
                CliError::usage(format!("{PASSWORD_ENV} is not valid UTF-8"), "set it to the password as text")
            })?);
            return password(value).map(Some);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn password_bytes_are_the_nfc_first_line_with_spaces_kept() {
        // "é" precomposed (U+00E9) and decomposed (e + U+0301) are one password.
        assert_eq!(*password_bytes("caf\u{e9}\n"), *password_bytes("cafe\u{301}\r\nsecond line"));
        assert_eq!(*password_bytes("caf\u{e9}"), "caf\u{e9}".as_bytes().to_vec());
        assert_eq!(*password_bytes(" pw  \r\n"), b" pw  ".to_vec(), "spaces are part of the password");
        assert_eq!(*password_bytes("\nlater"), Vec::<u8>::new(), "only the first line counts");
        assert!(password(Zeroizing::new("\n".to_owned())).is_err(), "an empty first line is refused");
    }

    #[test]
    fn an_oversized_password_file_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "x".repeat(MAX_FILE as usize + 1)).unwrap();
        let args = PasswordArgs { password_file: Some(path), password_prompt: false };
        assert!(args.resolve(false).is_err());
        std::fs::write(dir.path().join("ok"), "x".repeat(MAX_FILE as usize)).unwrap();
        let args = PasswordArgs { password_file: Some(dir.path().join("ok")), password_prompt: false };
        assert!(args.resolve(false).unwrap().is_some());
    }
}
