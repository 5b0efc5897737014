//! Characters a peer must not be able to put on someone else's terminal
//! raw: controls, Unicode format characters and the line/paragraph
//! separators (PROTOCOL.md §13, "display of peer strings").
//!
//! One predicate, [`is_hazard`], shared by the server (which refuses file
//! names containing any of them) and the client (which escapes them before
//! display and strips them from file names it stores). Keeping it in the
//! protocol crate means both ends agree on the set.

/// Unicode general category Cf (format), as inclusive code point ranges.
///
/// Every range whose category is `Cf` in the Unicode Character Database
/// (listed from Unicode 18.0 data; the set has not changed since 15.0).
/// A character a later version makes Cf would be shown raw until it is
/// added here. U+2065 (unassigned) is included so that the bidi isolates
/// U+2066–U+2069 and the word joiner U+2060 form one range.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // SOFT HYPHEN
    (0x0600, 0x0605),   // ARABIC NUMBER SIGN .. ARABIC NUMBER MARK ABOVE
    (0x061C, 0x061C),   // ARABIC LETTER MARK (bidi)
    (0x06DD, 0x06DD),   // ARABIC END OF AYAH
    (0x070F, 0x070F),   // SYRIAC ABBREVIATION MARK
    (0x0890, 0x0891),   // ARABIC POUND / PIASTRE MARK ABOVE
    (0x08E2, 0x08E2),   // ARABIC DISPUTED END OF AYAH
    (0x180E, 0x180E),   // MONGOLIAN VOWEL SEPARATOR
    (0x200B, 0x200F),   // ZERO WIDTH SPACE .. RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),   // LRE, RLE, PDF, LRO, RLO (bidi embeddings and overrides)
    (0x2060, 0x206F),   // WORD JOINER .. NOMINAL DIGIT SHAPES (LRI, RLI, FSI, PDI)
    (0xFEFF, 0xFEFF),   // ZERO WIDTH NO-BREAK SPACE (byte order mark)
    (0xFFF9, 0xFFFB),   // INTERLINEAR ANNOTATION ANCHOR .. TERMINATOR
    (0x110BD, 0x110BD), // KAITHI NUMBER SIGN
    (0x110CD, 0x110CD), // KAITHI NUMBER SIGN ABOVE
    (0x13430, 0x1343F), // EGYPTIAN HIEROGLYPH format controls
    (0x1BCA0, 0x1BCA3), // SHORTHAND FORMAT controls
    (0x1D173, 0x1D17A), // MUSICAL SYMBOL BEGIN BEAM .. END PHRASE
    (0xE0001, 0xE0001), // LANGUAGE TAG
    (0xE0020, 0xE007F), // TAG SPACE .. CANCEL TAG
];

/// Whether `c` is a Unicode format character (general category Cf): bidi
/// controls such as U+202E and U+2066–U+2069, zero-width characters
/// U+200B–U+200F, U+2060, U+FEFF, tag characters, and the rest of the
/// [table](FORMAT).
#[must_use]
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Whether `c` can change how a terminal shows what follows it, or hide or
/// reorder text: a C0 or C1 control (including `\t`, `\n`, `\r`, ESC), DEL,
/// a format character ([`is_format`]), or U+2028 LINE SEPARATOR / U+2029
/// PARAGRAPH SEPARATOR.
///
/// A peer-supplied string is shown only after every such character was
/// escaped; a file name containing one is refused by the server.
#[must_use]
pub fn is_hazard(c: char) -> bool {
    c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_disjoint() {
        for pair in FORMAT.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn the_attack_characters_are_hazards() {
        for c in [
            '\0',
            '\t',
            '\n',
            '\r',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9b}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{ad}',
        ] {
            assert!(is_hazard(c), "{c:?}");
        }
        for c in ['a', ' ', '\\', 'ï', '☃', '中', '\u{301}', '\u{fffd}', '\u{1f600}', '\u{a0}'] {
            assert!(!is_hazard(c), "{c:?}");
        }
    }
}
