//! `chat`'s version-1 files (PROTOCOL.md §13.6): offered live, signed,
//! readable by the relay; what `/send-file` does in a conversation that is
//! not end to end (an open room such as the lobby, or every conversation
//! of a chat without an Ed25519 identity key), and the offers such chats
//! make. One file is sent at a time.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use cipherline_client::display::escape;
use cipherline_client::peers::MessageStatus;
use cipherline_client::transfer::{Outgoing, safe_file_name};
use cipherline_proto::app::{ClientMessage, MAX_CHUNK, ServerMessage, Target, fold_name};

use super::{Chat, End};
use crate::error::CliError;
use crate::files::{FileEvent, file_verdict, open_regular};

/// A file being sent from chat.
pub(super) struct Sending {
    pub(super) out: Outgoing,
    file: std::fs::File,
    pub(super) name: String,
    /// Who it was offered to (part of what the file signature covers).
    to: Target,
    ended: bool,
    pub(super) answers_until: tokio::time::Instant,
    next_report: u64,
}

impl Sending {
    pub(super) fn ready(&self) -> bool {
        if self.ended || (self.out.awaiting_answers() && tokio::time::Instant::now() < self.answers_until) {
            return false;
        }
        let left = self.out.size - self.out.sent();
        left == 0 || self.out.window_open(usize::try_from(left.min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK))
    }
}

impl Chat {
    /// `/send-file` into a conversation that is not end to end (an open
    /// room; any, without an Ed25519 key): a version-1 offer, signed and
    /// readable by the relay, sent while the receivers are online.
    pub(super) async fn offer_file(&mut self, target: Target, path: &Path) -> Result<(), CliError> {
        if let Some(s) = &self.sending {
            self.screen.show(format!("! {} is still being sent; wait for it to finish, or /cancel it", s.name));
            return Ok(());
        }
        let (file, size) = match open_regular(path) {
            Ok(opened) => opened,
            Err(e) => {
                self.screen.show(format!("! {e}"));
                return Ok(());
            }
        };
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(safe_file_name) else {
            self.screen.show("! that path has no usable file name");
            return Ok(());
        };
        let recipients = match &target {
            Target::User(u) => vec![u.clone()],
            // Room members answer as they decide; the wait below bounds it.
            Target::Room(_) => Vec::new(),
        };
        let transfer = self.writer.next_id();
        let out = Outgoing::new(transfer, size, recipients);
        self.writer
            .send_message(&ClientMessage::FileOffer { transfer, to: target.clone(), name: name.clone(), size })
            .await?;
        self.screen.show(format!(
            "* offered {name} ({size} bytes; not end to end: the server can read it); waiting up to 60 s for answers"
        ));
        let answers_until = tokio::time::Instant::now() + Duration::from_secs(60);
        self.sending =
            Some(Sending { out, file, name, to: target, ended: false, answers_until, next_report: size / 4 });
        Ok(())
    }

    pub(super) async fn send_chunk(&mut self) -> Result<(), CliError> {
        let Some(s) = self.sending.as_mut() else { return Ok(()) };
        let transfer = s.out.transfer;
        let left = s.out.size - s.out.sent();
        if left == 0 {
            let sha256 = s.out.digest();
            s.ended = true;
            let (to, name, size) = (s.to.clone(), s.name.clone(), s.out.size);
            self.writer.file_end(transfer, &to, &name, size, sha256).await?;
            return Ok(());
        }
        let mut chunk = vec![0u8; usize::try_from(left.min(MAX_CHUNK as u64)).unwrap_or(MAX_CHUNK)];
        s.file
            .read_exact(&mut chunk)
            .map_err(|e| CliError::failed(format!("reading the file: {e}"), "it changed while being sent"))?;
        s.out.record_chunk(&chunk);
        self.writer.send_message(&ClientMessage::FileChunk { transfer, data: chunk }).await?;
        Ok(())
    }

    /// Gives up the file being sent: the server is told (so it frees the
    /// transfer and tells any receiver), and `/send-file` is free again.
    pub(super) async fn stop_sending(&mut self, reason: &str) -> Result<(), CliError> {
        let Some(s) = self.sending.take() else { return Ok(()) };
        let cancel =
            ClientMessage::FileCancel { transfer: s.out.transfer, sender: String::new(), reason: reason.into() };
        self.writer.send_message(&cancel).await?;
        Ok(())
    }

    /// `/accept ID` or `/decline ID` of a version-1 offer (IDs are the
    /// local ones shown with each offer); false if there is no such offer.
    pub(super) async fn answer_offer(&mut self, accept: bool, id: Option<u64>) -> Result<bool, CliError> {
        let Some(offer) = self.downloads.take_offer(id) else { return Ok(false) };
        let (name, from) = (escape(&offer.name), escape(&offer.from));
        let accept = if accept {
            match self.downloads.start(&offer, &self.download_dir) {
                Ok(()) => {
                    self.screen.show(format!("* receiving {name} ({} bytes) from {from}", offer.size));
                    true
                }
                Err(e) => {
                    self.screen.show(format!("! cannot receive {name}: {}", escape(&e.to_string())));
                    false
                }
            }
        } else {
            self.screen.show(format!("* declined {name} from {from}"));
            false
        };
        let reply = ClientMessage::FileAnswer { transfer: offer.transfer, sender: offer.from, accept };
        self.writer.send_message(&reply).await?;
        Ok(true)
    }

