//! The TUI's state and how it changes: pure functions from the engine's
//! [`Event`]s, its replies, and keys and mouse events to a new state and
//! the [`Action`]s to carry out. Nothing here draws or does I/O, so the
//! behaviour is tested without a terminal ([`super::view`] draws it).
//!
//! Peer strings are kept raw here and escaped where they are drawn.

use std::cell::Cell;

use cipherline_client::engine::{Command, ConnectionState, Event, Message, ReceiverAnswer, Reply, Verified};
use cipherline_proto::app::{Target, fold_name};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use super::input::Input;
use super::people::History;
use crate::slash::{self, Slash};

/// Entries kept per conversation at most (the oldest go first); the local
/// history holds the rest.
pub const MAX_ENTRIES: usize = 2000;
/// Conversations listed at most: a flood of direct messages from new
/// names drops the quietest ones, not memory.
pub const MAX_CONVERSATIONS: usize = 200;
/// Names in one member list at most.
pub const MAX_MEMBERS: usize = 1000;
/// Transfers kept for their progress bars at most.
pub const MAX_TRANSFERS: usize = 16;
/// Rows one mouse wheel step scrolls.
const WHEEL: usize = 3;

/// What the event loop is to do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a command on the engine; its answer comes back to
    /// [`App::on_reply`].
    Run(Command),
    /// Leave the TUI.
    Quit,
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A message, received or sent.
    Message {
        /// The server's id (0 if unknown).
        id: u64,
        /// The sender (raw).
        from: String,
        /// The text (raw).
        text: String,
        /// Unix milliseconds.
        at_ms: u64,
        /// The verdict on the sender's key (`None`: sent by this user).
        verified: Option<Verified>,
        /// Received unsigned under a name whose key is remembered (its
        /// verdict `Changed`, though no other key was seen): marked so.
        unsigned: bool,
        /// Whether it travelled end to end.
        e2e: bool,
        /// Someone's client confirmed it (messages sent by this user).
        delivered: bool,
    },
    /// Something that happened (joins, errors, key changes), already
    /// worded; peer strings in it raw.
    Notice {
        /// The text.
        text: String,
        /// A warning (drawn to stand out) rather than information.
        alarm: bool,
    },
}

/// A member and what is known of their key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name (raw).
    pub name: String,
    /// The state of their key: `None` while nothing is known yet.
    pub state: Option<Verified>,
}

/// A room or a direct conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// A room, or the other user.
    pub target: Target,
    /// End to end (`Some(true)`), readable by the server, or not known yet.
    pub e2e: Option<bool>,
    /// Messages not seen yet.
    pub unread: usize,
    /// The lines, oldest first.
    pub entries: Vec<Entry>,
    /// Who is in it, as far as this client knows.
    pub members: Vec<Member>,
    /// Rows scrolled up from the newest (0: following new messages).
    pub scroll: usize,
    /// When something last happened in it (a counter, for ordering).
    pub active: u64,
    /// How much of the local history is loaded.
    pub history: History,
    /// The member list was asked for since the conversation was shown.
    pub members_asked: bool,
}

impl Conversation {
    fn new(target: Target) -> Self {
        Conversation {
            target,
            e2e: None,
            unread: 0,
            entries: Vec::new(),
            members: Vec::new(),
            scroll: 0,
            active: 0,
            history: History::Unloaded,
            members_asked: false,
        }
    }

    /// The server id of the oldest message held (to page back from).
    pub fn oldest_id(&self) -> Option<u64> {
        self.entries.iter().find_map(|e| match e {
            Entry::Message { id, .. } if *id != 0 => Some(*id),
            _ => None,
        })
    }

    pub(super) fn push(&mut self, entry: Entry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push(entry);
    }

    /// The member named `name` (folded), added if new.
    fn member(&mut self, name: &str) -> Option<&mut Member> {
        let folded = fold_name(name);
        match self.members.iter().position(|m| fold_name(&m.name) == folded) {
            Some(i) => self.members.get_mut(i),
            None if self.members.len() < MAX_MEMBERS => {
                self.members.push(Member { name: name.to_owned(), state: None });
                self.members.sort_by_key(|m| fold_name(&m.name));
                self.members.iter_mut().find(|m| fold_name(&m.name) == folded)
            }
            None => None,
        }
    }
}

