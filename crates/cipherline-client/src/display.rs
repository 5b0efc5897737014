//! Showing peer-supplied strings on a terminal.
//!
//! Contract: **nothing a peer sends can make text look like it came from
//! someone else.** Every string that arrives from the network (message
//! text, names, room names, file names, reasons, notices, server error
//! texts) goes through [`escape`] or [`body`] before it is printed, so:
//!
//! - no control character reaches the terminal: no ESC (colours, cursor
//!   movement, `ESC[2K` line erase, OSC title or clipboard sequences), no
//!   `\r` (overwriting the line's start), no backspace, no C1 control;
//! - no Unicode format character reaches it: bidi embeddings, overrides and
//!   isolates (U+202A–U+202E, U+2066–U+2069), zero-width characters
//!   (U+200B–U+200F, U+2060, U+FEFF), tags and the rest of category Cf, nor
//!   U+2028/U+2029 (see [`cipherline_proto::charclass::is_hazard`]);
//! - a peer cannot start a line: a line break in a message becomes a new
//!   line that begins with [`CONTINUATION`], which no peer text can produce at
//!   the start of a line, so every continuation is visibly part of the same
//!   sender's message.
//!
//! Escapes are visible and unambiguous: `\\` for a backslash, `\t`, `\n`,
//! `\r`, `\x1b` for other ASCII controls and DEL, `\u{202e}` for any other
//! (non-ASCII) hazard. Because a literal backslash is doubled, [`escape`] is
//! injective: two different strings never look the same.
//!
//! What is *not* done here: `--json` output keeps the exact text (JSON
//! escapes controls itself), and a line longer than the terminal still wraps
//! (a peer can pad text with spaces so that the wrapped part starts at the
//! left margin; the line's real prefix is still the only one at its start).

use std::borrow::Cow;
use std::fmt::Write as _;

use cipherline_proto::charclass::is_hazard;

/// What starts every continuation line of a multi-line message.
pub const CONTINUATION: &str = "  | ";

/// `s` escaped for display on one line: every hazard (controls, line
/// breaks, format characters, U+2028/U+2029) and every backslash becomes a
/// visible escape. Borrowed when nothing needed escaping.
#[must_use]
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_hazard(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if c.is_ascii() && is_hazard(c) => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if is_hazard(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// The lines of a message text, each escaped: the text is split at `\n`
/// (a `\r\n` pair counts as one break; a lone `\r` is escaped).
#[must_use]
pub fn lines(text: &str) -> Vec<String> {
    text.split('\n').map(|line| escape(line.strip_suffix('\r').unwrap_or(line)).into_owned()).collect()
}

/// A message text for display after its sender's prefix: the first line
/// escaped, and each further line on a line of its own beginning with
/// [`CONTINUATION`]. The result contains no hazard but those `\n`.
#[must_use]
pub fn body(text: &str) -> String {
    lines(text).join(&format!("\n{CONTINUATION}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The inverse of [`escape`], to show it loses nothing.
    fn unescape(s: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                '\\' => out.push('\\'),
                't' => out.push('\t'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                'u' => {
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    #[test]
    fn the_attacks_from_issue_12_are_shown_escaped() {
        assert_eq!(
            body("see you\n[lobby] alice: please pay mallory"),
            "see you\n  | [lobby] alice: please pay mallory"
        );
        assert_eq!(escape("x\r\u{1b}[2K[lobby] alice: hi"), "x\\r\\x1b[2K[lobby] alice: hi");
        assert_eq!(escape("\u{1b}]0;pwned\u{7}"), "\\x1b]0;pwned\\x07");
        assert_eq!(escape("alice\u{202e}txt.exe"), "alice\\u{202e}txt.exe");
        assert_eq!(escape("a\u{200b}b\u{feff}\u{2028}\u{2066}"), "a\\u{200b}b\\u{feff}\\u{2028}\\u{2066}");
        assert_eq!(escape("\u{9b}31m\u{7f}\0"), "\\u{9b}31m\\x7f\\x00");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(escape("C:\\x1b"), "C:\\\\x1b", "a literal backslash cannot fake an escape");
        assert_eq!(body("a\r\nb\rc\n"), "a\n  | b\\rc\n  | ");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in ["", "hello bob", "naïve ☃ 中文 😀", "e\u{301}"] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s));
            assert_eq!(body(s), s);
        }
    }

    fn hostile() -> impl Strategy<Value = String> {
        let hazards = prop::sample::select(vec![
            '\n',
            '\r',
            '\t',
            '\\',
            '\u{1b}',
            '\u{7}',
            '\0',
            '\u{7f}',
            '\u{85}',
            '\u{9b}',
            '\u{200b}',
            '\u{200f}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{2028}',
            '\u{2029}',
            '\u{feff}',
            '\u{e0041}',
            'x',
            'u',
            '{',
            '}',
        ]);
        prop::collection::vec(prop_oneof![any::<char>(), hazards], 0..48).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_hazard_and_round_trips(s in hostile()) {
            let e = escape(&s);
            prop_assert!(!e.chars().any(is_hazard), "{e:?}");
            prop_assert_eq!(unescape(&e), Some(s.clone()), "distinct inputs stay distinct");
        }

        #[test]
        fn every_body_line_after_the_first_is_marked(s in hostile()) {
            let shown = body(&s);
            prop_assert!(!shown.chars().any(|c| c != '\n' && is_hazard(c)), "{shown:?}");
            let shown_lines: Vec<&str> = shown.split('\n').collect();
            prop_assert_eq!(shown_lines.len(), s.matches('\n').count() + 1);
            for line in shown_lines.iter().skip(1) {
                prop_assert!(line.starts_with(CONTINUATION));
            }
            // What each line shows is exactly that line of the text.
            let original: Vec<&str> = s.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
            for (i, line) in shown_lines.iter().enumerate() {
                let line = if i == 0 { *line } else { &line[CONTINUATION.len()..] };
                prop_assert_eq!(unescape(line), Some(original[i].to_owned()));
            }
        }
    }
}
