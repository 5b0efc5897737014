//! The engine's events as `chat`'s lines. Every peer string is escaped
//! ([`escape`], and [`body`] for a text of several lines, whose next lines
//! are marked so they cannot pass for another message).

use cipherline_client::display::{body, escape};
use cipherline_client::engine::{ConnectionState, Event, Message, TransferState, Verified};
use cipherline_proto::app::{Target, fold_name};

use super::{Offer, Shared, State};

/// Shows one event; `Some(reason)` when the engine stopped for good.
pub(super) fn on_event(state: &Shared, event: Event) -> Option<String> {
    let mut st = state.borrow_mut();
    match event {
        Event::Message(m) => message(&mut st, &m),
        // Nothing shows receipts in a line client (the daemon and the TUI do).
        Event::Delivered { .. } => {}
        Event::Membership { room, name, joined } => {
            let what = if joined { "joined" } else { "left" };
            st.show(format!("* {} {what} {}", escape(&name), escape(&room)));
        }
        Event::KeyChanged { name, .. } => {
            let name = escape(&name);
            st.show(format!(
                "!!! THE IDENTITY KEY OF {name} HAS CHANGED: it is not the key remembered for this name. Someone may \
                 be impersonating them, or they have a new key: compare /verify {name} with them before trusting it \
                 (then /trust {name})."
            ));
        }
        Event::Group { text, .. } => group(&mut st, &text),
        Event::Connection(state) => return connection(&mut st, state),
        Event::FileOffered { id, from, to, name, size, e2e, verified } => {
            let key = match verified {
                Verified::Known | Verified::Verified => String::new(),
                other => format!(" ({} key)", other.as_str()),
            };
            let place = match &to {
                Target::Room(room) => format!(" in {}", escape(room)),
                Target::User(_) => String::new(),
            };
            let how = if e2e { "" } else { ", not end-to-end encrypted" };
            st.show(format!(
                "* {}{key} offers {} ({}{how}){place}: /accept {id} or /decline {id}",
                escape(&from),
                escape(&name),
                human(size)
            ));
            st.offered(Offer { id, from, name, size });
        }
        Event::Transfer { transfer, name, done, total, state, path } => {
            let known = st.transfers.get(&transfer).cloned();
            let (outgoing, peer) = known.map_or((false, String::new()), |t| (t.outgoing, t.peer));
            let what = match (outgoing, peer.is_empty()) {
                (true, _) => format!("{} to {}", escape(&name), escape(&peer)),
                (false, false) => format!("{} from {}", escape(&name), escape(&peer)),
                (false, true) => escape(&name).into_owned(),
            };
            match state {
                TransferState::Done if outgoing => st.show(format!("* {what}: sent ({})", human(total))),
                TransferState::Done => {
                    let at = path.map(|p| format!(" as {}", escape(&p.display().to_string()))).unwrap_or_default();
                    st.show(format!("* saved {what}{at} ({}; {} delivered and verified)", human(total), escape(&name)));
                }
                TransferState::Failed(why) => st.show(format!("! {what} failed: {}", escape(&why))),
                TransferState::Cancelled => st.show(format!("* cancelled {what}")),
                TransferState::Running => {
                    let verb = if outgoing { "sending" } else { "receiving" };
                    st.show(format!("* {verb} {what}: {} of {}", human(done), human(total)));
                }
                TransferState::Paused => st.show(format!("* {what} paused at {} of {}", human(done), human(total))),
                TransferState::Offered | TransferState::Queued => {}
            }
        }
    }
    None
}

fn message(st: &mut State, m: &Message) {
    let from = escape(&m.from);
    match m.verified {
        Verified::New => st.show(format!(
            "* first message from {from}: remembered their key (not verified: /verify {from} to compare safety codes)"
        )),
        Verified::Invalid => st.show(format!(
            "!!! a message claiming to be from {from} has a bad signature: the relay altered or forged it"
        )),
        _ => {}
    }
    if m.e2e
        && let Target::Room(room) = &m.to
        && !st.is_e2e_room(room)
    {
        st.e2e_rooms.insert(fold_name(room), room.clone());
    }
    let mark = mark(m.verified);
    let text = body(&m.text);
    let at = clock(m.timestamp_ms);
    let line = match &m.to {
        Target::Room(room) => format!("{at} [{}] {from}{mark}: {text}", escape(room)),
        // Names are compared ignoring case (PROTOCOL.md §13.4).
        Target::User(to) if fold_name(to) == fold_name(&st.me) => format!("{at} {from}{mark} -> you: {text}"),
        Target::User(to) => format!("{at} {from}{mark} -> {}: {text}", escape(to)),
    };
    st.show(line);
}

