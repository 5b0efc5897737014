//! `cipherline chat`: the interactive client.
//!
//! The console (line editor on a terminal, stdin/stdout otherwise) is
//! [`crate::console`]'s; this module runs the session and the commands.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use cipherline_client::conversations::Conversations;
use cipherline_client::display::escape;
use cipherline_client::peers::{MessageStatus, Peers};
use cipherline_client::{ClientError, ClientWriter, SessionInfo};
use cipherline_keys::Fingerprint;
use cipherline_proto::app::{
    ClientMessage, ErrorCode, GroupEvent, NoticeKind, RoomKind, ServerMessage, Target, fold_name,
};
use clap::Args;

use crate::client_args::{ClientArgs, Connected};
use crate::console::{Input, Screen, Signals, TerminalGuard, spawn_input};
use crate::error::CliError;
use crate::files::{Downloads, hex};
use crate::link::{
    Attempt, FIRST_RETRY, LAST_RETRY, Link, Rejoined, finish, jittered, next_event, passing, passing_code, reconnect,
    spawn_reader,
};
use crate::output::{key_notice, message_line};
use crate::pacing::{Outbox, Queued, RETRIES, Refused, Said};
use crate::recorder::Recorder;

mod e2e;
mod files;
mod keys;
mod offers;

/// Chat interactively: type to talk in the current room; /help lists the
/// commands.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub client: ClientArgs,

    /// The room to join first.
    #[arg(long, value_name = "ROOM", default_value = "lobby")]
    pub room: String,

    /// A word that, typed alone, quits like /quit (may be repeated), e.g.
    /// `--quit-word thanks --quit-word EXIT!` as in the seed programs.
    #[arg(long, value_name = "WORD")]
    pub quit_word: Vec<String>,

    /// Where accepted files are saved.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub download_dir: PathBuf,
}

