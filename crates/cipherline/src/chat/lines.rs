//! The engine's events as `chat`'s lines. Every peer string is escaped
//! ([`escape`], and [`body`] for a text of several lines, whose next lines
//! are marked so they cannot pass for another message).

use cipherline_client::display::{body, escape};
use cipherline_client::engine::{
    ConnectionState, Event, FailReason, GroupChange, Message, ReceiverAnswer, TransferState, Verified,
};
use cipherline_proto::app::{Target, fold_name};

use tokio::time::Instant;

use super::{Offer, Shared, State, Transfer};
use crate::output::{UNSIGNED_REMEMBERED, receiver_answer};

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
        Event::Expired { id, to } => {
            st.show(format!("your message to {} expired on the server unread (id {id})", escape(&to)));
        }
        Event::Group { text, change, .. } => group(&mut st, &text, change),
        Event::Connection(state) => return connection(&mut st, state),
        Event::FileOffered { id, from, to, name, size, e2e, verified } => {
            let place = match &to {
                Target::Room(room) => format!(" in #{}", escape(room)),
                Target::User(_) => String::new(),
            };
            let how = if e2e { "end to end" } else { "not end to end: the server can read it" };
            let from_ = escape(&from);
            st.show(format!(
                "* {from_} offers {} ({size} bytes, {how}){place}: /accept {id} or /decline {id}",
                escape(&name)
            ));
            match verified {
                Verified::New => st.show(format!(
                    "  a key seen for the first time for {from_} signed it (/verify {from_} to compare safety codes)"
                )),
                Verified::Changed | Verified::Invalid => st.show(format!("  the offer's sender:{}", mark(verified))),
                Verified::Known | Verified::Verified | Verified::Unsigned => {}
            }
            st.offered(Offer { id, from, name, size, e2e });
        }
        // An upload's facts are `send --file --json`'s; chat says what
        // it says of an upload from its transfer events.
        Event::Upload(_) => {}
        // An accept; a decline or a stop is told with the transfer's end
        // when it was the last receiver's.
        Event::Receiver { name, by, answer: answer @ ReceiverAnswer::Accepted, .. } => {
            st.show(format!("* {}", receiver_answer(&name, &by, &answer)));
        }
        Event::Receiver { .. } => {}
        Event::Transfer { transfer, name, done, total, state, path } => {
            transfer_line(&mut st, &transfer, &name, (done, total), state, path.as_deref());
        }
    }
    None
}

