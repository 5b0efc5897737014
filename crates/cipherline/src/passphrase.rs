//! The passphrase flags shared by subcommands that read or write private keys.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use cipherline_keys::Passphrase;
use clap::Args;
use zeroize::Zeroizing;

use crate::error::CliError;

/// How to get the passphrase of a private key. A passphrase is never taken
/// on the command line, where other users could see it in the process list.
#[derive(Debug, Args)]
pub struct PassphraseArgs {
    /// Read the private key's passphrase from the first line of FILE
    /// (without its line break).
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_prompt")]
    pub passphrase_file: Option<PathBuf>,

    /// Ask for the private key's passphrase on the terminal.
    #[arg(long)]
    pub passphrase_prompt: bool,
}

impl PassphraseArgs {
    /// The passphrase for a new key: from the file, or typed twice; `None`
    /// if neither flag was given (the key is written unencrypted).
    pub fn for_new_key(&self) -> Result<Option<Passphrase>, CliError> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Some(Passphrase::from_file(path)?));
        }
        if !self.passphrase_prompt {
            return Ok(None);
        }
        require_terminal("a passphrase was asked for with --passphrase-prompt")?;
        let mut first = prompt("Passphrase for the new key: ")?;
        let again = prompt("The same passphrase again: ")?;
        if *first != *again {
            return Err(CliError::PassphraseMismatch);
        }
        // Moved, not copied, into the Passphrase, which wipes it from then on.
        Ok(Some(Passphrase::new(core::mem::take(&mut *first))?))
    }

    /// The passphrase for an existing key, if a flag asked for one.
    pub fn for_existing_key(&self) -> Result<Option<Passphrase>, CliError> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Some(Passphrase::from_file(path)?));
        }
        if !self.passphrase_prompt {
            return Ok(None);
        }
        require_terminal("a passphrase was asked for with --passphrase-prompt")?;
        ask_existing().map(Some)
    }
}

/// Asks once for the passphrase of an existing key.
pub fn ask_existing() -> Result<Passphrase, CliError> {
    let mut typed = prompt("Passphrase for the private key: ")?;
    Ok(Passphrase::new(core::mem::take(&mut *typed))?)
}

/// Whether a person is there to answer a prompt read from standard input
/// (the trust prompt).
pub fn have_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Whether a secret can be asked for: rpassword reads the controlling
/// terminal itself, so this holds even when standard input is a pipe
/// (`seq 1 10 | cipherline send` typed at a terminal).
pub fn have_tty() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok()
}

fn require_terminal(what: &'static str) -> Result<(), CliError> {
    if have_tty() { Ok(()) } else { Err(CliError::NoTerminal { what, hint: "use --passphrase-file FILE instead" }) }
}

/// Reads one line from the terminal without echo (rpassword opens the
/// terminal itself, not stdin); wiped from memory when dropped.
fn prompt(text: &str) -> Result<Zeroizing<String>, CliError> {
    rpassword::prompt_password(text).map(Zeroizing::new).map_err(CliError::Terminal)
}
