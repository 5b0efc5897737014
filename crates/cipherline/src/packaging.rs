//! `cipherline completions` and `cipherline man`: the files a package or a
//! self-hoster installs next to the binary.
//!
//! Both are generated from the command-line definition itself (the same
//! `clap` types that parse the arguments, and their doc comments), so they
//! can never describe a flag the binary does not take.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use clap_complete::Shell;

use crate::error::CliError;

/// The man page section of user commands.
const MAN_SECTION: &str = "1";

/// Print a shell completion script (bash, zsh, fish, ...) to stdout.
///
/// Install it where your shell looks, e.g. `cipherline completions bash >
/// ~/.local/share/bash-completion/completions/cipherline`, `cipherline
/// completions zsh > ~/.zfunc/_cipherline` (with `fpath+=~/.zfunc` before
/// `compinit`), or `cipherline completions fish >
/// ~/.config/fish/completions/cipherline.fish`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Write the man pages: cipherline.1 and one per subcommand.
///
/// The pages are cipherline.1, cipherline-serve.1, cipherline-chat.1 and
/// so on, one per subcommand. Install them with e.g.
/// `sudo cipherline man --dir /usr/local/share/man/man1`, or read one
/// without installing: `man -l cipherline-serve.1`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing; pages already
    /// there are replaced).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Prints the completion script for `args.shell` of the command `cmd`.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> Result<(), CliError> {
    // Rendered into memory first: clap_complete panics if its writer fails,
    // and stdout may be a closed pipe (`cipherline completions bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cipherline", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|()| out.flush()).map_err(|e| {
        CliError::failed(format!("cannot write the completion script: {e}"), "redirect it to a file you can write")
    })
}

/// Writes the man pages of `cmd` and of every visible subcommand into
/// `args.dir`, printing each path written.
pub fn man(args: &ManArgs, cmd: clap::Command) -> Result<(), CliError> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, &e))?;
    // `help` is clap's own subcommand, not one of ours: no page for it.
    let mut cmd = cmd.disable_help_subcommand(true);
    // Building fills in each subcommand's display name, "cipherline-serve",
    // which is also its page's name.
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    let mut out = std::io::stdout().lock();
    for path in written {
        // The pages are written; a closed stdout only loses this listing.
        let _ = writeln!(out, "wrote {}", path.display());
    }
    Ok(())
}

/// Writes the page of `cmd`, then those of its subcommands, depth first.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), CliError> {
    // The footer names the program and version, not the subcommand's own
    // (clap's default would give "serve 0.1.0").
    let man = clap_mangen::Man::new(cmd.clone())
        .section(MAN_SECTION)
        .source(concat!("cipherline ", env!("CARGO_PKG_VERSION")))
        .manual("cipherline manual");
    let path = man.generate_to(dir).map_err(|e| write_error(dir, &e))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

fn write_error(dir: &Path, e: &std::io::Error) -> CliError {
    CliError::failed(
        format!("cannot write man pages to {}: {e}", dir.display()),
        "choose a directory you can write with --dir",
    )
}
