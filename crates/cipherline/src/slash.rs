//! The slash commands typed in an interactive client, parsed: one table of
//! names and meanings for every front-end that takes typed lines (`tui`
//! and `chat`), so `/msg` or `/join` mean the same
//! thing wherever they are typed.
//!
//! Parsing is pure and strict about arguments: a command missing one is
//! [`Slash::Usage`] with the line to show, never a guess.

use cipherline_proto::app::RoomKind;

/// A command's name and the one-line usage shown for it.
pub struct Spec {
    /// The name, with its slash.
    pub name: &'static str,
    /// Its arguments and what it does, for help screens.
    pub usage: &'static str,
}

/// Every command, in the order help lists them (and completion offers).
pub const COMMANDS: &[Spec] = &[
    Spec { name: "/msg", usage: "/msg USER TEXT        direct message to USER" },
    Spec { name: "/join", usage: "/join ROOM            join ROOM and make it the current conversation" },
    Spec { name: "/leave", usage: "/leave                leave the current room" },
    Spec { name: "/who", usage: "/who, /members        who is in the current room" },
    Spec { name: "/members", usage: "/members              the same as /who" },
    Spec { name: "/whois", usage: "/whois USER           USER's identity key fingerprint" },
    Spec { name: "/verify", usage: "/verify USER [confirm] compare safety codes; confirm when they matched" },
    Spec { name: "/trust", usage: "/trust USER           accept USER's new identity key after a change" },
    Spec { name: "/create", usage: "/create ROOM [--public | --open]  create a room" },
    Spec { name: "/invite", usage: "/invite USER...       add USER to the current end-to-end room" },
    Spec { name: "/kick", usage: "/kick USER...         remove USER from it (admins)" },
    Spec { name: "/send-file", usage: "/send-file USER|#ROOM PATH  send a file" },
    Spec { name: "/accept", usage: "/accept [ID]          accept a file offer" },
    Spec { name: "/decline", usage: "/decline [ID]         decline a file offer" },
    Spec { name: "/cancel", usage: "/cancel [ID]          stop sending a file" },
    Spec { name: "/rekey", usage: "/rekey                ratchet the session keys now" },
    Spec { name: "/fingerprint", usage: "/fingerprint          the server's key fingerprint" },
    Spec { name: "/help", usage: "/help                 the commands and keys" },
    Spec { name: "/quit", usage: "/quit                 leave (also /exit)" },
];