/// What follows the sender's name: nothing for the remembered key, a
/// word for the others (only a confirmed safety code earns "verified").
fn mark(verified: Verified) -> &'static str {
    match verified {
        Verified::Known => "",
        Verified::Verified => " (verified)",
        Verified::New => " (new key)",
        Verified::Unsigned => " (unsigned)",
        Verified::Invalid => " (FORGED OR ALTERED: bad signature)",
        Verified::Changed => " (KEY CHANGED: not the key remembered for this name)",
    }
}

/// Unix milliseconds as local time, `HH:MM` (the system time zone, or `TZ`).
fn clock(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_zoned_datetime(jiff::tz::TimeZone::system()).strftime("%H:%M").to_string(),
        Err(_) => "--:--".to_owned(),
    }
}

/// A change of an end-to-end conversation, reworded from the engine's
/// words (engine/delivery.rs `describe`) for a line client; rooms this user
/// was added to or removed from are tracked. Names never hold spaces.
fn group(st: &mut State, text: &str) {
    let single = |s: &str| !s.is_empty() && !s.contains(' ');
    if let Some(by) = text.strip_suffix(" started an end-to-end conversation")
        && single(by)
    {
        st.show(format!("* {} started an end-to-end conversation with you", escape(by)));
    } else if let Some(rest) = text.strip_prefix("added to ")
        && let Some((room, members)) = rest.split_once(" (members: ")
        && single(room)
    {
        st.e2e_rooms.insert(fold_name(room), room.to_owned());
        let members = members.strip_suffix(')').unwrap_or(members);
        st.show(format!("* you were added to the end-to-end room {} (members: {})", escape(room), escape(members)));
        st.show(format!("  /join {} to talk there", escape(room)));
    } else if let Some((by, room)) = text.split_once(" removed you from ")
        && single(by)
        && single(room)
    {
        st.show(format!("* {} removed you from the end-to-end room {}", escape(by), escape(room)));
        st.left(room);
    } else if let Some((by, what)) = text.strip_suffix(": ").and_then(|t| t.split_once(" changed "))
        && single(by)
        && single(what)
    {
        // A change with nothing to summarise: a leaf update.
        st.show(format!("* {} renewed their keys in {}", escape(by), escape(what)));
    } else {
        st.show(format!("* {}", escape(text)));
    }
}

fn connection(st: &mut State, state: ConnectionState) -> Option<String> {
    match state {
        ConnectionState::Connecting => {}
        ConnectionState::Connected { name } => {
            st.connected = true;
            if std::mem::take(&mut st.lost) {
                let rooms: Vec<String> = st.rooms.values().map(|r| escape(r).into_owned()).collect();
                let where_ =
                    if rooms.is_empty() { "in no room".to_owned() } else { format!("back in {}", rooms.join(", ")) };
                st.show(format!("* reconnected to {} as {}; {where_}", st.server, escape(&name)));
            }
            name.clone_into(&mut st.me);
        }
        ConnectionState::Reconnecting { reason, retry_in } => {
            st.connected = false;
            let secs = retry_in.as_secs().max(1);
            if std::mem::replace(&mut st.lost, true) {
                st.show(format!(
                    "! cannot reconnect yet ({}); trying again in {secs} s — /quit to stop",
                    escape(&reason)
                ));
            } else {
                st.show(format!("! connection lost ({}); reconnecting in {secs} s — /quit to stop", escape(&reason)));
            }
        }
        ConnectionState::Stopped { reason } => {
            st.connected = false;
            return Some(reason);
        }
    }
    None
}

/// A size for people: bytes, KiB, MiB or GiB.
pub(super) fn human(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = n as f64;
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit {
            #[allow(clippy::cast_precision_loss)]
            let x = v / unit as f64;
            return if x < 10.0 { format!("{x:.1} {name}") } else { format!("{x:.0} {name}") };
        }
    }
    format!("{n} bytes")
}
