//! Files in the TUI: offers shown in their conversation, `/send-file`,
//! `/accept`, `/decline` and `/cancel` run on the engine, and progress
//! bars from its transfer events. Pure, like [`super::app`].

use std::path::PathBuf;

use cipherline_client::engine::{Command, FailReason, Reply, TransferInfo, TransferState, Verified};
use cipherline_proto::app::Target;

use super::app::{Action, App, Entry, Transfer, same};

/// Offers remembered for `/accept` and `/decline` at most (the oldest go).
pub const MAX_OFFERS: usize = 64;

/// A file offered to this user: what `/accept ID` fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The offer's id (its message's).
    pub id: u64,
    /// The sender (raw).
    pub from: String,
    /// The file's name (raw).
    pub name: String,
}

impl App {
    /// A file offered: a line in its conversation, remembered for `/accept`.
    /// A version-1 offer (`e2e` false) says the server can read the file;
    /// its sender's signature is only checked once the file arrived.
    pub(super) fn on_file_offered(&mut self, offer: Offer, to: &Target, size: u64, verified: Verified, e2e: bool) {
        let target = match to {
            Target::Room(r) => Target::Room(r.clone()),
            Target::User(_) => Target::User(offer.from.clone()),
        };
        let key = match verified {
            _ if !e2e => String::new(),
            Verified::Known | Verified::Verified => String::new(),
            other => format!(" ({} key)", other.as_str()),
        };
        let open = if e2e { "" } else { "; not end to end: the server can read it" };
        let text = format!(
            "{}{key} offers the file {} ({}{open}): /accept {} or /decline {}",
            offer.from,
            offer.name,
            size_of(size),
            offer.id,
            offer.id
        );
        let i = self.index_of(&target);
        if let Some(c) = self.conversations.get_mut(i) {
            c.push(Entry::Notice { text, alarm: matches!(verified, Verified::Changed | Verified::Invalid) });
        }
        if self.offers.len() >= MAX_OFFERS {
            self.offers.remove(0);
        }
        self.offers.push(offer);
    }

    /// A transfer's progress or end: its bar, and a line when it ends.
    pub(super) fn on_transfer_event(
        &mut self,
        id: String,
        name: String,
        (done, total): (u64, u64),
        state: &TransferState,
        path: Option<PathBuf>,
    ) {
        match state {
            TransferState::Done => match &path {
                Some(path) => self.notice(format!("saved {name} as {}", path.display()), false),
                None => self.notice(format!("sent {name}"), false),
            },
            TransferState::Failed { reason: FailReason::Declined { by }, .. } => {
                // Declining is an answer, not an alarm.
                self.notice(format!("{name} ({id}) declined by {}", by.join(", ")), false);
            }
            TransferState::Failed { reason: FailReason::ConnectionLost, why } => {
                self.notice(format!("{name} ({id}) stopped, the connection was lost: {why}"), true);
            }
            TransferState::Failed { why, .. } => self.notice(format!("{name} ({id}) stopped: {why}"), true),
            TransferState::Cancelled => self.notice(format!("{name} ({id}) cancelled"), false),
            _ => {}
        }
        self.on_transfer(Transfer { id, name, done, total, state: state.as_str().to_owned() });
    }

    /// `/send-file`, `/accept`, `/decline`, `/cancel`: what to ask the
    /// engine. `None` for another command.
    pub(super) fn file_command(&mut self, cmd: &str, rest: &str) -> Option<Vec<Action>> {
        let run = |c| Some(vec![Action::Run(c)]);
        match cmd {
            "/send-file" => {
                let Some((to, path)) = rest.split_once(' ').map(|(t, p)| (t, p.trim())).filter(|(_, p)| !p.is_empty())
                else {
                    self.notice("usage: /send-file USER|#ROOM PATH", true);
                    return Some(Vec::new());
                };
                let to = match to.strip_prefix('#') {
                    Some(room) => Target::Room(room.to_owned()),
                    // A room shown in the list needs no `#`, as in chat.
                    None if self.conversations.iter().any(|c| same(&c.target, &Target::Room(to.to_owned()))) => {
                        Target::Room(to.to_owned())
                    }
                    None => Target::User(to.to_owned()),
                };
                run(Command::SendFile { to, path: PathBuf::from(path) })
            }
            "/accept" | "/decline" => {
                let offer = match rest {
                    "" => self.offers.last().cloned(),
                    id => id.parse::<u64>().ok().and_then(|id| self.offers.iter().find(|o| o.id == id).cloned()),
                };
                let Some(offer) = offer else {
                    self.notice(format!("{cmd}: no such file offer (the lines offering files name their ids)"), true);
                    return Some(Vec::new());
                };
                if cmd == "/accept" {
                    return run(Command::GetFile { id: offer.id, dir: self.download_dir.clone() });
                }
                self.offers.retain(|o| o.id != offer.id);
                run(Command::DeclineFile(offer.id))
            }
            "/cancel" if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
                run(Command::CancelFile(rest.to_owned()))
            }
            "/cancel" => {
                self.notice("usage: /cancel ID (the id a transfer's bar shows, e.g. s1, d3 or o2)", true);
                Some(Vec::new())
            }
            _ => None,
        }
    }

    /// The engine's answer to a file command; `None` for another.
    pub(super) fn on_file_reply(&mut self, command: &Command, result: &Result<Reply, String>) -> Option<Vec<Action>> {
        match (command, result) {
            (Command::SendFile { path, .. }, Ok(Reply::Transfer { transfer })) => {
                self.notice(format!("sending {} ({transfer})", path.display()), false);
            }
            (Command::GetFile { .. }, Ok(Reply::Transfer { transfer })) => {
                self.notice(format!("receiving ({transfer}) into {}", self.download_dir.display()), false);
            }
            (Command::Files, Ok(Reply::Files(list))) => self.listed_files(list),
            (Command::CancelFile(_) | Command::DeclineFile(_), Ok(_)) => {}
            (
                Command::SendFile { .. }
                | Command::GetFile { .. }
                | Command::Files
                | Command::CancelFile(_)
                | Command::DeclineFile(_),
                Err(e),
            ) => {
                // Raw: the notice is escaped where it is drawn.
                self.notice(e.clone(), true);
            }
            _ => return None,
        }
        Some(Vec::new())
    }

    /// The transfers not finished, one line each.
    fn listed_files(&mut self, list: &[TransferInfo]) {
        if list.is_empty() {
            self.notice("no transfers", false);
        }
        for t in list {
            let who = match (&t.from, t.outgoing) {
                (Some(from), false) => format!(" from {from}"),
                _ => String::new(),
            };
            self.notice(format!("{} {} {}{who} {}/{}", t.transfer, t.state.as_str(), t.name, t.done, t.total), false);
        }
    }
}

/// A size for people: bytes, KiB, MiB or GiB.
fn size_of(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 10 * 1024 && unit + 1 < UNITS.len() {
        value /= 1024;
        unit += 1;
    }
    format!("{value} {}", UNITS.get(unit).copied().unwrap_or("bytes"))
}