/// One typed line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slash<'a> {
    /// Nothing but blanks.
    Empty,
    /// Text to say in the current conversation.
    Say(&'a str),
    /// `/msg USER TEXT`.
    Msg {
        /// The user.
        user: &'a str,
        /// The text (may contain spaces).
        text: &'a str,
    },
    /// `/join ROOM`.
    Join(&'a str),
    /// `/leave`.
    Leave,
    /// `/who` or `/members`.
    Members,
    /// `/whois USER`.
    Whois(&'a str),
    /// `/verify USER` (`confirm`: `/verify USER confirm`).
    Verify {
        /// The user.
        user: &'a str,
        /// The codes were compared and matched.
        confirm: bool,
    },
    /// `/trust USER`.
    Trust(&'a str),
    /// `/create ROOM [--public | --open]`: end to end and invite-only
    /// unless a flag says otherwise.
    Create {
        /// The room.
        room: &'a str,
        /// What kind.
        kind: RoomKind,
    },
    /// `/help`.
    Help,
    /// `/quit` or `/exit`.
    Quit,
    /// A command of the table whose arguments the front-end reads itself
    /// (`/invite`, `/kick`, files, `/rekey`, `/fingerprint`).
    Other {
        /// The command, with its slash.
        cmd: &'a str,
        /// The rest of the line, trimmed.
        rest: &'a str,
    },
    /// A known command used wrongly: the usage line to show.
    Usage(&'static str),
    /// A command nobody knows.
    Unknown(&'a str),
}

/// Parses one typed line. A line starting with `//` says the rest with
/// one slash (so a text may start with a slash).
#[must_use]
pub fn parse(line: &str) -> Slash<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Slash::Empty;
    }
    if let Some(text) = line.strip_prefix("//") {
        // The text keeps one of the two slashes.
        return Slash::Say(line.get(1..).unwrap_or(text));
    }
    if !line.starts_with('/') {
        return Slash::Say(line);
    }
    let (cmd, rest) = line.split_once(' ').map_or((line, ""), |(c, r)| (c, r.trim()));
    let usage = |name: &str| COMMANDS.iter().find(|s| s.name == name).map_or("", |s| s.usage);
    match cmd {
        "/quit" | "/exit" => Slash::Quit,
        "/help" => Slash::Help,
        "/leave" => Slash::Leave,
        "/who" | "/members" => Slash::Members,
        "/msg" => match rest.split_once(' ') {
            Some((user, text)) if !text.trim().is_empty() => Slash::Msg { user, text: text.trim() },
            _ => Slash::Usage(usage("/msg")),
        },
        "/join" if single(rest) => Slash::Join(rest),
        "/whois" if single(rest) => Slash::Whois(rest),
        "/trust" if single(rest) => Slash::Trust(rest),
        "/verify" => match rest.split_once(' ') {
            None if !rest.is_empty() => Slash::Verify { user: rest, confirm: false },
            Some((user, "confirm")) => Slash::Verify { user, confirm: true },
            _ => Slash::Usage(usage("/verify")),
        },
        "/create" => {
            let mut words = rest.split_whitespace();
            let kind = match words.nth(1) {
                None => Some(RoomKind::Invite),
                Some("--public") => Some(RoomKind::Public),
                Some("--open") => Some(RoomKind::Open),
                Some(_) => None,
            };
            match (rest.split_whitespace().next(), kind, words.next()) {
                (Some(room), Some(kind), None) => Slash::Create { room, kind },
                _ => Slash::Usage(usage(cmd)),
            }
        }
        "/join" | "/whois" | "/trust" => Slash::Usage(usage(cmd)),
        _ if COMMANDS.iter().any(|s| s.name == cmd) => Slash::Other { cmd, rest },
        _ => Slash::Unknown(cmd),
    }
}

/// One word, no more.
fn single(rest: &str) -> bool {
    !rest.is_empty() && !rest.contains(char::is_whitespace)
}

/// The command names starting with `prefix` (with its slash), for completion.
pub fn complete(prefix: &str) -> impl Iterator<Item = &'static str> + '_ {
    COMMANDS
        .iter()
        .map(|s| s.name)
        .filter(move |n| n.starts_with(prefix))
        .chain(("/exit".starts_with(prefix) && prefix.len() > 1).then_some("/exit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_chat_knows_mean_the_same() {
        assert_eq!(parse("/msg bob hello there"), Slash::Msg { user: "bob", text: "hello there" });
        assert_eq!(parse("  /join  general "), Slash::Join("general"));
        assert_eq!(parse("/leave"), Slash::Leave);
        assert_eq!(parse("/quit"), Slash::Quit);
        assert_eq!(parse("/exit"), Slash::Quit);
        assert_eq!(parse("/help"), Slash::Help);
        assert_eq!(parse("/members"), Slash::Members);
        assert_eq!(parse("/verify bob confirm"), Slash::Verify { user: "bob", confirm: true });
        assert_eq!(parse("/create r --open"), Slash::Create { room: "r", kind: RoomKind::Open });
        assert_eq!(parse("/create r --public"), Slash::Create { room: "r", kind: RoomKind::Public });
        assert_eq!(parse("/create  r "), Slash::Create { room: "r", kind: RoomKind::Invite });
        assert_eq!(parse("hello /join x"), Slash::Say("hello /join x"));
        assert_eq!(parse("//join is a word"), Slash::Say("/join is a word"));
        assert_eq!(parse("   "), Slash::Empty);
        assert_eq!(parse("/frobnicate"), Slash::Unknown("/frobnicate"));
    }

    #[test]
    fn missing_arguments_are_a_usage_line_not_a_guess() {
        for line in [
            "/msg bob",
            "/msg",
            "/join",
            "/join two words",
            "/verify",
            "/verify bob maybe",
            "/trust",
            "/create",
            "/create r --secret",
            "/create r --open more",
        ] {
            assert!(matches!(parse(line), Slash::Usage(u) if u.starts_with(line.split(' ').next().unwrap_or(""))));
        }
    }

    #[test]
    fn completion_offers_the_commands_with_the_prefix() {
        assert_eq!(complete("/j").collect::<Vec<_>>(), ["/join"]);
        assert_eq!(complete("/ex").collect::<Vec<_>>(), ["/exit"]);
        let w: Vec<_> = complete("/w").collect();
        assert_eq!(w, ["/who", "/whois"]);
    }
}
