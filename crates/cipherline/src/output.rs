//! How messages are shown: one line of text, or one JSON object per line,
//! each with its signature verdict (PROTOCOL.md §13.7).

use std::io::Write as _;

use cipherline_client::display::{body, escape};
use cipherline_client::local::{Direction, Msg, OWN_LABEL};
use cipherline_client::peers::MessageStatus;
use cipherline_proto::app::{Delivery, Target};
use serde_json::json;

/// What to show after the sender's name: nothing for the remembered key,
/// a word for the others (only a confirmed safety code earns "verified").
fn mark(status: &MessageStatus) -> String {
    match status {
        MessageStatus::KeyChanged { presented: None, .. } => {
            " (UNSIGNED, but a key is remembered for this name: maybe not them)".to_owned()
        }
        other => label_mark(other.label()),
    }
}

/// The mark for a verdict label ([`MessageStatus::label`]), as stored in
/// the history: one table for live and stored messages, so they read alike.
fn label_mark(label: &str) -> String {
    match label {
        "known" | OWN_LABEL => String::new(),
        "verified" => " (verified)".to_owned(),
        "new" => " (new key)".to_owned(),
        "unsigned" => " (unsigned)".to_owned(),
        "invalid-signature" => " (FORGED OR ALTERED: bad signature)".to_owned(),
        "key-changed" => " (KEY CHANGED: not the key remembered for this name)".to_owned(),
        // A label this version does not know (a newer one wrote it).
        other => format!(" ({})", escape(other)),
    }
}

/// One message as a line: `HH:MM [room] from: text` or `HH:MM from -> you:
/// text`, with a mark after the name unless the signature verified.
///
/// Every peer string is escaped ([`cipherline_client::display`]): a text of
/// several lines continues on lines marked `  | `, so it cannot show a line
/// that looks like another sender's message.
pub fn message_line(d: &Delivery, me: &str, status: &MessageStatus) -> String {
    let from = format!("{}{}", escape(&d.from), mark(status));
    let text = body(&d.text);
    let at = clock(sent_at(d, status));
    match &d.to {
        Target::Room(room) => format!("{at} [{}] {from}: {text}", escape(room)),
        // Names are compared ignoring case (PROTOCOL.md §13.4).
        Target::User(to) if to.eq_ignore_ascii_case(me) => format!("{at} {from} -> you: {text}"),
        Target::User(to) => format!("{at} {from} -> {}: {text}", escape(to)),
    }
}

/// When a message was sent, Unix milliseconds: the sender's clock when it
/// signed (the signature covers it, so the relay cannot change it), else
/// the server's relay time (for unsigned messages and bad signatures).
fn sent_at(d: &Delivery, status: &MessageStatus) -> u64 {
    match &d.signed {
        Some(signed) if !matches!(status, MessageStatus::Invalid) => signed.sent_at_ms,
        _ => d.timestamp_ms,
    }
}

/// Unix milliseconds as local time, `HH:MM` (the system time zone, or `TZ`).
fn clock(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_zoned_datetime(jiff::tz::TimeZone::system()).strftime("%H:%M").to_string(),
        // Out of jiff's range: a sender's clock far off, or a lying relay.
        Err(_) => "--:--".to_owned(),
    }
}

/// One message as a JSON object: id, from, room or to, text, timestamp and
/// `verified`: `new` (first key seen for the name, not compared), `known`
/// (the remembered key), `verified` (the remembered key, safety code
/// confirmed by the user), `unsigned`, `invalid-signature` or `key-changed`
/// (another key, or no signature under a name whose key is remembered). The
/// strings are exact, not escaped: JSON escapes control characters itself.
///
/// `e2e` says whether it came end to end encrypted (an MLS message of a
/// direct conversation or an end-to-end room) or readable by the server
/// (an open room, the lobby, a client without an Ed25519 identity).
pub fn message_json(d: &Delivery, status: &MessageStatus, e2e: bool) -> serde_json::Value {
    let mut object = message_object(d.id, &d.from, &d.to, &d.text, d.timestamp_ms, status.label());
    if let Some(map) = object.as_object_mut() {
        map.insert("e2e".into(), e2e.into());
    }
    object
}

/// A stored message ([`Msg`]) as the same JSON object `listen --json`
/// prints, its stored label as `verified` (`own` for what this user sent).
pub fn history_json(m: &Msg) -> serde_json::Value {
    let mut object = message_object(m.id, &m.from, &m.target, &m.text, m.timestamp_ms, &m.label);
    if let Some(map) = object.as_object_mut() {
        map.insert("e2e".into(), m.e2e.into());
    }
    object
}

/// The one place the JSON fields are named, for live and stored messages.
fn message_object(id: u64, from: &str, to: &Target, text: &str, timestamp: u64, verified: &str) -> serde_json::Value {
    match to {
        Target::Room(room) => json!({ "id": id, "from": from, "room": room, "text": text,
                                      "timestamp": timestamp, "verified": verified }),
        Target::User(user) => json!({ "id": id, "from": from, "to": user, "text": text,
                                      "timestamp": timestamp, "verified": verified }),
    }
}

/// A stored message as a line, like [`message_line`]: `HH:MM [room] from:
/// text`, `HH:MM from -> you: text` for a direct message received, `HH:MM
/// me -> to: text` for one sent; the time is the server's. Every string is
/// escaped.
pub fn history_line(m: &Msg) -> String {
    let from = format!("{}{}", escape(&m.from), label_mark(&m.label));
    let text = body(&m.text);
    let at = clock(m.timestamp_ms);
    match (&m.target, m.direction) {
        (Target::Room(room), _) => format!("{at} [{}] {from}: {text}", escape(room)),
        (Target::User(_), Direction::In) => format!("{at} {from} -> you: {text}"),
        (Target::User(to), Direction::Out) => format!("{at} {from} -> {}: {text}", escape(to)),
    }
}

/// Prints a message to stdout and flushes (so pipes see it at once).
pub fn print_message(d: &Delivery, me: &str, status: &MessageStatus, as_json: bool, e2e: bool) {
    let line = if as_json { message_json(d, status, e2e).to_string() } else { message_line(d, me, status) };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A warning line for a first-seen or changed key, if there is one to give.
pub fn key_notice(d: &Delivery, status: &MessageStatus) -> Option<String> {
    let from = escape(&d.from);
    match status {
        MessageStatus::New(fp) => Some(format!(
            "* first message from {from}: remembered their key {fp} (not verified: /verify {from} in chat to \
             compare safety codes)"
        )),
        MessageStatus::KeyChanged { remembered, presented: None } => Some(format!(
            "!!! A MESSAGE UNDER THE NAME {from} IS NOT SIGNED, but their key {remembered} is remembered: someone \
             may be impersonating them. Do not trust it; ask them (in chat, /trust {from} forgets the old key)."
        )),
        MessageStatus::KeyChanged { remembered, presented: Some(presented) } => Some(format!(
            "!!! THE IDENTITY KEY OF {} HAS CHANGED: remembered {remembered}, now {presented}. Someone may be \
             impersonating them, or they have a new key: compare /verify {from} with them before trusting it (then /trust {from}).",
            from
        )),
        MessageStatus::Invalid => Some(format!(
            "!!! a message claiming to be from {from} has a bad signature: the relay altered or forged it"
        )),
        _ => None,
    }
}
