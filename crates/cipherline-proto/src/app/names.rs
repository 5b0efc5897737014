//! The name grammar both ends share (PROTOCOL.md §13.4), and the check a
//! client makes on every name a server sends.

use super::{GroupEvent, MAX_NAME, ServerMessage, Target};
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

/// The form in which two names are compared (PROTOCOL.md §13.4): `Alice`
/// and `alice` are one user, and `General` and `general` one room.
///
/// For names in the grammar ([`valid_name`], ASCII only) this is ASCII
/// lowercase, which is exactly what Unicode simple case folding followed
/// by NFC gives for ASCII text: no ASCII letter folds outside ASCII, and
/// ASCII text is already in NFC. A name outside the grammar is folded the
/// same way (non-ASCII characters unchanged); servers refuse such names
/// before comparing anyway.
#[must_use]
pub fn fold_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// [`fold_name`] without an allocation when `name` is already folded (as
/// most names are): for comparisons on hot paths such as a room's fan-out.
#[must_use]
pub fn folded(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(fold_name(name))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The look-alike "skeleton" of a name (PROTOCOL.md §13.4): two names with
/// the same skeleton are too easily mistaken for each other on a screen,
/// so a server refuses the second one while the first is connected or bound
/// to another key.
///
/// The name is folded ([`fold_name`]), then: `1` and `i` become `l` (`I`,
/// which folds to `i`, looks like `l` in many fonts), `0` becomes `o`,
/// `rn` becomes `m` and `vv` becomes `w`. The skeleton of every spelling of
/// a name is the same, because folding comes first.
///
/// A small table rather than Unicode's confusables data (UTS #39, the
/// `unicode-security` crate): that skeleton is meant for unfolded Unicode
/// text; on folded ASCII names it keeps `i` apart from `l` (so `AIice`
/// passes for `alice`) and `vv` apart from `w`.
#[must_use]
pub fn name_skeleton(name: &str) -> String {
    let mapped: String = fold_name(name)
        .chars()
        .map(|c| match c {
            '1' | 'i' => 'l',
            '0' => 'o',
            other => other,
        })
        .collect();
    mapped.replace("rn", "m").replace("vv", "w")
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
            ServerMessage::FileAnswered { by, .. }
            | ServerMessage::FileAcked { by, .. }
            | ServerMessage::Delivered { by, .. }
            | ServerMessage::Expired { to: by, .. } => valid_name(by, MAX_NAME),
            ServerMessage::FileData { from, .. } | ServerMessage::FileDone { from, .. } => valid_name(from, MAX_NAME),
            ServerMessage::FileCancelled { sender, by, .. } => valid_name(sender, MAX_NAME) && valid_name(by, MAX_NAME),
            ServerMessage::Ack { .. }
            | ServerMessage::Error { .. }
            | ServerMessage::Pong { .. }
            | ServerMessage::Blob(_) => true,
            ServerMessage::Group(g) => match g {
                GroupEvent::KeyPackage { user, .. } => valid_name(user, MAX_NAME),
                GroupEvent::RoomInfo { room, admins, .. } => {
                    valid_name(room, MAX_NAME) && admins.iter().all(|n| valid_name(n, MAX_NAME))
                }
                GroupEvent::Message(d) => {
                    valid_name(&d.from, MAX_NAME) && d.room.as_deref().is_none_or(|r| valid_name(r, MAX_NAME))
                }
                GroupEvent::KeyPackageCount { .. }
                | GroupEvent::Committed { .. }
                | GroupEvent::Stale { .. }
                | GroupEvent::GroupInfo { .. } => true,
            },
        };
        if ok { Ok(()) } else { Err(DecodeError::InvalidName) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_ascii_case_only() {
        assert_eq!(fold_name("Alice"), "alice");
        assert_eq!(fold_name("ALICE_2.x"), "alice_2.x");
        assert_eq!(fold_name("alice"), fold_name("aLiCe"));
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let alice = name_skeleton("alice");
        for fake in ["a1ice", "aIice", "ALICE", "AlIce", "ali1ce".replacen("1", "", 1).as_str()] {
            assert_eq!(name_skeleton(fake), alice, "{fake}");
        }
        assert_eq!(name_skeleton("rnallory"), name_skeleton("mallory"));
        assert_eq!(name_skeleton("vvalter"), name_skeleton("Walter"));
        assert_eq!(name_skeleton("b0b"), name_skeleton("BOB"));
        assert_ne!(name_skeleton("alice"), name_skeleton("alicia"));
        assert_ne!(name_skeleton("bob"), name_skeleton("rob"));
    }
}
