//! How messages are shown: one line of text, or one JSON object per line.

use std::io::Write as _;

use cipherline_proto::app::{Delivery, Target};
use serde_json::json;

/// One message as a line: `[room] from: text` or `from -> me: text`.
pub fn message_line(d: &Delivery, me: &str) -> String {
    match &d.to {
        Target::Room(room) => format!("[{room}] {}: {}", d.from, d.text),
        Target::User(to) if to == me => format!("{} -> you: {}", d.from, d.text),
        Target::User(to) => format!("{} -> {to}: {}", d.from, d.text),
    }
}

/// One message as a JSON object (id, from, room or to, text, timestamp).
pub fn message_json(d: &Delivery) -> serde_json::Value {
    match &d.to {
        Target::Room(room) => {
            json!({ "id": d.id, "from": d.from, "room": room, "text": d.text, "timestamp": d.timestamp_ms })
        }
        Target::User(user) => {
            json!({ "id": d.id, "from": d.from, "to": user, "text": d.text, "timestamp": d.timestamp_ms })
        }
    }
}

/// Prints a message to stdout and flushes (so pipes see it at once).
pub fn print_message(d: &Delivery, me: &str, as_json: bool) {
    let line = if as_json { message_json(d).to_string() } else { message_line(d, me) };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