    /// A version-1 file message from the server: answers and acks for the
    /// file this chat sends, offers and data for files it receives.
    pub(super) async fn offer_message(&mut self, msg: ServerMessage) -> Option<End> {
        let me = self.info.name.clone();
        match msg {
            ServerMessage::FileAnswered { transfer, by, accept } => self.on_answer(transfer, &by, accept),
            ServerMessage::FileAcked { transfer, by, received } => self.on_acked(transfer, &by, received),
            // A transfer this client sends: a receiver stopped, or the server did.
            ServerMessage::FileCancelled { transfer, ref sender, ref by, ref reason } if *sender == me => {
                if let Some(s) = self.sending.as_mut().filter(|s| s.out.transfer == transfer) {
                    s.out.on_cancel(by);
                    let all_gone = s.out.receivers() == 0 && !s.out.awaiting_answers();
                    self.screen.show(format!("! {} stopped receiving the file: {}", escape(by), escape(reason)));
                    if *by == me {
                        // The server ended it: nothing is left to cancel.
                        self.sending = None;
                    } else if all_gone && self.stop_sending("every receiver stopped").await.is_err() {
                        // A room offer may still be open to others: end it.
                        return Some(End::Lost("a message could not be sent".into()));
                    }
                }
            }
            file @ (ServerMessage::FileOffered { .. }
            | ServerMessage::FileData { .. }
            | ServerMessage::FileDone { .. }
            | ServerMessage::FileCancelled { .. }) => {
                let (event, replies) = self.downloads.handle(&file, false, &mut self.peers);
                for reply in replies {
                    if self.writer.send_message(&reply).await.is_err() {
                        return Some(End::Lost("a message could not be sent".into()));
                    }
                }
                match event {
                    Some(FileEvent::Offered { from, id: Some(id), name, size, accepted: None, .. }) => {
                        self.screen.show(format!(
                            "* {} offers {} ({size} bytes): /accept {id} or /decline {id}",
                            escape(&from),
                            escape(&name)
                        ));
                    }
                    Some(FileEvent::Offered { from, name, size, reason, .. }) => self.screen.show(format!(
                        "! declined {} ({size} bytes) from {}: {}",
                        escape(&name),
                        escape(&from),
                        escape(reason.as_deref().unwrap_or("refused"))
                    )),
                    Some(FileEvent::Received { from, path, size, sha256, status }) => {
                        if let MessageStatus::KeyChanged { presented, .. } = &status {
                            self.changed.insert(fold_name(&from), *presented);
                        }
                        self.screen.show(format!(
                            "* received {} from {} ({size} bytes, SHA-256 {}…; {})",
                            escape(&path.display().to_string()),
                            escape(&from),
                            sha256.get(..16).unwrap_or_default(),
                            file_verdict(&status)
                        ));
                    }
                    Some(FileEvent::Failed { from, name, reason }) => {
                        self.screen.show(format!(
                            "! {} from {} failed: {}",
                            escape(&name),
                            escape(&from),
                            escape(&reason)
                        ));
                    }
                    None => {}
                }
            }
            _ => {}
        }
        None
    }

    fn on_answer(&mut self, transfer: u64, by: &str, accept: bool) {
        let Some(s) = self.sending.as_mut().filter(|s| s.out.transfer == transfer) else { return };
        s.out.on_answer(by, accept);
        let what = if accept { "accepted" } else { "declined" };
        let line = format!("* {} {what} {}", escape(by), s.name);
        // Every recipient of a direct offer answered and none accepted: the
        // server has already forgotten the transfer, so this client must
        // too, or every later /send-file would find it "still being sent".
        // (A room offer's sender cannot know when all members answered;
        // its answer window or /cancel ends it.)
        let nobody = !accept && !s.out.awaiting_answers() && s.out.receivers() == 0;
        let room = matches!(s.to, Target::Room(_));
        self.screen.show(line);
        if nobody && room {
            self.screen.show("  others in the room may still accept; /cancel to stop offering it");
        } else if nobody {
            let name = s.name.clone();
            self.sending = None;
            self.screen.show(format!("* nothing was sent; you can offer {name} again"));
        }
    }

    fn on_acked(&mut self, transfer: u64, by: &str, received: u64) {
        let Some(s) = self.sending.as_mut().filter(|s| s.out.transfer == transfer) else { return };
        s.out.on_ack(by, received);
        if s.out.delivered() {
            let line = format!("* {} delivered and verified ({} bytes)", s.name, s.out.size);
            self.sending = None;
            self.screen.show(line);
        } else if s.out.acked() >= s.next_report && s.out.size > 0 {
            let pct = s.out.acked() * 100 / s.out.size;
            s.next_report = s.out.acked() + s.out.size / 4;
            let line = format!("* {}: {pct}%", s.name);
            self.screen.show(line);
        }
    }
}