/// Whether `a` and `b` name the same conversation (names compare folded).
pub(super) fn same(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Room(a), Target::Room(b)) | (Target::User(a), Target::User(b)) => fold_name(a) == fold_name(b),
        _ => false,
    }
}

/// A file transfer and how far it got (shown with a progress bar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The transfer's id (`s1`, `d3`: what `/cancel` takes).
    pub id: String,
    /// The file's name (raw: a peer's).
    pub name: String,
    /// Bytes done.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
    /// Its state, in words (`sending`, `receiving`, `done`, ...).
    pub state: String,
}

/// Everything the TUI shows.
#[derive(Debug)]
pub struct App {
    /// The server's address, as given.
    pub server: String,
    /// The room to open at start (`--room`).
    pub start_room: String,
    /// The connection's state.
    pub connection: ConnectionState,
    /// This user's name once connected.
    pub me: Option<String>,
    /// The conversations, in the order listed.
    pub conversations: Vec<Conversation>,
    /// The index of the one shown.
    pub current: usize,
    /// The input line.
    pub input: Input,
    /// The help screen is shown.
    pub help: bool,
    /// The member pane is shown (when the terminal is wide enough).
    pub members: bool,
    /// Transfers under way or just ended.
    pub transfers: Vec<Transfer>,
    /// Files offered to this user, newest last (for `/accept`).
    pub offers: Vec<super::files::Offer>,
    /// Where accepted files are saved.
    pub download_dir: std::path::PathBuf,
    /// Direct messages go end to end (the engine's status says).
    pub direct_e2e: Option<bool>,
    /// The time zone times are shown in.
    pub tz: jiff::tz::TimeZone,
    /// Rows of the message pane at the last draw (for PgUp/PgDn).
    pub page: Cell<usize>,
    /// How far the current conversation could scroll at the last draw.
    pub max_scroll: Cell<usize>,
    /// The clock for lines sent by this user (Unix milliseconds; tests
    /// fix it).
    pub now: fn() -> u64,
    /// When the engine tries to reconnect next (for the countdown shown).
    pub retry_at: Option<std::time::Instant>,
    /// `--room` was given: open it, not the most recent conversation.
    pub explicit_room: bool,
    /// The engine's conversation list was taken in (the most recent one
    /// opened then, once).
    pub opened_recent: bool,
    /// The start room's Join is under way (its answer opens the room
    /// only if no more recent conversation was opened).
    start_join: bool,
    /// Ticks of activity, for ordering.
    clock: u64,
    /// Connected once already (the next Connected is a reconnection).
    was_connected: bool,
}

impl App {
    /// A new app for `server`, opening on `start_room`.
    #[must_use]
    pub fn new(server: &str, start_room: &str, explicit_room: bool, tz: jiff::tz::TimeZone) -> Self {
        let mut app = App {
            server: server.to_owned(),
            start_room: start_room.to_owned(),
            connection: ConnectionState::Connecting,
            me: None,
            conversations: Vec::new(),
            current: 0,
            input: Input::default(),
            help: false,
            members: true,
            transfers: Vec::new(),
            offers: Vec::new(),
            download_dir: std::path::PathBuf::from("."),
            direct_e2e: None,
            tz,
            page: Cell::new(10),
            max_scroll: Cell::new(0),
            now: now_ms,
            retry_at: None,
            explicit_room,
            opened_recent: false,
            start_join: false,
            clock: 0,
            was_connected: false,
        };
        app.open(&Target::Room(start_room.to_owned()));
        app
    }

    /// The conversation shown, if any.
    #[must_use]
    pub fn conversation(&self) -> Option<&Conversation> {
        self.conversations.get(self.current)
    }

    fn conversation_mut(&mut self) -> Option<&mut Conversation> {
        self.conversations.get_mut(self.current)
    }

    /// Connected at least once.
    #[must_use]
    pub fn was_connected(&self) -> bool {
        self.was_connected
    }

    /// The index of the conversation with `target`, added if new.
    pub(super) fn index_of(&mut self, target: &Target) -> usize {
        self.index(target)
    }

