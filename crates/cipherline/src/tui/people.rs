//! The engine's local history, conversation list and member lists in the
//! TUI, and the commands about people and rooms (`/whois`, `/verify`,
//! `/trust`, `/create`, `/invite`, `/kick`): what to ask the engine, and
//! what its answers change. Pure, like [`super::app`].

use cipherline_client::engine::{
    Command, ConversationSummary, HistoryEntry, KeyState, Member as EngineMember, Reply, SessionSummary, Verified,
};
use cipherline_proto::app::{Target, fold_name};

use super::app::{Action, App, Entry, Member, same};

/// History entries asked for at once (a screen or two).
pub const PAGE: u32 = 100;

/// How much of a conversation's local history is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Nothing asked yet.
    Unloaded,
    /// A page was asked for.
    Loading,
    /// Older entries may exist.
    More,
    /// Everything older is loaded (or would exceed what is kept).
    Done,
}

/// A member's key state as the member pane shows it (`None`: no key known).
fn state(key: KeyState) -> Option<Verified> {
    match key {
        KeyState::New => Some(Verified::New),
        KeyState::Known => Some(Verified::Known),
        KeyState::Verified => Some(Verified::Verified),
        KeyState::Changed => Some(Verified::Changed),
        KeyState::Unknown => None,
    }
}

impl App {
    /// What the conversation shown needs from the engine now: its history
    /// (first page, or an older one once scrolled to the top), its members.
    pub fn due(&mut self) -> Vec<Action> {
        if !self.was_connected() {
            return Vec::new();
        }
        let connected = matches!(self.connection, cipherline_client::engine::ConnectionState::Connected { .. });
        let top = self.max_scroll.get();
        let Some(c) = self.conversations.get_mut(self.current) else { return Vec::new() };
        let mut actions = Vec::new();
        let at_top = c.scroll >= top;
        let before = match c.history {
            History::Unloaded => Some(None),
            History::More if at_top => Some(c.oldest_id()),
            _ => None,
        };
        if let Some(before) = before {
            c.history = History::Loading;
            actions.push(Action::Run(Command::History { conversation: c.target.clone(), before, limit: PAGE }));
        }
        if let Target::Room(room) = &c.target
            && connected
            && !c.members_asked
        {
            c.members_asked = true;
            actions.push(Action::Run(Command::Members(room.clone())));
        }
        actions
    }

    /// The engine's answer to a command of this module; `None` for others.
    pub(super) fn on_people_reply(&mut self, command: &Command, result: &Result<Reply, String>) -> Option<Vec<Action>> {
        match (command, result) {
            (Command::History { conversation, .. }, Ok(Reply::History(entries))) => {
                self.history(conversation, entries);
            }
            (Command::History { conversation, .. }, Err(e)) => {
                if let Some(c) = self.conversations.iter_mut().find(|c| same(&c.target, conversation)) {
                    c.history = History::Done;
                }
                self.notice(format!("no history: {e}"), true);
            }
            (Command::Conversations, Ok(Reply::Conversations(list))) => self.listed(list),
            (Command::Members(room), Ok(Reply::Members(members))) => self.members_of(room, members),
            // Not connected just now: asked again when it is.
            (Command::Members(room), Err(_)) => {
                let target = Target::Room(room.clone());
                if let Some(c) = self.conversations.iter_mut().find(|c| same(&c.target, &target)) {
                    c.members_asked = false;
                }
            }
            (Command::Whois(_), Ok(Reply::Fingerprint { name, fingerprint })) => {
                self.notice(format!("{name}'s identity key: {fingerprint}"), false);
            }
            (Command::Verify { .. }, Ok(Reply::SafetyCode { user, code })) => self.notice(
                format!(
                    "safety code with {user}: {code} — compare it with {user} out of band (in person, by phone); if it \
                     matches, /verify {user} confirm"
                ),
                false,
            ),
            (Command::Verify { user, confirm: true }, Ok(_)) => {
                self.notice(format!("{user}'s key is now verified"), false);
                self.ask_members_again();
            }
            (Command::Trust(user), Ok(_)) => {
                self.notice(
                    format!("{user}'s new key is accepted (not verified: /verify {user} to compare codes)"),
                    false,
                );
                self.ask_members_again();
            }
            (Command::Rekey, Ok(_)) => self.notice("the session keys were ratcheted forward", false),
            (Command::Session, Ok(Reply::Session(s))) => self.session(s),
            (Command::Create { room, .. }, Ok(_)) => {
                self.open(&Target::Room(room.clone()));
                self.notice(format!("created {room}"), false);
            }
            (Command::Invite { room, users }, Ok(_)) => {
                self.notice(format!("invited {} to {room}", users.join(", ")), false);
                self.ask_members_again();
            }
            (Command::Kick { room, users }, Ok(_)) => {
                self.notice(format!("removed {} from {room}", users.join(", ")), false);
                self.ask_members_again();
            }
            _ => return None,
        }
        Some(Vec::new())
    }

