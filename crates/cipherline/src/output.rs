//! How messages are shown: one line of text, or one JSON object per line,
//! each with its signature verdict (PROTOCOL.md §13.7).

use cipherline_client::display::{body, escape};
use cipherline_client::engine::ReceiverAnswer;
use cipherline_client::local::{Direction, Msg, OWN_LABEL, UNSIGNED_REMEMBERED_LABEL};
use cipherline_proto::app::Target;
use serde_json::json;

/// The mark for a verdict label ([`MessageStatus::label`]), as stored in
/// the history: one table for live and stored messages, so they read alike.
fn label_mark(label: &str) -> String {
    match label {
        "known" | OWN_LABEL => String::new(),
        "verified" => " (verified)".to_owned(),
        "new" => " (new key)".to_owned(),
        "unsigned" => " (unsigned)".to_owned(),
        UNSIGNED_REMEMBERED_LABEL => UNSIGNED_REMEMBERED.to_owned(),
        "invalid-signature" => " (FORGED OR ALTERED: bad signature)".to_owned(),
        "key-changed" => " (KEY CHANGED: not the key remembered for this name)".to_owned(),
        // A label this version does not know (a newer one wrote it).
        other => format!(" ({})", escape(other)),
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

/// A stored message as a line, as `listen` shows one: `HH:MM [room] from:
/// text`, `HH:MM from -> you: text` for a direct message received, `HH:MM
/// me -> to: text` for one sent; the time is the server's. Every string is
/// escaped.
pub fn history_line(m: &Msg) -> String {
    line(m, &label_mark(&m.label))
}

/// One receiver's answer to a version-1 file this user offers, escaped:
/// what `send --file`, `chat` and the terminal UI show of it.
pub fn receiver_answer(name: &str, by: &str, answer: &ReceiverAnswer) -> String {
    let (name, by) = (escape(name), escape(by));
    match answer {
        ReceiverAnswer::Accepted => format!("{by} accepted {name}"),
        ReceiverAnswer::Declined => format!("{by} declined {name}"),
        ReceiverAnswer::Stopped(reason) => format!("{by} stopped receiving {name}: {}", escape(reason)),
    }
}

/// The mark of a message that came unsigned under a name whose key is
/// remembered: its verdict (`key-changed`) would say another key was seen,
/// but none was; only the name matches. The history stores it as
/// [`UNSIGNED_REMEMBERED_LABEL`] and shows this same mark.
pub const UNSIGNED_REMEMBERED: &str = " (UNSIGNED, but a key is remembered for this name: maybe not them)";

/// A message received live, as [`history_line`] shows a stored one (the
/// time given in `m` is the caller's choice: `listen` gives the sender's
/// signed one), marked [`UNSIGNED_REMEMBERED`] when `unsigned_remembered`.
pub fn live_line(m: &Msg, unsigned_remembered: bool) -> String {
    if unsigned_remembered { line(m, UNSIGNED_REMEMBERED) } else { history_line(m) }
}

/// One line with the given mark after the sender's name.
fn line(m: &Msg, mark: &str) -> String {
    let from = format!("{}{mark}", escape(&m.from));
    let text = body(&m.text);
    let at = clock(m.timestamp_ms);
    match (&m.target, m.direction) {
        (Target::Room(room), _) => format!("{at} [{}] {from}: {text}", escape(room)),
        (Target::User(_), Direction::In) => format!("{at} {from} -> you: {text}"),
        (Target::User(to), Direction::Out) => format!("{at} {from} -> {}: {text}", escape(to)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use cipherline_client::local::{FILE_NAME, Filter, LocalStore};
    use cipherline_client::peers::MessageStatus;
    use cipherline_keys::Fingerprint;
    use cipherline_proto::app::Delivery;

    use super::*;

    /// A message received unsigned under a remembered name goes into the
    /// history as `unsigned-remembered` and comes back out with the mark
    /// `listen` printed live (not "KEY CHANGED": no other key was seen); an
    /// older history's `key-changed` still loads and reads as a change.
    #[test]
    fn a_stored_unsigned_message_under_a_remembered_name_replays_with_the_live_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join(FILE_NAME)).unwrap();
        let d = Delivery {
            id: 1,
            timestamp_ms: 1_700_000_000_000,
            from: "bob".into(),
            to: Target::Room("lobby".into()),
            text: "pay mallory".into(),
            signed: None,
            seq: 1,
        };
        let remembered = Fingerprint::from_bytes([1; 32]);
        let unsigned = MessageStatus::KeyChanged { remembered, presented: None };
        let received = Msg::received("s", "me", &d, &unsigned);
        // What `listen` printed live: the verdict's label, and the flag.
        let live = live_line(&Msg { label: "key-changed".into(), ..received.clone() }, true);
        assert!(store.record(&received).unwrap());
        let old = Msg { id: 2, seq: 2, label: "key-changed".into(), ..received.clone() };
        assert!(store.record(&old).unwrap());
        let stored = store.history("s", &Filter::All, 10).unwrap();
        let labels: Vec<&str> = stored.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, [UNSIGNED_REMEMBERED_LABEL, "key-changed"]);
        assert_eq!(history_line(&stored[0]), live);
        assert!(live.contains(UNSIGNED_REMEMBERED) && !live.contains("KEY CHANGED"), "{live}");
        assert!(history_line(&stored[1]).contains("KEY CHANGED"), "an older record still reads as a change");
    }
}
