//! One typed line, run as engine commands ([`crate::slash`] parses it),
//! and what the answers show. A line runs to its end before the next one
//! starts; the state is borrowed only between the engine's answers.

use std::path::PathBuf;

use cipherline_client::ClientError;
use cipherline_client::display::escape;
use cipherline_client::engine::{Command, EngineHandle, KeyInfo, Reply, RoomSummary, passing};
use cipherline_proto::app::{ErrorCode, RoomKind, Target, fold_name};

use super::lines::human;
use super::{Ran, Shared, Transfer};
use crate::slash::{self, Slash};

/// The commands, for `/help`.
pub(super) const HELP: &str = "\
commands:
  TEXT                       say TEXT in the current room (//TEXT says /TEXT)
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
                             end-to-end rooms); in an open room the
                             version-1 way (readable by the server)
  /accept [ID] /decline [ID] answer a file offer (the newest if no ID); an
                             accepted end-to-end file is saved once its
                             SHA-256 verified, and resumes if chat restarts
  /cancel [ID]               stop sending file ID (without ID: the newest)
  /rekey                     ratchet the session keys now
  /fingerprint               the server's key fingerprint and this session's hash
  /help                      this list
  /quit                      leave";

/// How an engine command's failure reads: the engine's words, escaped
/// (they may carry a server's or a peer's text).
fn why(e: &ClientError) -> String {
    escape(&e.to_string()).into_owned()
}

/// The engine is between connections: the line waits for the next one.
fn reconnecting(e: &ClientError) -> bool {
    matches!(e, ClientError::Engine(why) if why.starts_with("not connected"))
}