    /// `/fingerprint`: the connection's session, as `chat` shows it.
    fn session(&mut self, s: &SessionSummary) {
        let server = match (&s.server_fingerprint, &s.server_short) {
            (Some(fp), Some(short)) => format!("server key {fp} ({short})"),
            (Some(fp), None) => format!("server key {fp}"),
            _ => "no server key (password-only server)".to_owned(),
        };
        self.notice(server, false);
        self.notice(format!("suite {}; session {}", s.suite, s.handshake_hash), false);
    }

    fn ask_members_again(&mut self) {
        for c in &mut self.conversations {
            c.members_asked = false;
        }
    }

    /// A page of history: put before what is shown, each message once.
    fn history(&mut self, target: &Target, entries: &[HistoryEntry]) {
        let me = self.me.clone().unwrap_or_default();
        let Some(c) = self.conversations.iter_mut().find(|c| same(&c.target, target)) else { return };
        let held: std::collections::HashSet<u64> = c
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message { id, .. } => Some(*id),
                Entry::Notice { .. } => None,
            })
            .collect();
        let older: Vec<Entry> = entries
            .iter()
            .filter(|h| !held.contains(&h.id))
            .map(|h| Entry::Message {
                id: h.id,
                from: if h.outgoing && h.from.is_empty() { me.clone() } else { h.from.clone() },
                text: h.text.clone(),
                at_ms: h.timestamp_ms,
                verified: (!h.outgoing).then_some(h.verified),
                // Marked as it was live: unsigned under a remembered name.
                unsigned: !h.outgoing && !h.signed,
                e2e: h.e2e,
                delivered: false,
            })
            .collect();
        let room = super::app::MAX_ENTRIES.saturating_sub(c.entries.len());
        let full = older.len() > room;
        let skip = older.len().saturating_sub(room);
        c.entries.splice(0..0, older.into_iter().skip(skip));
        c.history = if entries.len() < PAGE as usize || full { History::Done } else { History::More };
        if c.e2e.is_none()
            && let Some(last) = entries.last()
        {
            c.e2e = Some(last.e2e);
        }
    }

    /// The conversations the engine knows: listed, and the most recent one
    /// shown if no `--room` was given.
    fn listed(&mut self, list: &[ConversationSummary]) {
        for summary in list {
            let i = self.index_of(&summary.target);
            if let Some(c) = self.conversations.get_mut(i) {
                c.e2e = Some(summary.e2e);
            }
        }
        if !self.explicit_room
            && !self.opened_recent
            && let Some(recent) =
                list.iter().filter(|s| s.last_timestamp_ms.is_some()).max_by_key(|s| s.last_timestamp_ms)
        {
            self.open(&recent.target);
        }
        self.opened_recent = true;
    }

    fn members_of(&mut self, room: &str, members: &[EngineMember]) {
        let target = Target::Room(room.to_owned());
        let Some(c) = self.conversations.iter_mut().find(|c| same(&c.target, &target)) else { return };
        let mut list: Vec<Member> = members
            .iter()
            .take(super::app::MAX_MEMBERS)
            .map(|m| Member { name: m.name.clone(), state: state(m.key) })
            .collect();
        list.sort_by_key(|m| fold_name(&m.name));
        c.members = list;
    }

    /// `/whois`, `/verify`, `/trust`, `/create`, `/invite`, `/kick` typed:
    /// the command to run, or a usage line.
    pub(super) fn people_command(&mut self, cmd: &str, rest: &str) -> Vec<Action> {
        let run = |c| vec![Action::Run(c)];
        let here = self.conversation().map(|c| c.target.clone());
        let users: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
        match cmd {
            "/invite" | "/kick" => match here {
                Some(Target::Room(room)) if !users.is_empty() => {
                    return run(if cmd == "/invite" {
                        Command::Invite { room, users }
                    } else {
                        Command::Kick { room, users }
                    });
                }
                Some(Target::Room(_)) => self.notice(format!("usage: {cmd} USER..."), true),
                _ => self.notice(format!("{cmd} works in a room: show one first"), true),
            },
            "/rekey" => return run(Command::Rekey),
            "/fingerprint" => return run(Command::Session),
            _ => {
                self.notice(
                    format!("{cmd} is not in the tui yet: use `cipherline chat` (or `cipherline files`) for it"),
                    true,
                );
            }
        }
        Vec::new()
    }
}
