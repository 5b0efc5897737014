//! The name grammar both ends share (PROTOCOL.md §13.4), and the check a
//! client makes on every name a server sends.

use super::{MAX_NAME, ServerMessage, Target};
use crate::error::DecodeError;

/// Whether `name` (a display name or a room name) is in the name grammar
/// (PROTOCOL.md §13.4): 1 to `max` bytes (at most [`MAX_NAME`]) of ASCII
/// letters, digits, `-`, `_` and `.`, not starting with `-` or `.`.
///
/// The server refuses any other name at Hello and Join; a client refuses
/// any other name the server sends (see [`ServerMessage::check_names`]),
/// because names end up in files and on terminals, where spaces, control
/// characters and look-alikes could forge other entries.
#[must_use]
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max.min(MAX_NAME)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.'])
}

impl ServerMessage {
    /// Checks every user and room name the message carries against the
    /// name grammar ([`valid_name`]); [`DecodeError::InvalidName`] if one
    /// is outside it. A client calls this on everything the server sends:
    /// an honest server only ever relays names it accepted at Hello and
    /// Join, so any other name is the relay misbehaving.
    pub fn check_names(&self) -> Result<(), DecodeError> {
        fn target(t: &Target) -> &str {
            match t {
                Target::Room(n) | Target::User(n) => n,
            }
        }
        let ok = match self {
            ServerMessage::Welcome { name, .. } | ServerMessage::Identity { name, .. } => valid_name(name, MAX_NAME),
            ServerMessage::Joined { room } | ServerMessage::Left { room } => valid_name(room, MAX_NAME),
            ServerMessage::Message(d) => valid_name(&d.from, MAX_NAME) && valid_name(target(&d.to), MAX_NAME),
            ServerMessage::Notice { room, name, .. } => valid_name(room, MAX_NAME) && valid_name(name, MAX_NAME),
            ServerMessage::Members { room, names } => {
                valid_name(room, MAX_NAME) && names.iter().all(|n| valid_name(n, MAX_NAME))
            }
            ServerMessage::FileOffered { from, to, .. } => {
                valid_name(from, MAX_NAME) && valid_name(target(to), MAX_NAME)
            }
            ServerMessage::FileAnswered { by, .. } | ServerMessage::FileAcked { by, .. } => valid_name(by, MAX_NAME),
            ServerMessage::FileData { from, .. } | ServerMessage::FileDone { from, .. } => valid_name(from, MAX_NAME),
            ServerMessage::FileCancelled { sender, by, .. } => valid_name(sender, MAX_NAME) && valid_name(by, MAX_NAME),
            ServerMessage::Ack { .. } | ServerMessage::Error { .. } | ServerMessage::Pong { .. } => true,
        };
        if ok { Ok(()) } else { Err(DecodeError::InvalidName) }
    }
}