/// A transfer's progress, or how it ended.
fn transfer_line(
    st: &mut State,
    id: &str,
    name: &str,
    (done, total): (u64, u64),
    state: TransferState,
    path: Option<&std::path::Path>,
) {
    let offer = st.offers.iter().rev().find(|o| o.name == name).cloned();
    if !st.transfers.contains_key(id)
        && let Some(offer) = &offer
        && let TransferState::Failed { why, .. } = &state
    {
        // Withdrawn (or expired) before it was answered: its id stops working.
        st.offers.retain(|o| o.id != offer.id);
        st.show(format!(
            "! {} from {} failed: offer {} is no longer open ({})",
            escape(name),
            escape(&offer.from),
            offer.id,
            escape(why)
        ));
        return;
    }
    let known = st.transfers.get(id).cloned().or_else(|| {
        // A download's events may come before the answer to /accept.
        offer.as_ref().map(|o| Transfer {
            name: o.name.clone(),
            peer: o.from.clone(),
            outgoing: false,
            e2e: o.e2e,
            since: Instant::now(),
        })
    });
    let Some(t) = known else {
        // Not this chat's (another session's, or before this run).
        return;
    };
    let file = escape(&t.name);
    let peer = escape(&t.peer);
    let how = if t.e2e { "end to end" } else { "not end to end" };
    match (state, t.outgoing) {
        (TransferState::Done, true) if t.e2e => st.show(format!(
            "* {file} sent to {peer} ({how}, {} in {:.1} s)",
            human(total),
            t.since.elapsed().as_secs_f64()
        )),
        (TransferState::Done, true) => {
            st.show(format!("* {file} delivered and verified ({total} bytes, to {peer}; {how})"));
        }
        (TransferState::Done, false) if !t.e2e => {
            let at = path.map(|p| escape(&p.display().to_string()).into_owned()).unwrap_or_default();
            st.show(format!("* received {file} from {peer} ({total} bytes, SHA-256 checked; {how}) as {at}"));
        }
        (TransferState::Done, false) => {
            let dir = path.and_then(std::path::Path::parent).map(|p| escape(&p.display().to_string()).into_owned());
            let saved = path.and_then(std::path::Path::file_name).map(|n| n.to_string_lossy().into_owned());
            let as_ = match saved {
                Some(saved) if saved != name => format!(" as {}", escape(&saved)),
                _ => String::new(),
            };
            st.show(format!(
                "* saved {file} from {peer}{as_} ({}, SHA-256 checked, verified; {how}) in {}",
                human(total),
                dir.unwrap_or_else(|| ".".to_owned())
            ));
        }
        (TransferState::Failed { reason: FailReason::Declined { by }, .. }, true) => {
            let by: Vec<_> = by.iter().map(|b| escape(b).into_owned()).collect();
            st.show(format!("* {} declined {file}", by.join(", ")));
        }
        (TransferState::Failed { why, .. }, true) => {
            st.show(format!("! sending {file} stopped (to {peer}): {}", escape(&why)));
        }
        // A version-1 file ends with the connection: said once for all of
        // them, with the loss.
        (TransferState::Failed { reason: FailReason::ConnectionLost, .. }, false) if !t.e2e => {
            st.lost_downloads += 1;
        }
        (TransferState::Failed { why, .. }, false) => {
            st.show(format!("! {file} from {peer} failed: {}", escape(&why)));
        }
        (TransferState::Cancelled, true) if t.e2e => {
            st.show(format!("* cancelled {file} to {peer} (the relay deletes what it had)"));
        }
        (TransferState::Cancelled, true) => st.show(format!("* cancelled {file} to {peer}")),
        (TransferState::Cancelled, false) => st.show(format!("* cancelled {file} from {peer}")),
        // The start is said by the answer to the command.
        (TransferState::Running, _) if done == 0 => {}
        (TransferState::Running, _) if !t.e2e => {
            let dir = if t.outgoing { "to" } else { "from" };
            st.show(format!("* {file}: {} of {} ({dir} {peer})", human(done), human(total)));
        }
        (TransferState::Running, true) => {
            st.show(format!("* sending {file} to {peer}: {} of {}", human(done), human(total)));
        }
        (TransferState::Running, false) => {
            st.show(format!("* receiving {file} from {peer}: {} of {}", human(done), human(total)));
        }
        (TransferState::Paused, _) => st.show(format!("* {file} paused at {} of {}", human(done), human(total))),
        (TransferState::Offered | TransferState::Queued, _) => {}
    }
}

fn message(st: &mut State, m: &Message) {
    let from = escape(&m.from);
    match m.verified {
        Verified::New => {
            // The fingerprint (`SHA256:…`) is the engine's, shown so it
            // can be compared; escaped all the same.
            let key = m.new_key.as_deref().map(|fp| format!(" {}", escape(fp))).unwrap_or_default();
            st.show(format!(
                "* first message from {from}: remembered their key{key} (not verified: /verify {from} to compare \
                 safety codes)"
            ));
        }
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
    // Unsigned under a remembered name: no other key was seen.
    let mark = if m.verified == Verified::Changed && !m.signed { UNSIGNED_REMEMBERED } else { mark(m.verified) };
    let text = body(&m.text);
    // The sender's time where it is vouched for, as chat always showed.
    let at = clock(m.sent_ms.unwrap_or(m.timestamp_ms));
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

/// A change of an end-to-end conversation, worded for a line client from
/// the engine's data; rooms this user was added to or removed from are
/// tracked. What chat has no words of its own for shows the engine's text.
fn group(st: &mut State, text: &str, change: GroupChange) {
    match change {
        GroupChange::Started { by } => {
            st.show(format!("* {} started an end-to-end conversation with you", escape(&by)));
        }
        GroupChange::Added { room, members } => {
            st.show(format!(
                "* you were added to the end-to-end room {} (members: {})",
                escape(&room),
                escape(&members)
            ));
            st.show(format!("  /join {} to talk there", escape(&room)));
            st.e2e_rooms.insert(fold_name(&room), room);
        }
        GroupChange::Removed { by, conversation: Target::Room(room) } => {
            st.show(format!("* {} removed you from the end-to-end room {}", escape(&by), escape(&room)));
            st.left(&room);
        }
        // A change with nothing to summarise: a leaf update.
        GroupChange::Changed { by, conversation: Target::Room(what) | Target::User(what), summary }
            if summary.is_empty() =>
        {
            st.show(format!("* {} renewed their keys in {}", escape(&by), escape(&what)));
        }
        _ => st.show(format!("* {}", escape(text))),
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
            let receiving = std::mem::take(&mut st.lost_downloads);
            if receiving > 0 {
                st.show(format!(
                    "! receiving {receiving} file(s) stopped: the connection was lost (the partial files were deleted; \
                     ask for them again)"
                ));
            }
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