    fn index(&mut self, target: &Target) -> usize {
        if let Some(i) = self.conversations.iter().position(|c| same(&c.target, target)) {
            return i;
        }
        if self.conversations.len() >= MAX_CONVERSATIONS {
            // The quietest one that is not shown goes.
            let quietest = self
                .conversations
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != self.current)
                .min_by_key(|(_, c)| c.active)
                .map(|(i, _)| i);
            if let Some(i) = quietest {
                self.conversations.remove(i);
                if self.current > i {
                    self.current -= 1;
                }
            }
        }
        let shown = self.conversations.get(self.current).map(|c| c.target.clone());
        let mut conversation = Conversation::new(target.clone());
        if let (Target::User(peer), Some(me)) = (target, &self.me) {
            conversation.member(me);
            conversation.member(peer);
        }
        self.conversations.push(conversation);
        // Rooms first, then people, each by name.
        self.conversations.sort_by_key(|c| match &c.target {
            Target::Room(r) => (0, fold_name(r)),
            Target::User(u) => (1, fold_name(u)),
        });
        if let Some(shown) = shown {
            self.current = self.conversations.iter().position(|c| same(&c.target, &shown)).unwrap_or(0);
        }
        self.conversations.iter().position(|c| same(&c.target, target)).unwrap_or(0)
    }

    /// Shows the conversation with `target` (added if new).
    pub fn open(&mut self, target: &Target) {
        self.current = self.index(target);
        if let Some(c) = self.conversation_mut() {
            c.unread = 0;
            // Shown again: the member list may have changed meanwhile.
            c.members_asked = false;
        }
    }

    /// Adds a line to the conversation with `target`; unread unless shown.
    fn add(&mut self, target: &Target, entry: Entry) {
        let i = self.index(target);
        self.clock += 1;
        let (clock, current) = (self.clock, self.current);
        if let Some(c) = self.conversations.get_mut(i) {
            if i != current && matches!(entry, Entry::Message { .. }) {
                c.unread = c.unread.saturating_add(1);
            }
            c.active = clock;
            c.push(entry);
        }
    }

    /// A notice in the conversation shown.
    pub fn notice(&mut self, text: impl Into<String>, alarm: bool) {
        let entry = Entry::Notice { text: text.into(), alarm };
        if let Some(c) = self.conversation_mut() {
            c.push(entry);
        }
    }

    /// The engine's event.
    pub fn on_event(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Message(m) => self.on_message(m),
            Event::Delivered { id, .. } => {
                for c in &mut self.conversations {
                    for e in &mut c.entries {
                        if let Entry::Message { id: mine, verified: None, delivered, .. } = e
                            && *mine == id
                        {
                            *delivered = true;
                        }
                    }
                }
            }
            Event::Membership { room, name, joined } => {
                let target = Target::Room(room.clone());
                let i = self.index(&target);
                if let Some(c) = self.conversations.get_mut(i) {
                    if joined {
                        c.member(&name);
                    } else {
                        let folded = fold_name(&name);
                        c.members.retain(|m| fold_name(&m.name) != folded);
                    }
                    c.push(Entry::Notice {
                        text: format!("{name} {} {room}", if joined { "joined" } else { "left" }),
                        alarm: false,
                    });
                }
            }
            Event::KeyChanged { name, .. } => {
                let folded = fold_name(&name);
                for c in &mut self.conversations {
                    for m in &mut c.members {
                        if fold_name(&m.name) == folded {
                            m.state = Some(Verified::Changed);
                        }
                    }
                }
                self.notice(
                    format!(
                        "THE IDENTITY KEY OF {name} HAS CHANGED. Someone may be impersonating them, or they have a \
                         new key: compare safety codes with them before trusting it."
                    ),
                    true,
                );
            }
            Event::Expired { id, to } => {
                let text = format!("your message to {to} expired on the server unread (id {id})");
                self.add(&Target::User(to), Entry::Notice { text, alarm: false });
            }
            Event::Group { text, .. } => self.notice(text, false),
            Event::FileOffered { id, from, to, name, size, verified, e2e } => {
                self.on_file_offered(super::files::Offer { id, from, name }, &to, size, verified, e2e);
            }
            // An upload's facts are `send --file --json`'s; the TUI shows
            // an upload from its transfer events.
            Event::Upload(_) => {}
            // An accept (a decline or a stop is told with the transfer's
            // end when it was the last receiver's).
            Event::Receiver { name, by, answer: answer @ ReceiverAnswer::Accepted, .. } => {
                self.notice(crate::output::receiver_answer(&name, &by, &answer), false);
            }
            Event::Receiver { .. } => {}
            Event::Transfer { transfer, name, done, total, state, path } => {
                self.on_transfer_event(transfer, name, (done, total), &state, path);
            }
            Event::Connection(state) => return self.on_connection(state),
        }
        Vec::new()
    }

    fn on_message(&mut self, m: Message) {
        let mine = self.me.as_deref().is_some_and(|me| fold_name(me) == fold_name(&m.from));
        let target = match &m.to {
            Target::Room(r) => Target::Room(r.clone()),
            // A direct message is in the conversation with the other one.
            Target::User(to) if mine => Target::User(to.clone()),
            Target::User(_) => Target::User(m.from.clone()),
        };
        let i = self.index(&target);
        if let Some(c) = self.conversations.get_mut(i) {
            // An unsigned message under a remembered name has the verdict
            // `Changed`, but no other key was seen and it may not be theirs:
            // the member's key state stays what it was, and the name is not
            // listed on its word (the message itself is marked unsigned).
            let unsigned_under_known = !m.signed && m.verified == Verified::Changed;
            if !unsigned_under_known && let Some(member) = c.member(&m.from) {
                member.state = Some(m.verified);
            }
            if matches!(target, Target::User(_)) || m.e2e {
                c.e2e = Some(m.e2e);
            }
        }
        let entry = Entry::Message {
            id: m.id,
            from: m.from,
            text: m.text,
            at_ms: m.timestamp_ms,
            verified: (!mine).then_some(m.verified),
            unsigned: !mine && !m.signed,
            e2e: m.e2e,
            delivered: false,
        };
        self.add(&target, entry);
    }

    fn on_connection(&mut self, state: ConnectionState) -> Vec<Action> {
        let mut actions = Vec::new();
        match &state {
            ConnectionState::Connected { name } => {
                self.me = Some(name.clone());
                if self.was_connected {
                    self.notice(format!("reconnected to {} as {name}", self.server), false);
                } else {
                    // The first room is joined by command (an end-to-end
                    // room is joined through its group), after which the
                    // engine joins it again on every reconnection.
                    actions.push(Action::Run(Command::Join(self.start_room.clone())));
                    actions.push(Action::Run(Command::Conversations));
                    self.start_join = true;
                }
                self.was_connected = true;
                // Who is in the rooms may have changed while away.
                for c in &mut self.conversations {
                    c.members_asked = false;
                }
                actions.push(Action::Run(Command::Status));
            }
            ConnectionState::Reconnecting { reason, retry_in } => self.notice(
                format!("connection lost ({reason}); reconnecting in {} s; /quit to stop", retry_in.as_secs()),
                true,
            ),
            ConnectionState::Stopped { reason } => self.notice(format!("disconnected for good: {reason}"), true),
            ConnectionState::Connecting => {}
        }
        self.retry_at = match &state {
            ConnectionState::Reconnecting { retry_in, .. } => Some(std::time::Instant::now() + *retry_in),
            _ => None,
        };
        self.connection = state;
        actions
    }

    /// Seconds until the next reconnection attempt (rounded up), while
    /// reconnecting.
    #[must_use]
    pub fn retry_left(&self) -> Option<u64> {
        let ConnectionState::Reconnecting { retry_in, .. } = &self.connection else { return None };
        let left = self.retry_at.map_or(*retry_in, |at| at.saturating_duration_since(std::time::Instant::now()));
        Some(left.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX))
    }

    /// A transfer's progress (the engine's transfer events, once it has
    /// them): shown as a bar, in the order they started; the oldest
    /// goes when there are too many.
    pub fn on_transfer(&mut self, transfer: Transfer) {
        match self.transfers.iter_mut().find(|t| t.id == transfer.id) {
            Some(t) => *t = transfer,
            None => {
                if self.transfers.len() >= MAX_TRANSFERS {
                    self.transfers.remove(0);
                }
                self.transfers.push(transfer);
            }
        }
    }

    /// The engine's answer to `command`.
    pub fn on_reply(&mut self, command: &Command, result: Result<Reply, String>) -> Vec<Action> {
        if let Some(actions) = self.on_people_reply(command, &result) {
            return actions;
        }
        if let Some(actions) = self.on_file_reply(command, &result) {
            return actions;
        }
        match (command, result) {
            (Command::SendRoom { room: name, text }, Ok(Reply::Sent { id, e2e }))
            | (Command::SendDirect { user: name, text }, Ok(Reply::Sent { id, e2e })) => {
                let target = match command {
                    Command::SendRoom { .. } => Target::Room(name.clone()),
                    _ => Target::User(name.clone()),
                };
                let entry = Entry::Message {
                    id,
                    from: self.me.clone().unwrap_or_default(),
                    text: text.clone(),
                    at_ms: (self.now)(),
                    verified: None,
                    unsigned: false,
                    e2e,
                    delivered: false,
                };
                self.add(&target, entry);
                let i = self.index(&target);
                if let Some(c) = self.conversations.get_mut(i)
                    && (matches!(target, Target::User(_)) || e2e)
                {
                    c.e2e = Some(e2e);
                }
            }
            (Command::Join(room), Ok(_)) => {
                let target = Target::Room(room.clone());
                let start = std::mem::take(&mut self.start_join) && fold_name(room) == fold_name(&self.start_room);
                // The start room gives way to a more recent conversation.
                if start && !self.explicit_room && self.opened_recent {
                    self.index(&target);
                } else {
                    self.open(&target);
                }
                if let Some(me) = self.me.clone()
                    && let Some(c) = self.conversation_mut()
                {
                    c.member(&me);
                }
                let i = self.index(&target);
                if let Some(c) = self.conversations.get_mut(i) {
                    c.push(Entry::Notice { text: format!("joined {room}"), alarm: false });
                }
                return vec![Action::Run(Command::Status)];
            }
            (Command::Leave(room), Ok(_)) => {
                let target = Target::Room(room.clone());
                if let Some(i) = self.conversations.iter().position(|c| same(&c.target, &target)) {
                    self.conversations.remove(i);
                    if self.current > i {
                        self.current -= 1;
                    }
                    self.current = self.current.min(self.conversations.len().saturating_sub(1));
                }
                if self.conversations.is_empty() {
                    self.open(&Target::Room(self.start_room.clone()));
                }
                self.notice(format!("left {room}"), false);
            }
            (Command::Status, Ok(Reply::Status(status))) => {
                self.direct_e2e = Some(status.e2e);
                let open: Vec<String> = status.rooms.iter().map(|r| fold_name(r)).collect();
                for c in &mut self.conversations {
                    match &c.target {
                        // A room joined the open way is readable by the server.
                        Target::Room(r) if open.contains(&fold_name(r)) => c.e2e = Some(false),
                        Target::User(_) if c.e2e.is_none() => c.e2e = Some(status.e2e),
                        _ => {}
                    }
                }
            }
            (_, Ok(_)) => {}
            (command, Err(e)) => {
                let what = match command {
                    Command::SendRoom { .. } | Command::SendDirect { .. } => "not sent",
                    Command::Join(_) => "could not join",
                    Command::Leave(_) => "could not leave",
                    _ => "failed",
                };
                self.notice(format!("{what}: {e}"), true);
            }
        }
        Vec::new()
    }

    /// A terminal event (key, mouse, paste, resize).
    pub fn on_terminal(&mut self, event: &TermEvent) -> Vec<Action> {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => self.on_key(*key),
            TermEvent::Paste(text) => {
                self.input.paste(text);
                Vec::new()
            }
            TermEvent::Mouse(mouse) => {
                match mouse.kind {
                    MouseEventKind::ScrollUp => self.scroll(WHEEL as isize),
                    MouseEventKind::ScrollDown => self.scroll(-(WHEEL as isize)),
                    _ => {}
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Scrolls the conversation shown up (positive) or down by `rows`.
    pub fn scroll(&mut self, rows: isize) {
        let max = self.max_scroll.get();
        if let Some(c) = self.conversation_mut() {
            c.scroll = c.scroll.min(max).saturating_add_signed(rows).min(max);
        }
    }

    /// Shows the next (`1`) or previous (`-1`) conversation.
    pub fn switch(&mut self, by: isize) {
        let n = self.conversations.len();
        if n == 0 {
            return;
        }
        let next = (self.current + n).saturating_add_signed(by) % n;
        if let Some(target) = self.conversations.get(next).map(|c| c.target.clone()) {
            self.open(&target);
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if self.help && matches!(key.code, KeyCode::Esc | KeyCode::F(1) | KeyCode::Char('q')) {
            self.help = false;
            return Vec::new();
        }
        let page = isize::try_from(self.page.get().saturating_sub(1).max(1)).unwrap_or(1);
        match key.code {
            KeyCode::Char('c') if ctrl => return vec![Action::Quit],
            KeyCode::Char('d') if ctrl && self.input.text().is_empty() => return vec![Action::Quit],
            KeyCode::Char('a') if ctrl => self.input.home_end(true),
            KeyCode::Char('e') if ctrl => self.input.home_end(false),
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char('w') if ctrl => self.input.delete_word(),
            KeyCode::Char('n') if ctrl => self.switch(1),
            KeyCode::Char('p') if ctrl => self.switch(-1),
            KeyCode::Up | KeyCode::Down if ctrl || alt => self.switch(if key.code == KeyCode::Up { -1 } else { 1 }),
            KeyCode::Char(c) if !ctrl => self.input.insert(c),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.move_by(-1),
            KeyCode::Right => self.input.move_by(1),
            KeyCode::Home => self.input.home_end(true),
            KeyCode::End => self.input.home_end(false),
            KeyCode::Up => self.input.recall(true),
            KeyCode::Down => self.input.recall(false),
            KeyCode::PageUp => self.scroll(page),
            KeyCode::PageDown => self.scroll(-page),
            KeyCode::Tab => {
                let words = self.words();
                self.input.complete(&words);
            }
            KeyCode::F(1) => self.help = !self.help,
            KeyCode::F(2) => self.members = !self.members,
            KeyCode::Esc => self.help = false,
            KeyCode::Enter => {
                let line = self.input.take();
                return self.on_line(&line);
            }
            _ => {}
        }
        Vec::new()
    }

    /// The names and rooms Tab completes.
    fn words(&self) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        for c in &self.conversations {
            words.push(match &c.target {
                Target::Room(r) | Target::User(r) => r.clone(),
            });
            words.extend(c.members.iter().map(|m| m.name.clone()));
        }
        words
    }

    /// One typed line (Enter).
    pub fn on_line(&mut self, line: &str) -> Vec<Action> {
        let here = self.conversation().map(|c| c.target.clone());
        let run = |c| vec![Action::Run(c)];
        match slash::parse(line) {
            Slash::Empty => {}
            Slash::Quit => return vec![Action::Quit],
            Slash::Help => self.help = true,
            Slash::Say(text) => match here {
                Some(Target::Room(room)) => return run(Command::SendRoom { room, text: text.to_owned() }),
                Some(Target::User(user)) => return run(Command::SendDirect { user, text: text.to_owned() }),
                None => self.notice("you are in no conversation; /join one", true),
            },
            Slash::Msg { user, text } => {
                self.open(&Target::User(user.to_owned()));
                return run(Command::SendDirect { user: user.to_owned(), text: text.to_owned() });
            }
            Slash::Join(room) => return run(Command::Join(room.to_owned())),
            Slash::Leave => match here {
                Some(Target::Room(room)) => return run(Command::Leave(room)),
                // A direct conversation is only closed.
                Some(Target::User(_)) if self.current < self.conversations.len() => {
                    self.conversations.remove(self.current);
                    self.current = 0;
                    if self.conversations.is_empty() {
                        self.open(&Target::Room(self.start_room.clone()));
                    }
                }
                _ => self.notice("you are in no room", true),
            },
            Slash::Members => {
                // The pane shows them (F2 hides it again).
                self.members = true;
                match here {
                    Some(Target::Room(room)) => return run(Command::Members(room)),
                    _ => self.notice("/who lists a room's members: show a room first", true),
                }
            }
            Slash::Whois(user) => return run(Command::Whois(user.to_owned())),
            Slash::Verify { user, confirm } => return run(Command::Verify { user: user.to_owned(), confirm }),
            Slash::Trust(user) => return run(Command::Trust(user.to_owned())),
            Slash::Create { room, kind } => return run(Command::Create { room: room.to_owned(), kind }),
            Slash::Other { cmd, rest } => match self.file_command(cmd, rest) {
                Some(actions) => return actions,
                None => return self.people_command(cmd, rest),
            },
            Slash::Usage(usage) => self.notice(format!("usage: {usage}"), true),
            Slash::Unknown(cmd) => self.notice(format!("unknown command {cmd}; /help lists them"), true),
        }
        Vec::new()
    }
}

/// Now, Unix milliseconds (for lines sent by this user).
fn now_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}