const HELP: &str = "\
commands:
  TEXT                       say TEXT in the current room
  /join ROOM                 make ROOM the current room: joins an open room or
                             a public end-to-end one; a new name creates an
                             end-to-end, invite-only room
  /create ROOM [--public | --open]
                             create an end-to-end room (--public: anyone may
                             join) or an open one the server can read
  /invite USER...            add USER to the current end-to-end room
  /kick USER...              remove USER from it (admins)
  /leave                     leave the current room
  /msg USER TEXT             direct message to USER (end-to-end encrypted)
  /who, /members             who is in the current room (end-to-end: the
                             group's members and the state of their keys)
  /whois USER                USER's identity key fingerprint
  /verify USER               a safety code to compare with USER out of band
  /verify USER confirm       the codes matched: mark USER's key verified
  /trust USER                accept USER's new identity key after a change
  /send-file USER|#ROOM PATH send a file (a joined room also works without #):
                             end to end where texts are (direct messages,
                             end-to-end rooms: the relay keeps it encrypted
                             for who is away, several at once); in an open
                             room the version-1 way (readable by the server)
  /accept [ID] /decline [ID] answer a file offer (the newest if no ID); an
                             accepted end-to-end file is saved once its
                             SHA-256 verified, and resumes if chat restarts
  /cancel [ID]               stop sending file ID (without ID: the file
                             offered the version-1 way, or the newest)
  /rekey                     ratchet the session keys now
  /fingerprint               the server's key fingerprint and this session's hash
  /help                      this list
  /quit                      leave";

struct Chat {
    writer: ClientWriter,
    info: SessionInfo,
    peers: Peers,
    me: Option<Fingerprint>,
    /// Keys seen for a name that differ from the remembered one (`None`:
    /// the name now sends unsigned). These maps are keyed by the folded
    /// name (`fold_name`), as names are compared (PROTOCOL.md §13.4), so
    /// `/verify BOB` finds what was seen for `bob`.
    changed: HashMap<String, Option<Fingerprint>>,
    /// The keys whose safety code was shown to the user, per folded name:
    /// only those can be confirmed with `/verify USER confirm`.
    codes_shown: HashMap<String, Fingerprint>,
    /// Folded names whose safety code is wanted once their key arrives.
    verify_pending: BTreeSet<String>,
    screen: Screen,
    /// The current room, as last spelled by the user or the server.
    room: Option<String>,
    /// The rooms joined: folded name (rooms are compared folded) to the
    /// spelling shown.
    rooms: BTreeMap<String, String>,
    /// A /join or /leave awaits the server's answer until then: the lines
    /// after it wait too, so that they go to the new room.
    room_wait: Option<tokio::time::Instant>,
    /// Lines entered and not yet handled, and texts not yet acknowledged.
    outbox: Outbox,
    /// A quit (word, /quit or end of input) is queued: read no more input.
    quit_queued: bool,
    /// Version-1 offers received (and the numbers shown with every offer).
    downloads: Downloads,
    download_dir: PathBuf,
    /// The version-1 file being sent.
    sending: Option<offers::Sending>,
    /// End-to-end files.
    files: files::Files,
    /// Ids of messages shown, so a redelivered one is shown once.
    recorder: Recorder,
    /// The end-to-end engine; `None` without an Ed25519 identity or a
    /// stored queue (everything goes as before, readable by the server).
    e2e: Option<Conversations>,
    /// The second connection, for the engine's requests.
    side: e2e::Side,
    /// The end-to-end rooms this user is in (known this session): folded
    /// name to spelling. Never joined (their group delivers to members).
    e2e_rooms: BTreeMap<String, String>,
    /// Folded names of users already told whether their direct messages
    /// are end-to-end encrypted.
    told: BTreeSet<String>,
    /// A room change that lost its epoch, to try again.
    deferred: Option<e2e::Deferred>,
    /// KeyPackages are to be uploaded (an invitation used one).
    top_up: bool,
}

/// Why a server message ends the session.
enum End {
    /// For good: chat stops and prints this line.
    Final(String),
    /// The connection is gone for a reason that may pass (already escaped).
    Lost(String),
}

/// Runs `chat` (in a LocalSet: end-to-end files travel on local tasks).
pub async fn run(args: &'static ChatArgs) -> Result<(), CliError> {
    tokio::task::LocalSet::new().run_until(run_here(args)).await
}

async fn run_here(args: &'static ChatArgs) -> Result<(), CliError> {
    let Connected { mut client, peers, me, server, e2e } = args.client.connect(true).await?;
    let recorder = Recorder::new(peers.store().cloned(), server);
    // The first room may be an end-to-end one this user is in: its group
    // delivers to it, it is not joined.
    let mut first_e2e = false;
    if let Some(e2e) = &e2e {
        if let Err(e) = e2e.publish_key_packages(&mut client).await {
            eprintln!("warning: could not publish end-to-end key packages: {e}");
        }
        first_e2e = client.room_info(&args.room).await?.kind.is_some_and(RoomKind::is_e2e)
            && e2e.room_group(&args.room).map_err(CliError::Client)?.is_some();
    }
    if !first_e2e {
        client.join(&args.room).await?;
    }
    // What arrived while this user was away comes now (after the Join,
    // so it is shown in the room joined).
    client.resume(0).await?;
    let keepalive = Duration::from_secs(u64::from(client.idle_timeout_secs().max(2)) / 2);
    // The Join (or RoomInfo), the Resume and the KeyPackages took server
    // message tokens.
    let outbox = Outbox::new(client.info().rates, if e2e.is_some() { 6 } else { 2 });
    let (reader, writer, info) = client.split();
    let link = Link { events: spawn_reader(reader), keepalive };
    // Saved before the editor first switches to raw mode; dropped (so
    // restored) on every way out of this function, and by a panic.
    let terminal = TerminalGuard::save();
    let mut signals = Signals::new(terminal.is_some());
    let (mut input, screen) = spawn_input(prompt(Some(&args.room)));
    let mut chat = Chat {
        writer,
        info,
        peers,
        me,
        changed: HashMap::new(),
        codes_shown: HashMap::new(),
        verify_pending: BTreeSet::new(),
        screen,
        room: Some(args.room.clone()),
        rooms: if first_e2e { BTreeMap::new() } else { BTreeMap::from([(fold_name(&args.room), args.room.clone())]) },
        room_wait: None,
        outbox,
        quit_queued: false,
        downloads: Downloads::new(None),
        download_dir: args.download_dir.clone(),
        sending: None,
        files: files::Files::new(&args.client, e2e.is_some()),
        recorder,
        e2e,
        side: e2e::Side::default(),
        e2e_rooms: if first_e2e {
            BTreeMap::from([(fold_name(&args.room), args.room.clone())])
        } else {
            BTreeMap::new()
        },
        told: BTreeSet::new(),
        deferred: None,
        top_up: false,
    };
    let server = match &chat.info.server_key {
        Some(key) => format!("server key {}", Fingerprint::of_server_key(key)),
        None => "no server key: the shared password authenticated the server".to_owned(),
    };
    chat.screen.show(format!(
        "connected to {} as {} ({}); {server}; in room {} ({}). /help for commands.",
        args.client.server,
        escape(&chat.info.name),
        chat.info.suite,
        escape(&args.room),
        if first_e2e { "end-to-end encrypted" } else { "not end-to-end encrypted" }
    ));
    if chat.info.queue.is_none() {
        chat.screen.show(
            "* live delivery only: this server keeps nothing for you while you are away (it stores messages only for \
             names an identity key owns)",
        );
    }
    chat.resume_files();
    let result = chat.session(link, args, &mut input, &mut signals).await;
    chat.files_left();
    drop(terminal);
    // A message printed now would otherwise follow the abandoned prompt.
    if input.editing() {
        println!();
    }
    match result {
        // Ignored if standard output is gone: the session is over anyway.
        Ok(Some(end)) => drop(writeln!(std::io::stdout(), "{end}")),
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The prompt: the current room, so the user sees where a line goes.
fn prompt(room: Option<&str>) -> String {
    match room {
        Some(room) => format!("{}> ", escape(room)),
        None => "(no room)> ".to_owned(),
    }
}

/// How long quitting waits for acknowledgements still due.
fn grace() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

/// How long the lines after a /join or /leave wait for the server's answer.
const ROOM_WAIT: Duration = Duration::from_secs(5);

impl Chat {
    /// The chat loop: lines in, messages out, until the user quits, the
    /// server ends the session for good or a signal arrives. A connection
    /// lost for a reason that may pass is made again, with backoff, while
    /// input is still read. Returns the server's final line, if it gave one.
    async fn session(
        &mut self,
        link: Link,
        args: &'static ChatArgs,
        input: &mut Input,
        signals: &mut Signals,
    ) -> Result<Option<String>, CliError> {
        let quit_words = &args.quit_word;
        let mut link = Some(link);
        let mut nonce = 0u64;
        let mut quitting: Option<tokio::time::Instant> = None;
        // The editor waits, after a /join or /leave, for the new room (or
        // this deadline) so that its next prompt names the right room.
        // (It also waits for the lines of a pasted block to be sent.)
        let mut resume_at: Option<tokio::time::Instant> = None;
        // While disconnected: when to try again, or the attempt under way.
        let mut backoff = FIRST_RETRY;
        let mut up_since = tokio::time::Instant::now();
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut attempt: Option<Attempt<'_>> = None;
        loop {
            // Standard output was closed under us: nobody reads any more.
            if self.screen.gone() {
                return Ok(None);
            }
            let connected = link.is_some();
            // Nothing typed can be sent now: quitting is at once.
            if !connected && (quitting.is_some() || self.quit_queued) {
                let unsent = self.outbox.unsent();
                if unsent > 0 {
                    self.screen.show(format!("! {unsent} line(s) typed while disconnected were not sent"));
                }
                return Ok(None);
            }
            if quitting.is_some() && self.outbox.all_answered() && self.outbox.is_empty() && self.sending.is_none() {
                break;
            }
            let now = tokio::time::Instant::now();
            // Never after a quit: the editor must not be left in raw mode.
            let quit = quitting.is_some() || self.quit_queued;
            if !quit && resume_at.is_some_and(|at| (self.room_wait.is_none() && self.outbox.is_empty()) || now >= at) {
                resume_at = None;
                input.resume(prompt(self.room.as_deref()));
            }
            let can_send = connected && self.sending.as_ref().is_some_and(offers::Sending::ready);
            // Queued lines wait for the answer to a /join or /leave, and
            // for the server's rate (never the loop: messages and pings go
            // on), and for a connection.
            let due = if connected && self.room_wait.is_none() { self.outbox.due() } else { None };
            let reading = quitting.is_none() && !self.quit_queued && self.outbox.has_room();
            let keepalive = link.as_ref().map(|l| l.keepalive);
            // A failed write, or a reason the server gave, to reconnect over.
            let mut lost: Option<String> = None;
            let mut step: Result<(), CliError> = Ok(());
            tokio::select! {
                biased;
                () = signals.recv() => return Ok(None),
                batch = input.recv(), if reading => {
                    self.lines(batch, quit_words);
                    resume_at = Some(tokio::time::Instant::now() + ROOM_WAIT);
                }
                msg = next_event(&mut link), if connected => match msg {
                    Some(Ok(msg)) => match self.incoming(msg).await {
                        Some(End::Final(end)) => return Ok(Some(end)),
                        Some(End::Lost(why)) => lost = Some(why),
                        // Caught up: acknowledge what was shown.
                        None if link.as_ref().is_some_and(|l| l.events.is_empty()) => {
                            step = self.writer.flush_received().await.map_err(Into::into);
                        }
                        None => {}
                    },
                    Some(Err(e)) => step = Err(e.into()),
                    None => lost = Some("the connection closed".to_owned()),
                },
                // End-to-end files run on connections of their own.
                note = self.files.next() => self.file_note(note),
                () = tokio::time::sleep_until(due.unwrap_or_else(grace)), if due.is_some() => {
                    match self.outbox.pop() {
                        Some(Queued::Line(line)) => match self.command(&line, 0, &args.client).await {
                            Ok(true) => {
                                quitting = Some(grace());
                                self.outbox.drop_lines();
                            }
                            Ok(false) => {}
                            Err(e) if passing(&e) => step = Err(e),
                            Err(e) => self.screen.show(format!("! {e}")),
                        },
                        Some(Queued::Resend(said)) => step = self.transmit(said, &args.client).await,
                        Some(Queued::Quit) => {
                            quitting = Some(grace());
                            self.outbox.drop_lines();
                        }
                        None => {}
                    }
                }
                // After the lines: a file being sent must not hold up what is typed.
                () = std::future::ready(()), if can_send => {
                    if let Err(e) = self.send_chunk().await {
                        if passing(&e) {
                            step = Err(e);
                        } else {
                            self.screen.show(format!("! file transfer stopped: {e}"));
                            step = self.stop_sending("the sender could not read the file").await;
                        }
                    }
                }
                () = tokio::time::sleep(keepalive.unwrap_or(LAST_RETRY)), if keepalive.is_some() => {
                    nonce += 1;
                    self.outbox.spend();
                    step = self.writer.send_message(&ClientMessage::Ping { nonce }).await.map_err(Into::into);
                }
                () = tokio::time::sleep_until(resume_at.unwrap_or_else(grace)), if resume_at.is_some() => {}
                () = std::future::ready(()), if connected && self.top_up => self.top_up(&args.client).await,
                // A room change that lost its epoch, after what arrived meanwhile.
                () = tokio::time::sleep_until(self.deferred.as_ref().map_or_else(grace, |d| d.at)),
                    if connected && self.deferred.is_some() =>
                {
                    if let Some(d) = self.deferred.take() {
                        step = self.command(&d.line, d.tries, &args.client).await.map(drop);
                    }
                }
                () = tokio::time::sleep_until(self.room_wait.unwrap_or_else(grace)), if self.room_wait.is_some() => {
                    self.room_wait = None;
                    self.screen.show("! the server did not answer about the room in 5 s; going on in the current room");
                }
                () = tokio::time::sleep_until(quitting.unwrap_or_else(grace)), if quitting.is_some() => break,
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(grace)), if retry_at.is_some() => {
                    retry_at = None;
                    let rooms = self.rooms.values().cloned().collect();
                    attempt = Some(Box::pin(reconnect(&args.client, rooms)));
                }
                result = finish(&mut attempt), if attempt.is_some() => {
                    attempt = None;
                    match result {
                        Ok(back) => {
                            link = Some(self.rejoined(back, &args.client.server));
                            up_since = tokio::time::Instant::now();
                        }
                        Err(e) if passing(&e) => {
                            backoff = (backoff * 2).min(LAST_RETRY);
                            retry_at = Some(tokio::time::Instant::now() + jittered(backoff));
                            self.screen.show(format!(
                                "! cannot reconnect yet ({e}); trying again in {} s — /quit to stop",
                                backoff.as_secs()
                            ));
                        }
                        // A changed server key, a name taken or refused, a
                        // failed authentication: never reconnected past.
                        Err(e) => return Err(e),
                    }
                }
            }
            // Nobody accepted in time. A room offer is included: its sender
            // does not know who is in the room, so cannot tell when all declined.
            if let Some(s) = &self.sending
                && step.is_ok()
                && lost.is_none()
                && s.out.receivers() == 0
                && s.out.sent() == 0
                && tokio::time::Instant::now() >= s.answers_until
            {
                self.screen.show(format!("! nobody accepted {} in time", s.name));
                step = self.stop_sending("nobody accepted").await;
            }
            match step {
                Ok(()) => {}
                Err(e) if link.is_some() && passing(&e) => lost = Some(e.to_string()),
                Err(e) => return Err(e),
            }
            if let Some(why) = lost {
                link = None;
                self.side.close().await;
                if quitting.is_some() {
                    self.lose(&why, None);
                    return Ok(None);
                }
                // A connection that held for a while starts the backoff
                // over; one lost soon after it was made (a server that
                // accepts and drops) keeps it growing.
                if up_since.elapsed() >= LAST_RETRY {
                    backoff = FIRST_RETRY;
                }
                self.lose(&why, Some(backoff));
                retry_at = Some(tokio::time::Instant::now() + jittered(backoff));
            }
        }
        let _ = self.writer.close().await;
        self.side.close().await;
        Ok(None)
    }

    /// The connection is gone (`why`, already escaped): stops what cannot
    /// go on without it and says so, and when chat reconnects (`retry`).
    fn lose(&mut self, why: &str, retry: Option<Duration>) {
        self.room_wait = None;
        if let Some(s) = self.sending.take() {
            self.screen.show(format!(
                "! sending {} stopped: the connection was lost (a transfer cannot resume; offer it again)",
                s.name
            ));
        }
        let receiving = self.downloads.receiving();
        if receiving > 0 {
            self.screen.show(format!(
                "! receiving {receiving} file(s) stopped: the connection was lost (the partial files were deleted; \
                 ask for them again)"
            ));
        }
        self.downloads.drop_transfers();
        // The server may have stored them or not: sending them again could
        // show them twice, so the user decides.
        for said in self.outbox.take_unanswered() {
            self.screen.show(format!(
                "! not confirmed before the connection was lost (it may not have arrived): {}",
                escape(&said.text)
            ));
        }
        match retry {
            Some(wait) => self
                .screen
                .show(format!("! connection lost ({why}); reconnecting in {} s — /quit to stop", wait.as_secs())),
            None => self.screen.show(format!("! connection lost ({why})")),
        }
    }

    /// Takes a new connection into use: its writer, limits and reader.
    fn rejoined(&mut self, back: Rejoined, server: &str) -> Link {
        let Rejoined { client, refused, key_packages } = back;
        if let Some(why) = key_packages {
            self.screen.show(format!("! could not publish end-to-end key packages: {}", escape(&why)));
        }
        let keepalive = Duration::from_secs(u64::from(client.idle_timeout_secs().max(2)) / 2);
        // Every Join and the Resume took a server message token (and the
        // KeyPackages uploads, up to three).
        let uploads = if self.e2e.is_some() { 3 } else { 0 };
        let joins = u32::try_from(self.rooms.len()).unwrap_or(u32::MAX).saturating_add(1 + uploads);
        self.outbox.restart(client.info().rates, joins);
        for (room, why) in refused {
            self.rooms.remove(&fold_name(&room));
            self.screen.show(format!("! could not join {} again: {}", escape(&room), escape(&why)));
        }
        if self.room.as_deref().is_some_and(|r| !self.rooms.contains_key(&fold_name(r)) && !self.is_e2e_room(r)) {
            self.room = self.rooms.values().chain(self.e2e_rooms.values()).next().cloned();
        }
        let (reader, writer, info) = client.split();
        self.writer = writer;
        self.info = info;
        let rooms: Vec<String> = self.rooms.values().map(|r| escape(r).into_owned()).collect();
        let where_ = if rooms.is_empty() { "in no room".to_owned() } else { format!("back in {}", rooms.join(", ")) };
        self.screen.show(format!("* reconnected to {server} as {}; {where_}", escape(&self.info.name)));
        Link { events: spawn_reader(reader), keepalive }
    }

    /// Queues the lines of one Enter (several if pasted), in order, or the
    /// end of input; the lines after a quit word are dropped.
    fn lines(&mut self, batch: Option<Vec<String>>, quit_words: &[String]) {
        let Some(batch) = batch else {
            self.outbox.push(Queued::Quit);
            self.quit_queued = true;
            return;
        };
        for line in batch {
            // As a command, /quit would wait its turn: while disconnected
            // that could be forever.
            if quit_words.iter().any(|w| w == line.trim()) || matches!(line.trim(), "/quit" | "/exit") {
                self.outbox.push(Queued::Quit);
                self.quit_queued = true;
                return;
            }
            self.outbox.push(Queued::Line(line));
        }
    }

    /// Handles one typed line (`tries`: how often it was tried before, for
    /// a room change that lost its epoch); true to quit.
    async fn command(&mut self, line: &str, tries: u32, args: &'static ClientArgs) -> Result<bool, CliError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(false);
        }
        let (cmd, rest) = line.split_once(' ').map_or((line, ""), |(c, r)| (c, r.trim()));
        match cmd {
            "/quit" | "/exit" => return Ok(true),
            "/help" => self.screen.show(HELP),
            "/join" if !rest.is_empty() => {
                if self.e2e_join(rest, args).await {
                    return Ok(false);
                }
                self.writer.send_message(&ClientMessage::Join { room: rest.to_owned() }).await?;
                self.room_wait = Some(tokio::time::Instant::now() + ROOM_WAIT);
            }
            "/join" => self.screen.show("! usage: /join ROOM (joins ROOM and makes it the current room)"),
            "/leave" => match self.room.clone() {
                Some(room) if self.is_e2e_room(&room) => self.leave_e2e(&room, args).await,
                Some(room) => {
                    self.writer.send_message(&ClientMessage::Leave { room }).await?;
                    self.room_wait = Some(tokio::time::Instant::now() + ROOM_WAIT);
                }
                None => self.screen.show("! you are in no room"),
            },
            "/create" => self.create(rest, args).await?,
            "/invite" | "/kick" => self.change(line, rest, cmd == "/invite", tries, args).await,
            "/who" | "/members" => match self.room.clone() {
                Some(room) if self.is_e2e_room(&room) => self.roster(&room),
                Some(room) => self.writer.send_message(&ClientMessage::Who { room }).await?,
                None => self.screen.show("! you are in no room"),
            },
            "/msg" => match rest.split_once(' ') {
                Some((user, text)) => self.say(Target::User(user.to_owned()), text, args).await?,
                None => self.screen.show("! usage: /msg USER TEXT"),
            },
            "/send-file" => self.send_file(rest, args).await?,
            "/accept" | "/decline" => self.answer(cmd == "/accept", rest, args).await?,
            "/cancel" => self.cancel(rest, args).await?,
            "/whois" if !rest.is_empty() => {
                self.writer.send_message(&ClientMessage::Whois { name: rest.to_owned() }).await?;
            }
            "/verify" if !rest.is_empty() => match rest.split_once(' ') {
                Some((user, "confirm")) => self.confirm(user),
                Some(_) => self.screen.show("! usage: /verify USER, then /verify USER confirm if the codes match"),
                // After a key change, the code for the NEW key: the one to
                // compare before /trust.
                None => {
                    match self.changed.get(&fold_name(rest)).copied().flatten().or_else(|| self.peers.remembered(rest))
                    {
                        Some(fp) => self.show_safety_code(rest, fp),
                        None => {
                            self.verify_pending.insert(fold_name(rest));
                            self.writer.send_message(&ClientMessage::Whois { name: rest.to_owned() }).await?;
                        }
                    }
                }
            },
            "/trust" if !rest.is_empty() => match self.changed.remove(&fold_name(rest)) {
                // Recorded under the folded name, however the user typed it.
                Some(Some(fp)) => match self.peers.remember(&fold_name(rest), fp) {
                    Ok(()) => self.screen.show(format!(
                        "* {rest}'s identity key is now {fp} (not verified: /verify {rest} to compare codes)"
                    )),
                    Err(e) => self.screen.show(format!("! cannot record the key: {e}")),
                },
                Some(None) => match self.peers.forget(&fold_name(rest)) {
                    Ok(()) => self.screen.show(format!("* forgot {rest}'s key: their messages now show as unsigned")),
                    Err(e) => self.screen.show(format!("! cannot record the change: {e}")),
                },
                None => self.screen.show(format!("! no changed key seen for {rest}")),
            },
            "/rekey" => {
                self.writer.rekey().await?;
                self.screen.show("* session keys ratcheted forward");
            }
            "/fingerprint" => {
                match &self.info.server_key {
                    Some(key) => {
                        let fp = Fingerprint::of_server_key(key);
                        self.screen.show(format!("server key {fp} ({})", fp.short()));
                    }
                    None => self.screen.show("no server key (password-only server)"),
                }
                self.screen.show(format!("suite {}; session {}", self.info.suite, hex(&self.info.handshake_hash)));
            }
            _ if cmd.starts_with('/') => self.screen.show(format!("! unknown command {cmd}; /help lists them")),
            _ => match self.room.clone() {
                Some(room) => self.say(Target::Room(room), line, args).await?,
                None => self.screen.show("! you are in no room; /join one"),
            },
        }
        Ok(false)
    }

    /// Sends a text (its turn in the queue has come).
    async fn say(&mut self, to: Target, text: &str, args: &ClientArgs) -> Result<(), CliError> {
        let said = self.outbox.said(to, text);
        self.transmit(said, args).await
    }

    /// Sends a text, kept until acknowledged so that a `rate_limited` one
    /// can go again; one too long for the server is refused here with the
    /// limit (the server would end the session over it) and chat goes on.
    async fn transmit(&mut self, said: Said, args: &ClientArgs) -> Result<(), CliError> {
        let Some(said) = self.transmit_e2e(said, args).await? else { return Ok(()) };
        match self.writer.send(said.to.clone(), &said.text).await {
            Ok(id) => {
                self.outbox.sent(id, said);
                Ok(())
            }
            Err(ClientError::TooLong { size, max }) => {
                self.screen.show(format!(
                    "! not sent: the message is {size} bytes with its signature and envelope; this server \
                     accepts at most {max} (about {} bytes of text); shorten or split it",
                    max.saturating_sub(envelope(size, said.text.len()))
                ));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Shows one server message; returns a final line if the server ended
    /// the session.
    async fn incoming(&mut self, msg: ServerMessage) -> Option<End> {
        let me = self.info.name.clone();
        match msg {
            ServerMessage::Message(d) => {
                let status = self.peers.check(&d);
                if !self.recorder.is_new(&me, &d, &status) {
                    // Delivered again (not acknowledged before a reconnect,
                    // or before an earlier run ended): shown already.
                    return self.handled(d.seq).await;
                }
                if let MessageStatus::KeyChanged { presented, .. } = &status {
                    self.changed.insert(fold_name(&d.from), *presented);
                }
                if let Some(notice) = key_notice(&d, &status) {
                    self.screen.show(notice);
                }
                self.screen.show(message_line(&d, &me, &status));
                self.recorder.shown(&me, &d, &status);
                return self.handled(d.seq).await;
            }
            ServerMessage::Expired { id, to, seq } => {
                self.screen.show(format!("! your message to {} expired on the server unread (id {id})", escape(&to)));
                return self.handled(seq).await;
            }
            ServerMessage::Identity { name, algorithm, key } => self.on_identity(&name, algorithm, &key),
            ServerMessage::Ack { client_id, id, timestamp_ms, full, .. } => {
                if let Some(said) = self.outbox.acked(client_id) {
                    self.recorder.sent_as(&me, id, timestamp_ms, &said.to, &said.text, said.sealed.is_some());
                    if full > 0 {
                        self.screen.show(format!(
                            "! {full} member(s) of the room have too many messages waiting on the server: not kept for \
                             them"
                        ));
                    }
                }
            }
            // `/join General` in `general` is the same room (§13.4): one entry.
            ServerMessage::Joined { room } => {
                self.room_wait = None;
                self.screen
                    .show(format!("* joined {} (not end-to-end encrypted: the server can read it)", escape(&room)));
                self.rooms.insert(fold_name(&room), room.clone());
                self.room = Some(room);
            }
            ServerMessage::Left { room } => {
                self.room_wait = None;
                self.screen.show(format!("* left {}", escape(&room)));
                let folded = fold_name(&room);
                self.rooms.remove(&folded);
                if self.room.as_deref().map(fold_name) == Some(folded) {
                    self.room = self.rooms.values().chain(self.e2e_rooms.values()).next().cloned();
                }
            }
            ServerMessage::Notice { kind, room, name } => {
                let what = if kind == NoticeKind::Joined { "joined" } else { "left" };
                self.screen.show(format!("* {} {what} {}", escape(&name), escape(&room)));
            }
            ServerMessage::Members { room, names } => {
                let names: Vec<_> = names.iter().map(|n| escape(n)).collect();
                self.screen.show(format!("* in {}: {} (not end-to-end encrypted)", escape(&room), names.join(", ")));
            }
            ServerMessage::Error { code, client_id, text } => {
                match self.outbox.refused(client_id, code) {
                    // Sent again after a pause: nothing to tell the user.
                    Refused::Retrying => return None,
                    Refused::GaveUp(said) => {
                        self.screen.show(format!(
                            "! not sent after {RETRIES} tries ({}): {}",
                            escape(&text),
                            escape(&said.text)
                        ));
                        return None;
                    }
                    Refused::Other => {}
                }
                // Join, Leave (and Who, Whois) carry no id: the answer to a
                // /join or /leave may be this error.
                if client_id == 0 {
                    self.room_wait = None;
                }
                if passing_code(code) {
                    return Some(End::Lost(format!("the server closed the connection: {}", escape(&text))));
                }
                if code.is_fatal() {
                    return Some(End::Final(format!("! the server closed the connection: {}", escape(&text))));
                }
                if let Some(s) = &self.sending
                    && s.out.transfer == client_id
                {
                    self.sending = None;
                }
                let hint = if code == ErrorCode::UnknownUser { " (/who lists who is here)" } else { "" };
                self.screen.show(format!("! {}{hint}", escape(&text)));
            }
            file @ (ServerMessage::FileAnswered { .. }
            | ServerMessage::FileAcked { .. }
            | ServerMessage::FileOffered { .. }
            | ServerMessage::FileData { .. }
            | ServerMessage::FileDone { .. }
            | ServerMessage::FileCancelled { .. }) => return self.offer_message(file).await,
            ServerMessage::Delivered { .. } | ServerMessage::Pong { .. } | ServerMessage::Welcome { .. } => {}
            ServerMessage::Group(GroupEvent::Message(d)) => return self.on_group(d).await,
            ServerMessage::Group(_) | ServerMessage::Blob(_) => {}
        }
        None
    }

    /// A stored message was shown: the server may delete it.
    async fn handled(&mut self, seq: u64) -> Option<End> {
        match self.writer.handled(seq).await {
            Ok(()) => None,
            Err(e) => Some(End::Lost(e.to_string())),
        }
    }
}

/// The bytes a Send adds around its text (ids, target, signature), from
/// one encoded size.
fn envelope(encoded: usize, text: usize) -> u32 {
    u32::try_from(encoded.saturating_sub(text)).unwrap_or(u32::MAX)
}
