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
use zeroize::Zeroizing;

use crate::error::CliError;
use crate::passphrase::have_terminal;

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

fn password(text: Zeroizing<String>) -> Result<Password, CliError> {
    let line = text.lines().next().unwrap_or_default();
    Password::new(line.as_bytes().to_vec())
        .map_err(|_| CliError::usage("the password is empty", "put the password on the first line"))
}

impl PasswordArgs {
    /// The password, if one was asked for; `env` also reads
    /// `CIPHERLINE_PASSWORD` (clients only).
    pub fn resolve(&self, env: bool) -> Result<Option<Password>, CliError> {
        if let Some(path) = &self.password_file {
            let mut text = Zeroizing::new(String::new());
            std::fs::File::open(path).and_then(|f| f.take(MAX_FILE).read_to_string(&mut text)).map_err(|e| {
                CliError::failed(
                    format!("cannot read the password file {}: {e}", path.display()),
                    "check the path; the password is its first line",
                )
            })?;
            return password(text).map(Some);
        }
        if self.password_prompt {
            if !have_terminal() {
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
