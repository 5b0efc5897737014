//! File transfer on the command line: sending one file the version-1 way
//! over an unsplit client, and the progress bar and hex the file commands
//! share. (Receiving is the client engine's: `listen` and `chat` use it.)

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use cipherline_client::Client;
use cipherline_client::display::escape;
use cipherline_client::transfer::Outgoing;
use cipherline_proto::app::{ClientMessage, MAX_CHUNK, ServerMessage, Target};
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

/// Sends `path` to `to` and waits until every accepting receiver confirmed
/// the whole file (size and SHA-256 checked on their side).
///
/// `answer_timeout` bounds the wait for answers to the offer, and each wait
/// for progress once data flows.
pub async fn send_file(client: &mut Client, to: Target, path: &Path, answer_timeout: Duration) -> Result<(), CliError> {
    let (mut file, size) = open_regular(path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::usage(format!("{} has no usable file name", path.display()), "rename the file"))?
        .to_owned();
    let recipients = match &to {
        Target::User(user) => vec![user.clone()],
        Target::Room(room) => client.who(room).await?.into_iter().filter(|n| n != client.name()).collect(),
    };
    if recipients.is_empty() {
        return Err(transfer_failed("nobody else is in that room".into(), "wait for someone to join"));
    }
    let transfer = client.writer().next_id();
    let me = client.name().to_owned();
    let mut out = Outgoing::new(transfer, size, recipients);
    client.send_message(&ClientMessage::FileOffer { transfer, to: to.clone(), name: name.clone(), size }).await?;
    eprintln!("offered {name} ({size} bytes); waiting for the receiver to accept");

    let bar = progress_bar(size, &name);
    let mut answers_deadline = Some(tokio::time::Instant::now() + answer_timeout);
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut finished_sending = false;
    loop {
        if finished_sending && (out.delivered() || out.receivers() == 0) {
            break;
        }
        // Stream only once every recipient has answered (or the wait for
        // answers is over), so no one accepts in the middle of the data.
        let answering = out.awaiting_answers() && answers_deadline.is_some();
        if !answering && !finished_sending && out.receivers() > 0 {
            let want = usize::try_from((size - out.sent()).min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK);
            if want == 0 {
                let sha256 = out.digest();
                client.file_end(transfer, &to, &name, size, sha256).await?;
                finished_sending = true;
                continue;
            }
            if out.window_open(want) {
                let chunk = buf.get_mut(..want).unwrap_or_default();
                file.read_exact(chunk).map_err(|e| {
                    transfer_failed(format!("reading {}: {e}", path.display()), "the file changed while being sent")
                })?;
                out.record_chunk(chunk);
                client.send_message(&ClientMessage::FileChunk { transfer, data: chunk.to_vec() }).await?;
                bar.set_position(out.acked());
                continue;
            }
        }
        let wait = match answers_deadline {
            Some(deadline) if out.awaiting_answers() => deadline,
            _ => tokio::time::Instant::now() + answer_timeout,
        };
        let msg = match tokio::time::timeout_at(wait, client.recv()).await {
            Ok(msg) => msg?,
            Err(_) if out.awaiting_answers() && answers_deadline.is_some() => {
                answers_deadline = None;
                if out.receivers() == 0 {
                    let _ = client
                        .send_message(&ClientMessage::FileCancel {
                            transfer,
                            sender: String::new(),
                            reason: "nobody accepted in time".into(),
                        })
                        .await;
                    return Err(transfer_failed(
                        format!("nobody accepted {name} within {} s", answer_timeout.as_secs()),
                        "ask the receiver to accept (in chat: /accept), or use --answer-timeout",
                    ));
                }
                continue;
            }
            Err(_) => {
                return Err(transfer_failed(
                    "the receivers stopped confirming data".into(),
                    "check their connection and send the file again",
                ));
            }
        };
        match msg {
            ServerMessage::FileAnswered { transfer: t, by, accept } if t == transfer => {
                out.on_answer(&by, accept);
                eprintln!("{} {} {name}", escape(&by), if accept { "accepted" } else { "declined" });
                if !out.awaiting_answers() && out.receivers() == 0 {
                    return Err(transfer_failed(format!("{name} was declined"), "nothing was sent"));
                }
            }
            ServerMessage::FileAcked { transfer: t, by, received } if t == transfer => {
                out.on_ack(&by, received);
                bar.set_position(out.acked());
            }
            ServerMessage::FileCancelled { transfer: t, sender, by, reason } if t == transfer && sender == me => {
                if by == me {
                    let reason = escape(&reason);
                    return Err(transfer_failed(format!("the server stopped the transfer: {reason}"), "try again"));
                }
                let reason = escape(&reason);
                eprintln!("{} stopped receiving {name}: {reason}", escape(&by));
                out.on_cancel(&by);
                if out.receivers() == 0 && !out.awaiting_answers() {
                    return Err(transfer_failed(format!("every receiver stopped: {reason}"), "see above"));
                }
            }
            ServerMessage::Error { code, client_id, text } if client_id == transfer || client_id == 0 => {
                return Err(CliError::Client(cipherline_client::ClientError::Refused { code, text }));
            }
            _ => {}
        }
    }
    bar.finish_and_clear();
    eprintln!("sent {name} ({size} bytes); checked by {} receiver(s)", out.receivers());
    Ok(())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
