//! What the file commands share on the command line: the check that only
//! a regular file is sent, the progress bar, and hex. (Sending and
//! receiving are the client engine's: `send --file`, `listen`, `chat`.)

use std::path::Path;

use cipherline_client::display::escape;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;

/// A progress bar on a terminal, nothing otherwise.
pub fn progress_bar(size: u64, label: &str) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

fn transfer_failed(what: String, hint: &str) -> CliError {
    CliError::failed(what, hint)
}

/// Refuses what is not a regular file, naming what it is instead.
fn refuse_irregular(path: &Path, meta: &std::fs::Metadata) -> Result<(), CliError> {
    if meta.is_file() {
        return Ok(());
    }
    let shown = path.display().to_string();
    let path = escape(&shown);
    if meta.is_dir() {
        return Err(CliError::usage(
            format!("{path} is a directory: only a regular file can be sent"),
            "send the files in it one by one, or an archive of it",
        ));
    }
    Err(CliError::usage(
        format!("{path} is not a regular file (a device, FIFO or socket): only a regular file can be sent"),
        "copy its contents into a file and send that",
    ))
}

/// Opens `path` for sending, with its size. Only a regular file (or a
/// symlink to one) is accepted: a directory opens fine on Unix and would be
/// offered as a "file" of its metadata size (4096 bytes of nothing), a
/// device has no meaningful size, and opening a FIFO waits for a writer.
/// The type is checked before opening (so a FIFO is never opened) and again
/// on the opened handle (what is actually read).
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64), CliError> {
    let unreadable = |e: std::io::Error| {
        transfer_failed(format!("cannot read {}: {e}", escape(&path.display().to_string())), "check the path")
    };
    refuse_irregular(path, &std::fs::metadata(path).map_err(unreadable)?)?;
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    refuse_irregular(path, &meta)?;
    Ok((file, meta.len()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