/// Runs one typed line.
pub(super) async fn run_line(line: String, engine: EngineHandle, state: Shared) -> Ran {
    let show = |text: String| state.borrow_mut().show(text);
    let run = async |command: Command| engine.run(command).await;
    let here = state.borrow().room.clone();
    match slash::parse(&line) {
        Slash::Empty | Slash::Quit => {}
        Slash::Help => show(HELP.to_owned()),
        Slash::Say(text) => match here {
            Some(room) => {
                let command = Command::SendRoom { room: room.clone(), text: text.to_owned() };
                match run(command).await {
                    Ok(_) => {}
                    Err(e) if reconnecting(&e) => return Ran::Again(line),
                    Err(e) => not_sent(&state, &room, text, &e),
                }
            }
            None => show("! you are in no room; /join one".to_owned()),
        },
        Slash::Msg { user, text } => {
            match run(Command::SendDirect { user: user.to_owned(), text: text.to_owned() }).await {
                Ok(Reply::Sent { e2e, .. }) => {
                    let mut st = state.borrow_mut();
                    if st.told.insert(fold_name(user)) {
                        let user = escape(user);
                        if e2e {
                            st.show(format!("* messages with {user} are end-to-end encrypted"));
                        } else {
                            st.show(format!(
                                "* messages to {user} are not end-to-end encrypted (the server can read them)"
                            ));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if reconnecting(&e) => return Ran::Again(line),
                Err(e) => not_sent(&state, user, text, &e),
            }
        }
        Slash::Join(room) => join(&engine, &state, room).await,
        Slash::Leave => match here {
            Some(room) => match run(Command::Leave(room.clone())).await {
                Ok(_) => {
                    let mut st = state.borrow_mut();
                    st.left(&room);
                    st.show(format!("* left {}", escape(&room)));
                }
                Err(e) => show(format!("! cannot leave {}: {}", escape(&room), why(&e))),
            },
            None => show("! you are in no room".to_owned()),
        },
        Slash::Members => match here {
            Some(room) => members(&engine, &state, &room).await,
            None => show("! you are in no room".to_owned()),
        },
        Slash::Whois(user) => whois(&engine, &state, user).await,
        Slash::Verify { user, confirm: false } => verify(&engine, &state, user).await,
        Slash::Verify { user, confirm: true } => confirm(&engine, &state, user).await,
        Slash::Trust(user) => trust(&engine, &state, user).await,
        Slash::Create { room, kind } => create(&engine, &state, room, kind).await,
        Slash::Other { cmd, rest } => other(&engine, &state, cmd, rest).await,
        Slash::Usage(usage) => show(format!("! usage: {usage}")),
        Slash::Unknown(cmd) => show(format!("! unknown command {}; /help lists them", escape(cmd))),
    }
    Ran::Done
}

/// A text the engine did not send (or could not confirm).
fn not_sent(state: &Shared, to: &str, text: &str, e: &ClientError) {
    let line = match e {
        ClientError::TooLong { size, max } => format!(
            "! not sent: the message is {size} bytes with its signature and envelope; this server accepts at most \
             {max} (about {} bytes of text); shorten or split it",
            u64::from(*max).saturating_sub(u64::try_from(size.saturating_sub(text.len())).unwrap_or(u64::MAX))
        ),
        ClientError::Refused { code: ErrorCode::RateLimited, .. } => {
            format!("! not sent (the server refused it as too fast, several times): {}", escape(text))
        }
        ClientError::Refused { code: ErrorCode::UnknownUser, .. } => {
            format!("! not sent to {} ({}; /who lists who is here): {}", escape(to), why(e), escape(text))
        }
        e if passing(e) => {
            format!("! not confirmed before the connection was lost (it may not have arrived): {}", escape(text))
        }
        e => format!("! not sent to {} ({}): {}", escape(to), why(e), escape(text)),
    };
    state.borrow_mut().show(line);
}

/// `/join ROOM`: an open room is joined, an end-to-end one this user is
/// in entered, a public one joined by its group, a new name created as an
/// end-to-end invite-only room (with an identity; else an open one).
async fn join(engine: &EngineHandle, state: &Shared, room: &str) {
    let show = |text: String| state.borrow_mut().show(text);
    let e2e_client = matches!(engine.run(Command::Status).await, Ok(Reply::Status(s)) if s.e2e);
    let info = match engine.run(Command::RoomInfo(room.to_owned())).await {
        Ok(Reply::RoomInfo(info)) => info,
        Ok(_) => RoomSummary { room: room.to_owned(), kind: None, member: false, joined: false, gone: Vec::new() },
        Err(e) => return show(format!("! cannot ask about {}: {}", escape(room), why(&e))),
    };
    let name = escape(room).into_owned();
    match info.kind {
        Some(kind) if kind.is_e2e() && info.member => {
            state.borrow_mut().enter(room, true);
            show(format!("* now in {name} (end-to-end encrypted)"));
            prune(engine, state, room, info.gone).await;
        }
        Some(RoomKind::Invite) if e2e_client => {
            show(format!("! {name} is an end-to-end room you are not in: ask a member to /invite you"));
        }
        Some(RoomKind::Public) if e2e_client => match engine.run(Command::Join(room.to_owned())).await {
            Ok(_) => {
                state.borrow_mut().enter(room, true);
                show(format!("* joined {name} (end-to-end encrypted, public)"));
            }
            Err(e) => show(format!("! cannot join {name}: {}", why(&e))),
        },
        None if e2e_client => match engine.run(Command::Create { room: room.to_owned(), kind: RoomKind::Invite }).await
        {
            Ok(_) => {
                state.borrow_mut().enter(room, true);
                show(format!(
                    "* joined {name} (a new room, end-to-end encrypted and invite-only: /invite USER to add people)"
                ));
            }
            Err(e) => show(format!("! cannot create {name}: {}", why(&e))),
        },
        _ => match engine.run(Command::Join(room.to_owned())).await {
            Ok(_) => {
                state.borrow_mut().enter(room, false);
                show(format!("* joined {name} (not end-to-end encrypted: the server can read it)"));
            }
            Err(e) => show(format!("! cannot join {name}: {}", why(&e))),
        },
    }
}

/// Best effort, on entering an end-to-end room: members the relay no
/// longer lists (they left) are removed from the group, so what is said
/// next is not encrypted to them.
async fn prune(engine: &EngineHandle, state: &Shared, room: &str, gone: Vec<String>) {
    if gone.is_empty() {
        return;
    }
    let names: Vec<String> = gone.iter().map(|n| escape(n).into_owned()).collect();
    if engine.run(Command::Kick { room: room.to_owned(), users: gone }).await.is_ok() {
        state.borrow_mut().show(format!("* {} left {}: removed from its group", names.join(", "), escape(room)));
    }
}

/// `/who`: an open room's names, or an end-to-end room's members with the
/// state of their keys.
async fn members(engine: &EngineHandle, state: &Shared, room: &str) {
    let e2e = state.borrow().is_e2e_room(room);
    match engine.run(Command::Members(room.to_owned())).await {
        Ok(Reply::Members(members)) => {
            let mut st = state.borrow_mut();
            let me = fold_name(&st.me);
            let line = if e2e {
                let listed: Vec<String> = members
                    .iter()
                    .map(|m| {
                        let what = if fold_name(&m.name) == me { "you" } else { m.key.as_str() };
                        format!("{} ({what})", escape(&m.name))
                    })
                    .collect();
                format!("* in {} (end-to-end encrypted): {}", escape(room), listed.join(", "))
            } else {
                let names: Vec<String> = members.iter().map(|m| escape(&m.name).into_owned()).collect();
                format!("* in {}: {} (not end-to-end encrypted)", escape(room), names.join(", "))
            };
            st.show(line);
        }
        Ok(_) => {}
        Err(e) => state.borrow_mut().show(format!("! {}", why(&e))),
    }
}

/// What is known of `user`'s key (the engine's local records).
async fn key_info(engine: &EngineHandle, user: &str) -> Option<KeyInfo> {
    match engine.run(Command::KeyInfo(user.to_owned())).await {
        Ok(Reply::KeyInfo(info)) => Some(info),
        _ => None,
    }
}

async fn whois(engine: &EngineHandle, state: &Shared, user: &str) {
    let fp = match engine.run(Command::Whois(user.to_owned())).await {
        Ok(Reply::Fingerprint { fingerprint, .. }) => fingerprint,
        Ok(_) => return,
        Err(ClientError::Trust(why)) => return state.borrow_mut().show(format!("* {why}")),
        Err(e) => return state.borrow_mut().show(format!("! {}", why(&e))),
    };
    let info = key_info(engine, user).await;
    let name = escape(user);
    let what = match &info {
        Some(KeyInfo { changed: Some(_), remembered, .. }) => format!(
            "CHANGED: you remembered {}; /verify then /trust to accept it",
            remembered.as_deref().unwrap_or("another key")
        ),
        Some(KeyInfo { verified: true, .. }) => "the key you remembered and verified".to_owned(),
        _ => format!("the key you remembered, not verified (/verify {name})"),
    };
    state.borrow_mut().show(format!("* {name}: identity key {fp} — {what}"));
}

/// `/verify USER`: the safety code, for the new key if it changed.
async fn verify(engine: &EngineHandle, state: &Shared, user: &str) {
    let code = match engine.run(Command::Verify { user: user.to_owned(), confirm: false }).await {
        Ok(Reply::SafetyCode { code, .. }) => code,
        Ok(_) => return,
        Err(e) => return state.borrow_mut().show(format!("! {}", why(&e))),
    };
    let info = key_info(engine, user).await;
    let name = escape(user);
    let (which, fp) = match &info {
        Some(KeyInfo { changed: Some(Some(new)), .. }) => ("NEW key ", new.clone()),
        Some(KeyInfo { remembered: Some(fp), .. }) => ("", fp.clone()),
        _ => ("", "key unknown".to_owned()),
    };
    let mut st = state.borrow_mut();
    st.show(format!("* safety code with {name} ({which}{fp}): {code}"));
    st.show(format!(
        "  compare it with {name} in person or on a call: if both of you see the same code, the server did not swap \
         your keys"
    ));
    if which.is_empty() {
        st.show(format!("  if it matches, type /verify {name} confirm"));
    } else {
        st.show(format!("  if it matches, /trust {name}, then /verify {name} confirm"));
    }
}

/// `/verify USER confirm`: the code shown for the remembered key matched.
async fn confirm(engine: &EngineHandle, state: &Shared, user: &str) {
    let name = escape(user);
    match key_info(engine, user).await {
        Some(KeyInfo { remembered: None, .. }) => {
            return state.borrow_mut().show(format!("! no key remembered for {name}: /verify {name} first"));
        }
        Some(KeyInfo { changed: Some(_), .. }) => {
            return state
                .borrow_mut()
                .show(format!("! {name}'s key changed: compare the new code (/verify {name}) and /trust first"));
        }
        _ => {}
    }
    match engine.run(Command::Verify { user: user.to_owned(), confirm: true }).await {
        Ok(_) => {
            let fp = key_info(engine, user).await.and_then(|i| i.remembered).unwrap_or_default();
            state.borrow_mut().show(format!("* {name}'s key {fp} is now verified"));
        }
        Err(ClientError::Trust(_)) => {
            state.borrow_mut().show(format!("! /verify {name} first, and compare the code it shows"));
        }
        Err(e) => state.borrow_mut().show(format!("! {}", why(&e))),
    }
}

/// `/trust USER`: accept a changed key (or that the name has none now).
async fn trust(engine: &EngineHandle, state: &Shared, user: &str) {
    let name = escape(user);
    match engine.run(Command::Trust(user.to_owned())).await {
        Ok(_) => match key_info(engine, user).await.and_then(|i| i.remembered) {
            Some(fp) => state
                .borrow_mut()
                .show(format!("* {name}'s identity key is now {fp} (not verified: /verify {name} to compare codes)")),
            None => state.borrow_mut().show(format!("* forgot {name}'s key: their messages now show as unsigned")),
        },
        Err(e) => state.borrow_mut().show(format!("! {}", why(&e))),
    }
}

/// The commands whose arguments chat reads itself.
async fn other(engine: &EngineHandle, state: &Shared, cmd: &str, rest: &str) {
    let show = |text: String| state.borrow_mut().show(text);
    let here = state.borrow().room.clone();
    match cmd {
        "/invite" | "/kick" => {
            let users: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            let Some(room) = here.filter(|r| state.borrow().is_e2e_room(r)) else {
                return show(format!("! {cmd} works in an end-to-end room: /join or /create one first"));
            };
            if users.is_empty() {
                return show(format!("! usage: {cmd} USER..."));
            }
            let listed: Vec<String> = users.iter().map(|u| escape(u).into_owned()).collect();
            let (command, done) = if cmd == "/invite" {
                (Command::Invite { room: room.clone(), users }, "added")
            } else {
                (Command::Kick { room: room.clone(), users }, "removed")
            };
            let to = if done == "added" { "to" } else { "from" };
            match engine.run(command).await {
                Ok(_) => show(format!("* {done} {} {to} {}", listed.join(", "), escape(&room))),
                Err(e) => show(format!("! {cmd} {}: {}", listed.join(" "), why(&e))),
            }
        }
        "/send-file" => send_file(engine, state, rest).await,
        "/accept" | "/decline" => answer(engine, state, cmd == "/accept", rest).await,
        "/cancel" => cancel(engine, state, rest).await,
        "/rekey" => match engine.run(Command::Rekey).await {
            Ok(_) => show("* session keys ratcheted forward".to_owned()),
            Err(e) => show(format!("! {}", why(&e))),
        },
        "/fingerprint" => match engine.run(Command::Session).await {
            Ok(Reply::Session(s)) => {
                match (&s.server_fingerprint, &s.server_short) {
                    (Some(fp), Some(short)) => show(format!("server key {fp} ({short})")),
                    (Some(fp), None) => show(format!("server key {fp}")),
                    _ => show("no server key (password-only server)".to_owned()),
                }
                show(format!("suite {}; session {}", s.suite, s.handshake_hash));
            }
            Ok(_) => {}
            Err(e) => show(format!("! {}", why(&e))),
        },
        _ => show(format!("! unknown command {}; /help lists them", escape(cmd))),
    }
}

/// `/create ROOM [--public | --open]`.
async fn create(engine: &EngineHandle, state: &Shared, room: &str, kind: RoomKind) {
    match engine.run(Command::Create { room: room.to_owned(), kind }).await {
        Ok(_) => {
            let mut st = state.borrow_mut();
            st.enter(room, kind.is_e2e());
            let what = match kind {
                RoomKind::Invite => "end-to-end encrypted, invite-only); /invite USER to add people",
                RoomKind::Public => "end-to-end encrypted, public)",
                RoomKind::Open => "not end-to-end encrypted: the server can read it)",
            };
            st.show(format!("* created {} ({what}", escape(room)));
        }
        Err(e) => state.borrow_mut().show(format!("! cannot create {}: {}", escape(room), why(&e))),
    }
}

/// `/send-file USER|#ROOM PATH`.
async fn send_file(engine: &EngineHandle, state: &Shared, rest: &str) {
    let Some((to, path)) = rest.split_once(' ').map(|(t, p)| (t, p.trim())).filter(|(_, p)| !p.is_empty()) else {
        return state.borrow_mut().show("! usage: /send-file USER|#ROOM PATH");
    };
    let (target, e2e) = {
        let st = state.borrow();
        let room = to.strip_prefix('#').or_else(|| {
            // A room this user is in needs no `#`.
            (st.is_e2e_room(to) || st.rooms.contains_key(&fold_name(to))).then_some(to)
        });
        match room {
            Some(room) => (Target::Room(room.to_owned()), st.is_e2e_room(room)),
            None => (Target::User(to.to_owned()), st.direct_e2e),
        }
    };
    let peer = match &target {
        Target::Room(room) => format!("#{room}"),
        Target::User(user) => user.clone(),
    };
    let path = PathBuf::from(path);
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    // Said here in the user's terms (the engine refuses them too): a
    // directory, a device or a pipe is never offered.
    let size = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => return state.borrow_mut().show(format!("! {} is a directory: not sent", escape(&name))),
        Ok(_) => {
            let shown = escape(&path.display().to_string()).into_owned();
            return state.borrow_mut().show(format!("! {shown} is not a regular file: not sent"));
        }
        Err(e) => {
            let shown = escape(&path.display().to_string()).into_owned();
            return state.borrow_mut().show(format!("! cannot read {shown}: {e}"));
        }
    };
    match engine.run(Command::SendFile { to: target, path: path.clone() }).await {
        Ok(Reply::Transfer { transfer }) => {
            let mut st = state.borrow_mut();
            let (file, to) = (escape(&name).into_owned(), escape(&peer).into_owned());
            if e2e {
                st.show(format!("* sending {file} to {to} (end to end, {}): /cancel {transfer} stops it", human(size)));
            } else {
                st.show(format!(
                    "* offered {file} to {to} ({size} bytes, not end to end: the server can read it): /cancel \
                     {transfer} stops it"
                ));
            }
            let since = tokio::time::Instant::now();
            st.started(transfer, Transfer { name, peer, outgoing: true, e2e, since });
        }
        Ok(_) => {}
        Err(e) => state.borrow_mut().show(format!("! {} not sent: {}", escape(&name), why(&e))),
    }
}

/// `/accept [ID]`, `/decline [ID]`: the newest offer without an id.
async fn answer(engine: &EngineHandle, state: &Shared, accept: bool, rest: &str) {
    let offer = {
        let st = state.borrow();
        match rest {
            "" => st.offers.last().cloned(),
            id => id.parse::<u64>().ok().and_then(|id| st.offers.iter().find(|o| o.id == id).cloned()),
        }
    };
    let Some(offer) = offer else {
        let waiting: Vec<String> = state.borrow().offers.iter().map(|o| o.id.to_string()).collect();
        let line = if waiting.is_empty() {
            "! no file offer is waiting".to_owned()
        } else {
            format!("! no file offer {} is waiting; waiting: {}", escape(rest), waiting.join(", "))
        };
        return state.borrow_mut().show(line);
    };
    let (name, from) = (escape(&offer.name).into_owned(), escape(&offer.from).into_owned());
    if accept {
        let dir = state.borrow().download_dir.clone();
        let dir_shown = dir.display().to_string();
        match engine.run(Command::GetFile { id: offer.id, dir }).await {
            Ok(Reply::Transfer { transfer }) => {
                let mut st = state.borrow_mut();
                st.offers.retain(|o| o.id != offer.id);
                let into = escape(&dir_shown).into_owned();
                if offer.e2e {
                    st.show(format!("* receiving {name} from {from} (end to end, {}) into {into}", human(offer.size)));
                } else {
                    st.show(format!("* receiving {name} ({} bytes) from {from} into {into}", offer.size));
                }
                let since = tokio::time::Instant::now();
                st.started(
                    transfer,
                    Transfer { name: offer.name, peer: offer.from, outgoing: false, e2e: offer.e2e, since },
                );
            }
            Ok(_) => {}
            Err(e) => state.borrow_mut().show(format!("! cannot receive {name}: {}", why(&e))),
        }
        return;
    }
    match engine.run(Command::DeclineFile(offer.id)).await {
        Ok(_) => {
            let mut st = state.borrow_mut();
            st.offers.retain(|o| o.id != offer.id);
            st.show(format!("* declined {name} from {from}"));
        }
        Err(e) => state.borrow_mut().show(format!("! cannot decline {name}: {}", why(&e))),
    }
}

/// `/cancel [ID]`: the newest upload of this chat without an id.
async fn cancel(engine: &EngineHandle, state: &Shared, rest: &str) {
    let id = if rest.is_empty() {
        match engine.run(Command::Files).await {
            Ok(Reply::Files(list)) => list.iter().rev().find(|t| t.outgoing).map(|t| t.transfer.clone()),
            _ => None,
        }
    } else {
        Some(rest.to_owned())
    };
    let Some(id) = id else {
        return state.borrow_mut().show("! no file is being sent");
    };
    if let Err(e) = engine.run(Command::CancelFile(id.clone())).await {
        state.borrow_mut().show(format!("! cannot cancel {}: {}", escape(&id), why(&e)));
    }
}
